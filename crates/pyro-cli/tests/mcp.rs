//! `pyro mcp serve` driven by the rmcp client over the child's stdio, and by
//! raw JSON-RPC where the wire itself is under test.

mod common;
mod mcp_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use common::{Home, pyro_bin, require_debian12};
use mcp_support::{connect, err, err_kind, ok};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_per_profile() {
    let home = Home::new();
    let mut sizes = Vec::new();
    for profile in ["vm-run", "workspace-core", "workspace-full"] {
        let client = connect(&home, home.path(), &["--profile", profile], "host-compat").await;
        let info = client.peer_info().unwrap();
        assert_eq!(info.server_info.as_ref().unwrap().name, "pyro");
        // The instructions speak only of tools the profile has.
        let instructions = info.instructions.as_deref().unwrap();
        assert!(instructions.contains("vm_run"), "{instructions}");
        assert_eq!(
            instructions.contains("workspace_create"),
            profile != "vm-run",
            "{profile}: {instructions}"
        );
        let tools = client.list_all_tools().await.unwrap();
        let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "tool order is deterministic");
        for t in &tools {
            let a = t
                .annotations
                .as_ref()
                .unwrap_or_else(|| panic!("{} has no annotations", t.name));
            assert!(
                a.read_only_hint.is_some()
                    && a.destructive_hint.is_some()
                    && a.idempotent_hint.is_some()
                    && a.open_world_hint.is_some(),
                "{} leaves an annotation unset",
                t.name
            );
            assert!(t.output_schema.is_some(), "{} has no output schema", t.name);
            assert_eq!(
                t.input_schema.get("additionalProperties"),
                Some(&json!(false)),
                "{} accepts unknown arguments",
                t.name
            );
            assert!(
                t.description.as_deref().unwrap_or_default().len() > 60,
                "{} needs a real description",
                t.name
            );
        }
        let listing: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"name": t.name, "description": t.description, "annotations": t.annotations,
                       "inputSchema": t.input_schema, "outputSchema": t.output_schema})
            })
            .collect();
        insta::assert_json_snapshot!(format!("mcp_tools_{profile}"), listing);
        sizes.push(names.len());
        client.cancel().await.unwrap();
    }
    assert_eq!(sizes, [1, 18, 41]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repro_fix_workflow_over_mcp_host_compat() {
    require_debian12();
    let home = Home::new();
    let repo = home.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("message.txt"), "broken\n").unwrap();
    std::fs::write(
        repo.join("check.sh"),
        "grep -qx fixed message.txt && echo fixed || { echo broken >&2; exit 1; }\n",
    )
    .unwrap();
    let client = connect(&home, home.path(), &[], "host-compat").await;
    let ws = ok(
        &client,
        "workspace_create",
        json!({"seed_path": "repo", "name": "repro"}),
    )
    .await;
    let id = ws["workspace_id"].as_str().unwrap().to_owned();
    assert_eq!(ws["workspace_seed"]["origin"], "seed_path");
    let r = ok(
        &client,
        "workspace_file_read",
        json!({"workspace_id": id, "path": "message.txt"}),
    )
    .await;
    assert_eq!(r["content"], "broken\n");
    let r = ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "sh check.sh"}),
    )
    .await;
    assert_eq!(
        (r["exit_code"].as_i64(), r["stderr"].as_str()),
        (Some(1), Some("broken\n")),
        "a failing command is a successful call"
    );
    assert_eq!(r["timeout_seconds"], 30, "the effective limit is echoed");
    ok(&client, "workspace_patch_apply", json!({"workspace_id": id, "patch": "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n"})).await;
    let r = ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": ["sh", "check.sh"]}),
    )
    .await;
    assert_eq!(
        (r["exit_code"].as_i64(), r["stdout"].as_str()),
        (Some(0), Some("fixed\n"))
    );
    let d = ok(&client, "workspace_diff", json!({"workspace_id": id})).await;
    assert_eq!(d["changed"], true);
    assert!(d["patch"].as_str().unwrap().contains("+fixed"));
    let e = ok(
        &client,
        "workspace_export",
        json!({"workspace_id": id, "path": "message.txt", "output_path": "out/message.txt"}),
    )
    .await;
    assert_eq!(e["kind"], "file");
    assert_eq!(
        std::fs::read_to_string(home.path().join("out/message.txt")).unwrap(),
        "fixed\n"
    );
    let r = ok(&client, "workspace_reset", json!({"workspace_id": id})).await;
    assert_eq!(r["reset_count"], 1);
    let d = ok(&client, "workspace_diff", json!({"workspace_id": id})).await;
    assert_eq!(d["changed"], false);
    let l = ok(&client, "workspace_list", json!({})).await;
    assert_eq!(l["count"], 1);
    let big = ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "seq 1 100000", "max_output_bytes": 1000}),
    )
    .await;
    assert_eq!(
        (
            big["stdout"].as_str().unwrap().len(),
            big["truncated"].as_bool()
        ),
        (1000, Some(true))
    );
    let logs = ok(
        &client,
        "workspace_logs",
        json!({"workspace_id": id, "max_output_bytes": 10}),
    )
    .await;
    assert_eq!(logs["entries"][0]["stdout"].as_str().unwrap().len(), 10);
    ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "echo second"}),
    )
    .await;
    let all = logs["count"].as_u64().unwrap() + 1;
    let last = ok(
        &client,
        "workspace_logs",
        json!({"workspace_id": id, "tail": 1}),
    )
    .await;
    assert_eq!(
        last["count"].as_u64(),
        Some(all),
        "count is of all commands"
    );
    let entries = last["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["sequence"].as_u64(), Some(all), "the newest one");
    ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
    client.cancel().await.unwrap();
    home.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_tool_errors_with_the_rule() {
    require_debian12();
    let home = Home::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "x").unwrap();
    let client = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let e = err_kind(
        &client,
        "workspace_status",
        json!({"workspace_id": "0123456789abcdef"}),
        "not_found",
    )
    .await;
    assert!(
        e.contains("does not exist; workspace_list shows the ones that do"),
        "{e}"
    );
    let e = err(
        &client,
        "workspace_create",
        json!({"no_such_option": "egress"}),
    )
    .await;
    assert!(e.contains("unknown field `no_such_option`"), "{e}");
    let e = err(
        &client,
        "workspace_create",
        json!({"seed_path": outside.path()}),
    )
    .await;
    assert!(
        e.contains("is outside the host directories this server may use")
            && e.contains("allow-root option"),
        "{e}"
    );
    // The schema's bounds hold although serde does not check them.
    let e = err_kind(
        &client,
        "vm_run",
        json!({"command": "true", "timeout_seconds": 100_000}),
        "invalid_argument",
    )
    .await;
    assert!(
        e.contains("timeout_seconds argument must be between 1 and 86400"),
        "{e}"
    );
    let ws = ok(&client, "workspace_create", json!({})).await;
    let id = ws["workspace_id"].as_str().unwrap().to_owned();
    let e = err(
        &client,
        "workspace_export",
        json!({"workspace_id": id, "path": "/workspace", "output_path": outside.path().join("o")}),
    )
    .await;
    assert!(e.contains("outside the host directories"), "{e}");
    // A `..` below a directory still to be made would climb out of the
    // checked one once that is created.
    let e = err(
        &client,
        "workspace_export",
        json!({"workspace_id": id, "path": "/workspace", "output_path": "new/../../escaped"}),
    )
    .await;
    assert!(e.contains("has `..` after a directory"), "{e}");
    // Size limits are worded for the tools, not the CLI.
    ok(
        &client,
        "workspace_file_write",
        json!({"workspace_id": id, "path": "hundred.txt", "text": "x".repeat(100)}),
    )
    .await;
    let e = err(
        &client,
        "workspace_file_read",
        json!({"workspace_id": id, "path": "hundred.txt", "max_bytes": 10}),
    )
    .await;
    assert!(
        e.contains(
            "above the 10-byte read limit; raise it with the max_bytes argument (up to 67108864)"
        ) && e.contains("workspace_export"),
        "{e}"
    );
    let e = err(
        &client,
        "workspace_file_write",
        json!({"workspace_id": id, "path": "big.txt", "text": "x".repeat((1 << 20) + 1)}),
    )
    .await;
    assert!(
        e.contains("above the 1048576-byte write limit; raise it with the max_bytes argument")
            && e.contains("workspace_sync_push"),
        "{e}"
    );
    let e = err(
        &client,
        "workspace_file_read",
        json!({"workspace_id": id, "path": "../etc/passwd"}),
    )
    .await;
    assert!(e.contains("paths must stay inside /workspace"), "{e}");
    let e = err(
        &client,
        "workspace_sync_push",
        json!({"workspace_id": id, "source_path": "/etc"}),
    )
    .await;
    assert!(e.contains("outside the host directories"), "{e}");
    let e = err(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": []}),
    )
    .await;
    assert!(
        e.contains("no command given: give the command argument"),
        "{e}"
    );
    let e = err(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "  "}),
    )
    .await;
    assert!(
        e.contains("the command is empty: give the command argument"),
        "{e}"
    );
    ok(&client, "workspace_stop", json!({"workspace_id": id})).await;
    let e = err(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "true"}),
    )
    .await;
    assert!(
        e.contains("is stopped") && e.contains("call workspace_start first"),
        "{e}"
    );
    // A workspace-core server has no workspace_start: the user starts it.
    let core = connect(&home, home.path(), &[], "host-compat").await;
    let e = err_kind(
        &core,
        "workspace_exec",
        json!({"workspace_id": id, "command": "true"}),
        "wrong_state",
    )
    .await;
    assert!(
        e.contains(&format!("ask the user to run `pyro workspace start {id}`")),
        "{e}"
    );
    core.cancel().await.unwrap();
    ok(&client, "workspace_start", json!({"workspace_id": id})).await;
    let envs = ok(&client, "environment_list", json!({})).await;
    assert_eq!(envs["environments"][0]["name"], "debian:12");
    ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
    client.cancel().await.unwrap();
    // With --allow-root, the same path is fine.
    let client = connect(
        &home,
        home.path(),
        &["--allow-root", outside.path().to_str().unwrap()],
        "host-compat",
    )
    .await;
    let ws = ok(
        &client,
        "workspace_create",
        json!({"seed_path": outside.path()}),
    )
    .await;
    ok(
        &client,
        "workspace_delete",
        json!({"workspace_id": ws["workspace_id"]}),
    )
    .await;
    client.cancel().await.unwrap();
    home.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_within_200_ms_during_a_reset() {
    require_debian12();
    let home = Home::new();
    // Enough files that a reset takes a while to copy them back.
    let tree = home.path().join("tree");
    for d in 0..10 {
        let dir = tree.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f}")), "x\n").unwrap();
        }
    }
    let client = std::sync::Arc::new(connect(&home, home.path(), &[], "host-compat").await);
    let big = ok(&client, "workspace_create", json!({"seed_path": "tree"})).await;
    let big = big["workspace_id"].as_str().unwrap().to_owned();
    let other = ok(&client, "workspace_create", json!({})).await;
    let other = other["workspace_id"].as_str().unwrap().to_owned();
    let (c2, id2) = (client.clone(), big.clone());
    let reset =
        tokio::spawn(async move { ok(&c2, "workspace_reset", json!({"workspace_id": id2})).await });
    let mut during = Vec::new();
    while !reset.is_finished() {
        for id in [&other, &big] {
            let t = Instant::now();
            let st = ok(&client, "workspace_status", json!({"workspace_id": id})).await;
            let took = t.elapsed();
            if !reset.is_finished() {
                during.push((id == &big, took, st["state"].clone()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reset.await.unwrap();
    assert!(
        during.iter().any(|(is_big, ..)| !is_big),
        "the reset ended before a status call: {during:?}"
    );
    for (is_big, took, state) in &during {
        assert!(
            *took < Duration::from_millis(200),
            "status of {} took {took:?} during a reset: {during:?}",
            if *is_big {
                "the resetting workspace"
            } else {
                "another workspace"
            }
        );
        assert!(state.is_string(), "{state}");
    }
    for id in [big, other] {
        ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_exec_does_not_block_status() {
    require_debian12();
    let home = Home::new();
    let client = std::sync::Arc::new(connect(&home, home.path(), &[], "host-compat").await);
    let ws = ok(&client, "workspace_create", json!({})).await;
    let id = ws["workspace_id"].as_str().unwrap().to_owned();
    let c2 = client.clone();
    let id2 = id.clone();
    let blocked = tokio::spawn(async move {
        ok(&c2, "workspace_exec", json!({"workspace_id": id2, "command": "while [ ! -e release ]; do sleep 0.05; done; echo released", "timeout_seconds": 60})).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !blocked.is_finished(),
        "the exec should still wait for its file"
    );
    let t = Instant::now();
    let st = ok(&client, "workspace_status", json!({"workspace_id": id})).await;
    assert_eq!(st["state"], "started");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "status waited for the exec"
    );
    assert!(!blocked.is_finished());
    ok(
        &client,
        "workspace_file_write",
        json!({"workspace_id": id, "path": "release", "text": ""}),
    )
    .await;
    let r = tokio::time::timeout(Duration::from_secs(30), blocked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r["stdout"], "released\n");
    ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_aware_start_seeds_tracked_files() {
    require_debian12();
    let home = Home::new();
    let project = home.path().join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(project.join("untracked.log"), "noise\n").unwrap();
    let git = |args: &[&str]| {
        assert!(
            std::process::Command::new("git")
                .arg("-C")
                .arg(&project)
                .args(args)
                .output()
                .unwrap()
                .status
                .success()
        )
    };
    git(&["init", "-q"]);
    git(&["add", "src/main.rs"]);
    // Started in a subdirectory of the checkout.
    let client = connect(&home, &project.join("src"), &[], "host-compat").await;
    let ws = ok(&client, "workspace_create", json!({})).await;
    assert_eq!(ws["workspace_seed"]["origin"], "project");
    assert_eq!(ws["workspace_seed"]["seed_mode"], "git-tracked");
    let id = ws["workspace_id"].as_str().unwrap().to_owned();
    let r = ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "find . -type f | sort"}),
    )
    .await;
    assert_eq!(r["stdout"], "./src/main.rs\n");
    ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
    client.cancel().await.unwrap();
    // --project-path elsewhere works too; a non-checkout is refused at start.
    let o = home
        .cmd()
        .args(["mcp", "serve", "--project-path", "/"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("is not inside a Git checkout"),
        "{}",
        common::stderr(&o)
    );
}

/// A raw JSON-RPC session: every stdout line is recorded.
struct Raw {
    child: Child,
    stderr_file: std::path::PathBuf,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    lines: Vec<String>,
}

impl Raw {
    fn start(home: &Home) -> Self {
        // Debug logs are plentiful: they go to a file, not an unread pipe.
        let stderr_file = home.path().join("server.stderr");
        let mut child = std::process::Command::new(pyro_bin())
            .args(["mcp", "serve", "--profile", "workspace-full"])
            .env("PYRO_HOME", home.path())
            .env("PYRO_BACKEND", "host-compat")
            .env("PYRO_LOG", "debug")
            .current_dir(home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_file).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stderr_file,
            stdin,
            stdout,
            lines: Vec::new(),
        }
    }

    fn send(&mut self, msg: Value) {
        writeln!(self.stdin, "{msg}").unwrap();
    }

    /// Reads until the answer to `id`; returns it and what came before.
    fn until(&mut self, id: i64) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "the server closed stdout"
            );
            self.lines.push(line.clone());
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line:?}"));
            if v["id"] == json!(id) {
                return (v, before);
            }
            before.push(v);
        }
    }

    fn call(&mut self, id: i64, tool: &str, args: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}));
        self.until(id).0
    }
}

#[test]
fn stdout_is_only_json_rpc_and_the_protocol_versions_work() {
    require_debian12();
    let home = Home::new();
    let started = Instant::now();
    let mut raw = Raw::start(&home);
    raw.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}));
    let (init, _) = raw.until(1);
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    raw.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let (tools, _) = raw.until(2);
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 41);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow start: {:?}",
        started.elapsed()
    );

    let ws = raw.call(3, "workspace_create", json!({}));
    let id = ws["result"]["structuredContent"]["workspace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The guest writes to stdout and stderr; the runtime logs at debug level.
    let r = raw.call(
        4,
        "workspace_exec",
        json!({"workspace_id": id, "command": "echo to-stdout; echo to-stderr >&2; exit 3"}),
    );
    assert_eq!(r["result"]["structuredContent"]["exit_code"], 3);
    assert_eq!(r["result"]["isError"], false);

    // Progress while a long call runs, when the client asked for it.
    raw.send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "workspace_exec", "arguments": {"workspace_id": id, "command": "sleep 5; echo done"},
        "_meta": {"progressToken": "p5"}}}));
    let (r, before) = raw.until(5);
    assert_eq!(r["result"]["structuredContent"]["stdout"], "done\n");
    let progress: Vec<&Value> = before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(
        progress.len() >= 2,
        "expected progress notifications, got {before:?}"
    );
    assert_eq!(progress[0]["params"]["progressToken"], "p5");
    // And while a service's readiness is awaited, saying what it waits for.
    raw.send(
        json!({"jsonrpc": "2.0", "id": 55, "method": "tools/call", "params": {
        "name": "service_start", "arguments": {"workspace_id": id, "service_name": "slow",
            "command": "sleep 5; touch up; sleep 300", "ready_file": "up"},
        "_meta": {"progressToken": "p55"}}}),
    );
    let (r, before) = raw.until(55);
    assert_eq!(r["result"]["structuredContent"]["state"], "ready", "{r}");
    let progress: Vec<&Value> = before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(
        progress.len() >= 2,
        "expected progress notifications, got {before:?}"
    );
    let msg = progress[progress.len() - 1]["params"]["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains("waiting for service slow to be ready"),
        "{msg}"
    );

    // Cancelling a call kills the command in the guest.
    raw.send(json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {
        "name": "workspace_exec", "arguments": {"workspace_id": id, "command": "echo $$ > pid; sleep 60; touch survived", "timeout_seconds": 120}}}));
    std::thread::sleep(Duration::from_millis(1500));
    raw.send(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 6, "reason": "test"}}));
    std::thread::sleep(Duration::from_millis(1000));
    let r = raw.call(7, "workspace_exec", json!({"workspace_id": id, "command": "kill -0 $(cat pid) 2>/dev/null && echo alive || echo gone"}));
    assert_eq!(r["result"]["structuredContent"]["stdout"], "gone\n", "{r}");

    // The 2026-07-28 discovery request.
    raw.send(
        json!({"jsonrpc": "2.0", "id": 8, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}}}),
    );
    let (d, _) = raw.until(8);
    assert!(
        d["result"]["supportedVersions"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{d}"
    );

    raw.call(9, "workspace_delete", json!({"workspace_id": id}));
    drop(raw.stdin);
    let status = raw.child.wait().unwrap();
    assert!(status.success());
    let stderr = std::fs::read_to_string(&raw.stderr_file).unwrap();
    assert!(stderr.contains("DEBUG"), "debug logs go to stderr");
    for line in &raw.lines {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["jsonrpc"], "2.0", "{line}");
    }
    assert!(
        !raw.lines
            .iter()
            .any(|l| l.contains("to-stdout\"") && !l.contains("\"stdout\"")),
        "guest output leaked"
    );
    home.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_vm_repro_fix_over_mcp() {
    require_debian12();
    let home = Home::new();
    std::fs::create_dir_all(home.path().join("repo")).unwrap();
    std::fs::write(home.path().join("repo/message.txt"), "broken\n").unwrap();
    let client = connect(&home, home.path(), &[], "firecracker").await;
    let ws = ok(&client, "workspace_create", json!({"seed_path": "repo"})).await;
    assert_eq!(ws["execution_mode"], "guest_vsock");
    let id = ws["workspace_id"].as_str().unwrap().to_owned();
    let r = ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "grep -qx fixed message.txt"}),
    )
    .await;
    assert_eq!(r["exit_code"], 1);
    ok(&client, "workspace_patch_apply", json!({"workspace_id": id, "patch": "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n"})).await;
    let r = ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": ["grep", "-qx", "fixed", "message.txt"]}),
    )
    .await;
    assert_eq!(r["exit_code"], 0);
    let d = ok(&client, "workspace_diff", json!({"workspace_id": id})).await;
    assert_eq!(d["summary"]["modified"], 1);
    ok(
        &client,
        "workspace_export",
        json!({"workspace_id": id, "path": "message.txt", "output_path": "fixed.txt"}),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(home.path().join("fixed.txt")).unwrap(),
        "fixed\n"
    );
    ok(&client, "workspace_reset", json!({"workspace_id": id})).await;
    let d = ok(&client, "workspace_diff", json!({"workspace_id": id})).await;
    assert_eq!(d["changed"], false);
    ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
    client.cancel().await.unwrap();
    home.assert_clean();
}

#[test]
fn both_legacy_handshakes_are_answered() {
    let home = Home::new();
    for version in ["2025-06-18", "2025-11-25"] {
        let mut raw = Raw::start(&home);
        raw.send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}));
        let (init, _) = raw.until(1);
        assert_eq!(init["result"]["protocolVersion"], version);
        assert_eq!(init["result"]["serverInfo"]["name"], "pyro");
        raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        raw.send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
        let (tools, _) = raw.until(2);
        assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 41);
        drop(raw.stdin);
        assert!(raw.child.wait().unwrap().success());
    }
}

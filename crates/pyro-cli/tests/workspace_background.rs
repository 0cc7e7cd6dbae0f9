//! Commands that outlive their call, end to end on host-compat through the
//! CLI: `exec --detach` / `--wait-seconds`, `exec-wait` and `exec-cancel`.

mod common;
mod mcp_support;

use std::time::{Duration, Instant};

use common::host_compat::{count_script, create, ws};
use common::{Home, json, ok, require_debian12, stderr, stdout};
use mcp_support::{connect, err_kind};
use serde_json::{Value, json};

#[test]
fn a_detached_command_is_waited_for_and_a_running_one_cancelled() {
    let home = Home::new();
    let id = create(&home, &[]);
    // Detached: back at once, running, exit status 0, the way on said.
    let o = ws(
        &home,
        &[
            "exec",
            &id,
            "--detach",
            "--",
            "echo one; sleep 2; echo two; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let first = stdout(&o);
    let err = stderr(&o);
    assert!(err.contains("state=running"), "{err}");
    assert!(
        err.contains(&format!("pyro workspace exec-wait {id} 1")),
        "{err}"
    );
    // Waiting streams what came, then ends with the command's status.
    let o = ws(&home, &["exec-wait", &id, "1", "--wait-seconds", "30"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Each call prints what came since the one before.
    assert_eq!(first + &stdout(&o), "one\ntwo\n");
    // Once ended it is history, not waited for again.
    let o = ws(&home, &["exec-wait", &id, "1", "--json"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let e = json(&o);
    assert_eq!(e["error"]["kind"], "wrong_state", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pyro workspace logs"),
        "{e}"
    );
    // --wait-seconds in JSON: the output so far, then cancelled.
    let v = json(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--wait-seconds",
            "1",
            "--timeout-seconds",
            "600",
            "--json",
            "--",
            "echo begun; sleep 300",
        ],
    )));
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["stdout"], "begun\n", "{v}");
    let seq = v["sequence"].to_string();
    let l = json(ok(&ws(&home, &["logs", &id, "--json"])));
    assert_eq!(l["entries"][1]["state"], "running", "{l}");
    let o = ws(&home, &["exec-cancel", &id, &seq, "--json"]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "the command's status: {}",
        stderr(&o)
    );
    let v = json(&o);
    assert_eq!(v["state"], "finished", "{v}");
    assert_eq!(v["exit_code"], 137, "{v}");
    // A waiter killed mid-wait loses and repeats nothing: the next wait
    // picks up where the saved offsets say.
    let v = json(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--detach",
            "--json",
            "--",
            "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.4; done",
        ],
    )));
    let seq = v["sequence"].to_string();
    let mut waiter = std::process::Command::new(common::pyro_bin())
        .env("PYRO_HOME", home.path())
        .env("PYRO_BACKEND", "host-compat")
        .args(["workspace", "exec-wait", &id, &seq, "--wait-seconds", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    waiter.kill().unwrap();
    waiter.wait().unwrap();
    let o = ws(&home, &["exec-wait", &id, &seq, "--wait-seconds", "30"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let l = json(ok(&ws(&home, &["logs", &id, "--sequence", &seq, "--json"])));
    assert_eq!(
        l["entries"][0]["stdout"], "line1\nline2\nline3\nline4\nline5\nline6\n",
        "{l}"
    );
    // A stop ends what runs in the background, and the history says so.
    let v = json(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--detach",
            "--json",
            "--timeout-seconds",
            "600",
            "--",
            "sleep 300",
        ],
    )));
    let seq = v["sequence"].to_string();
    ok(&ws(&home, &["stop", &id]));
    ok(&ws(&home, &["start", &id]));
    let l = json(ok(&ws(&home, &["logs", &id, "--sequence", &seq, "--json"])));
    assert_eq!(l["entries"][0]["state"], "interrupted", "{l}");
    assert!(
        l["entries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("ended with"),
        "{l}"
    );
    let o = ws(&home, &["exec-wait", &id, &seq, "--json"]);
    assert_eq!(json(&o)["error"]["kind"], "wrong_state", "{}", stdout(&o));
    assert!(
        stdout(&o).contains("ended when workspace"),
        "{}",
        stdout(&o)
    );
    // Unknown commands and bad flags are clear errors.
    let o = ws(&home, &["exec-wait", &id, "99", "--json"]);
    assert_eq!(json(&o)["error"]["kind"], "not_found");
    let o = ws(&home, &["exec", &id, "--detach", "--stdin", "--", "cat"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = ws(&home, &["exec", &id, "--wait-seconds", "601", "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--wait-seconds"), "{}", stderr(&o));
    ok(&ws(&home, &["delete", &id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_command_outlives_its_call_and_is_waited_for_or_cancelled() {
    require_debian12();
    let home = Home::new();
    let client = connect(&home, home.path(), &[], "host-compat").await;
    let ws = mcp_support::ok(&client, "workspace_create", json!({})).await;
    let id = ws["workspace_id"].as_str().unwrap().to_owned();
    // Returns while it runs, with the output so far and its sequence.
    let t = Instant::now();
    let r = mcp_support::ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "echo started; sleep 5; echo done", "wait_seconds": 1}),
    )
    .await;
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(r["exit_code"], Value::Null, "{r}");
    assert_eq!(r["stdout"], "started\n", "{r}");
    let seq = r["sequence"].clone();
    // The history shows it running.
    let l = mcp_support::ok(
        &client,
        "workspace_logs",
        json!({"workspace_id": id, "sequence": seq}),
    )
    .await;
    assert_eq!(l["entries"][0]["state"], "running", "{l}");
    // Waiting returns only what came since, then how it ended.
    let r = mcp_support::ok(
        &client,
        "workspace_exec_wait",
        json!({"workspace_id": id, "sequence": seq, "wait_seconds": 30}),
    )
    .await;
    assert_eq!(r["state"], "finished", "{r}");
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["stdout"], "done\n", "{r}");
    let l = mcp_support::ok(
        &client,
        "workspace_logs",
        json!({"workspace_id": id, "sequence": seq}),
    )
    .await;
    assert_eq!(l["entries"][0]["state"], "finished", "{l}");
    assert_eq!(
        l["entries"][0]["stdout"], "started\ndone\n",
        "the log has it all: {l}"
    );
    // A finished command is not waited for again.
    let e = err_kind(
        &client,
        "workspace_exec_wait",
        json!({"workspace_id": id, "sequence": seq}),
        "wrong_state",
    )
    .await;
    assert!(e.contains("not running in the background"), "{e}");
    // A command in the background is cancelled with its process group.
    let r = mcp_support::ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "sleep 300 & sleep 300", "wait_seconds": 0, "timeout_seconds": 600}),
    )
    .await;
    assert_eq!(r["state"], "running", "{r}");
    let r = mcp_support::ok(
        &client,
        "workspace_exec_cancel",
        json!({"workspace_id": id, "sequence": r["sequence"]}),
    )
    .await;
    assert_eq!(r["state"], "finished", "{r}");
    assert_eq!(r["exit_code"], 137, "{r}");
    let r = mcp_support::ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": count_script("sleep 300")}),
    )
    .await;
    assert_eq!(r["stdout"], "0\n", "no process of it is left: {r}");
    mcp_support::ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
}

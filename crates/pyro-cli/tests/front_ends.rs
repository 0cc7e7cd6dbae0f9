//! The CLI and the MCP server are two renderings of one core: the same
//! defaults and bounds in `--help` and in the tool schemas, and the same
//! JSON document from `--json` and from a tool's structured content.

mod common;
mod mcp_support;

use common::host_compat::ws;
use common::{Home, json, ok, require_debian12};
use mcp_support::connect;
use pyro_core::limits::{self as L, Bound};
use serde_json::{Value, json};

/// A flag shared by a CLI command and an MCP tool, with the core bound
/// both must show.
struct Shared {
    cli: &'static [&'static str],
    tool: &'static str,
    bound: (&'static str, String, String, String),
}

fn shared<T: std::fmt::Display>(
    cli: &'static [&'static str],
    tool: &'static str,
    b: Bound<T>,
) -> Shared {
    Shared {
        cli,
        tool,
        bound: (
            b.arg,
            b.default.to_string(),
            b.min.to_string(),
            b.max.to_string(),
        ),
    }
}

/// `(default, min, max)` of `--flag` as the CLI's help shows them.
fn cli_shows(help: &str, flag: &str) -> (String, String, String) {
    let mut lines = help.lines();
    let first = lines
        .find(|l| l.trim_start().starts_with(&format!("--{flag} ")))
        .unwrap_or_else(|| panic!("--{flag} is not in the help:\n{help}"));
    // The help: beside the flag, or below it (in paragraphs when long).
    let text: String = std::iter::once(first)
        .chain(lines.take_while(|l| !l.trim_start().starts_with('-')))
        .collect::<Vec<_>>()
        .join(" ");
    let grab = |open: &str| {
        let start = text
            .find(open)
            .unwrap_or_else(|| panic!("--{flag}: no {open:?} in {text:?}"))
            + open.len();
        text[start..].split(']').next().unwrap().to_owned()
    };
    let range = grab("[range: ");
    let (min, max) = range.split_once(" to ").unwrap();
    (grab("[default: "), min.to_owned(), max.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_help_and_mcp_schemas_show_the_same_defaults_and_bounds() {
    let home = Home::new();
    let client = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let tools = client.list_all_tools().await.unwrap();
    let cases = [
        shared(&["run"], "vm_run", L::TIMEOUT_SECONDS),
        shared(&["run"], "vm_run", L::OUTPUT_BYTES),
        shared(&["run"], "vm_run", L::MEM_MIB),
        shared(&["workspace", "create"], "workspace_create", L::VCPUS),
        shared(&["workspace", "create"], "workspace_create", L::MEM_MIB),
        shared(&["workspace", "create"], "workspace_create", L::DISK_MIB),
        shared(
            &["workspace", "create"],
            "workspace_create",
            L::WORKSPACE_TTL_SECONDS,
        ),
        shared(&["workspace", "exec"], "workspace_exec", L::TIMEOUT_SECONDS),
        shared(&["workspace", "exec"], "workspace_exec", L::OUTPUT_BYTES),
        shared(&["workspace", "logs"], "workspace_logs", L::LOGS_TAIL),
        shared(
            &["workspace", "logs"],
            "workspace_logs",
            L::LOGS_OUTPUT_BYTES,
        ),
        shared(
            &["workspace", "file", "list"],
            "workspace_file_list",
            L::LIST_ENTRIES,
        ),
        shared(
            &["workspace", "file", "read"],
            "workspace_file_read",
            L::FILE_READ_BYTES,
        ),
        shared(
            &["workspace", "file", "write"],
            "workspace_file_write",
            L::FILE_WRITE_BYTES,
        ),
        shared(&["workspace", "diff"], "workspace_diff", L::DIFF_ENTRIES),
        shared(
            &["workspace", "diff"],
            "workspace_diff",
            L::DIFF_PATCH_BYTES,
        ),
    ];
    for case in &cases {
        let (arg, default, min, max) = &case.bound;
        let o = home.cmd().args(case.cli).arg("--help").output().unwrap();
        let help = common::stdout(ok(&o));
        let flag = arg.replace('_', "-");
        assert_eq!(
            cli_shows(&help, &flag),
            (default.clone(), min.clone(), max.clone()),
            "pyro {} --{flag}",
            case.cli.join(" ")
        );
        let tool = tools
            .iter()
            .find(|t| t.name == case.tool)
            .unwrap_or_else(|| panic!("no tool {}", case.tool));
        let prop = &tool.input_schema["properties"][*arg];
        let shown = |key: &str| {
            prop.get(key)
                .unwrap_or_else(|| panic!("{}.{arg} has no {key}: {prop}", case.tool))
                .to_string()
        };
        assert_eq!(
            (shown("default"), shown("minimum"), shown("maximum")),
            (default.clone(), min.clone(), max.clone()),
            "{}.{arg}",
            case.tool
        );
    }
    client.cancel().await.unwrap();
}

/// Replaces the values of `keys` (at any depth) with a placeholder: what
/// differs between two calls by nature (ids, times, sequence numbers).
fn mask(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if keys.contains(&k.as_str()) {
                    *x = json!("<masked>");
                } else {
                    mask(x, keys);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| mask(x, keys)),
        _ => {}
    }
}

fn same(what: &str, mut cli: Value, mut mcp: Value, volatile: &[&str]) {
    mask(&mut cli, volatile);
    mask(&mut mcp, volatile);
    assert_eq!(
        cli, mcp,
        "{what}: the CLI's --json and the MCP result differ\nCLI: {cli:#}\nMCP: {mcp:#}"
    );
}

fn cli_json(home: &Home, args: &[&str]) -> Value {
    json(ok(&ws(home, args)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_json_and_mcp_structured_content_are_one_document() {
    require_debian12();
    let home = Home::new();
    let client = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let times = [
        "created_at",
        "last_activity_at",
        "expires_at",
        "duration_ms",
    ];

    // create: one each, same arguments.
    let a = cli_json(
        &home,
        &[
            "create",
            "debian:12",
            "--json",
            "--name",
            "twin",
            "--label",
            "k=v",
        ],
    );
    let b = mcp_support::ok(
        &client,
        "workspace_create",
        json!({"name": "twin", "labels": {"k": "v"}}),
    )
    .await;
    let mut volatile = times.to_vec();
    volatile.push("workspace_id");
    same("create", a.clone(), b.clone(), &volatile);
    let id = a["workspace_id"].as_str().unwrap().to_owned();
    let other = b["workspace_id"].as_str().unwrap().to_owned();

    // status of one workspace, through both doors.
    let s = cli_json(&home, &["status", &id, "--json"]);
    let m = mcp_support::ok(&client, "workspace_status", json!({"workspace_id": id})).await;
    same("status", s, m, &times);

    // exec: the same command on the same workspace.
    let script = "echo out; echo err >&2; printf 'a b' > f.txt; exit 3";
    let o = ws(&home, &["exec", &id, "--json", "--", script]);
    assert_eq!(o.status.code(), Some(3));
    let e = json(&o);
    let m = mcp_support::ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": script}),
    )
    .await;
    assert_eq!(e["stdout"], "out\n");
    assert_eq!(m["exit_code"], 3);
    let mut volatile = times.to_vec();
    volatile.push("sequence");
    same("exec", e, m, &volatile);

    // A cut result: the same cap through both doors.
    let o = ws(
        &home,
        &[
            "exec",
            &id,
            "--json",
            "--max-output-bytes",
            "3",
            "--",
            "echo 12345",
        ],
    );
    let e = json(ok(&o));
    let m = mcp_support::ok(
        &client,
        "workspace_exec",
        json!({"workspace_id": id, "command": "echo 12345", "max_output_bytes": 3}),
    )
    .await;
    assert_eq!(
        (e["stdout"].as_str(), e["truncated"].as_bool()),
        (Some("123"), Some(true))
    );
    same("exec, cut", e, m, &volatile);

    // Edits: a file write and a patch, each done once per door on a file
    // of its own, so the documents differ only in the path.
    let w = cli_json(
        &home,
        &["file", "write", &id, "w.txt", "--text", "hi", "--json"],
    );
    let m = mcp_support::ok(
        &client,
        "workspace_file_write",
        json!({"workspace_id": id, "path": "w.txt", "text": "hi"}),
    )
    .await;
    // The second write replaces what the first created.
    assert_eq!(
        (w["created"].as_bool(), m["created"].as_bool()),
        (Some(true), Some(false))
    );
    same("file write", w, m, &["created"]);
    let patch = |name: &str| format!("--- /dev/null\n+++ b/{name}\n@@ -0,0 +1 @@\n+new\n");
    let p = cli_json(
        &home,
        &["patch", "apply", &id, "--patch", &patch("p.txt"), "--json"],
    );
    let m = mcp_support::ok(
        &client,
        "workspace_patch_apply",
        json!({"workspace_id": id, "patch": patch("q.txt")}),
    )
    .await;
    assert_eq!(p["changed"], true);
    same("patch apply", p, m, &["path"]);

    // diff, file list and file read of the same changes.
    let d = cli_json(&home, &["diff", &id, "--json"]);
    let m = mcp_support::ok(&client, "workspace_diff", json!({"workspace_id": id})).await;
    assert_eq!(d["changed"], true);
    same("diff", d, m, &times);
    let l = cli_json(&home, &["file", "list", &id, "--json"]);
    let m = mcp_support::ok(&client, "workspace_file_list", json!({"workspace_id": id})).await;
    same("file list", l, m, &times);
    let r = cli_json(&home, &["file", "read", &id, "f.txt", "--json"]);
    let m = mcp_support::ok(
        &client,
        "workspace_file_read",
        json!({"workspace_id": id, "path": "f.txt"}),
    )
    .await;
    assert_eq!(r["content"], "a b");
    same("file read", r, m, &times);

    // logs and list.
    let g = cli_json(&home, &["logs", &id, "--json"]);
    let m = mcp_support::ok(&client, "workspace_logs", json!({"workspace_id": id})).await;
    assert_eq!(g["count"], 4);
    let mut volatile = times.to_vec();
    volatile.extend(["started_at", "finished_at"]);
    same("logs", g, m, &volatile);
    let c = cli_json(&home, &["list", "--json"]);
    let m = mcp_support::ok(&client, "workspace_list", json!({})).await;
    assert_eq!(c["count"], 2);
    same("list", c, m, &times);

    // A one-shot run.
    let script = "echo run; exit 5";
    let o = home
        .cmd()
        .env("PYRO_BACKEND", "host-compat")
        .args(["run", "debian:12", "--json", "--", script])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", common::stderr(&o));
    let r = json(&o);
    let m = mcp_support::ok(&client, "vm_run", json!({"command": script})).await;
    assert_eq!(r["stdout"], "run\n");
    let mut volatile = times.to_vec();
    volatile.extend(["vm_id", "boot_ms", "exec_ms"]);
    same("run", r, m, &volatile);

    // delete: one each.
    let c = cli_json(&home, &["delete", &id, "--json"]);
    let m = mcp_support::ok(&client, "workspace_delete", json!({"workspace_id": other})).await;
    same("delete", c, m, &["workspace_id"]);
    client.cancel().await.unwrap();
}

//! Interactive shells end to end on host-compat: the CLI in human and JSON
//! form, and the MCP tools.

mod common;
mod mcp_support;

use common::host_compat::{create, running, ws};
use common::{Home, json, ok, stderr, stdout};
use mcp_support::{connect, err_kind};
use serde_json::{Value, json};

/// Reads shell `sh` from `cursor` until its output holds `want` (plain);
/// returns everything read and the next cursor.
fn read_until(home: &Home, id: &str, sh: &str, cursor: u64, want: &str) -> (String, u64) {
    let (mut seen, mut cursor) = (String::new(), cursor);
    for _ in 0..40 {
        let c = cursor.to_string();
        let v = json(ok(&ws(
            home,
            &[
                "shell",
                "read",
                id,
                sh,
                "--cursor",
                &c,
                "--plain",
                "--wait-for-idle-ms",
                "300",
                "--json",
            ],
        )));
        seen.push_str(v["output"].as_str().unwrap());
        seen.push('\n');
        cursor = v["next_cursor"].as_u64().unwrap();
        if seen.contains(want) {
            return (seen, cursor);
        }
    }
    panic!("never saw {want:?} in {seen:?}");
}

fn write(home: &Home, id: &str, sh: &str, input: &str) {
    ok(&ws(home, &["shell", "write", id, sh, "--input", input]));
}

#[test]
fn shells_keep_state_render_screens_report_drops_signals_and_endings() {
    let home = Home::new();
    let id = create(&home, &[]);
    let a = stdout(ok(&ws(&home, &["shell", "open", &id, "--id-only"])))
        .trim()
        .to_owned();
    let b = stdout(ok(&ws(
        &home,
        &["shell", "open", &id, "--cwd", "/tmp", "--id-only"],
    )))
    .trim()
    .to_owned();
    assert_ne!(a, b);
    // State stays between writes; two shells are apart.
    write(&home, &id, &a, "cd /tmp && export X=42");
    write(&home, &id, &a, "echo \"[$PWD:$X]\"");
    let (_, ca) = read_until(&home, &id, &a, 0, "[/tmp:42]");
    write(&home, &id, &b, "echo \"[$PWD:${X:-unset}]\"");
    read_until(&home, &id, &b, 0, "[/tmp:unset]");
    // Plain output is the screen: a redrawn line reads as its last state.
    write(&home, &id, &a, "printf 'a\\rb\\n'");
    let (seen, ca) = read_until(&home, &id, &a, ca, "\nb\n");
    assert!(!seen.contains("\na\n"), "{seen:?}");
    // A program is interrupted, and the shell goes on.
    write(&home, &id, &a, "sleep 100");
    ok(&ws(&home, &["shell", "signal", &id, &a, "--signal", "INT"]));
    write(&home, &id, &a, "echo alive-after-int");
    let (_, ca) = read_until(&home, &id, &a, ca, "alive-after-int");
    // A resize reaches what runs in the shell, and bad sizes are refused.
    let v = json(ok(&ws(
        &home,
        &[
            "shell", "resize", &id, &a, "--cols", "100", "--rows", "40", "--json",
        ],
    )));
    assert_eq!(
        (v["cols"].as_u64(), v["rows"].as_u64()),
        (Some(100), Some(40)),
        "{v}"
    );
    let o = ws(
        &home,
        &["shell", "resize", &id, &a, "--cols", "5", "--rows", "40"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    write(&home, &id, &a, "echo \"[$(stty size)]\"");
    let (_, ca) = read_until(&home, &id, &a, ca, "[40 100]");
    // More output than the guest keeps: a read from the start says how
    // much it dropped.
    write(
        &home,
        &id,
        &a,
        "head -c 1500000 /dev/zero | tr '\\0' a; echo; echo END-OF-FLOOD",
    );
    read_until(&home, &id, &a, ca, "END-OF-FLOOD");
    let v = json(ok(&ws(
        &home,
        &["shell", "read", &id, &a, "--max-chars", "16", "--json"],
    )));
    assert!(v["dropped_bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["truncated"], true, "{v}");
    let o = ws(&home, &["shell", "read", &id, &a, "--max-chars", "16"]);
    assert!(stderr(&o).contains("were dropped"), "{}", stderr(&o));
    // A shell whose process exits says how.
    write(&home, &id, &b, "exit 3");
    let mut state = Value::Null;
    for _ in 0..50 {
        state = json(ok(&ws(&home, &["shell", "read", &id, &b, "--json"])));
        if state["state"] == "exited" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(state["exit_code"], 3, "{state}");
    let o = ws(
        &home,
        &["shell", "write", &id, &b, "--input", "true", "--json"],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("not running"), "{}", stdout(&o));
    // Bad input is refused with the rule.
    let o = ws(
        &home,
        &["shell", "signal", &id, &a, "--signal", "QUIT", "--json"],
    );
    assert_eq!(json(&o)["error"]["kind"], "invalid_argument");
    let o = ws(&home, &["shell", "open", &id, "--cols", "5", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A relative --cwd and --env; closing ends what the shell left running.
    ok(&ws(&home, &["exec", &id, "--", "mkdir -p sub"]));
    let c = stdout(ok(&ws(
        &home,
        &[
            "shell",
            "open",
            &id,
            "--cwd",
            "sub",
            "--env",
            "FOO=bar",
            "--id-only",
        ],
    )))
    .trim()
    .to_owned();
    write(&home, &id, &c, "sleep 1000 & echo \"[$PWD:$FOO]\"");
    read_until(&home, &id, &c, 0, "[/workspace/sub:bar]");
    ok(&ws(&home, &["shell", "close", &id, &c]));
    assert_eq!(running(&home, &id, "sleep 1000"), "0\n");
    // Listing, closing, and what a stop does to shells.
    let l = json(ok(&ws(&home, &["shell", "list", &id, "--json"])));
    assert_eq!(l["count"], 2, "{l}");
    let v = json(ok(&ws(&home, &["shell", "close", &id, &b, "--json"])));
    assert_eq!(v["closed"], true, "{v}");
    let o = ws(&home, &["shell", "read", &id, &b, "--json"]);
    assert_eq!(json(&o)["error"]["kind"], "not_found");
    ok(&ws(&home, &["stop", &id]));
    // Stopped: a shell op says the shell ended with the workspace; closing
    // a shell it never had says where to look.
    let o = ws(&home, &["shell", "read", &id, &a, "--json"]);
    assert!(
        stdout(&o).contains(&format!("shell {a} ended when the workspace stopped")),
        "{}",
        stdout(&o)
    );
    let o = ws(&home, &["shell", "close", &id, "nosuch", "--json"]);
    assert_eq!(json(&o)["error"]["kind"], "not_found", "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("pyro workspace shell list {id}")),
        "{}",
        stdout(&o)
    );
    ok(&ws(&home, &["start", &id]));
    let l = json(ok(&ws(&home, &["shell", "list", &id, "--json"])));
    assert_eq!(l["shells"][0]["state"], "ended", "{l}");
    assert!(
        l["shells"][0]["ended_reason"]
            .as_str()
            .unwrap()
            .contains("stopped"),
        "{l}"
    );
    let o = ws(
        &home,
        &["shell", "write", &id, &a, "--input", "true", "--json"],
    );
    assert_eq!(json(&o)["error"]["kind"], "wrong_state", "{}", stdout(&o));
    // For people: the ended shell's line says why; a new shell's id goes to
    // stdout and its description to stderr.
    let listed = stdout(ok(&ws(&home, &["shell", "list", &id])));
    assert!(
        listed.starts_with(&format!("{a}  ended")) && listed.contains("stopped"),
        "{listed}"
    );
    let opened = ws(&home, &["shell", "open", &id]);
    let o = ok(&opened);
    let d = stdout(o).trim().to_owned();
    assert!(!d.is_empty() && !d.contains(' '), "{d:?}");
    assert!(stderr(o).contains(&d), "{}", stderr(o));
    ok(&ws(&home, &["shell", "close", &id, &a]));
    ok(&ws(&home, &["shell", "close", &id, &d]));
    assert_eq!(
        stdout(ok(&ws(&home, &["shell", "list", &id]))),
        format!("Workspace {id} has no shells.\n")
    );
    ok(&ws(&home, &["delete", &id]));
}

/// Reads shell `sh` over MCP from `cursor` (moved past what was read) until
/// `want` shows, at most `tries` reads; `extra` adds arguments to each read.
/// Everything read, which must hold `want`.
async fn mcp_read_until(
    client: &mcp_support::Client,
    (id, sh): (&str, &str),
    cursor: &mut u64,
    extra: Value,
    (want, tries): (&str, usize),
) -> String {
    let mut seen = String::new();
    for _ in 0..tries {
        let mut args =
            json!({"workspace_id": id, "shell_id": sh, "cursor": *cursor, "wait_for_idle_ms": 300});
        if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        let r = mcp_support::ok(client, "shell_read", args).await;
        seen.push_str(r["output"].as_str().unwrap());
        *cursor = r["next_cursor"].as_u64().unwrap();
        if seen.contains(want) {
            return seen;
        }
    }
    panic!("never saw {want:?} in {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shells_over_mcp() {
    let home = Home::new();
    let client = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let w = mcp_support::ok(&client, "workspace_create", json!({})).await;
    let id = w["workspace_id"].as_str().unwrap().to_owned();
    let s = mcp_support::ok(&client, "shell_open", json!({"workspace_id": id})).await;
    let sh = s["shell_id"].as_str().unwrap().to_owned();
    assert_eq!(s["state"], "running");
    mcp_support::ok(
        &client,
        "shell_write",
        json!({"workspace_id": id, "shell_id": sh, "input": "echo $((6*7))"}),
    )
    .await;
    let mut cursor = 0;
    mcp_read_until(
        &client,
        (&id, &sh),
        &mut cursor,
        json!({"plain": true}),
        ("\n42", 40),
    )
    .await;
    let l = mcp_support::ok(&client, "shell_list", json!({"workspace_id": id})).await;
    assert_eq!(l["count"], 1);
    // A read from a cursor the guest no longer holds says what was dropped.
    mcp_support::ok(
        &client,
        "shell_write",
        json!({"workspace_id": id, "shell_id": sh, "input": "head -c 1200000 /dev/zero | tr '\\0' b; echo; echo FLOOD-DONE"}),
    )
    .await;
    let mut flood = String::new();
    for _ in 0..60 {
        let r = mcp_support::ok(
            &client,
            "shell_read",
            json!({"workspace_id": id, "shell_id": sh, "cursor": cursor, "wait_for_idle_ms": 300, "max_chars": 1048576}),
        )
        .await;
        flood.push_str(r["output"].as_str().unwrap());
        cursor = r["next_cursor"].as_u64().unwrap();
        if flood.contains("FLOOD-DONE\r\n") {
            break;
        }
    }
    let r = mcp_support::ok(
        &client,
        "shell_read",
        json!({"workspace_id": id, "shell_id": sh, "cursor": 0, "max_chars": 10}),
    )
    .await;
    assert!(r["dropped_bytes"].as_u64().unwrap() > 0, "{r}");
    let e = err_kind(
        &client,
        "shell_read",
        json!({"workspace_id": id, "shell_id": sh, "cursor": cursor + 1000}),
        "invalid_argument",
    )
    .await;
    assert!(e.contains("cursor: "), "{e}");
    let e = err_kind(
        &client,
        "shell_read",
        json!({"workspace_id": id, "shell_id": "nope"}),
        "not_found",
    )
    .await;
    assert!(e.contains("shell_list"), "{e}");
    // A signal reaches what runs in the foreground: an interrupted sleep
    // gives the prompt back.
    mcp_support::ok(
        &client,
        "shell_write",
        json!({"workspace_id": id, "shell_id": sh, "input": "echo ST''ARTED; sleep 600"}),
    )
    .await;
    // Signalled once the command runs (its output, not the echoed input,
    // says so): a signal at the prompt would leave the sleep to run.
    mcp_read_until(
        &client,
        (&id, &sh),
        &mut cursor,
        json!({}),
        ("STARTED\r\n", 60),
    )
    .await;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let v = mcp_support::ok(
        &client,
        "shell_signal",
        json!({"workspace_id": id, "shell_id": sh, "signal": "INT"}),
    )
    .await;
    assert_eq!(v["state"], "running", "{v}");
    mcp_support::ok(
        &client,
        "shell_write",
        json!({"workspace_id": id, "shell_id": sh, "input": "echo AFTER-$?"}),
    )
    .await;
    mcp_read_until(
        &client,
        (&id, &sh),
        &mut cursor,
        json!({}),
        ("AFTER-130", 60),
    )
    .await;
    let c = mcp_support::ok(
        &client,
        "shell_close",
        json!({"workspace_id": id, "shell_id": sh}),
    )
    .await;
    assert_eq!(c["closed"], true);
    mcp_support::ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
}

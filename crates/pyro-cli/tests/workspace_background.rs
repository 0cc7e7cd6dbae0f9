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

/// One waiter per background command: a second wait is refused (busy), a
/// cancel while another call waits ends the command and that call reports
/// it; a stopped workspace's command is told of in words that point at the
/// log.
#[test]
fn a_second_waiter_is_refused_and_a_cancel_ends_the_first_wait() {
    let home = Home::new();
    let id = create(&home, &[]);
    let v = json(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--detach",
            "--json",
            "--",
            "echo up; sleep 300",
        ],
    )));
    let seq = v["sequence"].to_string();
    let waiter = std::process::Command::new(common::pyro_bin())
        .env("PYRO_HOME", home.path())
        .env("PYRO_BACKEND", "host-compat")
        .args([
            "workspace",
            "exec-wait",
            &id,
            &seq,
            "--wait-seconds",
            "60",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed if the test fails before it ends.
    let mut waiter = KillOnDrop(Some(waiter));
    // The first waiter holds the command once its lock file is locked:
    // seen in /proc/locks (taking the lock here, even to probe, would race
    // the waiter for it).
    let lock = home
        .path()
        .join("workspaces")
        .join(&id)
        .join(format!("commands/{:06}.lock", seq.parse::<u64>().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held = std::fs::metadata(&lock).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            let inode = format!(":{} ", m.ino());
            std::fs::read_to_string("/proc/locks")
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains("FLOCK") && l.contains(&inode))
        });
        if held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the waiter never held {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = ws(
        &home,
        &["exec-wait", &id, &seq, "--wait-seconds", "1", "--json"],
    );
    assert_eq!(
        json(&second)["error"]["kind"],
        "busy",
        "{}",
        stdout(&second)
    );
    assert!(
        stdout(&second).contains("another call is already waiting for command"),
        "{}",
        stdout(&second)
    );
    let o = ws(&home, &["exec-cancel", &id, &seq, "--json"]);
    assert_eq!(json(&o)["error"]["kind"], "busy", "{}", stdout(&o));
    assert!(
        stdout(&o).contains("was cancelled; the call already waiting for it reports how it ended"),
        "{}",
        stdout(&o)
    );
    let out = waiter.0.take().unwrap().wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["exit_code"].as_i64()),
        (Some("finished"), Some(137)),
        "{v}"
    );

    // Stopped: what ran in the background ended with it; the log has it.
    let v = json(ok(&ws(
        &home,
        &["exec", &id, "--detach", "--json", "--", "sleep 300"],
    )));
    let seq = v["sequence"].to_string();
    ok(&ws(&home, &["stop", &id]));
    let o = ws(&home, &["exec-wait", &id, &seq, "--json"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("ended with the workspace's VM")
            && stdout(&o).contains(&format!("pyro workspace logs {id}")),
        "{}",
        stdout(&o)
    );
    ok(&ws(&home, &["delete", &id]));
}

/// A child killed and reaped when dropped unless taken.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the command log could not keep, it says: output the guest dropped
/// before a background command was read, and output past the log's cap.
#[test]
fn the_log_says_what_it_could_not_keep() {
    let home = Home::new();
    let id = create(&home, &[]);
    // 3 MiB in the background, unread until it ended: the guest holds 2 MiB
    // of it. (It starts once told to, so the detaching call never sees it
    // end: that call would read it, and take it out of the background.)
    let v = json(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--detach",
            "--json",
            "--",
            "while [ ! -e /tmp/go ]; do sleep 0.05; done; head -c 3145728 /dev/zero; \
             touch /tmp/finished",
        ],
    )));
    assert_eq!(v["state"], "running", "{v}");
    let seq = v["sequence"].to_string();
    ok(&ws(&home, &["exec", &id, "--", "touch /tmp/go"]));
    // Ended (its marker is there) before anything read it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stdout(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "test -e /tmp/finished && echo yes || true",
        ],
    ))) != "yes\n"
    {
        assert!(Instant::now() < deadline, "the command never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&ws(&home, &["exec-wait", &id, &seq, "--json"]));
    let l = json(ok(&ws(&home, &["logs", &id, "--sequence", &seq, "--json"])));
    let e = &l["entries"][0];
    assert_eq!(e["log_truncated"], true, "{l}");
    assert!(
        e["log_error"]
            .as_str()
            .unwrap_or_default()
            .contains("the guest dropped 1048576 bytes of stdout"),
        "{l}"
    );
    // Past the log's 16 MiB cap: the call gets what it asked for, the log
    // keeps the cap and says it was cut.
    let o = ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--max-output-bytes",
            "1024",
            "--json",
            "--",
            "head -c 17000000 /dev/zero",
        ],
    ))
    .clone();
    let v = json(&o);
    let seq = v["sequence"].to_string();
    let l = json(ok(&ws(&home, &["logs", &id, "--sequence", &seq, "--json"])));
    assert_eq!(l["entries"][0]["log_truncated"], true, "{l}");
    ok(&ws(&home, &["delete", &id]));
}

//! Snapshots of the whole disk, reset to a snapshot, and forks, end to end
//! on host-compat: the CLI in human and JSON form, and the MCP tools.

mod common;
mod mcp_support;

use common::host_compat::{create, ws};
use common::{Home, json, ok, stderr, stdout};
use mcp_support::{connect, err_kind};
use serde_json::{Value, json};

fn sh(home: &Home, id: &str, script: &str) -> String {
    stdout(ok(&ws(home, &["exec", id, "--", script])))
}

/// A failing `pyro workspace` call: its exit status and JSON error.
fn fails(home: &Home, args: &[&str], code: i32) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let o = ws(home, &args);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    v["error"].clone()
}

#[test]
fn snapshots_cover_the_whole_disk_and_reset_returns_to_them() {
    let home = Home::new();
    let id = create(&home, &[]);
    sh(
        &home,
        &id,
        "echo tool > /usr/local/bin/tool1 && echo one > /workspace/a.txt",
    );
    let s = json(ok(&ws(
        &home,
        &["snapshot", "create", &id, "cp1", "--json"],
    )));
    assert_eq!(
        (
            s["snapshot_name"].as_str(),
            s["kind"].as_str(),
            s["deletable"].as_bool()
        ),
        (Some("cp1"), Some("named"), Some(true))
    );
    assert!(s["size_bytes"].as_u64().unwrap() > 0, "{s}");
    sh(
        &home,
        &id,
        "rm /usr/local/bin/tool1 && echo two > /workspace/a.txt && echo x > /etc/edited",
    );
    // A stopped workspace is snapshotted too.
    ok(&ws(&home, &["stop", &id]));
    ok(&ws(&home, &["snapshot", "create", &id, "stopped.1"]));
    ok(&ws(&home, &["start", &id]));

    let l = json(ok(&ws(&home, &["snapshot", "list", &id, "--json"])));
    let names: Vec<&str> = l["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["baseline", "stopped.1", "cp1"], "{l}");
    assert_eq!(
        (l["count"].as_u64(), l["limit"].as_u64()),
        (Some(3), Some(16))
    );
    assert_eq!(l["snapshots"][0]["deletable"], false);
    let human = stdout(ok(&ws(&home, &["snapshot", "list", &id])));
    assert!(human.starts_with("NAME"), "{human}");
    assert!(
        human.lines().nth(1).unwrap().starts_with("baseline "),
        "{human}"
    );

    // Reset to cp1: the tool outside /workspace is back, later edits gone;
    // the history is cleared and the result says so.
    sh(&home, &id, "true");
    let r = json(ok(&ws(
        &home,
        &["reset", &id, "--snapshot", "cp1", "--json"],
    )));
    assert_eq!(
        r["workspace_reset"],
        json!({"snapshot_name": "cp1", "kind": "named", "cleared": ["command history"]})
    );
    assert_eq!(r["command_count"], 0);
    assert_eq!(
        sh(
            &home,
            &id,
            "cat /usr/local/bin/tool1 /workspace/a.txt; ls /etc/edited 2>&1 || true"
        ),
        "tool\none\nls: cannot access '/etc/edited': No such file or directory\n"
    );
    let human = stdout(ok(&ws(&home, &["reset", &id, "--snapshot", "stopped.1"])));
    assert!(
        human.contains("Reset to: stopped.1 (named snapshot); cleared: command history"),
        "{human}"
    );
    assert_eq!(
        sh(&home, &id, "cat /etc/edited /workspace/a.txt"),
        "x\ntwo\n"
    );
    // Back to the baseline: all of it is gone; the snapshots stay.
    ok(&ws(&home, &["reset", &id]));
    assert_eq!(
        sh(
            &home,
            &id,
            "ls -A /usr/local/bin /workspace /etc/edited 2>&1 | grep -v '^/' | grep -c . || true"
        ),
        "1\n",
        "only ls's complaint about /etc/edited is left"
    );
    let l = json(ok(&ws(&home, &["snapshot", "list", &id, "--json"])));
    assert_eq!(l["count"], 3);

    // Delete, then it is gone from list and reset.
    let d = json(ok(&ws(
        &home,
        &["snapshot", "delete", &id, "cp1", "--json"],
    )));
    assert_eq!(
        d,
        json!({"workspace_id": id, "snapshot_name": "cp1", "deleted": true})
    );
    let e = fails(&home, &["reset", &id, "--snapshot", "cp1"], 1);
    assert_eq!(e["kind"], "not_found");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("has no snapshot \"cp1\"; its snapshots are: baseline, stopped.1"),
        "{e}"
    );
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

#[test]
fn snapshot_names_limits_and_errors() {
    let home = Home::new();
    let id = create(&home, &[]);
    for (name, kind, code, says) in [
        ("baseline", "invalid_argument", 2, "is reserved"),
        (".x", "invalid_argument", 2, "is not valid"),
        ("a/b", "invalid_argument", 2, "is not valid"),
    ] {
        let e = fails(&home, &["snapshot", "create", &id, name], code);
        assert_eq!(e["kind"], kind, "{name}: {e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{name}: {e}");
    }
    let e = fails(&home, &["snapshot", "delete", &id, "baseline"], 2);
    assert!(
        e["message"].as_str().unwrap().contains("cannot be deleted"),
        "{e}"
    );
    let e = fails(&home, &["snapshot", "delete", &id, "nope"], 1);
    assert_eq!(e["kind"], "not_found");
    let e = fails(&home, &["snapshot", "create", "0000000000000000", "x"], 1);
    assert_eq!(e["kind"], "not_found");
    for i in 0..16 {
        ok(&ws(&home, &["snapshot", "create", &id, &format!("s{i}")]));
    }
    let e = fails(&home, &["snapshot", "create", &id, "s0"], 1);
    assert_eq!(e["kind"], "conflict", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("pyro workspace snapshot delete"),
        "{e}"
    );
    let e = fails(&home, &["snapshot", "create", &id, "one-too-many"], 1);
    assert_eq!(e["kind"], "quota", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("keeps 16 snapshots"),
        "{e}"
    );
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

#[test]
fn forks_start_from_the_disk_or_a_snapshot_and_share_nothing() {
    let home = Home::new();
    let id = create(&home, &["--name", "origin", "--label", "k=v"]);
    sh(
        &home,
        &id,
        "echo tool > /usr/local/bin/tool1 && echo one > a.txt",
    );
    ok(&ws(&home, &["snapshot", "create", &id, "cp1"]));
    sh(&home, &id, "echo two > a.txt");

    let f = json(ok(&ws(
        &home,
        &["fork", &id, "--count", "2", "--name", "try", "--json"],
    )));
    assert_eq!(
        (f["origin_workspace_id"].as_str(), f["count"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
    assert_eq!(f["snapshot_name"], Value::Null);
    let forks: Vec<String> = f["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace_id"].as_str().unwrap().to_owned())
        .collect();
    let w = &f["workspaces"][1];
    assert_eq!(
        (
            w["name"].as_str(),
            w["labels"]["k"].as_str(),
            w["state"].as_str()
        ),
        (Some("try-2"), Some("v"), Some("started"))
    );
    assert_eq!(
        w["forked_from"],
        json!({"workspace_id": id, "snapshot_name": null})
    );
    // Each starts from the origin's disk at the fork, with that as its
    // baseline, and then goes its own way.
    for (i, fork) in forks.iter().enumerate() {
        assert_eq!(
            sh(&home, fork, "cat a.txt /usr/local/bin/tool1"),
            "two\ntool\n"
        );
        let d = json(ok(&ws(&home, &["diff", fork, "--json"])));
        assert_eq!(d["changed"], false, "{d}");
        sh(&home, fork, &format!("echo fork{i} > a.txt"));
    }
    assert_eq!(
        sh(&home, &id, "cat a.txt"),
        "two\n",
        "the origin is untouched"
    );
    assert_eq!(sh(&home, &forks[0], "cat a.txt"), "fork0\n");
    assert_eq!(sh(&home, &forks[1], "cat a.txt"), "fork1\n");
    let who = |w: &str| sh(&home, w, "echo $(hostname) $(cat /etc/machine-id)");
    let (a, b, o) = (who(&forks[0]), who(&forks[1]), who(&id));
    assert!(a != b && a != o && b != o, "{a} {b} {o}");
    for w in &forks {
        ok(&ws(&home, &["delete", w]));
    }

    // From a snapshot, by id only.
    let o = ws(&home, &["fork", &id, "--snapshot", "cp1", "--id-only"]);
    let fork = stdout(ok(&o)).trim().to_owned();
    assert_eq!(fork.len(), 16, "{fork}");
    assert_eq!(sh(&home, &fork, "cat a.txt"), "one\n");
    let st = json(ok(&ws(&home, &["status", &fork, "--json"])));
    assert_eq!(st["forked_from"]["snapshot_name"], "cp1");
    let human = stdout(ok(&ws(&home, &["status", &fork])));
    assert!(
        human.contains(&format!("Forked from: {id} (snapshot cp1)")),
        "{human}"
    );

    // All or none: more forks than the quota allows makes none.
    let e = fails(&home, &["fork", &id, "--count", "3"], 1);
    assert_eq!(e["kind"], "quota", "{e}");
    let l = json(ok(&ws(&home, &["list", "--json"])));
    assert_eq!(l["count"], 2, "{l}");
    let e = fails(&home, &["fork", &id, "--snapshot", "nope"], 1);
    assert_eq!(e["kind"], "not_found");
    let e = fails(&home, &["fork", &id, "--count", "0"], 2);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--count must be between 1 and 8"),
        "{e}"
    );
    for w in [&fork, &id] {
        ok(&ws(&home, &["delete", w]));
    }
    home.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_fork_tools_over_mcp() {
    common::require_debian12();
    let home = Home::new();
    let client = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let ok = mcp_support::ok;
    let w = ok(&client, "workspace_create", json!({})).await;
    let id = w["workspace_id"].as_str().unwrap().to_owned();
    ok(
        &client,
        "workspace_file_write",
        json!({"workspace_id": id, "path": "f.txt", "text": "one"}),
    )
    .await;
    let s = ok(
        &client,
        "snapshot_create",
        json!({"workspace_id": id, "snapshot_name": "cp1"}),
    )
    .await;
    assert_eq!(s["kind"], "named");
    ok(
        &client,
        "workspace_file_write",
        json!({"workspace_id": id, "path": "f.txt", "text": "two"}),
    )
    .await;
    let l = ok(&client, "snapshot_list", json!({"workspace_id": id})).await;
    assert_eq!(l["count"], 2);
    let f = ok(
        &client,
        "workspace_fork",
        json!({"workspace_id": id, "snapshot": "cp1"}),
    )
    .await;
    let fork = f["workspaces"][0]["workspace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = ok(
        &client,
        "workspace_file_read",
        json!({"workspace_id": fork, "path": "f.txt"}),
    )
    .await;
    assert_eq!(r["content"], "one");
    let r = ok(
        &client,
        "workspace_reset",
        json!({"workspace_id": id, "snapshot": "cp1"}),
    )
    .await;
    assert_eq!(r["workspace_reset"]["snapshot_name"], "cp1");
    let e = err_kind(
        &client,
        "snapshot_create",
        json!({"workspace_id": id, "snapshot_name": "cp1"}),
        "conflict",
    )
    .await;
    assert!(e.contains("snapshot_delete"), "{e}");
    let e = err_kind(
        &client,
        "workspace_reset",
        json!({"workspace_id": id, "snapshot": "gone"}),
        "not_found",
    )
    .await;
    assert!(e.contains("its snapshots are: baseline, cp1"), "{e}");
    err_kind(
        &client,
        "workspace_fork",
        json!({"workspace_id": id, "count": 9}),
        "invalid_argument",
    )
    .await;
    let d = ok(
        &client,
        "snapshot_delete",
        json!({"workspace_id": id, "snapshot_name": "cp1"}),
    )
    .await;
    assert_eq!(d["deleted"], true);
    for w in [&fork, &id] {
        ok(&client, "workspace_delete", json!({"workspace_id": w})).await;
    }
    client.cancel().await.unwrap();
    home.assert_clean();
}

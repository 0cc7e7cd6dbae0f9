//! Offline disk tools on a stopped host-compat workspace: the merged view
//! (whiteouts, opaque directories, symlinks never followed), reads and
//! exports as tar and ext4, through the CLI and the MCP tools.

mod common;
mod mcp_support;

use common::host_compat::{create, ws};
use common::{Home, json, ok, stderr, stdout};
use mcp_support::{connect, err_kind};
use serde_json::{Value, json};

fn sh(home: &Home, id: &str, script: &str) -> String {
    stdout(ok(&ws(home, &["exec", id, "--", script])))
}

fn fails(home: &Home, args: &[&str], code: i32) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let o = ws(home, &args);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["error"].clone()
}

fn names(list: &Value) -> Vec<String> {
    list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

/// A stopped workspace whose disk has a new file, a deleted file of the
/// environment (a whiteout), a directory replaced (opaque) and links.
fn prepared(home: &Home) -> String {
    let id = create(home, &[]);
    sh(
        home,
        &id,
        "echo hello > /workspace/a.txt && mkdir -p /workspace/d && echo deep > /workspace/d/b.txt \
         && ln -s /etc/passwd /workspace/out && ln -s d /workspace/in \
         && rm /etc/debian_version \
         && rm -rf /usr/share/doc/apt && mkdir /usr/share/doc/apt && echo mine > /usr/share/doc/apt/only",
    );
    ok(&ws(home, &["stop", &id]));
    id
}

#[test]
fn disk_tools_show_the_guest_view_of_a_stopped_workspace() {
    let home = Home::new();
    let id = create(&home, &[]);
    let e = fails(&home, &["disk", "list", &id], 1);
    assert_eq!(e["kind"], "wrong_state", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("pyro workspace stop"),
        "{e}"
    );
    ok(&ws(&home, &["delete", &id]));
    let id = prepared(&home);

    let l = json(ok(&ws(&home, &["disk", "list", &id, "--json"])));
    assert_eq!(l["path"], "/workspace");
    assert_eq!(
        names(&l),
        [
            "/workspace/a.txt",
            "/workspace/d",
            "/workspace/in",
            "/workspace/out"
        ]
    );
    let out = &l["entries"][3];
    assert_eq!(
        (out["kind"].as_str(), out["link_target"].as_str()),
        (Some("symlink"), Some("/etc/passwd"))
    );
    let r = json(ok(&ws(
        &home,
        &["disk", "list", &id, "--recursive", "--json"],
    )));
    assert!(names(&r).contains(&"/workspace/d/b.txt".to_owned()), "{r}");
    // The whiteout hides the environment's file; the rest of /etc shows.
    let etc = names(&json(ok(&ws(
        &home,
        &["disk", "list", &id, "/etc", "--json"],
    ))));
    assert!(etc.contains(&"/etc/passwd".to_owned()), "{etc:?}");
    assert!(!etc.contains(&"/etc/debian_version".to_owned()), "{etc:?}");
    // The replaced directory shows only what the workspace put there.
    let apt = json(ok(&ws(
        &home,
        &["disk", "list", &id, "/usr/share/doc/apt", "--json"],
    )));
    assert_eq!(names(&apt), ["/usr/share/doc/apt/only"]);

    // Reads: text, the environment's files, and what is refused.
    let o = ws(&home, &["disk", "read", &id, "a.txt"]);
    assert_eq!(stdout(ok(&o)), "hello\n");
    let p = json(ok(&ws(
        &home,
        &["disk", "read", &id, "/etc/passwd", "--json"],
    )));
    assert!(p["content"].as_str().unwrap().starts_with("root:"), "{p}");
    let e = fails(&home, &["disk", "read", &id, "/etc/debian_version"], 1);
    assert_eq!(e["kind"], "not_found");
    let e = fails(
        &home,
        &["disk", "read", &id, "/usr/share/doc/apt/copyright"],
        1,
    );
    assert_eq!(e["kind"], "not_found");
    let e = fails(&home, &["disk", "read", &id, "out"], 2);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("is a symlink to /etc/passwd"),
        "{e}"
    );
    let e = fails(&home, &["disk", "read", &id, "in/b.txt"], 2);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("never follow a link"),
        "{e}"
    );
    let e = fails(&home, &["disk", "read", &id, "../etc/passwd"], 2);
    assert!(e["message"].as_str().unwrap().contains("`..`"), "{e}");
    let e = fails(
        &home,
        &["disk", "read", &id, "/etc/passwd", "--max-bytes", "3"],
        2,
    );
    assert_eq!(e["kind"], "too_large");

    // Exports: a tar of /workspace, an ext4 image of it, never over a path.
    let tar = home.path().join("ws.tar");
    let v = json(ok(&ws(
        &home,
        &[
            "disk",
            "export",
            &id,
            "--path",
            "/workspace",
            "--output",
            tar.to_str().unwrap(),
            "--json",
        ],
    )));
    assert_eq!(
        (v["disk_format"].as_str(), v["entry_count"].as_u64()),
        (Some("tar"), Some(5))
    );
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&tar)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for n in ["a.txt", "d/b.txt", "out", "in"] {
        assert!(
            listing.lines().any(|l| l.trim_end_matches('/') == n),
            "{n}: {listing}"
        );
    }
    let img = home.path().join("ws.ext4");
    let human = stdout(ok(&ws(
        &home,
        &[
            "disk",
            "export",
            &id,
            "--path",
            "/workspace",
            "--output",
            img.to_str().unwrap(),
            "--format",
            "ext4",
        ],
    )));
    assert!(human.contains("ext4, 5 entries"), "{human}");
    let cat = std::process::Command::new("debugfs")
        .args(["-R", "cat /d/b.txt"])
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "deep\n");
    let e = fails(
        &home,
        &["disk", "export", &id, "--output", tar.to_str().unwrap()],
        2,
    );
    assert!(
        e["message"].as_str().unwrap().contains("already exists"),
        "{e}"
    );
    // An output in a directory that is not there, a directory read as a
    // file, and a path through a file: refused, saying what to do.
    let nowhere = home.path().join("nodir/x.tar");
    for (args, says) in [
        (
            vec!["disk", "export", &id, "--output", nowhere.to_str().unwrap()],
            "is not a directory; create it first",
        ),
        (
            vec!["disk", "read", &id, "/workspace/d"],
            "is not a regular file; list it with `pyro workspace disk list`",
        ),
        (
            vec!["disk", "list", &id, "/workspace/a.txt/x"],
            "which is a file on the workspace's disk, not a directory",
        ),
    ] {
        let e = fails(&home, &args, 2);
        assert!(e["message"].as_str().unwrap().contains(says), "{e}");
    }
    assert!(!home.path().join("nodir").exists());
    // Nothing was left beside the outputs.
    let left: Vec<String> = std::fs::read_dir(home.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tools_over_mcp() {
    let home = Home::new();
    let id = prepared(&home);
    let client = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let ok = mcp_support::ok;
    let l = ok(
        &client,
        "workspace_disk_list",
        json!({"workspace_id": id, "path": "/workspace"}),
    )
    .await;
    assert_eq!(l["total"], 4);
    let r = ok(
        &client,
        "workspace_disk_read",
        json!({"workspace_id": id, "path": "a.txt"}),
    )
    .await;
    assert_eq!(r["content"], "hello\n");
    let v = ok(
        &client,
        "workspace_disk_export",
        json!({"workspace_id": id, "path": "/workspace", "output_path": "x.tar"}),
    )
    .await;
    assert_eq!(v["disk_format"], "tar");
    assert!(home.path().join("x.tar").is_file());
    ok(&client, "workspace_start", json!({"workspace_id": id})).await;
    let e = err_kind(
        &client,
        "workspace_disk_read",
        json!({"workspace_id": id, "path": "a.txt"}),
        "wrong_state",
    )
    .await;
    assert!(e.contains("workspace_stop"), "{e}");
    ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
    client.cancel().await.unwrap();
}

//! Snapshots, reset to a snapshot and forks on real Firecracker guests (the
//! `real-vm` group runs these one at a time, in the default shape): everything in one
//! workspace's life, to keep the boots few.

mod common;

use std::process::Output;

use common::{Home, json, ok, require_debian12, stdout};

fn ws(home: &Home, args: &[&str]) -> Output {
    home.cmd().arg("workspace").args(args).output().unwrap()
}

const VALUE: &str = "guest-s3cret-0451";

fn sh(home: &Home, id: &str, script: &str) -> String {
    stdout(ok(&ws(home, &["exec", id, "--", script])))
}

#[test]
fn real_vm_snapshot_reset_and_fork() {
    require_debian12();
    let home = Home::new();
    let secret = format!("API_TOKEN={VALUE}");
    let o = ws(
        &home,
        &["create", "debian:12", "--id-only", "--secret", &secret],
    );
    let id = stdout(ok(&o)).trim().to_owned();

    // The guest's command gets the secret; what it prints of it comes back
    // redacted, and nothing of it reaches the disk the snapshots, the fork
    // and the export below copy.
    let o = ws(
        &home,
        &[
            "exec",
            &id,
            "--secret-env",
            "API_TOKEN=TOKEN",
            "--",
            "echo \"$TOKEN\"; printf %s \"$TOKEN\" | base64",
        ],
    );
    let shown = stdout(ok(&o));
    assert!(shown.starts_with("[redacted:API_TOKEN]\n"), "{shown}");
    assert!(!common::secrets::shows(shown.as_bytes(), VALUE), "{shown}");
    // A service given it keeps its logs in the guest's memory.
    let v = json(ok(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "svc",
            "--secret-env",
            "API_TOKEN=T",
            "--ready-file",
            "/tmp/svc.up",
            "--json",
            "--",
            "sh",
            "-c",
            "echo \"svc $T\"; touch /tmp/svc.up; exec sleep 1000",
        ],
    )));
    assert_eq!(v["state"], "ready", "{v}");
    let l = json(ok(&ws(&home, &["service", "logs", &id, "svc", "--json"])));
    assert_eq!(l["stdout"], "svc [redacted:API_TOKEN]\n", "{l}");
    assert_eq!(
        sh(
            &home,
            &id,
            "ls /run/pyro/services/svc; ls /var/lib/pyro/services/svc 2>&1 | head -c 0; test -e /var/lib/pyro/services/svc || echo off-disk"
        ),
        "stderr\nstdout\noff-disk\n"
    );
    ok(&ws(&home, &["service", "stop", &id, "svc"]));

    // A tool outside /workspace, saved in cp1, then removed.
    sh(
        &home,
        &id,
        "printf '#!/bin/sh\\necho tool1\\n' > /usr/local/bin/tool1 && chmod +x /usr/local/bin/tool1",
    );
    let s = json(ok(&ws(
        &home,
        &["snapshot", "create", &id, "cp1", "--json"],
    )));
    let size = s["size_bytes"].as_u64().unwrap();
    // The copy follows what was written, never the 4 GiB disk.
    assert!(size > 0 && size < 512 << 20, "{s}");
    sh(&home, &id, "rm /usr/local/bin/tool1 && sync");
    assert_eq!(sh(&home, &id, "command -v tool1 || echo none"), "none\n");

    // Back to cp1: the tool is there again; back to the baseline: gone.
    let r = json(ok(&ws(
        &home,
        &["reset", &id, "--snapshot", "cp1", "--json"],
    )));
    assert_eq!(r["workspace_reset"]["snapshot_name"], "cp1");
    assert_eq!(r["execution_mode"], "guest_vsock");
    assert_eq!(sh(&home, &id, "tool1"), "tool1\n");
    ok(&ws(&home, &["reset", &id]));
    assert_eq!(sh(&home, &id, "command -v tool1 || echo none"), "none\n");

    // A fork of the stopped workspace: its own machine, its own writes.
    sh(
        &home,
        &id,
        "echo origin > a.txt && rm /etc/debian_version && ln -s /etc/passwd pw && sync",
    );
    let origin_host = sh(&home, &id, "hostname; cat /etc/machine-id");
    ok(&ws(&home, &["stop", &id]));

    // The stopped disk, read on the host without booting it.
    assert_eq!(
        stdout(ok(&ws(&home, &["disk", "read", &id, "a.txt"]))),
        "origin\n"
    );
    let gone = ws(
        &home,
        &["disk", "read", &id, "/etc/debian_version", "--json"],
    );
    assert_eq!(gone.status.code(), Some(1), "a whiteout hides the file");
    let err = serde_json::from_slice::<serde_json::Value>(&gone.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "not_found", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pyro workspace disk list"),
        "the error says how to see what is there: {err}"
    );
    let l = json(ok(&ws(&home, &["disk", "list", &id, "--json"])));
    let pw = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/workspace/pw")
        .unwrap();
    assert_eq!(pw["link_target"], "/etc/passwd");
    let img = home.path().join("ws.ext4");
    ok(&ws(
        &home,
        &[
            "disk",
            "export",
            &id,
            "--path",
            "/workspace",
            "--format",
            "ext4",
            "--output",
            img.to_str().unwrap(),
        ],
    ));
    // The image mounts read-only on the host and holds the same files.
    let mnt = home.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = std::process::Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(&img)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let content = std::fs::read_to_string(mnt.join("a.txt"));
    let link = std::fs::read_link(mnt.join("pw"));
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(content.unwrap(), "origin\n");
    assert_eq!(link.unwrap(), std::path::Path::new("/etc/passwd"));
    let f = json(ok(&ws(&home, &["fork", &id, "--json"])));
    assert_eq!(
        f["secrets_left_out"],
        serde_json::json!(["API_TOKEN"]),
        "{f}"
    );
    let fork = f["workspaces"][0]["workspace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // No form of the value on any file pyro keeps (its store aside): the
    // disks, the snapshot, the fork, the logs, the exported image.
    let leaked = common::secrets::leaks(home.path(), VALUE, &["secrets.json"]);
    assert!(leaked.is_empty(), "the secret is in {leaked:?}");
    assert_eq!(sh(&home, &fork, "cat a.txt"), "origin\n");
    let d = json(ok(&ws(&home, &["diff", &fork, "--json"])));
    assert_eq!(d["changed"], false, "the fork point is its baseline: {d}");
    sh(
        &home,
        &fork,
        "echo fork > a.txt && echo new > b.txt && sync",
    );
    let fork_host = sh(&home, &fork, "hostname; cat /etc/machine-id");
    ok(&ws(&home, &["delete", &fork]));
    ok(&ws(&home, &["start", &id]));
    assert_eq!(
        sh(&home, &id, "cat a.txt; ls b.txt 2>/dev/null || echo no-b"),
        "origin\nno-b\n"
    );
    assert_eq!(sh(&home, &id, "hostname; cat /etc/machine-id"), origin_host);
    let (o_lines, f_lines): (Vec<&str>, Vec<&str>) =
        (origin_host.lines().collect(), fork_host.lines().collect());
    assert_eq!((o_lines.len(), f_lines.len()), (2, 2));
    assert_ne!(o_lines[0], f_lines[0], "hostnames differ");
    assert_ne!(o_lines[1], f_lines[1], "machine ids differ");
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

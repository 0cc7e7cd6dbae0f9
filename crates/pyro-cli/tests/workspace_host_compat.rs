//! Every `pyro workspace` command end to end on the host-compat backend
//! (the same agent as in guests), human and `--json` output, and each kind
//! of bad input.

mod common;

use common::host_compat::{create, filters, seed_dir, ws};
use common::{Home, json, ok, require_debian12, stderr, stdout};

#[test]
fn create_status_list_update_delete() {
    let home = Home::new();
    let seed = seed_dir(home.path());
    let o = ok(&ws(
        &home,
        &[
            "create",
            "debian:12",
            "--seed-path",
            seed.to_str().unwrap(),
            "--name",
            "demo",
            "--label",
            "issue=42",
        ],
    ))
    .clone();
    insta::with_settings!({filters => filters(&home).iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>()}, {
        insta::assert_snapshot!("ws_create_human", stdout(&o));
    });
    let id = stdout(&o)
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();

    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    insta::assert_json_snapshot!("ws_status_json", st, {
        ".workspace_id" => "[id]",
        ".created_at" => "[time]",
        ".last_activity_at" => "[time]",
        ".expires_at" => "[time]",
        ".workspace_seed.source_path" => "[path]",
    });
    assert_eq!(
        st["expires_at"].as_f64().unwrap(),
        st["last_activity_at"].as_f64().unwrap() + 600.0
    );

    let second = create(&home, &["--name", "other"]);
    // The one used last comes first.
    ok(&ws(&home, &["status", &id]));
    let list = json(ok(&ws(&home, &["list", "--json"])));
    let ids: Vec<&str> = list["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), second.as_str()]);
    let human = stdout(ok(&ws(&home, &["list"])));
    insta::with_settings!({filters => filters(&home).iter().map(|(a, b)| (a.as_str(), b.as_str())).collect::<Vec<_>>()}, {
        insta::assert_snapshot!("ws_list_human", human);
    });

    let up = json(ok(&ws(
        &home,
        &[
            "update",
            &id,
            "--name",
            "renamed",
            "--label",
            "owner=alice",
            "--clear-label",
            "issue",
            "--json",
        ],
    )));
    assert_eq!(up["name"], "renamed");
    assert_eq!(up["labels"], serde_json::json!({"owner": "alice"}));
    let o = ws(&home, &["update", &id, "--name", "renamed"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the update changes nothing"),
        "{}",
        stderr(&o)
    );
    let o = ws(&home, &["update", &id]);
    assert!(stderr(&o).contains("nothing to update"), "{}", stderr(&o));
    // A started workspace is not started again.
    let o = ws(&home, &["start", &id]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("workspace {id} is started, not stopped")),
        "{}",
        stderr(&o)
    );
    let o = ws(
        &home,
        &["create", "debian:12", "--boot-timeout-seconds", "0"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--boot-timeout-seconds must be between 1 and 3600"),
        "{}",
        stderr(&o)
    );

    assert_eq!(
        stdout(ok(&ws(&home, &["delete", &id]))),
        format!("Deleted workspace {id}\n")
    );
    let d = json(ok(&ws(&home, &["delete", &second, "--json"])));
    assert_eq!(d["deleted"], true);
    assert_eq!(stdout(ok(&ws(&home, &["list"]))), "No workspaces.\n");
    home.assert_clean();
    assert!(
        !home
            .path()
            .join("workspaces")
            .read_dir()
            .unwrap()
            .any(|_| true)
    );
}

#[test]
fn seeding_keeps_modes_and_inside_links() {
    let home = Home::new();
    let seed = seed_dir(home.path());
    let id = create(&home, &["--seed-path", seed.to_str().unwrap()]);
    let o = ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "stat -c '%a %n' check.sh; readlink node_modules/.bin/cli; bin/check || true",
        ],
    ))
    .clone();
    assert_eq!(stdout(&o), "755 check.sh\n../pkg/cli.js\n");
    assert!(stderr(&o).contains("not fixed"));
    let list = json(ok(&ws(
        &home,
        &["file", "list", &id, "node_modules", "--recursive", "--json"],
    )));
    let entries = list["entries"].as_array().unwrap();
    let link = entries
        .iter()
        .find(|e| e["path"] == "/workspace/node_modules/.bin/cli")
        .unwrap();
    assert_eq!(
        (link["kind"].as_str(), link["link_target"].as_str()),
        (Some("symlink"), Some("../pkg/cli.js"))
    );
    // A tar seed, and git-tracked mode.
    let tar = home.path().join("seed.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tar)
        .arg("-C")
        .arg(&seed)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let id2 = create(&home, &["--seed-path", tar.to_str().unwrap()]);
    let st = json(ok(&ws(&home, &["status", &id2, "--json"])));
    assert_eq!(st["workspace_seed"]["mode"], "archive");
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &id2, "message.txt"]))),
        "broken\n"
    );
    let git = |args: &[&str]| {
        assert!(
            std::process::Command::new("git")
                .arg("-C")
                .arg(&seed)
                .args(args)
                .output()
                .unwrap()
                .status
                .success()
        )
    };
    git(&["init", "-q"]);
    git(&["add", "message.txt"]);
    let id3 = create(
        &home,
        &[
            "--seed-path",
            seed.to_str().unwrap(),
            "--seed-mode",
            "git-tracked",
        ],
    );
    let files = stdout(ok(&ws(
        &home,
        &["exec", &id3, "--", "find . -not -name . | sort"],
    )));
    assert_eq!(files, "./message.txt\n");
    for id in [id, id2, id3] {
        ok(&ws(&home, &["delete", &id]));
    }
    home.assert_clean();
}

#[test]
fn bad_seeds_create_nothing() {
    let home = Home::new();
    require_debian12();
    let bad = home.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("ok.txt"), "x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", bad.join("leak")).unwrap();
    let o = ws(
        &home,
        &["create", "debian:12", "--seed-path", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is a symlink to /etc/passwd outside"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(bad.join("leak")).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(bad.join("pipe"))
        .status()
        .unwrap();
    assert!(st.success());
    let o = ws(
        &home,
        &["create", "debian:12", "--seed-path", bad.to_str().unwrap()],
    );
    assert!(
        stderr(&o).contains("socket, device or FIFO"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(bad.join("pipe")).unwrap();
    // A tar with a hard link, one escaping with `..`, and an absolute link.
    let mk = |name: &str, build: &dyn Fn(&mut tar::Builder<std::fs::File>)| {
        let p = home.path().join(name);
        let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
        build(&mut b);
        b.finish().unwrap();
        p
    };
    let file = |b: &mut tar::Builder<std::fs::File>, name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &b"x"[..]).unwrap();
    };
    let link = |b: &mut tar::Builder<std::fs::File>, name: &str, target: &str, kind| {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(kind);
        b.append_link(&mut h, name, target).unwrap();
    };
    let hard = mk("hard.tar", &|b| {
        file(b, "a");
        link(b, "b", "a", tar::EntryType::Link);
    });
    let abs = mk("abs.tar", &|b| {
        link(b, "etc", "/etc", tar::EntryType::Symlink)
    });
    let mut raw = Vec::new();
    {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"../x.txt");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(&[b'x'; 512]);
        raw.extend_from_slice(&[0; 1024]);
    }
    let dotdot = home.path().join("dotdot.tar");
    std::fs::write(&dotdot, raw).unwrap();
    for (tar, msg) in [
        (&hard, "hard link"),
        (&abs, "points outside"),
        (&dotdot, "escapes the destination"),
    ] {
        let o = ws(
            &home,
            &["create", "debian:12", "--seed-path", tar.to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{msg}: {}", stderr(&o));
    }
    let o = ws(
        &home,
        &[
            "create",
            "debian:12",
            "--seed-path",
            home.path().join("missing").to_str().unwrap(),
        ],
    );
    assert!(
        stderr(&o).contains("missing does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(
        std::fs::read_dir(home.path().join("workspaces")).map_or(true, |mut d| d.next().is_none())
    );
    home.assert_clean();
}

#[test]
fn exec_cwd_env_stdin_caps_logs_and_timeout() {
    let home = Home::new();
    let id = create(&home, &[]);
    ok(&ws(&home, &["exec", &id, "--", "mkdir -p sub/dir"]));
    let o = ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--cwd",
            "sub/dir",
            "--env",
            "GREETING=hello world",
            "--",
            "printf '%s|' \"$GREETING\" \"$(pwd)\"",
        ],
    ))
    .clone();
    assert_eq!(stdout(&o), "hello world|/workspace/sub/dir|");
    let o = home
        .cmd()
        .env("PYRO_BACKEND", "host-compat")
        .args([
            "workspace",
            "exec",
            &id,
            "--stdin",
            "--",
            "tr",
            "a-z",
            "A-Z",
        ])
        .write_stdin("from stdin\n")
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "FROM STDIN\n");

    let v = json(&ws(
        &home,
        &[
            "exec",
            &id,
            "--max-output-bytes",
            "100",
            "--json",
            "--",
            "seq 1 10000; exit 3",
        ],
    ));
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["stdout"].as_str().unwrap().len(), 100);
    assert_eq!(v["stdout_bytes"], 48894);
    assert_eq!(v["truncated"], true);
    let logs = json(ok(&ws(
        &home,
        &["logs", &id, "--json", "--max-output-bytes", "100000"],
    )));
    let last = logs["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["stdout"].as_str().unwrap().len(),
        48894,
        "the log keeps the full output"
    );
    assert_eq!(last["exit_code"], 3);
    assert_eq!(last["state"], "finished");
    assert_eq!(logs["count"], 4);
    // By default only the end of each stream, saying how much came before.
    let logs = json(ok(&ws(&home, &["logs", &id, "--json", "--tail", "1"])));
    let last = &logs["entries"][0];
    assert!(last["stdout"].as_str().unwrap().ends_with("9999\n10000\n"));
    assert_eq!(last["stdout_omitted_bytes"], 48894 - 8192);
    assert_eq!(logs["entries"].as_array().unwrap().len(), 1);
    let one = json(ok(&ws(&home, &["logs", &id, "--json", "--sequence", "1"])));
    assert_eq!(one["entries"][0]["sequence"], 1);

    let o = ws(
        &home,
        &[
            "exec",
            &id,
            "--timeout-seconds",
            "1",
            "--",
            "echo started; sleep 30",
        ],
    );
    assert_eq!(o.status.code(), Some(124));
    assert_eq!(stdout(&o), "started\n");
    let o = ws(&home, &["exec", &id, "--env", "1BAD=x", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid environment variable name"));
    let o = ws(&home, &["exec", &id]);
    assert_eq!(o.status.code(), Some(2));
    let human = stdout(ok(&ws(&home, &["logs", &id])));
    assert!(human.starts_with("#1 exit_code=0 duration_ms="), "{human}");
    ok(&ws(&home, &["delete", &id]));
}

#[test]
fn files_read_write_list_and_limits() {
    let home = Home::new();
    let id = create(&home, &[]);
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "printf '#!/bin/sh\\necho v1\\n' > run.sh && chmod 755 run.sh",
        ],
    ));
    let w = json(ok(&ws(
        &home,
        &[
            "file",
            "write",
            &id,
            "run.sh",
            "--text",
            "#!/bin/sh\necho v2\n",
            "--json",
        ],
    )));
    assert_eq!(
        (w["mode"].as_str(), w["created"].as_bool()),
        (Some("0755"), Some(false)),
        "an existing file keeps its mode"
    );
    assert_eq!(
        stdout(ok(&ws(&home, &["exec", &id, "--", "./run.sh"]))),
        "v2\n"
    );
    ok(&ws(
        &home,
        &[
            "file",
            "write",
            &id,
            "deep/new/file.txt",
            "--text",
            "--not-a-flag",
        ],
    ));
    assert_eq!(
        stdout(ok(&ws(
            &home,
            &["file", "read", &id, "/workspace/deep/new/file.txt"]
        ))),
        "--not-a-flag"
    );
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "printf '\\377\\000\\001' > bin.dat; head -c 2000000 /dev/zero > big.bin; ln -s /etc/passwd escape",
        ],
    ));
    let r = json(ok(&ws(&home, &["file", "read", &id, "bin.dat", "--json"])));
    assert_eq!(
        (r["encoding"].as_str(), r["content"].as_str()),
        (Some("base64"), Some("/wAB"))
    );
    let o = ws(&home, &["file", "read", &id, "big.bin"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("above the 65536-byte read limit; raise it with --max-bytes"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ok(&ws(
            &home,
            &["file", "read", &id, "big.bin", "--max-bytes", "3000000"]
        ))
        .stdout
        .len(),
        2_000_000
    );
    let big = home.path().join("big.txt");
    std::fs::write(&big, vec![b'a'; 1_200_000]).unwrap();
    let o = ws(
        &home,
        &[
            "file",
            "write",
            &id,
            "x.txt",
            "--text-file",
            big.to_str().unwrap(),
        ],
    );
    assert!(
        stderr(&o).contains("above the 1048576-byte write limit"),
        "{}",
        stderr(&o)
    );
    for (args, msg) in [
        (vec!["file", "read", &id, "../etc/passwd"], "`..`"),
        (
            vec!["file", "read", &id, "/etc/passwd"],
            "outside /workspace",
        ),
        (
            vec!["file", "write", &id, "/tmp/x", "--text", "x"],
            "outside /workspace",
        ),
        (
            vec!["file", "write", &id, "escape/x", "--text", "x"],
            "symlink",
        ),
        (
            vec!["file", "read", &id, "escape"],
            "is a symlink to /etc/passwd",
        ),
        (vec!["file", "read", &id, "missing.txt"], "does not exist"),
        (vec!["file", "read", &id, "deep"], "is a directory"),
    ] {
        let o = ws(&home, &args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    let listing = stdout(ok(&ws(&home, &["file", "list", &id])));
    insta::assert_snapshot!("ws_file_list_human", listing);
    ok(&ws(&home, &["delete", &id]));
}

#[test]
fn bad_ids_names_states_and_quota() {
    let home = Home::new();
    require_debian12();
    for args in [
        vec!["status", "0123456789abcdef"],
        vec!["exec", "nope", "--", "true"],
        vec!["delete", "../../etc"],
    ] {
        let o = ws(&home, &args);
        assert_eq!(
            o.status.code(),
            Some(if args[0] == "exec" { 125 } else { 1 }),
            "{args:?}"
        );
        assert!(
            stderr(&o).contains("does not exist; `pyro workspace list` shows the ones that do"),
            "{}",
            stderr(&o)
        );
    }
    for (flag, value, msg) in [
        ("--name", "", "invalid workspace name"),
        ("--label=-bad=x", "", "invalid label key"),
        ("--label", "novalue", "--label takes KEY=VALUE"),
        ("--ttl-seconds", "1", "--ttl-seconds must be between 10"),
        ("--mem-mib", "10", "--mem-mib must be between 128"),
    ] {
        let mut args = vec!["create", "debian:12", flag];
        if !value.is_empty() || flag == "--name" {
            args.push(value);
        }
        let o = ws(&home, &args);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert!(stderr(&o).contains(msg), "{flag}: {}", stderr(&o));
    }
    let id = create(&home, &[]);
    let st = json(ok(&ws(&home, &["stop", &id, "--json"])));
    assert_eq!(st["state"], "stopped");
    let o = ws(&home, &["exec", &id, "--", "true"]);
    assert!(stderr(&o).contains(&format!("workspace {id} is stopped (stopped on request; the disk is kept), so exec cannot run; run `pyro workspace start {id}` first")), "{}", stderr(&o));
    let o = ws(&home, &["stop", &id]);
    assert!(stderr(&o).contains("not started"));
    ok(&ws(&home, &["start", &id]));
    // Quota.
    let o = home
        .cmd()
        .env("PYRO_BACKEND", "host-compat")
        .env("PYRO_MAX_WORKSPACES", "1")
        .args(["workspace", "create", "debian:12"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("workspace quota reached: 1 of 1 (PYRO_MAX_WORKSPACES)"),
        "{}",
        stderr(&o)
    );
    let list = json(ok(&ws(&home, &["list", "--json"])));
    assert_eq!(list["count"], 1, "the refused create left nothing");
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

#[test]
fn eight_processes_share_one_state_directory() {
    let home = Home::new();
    require_debian12();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let home_path = home.path().to_path_buf();
            std::thread::spawn(move || {
                let cmd = |args: &[&str]| {
                    std::process::Command::new(common::pyro_bin())
                        .env("PYRO_HOME", &home_path)
                        .env("PYRO_BACKEND", "host-compat")
                        .env("PYRO_MAX_WORKSPACES", "8")
                        .args(args)
                        .output()
                        .unwrap()
                };
                let o = cmd(&[
                    "workspace",
                    "create",
                    "debian:12",
                    "--id-only",
                    "--label",
                    &format!("worker={i}"),
                ]);
                assert!(
                    o.status.success(),
                    "create {i}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                let id = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                for n in 0..3 {
                    let o = cmd(&[
                        "workspace",
                        "exec",
                        &id,
                        "--",
                        &format!("echo {i}-{n} >> log.txt; cat log.txt | wc -l"),
                    ]);
                    assert!(
                        o.status.success(),
                        "exec {i}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                    assert_eq!(
                        String::from_utf8_lossy(&o.stdout).trim(),
                        (n + 1).to_string()
                    );
                }
                let o = cmd(&["workspace", "list", "--json"]);
                assert!(o.status.success());
                id
            })
        })
        .collect();
    let ids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let list = json(ok(&ws(&home, &["list", "--json"])));
    assert_eq!(list["count"], 8);
    for w in list["workspaces"].as_array().unwrap() {
        assert_eq!(w["state"], "started");
        assert_eq!(w["command_count"], 3, "{w}");
    }
    let threads: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let home_path = home.path().to_path_buf();
            std::thread::spawn(move || {
                let o = std::process::Command::new(common::pyro_bin())
                    .env("PYRO_HOME", &home_path)
                    .args(["workspace", "delete", &id])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(stdout(ok(&ws(&home, &["list"]))), "No workspaces.\n");
    home.assert_clean();
}

#[test]
fn expiry_stops_the_vm_keeps_the_disk_and_says_why() {
    let home = Home::new();
    let id = create(&home, &["--ttl-seconds", "10"]);
    ok(&ws(
        &home,
        &["file", "write", &id, "kept.txt", "--text", "still here"],
    ));
    std::thread::sleep(std::time::Duration::from_secs(14));
    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    assert_eq!(st["state"], "stopped");
    let reason = st["state_reason"].as_str().unwrap();
    assert!(reason.contains("idle for its TTL of 10 s"), "{reason}");
    assert!(st["delete_after"].as_f64().unwrap() > st["stopped_at"].as_f64().unwrap());
    let human = stdout(ok(&ws(&home, &["status", &id])));
    assert!(
        human.contains("State: stopped (idle for its TTL of 10 s")
            && human.contains("Deleted after: "),
        "{human}"
    );
    assert!(
        home.path()
            .join("workspaces")
            .join(&id)
            .join("upper")
            .is_dir(),
        "the disk is kept"
    );
    assert!(home.sandboxes_left().is_empty(), "the VM is gone");
    let o = ws(&home, &["exec", &id, "--", "true"]);
    assert!(
        stderr(&o).contains("is stopped (idle for its TTL"),
        "{}",
        stderr(&o)
    );
    ok(&ws(&home, &["start", &id]));
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &id, "kept.txt"]))),
        "still here"
    );
    ok(&ws(&home, &["delete", &id]));
    // With no grace left, the next pyro invocation deletes an expired
    // workspace, and only that one.
    let expiring = create(&home, &["--ttl-seconds", "10"]);
    let lasting = create(&home, &["--ttl-seconds", "600"]);
    std::thread::sleep(std::time::Duration::from_secs(13));
    let o = home
        .cmd()
        .env("PYRO_EXPIRY_GRACE_SECONDS", "0")
        .args(["workspace", "list", "--json"])
        .output()
        .unwrap();
    let list = json(&o);
    let ids: Vec<&str> = list["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [lasting.as_str()],
        "{expiring} should be gone after its grace period"
    );
    assert!(!home.path().join("workspaces").join(&expiring).exists());
    let id = lasting;
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

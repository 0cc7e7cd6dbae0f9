//! Every `pyro workspace` command end to end on the host-compat backend
//! (the same agent as in guests), human and `--json` output, and each kind
//! of bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Home, json, ok, require_debian12, stderr, stdout};
use serde_json::Value;

fn filters(home: &Home) -> Vec<(String, String)> {
    vec![
        (
            regex_escape(&home.path().display().to_string()),
            "[HOME]".into(),
        ),
        (r"\b[0-9a-f]{16}\b".into(), "[ID]".into()),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ".into(), "[TIME]".into()),
        (r"duration_ms=\d+".into(), "duration_ms=[MS]".into()),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

fn ws(home: &Home, args: &[&str]) -> Output {
    home.cmd()
        .arg("workspace")
        .args(args)
        .env("PYRO_BACKEND", "host-compat")
        .output()
        .unwrap()
}

fn create(home: &Home, extra: &[&str]) -> String {
    require_debian12();
    let mut args = vec!["create", "debian:12", "--id-only"];
    args.extend(extra);
    let o = ws(home, &args);
    ok(&o);
    stdout(&o).trim().to_owned()
}

fn seed_dir(root: &Path) -> PathBuf {
    let d = root.join("seed");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::create_dir_all(d.join("node_modules/pkg")).unwrap();
    std::fs::create_dir_all(d.join("node_modules/.bin")).unwrap();
    std::fs::write(d.join("message.txt"), "broken\n").unwrap();
    std::fs::write(
        d.join("check.sh"),
        "#!/bin/sh\ngrep -qx fixed message.txt || { echo not fixed >&2; exit 1; }\necho fixed\n",
    )
    .unwrap();
    std::fs::write(d.join("node_modules/pkg/cli.js"), "console.log(1)\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("check.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../pkg/cli.js", d.join("node_modules/.bin/cli")).unwrap();
    std::os::unix::fs::symlink("../check.sh", d.join("bin/check")).unwrap();
    d
}

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
        stderr(&o).contains("above the 1048576-byte read limit; raise it with --max-bytes"),
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

fn git_in(dir: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@t", "-c", "user.name=t"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn real_git_diffs_apply_atomically() {
    let home = Home::new();
    let repo = home.path().join("repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/lib.rs"), "fn a() {}\nfn b() {}\n").unwrap();
    std::fs::write(repo.join("old_name.txt"), "rename me\nkeep\n").unwrap();
    std::fs::write(repo.join("gone.txt"), "bye\n").unwrap();
    std::fs::write(repo.join("tool.sh"), "echo tool\n").unwrap();
    std::fs::write(repo.join("logo.bin"), [0u8, 1, 2, 3, 255]).unwrap();
    git_in(&repo, &["init", "-q"]);
    git_in(&repo, &["add", "-A"]);
    git_in(&repo, &["commit", "-qm", "base"]);
    let id = create(
        &home,
        &[
            "--seed-path",
            repo.to_str().unwrap(),
            "--seed-mode",
            "git-tracked",
        ],
    );
    std::fs::write(
        repo.join("src/lib.rs"),
        "fn a() {}\nfn b() { println!(\"b\") }\n",
    )
    .unwrap();
    git_in(&repo, &["mv", "old_name.txt", "new_name.txt"]);
    std::fs::write(repo.join("new_name.txt"), "rename me\nkeep\nmore\n").unwrap();
    git_in(&repo, &["rm", "-q", "gone.txt"]);
    std::fs::create_dir_all(repo.join("docs")).unwrap();
    std::fs::write(repo.join("docs/added.md"), "# added\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(repo.join("tool.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(repo.join("logo.bin"), [9u8, 8, 7, 0, 1]).unwrap();
    git_in(&repo, &["add", "-A"]);
    let patch = git_in(&repo, &["diff", "--cached", "-M", "--binary"]);
    let pf = home.path().join("change.patch");
    std::fs::write(&pf, &patch).unwrap();
    let r = json(ok(&ws(
        &home,
        &[
            "patch",
            "apply",
            &id,
            "--patch-file",
            pf.to_str().unwrap(),
            "--json",
        ],
    )));
    let mut statuses: Vec<String> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["status"].as_str().unwrap(),
                f["path"].as_str().unwrap()
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            "added docs/added.md",
            "deleted gone.txt",
            "modified logo.bin",
            "modified src/lib.rs",
            "modified tool.sh",
            "renamed new_name.txt"
        ]
    );
    // The workspace now matches the host checkout, byte for byte and mode for mode.
    let check = "sha256sum src/lib.rs new_name.txt docs/added.md tool.sh logo.bin; stat -c '%a' tool.sh; test ! -e gone.txt && test ! -e old_name.txt && echo clean";
    let inside = stdout(ok(&ws(&home, &["exec", &id, "--", check])));
    let outside = std::process::Command::new("sh")
        .arg("-c")
        .arg(check)
        .current_dir(&repo)
        .output()
        .unwrap();
    assert_eq!(inside, stdout(&outside));
    // One hunk that does not apply: nothing changes.
    let bad = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1 +1 @@\n-fn a() {}\n+fn A() {}\n--- a/new_name.txt\n+++ b/new_name.txt\n@@ -1 +1 @@\n-not there\n+x\n";
    let o = ws(&home, &["patch", "apply", &id, "--patch", bad]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not apply to new_name.txt"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(ok(&ws(&home, &["file", "read", &id, "src/lib.rs"]))).starts_with("fn a() {}"));
    // A binary change without --binary says how to fix it.
    let o = ws(
        &home,
        &[
            "patch",
            "apply",
            &id,
            "--patch",
            "diff --git a/logo.bin b/logo.bin\nindex 1..2 100644\nBinary files a/logo.bin and b/logo.bin differ\n",
        ],
    );
    assert!(stderr(&o).contains("git diff --binary"), "{}", stderr(&o));
    let o = ws(
        &home,
        &[
            "patch",
            "apply",
            &id,
            "--patch",
            "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n",
        ],
    );
    assert!(
        stderr(&o).contains("paths must stay inside"),
        "{}",
        stderr(&o)
    );
    ok(&ws(&home, &["delete", &id]));
}

#[test]
fn diff_export_and_reset() {
    let home = Home::new();
    let seed = seed_dir(home.path());
    let id = create(&home, &["--seed-path", seed.to_str().unwrap()]);
    let o = ws(&home, &["diff", &id]);
    assert!(ok(&o).stdout.is_empty());
    assert_eq!(stderr(&o), "No changes since the baseline.\n");
    ok(&ws(
        &home,
        &[
            "patch",
            "apply",
            &id,
            "--patch",
            "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n",
        ],
    ));
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "echo new > added.txt; chmod -x check.sh; touch /usr/local/bin/mytool; head -c 5000 /dev/urandom > big.dat",
        ],
    ));
    let d = json(ok(&ws(&home, &["diff", &id, "--json"])));
    assert_eq!(d["changed"], true);
    assert_eq!(d["summary"]["total"], 4);
    assert!(
        d["bytes_fetched"].as_u64().unwrap() < 6000,
        "only changed content crosses the wire"
    );
    let patch = d["patch"].as_str().unwrap().to_owned();
    assert!(
        patch.contains("-broken\n+fixed\n") && patch.contains("old mode 100755\nnew mode 100644"),
        "{patch}"
    );
    assert!(
        patch.contains("Binary files /dev/null and b/big.dat differ"),
        "{patch}"
    );

    // The diff (text parts) applies to a fresh copy: diff and patch speak the same format.
    let copy = create(&home, &["--seed-path", seed.to_str().unwrap()]);
    let text_only: String = d["patch"]
        .as_str()
        .unwrap()
        .split_inclusive('\n')
        .fold(Vec::<String>::new(), |mut files, line| {
            if line.starts_with("diff --git ") || files.is_empty() {
                files.push(String::new());
            }
            files.last_mut().unwrap().push_str(line);
            files
        })
        .into_iter()
        .filter(|f| !f.contains("\nBinary files "))
        .collect();
    ok(&ws(
        &home,
        &["patch", "apply", &copy, "--patch", &text_only],
    ));
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &copy, "message.txt"]))),
        "fixed\n"
    );

    let out = home.path().join("out");
    let e = json(ok(&ws(
        &home,
        &[
            "export",
            &id,
            "/workspace",
            "--output",
            out.to_str().unwrap(),
            "--json",
        ],
    )));
    assert_eq!(e["kind"], "directory");
    assert_eq!(
        std::fs::read_to_string(out.join("message.txt")).unwrap(),
        "fixed\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("node_modules/.bin/cli")).unwrap(),
        Path::new("../pkg/cli.js")
    );
    let o = ws(
        &home,
        &[
            "export",
            &id,
            "message.txt",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let single = home.path().join("one/message.txt");
    ok(&ws(
        &home,
        &[
            "export",
            &id,
            "message.txt",
            "--output",
            single.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(&single).unwrap(), "fixed\n");

    let r = json(ok(&ws(&home, &["reset", &id, "--json"])));
    assert_eq!(
        (r["reset_count"].as_u64(), r["command_count"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(r["name"], Value::Null);
    assert!(ok(&ws(&home, &["diff", &id])).stdout.is_empty());
    let o = ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "test -e /usr/local/bin/mytool && echo still-there || echo gone; cat message.txt",
        ],
    ))
    .clone();
    assert_eq!(stdout(&o), "gone\nbroken\n");
    let logs = json(ok(&ws(&home, &["logs", &id, "--json"])));
    assert_eq!(logs["count"], 1, "the history was cleared by the reset");
    let o = ws(&home, &["reset", &id, "--snapshot", "checkpoint"]);
    assert!(
        stderr(&o).contains("has no snapshot \"checkpoint\""),
        "{}",
        stderr(&o)
    );
    for i in [id, copy] {
        ok(&ws(&home, &["delete", &i]));
    }
    home.assert_clean();
}

#[test]
fn sync_push_is_all_or_nothing() {
    let home = Home::new();
    let id = create(&home, &[]);
    let src = home.path().join("push");
    std::fs::create_dir_all(src.join("pkg")).unwrap();
    std::fs::write(src.join("pkg/a.txt"), "a").unwrap();
    let v = json(ok(&ws(
        &home,
        &[
            "sync",
            "push",
            &id,
            src.to_str().unwrap(),
            "--dest",
            "vendor",
            "--json",
        ],
    )));
    assert_eq!(
        (v["destination"].as_str(), v["entry_count"].as_u64()),
        (Some("/workspace/vendor"), Some(2))
    );
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &id, "vendor/pkg/a.txt"]))),
        "a"
    );
    // `pkg` is a directory in the workspace; a push that makes it a file
    // fails before anything lands.
    let src2 = home.path().join("push2");
    std::fs::create_dir_all(&src2).unwrap();
    std::fs::write(src2.join("new.txt"), "n").unwrap();
    std::fs::write(src2.join("pkg"), "file now").unwrap();
    let o = ws(
        &home,
        &[
            "sync",
            "push",
            &id,
            src2.to_str().unwrap(),
            "--dest",
            "vendor",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("remove it first"), "{}", stderr(&o));
    let o = ws(&home, &["file", "read", &id, "vendor/new.txt"]);
    assert!(stderr(&o).contains("does not exist"));
    let o = ws(
        &home,
        &["sync", "push", &id, src.to_str().unwrap(), "--dest", "/etc"],
    );
    assert!(stderr(&o).contains("outside /workspace"), "{}", stderr(&o));
    // A destination that is a file fails at once, also for an archive of
    // several chunks (the agent used to stop draining after the first and
    // the host waited for its hour-long transfer timeout).
    ok(&ws(
        &home,
        &["file", "write", &id, "README.md", "--text", "a file"],
    ));
    let big = home.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let noise: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(big.join("blob.bin"), &noise).unwrap();
    let started = std::time::Instant::now();
    let o = ws(
        &home,
        &[
            "sync",
            "push",
            &id,
            big.to_str().unwrap(),
            "--dest",
            "README.md",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("exists and is not a directory"),
        "{}",
        stderr(&o)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &id, "README.md"]))),
        "a file"
    );
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

#[test]
fn diff_says_what_it_left_out_and_its_patch_still_applies() {
    let home = Home::new();
    let id = create(&home, &[]);
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "head -c 70000000 /dev/zero > big.bin && echo small > small.txt && \
             mkdir -p 'x\n--- a' && echo forged > 'x\n--- a/y'",
        ],
    ));
    let d = json(ok(&ws(&home, &["diff", &id, "--json"])));
    let entries = d["entries"].as_array().unwrap();
    let big = entries.iter().find(|e| e["path"] == "big.bin").unwrap();
    let why = big["omitted"].as_str().unwrap_or_else(|| panic!("{big}"));
    assert!(why.contains("70000000 bytes, over the 64 MiB"), "{why}");
    let small = entries.iter().find(|e| e["path"] == "small.txt").unwrap();
    assert!(small.get("omitted").is_none(), "{small}");
    let patch = d["patch"].as_str().unwrap();
    assert!(
        patch.contains("# pyro: added big.bin: content omitted: it is 70000000 bytes"),
        "{patch}"
    );
    assert!(
        !patch.contains("b/big.bin"),
        "big.bin is rendered as if empty: {patch}"
    );
    // A name with a newline is listed, never pasted raw into the patch.
    let evil = entries
        .iter()
        .find(|e| e["path"].as_str().unwrap().contains('\n'))
        .unwrap_or_else(|| panic!("{d}"));
    assert!(
        evil["omitted"]
            .as_str()
            .unwrap()
            .contains("control characters"),
        "{evil}"
    );
    assert!(!patch.contains("\n--- a/y"), "{patch}");
    assert_eq!(d["summary"]["omitted"], 2, "{d}");
    // The patch, notice line included, applies what it has.
    ok(&ws(&home, &["reset", &id]));
    let file = home.path().join("fix.patch");
    std::fs::write(&file, patch).unwrap();
    ok(&ws(
        &home,
        &[
            "patch",
            "apply",
            &id,
            "--patch-file",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &id, "small.txt"]))),
        "small\n"
    );
    ok(&ws(&home, &["delete", &id]));
}

/// Detaches a test tmpfs when dropped (even while a process still uses it).
struct LazyUnmount(PathBuf);

impl Drop for LazyUnmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Unmounts a test tmpfs when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn export_refuses_what_the_destination_cannot_hold_and_writes_nothing() {
    let home = Home::new();
    let id = create(&home, &[]);
    ok(&ws(
        &home,
        &["exec", &id, "--", "head -c 40000000 /dev/urandom > big.bin"],
    ));
    // 300 MiB of room: 22 MiB of budget after the 256 MiB reserve, halved.
    let small = home.path().join("small-fs");
    std::fs::create_dir_all(&small).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(st.success(), "mounting a test tmpfs failed");
    let _unmount = Tmpfs(small.clone());
    let out = small.join("big.bin");
    let o = ws(
        &home,
        &["export", &id, "big.bin", "--output", out.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("larger than an export may be here"),
        "{}",
        stderr(&o)
    );
    let left: Vec<_> = std::fs::read_dir(&small).unwrap().flatten().collect();
    assert!(left.is_empty(), "a failed export left {left:?}");
    // Nor the directories it made for the output.
    let deep = small.join("new/dirs/big.bin");
    let o = ws(
        &home,
        &["export", &id, "big.bin", "--output", deep.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let left: Vec<_> = std::fs::read_dir(&small).unwrap().flatten().collect();
    assert!(left.is_empty(), "a failed export left {left:?}");
    ok(&ws(&home, &["delete", &id]));
}

/// Peak resident memory of any child this test process has waited for, in
/// KiB.
fn children_peak_rss_kib() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable rusage for getrusage to fill.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: getrusage succeeded, so `usage` is initialised.
    let usage = unsafe { usage.assume_init() };
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

#[test]
fn a_200000_file_tree_creates_lists_diffs_resets_and_exports() {
    let home = Home::new();
    // On a tmpfs: the test is about pyro's bounds, not the disk's speed at
    // creating and deleting a million small files.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6g", "tmpfs"])
        .arg(home.path())
        .status()
        .is_ok_and(|s| s.success());
    let _tmpfs = mounted.then(|| LazyUnmount(home.path().to_owned()));
    let seed = home.path().join("tree");
    for d in 0..200 {
        let dir = seed.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f:04}.js")), format!("{d} {f}\n")).unwrap();
        }
    }
    let id = create(&home, &["--seed-path", seed.to_str().unwrap()]);

    // A recursive listing counts everything and returns what was asked for.
    let l = json(ok(&ws(
        &home,
        &[
            "file",
            "list",
            &id,
            "--recursive",
            "--max-entries",
            "5000",
            "--json",
        ],
    )));
    assert_eq!(l["total"], 200_200, "{}", l["total"]);
    assert_eq!(l["truncated"], true);
    let entries = l["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5000);
    assert_eq!(entries[0]["path"], "/workspace/d000");
    assert_eq!(entries[1]["path"], "/workspace/d000/f0000.js");

    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "echo changed >> d007/f0042.js && rm d150/f0001.js && echo new > d199/new.txt",
        ],
    ));
    let d = json(ok(&ws(&home, &["diff", &id, "--json"])));
    assert_eq!(d["summary"]["total"], 3, "{}", d["summary"]);
    assert_eq!(d["summary"]["modified"], 1);
    assert_eq!(d["summary"]["deleted"], 1);
    assert_eq!(d["summary"]["added"], 1);
    let patch = d["patch"].as_str().unwrap();
    assert!(patch.contains(" 7 42\n+changed\n"), "{patch}");
    assert!(
        patch.contains("deleted file mode 100644\n--- a/d150/f0001.js"),
        "{patch}"
    );

    // New trees diff too: everything counted.
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "cp -r d000 copy000 && cp -r d001 copy001",
        ],
    ));
    let d = json(ok(&ws(&home, &["diff", &id, "--json"])));
    assert_eq!(d["summary"]["total"], 2003, "{}", d["summary"]);

    ok(&ws(&home, &["reset", &id]));
    let d = json(ok(&ws(&home, &["diff", &id, "--json"])));
    assert_eq!(d["changed"], false, "{}", d["summary"]);
    let out = home.path().join("export");
    let e = json(ok(&ws(
        &home,
        &[
            "export",
            &id,
            "/workspace",
            "--output",
            out.to_str().unwrap(),
            "--json",
        ],
    )));
    assert!(e["entry_count"].as_u64().unwrap() >= 200_200, "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join("d199/f0999.js")).unwrap(),
        "199 999\n"
    );
    // No pyro process came near holding the tree in memory.
    let peak = children_peak_rss_kib();
    assert!(peak < 256 * 1024, "a pyro process peaked at {peak} KiB");
    ok(&ws(&home, &["delete", &id]));
}

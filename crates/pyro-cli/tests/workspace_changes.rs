//! Changes in host-compat workspaces end to end: patches from real `git
//! diff` output applied all or nothing, diffs against the baseline, export
//! and reset, and sync push all or nothing.

mod common;

use std::path::Path;

use common::host_compat::{create, seed_dir, ws};
use common::{Home, json, ok, stderr, stdout};
use serde_json::Value;

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

/// A file too long to render between its versions is listed, with the
/// reason its content is left out, never shown as a wrong patch; one file
/// alone over the patch limit gives the start of its text, marked as cut.
#[test]
fn a_diff_says_what_it_leaves_out_and_where_it_cuts() {
    let home = Home::new();
    let seed = seed_dir(home.path());
    let id = create(&home, &["--seed-path", seed.to_str().unwrap()]);
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "seq 1 600000 > message.txt; seq 1 50 > small.txt",
        ],
    ));
    let d = json(ok(&ws(&home, &["diff", &id, "--json"])));
    let entries = d["entries"].as_array().unwrap();
    let long = entries
        .iter()
        .find(|e| e["path"] == "message.txt")
        .unwrap_or_else(|| panic!("{d}"));
    assert!(
        long["omitted"]
            .as_str()
            .is_some_and(|o| o.contains("over 500000 lines")),
        "{long}"
    );
    assert_eq!(d["summary"]["omitted"], 1, "{d}");
    let patch = d["patch"].as_str().unwrap();
    assert!(
        patch.contains("# pyro: modified message.txt: content omitted: it has over 500000 lines")
            && patch.contains("+50\n"),
        "{patch}"
    );
    assert_eq!(d["truncated"], false);
    // A limit below the first file's text: its start, marked as cut.
    let d = json(ok(&ws(
        &home,
        &["diff", &id, "--json", "--max-patch-bytes", "20"],
    )));
    assert_eq!(d["truncated"], true, "{d}");
    assert_eq!(d["patch"].as_str().unwrap().len(), 20, "{d}");
    assert!(d["patch_bytes"].as_u64().unwrap() > 20, "{d}");
    ok(&ws(&home, &["delete", &id]));
}

/// A path that names a file is listed as that file; reads and writes are of
/// regular files only, never below a file, and an empty patch is refused.
#[test]
fn files_that_are_not_regular_are_refused() {
    let home = Home::new();
    let id = create(&home, &[]);
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "mkdir -p deep/new && echo x > deep/new/file.txt",
        ],
    ));
    // Listing a file lists the file.
    let one = json(ok(&ws(
        &home,
        &["file", "list", &id, "deep/new/file.txt", "--json"],
    )));
    assert_eq!(
        (one["kind"].as_str(), one["total"].as_u64()),
        (Some("file"), Some(1)),
        "{one}"
    );
    // Only regular files are read or written over.
    ok(&ws(&home, &["exec", &id, "--", "mkfifo pipe"]));
    for (args, msg) in [
        (vec!["file", "read", &id, "pipe"], "is not a regular file"),
        (
            vec!["file", "write", &id, "deep", "--text", "x"],
            "exists and is not a regular file",
        ),
        (
            vec!["file", "write", &id, "/workspace", "--text", "x"],
            "cannot write over /workspace itself",
        ),
        (
            vec![
                "file",
                "write",
                &id,
                "deep/new/file.txt/below",
                "--text",
                "x",
            ],
            "is a file, so",
        ),
        (
            vec!["patch", "apply", &id, "--patch", ""],
            "the patch is empty",
        ),
    ] {
        let o = ws(&home, &args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    ok(&ws(&home, &["delete", &id]));
}

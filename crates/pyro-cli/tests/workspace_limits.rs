//! Host-compat workspaces at their limits: diffs past their budgets,
//! exports past the free space, and a 200,000-file tree through create,
//! list, diff, reset and export with host memory measured.

mod common;

use std::path::PathBuf;

use common::host_compat::{create, ws};
use common::{Home, json, ok, stderr, stdout};

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
#[test]
fn a_command_s_own_limits_are_checked_and_host_compat_says_it_has_none() {
    let home = Home::new();
    let id = create(&home, &[]);
    for (flags, want) in [
        (vec!["--max-memory-mib", "4"], "--max-memory-mib"),
        (vec!["--max-tasks", "5000"], "--max-tasks"),
        (
            vec!["--max-tasks", "16"],
            "host-compat cannot limit one command",
        ),
    ] {
        let mut args = vec!["exec", id.as_str()];
        args.extend(&flags);
        args.extend(["--", "true"]);
        let o = ws(&home, &args);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{flags:?}: {}", stderr(&o));
    }
    // Nothing ran: the history is empty.
    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    assert_eq!(st["command_count"], 0, "{st}");
    let missing = st["protections"]["missing"].as_array().unwrap();
    assert!(missing[0].as_str().unwrap().contains("host-compat"), "{st}");
    assert!(st["protections"]["host"].is_null(), "{st}");
    ok(&ws(&home, &["delete", &id]));
}

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

//! Large trees, printed as figures (run with `make bench`): for trees of
//! 10,000, 100,000 and 200,000 small files, the wall time and the peak
//! resident memory of the `pyro` process for `workspace create --seed-path`
//! and for `workspace diff` (two changed files, one new directory of 1,000),
//! on the host-compat backend, against `tar c | tar x` of the same tree on
//! the host. Peak memory should stay flat as the tree grows.
//!
//! `-- 10000` (any sizes) runs only those sizes.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` to its end; returns the wall time and its peak RSS in MiB
/// (from `wait4`, so only this child counts).
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its resource use"
)]
fn measure(cmd: &mut Command) -> (Duration, f64) {
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let pid = i32::try_from(child.id()).expect("pid");
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `pid` is our child, not yet waited for; `status` and `usage`
    // are valid for wait4 to fill.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(rc, pid, "wait4");
    let elapsed = start.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    // SAFETY: wait4 succeeded, so `usage` is initialised.
    let usage = unsafe { usage.assume_init() };
    (elapsed, usage.ru_maxrss as f64 / 1024.0)
}

fn make_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(dir.join(format!("f{:04}.js", i % 1000)), format!("{i}\n")).unwrap();
    }
}

fn pyro(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pyro"));
    c.env("PYRO_HOME", home)
        .env("PYRO_BACKEND", "host-compat")
        .env("NO_COLOR", "1");
    c
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 200_000]
    } else {
        sizes
    };
    println!(
        "{:>8}  {:>10} {:>9}  {:>10} {:>9}  {:>12}",
        "files", "create s", "peak MiB", "diff s", "peak MiB", "tar c|x s"
    );
    for files in sizes {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        make_tree(&tree, files);
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();

        let copy = dir.path().join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        let (tar_time, _) = measure(Command::new("sh").args([
            "-c",
            &format!(
                "tar cf - -C '{}' . | tar xf - -C '{}'",
                tree.display(),
                copy.display()
            ),
        ]));

        let (create_time, create_peak) = measure(pyro(&home).args([
            "workspace",
            "create",
            "debian:12",
            "--id-only",
            "--seed-path",
            tree.to_str().unwrap(),
        ]));
        let out = pyro(&home)
            .args(["workspace", "list", "--json"])
            .output()
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = list["workspaces"][0]["workspace_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let out = pyro(&home)
            .args([
                "workspace",
                "exec",
                &id,
                "--",
                "echo x >> d0000/f0001.js && rm d0000/f0002.js && cp -r d0000 new",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "exec failed");
        let (diff_time, diff_peak) =
            measure(pyro(&home).args(["workspace", "diff", &id, "--json"]));
        let _ = pyro(&home).args(["workspace", "delete", &id]).output();
        println!(
            "{files:>8}  {:>10.1} {create_peak:>9.1}  {:>10.1} {diff_peak:>9.1}  {:>12.1}",
            create_time.as_secs_f64(),
            diff_time.as_secs_f64(),
            tar_time.as_secs_f64()
        );
    }
}

//! Snapshot, reset-to-snapshot and fork on real Firecracker guests, printed
//! (run with `make bench`; needs debian:12 in the cache and a host that can
//! boot guests). For 1 MB and 200 MB of changed data in a workspace's disk: the
//! wall time of `snapshot create` (running guest: flush, pause, copy,
//! resume), of `reset --snapshot` and of `fork` (both include a boot), the
//! space the snapshot and the fork's disk take, and, measured in the same
//! run on the same upper disk, `cp --sparse=always` and the space its copy
//! takes.
//!
//! Guests run at 1 vCPU and 256 MiB, as the real-VM tests do.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
#[path = "support/mod.rs"]
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use pyro_core::environments::NoProgress;
use pyro_core::sandbox::Discard;
use pyro_core::workspace::{CreateRequest, ExecOptions, ForkRequest, Workspaces};
use pyro_core::{BackendKind, Command};

/// Blocks a file or tree takes on disk.
fn usage(p: &Path) -> u64 {
    let m = p.symlink_metadata().unwrap();
    let mut n = m.blocks() * 512;
    if m.is_dir() {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            n += usage(&e.path());
        }
    }
    n
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (env, paths, state) = support::debian12();
    let ws = Workspaces::new(paths);
    println!(
        "{:>8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>12}  {:>10}  {:>12}",
        "written", "snapshot", "reset", "fork", "cp sparse", "snapshot use", "fork use", "cp use"
    );
    for mb in [1u64, 200] {
        let mut req = CreateRequest::new(BackendKind::Firecracker);
        req.mem_mib = 256;
        let id = ws
            .create(&env, req, &NoProgress)
            .await
            .unwrap()
            .workspace_id;
        ws.stop(&id).await.unwrap();
        let dir = state.path().join("workspaces").join(&id);
        let data = state.path().join("data.bin");
        let mut rnd = std::fs::File::open("/dev/urandom").unwrap();
        let mut out = std::fs::File::create(&data).unwrap();
        std::io::copy(&mut std::io::Read::take(&mut rnd, mb * 1_000_000), &mut out).unwrap();
        // The guest powers off without unmounting: replay its journal first,
        // or the next mount's replay would undo debugfs's write.
        let st = std::process::Command::new("e2fsck")
            .args(["-fy", "-E", "journal_only"])
            .arg(dir.join("upper.ext4"))
            .output()
            .unwrap();
        assert!(st.status.code().is_some_and(|c| c <= 1), "{st:?}");
        // debugfs writes into its current directory.
        let script = state.path().join("debugfs.cmds");
        std::fs::write(
            &script,
            format!("cd /data\nwrite {} data.bin\n", data.display()),
        )
        .unwrap();
        let st = std::process::Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(dir.join("upper.ext4"))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        std::fs::remove_file(&data).unwrap();
        ws.start(&id, false, &NoProgress).await.unwrap();
        let check = ExecOptions {
            command: Command::Shell {
                script: "stat -c %s /data.bin".into(),
            },
            cwd: None,
            env: Default::default(),
            timeout_seconds: 120,
            max_output_bytes: 4096,
            wait_seconds: None,
            max_memory_mib: None,
            max_tasks: None,
            secret_env: Vec::new(),
        };
        let r = ws.exec(&id, check, None, &mut Discard).await.unwrap();
        assert_eq!(
            r.stdout.trim(),
            (mb * 1_000_000).to_string(),
            "{}",
            r.stderr
        );

        let t = Instant::now();
        let snap = ws.snapshot_create(&id, "bench").await.unwrap();
        let snapshot_s = t.elapsed().as_secs_f64();

        // The same disk, copied by cp while the guest is stopped.
        ws.stop(&id).await.unwrap();
        let copy = state.path().join("cp-copy.ext4");
        let t = Instant::now();
        let st = std::process::Command::new("cp")
            .arg("--sparse=always")
            .arg(dir.join("upper.ext4"))
            .arg(&copy)
            .status()
            .unwrap();
        let cp_s = t.elapsed().as_secs_f64();
        assert!(st.success());
        let cp_use = usage(&copy);
        std::fs::remove_file(&copy).unwrap();

        let t = Instant::now();
        ws.reset(&id, "bench", false, &NoProgress).await.unwrap();
        let reset_s = t.elapsed().as_secs_f64();
        ws.stop(&id).await.unwrap();

        let t = Instant::now();
        let fork = ws
            .fork(
                &id,
                ForkRequest {
                    count: 1,
                    ..Default::default()
                },
                &NoProgress,
            )
            .await
            .unwrap();
        let fork_s = t.elapsed().as_secs_f64();
        let fork_id = fork.workspaces[0].workspace_id.clone();
        let fork_use = usage(
            &state
                .path()
                .join("workspaces")
                .join(&fork_id)
                .join("upper.ext4"),
        );
        println!(
            "{:>5} MB  {:>8.2} s  {:>8.2} s  {:>8.2} s  {:>8.2} s  {:>12}  {:>10}  {:>12}",
            mb,
            snapshot_s,
            reset_s,
            fork_s,
            cp_s,
            mib(snap.size_bytes),
            mib(fork_use),
            mib(cp_use)
        );
        ws.delete(&fork_id).await.unwrap();
        ws.delete(&id).await.unwrap();
    }
    println!(
        "(reset and fork include booting the guest; the disk is {} sparse)",
        mib(pyro_core::limits::DISK_MIB.default << 20)
    );
}

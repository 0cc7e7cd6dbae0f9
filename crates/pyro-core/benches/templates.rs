//! Fast start, printed (run with `make bench`; needs debian:12 and its
//! default template in the cache, root, and a host that can boot guests).
//!
//! All figures come from one run on one host, default shape (1 vCPU,
//! 1024 MiB, 4096 MiB disk):
//! - the raw floor: the jailer and Firecracker started by hand on the
//!   template's files, `PUT /snapshot/load` with resume, and the agent's
//!   greeting over vsock; no pyro code;
//! - a guest started from the template through pyro (`pyro run`'s path:
//!   record, jail, disk copy, load, refresh), and pyro's time over the floor;
//! - the agent's own refresh time (entropy, clock, hostname), as the guest
//!   reports it;
//! - `workspace create` from the template and cold, `reset` both ways;
//! - the first `exec -- true` after a restore, a later one, and an agent
//!   ping on the same guest;
//! - host memory (RSS and PSS of the Firecracker processes) for 1, 4 and 8
//!   guests restored from one template against as many booted cold.
//!
//! `PYRO_BENCH_RUNS` sets the repetitions of the fast figures (default 10);
//! `PYRO_BENCH_COLD_RUNS` those of the cold ones (default 2: a cold boot
//! takes most of a minute on a PVM host).
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
#[path = "support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use pyro_core::environments::NoProgress;
use pyro_core::records::Owner;
use pyro_core::sandbox::{BootPref, Discard, Sandbox, SandboxSpec};
use pyro_core::template::Shape;
use pyro_core::workspace::{CreateRequest, Workspaces};
use pyro_core::{BackendKind, Command};
use pyro_protocol::{ExecRequest, Request};

fn env_runs(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and p95 of `xs` (nearest rank).
fn pct(xs: &[f64]) -> (f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.95))
}

fn line(what: &str, xs: &[f64]) -> (f64, f64) {
    let (p50, p95) = pct(xs);
    println!(
        "{what:<52} p50 {p50:>9.1} ms  p95 {p95:>9.1} ms  (n={})",
        xs.len()
    );
    (p50, p95)
}

/// One HTTP request on Firecracker's API socket, by hand.
fn http(sock: &Path, method: &str, path: &str, body: &str) {
    let mut s = UnixStream::connect(sock).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 2"), "{method} {path}: {head}");
}

/// The raw floor: jailer + Firecracker on the template's files, snapshot
/// load with resume, and the agent's greeting over vsock. Returns the time
/// from spawning the jailer to the greeting's first byte.
fn raw_floor(
    t: &pyro_core::template::Template,
    env: &pyro_env::Installed,
    cache: &Path,
    work: &Path,
    i: usize,
) -> Duration {
    let bins = pyro_vmm::binaries::locate(cache).unwrap();
    let base = work.join(format!("floor{i}"));
    let id = format!("floor{i}");
    let root = base.join("firecracker").join(&id).join("root");
    std::fs::create_dir_all(&root).unwrap();
    let uid = 990_000 + u32::try_from(i).unwrap();
    for (src, name) in [(t.vmstate(), "snap.vmstate"), (t.mem(), "snap.mem")] {
        std::fs::hard_link(&src, root.join(name)).unwrap();
    }
    std::fs::hard_link(env.rootfs_image(), root.join("rootfs.ext4")).unwrap();
    pyro_vmm::disk::sparse_copy(&t.upper(), &root.join("upper.ext4")).unwrap();
    std::os::unix::fs::chown(root.join("upper.ext4"), Some(uid), Some(uid)).unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new(&bins.jailer.path)
        .args(["--id", &id, "--exec-file"])
        .arg(&bins.firecracker.path)
        .args(["--uid", &uid.to_string(), "--gid", &uid.to_string()])
        .arg("--chroot-base-dir")
        .arg(&base)
        .args(["--", "--api-sock", "/api.sock"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let api = root.join("api.sock");
    while UnixStream::connect(&api).is_err() {
        std::thread::sleep(Duration::from_micros(500));
    }
    http(
        &api,
        "PUT",
        "/snapshot/load",
        r#"{"snapshot_path":"/snap.vmstate","mem_backend":{"backend_type":"File","backend_path":"/snap.mem"},"resume_vm":true}"#,
    );
    // As pyro does: a connection made before the resumed guest has
    // processed Firecracker's vsock reset is dropped silently on its side,
    // so the greeting is awaited briefly and the connection made again.
    let mut wait = Duration::from_millis(100);
    loop {
        let mut v = UnixStream::connect(root.join("v.sock")).unwrap();
        v.write_all(format!("CONNECT {}\n", pyro_protocol::AGENT_PORT).as_bytes())
            .unwrap();
        v.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        let mut text = Vec::new();
        let greeted = loop {
            if v.read_exact(&mut byte).is_err() {
                break false;
            }
            text.push(byte[0]);
            if byte[0] == b'\n' {
                assert!(
                    text.starts_with(b"OK "),
                    "{}",
                    String::from_utf8_lossy(&text)
                );
                // The agent greets first on every connection.
                break v.read_exact(&mut byte).is_ok();
            }
        };
        if greeted {
            break;
        }
        wait *= 2;
    }
    let took = started.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&base);
    took
}

/// Kilobytes of RSS and PSS of `pid` (from smaps_rollup).
fn rss_pss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn memory_line(what: &str, guests: &[Sandbox]) {
    let (mut rss, mut pss) = (0u64, 0u64);
    for g in guests {
        let pid = g.record().process.unwrap().pid;
        let (r, p) = rss_pss(pid);
        rss += r;
        pss += p;
    }
    let n = guests.len() as u64;
    println!(
        "{what:<30} {n} guest(s): RSS {:>7.1} MiB per guest, PSS {:>7.1} MiB per guest",
        rss as f64 / 1024.0 / n as f64,
        pss as f64 / 1024.0 / n as f64
    );
}

fn shell(script: &str) -> ExecRequest {
    ExecRequest {
        command: Command::Shell {
            script: script.into(),
        },
        cwd: None,
        env: Default::default(),
        timeout_ms: 60_000,
        output_limit_bytes: 4096,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = env_runs("PYRO_BENCH_RUNS", 10);
    let cold_runs = env_runs("PYRO_BENCH_COLD_RUNS", 2);
    let (env, paths, state) = support::debian12();
    let shape = Shape::default_shape();
    let sources = pyro_core::template::sources(&paths, &env).unwrap();
    let t = pyro_core::template::lookup(&paths, &env, shape, &sources)
        .unwrap_or_else(|e| panic!("no current template ({e:?}): run `pyro env pull debian:12`"));
    println!(
        "fast start on {} (PVM: {}), {} vCPU, {} MiB, {} MiB disk; template {} ({} MiB of memory)",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim(),
        pyro_vmm::host::is_pvm(),
        shape.vcpu_count,
        shape.mem_mib,
        shape.disk_mib,
        t.name,
        t.meta.mem_bytes >> 20
    );

    // The raw floor.
    let floor: Vec<f64> = (0..runs)
        .map(|i| ms(raw_floor(&t, &env, paths.cache().root(), state.path(), i)))
        .collect();
    let (floor50, _) = line("raw floor (jailer+FC, load+resume, greeting)", &floor);

    // A guest from the template through pyro (the `pyro run` path).
    let spec = |boot: BootPref| SandboxSpec {
        env: &env,
        backend: BackendKind::Firecracker,
        vcpu_count: shape.vcpu_count,
        mem_mib: shape.mem_mib,
        disk_mib: shape.disk_mib,
        idle_seconds: 0,
        boot_timeout: pyro_core::sandbox::default_boot_timeout() * 2,
        owner: Owner::this_process(),
        hostname: pyro_core::sandbox::hostname_for(None),
        upper: None,
        boot,
        progress: Default::default(),
        network: None,
    };
    let (mut start, mut refresh, mut first, mut later, mut ping) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let at = Instant::now();
        let sb = Sandbox::start(&paths, &spec(BootPref::Template))
            .await
            .unwrap();
        start.push(ms(at.elapsed()));
        assert_eq!(
            sb.boot_info().unwrap().boot_mode,
            pyro_core::sandbox::BootMode::Restored,
            "{:?}",
            sb.boot_info()
        );
        refresh.push(sb.refresh_us().unwrap() as f64 / 1000.0);
        let at = Instant::now();
        sb.exec(shell("true"), &mut Discard).await.unwrap();
        first.push(ms(at.elapsed()));
        let at = Instant::now();
        sb.exec(shell("true"), &mut Discard).await.unwrap();
        later.push(ms(at.elapsed()));
        let at = Instant::now();
        sb.call(Request::Ping, Duration::from_secs(10))
            .await
            .unwrap();
        ping.push(ms(at.elapsed()));
        sb.close().await.unwrap();
    }
    let (start50, _) = line("start from the template through pyro", &start);
    println!(
        "{:<52} p50 {:>9.1} ms",
        "  pyro's own time over the floor",
        start50 - floor50
    );
    line("  of which the guest's refresh (agent-side)", &refresh);
    line("first exec -- true after the restore", &first);
    line("later exec -- true", &later);
    line("agent ping on the same guest", &ping);

    // Cold starts of the same shape.
    let mut cold = Vec::new();
    for _ in 0..cold_runs {
        let at = Instant::now();
        let sb = Sandbox::start(&paths, &spec(BootPref::Cold("bench".into())))
            .await
            .unwrap();
        cold.push(ms(at.elapsed()));
        sb.close().await.unwrap();
    }
    let (cold50, _) = line("cold boot to agent ready", &cold);
    println!(
        "{:<52} {:>9.1}x",
        "  cold / template (p50)",
        cold50 / start50
    );

    // Workspaces: create and reset, restored and cold.
    let ws = Workspaces::new(paths.clone());
    let (mut create, mut reset) = (Vec::new(), Vec::new());
    for _ in 0..runs.min(5) {
        let at = Instant::now();
        let v = ws
            .create(
                &env,
                CreateRequest::new(BackendKind::Firecracker),
                &NoProgress,
            )
            .await
            .unwrap();
        create.push(ms(at.elapsed()));
        let at = Instant::now();
        ws.reset(&v.workspace_id, "baseline", false, &NoProgress)
            .await
            .unwrap();
        reset.push(ms(at.elapsed()));
        ws.delete(&v.workspace_id).await.unwrap();
    }
    let (mut create_cold, mut reset_cold) = (Vec::new(), Vec::new());
    for _ in 0..cold_runs {
        let mut req = CreateRequest::new(BackendKind::Firecracker);
        req.cold_boot = true;
        let at = Instant::now();
        let v = ws.create(&env, req, &NoProgress).await.unwrap();
        create_cold.push(ms(at.elapsed()));
        let at = Instant::now();
        ws.reset(&v.workspace_id, "baseline", true, &NoProgress)
            .await
            .unwrap();
        reset_cold.push(ms(at.elapsed()));
        ws.delete(&v.workspace_id).await.unwrap();
    }
    let (c50, _) = line("workspace create from the template", &create);
    let (cc50, _) = line("workspace create, cold", &create_cold);
    println!("{:<52} {:>9.1}x", "  cold / template (p50)", cc50 / c50);
    let (r50, _) = line("workspace reset to baseline from the template", &reset);
    let (rc50, _) = line("workspace reset to baseline, cold", &reset_cold);
    println!("{:<52} {:>9.1}x", "  cold / template (p50)", rc50 / r50);

    // Host memory: 1, 4 and 8 guests, restored and cold.
    for (what, boot) in [
        ("restored from one template", BootPref::Template),
        ("booted cold", BootPref::Cold("bench".into())),
    ] {
        let mut guests = Vec::new();
        for n in [1usize, 4, 8] {
            while guests.len() < n {
                let sb = Sandbox::start(&paths, &spec(boot.clone())).await.unwrap();
                // Every guest has done the same work: one command.
                sb.exec(shell("true"), &mut Discard).await.unwrap();
                guests.push(sb);
            }
            memory_line(what, &guests);
        }
        for g in guests {
            g.close().await.unwrap();
        }
    }
}

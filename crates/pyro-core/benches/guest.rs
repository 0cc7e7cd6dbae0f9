//! Real-guest figures, printed (run with `make bench`; needs debian:12 in
//! the cache and a host that can boot Firecracker guests):
//!
//! - idle cost: host CPU (user + system time of each Firecracker process,
//!   from `/proc/PID/stat`) of 1 and then 4 idle guests over a 30 s window,
//!   as a percentage of one host core per guest;
//! - the exec path: on one running guest, round trips of a bare agent
//!   `ping` (connect over hybrid vsock, greeting, request, answer), of
//!   `exec true` and of `exec git --version`, p50/p95, and the ratio of
//!   `exec true` to the ping.
//!
//! Guests run at 1 vCPU and 256 MiB, as the real-VM tests do.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pyro_core::records::Owner;
use pyro_core::sandbox::{Discard, Sandbox, SandboxSpec};
use pyro_core::{BackendKind, Paths};
use pyro_protocol::{Command, ExecRequest, Request};

const IDLE_WINDOW: Duration = Duration::from_secs(30);
/// Guests do a little work right after they answer (the agent's first
/// requests, the kernel settling); idle is measured after this.
const SETTLE: Duration = Duration::from_secs(5);

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f[11].parse().unwrap();
    let stime: u64 = f[12].parse().unwrap();
    utime + stime
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU of each guest's Firecracker process over the idle window, in
/// percent of one core.
fn idle_cpu(guests: &[Sandbox]) -> Vec<f64> {
    let pids: Vec<u32> = guests
        .iter()
        .map(|g| g.record().process.expect("a Firecracker pid").pid)
        .collect();
    std::thread::sleep(SETTLE);
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let t0 = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let secs = t0.elapsed().as_secs_f64();
    let after: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / clock_ticks_per_second() / secs * 100.0)
        .collect()
}

fn req(command: Command) -> ExecRequest {
    ExecRequest {
        command,
        cwd: None,
        env: BTreeMap::new(),
        timeout_ms: 120_000,
        output_limit_bytes: 1 << 20,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    }
}

fn argv(words: &[&str]) -> Command {
    Command::Argv {
        argv: words.iter().map(|w| (*w).to_owned()).collect(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Figures {
    p50: Duration,
    p95: Duration,
}

async fn time_n<F, Fut>(n: usize, mut f: F) -> Figures
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await; // warm-up, not counted
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed());
    }
    v.sort();
    Figures {
        p50: percentile(&v, 0.5),
        p95: percentile(&v, 0.95),
    }
}

async fn exec_ok(sb: &Sandbox, command: Command) {
    let o = sb
        .exec(req(command), &mut Discard)
        .await
        .unwrap_or_else(|e| panic!("exec failed: {e}"));
    assert_eq!(o.exit_code, 0, "the command failed in the guest");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench ... -- exec` or `-- idle` runs one part (cargo bench
    // also passes --bench, which is ignored).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let part = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let (env, paths, _state) = support::debian12();
    let spec = SandboxSpec {
        env: &env,
        backend: BackendKind::Firecracker,
        vcpu_count: 1,
        mem_mib: 256,
        disk_mib: 1024,
        idle_seconds: 0,
        boot_timeout: pyro_core::sandbox::default_boot_timeout() * 2,
        owner: Owner::this_process(),
        hostname: pyro_core::sandbox::hostname_for(None),
        upper: None,
        boot: pyro_core::sandbox::BootPref::Cold("these figures are of a cold-booted guest".into()),
        progress: Default::default(),
        network: None,
    };
    println!(
        "guest figures (1 vCPU, 256 MiB; PVM host: {})",
        pyro_vmm::host::is_pvm()
    );

    let t = Instant::now();
    let first = Sandbox::start(&paths, &spec)
        .await
        .unwrap_or_else(|e| panic!("the guest did not boot: {e}"));
    println!("boot to agent ready: {:.1} s", t.elapsed().as_secs_f64());

    if part("exec") {
        exec_figures(&first).await;
    }
    if part("idle") {
        idle_figures(first, &paths, &spec).await;
    } else {
        let _ = first.destroy();
    }
}

async fn exec_figures(first: &Sandbox) {
    let n = 20;
    let ping = time_n(n, || async {
        first
            .call(Request::Ping, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("ping failed: {e}"));
    })
    .await;
    let exec_true = time_n(n, || exec_ok(first, argv(&["true"]))).await;
    let exec_sh = time_n(n, || {
        exec_ok(
            first,
            Command::Shell {
                script: "true".into(),
            },
        )
    })
    .await;
    let git = time_n(10, || exec_ok(first, argv(&["git", "--version"]))).await;
    // The agent's own clock: from spawning `true` to reaping it.
    let mut in_guest = Vec::new();
    for _ in 0..n {
        let o = first
            .exec(req(argv(&["true"])), &mut Discard)
            .await
            .unwrap_or_else(|e| panic!("exec failed: {e}"));
        in_guest.push(Duration::from_millis(o.duration_ms));
    }
    in_guest.sort();
    println!("round trips on one running guest (n={n}, git n=10, after one warm-up each):");
    for (name, f) in [
        ("agent ping", &ping),
        ("exec true (argv)", &exec_true),
        ("exec sh -c true", &exec_sh),
        ("exec git --version", &git),
    ] {
        println!(
            "  {name:<20} p50 {:>8.1} ms   p95 {:>8.1} ms",
            ms(f.p50),
            ms(f.p95)
        );
    }
    println!(
        "  of which `true` itself, spawn to exit as the agent times it: p50 {:.1} ms",
        ms(percentile(&in_guest, 0.5))
    );
    println!(
        "  exec true / ping (p50): {:.1}x (goal: at most 3x)",
        ms(exec_true.p50) / ms(ping.p50)
    );
}

async fn idle_figures(first: Sandbox, paths: &Paths, spec: &SandboxSpec<'_>) {
    let mut guests = vec![first];
    let one = idle_cpu(&guests);
    println!(
        "idle host CPU, 1 guest over {} s: {:.2} % of a core (goal: at most 2 % per guest)",
        IDLE_WINDOW.as_secs(),
        one[0]
    );
    for _ in 0..3 {
        guests.push(
            Sandbox::start(paths, spec)
                .await
                .unwrap_or_else(|e| panic!("a guest did not boot: {e}")),
        );
    }
    let four = idle_cpu(&guests);
    let total: f64 = four.iter().sum();
    println!(
        "idle host CPU, 4 guests over {} s: {:.2} % of a core in all, {:.2} % per guest (each: {})",
        IDLE_WINDOW.as_secs(),
        total,
        total / 4.0,
        four.iter()
            .map(|c| format!("{c:.2} %"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for g in guests {
        let _ = g.destroy();
    }
}

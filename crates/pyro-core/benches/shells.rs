//! Shell round trip on host-compat, printed (run with `make bench`; needs
//! debian:12 in the cache): the time from `shell write` of `echo <n>` to a
//! `shell read` that holds its output (reads poll with a short idle wait,
//! as a model would), p50 and p95 over many round trips, against a plain
//! `exec` of `true` measured in the same run.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use pyro_core::environments::NoProgress;
use pyro_core::sandbox::Discard;
use pyro_core::workspace::{CreateRequest, ExecOptions, ShellOptions, Workspaces};
use pyro_core::{BackendKind, Command};

const ROUNDS: usize = 60;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (env, paths, _state) = support::debian12();
    let ws = Workspaces::new(paths);
    let id = ws
        .create(
            &env,
            CreateRequest::new(BackendKind::HostCompat),
            &NoProgress,
        )
        .await
        .unwrap()
        .workspace_id;
    let mut exec = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let opts = ExecOptions {
            command: Command::Argv {
                argv: vec!["true".into()],
            },
            cwd: None,
            env: Default::default(),
            timeout_seconds: 30,
            max_output_bytes: 4096,
            wait_seconds: None,
            max_memory_mib: None,
            max_tasks: None,
            secret_env: Vec::new(),
        };
        ws.exec(&id, opts, None, &mut Discard).await.unwrap();
        exec.push(t.elapsed());
    }
    let opts = ShellOptions {
        cwd: None,
        cols: 120,
        rows: 30,
        env: Default::default(),
        keep_alive: false,
        secret_env: Vec::new(),
    };
    let sh = ws.shell_open(&id, opts).await.unwrap().shell_id;
    // Past the prompt's first drawing.
    let mut cursor = ws
        .shell_read(&id, &sh, 0, 65_536, false, Some(300))
        .await
        .unwrap()
        .next_cursor;
    let mut shell = Vec::new();
    for n in 0..ROUNDS {
        let want = format!("rt-{n}-done");
        let t = Instant::now();
        ws.shell_write(&id, &sh, &format!("echo rt-{n}-done"), true)
            .await
            .unwrap();
        let mut seen = String::new();
        // The text comes twice: in the echo of the typed line, then alone.
        let give_up = Instant::now() + Duration::from_secs(20);
        while seen.matches(&want).count() < 2 {
            assert!(Instant::now() < give_up, "no answer to round {n}: {seen:?}");
            let r = ws
                .shell_read(&id, &sh, cursor, 65_536, false, Some(20))
                .await
                .unwrap();
            cursor = r.next_cursor;
            seen.push_str(&r.output.replace('\r', ""));
        }
        shell.push(t.elapsed());
    }
    println!("{:>28}  {:>10}  {:>10}", "", "p50", "p95");
    println!(
        "{:>28}  {:>10}  {:>10}",
        "exec `true` (host-compat)",
        ms(percentile(&mut exec, 0.5)),
        ms(percentile(&mut exec, 0.95))
    );
    println!(
        "{:>28}  {:>10}  {:>10}",
        "shell write -> read",
        ms(percentile(&mut shell, 0.5)),
        ms(percentile(&mut shell, 0.95))
    );
    ws.delete(&id).await.unwrap();
}

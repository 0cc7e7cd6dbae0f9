//! `pyro run`.

use std::process::ExitCode;

use pyro_core::Command;
use pyro_core::run::{RunEvent, RunOptions};
use pyro_core::sandbox::{Discard, OutputSink};
use pyro_core::{BackendKind, Paths};

use crate::cli::RunArgs;
use crate::output::{self, DIM, EXIT_RUN_FAILURE, EXIT_USAGE, Failure, Progress, YELLOW};

/// The words after `--`: one word runs through `sh -c`, several (or none:
/// core refuses that) as argv.
pub fn command_from_words(words: Vec<String>) -> Command {
    match words.len() {
        1 => Command::Shell {
            script: words.into_iter().next().unwrap_or_default(),
        },
        _ => Command::Argv { argv: words },
    }
}

pub async fn run(paths: &Paths, a: RunArgs) -> Result<ExitCode, Failure> {
    let command = command_from_words(a.command);
    let backend = BackendKind::resolve(a.backend.map(Into::into))?;
    let opts = RunOptions {
        command,
        vcpu_count: a.vcpu_count,
        mem_mib: a.mem_mib,
        timeout_seconds: a.timeout_seconds,
        boot_timeout_seconds: a.boot_timeout_seconds,
        ttl_seconds: a.ttl_seconds,
        backend,
        allow_host_compat: a.allow_host_compat,
        max_output_bytes: a.max_output_bytes,
        cwd: None,
        env: Default::default(),
        cold_boot: a.cold_boot,
        network: pyro_core::network::policy_from(
            a.network.then_some("egress"),
            &a.allow.allow_hosts,
            &a.allow.allow_cidrs,
        )?,
    };
    opts.validate()?;
    let env = crate::ensure_env(paths, &a.environment, a.json).await?;
    let json = a.json;
    let progress = Progress::new("run", json);
    let mut events = |ev: RunEvent| match ev {
        RunEvent::Booting(BackendKind::Firecracker) => pyro_core::environments::Progress::step(
            &progress,
            &format!("starting a {} guest ({} MiB)", env.name, opts.mem_mib),
        ),
        RunEvent::Step(msg) => pyro_core::environments::Progress::step(&progress, &msg),
        RunEvent::Booting(BackendKind::HostCompat) => pyro_core::environments::Progress::step(
            &progress,
            &format!("starting a {} host-compat sandbox", env.name),
        ),
        RunEvent::Fallback(reason) => {
            progress.finish();
            output::err(format!(
                "{YELLOW}warning:{YELLOW:#} the guest could not boot ({reason}); running on host-compat"
            ));
        }
        RunEvent::Running { .. } => progress.finish(),
    };
    let mut stream = output::StdStreams;
    // In JSON mode the output comes with the result.
    let sink: &mut dyn OutputSink = if json { &mut Discard } else { &mut stream };
    let work = pyro_core::run::run(paths, &env, &opts, sink, &mut events);
    let result = tokio::select! {
        r = work => r,
        code = interrupted() => {
            progress.finish();
            output::err("interrupted: the sandbox was torn down");
            return Ok(ExitCode::from(code));
        }
    };
    progress.finish();
    let result = result.map_err(|e| {
        let mut f = Failure::from(e);
        if f.code != EXIT_USAGE {
            f.code = EXIT_RUN_FAILURE;
        }
        f
    })?;
    if json {
        output::json(&result);
    } else {
        let mut summary = format!(
            "[run] environment={} execution_mode={} exit_code={} boot_mode={} boot_ms={} exec_ms={} vm_id={}",
            result.environment,
            result.execution_mode.as_str(),
            result.exit_code,
            result.boot_mode.as_str(),
            result.boot_ms,
            result.exec_ms,
            result.vm_id
        );
        if let Some(l) = &result.limit {
            output::err(format!("{YELLOW}limit:{YELLOW:#} {}", l.message));
        }
        if result.stream_cut {
            summary.push_str(&format!(
                " truncated=yes stdout_bytes={} stderr_bytes={}",
                result.stdout_bytes, result.stderr_bytes
            ));
        }
        output::err(format!("{DIM}{summary}{DIM:#}"));
        if result.boot_mode == pyro_core::sandbox::BootMode::Cold {
            output::err(format!(
                "{DIM}[run] booted cold: {}{DIM:#}",
                result.boot_reason
            ));
        }
        if result.timed_out {
            output::err(format!(
                "{YELLOW}timed out:{YELLOW:#} the command ran longer than {} s; its process group was killed",
                result.timeout_seconds
            ));
        }
        if result.stream_cut {
            output::err(format!(
                "{YELLOW}truncated:{YELLOW:#} a stream passed {} bytes, the most a command may write; the rest was dropped",
                pyro_core::limits::OUTPUT_BYTES.max
            ));
        }
    }
    Ok(ExitCode::from(u8::try_from(result.exit_code).unwrap_or(1)))
}

/// Resolves on SIGINT or SIGTERM with the conventional exit status.
pub async fn interrupted() -> u8 {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => 130,
        _ = term.recv() => 143,
    }
}

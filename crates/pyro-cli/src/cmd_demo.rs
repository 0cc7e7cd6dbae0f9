//! `pyro demo`.

use std::process::ExitCode;

use pyro_core::demo::Step;
use pyro_core::{BackendKind, Paths};

use crate::cli::DemoArgs;
use crate::output::{self, DIM, Failure, Progress};

fn human_ms(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

pub async fn demo(paths: &Paths, a: DemoArgs) -> Result<ExitCode, Failure> {
    let backend = BackendKind::resolve(a.backend.map(Into::into))?;
    let env = crate::ensure_env(paths, &a.environment, a.json).await?;
    let json = a.json;
    let progress = Progress::new("demo", true);
    pyro_core::environments::Progress::step(&progress, "create");
    let mut on_step = |s: &Step| {
        if !json {
            progress.print_out(format!(
                "[demo] {:<6} {:>8}  {}",
                s.step,
                human_ms(s.duration_ms),
                s.detail
            ));
        }
        let next = match s.step.as_str() {
            "create" => "start: booting the guest",
            "start" => "exec: git --version",
            "exec" if a.network => "egress: the guest connects to the demo's server",
            "egress" => "denial: the guest connects to the metadata address",
            "exec" | "denial" => "delete",
            _ => "done",
        };
        pyro_core::environments::Progress::step(&progress, next);
    };
    let result = tokio::select! {
        r = pyro_core::demo::run(paths, &env, backend, None, a.network, &mut on_step) => r?,
        code = crate::cmd_run::interrupted() => {
            output::err("interrupted: the sandbox was torn down");
            return Ok(ExitCode::from(code));
        }
    };
    progress.finish();
    if json {
        output::json(&result);
    } else {
        output::out(format!(
            "{DIM}[demo] total {} ({}){DIM:#}",
            human_ms(result.total_ms),
            result.execution_mode.as_str()
        ));
    }
    Ok(if result.exit_code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

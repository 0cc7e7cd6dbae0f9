//! `pyro doctor`.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::doctor::Status;

use crate::output::{self, DIM, Failure, GREEN, RED, YELLOW};

pub fn doctor(paths: &Paths, json: bool) -> Result<ExitCode, Failure> {
    let report = pyro_core::doctor::run(paths).worded(pyro_core::hint::FrontEnd::Cli);
    let code = if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if json {
        output::json(&report);
        return Ok(code);
    }
    if report.ok {
        output::out(format!("{GREEN}This host can run pyro guests.{GREEN:#}"));
    } else {
        output::out(format!(
            "{RED}This host cannot run pyro guests yet{RED:#} (see FAIL below)."
        ));
    }
    output::out(format!(
        "State: {}  Cache: {}",
        report.state_dir.display(),
        report.cache_dir.display()
    ));
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for c in &report.checks {
        let tag = match c.status {
            Status::Pass => format!("{GREEN}PASS{GREEN:#}"),
            Status::Warn => format!("{YELLOW}WARN{YELLOW:#}"),
            Status::Fail => format!("{RED}FAIL{RED:#}"),
        };
        output::out(format!("{tag}  {:width$}  {}", c.name, c.detail));
        if let Some(fix) = &c.fix {
            output::out(format!("      {:width$}  {DIM}fix: {fix}{DIM:#}", ""));
        }
    }
    Ok(code)
}

//! `pyro host`, `pyro completions`, `pyro man`.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::host::{self, HostDirs, ServerCommand};

use crate::cli::{CompletionsArgs, HostCmd};
use crate::cli_host::HostTarget;
use crate::output::{self, DIM, Failure};

pub fn run(paths: &Paths, cmd: HostCmd) -> (bool, Result<ExitCode, Failure>) {
    match cmd {
        HostCmd::Connect(a) => (a.target.json, connect(paths, &a.target, a.profile.into())),
        HostCmd::PrintConfig(_) => unreachable!("answered before the sweep (print_only)"),
        HostCmd::Disconnect(t) => (t.json, disconnect(paths, &t)),
    }
}

/// `pyro host print-config`, which reads and writes no state (answered
/// before the sweep of leftovers).
pub fn print_only(a: &crate::cli_host::HostArgs) -> ExitCode {
    match print_config(&a.target, a.profile.into()) {
        Ok(code) => code,
        Err(f) => {
            output::report(&f, a.target.json);
            ExitCode::from(f.code)
        }
    }
}

fn dirs() -> Result<HostDirs, Failure> {
    Ok(HostDirs::from_env()?)
}

fn print_config(t: &HostTarget, profile: pyro_mcp::Profile) -> Result<ExitCode, Failure> {
    let server = ServerCommand::current(profile.as_str())?;
    let c = host::print_config(&dirs()?, t.host.into(), t.scope.into(), server);
    if t.json {
        output::json(&c);
    } else {
        output::err(format!("{DIM}# belongs in {}{DIM:#}", c.file.display()));
        output::out(c.snippet.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn connect(paths: &Paths, t: &HostTarget, profile: pyro_mcp::Profile) -> Result<ExitCode, Failure> {
    let server = ServerCommand::current(profile.as_str())?;
    let change = host::connect(paths, &dirs()?, t.host.into(), t.scope.into(), server)?;
    show(&change, t.json);
    Ok(ExitCode::SUCCESS)
}

fn disconnect(paths: &Paths, t: &HostTarget) -> Result<ExitCode, Failure> {
    let change = host::disconnect(paths, &dirs()?, t.host.into(), t.scope.into())?;
    show(&change, t.json);
    Ok(ExitCode::SUCCESS)
}

fn show(c: &host::Change, json: bool) {
    if json {
        output::json(c);
        return;
    }
    output::out(&c.summary);
    if let Some(b) = &c.backup {
        output::out(format!("{DIM}backup: {}{DIM:#}", b.display()));
    }
}

pub fn completions(a: &CompletionsArgs) -> ExitCode {
    let mut cmd = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "pyro", &mut out);
    write_out(&out)
}

pub fn man() -> ExitCode {
    let mut out = Vec::new();
    match clap_mangen::Man::new(crate::cli::command()).render(&mut out) {
        Ok(()) => write_out(&out),
        Err(e) => {
            output::err(format!("cannot render the manual page: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_out(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            output::err(format!("cannot write to stdout: {e}"));
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

//! `pyro`: disposable, persistent Linux workspaces in Firecracker microVMs
//! for chat-based coding agents.

#![forbid(unsafe_code)]

mod cli;
mod cli_bounds;
mod cli_env;
mod cli_host;
mod cli_mcp;
mod cli_network;
mod cli_secrets;
mod cli_service;
mod cli_shell;
mod cmd_demo;
mod cmd_doctor;
mod cmd_env;
mod cmd_host;
mod cmd_network;
mod cmd_run;
mod cmd_service;
mod cmd_shell;
mod cmd_snapshot;
mod cmd_workspace;
mod output;
mod status_limits;

use std::io::IsTerminal;
use std::process::ExitCode;

use pyro_core::Paths;

use crate::cli::{Cli, Cmd, EnvCmd, McpCmd};
use crate::output::Failure;

fn main() -> ExitCode {
    pyro_core::helper_main();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&cli::command().get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // Docs tests check that every command line they show parses.
    if std::env::var_os("PYRO_CHECK_ARGS").is_some() {
        output::err("pyro: the arguments parse; nothing was run (PYRO_CHECK_ARGS is set)");
        return ExitCode::SUCCESS;
    }
    match &cli.command {
        Cmd::Completions(a) => return cmd_host::completions(a),
        Cmd::Man => return cmd_host::man(),
        Cmd::Host(cli::HostCmd::PrintConfig(a)) => return cmd_host::print_only(a),
        _ => {}
    }
    init_logging();
    let paths = Paths::from_env();
    let report = pyro_core::sweep::sweep(&paths);
    for line in &report.updated {
        tracing::info!("{line}.");
    }
    for line in report.removed.iter().chain(&report.problems) {
        tracing::warn!("{line}.");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::report(
                &Failure {
                    code: 1,
                    kind: "io",
                    message: format!("cannot start the runtime: {e}"),
                },
                false,
            );
            return ExitCode::FAILURE;
        }
    };
    let (json, result) = match cli.command {
        Cmd::Env(EnvCmd::List(a)) => (a.json, cmd_env::list(&paths, a.json)),
        Cmd::Env(EnvCmd::Pull(a)) => (a.json, rt.block_on(cmd_env::pull(&paths, a))),
        Cmd::Env(EnvCmd::Push(a)) => (a.json, rt.block_on(cmd_env::push(&paths, a))),
        Cmd::Env(EnvCmd::Import(a)) => (a.json, rt.block_on(cmd_env::import(&paths, a))),
        Cmd::Env(EnvCmd::Template(c)) => rt.block_on(cmd_env::template(&paths, c)),
        Cmd::Env(EnvCmd::Inspect(a)) => (a.json, cmd_env::inspect(&paths, &a.environment, a.json)),
        Cmd::Env(EnvCmd::Prune(a)) => (a.json, cmd_env::prune(&paths, a.json)),
        Cmd::Run(a) => {
            let json = a.json;
            (json, rt.block_on(cmd_run::run(&paths, a)))
        }
        Cmd::Workspace(c) => rt.block_on(cmd_workspace::run(&paths, c)),
        Cmd::Mcp(McpCmd::Serve(a)) => (false, rt.block_on(mcp_serve(&paths, a))),
        Cmd::Doctor(a) => (a.json, cmd_doctor::doctor(&paths, a.json)),
        Cmd::Demo(a) => {
            let json = a.json;
            (json, rt.block_on(cmd_demo::demo(&paths, a)))
        }
        Cmd::Host(c) => cmd_host::run(&paths, c),
        Cmd::Completions(_) | Cmd::Man => unreachable!("answered before the sweep"),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            output::report(&f, json);
            ExitCode::from(f.code)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PYRO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .without_time()
        .init();
}

/// Resolves an environment for use, pulling it first when it is missing or
/// stale (with progress on stderr).
pub async fn ensure_env(
    paths: &Paths,
    name: &str,
    quiet: bool,
) -> Result<pyro_core::environments::Installed, Failure> {
    let progress = output::Progress::new("pull", quiet);
    let env = pyro_core::environments::ensure_ready(paths, name, &progress).await?;
    progress.finish();
    Ok(env)
}

/// `pyro mcp serve`: stdout belongs to the protocol from here on.
async fn mcp_serve(paths: &Paths, a: cli::McpServeArgs) -> Result<ExitCode, Failure> {
    let backend = pyro_core::BackendKind::resolve(a.backend.map(Into::into))?;
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::usage(format!("cannot read the working directory: {e}")))?;
    let options = pyro_mcp::Options::new(
        a.profile.into(),
        backend,
        paths.clone(),
        &cwd,
        &a.allow_roots,
        a.project_path.as_deref(),
    )
    .map_err(Failure::usage)?;
    pyro_mcp::serve_stdio(options).await.map_err(|m| Failure {
        code: 1,
        kind: "mcp",
        message: m,
    })?;
    Ok(ExitCode::SUCCESS)
}

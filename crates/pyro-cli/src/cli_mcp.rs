//! `pyro mcp serve`: the command tree (help texts marked "seed" are part
//! of the product spec).

use clap::{Args, Subcommand, ValueEnum};

use crate::cli::Backend;

/// Seed: `pyro mcp serve` description.
pub const MCP_SERVE_ABOUT: &str = "Expose pyro tools over stdio for an MCP client. Bare `pyro mcp serve` now starts `workspace-core`, the recommended first profile for most chat hosts.";

/// Seed: the `--profile` help.
pub const MCP_PROFILE_HELP: &str = "Expose only one model-facing tool profile. `workspace-core` is the default and recommended first profile for most chat hosts; `workspace-full` is the larger opt-in profile.";

/// Seed: the `pyro mcp serve` epilog.
pub const MCP_SERVE_EPILOG: &str = "\
Default and recommended first start:
  pyro mcp serve

Profiles:
  workspace-core: default for normal persistent chat editing
  vm-run: smallest one-shot-only surface
  workspace-full: larger opt-in surface for shells, services,
    snapshots, secrets, network policy, and disk tools

Use --profile workspace-full only when the host truly needs those
extra workspace capabilities.";

#[derive(Debug, Subcommand)]
pub enum McpCmd {
    #[command(about = MCP_SERVE_ABOUT, after_help = MCP_SERVE_EPILOG)]
    Serve(McpServeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    VmRun,
    WorkspaceCore,
    WorkspaceFull,
}

impl From<ProfileArg> for pyro_mcp::Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::VmRun => Self::VmRun,
            ProfileArg::WorkspaceCore => Self::WorkspaceCore,
            ProfileArg::WorkspaceFull => Self::WorkspaceFull,
        }
    }
}

#[derive(Debug, Args)]
pub struct McpServeArgs {
    #[arg(long, value_enum, default_value = "workspace-core", help = MCP_PROFILE_HELP)]
    pub profile: ProfileArg,
    /// Also let tools read from and write to this host directory (repeatable; the server's working directory is always allowed).
    #[arg(long = "allow-root", value_name = "DIR")]
    pub allow_roots: Vec<std::path::PathBuf>,
    /// Seed new workspaces from this Git checkout's tracked files [default: the checkout the server starts in, if any].
    #[arg(long, value_name = "DIR")]
    pub project_path: Option<std::path::PathBuf>,
    /// Runtime backend [default: $PYRO_BACKEND, else firecracker].
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
}

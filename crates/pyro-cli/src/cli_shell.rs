//! Arguments of `pyro workspace shell ...`.

use clap::{Args, Subcommand};
use pyro_core::limits as L;

use crate::cli::WsIdArgs;

#[derive(Debug, Subcommand)]
pub enum WsShellCmd {
    /// Open a shell (bash on a terminal) in a started workspace.
    Open(WsShellOpenArgs),
    /// Read a shell's output from a cursor.
    Read(WsShellReadArgs),
    /// Type into a shell (a newline is added unless --no-newline).
    Write(WsShellWriteArgs),
    /// Send a signal to what runs in a shell (its foreground process group).
    Signal(WsShellSignalArgs),
    /// Change a shell's terminal size (what runs in it is told).
    Resize(WsShellResizeArgs),
    /// End a shell and every process it started.
    Close(WsShellIdArgs),
    /// List a workspace's shells (those a stop or reset ended too, with why).
    List(WsIdArgs),
}

#[derive(Debug, Args)]
pub struct WsShellOpenArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Working directory (relative paths are under /workspace).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Terminal width.
    #[arg(long, default_value_t = L::SHELL_COLS.default)]
    pub cols: u16,
    /// Terminal height.
    #[arg(long, default_value_t = L::SHELL_ROWS.default)]
    pub rows: u16,
    /// An environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Keep the VM from its idle power-off while this shell is open (by default an open shell does not).
    #[arg(long)]
    pub keep_alive: bool,
    #[command(flatten)]
    pub secret_env: crate::cli_secrets::SecretEnvArgs,
    /// Print only the shell id.
    #[arg(long, conflicts_with = "json")]
    pub id_only: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsShellIdArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The shell id (from `shell open`).
    pub shell_id: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsShellReadArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The shell id (from `shell open`).
    pub shell_id: String,
    /// Where to read from (the previous read's next cursor).
    #[arg(long, default_value_t = 0)]
    pub cursor: u64,
    /// Most output returned, bytes (so at most this many characters).
    #[arg(long, default_value_t = L::SHELL_READ_CHARS.default)]
    pub max_chars: u64,
    /// Render the output as a person would see it (control sequences applied).
    #[arg(long)]
    pub plain: bool,
    /// First wait until the output has been quiet this long (or the shell ended).
    #[arg(long)]
    pub wait_for_idle_ms: Option<u64>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsShellWriteArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The shell id (from `shell open`).
    pub shell_id: String,
    /// The text to type.
    #[arg(long)]
    pub input: String,
    /// Do not press Enter after it.
    #[arg(long)]
    pub no_newline: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsShellSignalArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The shell id (from `shell open`).
    pub shell_id: String,
    /// HUP, INT, TERM or KILL.
    #[arg(long, default_value = L::SHELL_SIGNAL)]
    pub signal: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsShellResizeArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The shell id (from `shell open`).
    pub shell_id: String,
    /// Terminal width.
    #[arg(long)]
    pub cols: u16,
    /// Terminal height.
    #[arg(long)]
    pub rows: u16,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

//! Arguments of `pyro workspace service ...`.

use clap::{Args, Subcommand};
use pyro_core::limits as L;
use pyro_core::workspace::Restart;

use crate::cli::WsIdArgs;

#[derive(Debug, Subcommand)]
pub enum WsServiceCmd {
    /// Start a named service in a started workspace and wait until it is ready.
    Start(WsServiceStartArgs),
    /// List a workspace's services (those a stop or reset ended too, with why).
    List(WsIdArgs),
    /// Show one service.
    Status(WsServiceIdArgs),
    /// Read a service's stdout and stderr: the last lines, or from offsets.
    Logs(WsServiceLogsArgs),
    /// Stop a service: TERM to its process group, KILL after a grace period.
    Stop(WsServiceStopArgs),
}

#[derive(Debug, Args)]
pub struct WsServiceStartArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The service's name (letters, digits, `.`, `_`, `-`).
    pub service_name: String,
    /// Working directory (relative paths are under /workspace).
    #[arg(long)]
    pub cwd: Option<String>,
    /// An environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Ready once this file exists (relative paths are under the service's cwd).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<String>,
    /// Ready once HOST:PORT in the guest accepts a TCP connection (`:8080` is localhost).
    #[arg(long, value_name = "HOST:PORT")]
    pub ready_tcp: Option<String>,
    /// Ready once a GET of this http:// URL in the guest answers 2xx or 3xx.
    #[arg(long, value_name = "URL")]
    pub ready_http: Option<String>,
    /// Ready once this shell command exits 0 (run in the service's cwd).
    #[arg(long, value_name = "CMD")]
    pub ready_command: Option<String>,
    /// How long it may take to become ready; then it is killed and marked failed.
    #[arg(long, default_value_t = L::READY_TIMEOUT_SECONDS.default)]
    pub ready_timeout_seconds: u64,
    /// Time between readiness checks.
    #[arg(long, default_value_t = L::READY_INTERVAL_MS.default)]
    pub ready_interval_ms: u64,
    /// `on-start`: start it again (with its readiness check) whenever the workspace starts.
    #[arg(long, default_value = "no", value_parser = parse_restart)]
    pub restart: Restart,
    /// Keep the VM from its idle power-off while the service runs (by default a service does not).
    #[arg(long)]
    pub keep_alive: bool,
    /// Publish the guest's GUEST_PORT on the host's 127.0.0.1 (on HOST_PORT, or any free port) while the service runs; repeatable; needs the network policy egress+published-ports.
    #[arg(long = "publish", value_name = "[HOST_PORT:]GUEST_PORT")]
    pub publish: Vec<String>,
    /// Give the service the workspace's secret SECRET as environment variable ENV (default: a variable named SECRET; repeatable); its logs then stay in the guest's memory, never on its disk.
    #[arg(long = "secret-env", value_name = "SECRET[=ENV]")]
    pub secret_env: Vec<String>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The command, after `--`.
    #[arg(last = true, value_name = "CMD", required = true)]
    pub command: Vec<String>,
}

fn parse_restart(s: &str) -> Result<Restart, String> {
    s.parse::<Restart>()
        .map_err(|e| e.message(pyro_core::hint::FrontEnd::Cli))
}

#[derive(Debug, Args)]
pub struct WsServiceIdArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The service's name.
    pub service_name: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsServiceStopArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The service's name.
    pub service_name: String,
    /// Seconds between TERM and KILL.
    #[arg(long, default_value_t = L::STOP_GRACE_SECONDS.default)]
    pub grace_seconds: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsServiceLogsArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The service's name.
    pub service_name: String,
    /// Lines of each stream from its end (unless an offset is given).
    #[arg(long, default_value_t = L::TAIL_LINES.default)]
    pub tail_lines: u64,
    /// Read stdout from this offset (a previous read's stdout next) instead of the tail.
    #[arg(long)]
    pub stdout_from: Option<u64>,
    /// Read stderr from this offset (a previous read's stderr next) instead of the tail.
    #[arg(long)]
    pub stderr_from: Option<u64>,
    /// Most bytes returned per stream.
    #[arg(long, default_value_t = L::LOG_BYTES.default)]
    pub max_bytes: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

//! What the service calls take and return.

use pyro_protocol::Readiness;

use super::*;

/// When a service is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Restart {
    /// Never: a stop or reset of the workspace ends it for good.
    #[default]
    No,
    /// Whenever the workspace starts (after a stop, its idle power-off or a
    /// reset), with its readiness check.
    OnStart,
}

impl std::str::FromStr for Restart {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s {
            "no" => Ok(Restart::No),
            "on-start" => Ok(Restart::OnStart),
            other => Err(CoreError::invalid(format!(
                "unknown restart policy {other:?}; ⟨arg:restart⟩ takes no or on-start"
            ))),
        }
    }
}

/// The readiness checks a caller may give; at most one.
#[derive(Debug, Clone, Default)]
pub struct ReadinessChoice {
    /// A file that exists once ready (relative to the service's cwd).
    pub ready_file: Option<String>,
    /// `HOST:PORT` that accepts a TCP connection once ready.
    pub ready_tcp: Option<String>,
    /// `http://` URL that answers 2xx or 3xx once ready.
    pub ready_http: Option<String>,
    /// A shell command that exits 0 once ready.
    pub ready_command: Option<String>,
}

impl ReadinessChoice {
    /// The one check given (or none); two or more is an error naming them.
    pub(super) fn pick(self) -> Result<Option<Readiness>, CoreError> {
        let given: Vec<(&str, Readiness)> = [
            (
                "ready_file",
                self.ready_file.map(|path| Readiness::File { path }),
            ),
            (
                "ready_tcp",
                self.ready_tcp.map(|address| Readiness::Tcp { address }),
            ),
            (
                "ready_http",
                self.ready_http.map(|url| Readiness::Http { url }),
            ),
            (
                "ready_command",
                self.ready_command
                    .map(|command| Readiness::Command { command }),
            ),
        ]
        .into_iter()
        .filter_map(|(n, r)| r.map(|r| (n, r)))
        .collect();
        if given.len() > 1 {
            let names: Vec<String> = given.iter().map(|(n, _)| format!("⟨arg:{n}⟩")).collect();
            return Err(CoreError::invalid(format!(
                "give one readiness check, not {}: {}",
                names.len(),
                names.join(" and ")
            )));
        }
        let Some((_, r)) = given.into_iter().next() else {
            return Ok(None);
        };
        check_readiness(&r)?;
        Ok(Some(r))
    }
}

pub(super) fn check_readiness(r: &Readiness) -> Result<(), CoreError> {
    let bad = |arg: &str, what: &str| Err(CoreError::invalid(format!("⟨arg:{arg}⟩ {what}")));
    match r {
        Readiness::File { path } if path.trim().is_empty() || path.contains('\0') => {
            bad("ready_file", "must name a file")
        }
        Readiness::Tcp { address } => {
            let port = address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok());
            if port.is_none_or(|p| p == 0) {
                return bad(
                    "ready_tcp",
                    "takes HOST:PORT (the host may be left out: :8080), with a port of 1 to 65535",
                );
            }
            Ok(())
        }
        Readiness::Http { url } => {
            let rest = url.strip_prefix("http://").unwrap_or("");
            let authority = rest.split('/').next().unwrap_or("");
            if authority.is_empty()
                || authority.contains('@')
                || url
                    .bytes()
                    .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
            {
                return bad(
                    "ready_http",
                    "takes an http:// URL, such as http://127.0.0.1:8080/health",
                );
            }
            Ok(())
        }
        Readiness::Command { command } if command.trim().is_empty() => {
            bad("ready_command", "must not be empty")
        }
        _ => Ok(()),
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// What to run.
    pub command: pyro_protocol::Command,
    /// Working directory: relative to `/workspace`, or absolute.
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Its readiness check.
    pub readiness: ReadinessChoice,
    /// How long it may take to become ready.
    pub ready_timeout_seconds: u64,
    /// Time between readiness checks.
    pub ready_interval_ms: u64,
    /// Whether it starts again when the workspace starts.
    pub restart: Restart,
    /// Whether it keeps the VM from its idle power-off while it runs.
    pub keep_alive: bool,
    /// Guest ports to publish on the host's 127.0.0.1.
    pub publish: Vec<super::PortMapping>,
    /// Secrets given to it as environment variables: `SECRET` or
    /// `SECRET=VARIABLE` (its logs then stay in the guest's memory).
    pub secret_env: Vec<String>,
}

/// Which part of a service's logs to read.
#[derive(Debug, Clone, Copy)]
pub enum LogsRange {
    /// The last lines of each stream.
    Tail(u64),
    /// From these offsets on (`None`: nothing of that stream).
    From {
        /// Offset in stdout.
        stdout: Option<u64>,
        /// Offset in stderr.
        stderr: Option<u64>,
    },
}

impl LogsRange {
    /// What a caller's arguments ask for: the offsets when either is
    /// given, else the tail.
    pub fn new(tail_lines: u64, stdout_from: Option<u64>, stderr_from: Option<u64>) -> Self {
        if stdout_from.is_some() || stderr_from.is_some() {
            LogsRange::From {
                stdout: stdout_from,
                stderr: stderr_from,
            }
        } else {
            LogsRange::Tail(tail_lines)
        }
    }
}

/// A readiness check, described.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReadinessView {
    /// `file`, `tcp`, `http` or `command`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The file, address, URL or command.
    pub target: String,
}

/// A service.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceView {
    /// Workspace.
    pub workspace_id: String,
    /// The service's name.
    pub service_name: String,
    /// `starting`, `ready`, `exited` (`exit_code`), `failed` (`reason`:
    /// exited_before_ready, readiness_timeout or start_failed), `stopped`
    /// (`reason`: sigterm or sigkill), or `ended` (its workspace stopped
    /// or was reset: `reason` says which).
    pub state: String,
    /// Why it failed, stopped or ended.
    pub reason: Option<String>,
    /// What it runs.
    pub command: String,
    /// Working directory.
    pub cwd: String,
    /// Its readiness check (none: ready once started).
    pub readiness: Option<ReadinessView>,
    /// When it starts again.
    pub restart: Restart,
    /// Whether it keeps the VM from its idle power-off.
    pub keep_alive: bool,
    /// Its process id (and process group) in the guest.
    pub pid: Option<i32>,
    /// How its process ended.
    pub exit_code: Option<i32>,
    /// When it was started (Unix seconds).
    pub started_at: f64,
    /// When it became ready.
    pub ready_at: Option<f64>,
    /// When it ended.
    pub ended_at: Option<f64>,
    /// What the last failed readiness check said.
    pub last_probe_error: Option<String>,
    /// Its ports published on the host (while it runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published_ports: Vec<super::PublishedPort>,
}

impl ServiceView {
    /// Whether it runs (starting or ready).
    pub fn running(&self) -> bool {
        matches!(self.state.as_str(), "starting" | "ready")
    }
}

/// Every service of a workspace.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceListView {
    /// Workspace.
    pub workspace_id: String,
    /// How many.
    pub count: usize,
    /// How many run (starting or ready).
    pub running_count: usize,
    /// The services, oldest first.
    pub services: Vec<ServiceView>,
}

/// Where one stream of a logs read lies in the stream.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogPosition {
    /// Offset of the first byte returned.
    pub from: u64,
    /// Offset to read from next (give it back to continue).
    pub next: u64,
    /// The oldest offset the guest still keeps (its logs rotate: it keeps
    /// the last 2 to 4 MiB per stream).
    pub start: u64,
    /// Offset after the newest output.
    pub end: u64,
    /// Bytes asked for that had rotated away: lost, and this says so.
    pub dropped_bytes: u64,
    /// Bytes the service wrote that the guest could not save (disk full).
    pub unsaved_bytes: u64,
}

/// A service's logs.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceLogsView {
    /// The service.
    #[serde(flatten)]
    pub service: ServiceView,
    /// Its standard output (invalid UTF-8 replaced).
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Where the stdout returned lies.
    pub stdout_position: LogPosition,
    /// Where the stderr returned lies.
    pub stderr_position: LogPosition,
    /// Whether more output than was returned is kept: a tail cut at
    /// `max_bytes`, or a range with more after `next`.
    pub truncated: bool,
    /// Secret values redacted from `stdout` and `stderr` (each shows as
    /// `[redacted:NAME]`).
    #[serde(skip_serializing_if = "crate::workspace::is_zero")]
    pub redactions: u64,
}

#[cfg(test)]
mod tests;

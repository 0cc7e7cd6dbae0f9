//! The workspace surface's requests and results (defaults and bounds are in
//! [`crate::limits`]).

use super::*;

/// The workspace directory inside the guest.
pub const WORKSPACE_ROOT: &str = "/workspace";
/// The snapshot every workspace has: its disk right after seeding.
pub const BASELINE: &str = "baseline";
/// Default workspace quota (`PYRO_MAX_WORKSPACES`).
pub const DEFAULT_MAX_WORKSPACES: usize = 4;
/// How long an expired workspace's disk is kept (`PYRO_EXPIRY_GRACE_SECONDS`).
pub const DEFAULT_EXPIRY_GRACE_SECONDS: u64 = 86_400;
/// Largest patch.
pub const PATCH_LIMIT: usize = 8 << 20;
/// The most bytes of names a listing or a diff returns in its entries.
pub const KEPT_BYTES_MAX: usize = 16 << 20;

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Optional name.
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// What to seed `/workspace` with.
    pub seed: Option<SeedSource>,
    /// vCPUs.
    pub vcpu_count: u8,
    /// Memory.
    pub mem_mib: u32,
    /// Writable disk size.
    pub disk_mib: u64,
    /// Idle deadline.
    pub ttl_seconds: u64,
    /// Backend.
    pub backend: BackendKind,
    /// Fall back to host-compat when the guest cannot boot.
    pub allow_host_compat: bool,
    /// Boot deadline (default: generous on PVM hosts).
    pub boot_timeout: Option<Duration>,
    /// Boot cold even where a template could be restored.
    pub cold_boot: bool,
    /// What the guest may reach.
    pub network: pyro_net::Policy,
    /// Secrets its commands can be given (never written to its disk).
    pub secrets: Vec<super::secrets::SecretSpec>,
}

impl CreateRequest {
    /// A request with the documented defaults.
    pub fn new(backend: BackendKind) -> Self {
        Self {
            name: None,
            labels: BTreeMap::new(),
            seed: None,
            vcpu_count: limits::VCPUS.default,
            mem_mib: limits::MEM_MIB.default,
            disk_mib: limits::DISK_MIB.default,
            ttl_seconds: limits::WORKSPACE_TTL_SECONDS.default,
            backend,
            allow_host_compat: false,
            boot_timeout: None,
            cold_boot: false,
            network: pyro_net::Policy::off(),
            secrets: Vec::new(),
        }
    }
}

/// A seed.
#[derive(Debug, Clone)]
pub struct SeedSource {
    /// Directory or archive on the host.
    pub path: PathBuf,
    /// Which files of a directory.
    pub mode: SeedMode,
    /// `seed_path` or `project`.
    pub origin: &'static str,
}

/// A workspace as callers see it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct View {
    /// The handle.
    pub workspace_id: String,
    /// Name.
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Environment.
    pub environment: String,
    /// Environment version.
    pub environment_version: String,
    /// Backend.
    pub backend: String,
    /// How commands run.
    pub execution_mode: ExecutionMode,
    /// Why it runs on host-compat when Firecracker was asked for.
    pub fallback_reason: Option<String>,
    /// `creating`, `started`, `stopped` or `resetting`.
    pub state: String,
    /// Why it is in that state.
    pub state_reason: Option<String>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: f64,
    /// Last activity (Unix seconds).
    pub last_activity_at: f64,
    /// When the VM stops if idle (while started).
    pub expires_at: Option<f64>,
    /// The idle deadline in seconds.
    pub ttl_seconds: u64,
    /// When it stopped.
    pub stopped_at: Option<f64>,
    /// When an expired workspace will be deleted unless started again.
    pub delete_after: Option<f64>,
    /// vCPUs.
    pub vcpu_count: u8,
    /// Memory.
    pub mem_mib: u32,
    /// Writable disk size.
    pub disk_mib: u64,
    /// Commands since creation or the last reset.
    pub command_count: u64,
    /// The last command.
    pub last_command: Option<LastCommand>,
    /// What seeded it.
    pub workspace_seed: SeedInfo,
    /// Resets so far.
    pub reset_count: u64,
    /// Last reset.
    pub last_reset_at: Option<f64>,
    /// The workspace directory in the guest.
    pub workspace_path: String,
    /// The workspace it was forked from, if it is a fork.
    pub forked_from: Option<ForkedFrom>,
    /// How its VM last started: `restored` from a template or `cold`.
    pub boot_mode: Option<crate::sandbox::BootMode>,
    /// Which template it was restored from, or why it booted cold.
    pub boot_reason: Option<String>,
    /// What its guest may reach.
    pub network: pyro_net::Policy,
    /// The names of its secrets (never their values).
    pub secrets: Vec<String>,
    /// Connections and DNS queries its network policy refused (on record
    /// in the denial log; see `workspace network log`).
    pub network_denials: u64,
    /// Shells open in its running VM (`status` and `list`; unknown while
    /// it is not started).
    pub shell_count: Option<usize>,
    /// Services of its running VM (`status` and `list`).
    pub service_count: Option<usize>,
    /// Of those, how many run (starting or ready); unknown when the guest
    /// did not answer in time.
    pub running_service_count: Option<usize>,
    /// Services started again with the workspace (`start` and `reset`):
    /// those started with restart on-start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services_restarted: Vec<super::ServiceView>,
    /// What holds it in (host cgroups, the guest's limits on commands, its
    /// disk's space) and what this host does not give it.
    pub protections: crate::protections::Protections,
}

/// Options of one command.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// What to run.
    pub command: Command,
    /// Working directory: relative to `/workspace`, or absolute.
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Timeout.
    pub timeout_seconds: u64,
    /// Cap on returned output per stream (the log keeps up to 16 MiB).
    pub max_output_bytes: u64,
    /// Return after this many seconds with the command still running in
    /// the background (continued by `exec_wait`); `None` waits for its end.
    pub wait_seconds: Option<u64>,
    /// The command's own memory cap, MiB (else it shares the guest's
    /// command memory with the others).
    pub max_memory_mib: Option<u64>,
    /// The most tasks (processes and threads) it may have at once (else
    /// the guest's per-command limit).
    pub max_tasks: Option<u64>,
    /// Secrets given to the command as environment variables: `SECRET`
    /// (as a variable of the same name) or `SECRET=VARIABLE`.
    pub secret_env: Vec<String>,
}

/// Whether a command has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ExecState {
    /// It ended: `exit_code` says how.
    Finished,
    /// It runs on in the background: `exec_wait` continues it.
    Running,
}

/// The result of a command.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExecView {
    /// Workspace.
    pub workspace_id: String,
    /// Sequence number in the command log.
    pub sequence: u64,
    /// The command.
    pub command: String,
    /// Working directory.
    pub cwd: String,
    /// `finished`, or `running` in the background (continue with
    /// `exec_wait` and this `sequence`, or stop it with `exec_cancel`).
    pub state: ExecState,
    /// Exit code (124 on timeout); null while running.
    pub exit_code: Option<i32>,
    /// Whether the timeout fired.
    pub timed_out: bool,
    /// Effective timeout.
    pub timeout_seconds: u64,
    /// Standard output (first `max_output_bytes`, lossy UTF-8; for a
    /// command waited for again, what came since the last wait).
    pub stdout: String,
    /// Standard error (same).
    pub stderr: String,
    /// Bytes written to stdout.
    pub stdout_bytes: u64,
    /// Bytes written to stderr.
    pub stderr_bytes: u64,
    /// Whether the returned output was cut (the log has more).
    pub truncated: bool,
    /// Cap applied to the returned output.
    pub max_output_bytes: u64,
    /// Run time.
    pub duration_ms: u64,
    /// How it ran.
    pub execution_mode: ExecutionMode,
    /// A guest limit the command hit (memory, tasks, a full disk), with
    /// what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<crate::protections::LimitHit>,
    /// Secret values redacted from this command's output so far; the
    /// output holds `[redacted:NAME]` in their place (its text and
    /// working directory are redacted too).
    #[serde(skip_serializing_if = "crate::workspace::is_zero")]
    pub redactions: u64,
    /// Set when the command log on the host is incomplete (a write failed,
    /// such as on a full disk), saying why; the output returned here is
    /// still whole up to `max_output_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
}

/// A sync push result.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SyncView {
    /// Workspace.
    pub workspace_id: String,
    /// `directory` or `archive`.
    pub mode: String,
    /// Host source.
    pub source_path: PathBuf,
    /// Guest destination.
    pub destination: String,
    /// Entries written.
    pub entry_count: u64,
    /// Bytes of file content.
    pub bytes_written: u64,
    /// How it ran.
    pub execution_mode: ExecutionMode,
}

/// An export.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExportView {
    /// Workspace.
    pub workspace_id: String,
    /// Guest path.
    pub workspace_path: String,
    /// Host path written.
    pub output_path: PathBuf,
    /// What was exported.
    pub kind: EntryKind,
    /// Entries written.
    pub entry_count: u64,
    /// Bytes of file content.
    pub bytes_written: u64,
    /// Secret values redacted from the text files written (each shows as
    /// `[redacted:NAME]`; binary files are copied as they are).
    #[serde(skip_serializing_if = "crate::workspace::is_zero")]
    pub redactions: u64,
    /// How many files those were in.
    #[serde(skip_serializing_if = "crate::workspace::is_zero")]
    pub redacted_files: u64,
}

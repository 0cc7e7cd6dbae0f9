//! JSON control messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CommandLimits, GuestLimit, GuestUsage};

/// Where the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    /// PID 1 of a Firecracker guest.
    Guest,
    /// A host process in a chroot with private namespaces.
    HostCompat,
}

/// The agent's greeting: first frame on every connection, and the readiness
/// push it sends to the host once it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the agent.
    pub protocol_version: u32,
    /// The agent's crate version.
    pub agent_version: String,
    /// Guest or host-compat.
    pub mode: AgentMode,
    /// Optional features the agent offers, by name.
    pub capabilities: Vec<String>,
    /// Milliseconds since the agent (or the guest kernel) started.
    pub uptime_ms: u64,
}

/// What the host sends after the agent's [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The host's [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// What to do.
    pub request: Request,
}

/// How many bytes of host entropy a [`Request::Refresh`] carries.
pub const REFRESH_ENTROPY_BYTES: usize = 64;

/// A request to the agent. One per connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Liveness check; answered with [`Response::Pong`].
    Ping,
    /// Run one command; output streams back as frames, then
    /// [`Response::Exec`].
    Exec(ExecRequest),
    /// Power the guest off after this many idle seconds (the agent holds the
    /// deadline, so it holds with no host process around). `None` clears it.
    SetDeadline {
        /// Seconds from now, or `None` for no deadline.
        idle_seconds: Option<u64>,
    },
    /// Flush every filesystem to its disk.
    Sync,
    /// Sent first after a snapshot restore, before any other request: make
    /// this guest a machine of its own. The agent mixes `entropy` into the
    /// kernel's pool and forces a reseed, steps the clock to `unix_time_ns`,
    /// and sets the hostname (and the machine id derived from it) and the
    /// idle deadline. Answered with [`Response::Refreshed`]. A guest restored
    /// with its own disk gets it on [`crate::ROOT_PORT`] instead, from its
    /// init, which assembles the root on that disk before it answers; the
    /// agent then greets on [`crate::READY_PORT`] as after a cold boot.
    Refresh {
        /// Random bytes from the host ([`REFRESH_ENTROPY_BYTES`] of them).
        entropy: Vec<u8>,
        /// The host's wall-clock time, nanoseconds since the Unix epoch.
        unix_time_ns: u64,
        /// The guest's hostname (an RFC 1123 label).
        hostname: String,
        /// Power off after this many idle seconds (0: never).
        idle_seconds: u64,
    },
    /// Flush filesystems and power the guest off.
    Shutdown,
    /// Unpack the tar stream that follows (`Data` frames, then `DataEnd`)
    /// under `dest`, all or nothing: entries are validated and staged first.
    ExtractArchive {
        /// Absolute destination directory under `/workspace`.
        dest: String,
    },
    /// Stream a tar of `path` (a file, symlink or directory under
    /// `/workspace`) as `Data` frames, then `DataEnd`, then
    /// [`Response::Archived`].
    CreateArchive {
        /// What to archive.
        path: String,
    },
    /// Stream a tar of these files (relative to `root`), for diffs.
    ReadFiles {
        /// Directory the paths are relative to.
        root: String,
        /// Relative paths.
        paths: Vec<String>,
    },
    /// List a path under `/workspace`: its entries stream as JSON lines
    /// (one [`FileEntry`] per line, see [`crate::MAX_LINE_BYTES`]) in `Data`
    /// frames, in [`crate::tree_order`], then `DataEnd`, then
    /// [`Response::Files`].
    ListFiles {
        /// Absolute path.
        path: String,
        /// Descend into directories.
        recursive: bool,
    },
    /// Read a regular file: `Data` frames (at most `max_bytes`), then
    /// [`Response::FileRead`].
    ReadFile {
        /// Absolute path.
        path: String,
        /// Cap on the bytes returned.
        max_bytes: u64,
    },
    /// Write a regular file from the `Data` frames that follow (then
    /// `DataEnd`), atomically; an existing file keeps its mode.
    WriteFile {
        /// Absolute path.
        path: String,
        /// Mode for a new file (default 0644).
        mode: Option<u32>,
    },
    /// Describe every entry under `root` (content hashes for files): one
    /// [`ManifestEntry`] per JSON line in `Data` frames, in
    /// [`crate::tree_order`] of their paths, then `DataEnd`, then
    /// [`Response::Manifest`].
    Manifest {
        /// Absolute directory.
        root: String,
    },
    /// Apply a unified or git diff under `root`, all files or none.
    ApplyPatch {
        /// Directory the patch paths are relative to.
        root: String,
        /// The patch text.
        patch: String,
    },
    /// Start a command that outlives this connection (a job): its output
    /// is kept in bounded buffers in the agent; answered at once with
    /// [`Response::JobStarted`]. The request's `stdin` must be false.
    JobStart {
        /// The id the host chose for it (letters, digits and `-`, at most
        /// 64): unique, so an id saved before the job starts never names
        /// another command.
        job_id: String,
        /// The command.
        exec: ExecRequest,
    },
    /// Wait up to `wait_ms` for job `job_id` to end, then send its output
    /// from the given offsets (at most `max_bytes` per stream) as `Stdout`
    /// and `Stderr` frames, then [`Response::Job`].
    JobRead {
        /// The job.
        job_id: String,
        /// Offset in the job's stdout to send from.
        stdout_from: u64,
        /// Offset in the job's stderr to send from.
        stderr_from: u64,
        /// Longest wait for the job to end.
        wait_ms: u64,
        /// Most bytes of each stream sent by this read.
        max_bytes: u64,
    },
    /// Kill job `job_id`'s process group; answered with [`Response::Job`]
    /// (no output is sent).
    JobCancel {
        /// The job.
        job_id: String,
    },
    /// Open an interactive shell on a new PTY; answered with
    /// [`Response::Shell`].
    ShellOpen {
        /// The id the host chose for it (letters, digits and `-`, at most
        /// 64; never reused).
        shell_id: String,
        /// Absolute working directory.
        cwd: String,
        /// Terminal width.
        cols: u16,
        /// Terminal height.
        rows: u16,
        /// Extra environment variables.
        env: BTreeMap<String, String>,
        /// Whether it keeps the guest from its idle power-off while open.
        #[serde(default)]
        keep_alive: bool,
    },
    /// Send shell `shell_id`'s output from `cursor` (at most `max_bytes`)
    /// as `Stdout` frames, then [`Response::ShellOutput`]. With
    /// `wait_idle_ms`, first wait until the output has been quiet that long
    /// (or the shell ended, or `max_bytes` are waiting).
    ShellRead {
        /// The shell.
        shell_id: String,
        /// Offset in its output to send from.
        cursor: u64,
        /// Most bytes sent.
        max_bytes: u64,
        /// Quiet time to wait for first (bounded by the agent).
        wait_idle_ms: Option<u64>,
    },
    /// Type `input` into shell `shell_id`; answered with [`Response::Shell`].
    ShellWrite {
        /// The shell.
        shell_id: String,
        /// The bytes to type.
        input: String,
    },
    /// Send `signal` (`HUP`, `INT`, `TERM` or `KILL`) to the shell's
    /// foreground process group; answered with [`Response::Shell`].
    ShellSignal {
        /// The shell.
        shell_id: String,
        /// The signal's name.
        signal: String,
    },
    /// End shell `shell_id` and its processes; answered with
    /// [`Response::Shell`].
    ShellClose {
        /// The shell.
        shell_id: String,
    },
    /// Every shell; answered with [`Response::Shells`].
    ShellList,
    /// Change shell `shell_id`'s terminal size; answered with
    /// [`Response::Shell`].
    ShellResize {
        /// The shell.
        shell_id: String,
        /// Terminal width.
        cols: u16,
        /// Terminal height.
        rows: u16,
    },
    /// Start a supervised service; answered at once with
    /// [`Response::Service`] (`starting` while its readiness check runs).
    ServiceStart(ServiceSpec),
    /// Wait up to `wait_ms` while service `name` is `starting`; answered
    /// with [`Response::Service`].
    ServiceWait {
        /// The service.
        name: String,
        /// Longest wait (bounded by the agent).
        wait_ms: u64,
    },
    /// Stop service `name`: `TERM` to its process group, `KILL` after
    /// `grace_ms`; answered with [`Response::Service`] once nothing of it
    /// runs.
    ServiceStop {
        /// The service.
        name: String,
        /// Time between `TERM` and `KILL`.
        grace_ms: u64,
    },
    /// Every service; answered with [`Response::Services`].
    ServiceList,
    /// The guest's disk space and the limits its commands run under;
    /// answered with [`Response::Usage`]. Like [`Request::ServiceList`],
    /// asking is not use of the guest.
    Usage,
    /// Send service `name`'s logs as `Stdout` and `Stderr` frames, then
    /// [`Response::ServiceLogs`]: from the given offsets, or the last
    /// `tail_lines` lines, at most `max_bytes` per stream.
    ServiceLogs {
        /// The service (its logs are read from the guest's disk, so a
        /// service of an earlier boot has them too).
        name: String,
        /// Offsets to read from (`None`: the tail).
        from: Option<(u64, u64)>,
        /// Lines of the tail, when no offsets are given.
        tail_lines: u64,
        /// Most bytes per stream.
        max_bytes: u64,
    },
}

/// How a service tells it is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Readiness {
    /// A file exists (absolute, or relative to the service's cwd).
    File {
        /// The file.
        path: String,
    },
    /// A TCP connection to `host:port` succeeds.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// An HTTP GET of `url` answers 2xx or 3xx.
    Http {
        /// `http://host[:port]/path`.
        url: String,
    },
    /// A shell command exits 0.
    Command {
        /// The command (`sh -c`, in the service's cwd).
        command: String,
    },
}

/// A service to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Its name (letters, digits, `.`, `_`, `-`; at most 64).
    pub name: String,
    /// What to run.
    pub command: Command,
    /// Absolute working directory.
    pub cwd: String,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Its readiness check; ready at once when `None`.
    pub readiness: Option<Readiness>,
    /// How long it may take to become ready; its group is killed then.
    pub ready_timeout_ms: u64,
    /// Time between readiness checks.
    pub ready_interval_ms: u64,
    /// Whether it keeps the guest from its idle power-off while it runs.
    pub keep_alive: bool,
    /// Keep its logs in memory (tmpfs), never on the disk: a service
    /// given secrets may print them.
    #[serde(default)]
    pub memory_logs: bool,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, FIFO, socket).
    Other,
}

/// One listed entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileEntry {
    /// Absolute path.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Target, for symlinks.
    pub link_target: Option<String>,
}

/// One manifest entry (paths relative to the manifest root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative path.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, for files.
    pub sha256: Option<String>,
    /// Target, for symlinks.
    pub link_target: Option<String>,
}

/// What a patch did to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PatchedFile {
    /// Path relative to the patch root.
    pub path: String,
    /// `added`, `modified`, `deleted`, `renamed`.
    pub status: String,
    /// Previous path, for renames.
    pub from: Option<String>,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Executed directly, looked up in `PATH`.
    Argv {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// Run by `sh -c` (not a login shell).
    Shell {
        /// The shell script.
        script: String,
    },
}

impl Command {
    /// A short human rendering of the command.
    pub fn display(&self) -> String {
        match self {
            Command::Shell { script } => script.clone(),
            Command::Argv { argv } => argv
                .iter()
                .map(|a| {
                    if !a.is_empty()
                        && a.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
                    {
                        a.clone()
                    } else {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// One command execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// What to run.
    pub command: Command,
    /// Working directory; the agent's default (`/workspace`) when `None`.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Variables added to (or overriding) the base environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the whole process group after this long.
    pub timeout_ms: u64,
    /// Per-stream cap on the output bytes sent back; the rest is counted and
    /// dropped.
    pub output_limit_bytes: u64,
    /// Whether the host streams standard input (else it is `/dev/null`).
    #[serde(default)]
    pub stdin: bool,
    /// Limits tighter than the guest's defaults for this command.
    #[serde(default)]
    pub limits: CommandLimits,
    /// Run as this user instead of root (an imported image's `User`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<RunAs>,
}

/// A user and group to run a command as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id (also the only supplementary group).
    pub gid: u32,
}

/// The final answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// Milliseconds since the agent started.
        uptime_ms: u64,
    },
    /// How a command ended.
    Exec(ExecOutcome),
    /// A job was started.
    JobStarted {
        /// Its id in this agent.
        job_id: String,
    },
    /// Where a job is (after a [`Request::JobRead`]'s output frames).
    Job(JobState),
    /// A shell.
    Shell(ShellInfo),
    /// What a [`Request::ShellRead`] sent.
    ShellOutput {
        /// The shell.
        shell: ShellInfo,
        /// Offset after the output sent (the next read's cursor).
        next_cursor: u64,
        /// Bytes before the read's cursor the agent no longer held.
        dropped: u64,
        /// Whether more output than was sent is waiting.
        more: bool,
    },
    /// Every shell.
    Shells {
        /// The shells, oldest first.
        shells: Vec<ShellInfo>,
    },
    /// A service.
    Service(ServiceInfo),
    /// Every service.
    Services {
        /// The services, oldest first.
        services: Vec<ServiceInfo>,
    },
    /// Answer to [`Request::Usage`].
    Usage(GuestUsage),
    /// What a [`Request::ServiceLogs`] sent.
    ServiceLogs {
        /// The service, when this boot's agent runs it.
        service: Option<ServiceInfo>,
        /// Its stdout.
        stdout: LogSpan,
        /// Its stderr.
        stderr: LogSpan,
    },
    /// The request succeeded and has nothing to report.
    Done,
    /// Answer to [`Request::Refresh`].
    Refreshed {
        /// The kernel's random generator was reseeded from the new entropy.
        reseeded: bool,
        /// How far the clock was stepped, milliseconds (positive: forward).
        clock_step_ms: i64,
        /// Time the agent spent on the refresh, microseconds.
        refresh_us: u64,
    },
    /// An archive was unpacked.
    Extracted {
        /// Entries written.
        entries: u64,
        /// Bytes of file content written.
        bytes: u64,
    },
    /// An archive was streamed.
    Archived {
        /// What the archived path is.
        kind: EntryKind,
        /// Entries in the archive.
        entries: u64,
        /// Bytes of file content.
        bytes: u64,
    },
    /// A listing ended (its entries came before as JSON lines).
    Files {
        /// The listed path itself.
        root: FileEntry,
        /// How many entries were sent (none for a non-directory).
        entries: u64,
    },
    /// A file was read.
    FileRead {
        /// Full size of the file.
        size: u64,
        /// Whether fewer bytes than the size were sent.
        truncated: bool,
        /// Permission bits.
        mode: u32,
    },
    /// A file was written.
    FileWritten {
        /// Bytes written.
        size: u64,
        /// Resulting mode.
        mode: u32,
        /// Whether the file is new.
        created: bool,
    },
    /// A manifest ended (its entries came before as JSON lines).
    Manifest {
        /// How many entries were sent.
        entries: u64,
    },
    /// A patch was applied.
    Patched {
        /// The files it touched.
        files: Vec<PatchedFile>,
    },
    /// The request failed.
    Error(AgentError),
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutcome {
    /// Exit status; `128 + signal` when killed by a signal, 124 on timeout,
    /// 127 when the program does not exist, 126 when it cannot be executed.
    pub exit_code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Whether the timeout fired (the process group was killed).
    pub timed_out: bool,
    /// Wall time from spawn to exit.
    pub duration_ms: u64,
    /// Bytes the command wrote to stdout (including any not sent back).
    pub stdout_bytes: u64,
    /// Bytes the command wrote to stderr (including any not sent back).
    pub stderr_bytes: u64,
    /// Whether stdout went over the output limit.
    pub stdout_truncated: bool,
    /// Whether stderr went over the output limit.
    pub stderr_truncated: bool,
    /// A guest limit the command hit, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<GuestLimit>,
}

/// A shell as the agent knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellInfo {
    /// Its id in this agent.
    pub shell_id: String,
    /// Working directory it started in.
    pub cwd: String,
    /// Terminal width.
    pub cols: u16,
    /// Terminal height.
    pub rows: u16,
    /// `running`, `exited` (its process ended) or `closed`.
    pub state: String,
    /// How its process ended, once it did.
    pub exit_code: Option<i32>,
    /// Offset just past its latest output.
    pub output_end: u64,
}

/// A service as the agent knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// `starting`, `ready`, `exited`, `failed` or `stopped`.
    pub state: String,
    /// Its process id (and process group) in the guest.
    pub pid: Option<i32>,
    /// How its process ended, once it did.
    pub exit_code: Option<i32>,
    /// Why it failed or stopped: `exited_before_ready`,
    /// `readiness_timeout`, `start_failed`, `sigterm` or `sigkill`.
    pub reason: Option<String>,
    /// Milliseconds from its start to its readiness.
    pub ready_after_ms: Option<u64>,
    /// Milliseconds from its start to its end.
    pub ended_after_ms: Option<u64>,
    /// What its last failed readiness check said.
    pub last_probe_error: Option<String>,
}

/// One stream's part of a [`Response::ServiceLogs`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSpan {
    /// Offset of the first byte sent.
    pub from: u64,
    /// Offset after the last byte sent (the next read's offset).
    pub next: u64,
    /// The oldest offset still kept (older output was rotated away).
    pub start: u64,
    /// Offset after the newest output.
    pub end: u64,
    /// Bytes between the asked offset and `from` that were rotated away.
    pub dropped: u64,
    /// Bytes the service wrote that could not be saved (its disk was full).
    pub unsaved: u64,
}

/// A job's state as one read left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// How it ended; `None` while it runs.
    pub outcome: Option<ExecOutcome>,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// Offset after the stdout this read sent (the next read's
    /// `stdout_from`).
    pub stdout_next: u64,
    /// Offset after the stderr this read sent.
    pub stderr_next: u64,
    /// Bytes of stdout before the read's offset that the agent no longer
    /// held (its buffer is bounded) and so never sent.
    pub stdout_dropped: u64,
    /// The same for stderr.
    pub stderr_dropped: u64,
    /// Whether output beyond what this read sent is already waiting.
    pub more: bool,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    /// Failure class.
    pub kind: ErrorKind,
    /// Human-readable explanation, including what to do.
    pub message: String,
}

impl AgentError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Failure classes the host can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or names something invalid.
    BadRequest,
    /// The host speaks another protocol version.
    ProtocolVersion,
    /// A path does not exist.
    NotFound,
    /// The agent hit an I/O error.
    Io,
    /// The agent does not support this request here.
    Unsupported,
    /// A path breaks the workspace path rules (outside `/workspace`, `..`,
    /// through a symlink).
    InvalidPath,
    /// The request conflicts with what exists (a file where a directory is
    /// needed, a file that already exists, ...).
    Conflict,
    /// Something is larger than allowed.
    TooLarge,
    /// A patch does not apply to the current files.
    PatchRejected,
    /// Data from the host arrived damaged (its digest did not match);
    /// nothing of it was used, and sending it again may succeed.
    Damaged,
}

#[cfg(test)]
mod tests;

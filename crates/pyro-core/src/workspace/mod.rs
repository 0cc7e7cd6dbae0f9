//! Persistent workspaces: one API for the CLI and the MCP server.
//!
//! ```text
//! $PYRO_HOME/workspaces/<id>/
//!   workspace.json            the record (see `record`)
//!   upper.ext4 | upper/       the writable layer (Firecracker disk | host-compat dir)
//!   baseline/upper.ext4 | baseline/upper-data/   the layer right after seeding
//!   baseline/manifest.jsonl   what /workspace held after seeding (JSON lines)
//!   baseline/files/           the seeded files (old side of diffs)
//!   commands/<seq>.{json,stdout,stderr}          command history with full output
//! ```
//!
//! Every call takes the workspace's file lock for its record changes, so a
//! CLI and several MCP servers can act on the same workspaces. Long commands
//! run outside the lock, so a running `exec` never blocks `status`.

pub mod cmdlog;
pub mod diff;
pub mod export;
pub mod record;
pub mod seed;

pub use export::{EXPORT_MAX_BYTES, EXPORT_RESERVE_BYTES};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pyro_env::Installed;
use pyro_protocol::{Command, EntryKind, ExecRequest, FileEntry, PatchedFile, Request, Response};
use serde::Serialize;

use crate::records::Owner;
use crate::sandbox::{OutputSink, Sandbox, SandboxSpec, default_boot_timeout};
use crate::{BackendKind, CoreError, ExecutionMode, Paths, check_range, now_unix, random_hex};
pub use cmdlog::{CommandState, LOG_CAP_BYTES, LogEntry, LogsQuery};
pub use diff::{DiffEntry, DiffLimits, DiffView};
use record::{LastCommand, Operation, Record, SeedInfo, State};
pub use seed::SeedMode;

/// The workspace directory inside the guest.
pub const WORKSPACE_ROOT: &str = "/workspace";
/// Default idle deadline.
pub const DEFAULT_TTL_SECONDS: u64 = 600;
/// Idle deadline bounds.
pub const TTL_RANGE: (u64, u64) = (10, 7 * 86_400);
/// Default size of a workspace's writable disk.
pub const DEFAULT_DISK_MIB: u64 = 4096;
/// Disk size bounds.
pub const DISK_RANGE: (u64, u64) = (256, 256 * 1024);
/// Default workspace quota (`PYRO_MAX_WORKSPACES`).
pub const DEFAULT_MAX_WORKSPACES: usize = 4;
/// How long an expired workspace's disk is kept (`PYRO_EXPIRY_GRACE_SECONDS`).
pub const DEFAULT_EXPIRY_GRACE_SECONDS: u64 = 86_400;
/// Default limit for file read and write.
pub const FILE_LIMIT_DEFAULT: u64 = 1 << 20;
/// The most a limit may be raised to.
pub const FILE_LIMIT_MAX: u64 = 64 << 20;
/// Largest patch.
pub const PATCH_LIMIT: usize = 8 << 20;
/// Default cap on output returned by `exec` (the log keeps more).
pub const EXEC_OUTPUT_DEFAULT: u64 = 1 << 20;
/// Default number of entries a file listing returns (all are counted).
pub const LIST_ENTRIES_DEFAULT: usize = 1000;
/// The most entries a file listing returns.
pub const LIST_ENTRIES_MAX: usize = 100_000;
/// The most bytes of names a listing or a diff returns in its entries.
pub const KEPT_BYTES_MAX: usize = 16 << 20;

/// A listing of a path in `/workspace`.
#[derive(Debug, Clone, Serialize)]
pub struct FileListing {
    /// The listed path itself.
    pub root: FileEntry,
    /// Its first entries (children, or the whole subtree), in tree order;
    /// the path itself when it is not a directory.
    pub entries: Vec<FileEntry>,
    /// Every entry, listed or not.
    pub total: u64,
    /// Whether `entries` stops short of `total`.
    pub truncated: bool,
}

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
}

impl CreateRequest {
    /// A request with the documented defaults.
    pub fn new(backend: BackendKind) -> Self {
        Self {
            name: None,
            labels: BTreeMap::new(),
            seed: None,
            vcpu_count: 1,
            mem_mib: 1024,
            disk_mib: DEFAULT_DISK_MIB,
            ttl_seconds: DEFAULT_TTL_SECONDS,
            backend,
            allow_host_compat: false,
            boot_timeout: None,
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
    /// Exit code (124 on timeout).
    pub exit_code: i32,
    /// Whether the timeout fired.
    pub timed_out: bool,
    /// Effective timeout.
    pub timeout_seconds: u64,
    /// Standard output (first `max_output_bytes`, lossy UTF-8).
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
}

/// Reads the quota.
pub fn max_workspaces() -> Result<usize, CoreError> {
    match std::env::var("PYRO_MAX_WORKSPACES") {
        Ok(v) if !v.is_empty() => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            CoreError::invalid(format!(
                "PYRO_MAX_WORKSPACES must be a positive number, got {v:?}"
            ))
        }),
        _ => Ok(DEFAULT_MAX_WORKSPACES),
    }
}

fn expiry_grace() -> u64 {
    std::env::var("PYRO_EXPIRY_GRACE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EXPIRY_GRACE_SECONDS)
}

/// Checks a workspace name: 1-64 printable characters after trimming.
pub fn valid_name(name: &str) -> Result<String, CoreError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(CoreError::invalid(format!(
            "invalid workspace name {name:?}: use 1 to 64 printable characters"
        )));
    }
    Ok(n.to_owned())
}

/// Checks a label key and value.
pub fn valid_label(key: &str, value: &str) -> Result<(String, String), CoreError> {
    let k = key.trim();
    let ok_key = !k.is_empty()
        && k.len() <= 64
        && k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok_key {
        return Err(CoreError::invalid(format!(
            "invalid label key {key:?}: start with a letter or digit, then letters, digits, `.`, `_` or `-` (at most 64)"
        )));
    }
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 120 || v.chars().any(char::is_control) {
        return Err(CoreError::invalid(format!(
            "invalid value for label {k}: use 1 to 120 printable characters"
        )));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Resolves a guest path for file operations: relative paths are under
/// `/workspace`; absolute ones must be inside it.
pub fn guest_path(p: &str) -> Result<String, CoreError> {
    let p = p.trim();
    let full = if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("{WORKSPACE_ROOT}/{p}")
    };
    let path = Path::new(&full);
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(CoreError::invalid(format!(
            "{p:?} contains `..`; paths must stay inside {WORKSPACE_ROOT}"
        )));
    }
    if !path.starts_with(WORKSPACE_ROOT) {
        return Err(CoreError::invalid(format!(
            "{p:?} is outside {WORKSPACE_ROOT}; paths must stay inside it"
        )));
    }
    Ok(full.trim_end_matches('/').to_owned())
}

/// File content for JSON: the text when it is UTF-8 (`utf-8`), else
/// standard base64 (`base64`).
pub fn text_or_base64(data: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(data) {
        Ok(t) => (t.to_owned(), "utf-8"),
        Err(_) => (base64(data), "base64"),
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn mode_of(backend: BackendKind) -> ExecutionMode {
    match backend {
        BackendKind::Firecracker => ExecutionMode::GuestVsock,
        BackendKind::HostCompat => ExecutionMode::HostCompat,
    }
}

fn view(rec: &Record) -> View {
    View {
        workspace_id: rec.workspace_id.clone(),
        name: rec.name.clone(),
        labels: rec.labels.clone(),
        environment: rec.environment.clone(),
        environment_version: rec.environment_version.clone(),
        backend: rec.backend.as_str().to_owned(),
        execution_mode: mode_of(rec.backend),
        fallback_reason: rec.fallback_reason.clone(),
        state: rec.state.as_str().to_owned(),
        state_reason: rec.state_reason.clone(),
        last_error: rec.last_error.clone(),
        created_at: rec.created_at,
        last_activity_at: rec.last_activity_at,
        expires_at: rec.expires_at(),
        ttl_seconds: rec.ttl_seconds,
        stopped_at: rec.stopped_at,
        delete_after: rec.delete_after,
        vcpu_count: rec.vcpu_count,
        mem_mib: rec.mem_mib,
        disk_mib: rec.disk_mib,
        command_count: rec.command_count,
        last_command: rec.last_command.clone(),
        workspace_seed: rec.seed.clone(),
        reset_count: rec.reset_count,
        last_reset_at: rec.last_reset_at,
        workspace_path: WORKSPACE_ROOT.to_owned(),
    }
}

fn not_found(id: &str) -> CoreError {
    CoreError::NotFound(format!(
        "workspace {id:?} does not exist; `pyro workspace list` shows the ones that do"
    ))
}

/// What `refresh` decided.
enum Fate {
    Keep,
    Changed,
    Delete,
}

/// Copies a directory tree exactly (modes, symlinks, xattrs, overlay
/// whiteouts), reflinking where the filesystem can.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), CoreError> {
    let out = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(src)
        .arg(dst)
        .output()
        .map_err(|e| CoreError::io("running cp", e))?;
    if !out.status.success() {
        return Err(CoreError::io(
            format!("copying {} to {}", src.display(), dst.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        ));
    }
    Ok(())
}

/// Puts `new` in place of `target` (both directories), leaving no state in
/// which neither exists for longer than two renames.
fn swap_dir(new: &Path, target: &Path) -> Result<(), CoreError> {
    let old = target.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(target, &old)
            .map_err(|e| CoreError::io(format!("moving {} aside", target.display()), e))?;
    }
    std::fs::rename(new, target)
        .map_err(|e| CoreError::io(format!("installing {}", target.display()), e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Repairs a swap interrupted between its renames.
fn recover_swap(target: &Path) {
    if !target.exists() {
        let (new, old) = (target.with_extension("new"), target.with_extension("old"));
        if new.exists() {
            let _ = std::fs::rename(&new, target);
        } else if old.exists() {
            let _ = std::fs::rename(&old, target);
        }
    }
}

/// Removes manifest spools a killed baseline left in `baseline`; how many.
fn clear_spools(baseline: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(baseline) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(".pyro-manifest-")
            {
                n += usize::from(std::fs::remove_file(e.path()).is_ok());
            }
        }
    }
    n
}

/// The engine.
#[derive(Debug, Clone)]
pub struct Workspaces {
    paths: Paths,
}

impl Workspaces {
    /// Workspaces under `paths`.
    pub fn new(paths: Paths) -> Self {
        Self { paths }
    }

    fn dir(&self, id: &str) -> PathBuf {
        record::dir(&self.paths, id)
    }

    fn upper(&self, rec: &Record) -> PathBuf {
        match rec.backend {
            BackendKind::Firecracker => self.dir(&rec.workspace_id).join("upper.ext4"),
            BackendKind::HostCompat => self.dir(&rec.workspace_id).join("upper"),
        }
    }

    fn spec<'a>(
        &self,
        env: &'a Installed,
        rec: &Record,
        boot_timeout: Option<Duration>,
    ) -> SandboxSpec<'a> {
        SandboxSpec {
            env,
            backend: rec.backend,
            vcpu_count: rec.vcpu_count,
            mem_mib: rec.mem_mib,
            disk_mib: rec.disk_mib,
            idle_seconds: rec.ttl_seconds,
            boot_timeout: boot_timeout.unwrap_or_else(default_boot_timeout),
            owner: Owner::Workspace {
                workspace_id: rec.workspace_id.clone(),
            },
            hostname: crate::sandbox::hostname_for(Some(&rec.workspace_id)),
            upper: Some(self.upper(rec)),
        }
    }

    /// Loads a record under its lock and brings it up to date (a dead VM
    /// makes it stopped; an interrupted create makes it gone). Tearing a
    /// dead VM down waits for processes, so it runs off the async workers.
    async fn load_fresh(&self, id: &str) -> Result<Record, CoreError> {
        let (this, id) = (self.clone(), id.to_owned());
        crate::blocking(move || this.load_fresh_blocking(&id)).await
    }

    fn load_fresh_blocking(&self, id: &str) -> Result<Record, CoreError> {
        let mut rec = record::load(&self.paths, id).ok_or_else(|| not_found(id))?;
        match self.refresh(&mut rec) {
            Fate::Keep => Ok(rec),
            Fate::Changed => {
                record::save(&self.paths, &rec)?;
                Ok(rec)
            }
            Fate::Delete => {
                self.remove(&rec);
                Err(not_found(id))
            }
        }
    }

    fn refresh(&self, rec: &mut Record) -> Fate {
        let now = now_unix();
        let op_dead = rec
            .operation
            .as_ref()
            .is_some_and(|o| !o.process.is_alive());
        match rec.state {
            State::Started => {
                let sandbox = rec
                    .vm_id
                    .as_deref()
                    .and_then(|v| Sandbox::attach(&self.paths, v).ok());
                if sandbox.as_ref().is_some_and(Sandbox::is_running) {
                    return Fate::Keep;
                }
                let console = sandbox
                    .as_ref()
                    .map(Sandbox::console_tail)
                    .unwrap_or_default();
                if let Some(s) = sandbox {
                    let _ = s.destroy();
                }
                let expired = now + 5.0 >= rec.last_activity_at + rec.ttl_seconds as f64;
                rec.state = State::Stopped;
                rec.vm_id = None;
                rec.stopped_at = Some(now);
                if expired {
                    let grace = expiry_grace();
                    rec.state_reason = Some(format!(
                        "idle for its TTL of {} s, so its VM stopped itself; the disk is kept, and the workspace is \
                         deleted {} s after stopping unless started again",
                        rec.ttl_seconds, grace
                    ));
                    rec.delete_after =
                        Some(rec.last_activity_at + rec.ttl_seconds as f64 + grace as f64);
                } else {
                    rec.state_reason = Some("its VM stopped unexpectedly (the guest console is in last_error); the disk is kept, \
                         and starting the workspace boots it again".into());
                    rec.last_error = Some(console);
                }
                Fate::Changed
            }
            State::Creating if op_dead => Fate::Delete,
            State::Resetting if op_dead => {
                if let Some(s) = rec
                    .vm_id
                    .as_deref()
                    .and_then(|v| Sandbox::attach(&self.paths, v).ok())
                {
                    let _ = s.destroy();
                }
                if rec.backend == BackendKind::HostCompat {
                    recover_swap(&self.upper(rec));
                }
                rec.state = State::Stopped;
                rec.vm_id = None;
                rec.operation = None;
                rec.stopped_at = Some(now);
                rec.state_reason = Some(
                    "a reset was interrupted (the pyro process doing it was killed); its disk is either the baseline \
                     or what it was before; reset again or start it"
                        .into(),
                );
                Fate::Changed
            }
            State::Stopped if rec.delete_after.is_some_and(|t| now >= t) => Fate::Delete,
            _ => Fate::Keep,
        }
    }

    /// Removes what a killed reset or record save leaves in a workspace's
    /// directory (call with its lock held): a half-copied disk or layer,
    /// the old command log on its way out, unrenamed temp files. How many
    /// entries went.
    fn clear_leftovers(&self, id: &str) -> usize {
        let dir = self.dir(id);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return 0;
        };
        // A layer swap cut between its renames is finished first; only
        // then are the spare copies debris.
        recover_swap(&dir.join("upper"));
        let has_layer = dir.join("upper").exists();
        let mut n = clear_spools(&dir.join("baseline"));
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let debris = name == "upper.ext4.new"
                || (has_layer && (name == "upper.new" || name == "upper.old"))
                || name.starts_with(".commands-")
                || name.starts_with(".tmp");
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if debris {
                let gone = if meta.is_dir() {
                    std::fs::remove_dir_all(e.path())
                } else {
                    std::fs::remove_file(e.path())
                };
                n += usize::from(gone.is_ok());
            }
        }
        n
    }

    /// [`Self::remove`], off the async workers.
    async fn discard(&self, rec: Record) {
        let this = self.clone();
        let _ = crate::blocking(move || {
            this.remove(&rec);
            Ok(())
        })
        .await;
    }

    /// Removes a workspace's sandbox and directory (rename first, so a
    /// half-deleted workspace never looks like a workspace).
    fn remove(&self, rec: &Record) {
        if let Some(s) = rec
            .vm_id
            .as_deref()
            .and_then(|v| Sandbox::attach(&self.paths, v).ok())
        {
            let _ = s.destroy();
        }
        let dir = self.dir(&rec.workspace_id);
        let trash = record::root(&self.paths).join(format!(
            ".trash-{}-{}",
            rec.workspace_id,
            std::process::id()
        ));
        if std::fs::rename(&dir, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// Brings every workspace up to date and deletes the ones whose time is
    /// up (expired past the grace period, or half-created by a killed
    /// process). Busy workspaces are skipped. Returns what it brought up
    /// to date and what it removed, a sentence each.
    pub fn sweep(&self) -> (Vec<String>, Vec<String>) {
        let mut updated = Vec::new();
        let mut done = Vec::new();
        if let Ok(rd) = std::fs::read_dir(record::root(&self.paths)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".trash-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        for id in record::list_ids(&self.paths) {
            let Some(_lock) = record::try_lock(&self.paths, &id) else {
                continue;
            };
            let Some(mut rec) = record::load(&self.paths, &id) else {
                // A directory without a record file. A create makes the
                // directory and its record under the global lock, so holding
                // that lock and still finding no record means a create died
                // between the two: nothing uses the directory. (A record
                // that exists but cannot be read is left alone: it may be
                // another pyro version's.)
                if let Ok(_global) = self.paths.lock("workspaces")
                    && !record::exists(&self.paths, &id)
                {
                    let _ = std::fs::remove_dir_all(self.dir(&id));
                }
                continue;
            };
            // Held lock: no reset or save of this workspace is under way,
            // so half-made files are debris of a killed process.
            let cleared = self.clear_leftovers(&id);
            if cleared > 0 {
                done.push(format!(
                    "Removed {cleared} temp file(s) left in workspace {id} by a pyro process that \
                     was killed"
                ));
            }
            match self.refresh(&mut rec) {
                Fate::Keep => {}
                Fate::Changed => {
                    let _ = record::save(&self.paths, &rec);
                    updated.push(format!(
                        "Workspace {id} is now {}: {}",
                        rec.state.as_str(),
                        rec.state_reason.as_deref().unwrap_or("its VM is gone")
                    ));
                }
                Fate::Delete => {
                    self.remove(&rec);
                    done.push(if rec.state == State::Creating {
                        format!(
                            "Removed workspace {id}: the pyro process creating it was killed \
                             before it finished"
                        )
                    } else {
                        format!(
                            "Deleted workspace {id}: it expired and stayed stopped past its grace \
                             period (PYRO_EXPIRY_GRACE_SECONDS)"
                        )
                    });
                }
            }
        }
        (updated, done)
    }

    /// Creates, boots and seeds a workspace and takes its baseline. On any
    /// failure nothing is left: no record, VM, disk or directory.
    pub async fn create(
        &self,
        env: &Installed,
        req: CreateRequest,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<View, CoreError> {
        let name = req.name.as_deref().map(valid_name).transpose()?;
        let mut labels = BTreeMap::new();
        for (k, v) in &req.labels {
            let (k, v) = valid_label(k, v)?;
            labels.insert(k, v);
        }
        crate::run::check_machine(req.backend, req.vcpu_count, req.mem_mib)?;
        check_range("--ttl-seconds", req.ttl_seconds, TTL_RANGE)?;
        check_range("--disk-mib", req.disk_mib, DISK_RANGE)?;
        let quota = max_workspaces()?;
        // Pack and check the seed before anything exists.
        let seed = match &req.seed {
            Some(s) => {
                progress(&format!("packing {}", s.path.display()));
                let (paths, path, mode) = (self.paths.clone(), s.path.clone(), s.mode);
                let prep = crate::blocking(move || seed::prepare(&paths, &path, mode)).await?;
                Some((prep, s.clone()))
            }
            None => None,
        };
        let id = random_hex(8);
        let now = now_unix();
        let mut rec = Record {
            layout_version: record::WORKSPACE_LAYOUT_VERSION,
            workspace_id: id.clone(),
            name,
            labels,
            environment: env.spec.name.to_owned(),
            environment_version: env.spec.version.to_owned(),
            backend: req.backend,
            fallback_reason: None,
            vcpu_count: req.vcpu_count,
            mem_mib: req.mem_mib,
            disk_mib: req.disk_mib,
            ttl_seconds: req.ttl_seconds,
            created_at: now,
            last_activity_at: now,
            state: State::Creating,
            state_reason: None,
            stopped_at: None,
            delete_after: None,
            last_error: None,
            vm_id: None,
            operation: Some(Operation {
                kind: "create".into(),
                process: pyro_vmm::process::ProcessId::current(),
            }),
            command_count: 0,
            next_sequence: 1,
            last_command: None,
            seed: SeedInfo::empty(),
            reset_count: 0,
            last_reset_at: None,
        };
        {
            let _global = self.paths.lock_async("workspaces").await?;
            let count = record::list_ids(&self.paths).len();
            if count >= quota {
                return Err(CoreError::Quota(format!(
                    "workspace quota reached: {count} of {quota} (PYRO_MAX_WORKSPACES) exist; delete one with \
                     `pyro workspace delete ID`, or raise PYRO_MAX_WORKSPACES"
                )));
            }
            std::fs::create_dir_all(self.dir(&id))
                .map_err(|e| CoreError::io(format!("creating {}", self.dir(&id).display()), e))?;
            record::save(&self.paths, &rec)?;
        }
        let _lock = match record::lock(&self.paths, &id).await {
            Ok(l) => l,
            Err(e) => {
                self.discard(rec).await;
                return Err(e);
            }
        };
        match self.create_inner(env, &req, &mut rec, seed, progress).await {
            Ok(()) => Ok(view(&rec)),
            Err(e) => {
                self.discard(rec).await;
                Err(e)
            }
        }
    }

    async fn create_inner(
        &self,
        env: &Installed,
        req: &CreateRequest,
        rec: &mut Record,
        seed: Option<(seed::Prepared, SeedSource)>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), CoreError> {
        progress(&format!(
            "booting a {} {}",
            env.spec.name,
            if rec.backend == BackendKind::Firecracker {
                "guest"
            } else {
                "host-compat sandbox"
            }
        ));
        let mut sandbox = match self.boot(env, rec, req.boot_timeout).await {
            Ok(s) => s,
            Err(e) => {
                let reason = crate::run::fallback_reason(e, rec.backend, req.allow_host_compat)?;
                progress(&format!(
                    "the guest could not boot ({reason}); using host-compat"
                ));
                let _ = std::fs::remove_file(self.upper(rec));
                rec.backend = BackendKind::HostCompat;
                rec.fallback_reason = Some(reason);
                self.boot(env, rec, req.boot_timeout).await?
            }
        };
        rec.vm_id = Some(sandbox.id().to_owned());
        record::save(&self.paths, rec)?;
        let dir = self.dir(&rec.workspace_id);
        let baseline = dir.join("baseline");
        std::fs::create_dir_all(baseline.join("files"))
            .map_err(|e| CoreError::io("creating the baseline directory", e))?;
        if let Some((prep, src)) = &seed {
            progress(&format!(
                "seeding /workspace from {}",
                prep.source.display()
            ));
            let (entries, bytes) = sandbox.put_archive(WORKSPACE_ROOT, prep.tar.path()).await?;
            let (tar, files) = (prep.tar.path().to_owned(), baseline.join("files"));
            crate::blocking(move || {
                let f = std::fs::File::open(&tar)
                    .map_err(|e| CoreError::io("reopening the seed", e))?;
                pyro_archive::extract(std::io::BufReader::new(f), &files).map_err(|e| {
                    CoreError::io(
                        "keeping the baseline files",
                        std::io::Error::other(e.message),
                    )
                })
            })
            .await?;
            rec.seed = SeedInfo {
                mode: prep.mode.to_owned(),
                origin: src.origin.to_owned(),
                source_path: Some(prep.source.clone()),
                seed_mode: src.mode.as_str().to_owned(),
                destination: WORKSPACE_ROOT.to_owned(),
                entry_count: entries,
                bytes_written: bytes,
            };
        }
        progress("taking the baseline");
        self.take_baseline(&sandbox, rec).await?;
        rec.state = State::Started;
        rec.operation = None;
        rec.last_activity_at = now_unix();
        record::save(&self.paths, rec)?;
        sandbox.keep();
        Ok(())
    }

    /// Boots the workspace's sandbox (creating its writable layer first if
    /// needed).
    async fn boot(
        &self,
        env: &Installed,
        rec: &Record,
        boot_timeout: Option<Duration>,
    ) -> Result<Sandbox, CoreError> {
        let upper = self.upper(rec);
        match rec.backend {
            BackendKind::Firecracker if !upper.exists() => {
                // mkfs runs off the async workers.
                let (upper, mib) = (upper.clone(), rec.disk_mib);
                crate::blocking(move || {
                    pyro_vmm::disk::create_upper_disk(&upper, mib).map_err(CoreError::from)
                })
                .await?
            }
            BackendKind::HostCompat => {
                recover_swap(&upper);
                std::fs::create_dir_all(&upper)
                    .map_err(|e| CoreError::io(format!("creating {}", upper.display()), e))?;
            }
            BackendKind::Firecracker => {}
        }
        let spec = self.spec(env, rec, boot_timeout);
        let mut sandbox = Sandbox::create(&self.paths, &spec).await?;
        sandbox.boot(&spec).await?;
        Ok(sandbox)
    }

    /// Records the manifest of `/workspace` and copies the writable layer
    /// with the guest quiesced (flushed, and paused on Firecracker).
    async fn take_baseline(&self, sandbox: &Sandbox, rec: &Record) -> Result<(), CoreError> {
        let baseline = self.dir(&rec.workspace_id).join("baseline");
        // Spooled beside its final place (one filesystem for the rename);
        // a killed create takes the whole workspace directory with it.
        let spool = tempfile::Builder::new()
            .prefix(".pyro-manifest-")
            .tempfile_in(&baseline)
            .map_err(|e| CoreError::io("creating a temp file", e))?
            .into_temp_path();
        diff::fetch_manifest(sandbox, &spool).await?;
        diff::check_manifest(&spool).await?;
        spool
            .persist(baseline.join("manifest.jsonl"))
            .map_err(|e| CoreError::io("saving the baseline manifest", e.error))?;
        sandbox
            .call(Request::Sync, Duration::from_secs(120))
            .await?;
        sandbox.set_paused(true).await?;
        let (backend, upper) = (rec.backend, self.upper(rec));
        let copied = crate::blocking(move || match backend {
            BackendKind::Firecracker => {
                pyro_vmm::disk::sparse_copy(&upper, &baseline.join("upper.ext4"))
                    .map(|_| ())
                    .map_err(CoreError::from)
            }
            BackendKind::HostCompat => copy_tree(&upper.join("data"), &baseline.join("upper-data")),
        })
        .await;
        sandbox.set_paused(false).await?;
        copied
    }

    /// Every workspace, most recently active first. (Bringing records up to
    /// date may tear down dead VMs: that runs off the async workers.)
    pub async fn list(&self) -> Result<Vec<View>, CoreError> {
        let this = self.clone();
        crate::blocking(move || Ok(this.list_blocking())).await
    }

    fn list_blocking(&self) -> Vec<View> {
        let mut out: Vec<Record> = Vec::new();
        for id in record::list_ids(&self.paths) {
            match record::try_lock(&self.paths, &id) {
                Some(_lock) => {
                    if let Ok(rec) = self.load_fresh_blocking(&id) {
                        out.push(rec);
                    }
                }
                None => out.extend(record::load(&self.paths, &id)),
            }
        }
        out.sort_by(|a, b| {
            b.last_activity_at
                .total_cmp(&a.last_activity_at)
                .then(b.created_at.total_cmp(&a.created_at))
                .then(a.workspace_id.cmp(&b.workspace_id))
        });
        out.iter().map(view).collect()
    }

    /// Marks activity, and tells a running guest so (its agent holds the
    /// idle deadline).
    async fn touch(&self, rec: &mut Record) -> Result<(), CoreError> {
        rec.last_activity_at = now_unix();
        record::touch_activity(&self.paths, &rec.workspace_id, rec.last_activity_at)?;
        if rec.state == State::Started
            && let Some(vm) = &rec.vm_id
        {
            // The agent's idle deadline restarts with any request.
            let s = Sandbox::attach(&self.paths, vm)?;
            let _ = s.call(Request::Ping, Duration::from_secs(5)).await;
        }
        Ok(())
    }

    /// A workspace's current state (counts as activity).
    /// Answers at once: while another call holds the workspace (a reset,
    /// a start), the record as that call last saved it (its operation
    /// included).
    pub async fn status(&self, id: &str) -> Result<View, CoreError> {
        let Some(_lock) = record::try_lock(&self.paths, id) else {
            return record::load(&self.paths, id)
                .map(|r| view(&r))
                .ok_or_else(|| not_found(id));
        };
        let mut rec = self.load_fresh(id).await?;
        self.touch(&mut rec).await?;
        Ok(view(&rec))
    }

    /// Changes name and labels.
    pub async fn update(
        &self,
        id: &str,
        name: Option<String>,
        clear_name: bool,
        set_labels: BTreeMap<String, String>,
        clear_labels: Vec<String>,
    ) -> Result<View, CoreError> {
        if name.is_some() && clear_name {
            return Err(CoreError::invalid(
                "--name and --clear-name cannot be used together",
            ));
        }
        if name.is_none() && !clear_name && set_labels.is_empty() && clear_labels.is_empty() {
            return Err(CoreError::invalid(
                "nothing to update: pass --name, --clear-name, --label or --clear-label",
            ));
        }
        let name = name.as_deref().map(valid_name).transpose()?;
        let mut labels = Vec::new();
        for (k, v) in &set_labels {
            labels.push(valid_label(k, v)?);
        }
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        let before = (rec.name.clone(), rec.labels.clone());
        if let Some(n) = name {
            rec.name = Some(n);
        }
        if clear_name {
            rec.name = None;
        }
        for k in &clear_labels {
            if rec.labels.remove(k.trim()).is_none() {
                return Err(CoreError::invalid(format!(
                    "workspace {id} has no label {k:?} to clear"
                )));
            }
        }
        rec.labels.extend(labels);
        if (rec.name.clone(), rec.labels.clone()) == before {
            return Err(CoreError::invalid(
                "the update changes nothing: the name and labels already are so",
            ));
        }
        record::save(&self.paths, &rec)?;
        self.touch(&mut rec).await?;
        Ok(view(&rec))
    }

    /// Loads a started workspace under its lock, marks activity, and
    /// returns a handle on its sandbox. `op` names the operation for errors.
    async fn started(&self, id: &str, op: &str) -> Result<(Record, Sandbox), CoreError> {
        self.started_with(id, op, |_| {}).await
    }

    /// [`Self::started`], also applying `change` to the record under the lock.
    async fn started_with(
        &self,
        id: &str,
        op: &str,
        change: impl FnOnce(&mut Record),
    ) -> Result<(Record, Sandbox), CoreError> {
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        if rec.state != State::Started {
            let why = rec
                .state_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let fix = match rec.state {
                State::Stopped => format!("; run `pyro workspace start {id}` first"),
                _ => "; wait for it to finish".into(),
            };
            return Err(CoreError::State(format!(
                "workspace {id} is {}{why}, so {op} cannot run{fix}",
                rec.state.as_str()
            )));
        }
        rec.last_activity_at = now_unix();
        change(&mut rec);
        record::save(&self.paths, &rec)?;
        let vm = rec
            .vm_id
            .clone()
            .ok_or_else(|| CoreError::State(format!("workspace {id} has no VM")))?;
        let sandbox = Sandbox::attach(&self.paths, &vm)?;
        Ok((rec, sandbox))
    }

    /// Runs a command, streaming into `sink`, logging the full output.
    pub async fn exec(
        &self,
        id: &str,
        opts: ExecOptions,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecView, CoreError> {
        check_range(
            "--timeout-seconds",
            opts.timeout_seconds,
            crate::run::limits::TIMEOUT_RANGE,
        )?;
        check_range(
            "--max-output-bytes",
            opts.max_output_bytes,
            (1, LOG_CAP_BYTES),
        )?;
        crate::run::check_env_names(&opts.env)?;
        let cwd = match opts.cwd.as_deref().map(str::trim) {
            None | Some("") => WORKSPACE_ROOT.to_owned(),
            Some(c) if c.starts_with('/') => c.to_owned(),
            Some(c) => guest_path(c)?,
        };
        let mut seq = 0;
        let (rec, sandbox) = self
            .started_with(id, "exec", |rec| {
                seq = rec.next_sequence;
                rec.next_sequence += 1;
            })
            .await?;
        let mode = mode_of(rec.backend);
        let logs = self.dir(id).join("commands");
        let mut tee = cmdlog::LogSink::start(
            &logs,
            seq,
            opts.command.display(),
            cwd.clone(),
            opts.max_output_bytes,
            sink,
        )?;
        let req = ExecRequest {
            command: opts.command.clone(),
            cwd: Some(cwd.clone()),
            env: opts.env.clone(),
            timeout_ms: opts.timeout_seconds * 1000,
            output_limit_bytes: LOG_CAP_BYTES,
            stdin: false,
        };
        let outcome = sandbox.exec_with_stdin(req, stdin, &mut tee).await;
        let (entry, stdout, stderr) = tee.finish(outcome.as_ref())?;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // Was the VM lost? Record that (if the workspace is free),
                // then report the error itself.
                if let Ok(_lock) = record::lock(&self.paths, id).await {
                    let _ = self.load_fresh(id).await;
                }
                return Err(e);
            }
        };
        // The command ran: its result is returned whatever happens to this
        // bookkeeping (a busy workspace must not turn it into an error that
        // invites running it again).
        if let Ok(_lock) = record::lock(&self.paths, id).await {
            // A reset in the meantime cleared the history this command
            // belonged to: leave the new history alone.
            if let Some(mut rec) =
                record::load(&self.paths, id).filter(|r| r.reset_count == rec.reset_count)
            {
                rec.command_count += 1;
                rec.last_activity_at = now_unix();
                rec.last_command = Some(LastCommand {
                    sequence: seq,
                    command: entry.command.clone(),
                    exit_code: outcome.exit_code,
                    duration_ms: outcome.duration_ms,
                });
                let _ = record::save(&self.paths, &rec);
            }
        }
        Ok(ExecView {
            log_error: entry.log_error,
            workspace_id: id.to_owned(),
            sequence: seq,
            command: entry.command,
            cwd,
            exit_code: outcome.exit_code,
            timed_out: outcome.timed_out,
            timeout_seconds: opts.timeout_seconds,
            stdout,
            stderr,
            stdout_bytes: outcome.stdout_bytes,
            stderr_bytes: outcome.stderr_bytes,
            truncated: outcome.stdout_bytes > opts.max_output_bytes
                || outcome.stderr_bytes > opts.max_output_bytes,
            max_output_bytes: opts.max_output_bytes,
            duration_ms: outcome.duration_ms,
            execution_mode: mode,
        })
    }

    /// The command history: every command is counted; the asked-for ones
    /// come back with the end of their logged output (see
    /// [`cmdlog::read`]).
    pub async fn logs(
        &self,
        id: &str,
        query: LogsQuery,
    ) -> Result<(usize, Vec<LogEntry>), CoreError> {
        {
            let _lock = record::lock(&self.paths, id).await?;
            let mut rec = self.load_fresh(id).await?;
            self.touch(&mut rec).await?;
        }
        let dir = self.dir(id).join("commands");
        crate::blocking(move || cmdlog::read(&dir, &query)).await
    }

    /// Pushes a host directory or archive into the workspace (all or
    /// nothing).
    pub async fn sync_push(
        &self,
        id: &str,
        source: &Path,
        dest: Option<&str>,
    ) -> Result<SyncView, CoreError> {
        let dest = guest_path(dest.unwrap_or(WORKSPACE_ROOT))?;
        let (paths, path) = (self.paths.clone(), source.to_owned());
        let prep = crate::blocking(move || seed::prepare(&paths, &path, SeedMode::All)).await?;
        let (rec, sandbox) = self.started(id, "sync push").await?;
        let (entries, bytes) = sandbox.put_archive(&dest, prep.tar.path()).await?;
        Ok(SyncView {
            workspace_id: id.to_owned(),
            mode: prep.mode.to_owned(),
            source_path: prep.source,
            destination: dest,
            entry_count: entries,
            bytes_written: bytes,
            execution_mode: mode_of(rec.backend),
        })
    }

    /// Lists a path: its children, or with `recursive` its whole subtree,
    /// up to `max_entries` of them (the rest are counted). Memory stays flat
    /// whatever the tree's size: the listing is spooled to a file.
    pub async fn file_list(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
        max_entries: usize,
    ) -> Result<FileListing, CoreError> {
        let path = guest_path(path)?;
        check_range(
            "max_entries",
            max_entries as u64,
            (1, LIST_ENTRIES_MAX as u64),
        )?;
        let (_, sandbox) = self.started(id, "file list").await?;
        let spool = tempfile::Builder::new()
            .prefix(".pyro-list-")
            .tempfile_in(seed::temp_dir(&self.paths)?)
            .map_err(|e| CoreError::io("creating a temp file", e))?
            .into_temp_path();
        let root = match sandbox
            .get_lines(
                Request::ListFiles { path, recursive },
                &spool,
                diff::MANIFEST_LIMIT,
                Duration::from_secs(300),
            )
            .await?
        {
            Response::Files { root, .. } => root,
            other => return Err(CoreError::Transport(format!("unexpected answer {other:?}"))),
        };
        if root.kind != EntryKind::Directory {
            return Ok(FileListing {
                entries: vec![root.clone()],
                root,
                total: 1,
                truncated: false,
            });
        }
        crate::blocking(move || {
            let mut entries = Vec::new();
            let (mut total, mut kept_bytes) = (0, 0);
            for e in crate::jsonl::Lines::<FileEntry>::open(&spool)? {
                let e = e?;
                total += 1;
                let size = e.path.len() + e.link_target.as_ref().map_or(0, String::len);
                // Long names count too: the answer stays small.
                if entries.len() < max_entries && kept_bytes + size <= KEPT_BYTES_MAX {
                    kept_bytes += size;
                    entries.push(e);
                }
            }
            Ok(FileListing {
                truncated: total > entries.len() as u64,
                root,
                entries,
                total,
            })
        })
        .await
    }

    /// Reads a file (whole, up to `max_bytes`; bigger files are an error).
    pub async fn file_read(
        &self,
        id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<(String, Vec<u8>, u32), CoreError> {
        let path = guest_path(path)?;
        if max_bytes == 0 || max_bytes > FILE_LIMIT_MAX {
            return Err(CoreError::invalid(format!(
                "--max-bytes must be between 1 and {FILE_LIMIT_MAX}"
            )));
        }
        let (_, sandbox) = self.started(id, "file read").await?;
        let (data, size, truncated, mode) = sandbox.read_file(&path, max_bytes).await?;
        if truncated {
            return Err(CoreError::TooLarge(format!(
                "{path} is {size} bytes, above the {max_bytes}-byte read limit; raise it with --max-bytes (up to \
                 {FILE_LIMIT_MAX}) or copy the file out with `pyro workspace export`"
            )));
        }
        Ok((path, data, mode))
    }

    /// Writes a file (an existing file keeps its mode).
    pub async fn file_write(
        &self,
        id: &str,
        path: &str,
        data: &[u8],
        max_bytes: u64,
    ) -> Result<(String, u64, u32, bool), CoreError> {
        let path = guest_path(path)?;
        if max_bytes == 0 || max_bytes > FILE_LIMIT_MAX {
            return Err(CoreError::invalid(format!(
                "--max-bytes must be between 1 and {FILE_LIMIT_MAX}"
            )));
        }
        if data.len() as u64 > max_bytes {
            return Err(CoreError::TooLarge(format!(
                "the content is {} bytes, above the {max_bytes}-byte write limit; raise it with --max-bytes (up to \
                 {FILE_LIMIT_MAX}) or use `pyro workspace sync push`",
                data.len()
            )));
        }
        let (_, sandbox) = self.started(id, "file write").await?;
        let (size, mode, created) = sandbox.write_file(&path, None, data).await?;
        Ok((path, size, mode, created))
    }

    /// Applies a unified or git diff to `/workspace`, all files or none.
    pub async fn patch_apply(&self, id: &str, patch: &str) -> Result<Vec<PatchedFile>, CoreError> {
        if patch.trim().is_empty() {
            return Err(CoreError::invalid("the patch is empty"));
        }
        if patch.len() > PATCH_LIMIT {
            return Err(CoreError::TooLarge(format!(
                "the patch is {} bytes, above the {PATCH_LIMIT}-byte limit; split it, or use `pyro workspace sync push`",
                patch.len()
            )));
        }
        let (_, sandbox) = self.started(id, "patch apply").await?;
        match sandbox
            .call(
                Request::ApplyPatch {
                    root: WORKSPACE_ROOT.into(),
                    patch: patch.to_owned(),
                },
                Duration::from_secs(300),
            )
            .await?
        {
            Response::Patched { files } => Ok(files),
            other => Err(CoreError::Transport(format!("unexpected answer {other:?}"))),
        }
    }

    /// What changed in `/workspace` since the baseline (see
    /// [`diff::compute`] for the bounds).
    pub async fn diff(&self, id: &str, limits: DiffLimits) -> Result<DiffView, CoreError> {
        check_range(
            "max_entries",
            limits.max_entries as u64,
            (1, diff::ENTRIES_MAX as u64),
        )?;
        check_range(
            "max_patch_bytes",
            limits.max_patch_bytes,
            (1, diff::PATCH_MAX),
        )?;
        let (_, sandbox) = self.started(id, "diff").await?;
        let baseline = self.dir(id).join("baseline");
        diff::compute(
            &sandbox,
            id,
            &baseline,
            &seed::temp_dir(&self.paths)?,
            limits,
        )
        .await
    }

    /// Puts the workspace back to its baseline: everything done since create
    /// goes (inside and outside `/workspace`), as does the command history;
    /// name, labels and the baseline stay.
    pub async fn reset(
        &self,
        env: &Installed,
        id: &str,
        snapshot: &str,
    ) -> Result<View, CoreError> {
        if snapshot != "baseline" {
            return Err(CoreError::NotFound(format!(
                "workspace {id} has no snapshot {snapshot:?}; the one it has is: baseline"
            )));
        }
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        if rec.state == State::Creating {
            return Err(CoreError::State(format!(
                "workspace {id} is still being created"
            )));
        }
        rec.state = State::Resetting;
        rec.operation = Some(Operation {
            kind: "reset".into(),
            process: pyro_vmm::process::ProcessId::current(),
        });
        record::save(&self.paths, &rec)?;
        match self.reset_inner(env, &mut rec).await {
            Ok(()) => Ok(view(&rec)),
            Err(e) => {
                // Whatever step failed, the VM is gone (or about to be) and
                // the disk is either the baseline or what it was: a stopped
                // workspace that can be reset or started again.
                if let Some(s) = rec
                    .vm_id
                    .take()
                    .and_then(|v| Sandbox::attach(&self.paths, &v).ok())
                {
                    let _ = s.close().await;
                }
                rec.state = State::Stopped;
                rec.operation = None;
                rec.stopped_at = Some(now_unix());
                rec.state_reason = Some(
                    "a reset failed; its disk is either the baseline or what it was before; reset again or start it"
                        .into(),
                );
                rec.last_error = Some(e.to_string());
                record::save(&self.paths, &rec)?;
                Err(e)
            }
        }
    }

    /// The steps of [`Self::reset`] after the record says `resetting`.
    async fn reset_inner(&self, env: &Installed, rec: &mut Record) -> Result<(), CoreError> {
        if let Some(s) = rec
            .vm_id
            .as_deref()
            .and_then(|v| Sandbox::attach(&self.paths, v).ok())
        {
            s.close().await?;
        }
        rec.vm_id = None;
        let dir = self.dir(&rec.workspace_id);
        let upper = self.upper(rec);
        let backend = rec.backend;
        // Copies and deletions run off the async workers: other calls
        // (status, list) keep answering meanwhile.
        crate::blocking(move || {
            match backend {
                BackendKind::Firecracker => {
                    let new = dir.join("upper.ext4.new");
                    pyro_vmm::disk::sparse_copy(&dir.join("baseline/upper.ext4"), &new)?;
                    std::fs::rename(&new, &upper)
                        .map_err(|e| CoreError::io("installing the baseline disk", e))?;
                }
                BackendKind::HostCompat => {
                    let new = upper.with_extension("new");
                    let _ = std::fs::remove_dir_all(&new);
                    std::fs::create_dir_all(&new)
                        .map_err(|e| CoreError::io("creating the new layer", e))?;
                    copy_tree(&dir.join("baseline/upper-data"), &new.join("data"))?;
                    swap_dir(&new, &upper)?;
                }
            }
            let commands = dir.join("commands");
            if commands.exists() {
                let trash = dir.join(format!(".commands-{}", std::process::id()));
                if std::fs::rename(&commands, &trash).is_ok() {
                    let _ = std::fs::remove_dir_all(&trash);
                }
            }
            Ok(())
        })
        .await?;
        rec.command_count = 0;
        rec.last_command = None;
        rec.next_sequence = 1;
        let mut sandbox = self.boot(env, rec, None).await?;
        let now = now_unix();
        rec.mark_started(sandbox.id(), now);
        rec.reset_count += 1;
        rec.last_reset_at = Some(now);
        record::save(&self.paths, rec)?;
        sandbox.keep();
        Ok(())
    }

    /// Stops the VM (flushing the guest first); the disk is kept.
    pub async fn stop(&self, id: &str) -> Result<View, CoreError> {
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        if rec.state != State::Started {
            return Err(CoreError::State(format!(
                "workspace {id} is {}, not started",
                rec.state.as_str()
            )));
        }
        if let Some(s) = rec
            .vm_id
            .as_deref()
            .and_then(|v| Sandbox::attach(&self.paths, v).ok())
        {
            s.shutdown(Duration::from_secs(60)).await?;
        }
        rec.state = State::Stopped;
        rec.vm_id = None;
        rec.stopped_at = Some(now_unix());
        rec.state_reason = Some("stopped on request; the disk is kept".into());
        rec.last_activity_at = now_unix();
        record::save(&self.paths, &rec)?;
        Ok(view(&rec))
    }

    /// Boots a stopped workspace again from its disk.
    pub async fn start(&self, env: &Installed, id: &str) -> Result<View, CoreError> {
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        if rec.state != State::Stopped {
            return Err(CoreError::State(format!(
                "workspace {id} is {}, not stopped",
                rec.state.as_str()
            )));
        }
        rec.operation = Some(Operation {
            kind: "start".into(),
            process: pyro_vmm::process::ProcessId::current(),
        });
        record::save(&self.paths, &rec)?;
        let booted = self.boot(env, &rec, None).await;
        rec.operation = None;
        let mut sandbox = match booted {
            Ok(s) => s,
            Err(e) => {
                rec.last_error = Some(e.to_string());
                record::save(&self.paths, &rec)?;
                return Err(e);
            }
        };
        rec.mark_started(sandbox.id(), now_unix());
        record::save(&self.paths, &rec)?;
        sandbox.keep();
        Ok(view(&rec))
    }

    /// Deletes the workspace: its VM, disks, baseline and history.
    pub async fn delete(&self, id: &str) -> Result<(), CoreError> {
        if !record::valid_id(id) || !self.dir(id).exists() {
            return Err(not_found(id));
        }
        let _lock = record::lock(&self.paths, id).await?;
        let rec = record::load(&self.paths, id).ok_or_else(|| not_found(id))?;
        self.discard(rec).await;
        Ok(())
    }

    /// The environment a workspace runs.
    pub fn environment_of(&self, id: &str) -> Result<String, CoreError> {
        record::load(&self.paths, id)
            .map(|r| r.environment)
            .ok_or_else(|| not_found(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn binary_content_goes_base64() {
        assert_eq!(text_or_base64(b"hi"), ("hi".to_owned(), "utf-8"));
        assert_eq!(text_or_base64(&[0xff, 0, 1]), ("/wAB".to_owned(), "base64"));
    }

    #[test]
    fn guest_paths_stay_inside_the_workspace() {
        assert_eq!(guest_path("src/main.rs").unwrap(), "/workspace/src/main.rs");
        assert_eq!(guest_path("/workspace/a/").unwrap(), "/workspace/a");
        assert_eq!(guest_path("/workspace").unwrap(), "/workspace");
        assert!(
            guest_path("../etc/passwd")
                .unwrap_err()
                .to_string()
                .contains("`..`")
        );
        assert!(
            guest_path("/etc/passwd")
                .unwrap_err()
                .to_string()
                .contains("outside /workspace")
        );
        assert!(guest_path("/workspace2/x").is_err());
    }

    #[test]
    fn names_and_labels_name_the_rule() {
        assert_eq!(valid_name("  demo  ").unwrap(), "demo");
        assert!(valid_name("").is_err());
        assert!(valid_name(&"x".repeat(65)).is_err());
        assert!(valid_name("bad\nname").is_err());
        assert_eq!(
            valid_label("issue", "123").unwrap(),
            ("issue".into(), "123".into())
        );
        assert!(
            valid_label("-bad", "x")
                .unwrap_err()
                .to_string()
                .contains("invalid label key")
        );
        assert!(
            valid_label("k", "")
                .unwrap_err()
                .to_string()
                .contains("1 to 120")
        );
    }

    #[test]
    fn tree_swaps_survive_interruption() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("upper");
        std::fs::create_dir_all(target.join("a")).unwrap();
        let new = d.path().join("upper.new");
        std::fs::create_dir_all(new.join("b")).unwrap();
        swap_dir(&new, &target).unwrap();
        assert!(target.join("b").exists() && !target.join("a").exists());
        // Interrupted between the two renames: only `.new` is there.
        std::fs::rename(&target, d.path().join("upper.new")).unwrap();
        recover_swap(&target);
        assert!(target.join("b").exists());
    }
}

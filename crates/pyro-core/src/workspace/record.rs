//! The workspace record (`workspaces/<id>/workspace.json`): versioned,
//! written by temp file + rename, changed only under the workspace's lock.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pyro_vmm::process::ProcessId;
use serde::{Deserialize, Serialize};

use crate::{BackendKind, CoreError, Paths};

/// Version of the record layout.
pub const WORKSPACE_LAYOUT_VERSION: u32 = 1;

/// Where a workspace is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Being created (not usable yet).
    Creating,
    /// Its VM runs; commands can run.
    Started,
    /// Its VM is off; the disk is kept.
    Stopped,
    /// Being reset to its baseline.
    Resetting,
}

impl State {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Started => "started",
            Self::Stopped => "stopped",
            Self::Resetting => "resetting",
        }
    }
}

/// A long operation in progress, and the process doing it (so a killed
/// process's half-done work can be recognised and undone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// `create`, `reset` or `start`.
    pub kind: String,
    /// The pyro process running it.
    pub process: ProcessId,
    /// For a fork: the group of forks made in one call, committed together
    /// (see `fork::commit_marker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What seeded the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SeedInfo {
    /// `empty`, `directory` or `archive`.
    pub mode: String,
    /// `seed_path` (given explicitly), `project` (the server's Git checkout)
    /// or `none`.
    pub origin: String,
    /// Host path it came from.
    pub source_path: Option<PathBuf>,
    /// `all` or `git-tracked`.
    pub seed_mode: String,
    /// Where it went in the guest.
    pub destination: String,
    /// Entries written.
    pub entry_count: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
}

impl SeedInfo {
    /// No seed.
    pub fn empty() -> Self {
        Self {
            mode: "empty".into(),
            origin: "none".into(),
            source_path: None,
            seed_mode: "all".into(),
            destination: "/workspace".into(),
            entry_count: 0,
            bytes_written: 0,
        }
    }
}

/// The last command, in brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LastCommand {
    /// Sequence number.
    pub sequence: u64,
    /// The command, for display.
    pub command: String,
    /// Exit code.
    pub exit_code: i32,
    /// Duration.
    pub duration_ms: u64,
}

/// Everything pyro keeps about one workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`WORKSPACE_LAYOUT_VERSION`].
    pub layout_version: u32,
    /// The handle.
    pub workspace_id: String,
    /// Optional human name.
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Environment name.
    pub environment: String,
    /// Environment version.
    pub environment_version: String,
    /// Backend its VM runs on.
    pub backend: BackendKind,
    /// Why it runs on host-compat when Firecracker was asked for.
    pub fallback_reason: Option<String>,
    /// vCPUs.
    pub vcpu_count: u8,
    /// Memory.
    pub mem_mib: u32,
    /// Writable disk size.
    pub disk_mib: u64,
    /// Idle deadline: the VM stops after this long without activity.
    pub ttl_seconds: u64,
    /// Creation time (Unix seconds).
    pub created_at: f64,
    /// Last call on the workspace.
    pub last_activity_at: f64,
    /// Lifecycle state.
    pub state: State,
    /// Why it is in that state (for `stopped`: why it stopped).
    pub state_reason: Option<String>,
    /// When it stopped.
    pub stopped_at: Option<f64>,
    /// When an expired workspace will be deleted, unless used again.
    pub delete_after: Option<f64>,
    /// The last failure, for diagnosis.
    pub last_error: Option<String>,
    /// Its running sandbox.
    pub vm_id: Option<String>,
    /// A long operation in progress.
    pub operation: Option<Operation>,
    /// Commands run since creation or the last reset.
    pub command_count: u64,
    /// Next command sequence number.
    pub next_sequence: u64,
    /// The last command.
    pub last_command: Option<LastCommand>,
    /// What seeded it.
    pub seed: SeedInfo,
    /// Resets so far.
    pub reset_count: u64,
    /// Last reset time.
    pub last_reset_at: Option<f64>,
    /// When the baseline was taken (records from before this field: the
    /// creation time).
    #[serde(default)]
    pub baseline_at: Option<f64>,
    /// The workspace this one was forked from.
    #[serde(default)]
    pub forked_from: Option<super::ForkedFrom>,
    /// How its VM last booted.
    #[serde(default)]
    pub boot: Option<crate::sandbox::BootInfo>,
    /// Nothing has reached its guest since it was made from its baseline
    /// (create, or a reset to the baseline): a start may make the baseline
    /// again from the template's fresh snapshot and the seed, and a missing
    /// disk (a reset or start killed halfway) is made that way.
    #[serde(default)]
    pub pristine: bool,
    /// What its guest may reach.
    #[serde(default)]
    pub network: pyro_net::Policy,
    /// The names of its secrets (their values are in `secrets.json`).
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl Record {
    /// When the idle deadline passes (while started).
    pub fn expires_at(&self) -> Option<f64> {
        (self.state == State::Started).then_some(self.last_activity_at + self.ttl_seconds as f64)
    }
    /// Marks the workspace started on VM `vm_id` at `now`, clearing what a
    /// stop or a failure left behind.
    pub fn mark_started(&mut self, vm_id: &str, now: f64) {
        self.vm_id = Some(vm_id.to_owned());
        self.state = State::Started;
        self.state_reason = None;
        self.last_error = None;
        self.stopped_at = None;
        self.delete_after = None;
        self.operation = None;
        self.last_activity_at = now;
    }
}

/// The directory of all workspaces.
pub fn root(paths: &Paths) -> PathBuf {
    paths.state().join("workspaces")
}

/// One workspace's directory.
pub fn dir(paths: &Paths, id: &str) -> PathBuf {
    root(paths).join(id)
}

fn file(paths: &Paths, id: &str) -> PathBuf {
    dir(paths, id).join("workspace.json")
}

/// Reads a record; `None` when there is none (or it is unreadable).
pub fn load(paths: &Paths, id: &str) -> Option<Record> {
    if !valid_id(id) {
        return None;
    }
    let bytes = std::fs::read(file(paths, id)).ok()?;
    let mut rec = serde_json::from_slice::<Record>(&bytes)
        .ok()
        .filter(|r| r.layout_version == WORKSPACE_LAYOUT_VERSION)?;
    if let Some(at) = std::fs::metadata(dir(paths, id).join("activity"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
    {
        rec.last_activity_at = rec.last_activity_at.max(at.as_secs_f64());
    }
    Some(rec)
}

/// Records activity without rewriting the record: the time is the mtime
/// of `activity`, set without a data write or a flush, so calls that only
/// count as activity (status) never wait on the disk. Losing it in a crash
/// loses only that timestamp.
pub fn touch_activity(paths: &Paths, id: &str, at: f64) -> Result<(), CoreError> {
    let p = dir(paths, id).join("activity");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| CoreError::io(format!("opening {}", p.display()), e))?;
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(at.max(0.0)))
        .map_err(|e| CoreError::io(format!("stamping {}", p.display()), e))
}

/// Writes a record atomically.
pub fn save(paths: &Paths, rec: &Record) -> Result<(), CoreError> {
    crate::save_json(
        &file(paths, &rec.workspace_id),
        rec,
        &format!("saving workspace {}", rec.workspace_id),
    )
}

/// Ids of every workspace directory, sorted.
pub fn list_ids(paths: &Paths) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root(paths))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| valid_id(n))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Workspace ids are 16 lowercase hex characters.
pub fn valid_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Takes the workspace's exclusive lock (waiting without blocking the async
/// runtime's threads). An invalid id is refused before it touches a path.
pub async fn lock(paths: &Paths, id: &str) -> Result<std::fs::File, CoreError> {
    if !valid_id(id) {
        return Err(CoreError::NotFound(format!(
            "workspace {id:?} does not exist; ⟨op:workspace list⟩ shows the ones that do"
        )));
    }
    paths
        .lock_async(&format!("ws-{id}"))
        .await
        .map_err(|e| match e {
            CoreError::Busy(_) => {
                let doing = load(paths, id)
                    .and_then(|r| r.operation)
                    .map(|o| format!(" with a {}", o.kind))
                    .unwrap_or_default();
                CoreError::Busy(format!(
                    "workspace {id} is busy{doing} in another call for over {} s; try again \
                     when it ends (its status answers meanwhile)",
                    crate::paths::LOCK_WAIT.as_secs()
                ))
            }
            other => other,
        })
}

/// Tries the workspace's lock without waiting (`None` when held or when the
/// id is invalid).
pub fn try_lock(paths: &Paths, id: &str) -> Option<std::fs::File> {
    valid_id(id)
        .then(|| paths.try_lock(&format!("ws-{id}")))
        .flatten()
}

/// The lock for a sweep: taken if free; if held while the record's
/// operation belongs to a process that is gone, the holder can only be a
/// child that process forked and that has not closed its copy of the lock
/// yet (a console keeper starting up), so wait up to two seconds for it.
pub fn lock_for_sweep(paths: &Paths, id: &str) -> Option<std::fs::File> {
    if let Some(l) = try_lock(paths, id) {
        return Some(l);
    }
    let orphaned = load(paths, id)
        .and_then(|r| r.operation)
        .is_some_and(|op| !op.process.is_alive());
    if !orphaned {
        return None;
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
        if let Some(l) = try_lock(paths, id) {
            return Some(l);
        }
    }
    None
}

/// Whether the workspace has a record file (readable or not).
pub fn exists(paths: &Paths, id: &str) -> bool {
    valid_id(id) && file(paths, id).exists()
}

#[cfg(test)]
mod tests;

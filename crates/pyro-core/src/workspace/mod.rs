//! Persistent workspaces: one API for the CLI and the MCP server.
//!
//! ```text
//! $PYRO_HOME/workspaces/<id>/
//!   workspace.json            the record (see `record`)
//!   upper.ext4 | upper/       the writable layer (Firecracker disk | host-compat dir)
//!   baseline/upper.ext4 | baseline/upper-data/   the layer right after seeding
//!   baseline/manifest.jsonl   what /workspace held after seeding (JSON lines)
//!   baseline/files/           the seeded files (old side of diffs)
//!   baseline/seed.tar         the seed as sent (replayed onto a template restore)
//!   commands/<seq>.{json,stdout,stderr}          command history with full output
//! ```
//!
//! Every call takes the workspace's file lock for its record changes, so a
//! CLI and several MCP servers can act on the same workspaces. Long commands
//! run outside the lock, so a running `exec` never blocks `status`.

pub mod cmdlog;
mod commands;
pub mod diff;
mod disk;
pub mod export;
mod files;
mod fork;
mod layer;
mod lifecycle;
mod materialize;
mod network;
mod publish;
pub mod record;
mod results;
pub mod secrets;
pub mod seed;
mod service_logs;
mod service_types;
mod services;
mod shells;
mod snapshots;
mod types;
mod upkeep;
mod validate;

pub use export::{EXPORT_MAX_BYTES, EXPORT_RESERVE_BYTES};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pyro_env::{Installed, Progress};
use pyro_protocol::{Command, EntryKind, ExecRequest, FileEntry, PatchedFile, Request, Response};
use serde::Serialize;

use crate::records::Owner;
use crate::sandbox::{
    BootPref, OutputSink, ProgressRef, Sandbox, SandboxSpec, default_boot_timeout,
};
use crate::{BackendKind, CoreError, ExecutionMode, Paths, limits, now_unix, random_hex};
pub use cmdlog::{CommandState, LOG_CAP_BYTES, LogEntry, LogsQuery};
pub use diff::{DiffEntry, DiffLimits, DiffView};
pub use disk::{DiskExportView, DiskFormat};
pub use fork::*;
use layer::*;
pub use network::{NetworkLogView, NetworkView};
pub use publish::{PortMapping, PublishedPort};
use record::{LastCommand, Operation, Record, SeedInfo, State};
pub use results::*;
pub use seed::SeedMode;
pub use services::{
    LogPosition, LogsRange, ReadinessChoice, ReadinessView, Restart, ServiceListView,
    ServiceLogsView, ServiceOptions, ServiceView, valid_service_name,
};
pub use shells::{ShellCloseView, ShellListView, ShellOptions, ShellReadView, ShellView};
pub use snapshots::*;
pub use types::*;
pub use validate::*;

/// For `skip_serializing_if`: leave out a zero count.
pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The kept seed archive, in the baseline directory.
const SEED_TAR: &str = "seed.tar";

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
        forked_from: rec.forked_from.clone(),
        boot_mode: rec.boot.as_ref().map(|b| b.boot_mode),
        boot_reason: rec.boot.as_ref().map(|b| b.boot_reason.clone()),
        network: rec.network.clone(),
        secrets: rec.secrets.clone(),
        network_denials: 0,
        shell_count: None,
        service_count: None,
        running_service_count: None,
        services_restarted: Vec::new(),
        protections: crate::protections::host_side(rec.backend, rec.vcpu_count, rec.mem_mib),
    }
}

fn not_found(id: &str) -> CoreError {
    CoreError::NotFound(format!(
        "workspace {id:?} does not exist; ⟨op:workspace list⟩ shows the ones that do"
    ))
}

/// How to boot a workspace's VM.
#[derive(Clone)]
struct Boot<'a> {
    /// Boot deadline (default: generous on PVM hosts).
    timeout: Option<Duration>,
    /// Template or cold.
    pref: BootPref,
    /// Where a template build reports.
    progress: ProgressRef<'a>,
}

impl<'a> Boot<'a> {
    fn template(cold_boot: bool, progress: &'a dyn Progress) -> Self {
        Self {
            timeout: None,
            pref: if cold_boot {
                BootPref::Cold(crate::sandbox::COLD_BOOT_ASKED.into())
            } else {
                BootPref::Template
            },
            progress: ProgressRef(progress),
        }
    }
}

/// What `refresh` decided.
enum Fate {
    Keep,
    Changed,
    Delete,
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

    fn spec<'a>(&self, env: &'a Installed, rec: &Record, boot: &Boot<'a>) -> SandboxSpec<'a> {
        SandboxSpec {
            env,
            backend: rec.backend,
            vcpu_count: rec.vcpu_count,
            mem_mib: rec.mem_mib,
            disk_mib: rec.disk_mib,
            idle_seconds: rec.ttl_seconds,
            boot_timeout: boot.timeout.unwrap_or_else(default_boot_timeout),
            owner: Owner::Workspace {
                workspace_id: rec.workspace_id.clone(),
            },
            hostname: crate::sandbox::hostname_for(Some(&rec.workspace_id)),
            upper: Some(self.upper(rec)),
            boot: boot.pref.clone(),
            progress: boot.progress,
            network: rec
                .network
                .mode
                .has_network()
                .then(|| crate::sandbox::NetworkSpec {
                    policy: rec.network.clone(),
                    log_dir: Some(self.dir(&rec.workspace_id).join("network")),
                    local_only: false,
                }),
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
                State::Stopped => format!("; ⟨do:workspace start {id}⟩ first"),
                _ => "; wait for it to finish".into(),
            };
            return Err(CoreError::State(format!(
                "workspace {id} is {}{why}, so {op} cannot run{fix}",
                rec.state.as_str()
            )));
        }
        rec.last_activity_at = now_unix();
        // Anything may change the disk from here on.
        rec.pristine = false;
        change(&mut rec);
        record::save(&self.paths, &rec)?;
        let vm = rec
            .vm_id
            .clone()
            .ok_or_else(|| CoreError::State(format!("workspace {id} has no VM")))?;
        let sandbox = Sandbox::attach(&self.paths, &vm)?;
        Ok((rec, sandbox))
    }
}

#[cfg(test)]
mod tests;

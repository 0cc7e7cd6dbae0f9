//! Sandbox records: one `vm.json` per running sandbox under `vms/<id>/`,
//! written atomically before anything is created for it, so that whatever
//! happens to the process that started it, the next pyro invocation can find
//! and remove what it left.

use std::path::PathBuf;

use pyro_vmm::launch::VmPaths;
use pyro_vmm::process::ProcessId;
use serde::{Deserialize, Serialize};

use crate::{BackendKind, CoreError, Paths};

/// Version of the record layout.
pub const VM_LAYOUT_VERSION: u32 = 1;

/// Who keeps a sandbox alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Owner {
    /// A one-shot run or demo: orphaned once that pyro process is gone.
    Process {
        /// The owning pyro process.
        process: ProcessId,
    },
    /// A persistent workspace's VM: orphaned once the workspace no longer
    /// claims it.
    Workspace {
        /// The workspace.
        workspace_id: String,
    },
}

impl Owner {
    /// This process.
    pub fn this_process() -> Self {
        Self::Process {
            process: ProcessId::current(),
        }
    }

    /// Whether the owner is gone (sandbox `vm_id` is an orphan). A workspace
    /// claims the sandbox it records, and any sandbox while a live process
    /// is creating, resetting or starting it.
    pub fn is_gone(&self, paths: &Paths, vm_id: &str) -> bool {
        match self {
            Self::Process { process } => !process.is_alive(),
            Self::Workspace { workspace_id } => {
                use crate::workspace::record;
                // A workspace that is busy (its lock is held: being created,
                // reset, started...) or whose record exists but cannot be
                // read (another pyro version) keeps its sandbox.
                if !record::exists(paths, workspace_id) {
                    return true;
                }
                let Some(_lock) = record::lock_for_sweep(paths, workspace_id) else {
                    return false;
                };
                match record::load(paths, workspace_id) {
                    None => false,
                    Some(ws) => {
                        ws.vm_id.as_deref() != Some(vm_id)
                            && !ws
                                .operation
                                .as_ref()
                                .is_some_and(|op| op.process.is_alive())
                    }
                }
            }
        }
    }
}

/// What pyro knows about one sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// [`VM_LAYOUT_VERSION`].
    pub layout_version: u32,
    /// Sandbox id.
    pub id: String,
    /// Backend.
    pub backend: BackendKind,
    /// Environment name.
    pub environment: String,
    /// Who keeps it alive.
    pub owner: Owner,
    /// Creation time (Unix seconds).
    pub created_at: f64,
    /// The Firecracker (or host-compat launcher) process, once spawned.
    pub process: Option<ProcessId>,
    /// Firecracker paths (jail, sockets, logs).
    pub firecracker: Option<VmPaths>,
    /// uid/gid of the jailed Firecracker.
    pub jail_uid: Option<u32>,
    /// cgroup parent the jailer used.
    pub cgroup_parent: Option<String>,
    /// The agent's Unix socket (host-compat).
    pub agent_socket: Option<PathBuf>,
    /// The process keeping the console log (see `pyro_vmm::console`).
    #[serde(default)]
    pub console_keeper: Option<ProcessId>,
    /// Its network, when it has one.
    #[serde(default)]
    pub network: Option<crate::sandbox::NetRecord>,
}

impl VmRecord {
    /// Where this record lives.
    pub fn file(paths: &Paths, id: &str) -> PathBuf {
        paths.vm_dir(id).join("vm.json")
    }

    /// Writes the record atomically.
    pub fn save(&self, paths: &Paths) -> Result<(), CoreError> {
        crate::save_json(
            &Self::file(paths, &self.id),
            self,
            &format!("saving the record of sandbox {}", self.id),
        )
    }

    /// Reads a record; `None` if missing or unreadable.
    pub fn load(paths: &Paths, id: &str) -> Option<Self> {
        let bytes = std::fs::read(Self::file(paths, id)).ok()?;
        serde_json::from_slice::<Self>(&bytes)
            .ok()
            .filter(|r| r.layout_version == VM_LAYOUT_VERSION)
    }

    /// Ids of every sandbox directory (with or without a readable record).
    pub fn list_ids(paths: &Paths) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(paths.vms_dir())
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests;

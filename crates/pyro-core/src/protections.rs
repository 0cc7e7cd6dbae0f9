//! What holds a workspace in: the host cgroups of its Firecracker process,
//! the limits its guest's agent runs commands under, and its disk's size;
//! which of them a host lacks; and the limit a command ran into, worded
//! once for both front ends.

use serde::Serialize;

pub use pyro_protocol::GuestLimit;

use crate::BackendKind;

/// The host cgroup limits of one VM's Firecracker process: its memory
/// (the guest's plus room for Firecracker itself and page cache), its
/// CPU time (the guest's vCPUs plus a quarter CPU for the VMM's device
/// threads, which serve the guest's I/O) and its tasks (Firecracker's
/// threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostLimits {
    /// The memory cap, bytes (none without the memory controller).
    pub memory_bytes: Option<u64>,
    /// The CPU quota, thousandths of a CPU (none without the cpu
    /// controller).
    pub cpu_millicores: Option<u64>,
    /// The task cap (none without the pids controller).
    pub pids: Option<u64>,
}

impl HostLimits {
    /// The limits for a guest of `vcpus` vCPUs and `mem_mib` MiB.
    pub fn for_guest(vcpus: u8, mem_mib: u32) -> Self {
        Self {
            memory_bytes: Some((u64::from(mem_mib) + 256) << 20),
            cpu_millicores: Some(u64::from(vcpus) * 1000 + 250),
            pids: Some(256),
        }
    }

    /// Only the caps of the controllers in `ctrls`.
    pub fn only(self, ctrls: &[String]) -> Self {
        let has = |c: &str| ctrls.iter().any(|x| x == c);
        Self {
            memory_bytes: self.memory_bytes.filter(|_| has("memory")),
            cpu_millicores: self.cpu_millicores.filter(|_| has("cpu")),
            pids: self.pids.filter(|_| has("pids")),
        }
    }
}

/// The limits a guest's agent runs commands under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GuestLimits {
    /// Memory all commands together may use, bytes (the guest's less a
    /// reserve for the agent and the kernel).
    pub memory_bytes: u64,
    /// Tasks (processes and threads) one command may have at once.
    pub tasks_per_command: u64,
    /// CPUs the guest sees (`nproc`).
    pub cpus: u32,
}

/// A workspace's disk space, as its guest reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DiskUsage {
    /// The disk's size as the guest's filesystem reports it, MiB.
    pub total_mib: u64,
    /// Free, MiB.
    pub free_mib: u64,
    /// Whether it is full (a failed command then says so).
    pub full: bool,
}

/// What holds a workspace in, and what is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Protections {
    /// The host cgroups its VM is given when it starts on this host, as
    /// this pyro process sees the host (none without root, or in
    /// host-compat).
    pub host: Option<HostLimits>,
    /// The guest's limits on commands (`status` of a started workspace,
    /// as its guest reports them).
    pub guest: Option<GuestLimits>,
    /// Its disk's space (`status` of a started workspace).
    pub disk: Option<DiskUsage>,
    /// Each protection this host does not give it, and why.
    pub missing: Vec<String>,
}

/// The host side of [`Protections`] for a workspace of `backend` with
/// `vcpus` and `mem_mib`, run by this process (as root or not) on a host
/// with these cgroup controllers.
pub fn host_side(backend: BackendKind, vcpus: u8, mem_mib: u32) -> Protections {
    let root = nix::unistd::geteuid().is_root();
    let ctrls = pyro_vmm::cgroup::detect(std::path::Path::new(pyro_vmm::cgroup::CGROUP_ROOT))
        .map(|(_, c)| c)
        .unwrap_or_default();
    host_side_of(backend, root, &ctrls, vcpus, mem_mib)
}

fn host_side_of(
    backend: BackendKind,
    root: bool,
    ctrls: &[String],
    vcpus: u8,
    mem_mib: u32,
) -> Protections {
    let mut missing = Vec::new();
    let host = match backend {
        BackendKind::HostCompat => {
            missing.push(
                "host-compat runs commands as host processes: no VM boundary, no cgroup caps on \
                 memory, CPU or tasks, and no disk quota (use the firecracker backend)"
                    .to_owned(),
            );
            None
        }
        BackendKind::Firecracker if !root => {
            missing.push(
                "not root: Firecracker runs without the jailer, so no host cgroup caps its \
                 memory, CPU or tasks (run pyro as root)"
                    .to_owned(),
            );
            None
        }
        BackendKind::Firecracker => {
            for (c, what) in [("memory", "memory"), ("cpu", "CPU time"), ("pids", "tasks")] {
                if !ctrls.iter().any(|x| x == c) {
                    missing.push(format!(
                        "the host has no {c} cgroup controller, so the VM's {what} is not capped \
                         (enable it; see `pyro doctor`)"
                    ));
                }
            }
            Some(HostLimits::for_guest(vcpus, mem_mib).only(ctrls))
        }
    };
    Protections {
        host,
        guest: None,
        disk: None,
        missing,
    }
}

impl Protections {
    /// Says that a started guest did not report its limits in time.
    pub fn guest_silent(mut self) -> Self {
        self.missing.push(
            "the guest's limits and disk space are unknown: it did not answer in 3 s".to_owned(),
        );
        self
    }

    /// Adds what a started guest reports.
    pub fn with_guest(mut self, u: &pyro_protocol::GuestUsage) -> Self {
        match (u.memory_max_bytes, u.tasks_per_command) {
            (Some(memory_bytes), Some(tasks_per_command)) => {
                self.guest = Some(GuestLimits {
                    memory_bytes,
                    tasks_per_command,
                    cpus: u.cpus,
                });
            }
            _ => self.missing.push(
                "the guest runs commands without limits (its cgroup v2 memory and pids \
                 controllers could not be set up or used): a runaway command can exhaust the \
                 guest"
                    .to_owned(),
            ),
        }
        self.disk = Some(DiskUsage {
            total_mib: u.disk_total_bytes >> 20,
            free_mib: u.disk_free_bytes >> 20,
            full: u.disk_full,
        });
        self
    }
}

/// A limit a command hit, with what it means and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LimitHit {
    /// Which limit.
    pub kind: GuestLimit,
    /// What happened and what to do.
    pub message: String,
}

/// The words for a command of a workspace with `mem_mib` and `disk_mib`
/// that hit `kind`.
pub fn limit_hit(kind: GuestLimit, mem_mib: u32, disk_mib: u64) -> LimitHit {
    let message = match kind {
        GuestLimit::Memory => format!(
            "out of memory: the guest's OOM killer ended a process of this command (at its own \
             ⟨arg:max_memory_mib⟩ cap, or when the commands together filled the guest's \
             {mem_mib} MiB less a reserve for the agent); use less memory, or create the \
             workspace with a larger ⟨arg:mem_mib⟩"
        ),
        GuestLimit::Processes => format!(
            "process limit: the command reached its task limit ({} processes and threads at \
             once unless ⟨arg:max_tasks⟩ set another), so its forks failed and its remaining \
             processes were ended; look for a runaway fork loop",
            pyro_protocol::GUEST_TASKS_PER_COMMAND
        ),
        GuestLimit::Disk => format!(
            "workspace disk full: the command failed while the workspace's {disk_mib} MiB disk \
             had no space left; delete files (or reset the workspace), or create it with a \
             larger ⟨arg:disk_mib⟩"
        ),
    };
    LimitHit {
        kind,
        message: crate::hint::render(&message, crate::hint::FrontEnd::Neutral),
    }
}

#[cfg(test)]
mod tests;

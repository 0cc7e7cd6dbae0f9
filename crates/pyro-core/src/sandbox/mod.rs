//! One running guest, on either backend, and the host side of the agent
//! protocol.
//!
//! A sandbox's record is written before anything is created for it and its
//! teardown ([`teardown`]) removes everything the record points at, so the
//! same code cleans up after a finished run, a failed start, and (via
//! [`crate::sweep`]) a pyro process that was killed.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pyro_env::{Installed, Progress};
use pyro_protocol::{
    AGENT_PORT, Envelope, ExecOutcome, ExecRequest, FrameKind, Hello, PROTOCOL_VERSION, Request,
    Response, read_frame, read_message, write_message,
};
use pyro_vmm::cgroup::{self, CgroupVersion};
use pyro_vmm::launch::{
    GREETING_TIMEOUT, JailSpec, LaunchSpec, NoGreeting, VmPaths, await_greeting,
};
use pyro_vmm::process::ProcessId;
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;

use crate::records::{Owner, VM_LAYOUT_VERSION, VmRecord};
use crate::{BackendKind, CoreError, ExecutionMode, Paths, now_unix, random_hex};

mod boot;
mod calls;
pub(crate) use calls::unexpected;
#[cfg(pyro_coverage)]
mod coverage;
mod download;
mod handoff;
mod network;
mod restore;
pub(crate) use restore::refresh_request;

use boot::*;
pub use network::{NetRecord, NetworkSpec, RelayRecord};
pub(crate) use network::{stop_relays_for, sweep_networks};
pub use restore::{BootInfo, BootMode, BootPref, COLD_BOOT_ASKED, ProgressRef};

/// First uid/gid handed to jailed Firecracker processes (one per VM).
pub const JAIL_UID_BASE: u32 = 900_000;

/// How long a file read or write may take before the guest counts as hung.
const FILE_OP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an archive transfer (seed, sync, export, diff) may take.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Caps a wait on the agent by `PYRO_AGENT_DEADLINE_SECONDS` when set (for
/// tests of misbehaving agents, and hosts that want to give up sooner).
pub fn agent_deadline(d: Duration) -> Duration {
    static CAP: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let cap = CAP.get_or_init(|| {
        std::env::var("PYRO_AGENT_DEADLINE_SECONDS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
    });
    cap.map_or(d, |c| d.min(c))
}

/// Runs `fut`, failing with a clear error if the agent takes longer than
/// `limit`.
async fn within<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, CoreError>>,
) -> Result<T, CoreError> {
    let limit = agent_deadline(limit);
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        CoreError::Transport(format!(
            "{what} got no answer from the sandbox within {} s; it may be hung: stop and start the workspace",
            limit.as_secs()
        ))
    })?
}

/// Extra time the host waits for an exec beyond its timeout (the agent
/// enforces the timeout itself; this only catches a hung agent).
const EXEC_GRACE: Duration = Duration::from_secs(60);

/// Default boot deadline: generous on PVM hosts, where guest kernels run in
/// an instruction emulator.
pub fn default_boot_timeout() -> Duration {
    if pyro_vmm::host::is_pvm() {
        Duration::from_secs(180)
    } else {
        Duration::from_secs(30)
    }
}

/// The hostname a guest gets: `pyro` for a one-off run, `pyro-ID` for a
/// workspace (ids are hex, so the result is always a valid host label).
pub fn hostname_for(workspace_id: Option<&str>) -> String {
    match workspace_id {
        Some(id) => {
            let mut h = format!("pyro-{id}");
            h.truncate(63);
            h
        }
        None => "pyro".into(),
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SandboxSpec<'a> {
    /// The environment.
    pub env: &'a Installed,
    /// Backend.
    pub backend: BackendKind,
    /// vCPUs (Firecracker).
    pub vcpu_count: u8,
    /// Memory (Firecracker).
    pub mem_mib: u32,
    /// Size of the sparse writable disk (Firecracker).
    pub disk_mib: u64,
    /// The guest powers itself off after this many idle seconds (0: never).
    pub idle_seconds: u64,
    /// Boot deadline.
    pub boot_timeout: Duration,
    /// Who keeps it alive.
    pub owner: Owner,
    /// The guest's hostname (an RFC 1123 label; see [`hostname_for`]).
    pub hostname: String,
    /// The writable layer when it lives outside the sandbox (a workspace's
    /// ext4 disk for Firecracker, its directory for host-compat); `None`
    /// makes a fresh one that goes with the sandbox.
    pub upper: Option<PathBuf>,
    /// Restored from a template or booted cold (Firecracker).
    pub boot: BootPref,
    /// Where a long boot (a template build) reports its steps.
    pub progress: ProgressRef<'a>,
    /// Its network (`None`: no interface).
    pub network: Option<NetworkSpec>,
}

/// Receives command output as it arrives.
pub trait OutputSink: Send {
    /// Bytes of standard output.
    fn stdout(&mut self, data: &[u8]);
    /// Bytes of standard error.
    fn stderr(&mut self, data: &[u8]);
    /// Whether the output goes anywhere (a sink that drops it lets a run
    /// ask the guest for only what its result keeps).
    fn streams(&self) -> bool {
        true
    }
}

/// Collects output in memory.
#[derive(Debug, Default, Clone)]
pub struct Capture {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl OutputSink for Capture {
    fn stdout(&mut self, data: &[u8]) {
        self.stdout.extend_from_slice(data);
    }
    fn stderr(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
    }
}

/// Drops output: for callers that only want the result, which keeps its
/// own copy.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl OutputSink for Discard {
    fn stdout(&mut self, _: &[u8]) {}
    fn stderr(&mut self, _: &[u8]) {}
    fn streams(&self) -> bool {
        false
    }
}

/// A running sandbox. Dropping it tears it down.
#[derive(Debug)]
pub struct Sandbox {
    paths: Paths,
    record: VmRecord,
    hello: Option<Hello>,
    boot_ms: u64,
    boot_info: Option<BootInfo>,
    refresh_us: Option<u64>,
    torn_down: bool,
    /// Outlives this handle (a workspace's VM): never torn down on drop.
    keep: bool,
    /// A restore copied the template's disk in (a failed restore removes
    /// it; it never removes a disk the guest brought).
    copied_upper: bool,
}

impl Sandbox {
    /// Creates and boots a sandbox and waits for its agent. On failure
    /// nothing is left behind.
    pub async fn start(paths: &Paths, spec: &SandboxSpec<'_>) -> Result<Self, CoreError> {
        let mut sandbox = Self::create(paths, spec).await?;
        sandbox.boot(spec).await?;
        Ok(sandbox)
    }

    /// Records a new sandbox and prepares its writable layer (a sparse
    /// ext4 disk for Firecracker). Nothing runs yet.
    pub async fn create(paths: &Paths, spec: &SandboxSpec<'_>) -> Result<Self, CoreError> {
        let id = random_hex(6);
        let root = nix::unistd::geteuid().is_root();
        let mut record = VmRecord {
            layout_version: VM_LAYOUT_VERSION,
            id: id.clone(),
            backend: spec.backend,
            environment: spec.env.name.to_owned(),
            owner: spec.owner.clone(),
            created_at: now_unix(),
            process: None,
            firecracker: None,
            jail_uid: None,
            console_keeper: None,
            cgroup_parent: None,
            agent_socket: None,
            network: None,
        };
        {
            let _lock = paths.lock_async("vms").await?;
            if spec.backend == BackendKind::Firecracker && root {
                record.jail_uid = Some(allocate_uid(paths)?);
            }
            let dir = paths.vm_dir(&id);
            std::fs::create_dir_all(&dir)
                .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
            record.save(paths)?;
        }
        let sandbox = Sandbox {
            paths: paths.clone(),
            record,
            hello: None,
            boot_ms: 0,
            boot_info: None,
            refresh_us: None,
            torn_down: false,
            keep: false,
            copied_upper: false,
        };
        // A restore brings its own disk; a cold boot makes one (see
        // `ensure_upper`) when there is none.
        if spec.backend == BackendKind::Firecracker
            && spec.upper.is_none()
            && spec.boot != BootPref::Template
        {
            let (upper, mib) = (sandbox.paths.vm_dir(&id).join("upper.ext4"), spec.disk_mib);
            // mkfs runs off the async workers.
            crate::blocking(move || {
                pyro_vmm::disk::create_upper_disk(&upper, mib).map_err(CoreError::from)
            })
            .await?;
        }
        Ok(sandbox)
    }

    /// Boots the created sandbox and waits for its agent's greeting.
    pub async fn boot(&mut self, spec: &SandboxSpec<'_>) -> Result<(), CoreError> {
        let started = Instant::now();
        let (hello, info) = match spec.backend {
            BackendKind::Firecracker => self.boot_guest(spec).await?,
            BackendKind::HostCompat => (
                self.boot_host_compat(spec).await?,
                BootInfo {
                    boot_mode: BootMode::Cold,
                    boot_reason: "host-compat starts a process, not a VM: there is no snapshot \
                                  to restore"
                        .into(),
                },
            ),
        };
        check_protocol(&hello, &spec.env.name)?;
        self.hello = Some(hello);
        self.boot_info = Some(info);
        self.boot_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(())
    }

    /// The agent's greeting, once booted.
    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    /// Sandbox id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// How commands run here.
    pub fn mode(&self) -> ExecutionMode {
        match self.record.backend {
            BackendKind::Firecracker => ExecutionMode::GuestVsock,
            BackendKind::HostCompat => ExecutionMode::HostCompat,
        }
    }

    /// Time from start to the agent's greeting.
    pub fn boot_ms(&self) -> u64 {
        self.boot_ms
    }

    /// How it booted (once booted).
    pub fn boot_info(&self) -> Option<&BootInfo> {
        self.boot_info.as_ref()
    }

    /// Time the restored guest's agent spent making itself a machine of its
    /// own (microseconds; `None` for a cold boot).
    pub fn refresh_us(&self) -> Option<u64> {
        self.refresh_us
    }

    /// The record.
    pub fn record(&self) -> &VmRecord {
        &self.record
    }

    /// A handle on a running sandbox from its record (a workspace's VM). It
    /// is not torn down on drop.
    pub fn attach(paths: &Paths, id: &str) -> Result<Self, CoreError> {
        let record = VmRecord::load(paths, id).ok_or_else(|| {
            CoreError::Transport(format!("the sandbox {id} has no record; it is gone"))
        })?;
        Ok(Self::handle(paths, record))
    }

    /// A handle on the sandbox `record` describes, kept past the handle.
    fn handle(paths: &Paths, record: VmRecord) -> Self {
        Sandbox {
            paths: paths.clone(),
            record,
            hello: None,
            boot_ms: 0,
            boot_info: None,
            refresh_us: None,
            torn_down: false,
            keep: true,
            copied_upper: false,
        }
    }

    /// Keeps the sandbox running past this handle.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Whether its Firecracker (or host-compat) process still runs.
    pub fn is_running(&self) -> bool {
        self.record.process.is_some_and(|p| p.is_alive())
    }

    /// The end of the guest console (and Firecracker log), for reports.
    pub fn console_tail(&self) -> String {
        match &self.record.firecracker {
            Some(fc) => fc.diagnostics(),
            None => pyro_vmm::console::console_tail(
                &self.paths.vm_dir(&self.record.id).join("console.log"),
                2000,
            ),
        }
    }

    /// Pauses (`true`) or resumes the VM's vCPUs. Host-compat sandboxes have
    /// no vCPUs to pause; there it is a no-op.
    pub async fn set_paused(&self, paused: bool) -> Result<(), CoreError> {
        if let Some(fc) = &self.record.firecracker {
            let state = if paused { "Paused" } else { "Resumed" };
            pyro_vmm::api::ApiClient::new(&fc.api_sock)
                .expecting_peer(self.record.jail_uid)
                .patch("/vm", &serde_json::json!({"state": state}))
                .await?;
        }
        Ok(())
    }

    /// [`Self::set_paused`]`(false)` from blocking code (a sweep, a record
    /// brought up to date off the async workers).
    pub fn resume_blocking(&self) -> Result<(), CoreError> {
        let resume = self.set_paused(false);
        match tokio::runtime::Handle::try_current() {
            // Blocking threads of a runtime may wait on its futures.
            Ok(h) => h.block_on(resume),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CoreError::io("starting a runtime", e))?
                .block_on(resume),
        }
    }

    /// Asks the agent to flush and power off, and waits (up to `timeout`) for
    /// the process to end; then tears down what is left. The writable layer,
    /// when it lives outside the sandbox, is kept.
    pub async fn shutdown(mut self, timeout: Duration) -> Result<(), CoreError> {
        #[cfg(pyro_coverage)]
        self.collect_coverage().await;
        let _ = self.call(Request::Shutdown, Duration::from_secs(30)).await;
        let until = Instant::now() + timeout;
        while self.is_running() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.torn_down = true;
        let (paths, record) = (self.paths.clone(), self.record.clone());
        crate::blocking(move || {
            teardown(&paths, &record)
                .map_err(|e| CoreError::io("stopping the sandbox", std::io::Error::other(e)))
        })
        .await
    }

    /// Tears the sandbox down off the async workers (teardown waits for
    /// processes to exit and deletes disks).
    pub async fn close(self) -> Result<(), CoreError> {
        crate::blocking(move || self.destroy()).await
    }

    /// Tears the sandbox down now (also done on drop).
    pub fn destroy(mut self) -> Result<(), CoreError> {
        self.torn_down = true;
        teardown(&self.paths, &self.record)
            .map_err(|e| CoreError::io("tearing down the sandbox", std::io::Error::other(e)))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.torn_down || self.keep {
            return;
        }
        let work = || {
            if let Err(e) = teardown(&self.paths, &self.record) {
                tracing::warn!("sandbox {} teardown: {e}", self.record.id);
            }
        };
        // Dropped on an async worker (an error path, a cancelled call): the
        // teardown waits for processes, so the worker hands its other tasks
        // on while it runs.
        crate::off_workers(work);
    }
}

/// Aborts a task when dropped: a cancelled exec must let go of its
/// connection (which is how the agent learns to kill the command).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes everything a record points at: the process, its jail, sockets,
/// cgroups and the sandbox directory.
pub fn teardown(paths: &Paths, record: &VmRecord) -> Result<(), String> {
    #[cfg(pyro_coverage)]
    coverage::collect_blocking(paths, record);
    let mut problems = match stop_vm(paths, record) {
        Ok(()) => Vec::new(),
        Err(p) => vec![p],
    };
    remove_dir(&paths.vm_dir(&record.id), &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The process and what runs and lives beside it (console keeper, jail,
/// sockets, cgroups); the sandbox directory and its record stay.
pub(super) fn stop_vm(paths: &Paths, record: &VmRecord) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(p) = record.process
        && !p.kill_and_wait(Duration::from_secs(10))
    {
        problems.push(format!("process {} did not exit", p.pid));
    }
    // The console keeper ends by itself once the VM is gone (it drains the
    // last output first); one that does not is stopped.
    if let Some(k) = record.console_keeper {
        let until = Instant::now() + Duration::from_millis(500);
        while k.is_alive() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if k.is_alive() && !k.kill_and_wait(Duration::from_secs(5)) {
            problems.push(format!("console keeper {} did not exit", k.pid));
        }
    }
    network::stop_network(paths, record, &mut problems);
    if let Some(fc) = &record.firecracker
        && let Err(e) = pyro_vmm::launch::remove_vm_files(
            &record.id,
            fc,
            record
                .cgroup_parent
                .as_deref()
                .map(|p| (paths.cgroup_root(), p)),
        )
    {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn remove_dir(dir: &Path, problems: &mut Vec<String>) {
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        problems.push(format!("{}: {e}", dir.display()));
    }
}

#[cfg(test)]
pub(super) mod tests;

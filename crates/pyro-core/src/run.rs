//! One-shot `pyro run`: boot a sandbox, run one command, tear it down.

use std::collections::BTreeMap;
use std::time::Duration;

use pyro_env::{Installed, Progress};
use pyro_protocol::{Command, ExecRequest};
use serde::Serialize;
use tokio::time::Instant;

use crate::limits::{self, OUTPUT_BYTES};
use crate::records::Owner;
use crate::sandbox::{
    BootInfo, BootMode, BootPref, COLD_BOOT_ASKED, OutputSink, ProgressRef, Sandbox, SandboxSpec,
    default_boot_timeout,
};
use crate::{BackendKind, CoreError, ExecutionMode, Paths, check_range};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The command.
    pub command: Command,
    /// vCPUs.
    pub vcpu_count: u8,
    /// Memory in MiB.
    pub mem_mib: u32,
    /// Command timeout.
    pub timeout_seconds: u64,
    /// Boot deadline (default: generous on PVM hosts).
    pub boot_timeout_seconds: Option<u64>,
    /// The guest powers itself off after this long, whatever happens.
    pub ttl_seconds: u64,
    /// Backend.
    pub backend: BackendKind,
    /// Fall back to host-compat when the guest cannot boot.
    pub allow_host_compat: bool,
    /// Per-stream cap on returned output.
    pub max_output_bytes: u64,
    /// Working directory in the guest.
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Boot cold even where a template could be restored.
    pub cold_boot: bool,
    /// What the guest may reach.
    pub network: pyro_net::Policy,
}

impl RunOptions {
    /// For a caller that takes no lifetime: the guest lives at least as
    /// long as the command may run.
    pub fn fit_ttl_to_timeout(&mut self) {
        self.ttl_seconds = self.ttl_seconds.max(self.timeout_seconds);
    }

    /// Options with the documented defaults.
    pub fn new(command: Command) -> Self {
        Self {
            command,
            vcpu_count: limits::VCPUS.default,
            mem_mib: limits::MEM_MIB.default,
            timeout_seconds: limits::TIMEOUT_SECONDS.default,
            boot_timeout_seconds: None,
            ttl_seconds: limits::RUN_TTL_SECONDS.default,
            backend: BackendKind::Firecracker,
            allow_host_compat: false,
            max_output_bytes: OUTPUT_BYTES.default,
            cwd: None,
            env: BTreeMap::new(),
            cold_boot: false,
            network: pyro_net::Policy::off(),
        }
    }

    /// Checks every bound; the message names the flag and the rule.
    pub fn validate(&self) -> Result<(), CoreError> {
        check_command(&self.command)?;
        check_machine(self.backend, self.vcpu_count, self.mem_mib)?;
        self.network
            .check()
            .map_err(|e| CoreError::invalid(e.to_string()))?;
        crate::network::check_backend(&self.network, self.backend, self.allow_host_compat)?;
        limits::TIMEOUT_SECONDS.check(self.timeout_seconds)?;
        limits::RUN_TTL_SECONDS.check(self.ttl_seconds)?;
        OUTPUT_BYTES.check(self.max_output_bytes)?;
        if let Some(b) = self.boot_timeout_seconds {
            check_range(
                "⟨arg:boot_timeout_seconds⟩",
                b,
                limits::BOOT_TIMEOUT_SECONDS,
            )?;
        }
        if self.ttl_seconds < self.timeout_seconds {
            return Err(CoreError::invalid(format!(
                "⟨arg:ttl_seconds⟩ ({}) must be at least ⟨arg:timeout_seconds⟩ ({}): the guest powers off at its TTL",
                self.ttl_seconds, self.timeout_seconds
            )));
        }
        check_env_names(&self.env)
    }
}

/// A command must name something to run: an argv whose program is not
/// empty, or a shell line that is not blank. (Every front end's commands:
/// `run`, workspace `exec`, services.)
pub(crate) fn check_command(command: &Command) -> Result<(), CoreError> {
    match command {
        Command::Argv { argv } if argv.first().is_none_or(String::is_empty) => {
            Err(CoreError::invalid("no command given: give ⟨arg:command⟩"))
        }
        Command::Shell { script } if script.trim().is_empty() => Err(CoreError::invalid(
            "the command is empty: give ⟨arg:command⟩",
        )),
        _ => Ok(()),
    }
}

/// Checks that every variable name is one a shell can use.
pub(crate) fn check_env_names(env: &BTreeMap<String, String>) -> Result<(), CoreError> {
    match env.keys().find(|k| !pyro_protocol::valid_env_name(k)) {
        Some(name) => Err(CoreError::invalid(format!(
            "invalid environment variable name {name:?}: use letters, digits and _, not starting with a digit"
        ))),
        None => Ok(()),
    }
}

/// How the sandbox was cleaned up.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Cleanup {
    /// Whether everything was removed.
    pub deleted: bool,
    /// Why it was removed.
    pub reason: String,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunResult {
    /// Sandbox id.
    pub vm_id: String,
    /// Environment name.
    pub environment: String,
    /// Environment version.
    pub environment_version: String,
    /// How the command ran.
    pub execution_mode: ExecutionMode,
    /// Why it fell back to host-compat, if it did.
    pub fallback_reason: Option<String>,
    /// The command, for display.
    pub command: String,
    /// Exit code (124 on timeout).
    pub exit_code: i32,
    /// Whether the timeout fired.
    pub timed_out: bool,
    /// Effective command timeout.
    pub timeout_seconds: u64,
    /// Standard output (lossy UTF-8 of the returned bytes).
    pub stdout: String,
    /// Standard error (lossy UTF-8 of the returned bytes).
    pub stderr: String,
    /// Bytes the command wrote to stdout.
    pub stdout_bytes: u64,
    /// Bytes the command wrote to stderr.
    pub stderr_bytes: u64,
    /// Whether either stream is longer than what `stdout`/`stderr` hold.
    pub truncated: bool,
    /// What `stdout`/`stderr` hold at most.
    pub max_output_bytes: u64,
    /// Whether a stream passed the most a command may write (the maximum
    /// of `max_output_bytes`): the streamed output stops short there too.
    pub stream_cut: bool,
    /// How the guest started: `restored` from a template or `cold`.
    pub boot_mode: BootMode,
    /// Which template it was restored from, or why it booted cold.
    pub boot_reason: String,
    /// Boot time.
    pub boot_ms: u64,
    /// Command time (inside the guest).
    pub exec_ms: u64,
    /// Total wall time.
    pub duration_ms: u64,
    /// The network policy the guest ran under.
    pub network: pyro_net::Policy,
    /// Connections and DNS queries the policy refused (the newest
    /// [`RUN_DENIALS_SHOWN`]; `network_denial_count` says how many in all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_denials: Vec<crate::network::Denial>,
    /// How many the policy refused in all.
    pub network_denial_count: u64,
    /// A guest limit the command hit (memory, tasks, a full disk), with
    /// what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<crate::protections::LimitHit>,
    /// Cleanup.
    pub cleanup: Cleanup,
}

/// Denials a run's result lists at most.
pub const RUN_DENIALS_SHOWN: usize = 20;

/// Progress events of a run.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// A step of a long boot (building the template first).
    Step(String),
    /// Booting on a backend.
    Booting(BackendKind),
    /// The guest could not boot; falling back to host-compat.
    Fallback(String),
    /// Booted; running the command.
    Running {
        /// Boot time.
        boot_ms: u64,
    },
}

/// Passes the whole stream on and keeps the first `keep` bytes of each
/// stream for the result.
struct Tee<'a> {
    inner: &'a mut dyn OutputSink,
    keep: usize,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

fn keep_start(into: &mut Vec<u8>, data: &[u8], keep: usize) {
    let room = keep.saturating_sub(into.len());
    into.extend_from_slice(&data[..data.len().min(room)]);
}

impl OutputSink for Tee<'_> {
    fn stdout(&mut self, data: &[u8]) {
        keep_start(&mut self.stdout, data, self.keep);
        self.inner.stdout(data);
    }
    fn stderr(&mut self, data: &[u8]) {
        keep_start(&mut self.stderr, data, self.keep);
        self.inner.stderr(data);
    }
}

fn spec<'a>(
    env: &'a Installed,
    opts: &RunOptions,
    backend: BackendKind,
    progress: &'a dyn Progress,
) -> SandboxSpec<'a> {
    SandboxSpec {
        env,
        backend,
        vcpu_count: opts.vcpu_count,
        mem_mib: opts.mem_mib,
        disk_mib: limits::DISK_MIB.default,
        idle_seconds: opts.ttl_seconds,
        boot_timeout: opts
            .boot_timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or_else(default_boot_timeout),
        owner: Owner::this_process(),
        hostname: crate::sandbox::hostname_for(None),
        upper: None,
        boot: if opts.cold_boot {
            BootPref::Cold(COLD_BOOT_ASKED.into())
        } else {
            BootPref::Template
        },
        progress: ProgressRef(progress),
        network: opts
            .network
            .mode
            .has_network()
            .then(|| crate::sandbox::NetworkSpec {
                policy: opts.network.clone(),
                log_dir: None,
                local_only: false,
            }),
    }
}

/// Boots a sandbox (falling back to host-compat when allowed), runs the
/// command with output streamed into `sink`, and tears everything down,
/// on success, failure or cancellation alike.
pub async fn run(
    paths: &Paths,
    env: &Installed,
    opts: &RunOptions,
    sink: &mut dyn OutputSink,
    events: &mut (dyn FnMut(RunEvent) + Send),
) -> Result<RunResult, CoreError> {
    opts.validate()?;
    let started = Instant::now();
    let (sandbox, fallback_reason) = start_with_fallback(paths, env, opts, events).await?;
    events(RunEvent::Running {
        boot_ms: sandbox.boot_ms(),
    });
    let streams = sink.streams();
    // An imported image's WorkingDir and User apply to `run`, as they
    // would to `docker run` (workspace commands run as root in
    // /workspace, where pyro's file tools write).
    let image = env.manifest.image.as_ref();
    let req = ExecRequest {
        command: opts.command.clone(),
        cwd: opts
            .cwd
            .clone()
            .or_else(|| image.and_then(|i| i.working_dir.clone())),
        run_as: image.and_then(|i| match (i.uid, i.gid) {
            (Some(uid), gid) if uid != 0 || gid.unwrap_or(0) != 0 => Some(pyro_protocol::RunAs {
                uid,
                gid: gid.unwrap_or(0),
            }),
            _ => None,
        }),
        env: opts.env.clone(),
        timeout_ms: opts.timeout_seconds * 1000,
        // A stream may run to the hard cap, of which the result keeps the
        // start; with nowhere to stream, only what the result keeps.
        output_limit_bytes: if streams {
            OUTPUT_BYTES.max
        } else {
            opts.max_output_bytes
        },
        stdin: false,
        limits: Default::default(),
    };
    let mut tee = Tee {
        inner: sink,
        keep: usize::try_from(opts.max_output_bytes).unwrap_or(usize::MAX),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let outcome = sandbox.exec(req, &mut tee).await;
    // Read before the teardown takes the log with the sandbox.
    let (network_denials, network_denial_count) = sandbox.denials(RUN_DENIALS_SHOWN);
    let vm_id = sandbox.id().to_owned();
    let mode = sandbox.mode();
    let boot_ms = sandbox.boot_ms();
    let boot = sandbox.boot_info().cloned().unwrap_or(BootInfo {
        boot_mode: BootMode::Cold,
        boot_reason: String::new(),
    });
    let cleanup = match sandbox.close().await {
        Ok(()) => Cleanup {
            deleted: true,
            reason: "post_run_cleanup".into(),
        },
        Err(e) => Cleanup {
            deleted: false,
            reason: e.message(crate::hint::FrontEnd::Neutral),
        },
    };
    let outcome = outcome?;
    Ok(RunResult {
        vm_id,
        environment: env.name.to_owned(),
        environment_version: env.version.to_owned(),
        execution_mode: mode,
        fallback_reason,
        command: opts.command.display(),
        exit_code: outcome.exit_code,
        timed_out: outcome.timed_out,
        timeout_seconds: opts.timeout_seconds,
        stdout: String::from_utf8_lossy(&tee.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&tee.stderr).into_owned(),
        stdout_bytes: outcome.stdout_bytes,
        stderr_bytes: outcome.stderr_bytes,
        truncated: outcome.stdout_bytes > opts.max_output_bytes
            || outcome.stderr_bytes > opts.max_output_bytes,
        stream_cut: streams && (outcome.stdout_truncated || outcome.stderr_truncated),
        max_output_bytes: opts.max_output_bytes,
        boot_mode: boot.boot_mode,
        boot_reason: boot.boot_reason,
        boot_ms,
        exec_ms: outcome.duration_ms,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        network: opts.network.clone(),
        network_denials,
        network_denial_count,
        limit: outcome
            .limit
            .map(|k| crate::protections::limit_hit(k, opts.mem_mib, limits::DISK_MIB.default)),
        cleanup,
    })
}

/// Boot steps as run events.
struct RunProgress<'a>(std::sync::Mutex<&'a mut (dyn FnMut(RunEvent) + Send)>);

impl Progress for RunProgress<'_> {
    fn step(&self, msg: &str) {
        if let Ok(mut f) = self.0.lock() {
            f(RunEvent::Step(msg.to_owned()));
        }
    }
    fn tick(&self, _: &str) {}
}

/// Starts a sandbox on the chosen backend; when a Firecracker guest cannot
/// boot and `allow_host_compat` is set, starts host-compat instead and says
/// why.
async fn start_with_fallback(
    paths: &Paths,
    env: &Installed,
    opts: &RunOptions,
    events: &mut (dyn FnMut(RunEvent) + Send),
) -> Result<(Sandbox, Option<String>), CoreError> {
    events(RunEvent::Booting(opts.backend));
    let progress = RunProgress(std::sync::Mutex::new(events));
    let started = Sandbox::start(paths, &spec(env, opts, opts.backend, &progress)).await;
    let events = progress.0.into_inner().unwrap_or_else(|e| e.into_inner());
    match started {
        Ok(s) => Ok((s, None)),
        Err(e) => {
            let reason = fallback_reason(e, opts.backend, opts.allow_host_compat)?;
            events(RunEvent::Fallback(reason.clone()));
            let s = Sandbox::start(
                paths,
                &spec(env, opts, BackendKind::HostCompat, &pyro_env::NoProgress),
            )
            .await?;
            Ok((s, Some(reason)))
        }
    }
}

/// Checks a sandbox's size: vCPUs and memory in range, and one vCPU for a
/// guest on a PVM host.
pub(crate) fn check_machine(
    backend: BackendKind,
    vcpu_count: u8,
    mem_mib: u32,
) -> Result<(), CoreError> {
    limits::VCPUS.check(vcpu_count)?;
    limits::MEM_MIB.check(mem_mib)?;
    if backend == BackendKind::Firecracker && vcpu_count > 1 && pyro_vmm::host::is_pvm() {
        return Err(CoreError::invalid(format!(
            "⟨arg:vcpu_count={vcpu_count}⟩ is not possible on this PVM host: secondary vCPUs never start under PVM; \
             use ⟨arg:vcpu_count=1⟩"
        )));
    }
    Ok(())
}

/// What a failed boot on `backend` leads to: `Ok(reason)` when a Firecracker
/// guest failed and host-compat may stand in (the reason is the error's
/// first line), else the error to report (a guest that could not boot is
/// marked as such).
pub(crate) fn fallback_reason(
    e: CoreError,
    backend: BackendKind,
    allow_host_compat: bool,
) -> Result<String, CoreError> {
    match e {
        e if backend == BackendKind::Firecracker && allow_host_compat => Ok(e.first_line()),
        e @ CoreError::Invalid(_) => Err(e),
        e if backend == BackendKind::Firecracker => Err(CoreError::GuestUnavailable(Box::new(e))),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests;

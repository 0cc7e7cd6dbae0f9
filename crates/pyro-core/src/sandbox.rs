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

use pyro_env::Installed;
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

/// First uid/gid handed to jailed Firecracker processes (one per VM).
pub const JAIL_UID_BASE: u32 = 900_000;

/// Default size of a sandbox's sparse writable disk.
pub const DEFAULT_DISK_MIB: u64 = 4096;

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
}

/// Receives command output as it arrives.
pub trait OutputSink: Send {
    /// Bytes of standard output.
    fn stdout(&mut self, data: &[u8]);
    /// Bytes of standard error.
    fn stderr(&mut self, data: &[u8]);
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
}

/// A running sandbox. Dropping it tears it down.
#[derive(Debug)]
pub struct Sandbox {
    paths: Paths,
    record: VmRecord,
    hello: Option<Hello>,
    boot_ms: u64,
    torn_down: bool,
    /// Outlives this handle (a workspace's VM): never torn down on drop.
    keep: bool,
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
            environment: spec.env.spec.name.to_owned(),
            owner: spec.owner.clone(),
            created_at: now_unix(),
            process: None,
            firecracker: None,
            jail_uid: None,
            console_keeper: None,
            cgroup_parent: None,
            agent_socket: None,
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
            torn_down: false,
            keep: false,
        };
        if spec.backend == BackendKind::Firecracker && spec.upper.is_none() {
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
        let hello = match spec.backend {
            BackendKind::Firecracker => self.boot_firecracker(spec).await?,
            BackendKind::HostCompat => self.boot_host_compat(spec).await?,
        };
        check_protocol(&hello, spec.env.spec.name)?;
        self.hello = Some(hello);
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

    /// The record.
    pub fn record(&self) -> &VmRecord {
        &self.record
    }

    async fn boot_firecracker(&mut self, spec: &SandboxSpec<'_>) -> Result<Hello, CoreError> {
        use pyro_vmm::binaries::{FIRECRACKER, JAILER, locate_one};
        let cache = self.paths.cache().clone();
        let firecracker = locate_one(cache.root(), FIRECRACKER)?;
        spec.env.verify_kernel()?;
        let dir = self.paths.vm_dir(&self.record.id);
        let upper = spec.upper.clone().unwrap_or_else(|| dir.join("upper.ext4"));
        let jail = match self.record.jail_uid {
            Some(uid) => {
                let (version, settings) = cgroup_settings(self.paths.cgroup_root(), spec.mem_mib);
                let parent = self.paths.cgroup_parent();
                self.record.cgroup_parent = Some(parent.clone());
                Some(JailSpec {
                    // Only a jailed launch (as root) needs the jailer.
                    jailer: locate_one(cache.root(), JAILER)?.path,
                    chroot_base: self.paths.jail_base(),
                    uid,
                    gid: uid,
                    cgroup_version: version,
                    parent_cgroup: parent,
                    cgroup_settings: settings,
                })
            }
            None => None,
        };
        let extra = vec![
            format!("pyro.idle={}", spec.idle_seconds),
            format!("pyro.hostname={}", spec.hostname),
        ];
        let launch = LaunchSpec {
            id: self.record.id.clone(),
            firecracker: firecracker.path,
            kernel: spec.env.kernel_image(),
            base_image: spec.env.rootfs_image(),
            upper_disk: upper,
            vcpu_count: spec.vcpu_count,
            mem_mib: spec.mem_mib,
            boot_args: pyro_vmm::host::boot_args(pyro_vmm::host::is_pvm(), &extra),
            run_dir: dir,
            jail,
        };
        self.record.firecracker = Some(VmPaths::for_spec(&launch));
        self.record.save(&self.paths)?;
        let paths = self.paths.clone();
        let mut record = self.record.clone();
        let booting = pyro_vmm::launch::launch(&launch, &mut |process, keeper| {
            record.process = Some(process);
            record.console_keeper = keeper;
            let _ = record.save(&paths);
        })
        .await;
        self.record = record;
        // The callback could not report a failed save; a record without
        // its process would leave the VM unreachable for teardown.
        self.record.save(&self.paths)?;
        Ok(booting?.wait_ready(spec.boot_timeout).await?)
    }

    async fn boot_host_compat(&mut self, spec: &SandboxSpec<'_>) -> Result<Hello, CoreError> {
        let dir = self.paths.vm_dir(&self.record.id);
        let tree = spec.env.rootfs_tree();
        let agent = tree.join(pyro_env::agent::GUEST_PATH);
        let sock = dir.join("agent.sock");
        let ready_path = dir.join("ready.sock");
        let console = dir.join("console.log");
        for p in [&sock, &ready_path] {
            pyro_vmm::vsock::check_socket_path(p)?;
        }
        let ready = UnixListener::bind(&ready_path)
            .map_err(|e| CoreError::io(format!("listening on {}", ready_path.display()), e))?;
        self.record.agent_socket = Some(sock.clone());
        self.record.save(&self.paths)?;
        // The agent's log is capped on the host like a guest console.
        let (pipe, keeper) =
            pyro_vmm::console::spawn_keeper(&console, pyro_vmm::console::CONSOLE_CAP_BYTES)?;
        self.record.console_keeper = keeper;
        let (log, log2) = pyro_vmm::console::stdio_pair(pipe)?;
        let child = std::process::Command::new(&agent)
            .arg("host-compat")
            .arg("--lower")
            .arg(&tree)
            .arg("--upper")
            .arg(spec.upper.clone().unwrap_or_else(|| dir.join("upper")))
            .arg("--mountpoint")
            .arg(dir.join("root"))
            .arg("--socket")
            .arg(&sock)
            .arg("--ready")
            .arg(&ready_path)
            .arg("--idle-seconds")
            .arg(spec.idle_seconds.to_string())
            .arg("--hostname")
            .arg(&spec.hostname)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| CoreError::io(format!("starting {}", agent.display()), e))?;
        let process = ProcessId::of(child.id());
        drop(child);
        self.record.process = process;
        self.record.save(&self.paths)?;
        let fail = |reason: String| CoreError::HostCompat {
            reason,
            log_tail: pyro_vmm::console::console_tail(&console, 2000),
        };
        match await_greeting(
            &ready,
            process,
            spec.boot_timeout,
            Duration::from_millis(50),
        )
        .await
        {
            Ok(hello) => Ok(hello),
            Err(NoGreeting::Bad(e)) => Err(fail(format!("bad greeting: {e}"))),
            Err(NoGreeting::Silent) => Err(fail("the agent connected but sent no greeting".into())),
            Err(NoGreeting::Exited) => Err(fail("the sandbox process exited".into())),
            Err(NoGreeting::TimedOut) => Err(fail(format!(
                "no greeting within {} s",
                spec.boot_timeout.as_secs()
            ))),
        }
    }

    /// Opens a connection, checks the greeting and sends `request`.
    async fn open(&self, request: Request) -> Result<UnixStream, CoreError> {
        let mut stream = match self.mode() {
            ExecutionMode::GuestVsock => {
                let fc = self
                    .record
                    .firecracker
                    .as_ref()
                    .ok_or_else(|| CoreError::Transport("no vsock path".into()))?;
                pyro_vmm::vsock::connect_within(
                    &fc.vsock_uds,
                    AGENT_PORT,
                    agent_deadline(pyro_vmm::vsock::HANDSHAKE_TIMEOUT),
                    self.record.jail_uid,
                )
                .await?
            }
            ExecutionMode::HostCompat => {
                let sock = self
                    .record
                    .agent_socket
                    .as_ref()
                    .ok_or_else(|| CoreError::Transport("no socket".into()))?;
                UnixStream::connect(sock).await.map_err(|e| {
                    CoreError::Transport(format!("connecting to {}: {e}", sock.display()))
                })?
            }
        };
        let hello: Hello = tokio::time::timeout(
            agent_deadline(GREETING_TIMEOUT),
            read_message(&mut stream, "its greeting"),
        )
        .await
        .map_err(|_| CoreError::Transport("the agent accepted but did not greet".into()))?
        .map_err(|e| CoreError::Transport(e.to_string()))?;
        check_protocol(&hello, &self.record.environment)?;
        let envelope = Envelope {
            protocol_version: PROTOCOL_VERSION,
            request,
        };
        let send = write_message(&mut stream, &envelope);
        // An agent that never reads cannot hold a large request forever.
        tokio::time::timeout(agent_deadline(Duration::from_secs(60)), send)
            .await
            .map_err(|_| CoreError::Transport("the agent did not take the request".into()))?
            .map_err(|e| CoreError::Transport(e.to_string()))?;
        Ok(stream)
    }

    /// Sends a request whose answer is a single message.
    pub async fn call(&self, request: Request, timeout: Duration) -> Result<Response, CoreError> {
        let mut s = self.open(request).await?;
        let timeout = agent_deadline(timeout);
        let resp: Response = tokio::time::timeout(timeout, read_message(&mut s, "its answer"))
            .await
            .map_err(|_| CoreError::Transport(format!("no answer within {} s", timeout.as_secs())))?
            .map_err(|e| CoreError::Transport(e.to_string()))?;
        match resp {
            Response::Error(e) => Err(e.into()),
            other => Ok(other),
        }
    }

    /// Runs one command, streaming its output into `sink`. A dropped
    /// connection is reported, never retried: the command is not run twice.
    pub async fn exec(
        &self,
        req: ExecRequest,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecOutcome, CoreError> {
        self.exec_with_stdin(req, None, sink).await
    }

    /// [`Sandbox::exec`] with `stdin` streamed to the command (then closed).
    pub async fn exec_with_stdin(
        &self,
        mut req: ExecRequest,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecOutcome, CoreError> {
        req.stdin = stdin.is_some();
        let limit = agent_deadline(Duration::from_millis(req.timeout_ms) + EXEC_GRACE);
        // The agent promised at most this much per stream; more is a
        // misbehaving (or hostile) guest, and is never buffered or logged.
        let output_cap = req.output_limit_bytes;
        let (mut rd, mut wr) = self.open(Request::Exec(req)).await?.into_split();
        // The write half stays open until the command ends: closing it is how
        // the agent learns the host went away (and kills the command).
        let pump = AbortOnDrop(tokio::spawn(async move {
            if let Some(mut input) = stdin {
                let mut buf = vec![0u8; pyro_protocol::CHUNK_BYTES];
                loop {
                    match tokio::io::AsyncReadExt::read(&mut input, &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if pyro_protocol::write_frame(&mut wr, FrameKind::Stdin, &buf[..n])
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
                let _ = pyro_protocol::write_frame(&mut wr, FrameKind::StdinEnd, b"").await;
            }
            std::future::pending::<()>().await;
            drop(wr);
        }));
        let read = async {
            let (mut out_bytes, mut err_bytes) = (0u64, 0u64);
            let over = |n: u64| {
                CoreError::Transport(format!(
                    "the guest agent sent more than the {output_cap} bytes of output per stream \
                     it was asked for ({n} so far), so the command was abandoned: the guest is \
                     misbehaving; reset or delete it"
                ))
            };
            loop {
                let frame = read_frame(&mut rd)
                    .await
                    .map_err(|e| CoreError::Transport(e.to_string()))?
                    .ok_or_else(|| {
                        CoreError::Transport("the agent closed the connection mid-command".into())
                    })?;
                match frame.kind {
                    FrameKind::Stdout => {
                        out_bytes += frame.payload.len() as u64;
                        if out_bytes > output_cap {
                            return Err(over(out_bytes));
                        }
                        sink.stdout(&frame.payload);
                    }
                    FrameKind::Stderr => {
                        err_bytes += frame.payload.len() as u64;
                        if err_bytes > output_cap {
                            return Err(over(err_bytes));
                        }
                        sink.stderr(&frame.payload);
                    }
                    FrameKind::Message => {
                        return match frame
                            .message::<Response>()
                            .map_err(|e| CoreError::Transport(e.to_string()))?
                        {
                            Response::Exec(outcome) => Ok(outcome),
                            Response::Error(e) => Err(e.into()),
                            other => {
                                Err(CoreError::Transport(format!("unexpected answer {other:?}")))
                            }
                        };
                    }
                    other => {
                        return Err(CoreError::Transport(format!("unexpected {other:?} frame")));
                    }
                }
            }
        };
        let result = tokio::time::timeout(limit, read).await.map_err(|_| {
            CoreError::Transport(format!(
                "the agent did not finish within {} s",
                limit.as_secs()
            ))
        });
        drop(pump);
        result?
    }

    /// A handle on a running sandbox from its record (a workspace's VM). It
    /// is not torn down on drop.
    pub fn attach(paths: &Paths, id: &str) -> Result<Self, CoreError> {
        let record = VmRecord::load(paths, id).ok_or_else(|| {
            CoreError::Transport(format!("the sandbox {id} has no record; it is gone"))
        })?;
        Ok(Sandbox {
            paths: paths.clone(),
            record,
            hello: None,
            boot_ms: 0,
            torn_down: false,
            keep: true,
        })
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

    /// Asks the agent to flush and power off, and waits (up to `timeout`) for
    /// the process to end; then tears down what is left. The writable layer,
    /// when it lives outside the sandbox, is kept.
    pub async fn shutdown(mut self, timeout: Duration) -> Result<(), CoreError> {
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

    /// Streams the tar at `tar` into `dest` (all or nothing, in the agent).
    pub async fn put_archive(&self, dest: &str, tar: &Path) -> Result<(u64, u64), CoreError> {
        within(
            "extracting an archive",
            ARCHIVE_TIMEOUT,
            self.put_archive_inner(dest, tar),
        )
        .await
    }

    async fn put_archive_inner(&self, dest: &str, tar: &Path) -> Result<(u64, u64), CoreError> {
        let s = self
            .open(Request::ExtractArchive {
                dest: dest.to_owned(),
            })
            .await?;
        let (mut rd, mut wr) = s.into_split();
        let mut file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| CoreError::io(format!("opening {}", tar.display()), e))?;
        let mut buf = vec![0u8; pyro_protocol::CHUNK_BYTES];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf)
                .await
                .map_err(|e| CoreError::io(format!("reading {}", tar.display()), e))?;
            if n == 0 {
                break;
            }
            if let Err(e) = pyro_protocol::write_frame(&mut wr, FrameKind::Data, &buf[..n]).await {
                // The agent may have refused the archive early: its answer
                // says why.
                return match read_message::<_, Response>(&mut rd, "its answer").await {
                    Ok(Response::Error(err)) => Err(err.into()),
                    _ => Err(CoreError::Transport(e.to_string())),
                };
            }
        }
        pyro_protocol::write_frame(&mut wr, FrameKind::DataEnd, b"")
            .await
            .map_err(|e| CoreError::Transport(e.to_string()))?;
        match read_message::<_, Response>(&mut rd, "its answer")
            .await
            .map_err(|e| CoreError::Transport(e.to_string()))?
        {
            Response::Extracted { entries, bytes } => Ok((entries, bytes)),
            Response::Error(e) => Err(e.into()),
            other => Err(CoreError::Transport(format!("unexpected answer {other:?}"))),
        }
    }

    /// Sends `request` (one that answers with a tar, such as `CreateArchive`
    /// or `ReadFiles`) and streams the tar into the file `out`, refusing
    /// more than `max_bytes` of it. Returns the agent's closing answer.
    pub async fn get_archive(
        &self,
        request: Request,
        out: &Path,
        max_bytes: u64,
    ) -> Result<Response, CoreError> {
        within(
            "packing an archive",
            ARCHIVE_TIMEOUT,
            self.receive(request, out, max_bytes, "archive"),
        )
        .await
    }

    /// Sends `request` (one that answers with JSON lines, such as
    /// `Manifest` or `ListFiles`) and spools the lines into the file `out`,
    /// refusing more than `max_bytes`. Read them with [`crate::jsonl::Lines`].
    pub async fn get_lines(
        &self,
        request: Request,
        out: &Path,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<Response, CoreError> {
        within(
            "listing files",
            timeout,
            self.receive(request, out, max_bytes, "listing"),
        )
        .await
    }

    async fn receive(
        &self,
        request: Request,
        out: &Path,
        max_bytes: u64,
        what: &str,
    ) -> Result<Response, CoreError> {
        let mut s = self.open(request).await?;
        let mut received: u64 = 0;
        let mut file = tokio::fs::File::create(out)
            .await
            .map_err(|e| CoreError::io(format!("creating {}", out.display()), e))?;
        loop {
            let frame = read_frame(&mut s)
                .await
                .map_err(|e| CoreError::Transport(e.to_string()))?
                .ok_or_else(|| {
                    CoreError::Transport(format!("the agent closed the connection mid-{what}"))
                })?;
            match frame.kind {
                FrameKind::Data => {
                    received += frame.payload.len() as u64;
                    if received > max_bytes {
                        return Err(CoreError::TooLarge(format!(
                            "the {what} from the guest exceeds {max_bytes} bytes; ask for less at a time"
                        )));
                    }
                    tokio::io::AsyncWriteExt::write_all(&mut file, &frame.payload)
                        .await
                        .map_err(|e| CoreError::io(format!("writing {}", out.display()), e))?
                }
                FrameKind::DataEnd => {}
                FrameKind::Message => {
                    tokio::io::AsyncWriteExt::flush(&mut file)
                        .await
                        .map_err(|e| CoreError::io("flushing", e))?;
                    return match frame
                        .message::<Response>()
                        .map_err(|e| CoreError::Transport(e.to_string()))?
                    {
                        Response::Error(e) => Err(e.into()),
                        other => Ok(other),
                    };
                }
                other => return Err(CoreError::Transport(format!("unexpected {other:?} frame"))),
            }
        }
    }

    /// Reads up to `max_bytes` of a file.
    pub async fn read_file(
        &self,
        path: &str,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, u64, bool, u32), CoreError> {
        within(
            "reading a file",
            FILE_OP_TIMEOUT,
            self.read_file_inner(path, max_bytes),
        )
        .await
    }

    async fn read_file_inner(
        &self,
        path: &str,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, u64, bool, u32), CoreError> {
        let mut s = self
            .open(Request::ReadFile {
                path: path.to_owned(),
                max_bytes,
            })
            .await?;
        let mut data = Vec::new();
        loop {
            let frame = read_frame(&mut s)
                .await
                .map_err(|e| CoreError::Transport(e.to_string()))?
                .ok_or_else(|| {
                    CoreError::Transport("the agent closed the connection mid-read".into())
                })?;
            match frame.kind {
                FrameKind::Data => {
                    data.extend_from_slice(&frame.payload);
                    if data.len() as u64 > max_bytes {
                        return Err(CoreError::Transport(format!(
                            "the agent sent more than the {max_bytes} bytes asked for"
                        )));
                    }
                }
                FrameKind::DataEnd => {}
                FrameKind::Message => {
                    return match frame
                        .message::<Response>()
                        .map_err(|e| CoreError::Transport(e.to_string()))?
                    {
                        Response::FileRead {
                            size,
                            truncated,
                            mode,
                        } => Ok((data, size, truncated, mode)),
                        Response::Error(e) => Err(e.into()),
                        other => Err(CoreError::Transport(format!("unexpected answer {other:?}"))),
                    };
                }
                other => return Err(CoreError::Transport(format!("unexpected {other:?} frame"))),
            }
        }
    }

    /// Writes a file atomically; returns (size, mode, created).
    pub async fn write_file(
        &self,
        path: &str,
        mode: Option<u32>,
        data: &[u8],
    ) -> Result<(u64, u32, bool), CoreError> {
        within(
            "writing a file",
            FILE_OP_TIMEOUT,
            self.write_file_inner(path, mode, data),
        )
        .await
    }

    async fn write_file_inner(
        &self,
        path: &str,
        mode: Option<u32>,
        data: &[u8],
    ) -> Result<(u64, u32, bool), CoreError> {
        let mut s = self
            .open(Request::WriteFile {
                path: path.to_owned(),
                mode,
            })
            .await?;
        let t = |e: pyro_protocol::FrameError| CoreError::Transport(e.to_string());
        for chunk in data.chunks(pyro_protocol::CHUNK_BYTES) {
            pyro_protocol::write_frame(&mut s, FrameKind::Data, chunk)
                .await
                .map_err(t)?;
        }
        pyro_protocol::write_frame(&mut s, FrameKind::DataEnd, b"")
            .await
            .map_err(t)?;
        match read_message::<_, Response>(&mut s, "its answer")
            .await
            .map_err(t)?
        {
            Response::FileWritten {
                size,
                mode,
                created,
            } => Ok((size, mode, created)),
            Response::Error(e) => Err(e.into()),
            other => Err(CoreError::Transport(format!("unexpected answer {other:?}"))),
        }
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

fn check_protocol(hello: &Hello, env: &str) -> Result<(), CoreError> {
    if hello.protocol_version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(CoreError::Transport(format!(
            "the agent in {env} speaks protocol {} but this pyro speaks {PROTOCOL_VERSION}; run \
             ⟨op:env pull {env}⟩ to rebuild it with the matching agent",
            hello.protocol_version
        )))
    }
}

/// Removes everything a record points at: the process, its jail, sockets,
/// cgroups and the sandbox directory.
pub fn teardown(paths: &Paths, record: &VmRecord) -> Result<(), String> {
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
    remove_dir(&paths.vm_dir(&record.id), &mut problems);
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

/// Lowest jail uid not used by another sandbox (call with the vms lock).
fn allocate_uid(paths: &Paths) -> Result<u32, CoreError> {
    // Read leniently: a record of another layout version is left running by
    // the sweep, so its uid is taken too.
    let used: HashSet<u32> = VmRecord::list_ids(paths)
        .iter()
        .filter_map(|id| std::fs::read(VmRecord::file(paths, id)).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|v| v.get("jail_uid")?.as_u64())
        .filter_map(|u| u32::try_from(u).ok())
        .collect();
    (JAIL_UID_BASE..JAIL_UID_BASE + 65_536)
        .find(|u| !used.contains(u))
        .ok_or_else(|| CoreError::invalid("no free jail uid: too many sandboxes"))
}

/// The cgroup version and the jailer's `--cgroup` settings for a VM.
fn cgroup_settings(root: &Path, mem_mib: u32) -> (CgroupVersion, Vec<String>) {
    // Guest memory plus room for Firecracker itself and page cache.
    let mem_bytes = (u64::from(mem_mib) + 256) << 20;
    let Some((version, ctrls)) = cgroup::detect(root) else {
        return (CgroupVersion::V1, Vec::new());
    };
    let mut s = Vec::new();
    if ctrls.iter().any(|c| c == "memory") {
        s.push(format!("{}={mem_bytes}", version.memory_limit_file()));
    }
    if ctrls.iter().any(|c| c == "pids") {
        s.push("pids.max=256".to_owned());
    }
    (version, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyro_protocol::{AgentMode, Hello};

    /// A sandbox record whose agent socket is served by the test (a hostile
    /// fake agent).
    fn fake_sandbox(dir: &Path) -> (Sandbox, tokio::net::UnixListener) {
        let paths = Paths::new(dir, pyro_env::Cache::new(dir.join("cache")));
        let id = "fakeagent0001".to_owned();
        std::fs::create_dir_all(paths.vm_dir(&id)).unwrap();
        let sock = paths.vm_dir(&id).join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let rec = VmRecord {
            layout_version: VM_LAYOUT_VERSION,
            id: id.clone(),
            backend: BackendKind::HostCompat,
            environment: "debian:12".into(),
            owner: Owner::this_process(),
            created_at: now_unix(),
            process: None,
            firecracker: None,
            jail_uid: None,
            console_keeper: None,
            cgroup_parent: None,
            agent_socket: Some(sock),
        };
        rec.save(&paths).unwrap();
        (Sandbox::attach(&paths, &id).unwrap(), listener)
    }

    async fn greet(s: &mut tokio::net::UnixStream) {
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: "fake".into(),
            mode: AgentMode::HostCompat,
            capabilities: vec![],
            uptime_ms: 0,
        };
        write_message(s, &hello).await.unwrap();
        let _: Envelope = read_message(s, "the request").await.unwrap();
    }

    #[tokio::test]
    async fn endless_output_from_the_agent_is_cut_off_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (sb, listener) = fake_sandbox(dir.path());
        let agent = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            greet(&mut s).await;
            let chunk = vec![b'x'; 64 << 10];
            // Far more than asked for, as long as the host reads.
            while pyro_protocol::write_frame(&mut s, FrameKind::Stdout, &chunk)
                .await
                .is_ok()
            {}
        });
        let req = ExecRequest {
            command: pyro_protocol::Command::Shell {
                script: "true".into(),
            },
            cwd: None,
            env: Default::default(),
            timeout_ms: 5_000,
            output_limit_bytes: 1 << 20,
            stdin: false,
        };
        let mut cap = Capture::default();
        let err = tokio::time::timeout(Duration::from_secs(10), sb.exec(req, &mut cap))
            .await
            .expect("the host kept reading endless output")
            .unwrap_err();
        assert!(
            err.to_string().contains("more than the 1048576 bytes"),
            "{err}"
        );
        assert!(
            cap.stdout.len() <= 1 << 20,
            "{} bytes kept",
            cap.stdout.len()
        );
        drop(sb);
        agent.abort();
    }

    #[test]
    fn hostnames_are_labels_the_agent_accepts() {
        assert_eq!(hostname_for(None), "pyro");
        let id = crate::random_hex(8);
        assert_eq!(hostname_for(Some(&id)), format!("pyro-{id}"));
        for h in [hostname_for(None), hostname_for(Some(&id))] {
            assert!(pyro_protocol::valid_hostname(&h), "{h}");
        }
    }
}

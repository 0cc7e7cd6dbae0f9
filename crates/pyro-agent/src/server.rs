//! The protocol server: accepts connections, greets, and serves one request
//! per connection, each in its own task so a long command never blocks a
//! status call.

use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyro_protocol::{
    AgentError, AgentMode, Envelope, ErrorKind, Hello, PROTOCOL_VERSION, Request, Response,
    read_message, write_message,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{ServerConfig, Transport, log};

/// How long a client may take to send its request after the greeting.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// State shared by all connections.
#[derive(Debug)]
pub struct Shared {
    mode: AgentMode,
    started: std::time::Instant,
    /// Idle timeout in seconds; 0 means none.
    idle_seconds: Mutex<u64>,
    /// When the guest powers itself off.
    deadline: watch::Sender<Option<Instant>>,
    /// Content hashes for manifests.
    hashes: Arc<crate::files::HashCache>,
    /// Requests in flight: the idle deadline never fires while one runs.
    active: std::sync::atomic::AtomicUsize,
}

/// Counts a request as in flight until dropped, then restarts the idle
/// clock.
struct InFlight(Arc<Shared>, bool);

impl InFlight {
    fn new(shared: Arc<Shared>) -> Self {
        shared
            .active
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(shared, false)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        // A passive request leaves the idle clock as it was.
        if !self.1 {
            self.0.touch();
        }
    }
}

impl Shared {
    fn uptime_ms(&self) -> u64 {
        // In a guest the kernel's boot clock is the honest uptime (read
        // through the vDSO: no system call, which an emulated guest kernel
        // would make slow on every connection).
        if self.mode == AgentMode::Guest
            && let Ok(t) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        {
            return u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
                + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1_000_000;
        }
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn hello(&self) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            mode: self.mode,
            capabilities: [
                "exec",
                "exec_stdin",
                "idle_deadline",
                "archives",
                "files",
                "manifest",
                "patch",
                "jobs",
                "shells",
                "services",
                "refresh",
            ]
            .map(String::from)
            .to_vec(),
            uptime_ms: self.uptime_ms(),
        }
    }

    /// Every request counts as activity: push the idle deadline out.
    fn touch(&self) {
        let idle = *self.idle_seconds.lock().unwrap_or_else(|e| e.into_inner());
        // A deadline too far to represent is no deadline.
        let next = (idle > 0)
            .then(|| Instant::now().checked_add(Duration::from_secs(idle)))
            .flatten();
        self.deadline.send_replace(next);
    }
}

/// Runs the server until the process is told to power off. Returns the exit
/// code for the server process.
pub fn run(config: ServerConfig) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error(&format!("cannot start the async runtime: {e}"));
            return 1;
        }
    };
    match rt.block_on(serve(config)) {
        Ok(()) => 0,
        Err(e) => {
            log::error(&e);
            1
        }
    }
}

async fn serve(config: ServerConfig) -> Result<(), String> {
    let (deadline, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        mode: config.mode,
        started: std::time::Instant::now(),
        idle_seconds: Mutex::new(config.idle_seconds),
        deadline,
        hashes: Arc::default(),
        active: Default::default(),
    });
    crate::ops::ensure_workspace_root();
    // Commands' cgroups made ahead, so the first command waits for none.
    crate::limits::prepare();
    shared.touch();
    tokio::spawn(deadline_watcher(shared.clone()));

    match config.transport {
        Transport::Vsock => {
            let addr =
                tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, pyro_protocol::AGENT_PORT);
            let listener = tokio_vsock::VsockListener::bind(addr)
                .map_err(|e| format!("cannot listen on vsock port {}: {e}", addr.port()))?;
            announce_vsock(&shared).await;
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => spawn_connection(stream, shared.clone()),
                    Err(e) => accept_failed(e).await,
                }
            }
        }
        Transport::Unix { listener, ready } => {
            let listener = unix_listener(listener)?;
            announce_unix(ready, &shared).await;
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => spawn_connection(stream, shared.clone()),
                    Err(e) => accept_failed(e).await,
                }
            }
        }
    }
}

async fn accept_failed(e: std::io::Error) {
    log::error(&format!("accept: {e}"));
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn unix_listener(fd: RawFd) -> Result<tokio::net::UnixListener, String> {
    // SAFETY: `fd` is the listening socket the launcher bound and handed down
    // through fork; this process owns it from here on and dups it so a
    // restarted server can take it again.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(format!("dup listener: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `dup` is a fresh descriptor owned by nothing else.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(dup) };
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    tokio::net::UnixListener::from_std(std_listener).map_err(|e| format!("listener: {e}"))
}

/// Tells the host we serve: one greeting on the readiness channel.
async fn announce_vsock(shared: &Shared) {
    let addr = tokio_vsock::VsockAddr::new(libc::VMADDR_CID_HOST, pyro_protocol::READY_PORT);
    match tokio_vsock::VsockStream::connect(addr).await {
        Ok(mut s) => {
            if let Err(e) = write_message(&mut s, &shared.hello()).await {
                log::error(&format!("readiness push: {e}"));
            }
        }
        // The host may not listen (a restored snapshot, a restarted server);
        // it then polls instead.
        Err(e) => log::info(&format!("no readiness listener on the host ({e})")),
    }
    log::info("ready");
}

async fn announce_unix(fd: RawFd, shared: &Shared) {
    // SAFETY: `fd` is this process's copy (inherited through fork) of the
    // connected readiness socket the launcher opened; PID 1 keeps its own
    // copy, so a restarted server greets again on the same connection, which
    // the host ignores once it has its first greeting.
    let std_stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    if std_stream.set_nonblocking(true).is_err() {
        return;
    }
    if let Ok(mut s) = tokio::net::UnixStream::from_std(std_stream)
        && let Err(e) = write_message(&mut s, &shared.hello()).await
    {
        log::error(&format!("readiness push: {e}"));
    }
}

fn spawn_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = handle(stream, shared).await {
            log::info(&format!("connection ended: {e}"));
        }
    });
}

async fn handle<S>(mut stream: S, shared: Arc<Shared>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // In flight from the moment it is accepted: the idle deadline cannot
    // power the guest off between accepting a request and reading it.
    let mut in_flight = InFlight::new(shared.clone());
    write_message(&mut stream, &shared.hello())
        .await
        .map_err(|e| e.to_string())?;
    let envelope: Envelope =
        match tokio::time::timeout(REQUEST_TIMEOUT, read_message(&mut stream, "its request")).await
        {
            Ok(Ok(env)) => env,
            Ok(Err(e)) => {
                let err = AgentError::new(ErrorKind::BadRequest, e.to_string());
                let _ = write_message(&mut stream, &Response::Error(err)).await;
                return Err(e.to_string());
            }
            Err(_) => return Err("no request within the time limit".into()),
        };
    if envelope.protocol_version != PROTOCOL_VERSION {
        let err = AgentError::new(
            ErrorKind::ProtocolVersion,
            format!(
                "this agent speaks protocol {PROTOCOL_VERSION}, the host speaks {}; \
                 re-pull the environment so its agent matches pyro",
                envelope.protocol_version
            ),
        );
        return write_message(&mut stream, &Response::Error(err))
            .await
            .map_err(|e| e.to_string());
    }
    // Asking which services run is not use of the guest: `status` and
    // `list` ask it of every VM they show.
    in_flight.1 = matches!(envelope.request, Request::ServiceList | Request::Usage);
    if !in_flight.1 {
        shared.touch();
    }
    let response = match envelope.request {
        Request::Ping => Response::Pong {
            uptime_ms: shared.uptime_ms(),
        },
        Request::Exec(req) => return crate::exec::run(stream, req).await,
        Request::JobStart { job_id, exec } => {
            crate::jobs::start(&job_id, &exec).unwrap_or_else(Response::Error)
        }
        Request::JobRead {
            job_id,
            stdout_from,
            stderr_from,
            wait_ms,
            max_bytes,
        } => {
            return crate::jobs::read(
                &mut stream,
                &job_id,
                (stdout_from, stderr_from),
                wait_ms,
                max_bytes,
            )
            .await;
        }
        Request::JobCancel { job_id } => {
            crate::jobs::cancel(&job_id).unwrap_or_else(Response::Error)
        }
        Request::ShellOpen {
            shell_id,
            cwd,
            cols,
            rows,
            env,
            keep_alive,
        } => crate::shells::open(&shell_id, &cwd, (cols, rows), &env, keep_alive)
            .unwrap_or_else(Response::Error),
        Request::ShellRead {
            shell_id,
            cursor,
            max_bytes,
            wait_idle_ms,
        } => {
            return crate::shells::read(&mut stream, &shell_id, cursor, max_bytes, wait_idle_ms)
                .await;
        }
        Request::ShellWrite { shell_id, input } => crate::shells::write(&shell_id, &input)
            .await
            .unwrap_or_else(Response::Error),
        Request::ShellSignal { shell_id, signal } => {
            crate::shells::signal(&shell_id, &signal).unwrap_or_else(Response::Error)
        }
        Request::ShellClose { shell_id } => crate::shells::close(&shell_id)
            .await
            .unwrap_or_else(Response::Error),
        Request::ShellList => crate::shells::list(),
        Request::ShellResize {
            shell_id,
            cols,
            rows,
        } => crate::shells::resize(&shell_id, cols, rows)
            .await
            .unwrap_or_else(Response::Error),
        Request::ServiceStart(spec) => crate::services::start(spec).unwrap_or_else(Response::Error),
        Request::ServiceWait { name, wait_ms } => crate::services::wait(&name, wait_ms)
            .await
            .unwrap_or_else(Response::Error),
        Request::ServiceStop { name, grace_ms } => crate::services::stop(&name, grace_ms)
            .await
            .unwrap_or_else(Response::Error),
        Request::ServiceList => crate::services::list(),
        Request::Usage => Response::Usage(crate::limits::usage()),
        Request::ServiceLogs {
            name,
            from,
            tail_lines,
            max_bytes,
        } => {
            return crate::services::logs(&mut stream, &name, from, tail_lines, max_bytes).await;
        }
        Request::SetDeadline { idle_seconds } => {
            *shared
                .idle_seconds
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = idle_seconds.unwrap_or(0);
            shared.touch();
            Response::Done
        }
        Request::Refresh {
            entropy,
            unix_time_ns,
            hostname,
            idle_seconds,
        } => {
            if shared.mode != AgentMode::Guest {
                Response::Error(pyro_protocol::AgentError::new(
                    pyro_protocol::ErrorKind::Unsupported,
                    "only a guest restored from a snapshot is refreshed",
                ))
            } else {
                crate::refresh::apply(&entropy, unix_time_ns, &hostname, || {
                    *shared
                        .idle_seconds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = idle_seconds;
                    shared.touch();
                })
            }
        }
        Request::Sync => {
            tokio::task::spawn_blocking(nix::unistd::sync)
                .await
                .map_err(|e| e.to_string())?;
            Response::Done
        }
        Request::ExtractArchive { dest } => return crate::ops::extract(stream, dest).await,
        Request::CreateArchive { path } => return crate::ops::create_archive(stream, path).await,
        Request::ReadFiles { root, paths } => {
            return crate::ops::read_files(stream, root, paths).await;
        }
        Request::ReadFile { path, max_bytes } => {
            return crate::ops::read_file(stream, path, max_bytes).await;
        }
        Request::WriteFile { path, mode } => {
            return crate::ops::write_file(stream, path, mode).await;
        }
        Request::ListFiles { path, recursive } => {
            return crate::ops::list(stream, path, recursive).await;
        }
        Request::Manifest { root } => {
            return crate::ops::manifest(stream, root, shared.hashes.clone()).await;
        }
        Request::ApplyPatch { root, patch } => crate::ops::apply_patch(root, patch)
            .await
            .unwrap_or_else(Response::Error),
        Request::Shutdown => {
            let _ = write_message(&mut stream, &Response::Done).await;
            drop(stream);
            log::info("shutdown requested; powering off");
            crate::init::power_off();
        }
    };
    write_message(&mut stream, &response)
        .await
        .map_err(|e| e.to_string())
}

/// Powers the guest off when the idle deadline passes.
async fn deadline_watcher(shared: Arc<Shared>) {
    let mut rx = shared.deadline.subscribe();
    loop {
        let current = *rx.borrow_and_update();
        match current {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {
                        if shared.active.load(std::sync::atomic::Ordering::SeqCst) > 0
                            || crate::services::KEEP_ALIVE.load(std::sync::atomic::Ordering::SeqCst) > 0
                        {
                            // A request is still running, or a service or
                            // shell started with keep-alive: not idle.
                            shared.touch();
                            continue;
                        }
                        log::info("idle deadline passed; powering off (the disk is kept)");
                        crate::init::power_off();
                    }
                    changed = rx.changed() => if changed.is_err() { return },
                }
            }
            None => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

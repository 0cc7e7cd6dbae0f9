//! A template guest's first stage (kernel parameter `pyro.template=1`).
//!
//! Init warms the page cache with the commands most sessions start with,
//! then waits on [`ROOT_PORT`] *before* it mounts the writable disk. The
//! host snapshots the guest there. Every guest restored from that snapshot
//! resumes in this wait with its own disk attached (a new one, a stopped
//! workspace's, a snapshot's copy, a fork's), so the snapshot's memory never
//! holds anything of a disk: one template serves every boot of its shape.
//!
//! The exchange on [`ROOT_PORT`], one connection at a time: init sends
//! [`Response::Pong`] as soon as it accepts (so the host can tell a live
//! connection from one the resume's vsock reset dropped), the host sends a
//! [`Request::Refresh`] envelope, init applies its entropy and clock and
//! returns it as an [`Identity`]. The answer goes back once the root is
//! assembled ([`answer`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, VsockAddr, accept, bind, listen, setsockopt,
    socket, sockopt,
};
use pyro_protocol::{
    AgentError, Envelope, ErrorKind, FrameKind, PROTOCOL_VERSION, ROOT_PORT, Request, Response,
    decode_frame, encode_frame,
};

use crate::log;

/// What the host hands a restored template guest.
#[derive(Debug)]
pub struct Identity {
    /// The guest's hostname.
    pub hostname: String,
    /// Idle deadline in seconds (0: none).
    pub idle_seconds: u64,
    /// How far the clock moved, milliseconds.
    pub clock_step_ms: i64,
    /// When the handoff arrived.
    pub started: Instant,
}

/// How long the whole warm-up may take.
const WARM_UP_LIMIT: Duration = Duration::from_secs(pyro_protocol::TEMPLATE_WARM_UP_SECONDS);

/// How long a connection may stay silent before init drops it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest handoff frame accepted (a refresh is a few hundred bytes).
const MAX_HANDOFF_BYTES: usize = 64 << 10;

/// Runs [`pyro_protocol::WARM_UP_SCRIPTS`] in a throwaway overlay of the
/// base image, so the base image's pages are cached while no disk of any
/// guest is mounted. Everything runs in private mount and PID namespaces:
/// when the warm-up ends (or is killed at [`WARM_UP_LIMIT`]) its namespace's
/// init goes and every process it started goes with it, so none is frozen
/// into the snapshot. Failures only cost speed.
pub fn warm_up(staging: &str) {
    // SAFETY: PID 1 is single-threaded here.
    unsafe { warm_up_with(staging, pyro_protocol::WARM_UP_SCRIPTS, WARM_UP_LIMIT) };
}

/// [`warm_up`] with its scripts and time limit; whether it ran to its end
/// (its scripts' own failures are only logged).
///
/// # Safety
/// The caller must be single-threaded, or else sure that no other thread
/// holds a lock the children take: they allocate, read the environment
/// and, in a coverage build, open a file; their log lines take Rust's
/// stderr lock. (Its test forks from a test process that runs only that
/// test, as nextest runs each: its other threads hold none of these, and
/// glibc's allocator survives a fork.)
unsafe fn warm_up_with(staging: &str, scripts: &[&str], limit: Duration) -> bool {
    // SAFETY: as the caller promises.
    match unsafe { fork_running(&|| warm_keeper(staging, scripts, limit)) } {
        // The keeper kills its namespace at the limit; it ends soon after.
        Ok(child) => matches!(
            nix::sys::wait::waitpid(child, None),
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0))
        ),
        Err(e) => {
            log::error(&format!("template warm-up: fork: {e}"));
            false
        }
    }
}

/// Forks a child that runs `work`, logs its error, and ends with `_exit`
/// (no exit handlers, no flush of the parent's buffers; a coverage build
/// writes its counters first). A panic in `work` ends the child too (status
/// 2): it never returns into a copy of its caller.
///
/// # Safety
/// As [`warm_up_with`].
unsafe fn fork_running(work: &dyn Fn() -> Result<(), String>) -> nix::Result<nix::unistd::Pid> {
    // SAFETY: as the caller promises.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            #[cfg(pyro_coverage)]
            crate::coverage::own_file_for_fork();
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    log::error(&format!("template warm-up: {e}"));
                    1
                }
                Err(_) => 2,
            };
            #[cfg(pyro_coverage)]
            crate::coverage::write_now();
            // SAFETY: ends this forked child without running its parent's
            // exit handlers or flushing its copies of the parent's buffers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(child),
    }
}

/// In new mount and PID namespaces: starts the namespace's init (which
/// runs the warm-up) and waits for it, killing it at `limit`.
fn warm_keeper(staging: &str, scripts: &[&str], limit: Duration) -> Result<(), String> {
    use nix::sched::{CloneFlags, unshare};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("unshare: {e}"))?;
    // SAFETY: this process is single-threaded (a fork of PID 1).
    let child = unsafe { fork_running(&|| warm_child(staging, scripts)) }
        .map_err(|e| format!("fork: {e}"))?;
    let until = Instant::now() + limit;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(WaitStatus::StillAlive) => {
                // The namespace's init: the kernel kills the rest with it.
                let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(format!(
                    "still running after {} s; stopped",
                    limit.as_secs()
                ));
            }
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            other => return Err(format!("its init ended with {other:?}")),
        }
    }
}

/// The warm-up namespace's init: the overlay, then the scripts.
fn warm_child(staging: &str, scripts: &[&str]) -> Result<(), String> {
    use crate::init::mount_fs;
    use nix::mount::MsFlags;
    crate::init::make_mounts_private()?;
    let upper = format!("{staging}/warm");
    let root = format!("{staging}/warm-root");
    for d in [&upper, &root] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {d}: {e}"))?;
    }
    mount_fs("tmpfs", &upper, "tmpfs", MsFlags::empty(), None)?;
    for d in ["data", "work"] {
        std::fs::create_dir(format!("{upper}/{d}")).map_err(|e| format!("creating {d}: {e}"))?;
    }
    let opts = format!("lowerdir=/,upperdir={upper}/data,workdir={upper}/work");
    mount_fs("overlay", &root, "overlay", MsFlags::empty(), Some(&opts))?;
    let under = |d: &str| format!("{root}/{d}");
    mount_fs("proc", &under("proc"), "proc", MsFlags::empty(), None)?;
    mount_fs("/dev", &under("dev"), "", MsFlags::MS_BIND, None)?;
    mount_fs("tmpfs", &under("tmp"), "tmpfs", MsFlags::empty(), None)?;
    nix::unistd::chroot(root.as_str()).map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir: {e}"))?;
    for script in scripts {
        let status = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env_clear()
            .envs(pyro_protocol::base_command_env())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("running `{script}`: {e}"))?;
        if !status.success() {
            log::error(&format!("template warm-up: `{script}` ended with {status}"));
        }
    }
    Ok(())
}

/// Listens on [`ROOT_PORT`] until the host hands this guest its identity;
/// applies its entropy and clock and returns it with the connection to
/// [`answer`] on. Bad requests are answered and the wait goes on.
pub fn await_identity() -> Result<(Identity, OwnedFd), String> {
    let listener = socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("vsock socket: {e}"))?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&listener),
        &VsockAddr::new(libc::VMADDR_CID_ANY, ROOT_PORT),
    )
    .map_err(|e| format!("binding vsock port {ROOT_PORT}: {e}"))?;
    listen(&listener, Backlog::new(4).map_err(|e| e.to_string())?)
        .map_err(|e| format!("listening on vsock port {ROOT_PORT}: {e}"))?;
    log::info("template: waiting for the host");
    loop {
        let fd = match accept(std::os::fd::AsRawFd::as_raw_fd(&listener)) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::ECONNABORTED) => continue,
            Err(e) => return Err(format!("accepting on vsock port {ROOT_PORT}: {e}")),
        };
        // SAFETY: `accept` returned a new descriptor that nothing else owns.
        let conn: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        let limit = nix::sys::time::TimeVal::new(IO_TIMEOUT.as_secs().cast_signed(), 0);
        let _ = setsockopt(&conn, sockopt::ReceiveTimeout, &limit);
        let _ = setsockopt(&conn, sockopt::SendTimeout, &limit);
        if send(
            &conn,
            &Response::Pong {
                uptime_ms: uptime_ms(),
            },
        )
        .is_err()
        {
            continue;
        }
        // A probe (the template build's) or a connection the resume's reset
        // dropped ends here; the wait goes on.
        let Ok(envelope) = receive(&conn) else {
            continue;
        };
        let started = Instant::now();
        match identity(envelope, started) {
            Ok(id) => return Ok((id, conn)),
            Err(e) => {
                let _ = send(
                    &conn,
                    &Response::Error(AgentError::new(ErrorKind::BadRequest, e)),
                );
            }
        }
    }
}

/// Milliseconds since the guest booted (its clock stops while paused).
fn uptime_ms() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
                + u64::try_from(t.tv_nsec() / 1_000_000).unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Checks a handoff and applies its entropy and clock.
fn identity(envelope: Envelope, started: Instant) -> Result<Identity, String> {
    if envelope.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "the host speaks protocol {} but this agent speaks {PROTOCOL_VERSION}",
            envelope.protocol_version
        ));
    }
    let Request::Refresh {
        entropy,
        unix_time_ns,
        hostname,
        idle_seconds,
    } = envelope.request
    else {
        return Err("a guest waiting for its root takes only a refresh".into());
    };
    crate::refresh::check(&entropy, &hostname)?;
    // Siblings would share random numbers: refused, so the host boots cold.
    crate::refresh::reseed(&entropy)
        .map_err(|e| format!("reseeding the kernel's random generator: {e}"))?;
    let clock_step_ms =
        crate::refresh::step_clock(unix_time_ns).map_err(|e| format!("setting the clock: {e}"))?;
    Ok(Identity {
        hostname,
        idle_seconds,
        clock_step_ms,
        started,
    })
}

/// Tells the host how the handoff went (best effort: the greeting that
/// follows is what the host waits for).
pub fn answer(conn: OwnedFd, id: &Identity, assembled: Result<(), &str>) {
    let response = match assembled {
        Ok(()) => Response::Refreshed {
            reseeded: true,
            clock_step_ms: id.clock_step_ms,
            refresh_us: u64::try_from(id.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        },
        Err(e) => Response::Error(AgentError::new(
            ErrorKind::Io,
            format!("assembling the root filesystem: {e}"),
        )),
    };
    if let Err(e) = send(&conn, &response) {
        log::info(&format!("template: the host did not take the answer ({e})"));
    }
}

fn send(conn: &OwnedFd, response: &Response) -> std::io::Result<()> {
    let payload = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::from(conn.as_fd().try_clone_to_owned()?);
    f.write_all(&encode_frame(FrameKind::Message, &payload))
}

fn receive(conn: &OwnedFd) -> Result<Envelope, String> {
    let mut f = std::fs::File::from(
        conn.as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?,
    );
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((frame, _)) = decode_frame(&buf).map_err(|e| e.to_string())? {
            return frame.message().map_err(|e| e.to_string());
        }
        if buf.len() > MAX_HANDOFF_BYTES {
            return Err(format!("a handoff over {MAX_HANDOFF_BYTES} bytes"));
        }
        let n = f.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests;

//! The guest console on the host, capped: Firecracker's stdout and stderr go
//! into a pipe drained by a small keeper process, which writes
//! `console.log` and rotates it to `console.log.1` at half the cap, so the
//! two files never hold more than [`CONSOLE_CAP_BYTES`] together and always
//! hold the newest output (at least half the cap of it, once there is that
//! much), whatever the guest writes to its serial port.
//!
//! The keeper is forked from the calling process and runs only raw system
//! calls (it may be forked from a multi-threaded process), detached into
//! its own session so it outlives a short-lived `pyro` as Firecracker does;
//! it exits when the last writer (Firecracker) closes the pipe. It keeps
//! draining when the disk is full, so a full disk never stalls the guest.
//!
//! A forked copy would keep the caller's whole heap alive (copy-on-write)
//! for the life of the VM, which adds up under a long-running
//! `pyro mcp serve`. So when the program has registered itself
//! ([`use_keeper_program`], with [`run_keeper_if_asked`] first thing in
//! `main`), the forked keeper at once executes that program in keeper mode
//! and holds only its own few pages. Without it (library tests), or if the
//! exec fails, the forked copy runs the same loop itself.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::VmmError;

/// Most bytes of console output kept on the host for one VM.
pub const CONSOLE_CAP_BYTES: u64 = 16 << 20;

/// The first argument that starts a program in keeper mode.
pub const KEEPER_ARG: &str = "__pyro-console-keeper";

static KEEPER_PROGRAM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes keepers execute `program` (which calls [`run_keeper_if_asked`]
/// first thing in `main`) instead of running in a forked copy of the caller.
pub fn use_keeper_program(program: impl Into<PathBuf>) {
    let _ = KEEPER_PROGRAM.set(program.into());
}

/// If this process was started as a console keeper (`<program> KEEPER_ARG
/// <log> <segment bytes> <current size>`, the pipe on stdin and the log on
/// stdout), runs the keeper and never returns; otherwise returns at once.
/// Call it first thing in `main`, before any thread starts.
pub fn run_keeper_if_asked() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_none_or(|a| a.as_bytes() != KEEPER_ARG.as_bytes())
    {
        return;
    }
    let num = |i: usize| -> Option<u64> { args.get(i)?.to_str()?.parse().ok() };
    let (Some(log), Some(segment), Some(size)) = (args.get(2), num(3), num(4)) else {
        // SAFETY: ends this process; nothing to clean up.
        unsafe { libc::_exit(2) }
    };
    let (Ok(cur), Ok(old)) = (
        CString::new(log.as_bytes()),
        CString::new(rotated(Path::new(log)).as_os_str().as_bytes()),
    ) else {
        // SAFETY: as above.
        unsafe { libc::_exit(2) }
    };
    let mut buf = vec![0u8; 64 << 10];
    // Only where its caller said where counters go (else the runtime would
    // write `default.profraw` into whatever directory it runs in).
    WRITE_COUNTERS.store(
        cfg!(pyro_coverage) && std::env::var_os("LLVM_PROFILE_FILE").is_some(),
        std::sync::atomic::Ordering::Relaxed,
    );
    // SAFETY: this process was started for this alone; its descriptors 0
    // and 1 are the pipe and the log, 2 the pipe that awaits its pid.
    unsafe {
        ready();
        drain(&cur, &old, size, segment.max(1), &mut buf)
    }
}

/// The older half of a console log.
pub fn rotated(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// Starts a keeper writing to `log` (capped at `cap` bytes over `log` and
/// its rotated half). Returns the pipe's write end for the VM's stdout and
/// stderr, and the keeper (record it: teardown waits for it, so nothing pyro
/// started outlives a VM).
pub fn spawn_keeper(
    log: &Path,
    cap: u64,
) -> Result<(OwnedFd, Option<crate::process::ProcessId>), VmmError> {
    let io = |what: &str, e: std::io::Error| VmmError::io(format!("{what} {}", log.display()), e);
    let cur = CString::new(log.as_os_str().as_bytes())
        .map_err(|e| io("naming", std::io::Error::other(e)))?;
    let old = CString::new(rotated(log).as_os_str().as_bytes())
        .map_err(|e| io("naming", std::io::Error::other(e)))?;
    let segment = (cap / 2).max(1);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .map_err(|e| io("opening", e))?;
    let size = file.metadata().map_err(|e| io("reading", e))?.len();
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io("making a pipe for", e.into()))?;
    // The keeper tells its pid through this pipe once it is draining.
    let (pid_rd, pid_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io("making a pipe for", e.into()))?;
    let mut buf = vec![0u8; 64 << 10];
    // The keeper program's command line, made before the fork.
    let exec = KEEPER_PROGRAM.get().and_then(|program| {
        let argv = [
            CString::new(program.as_os_str().as_bytes()).ok()?,
            CString::new(KEEPER_ARG).ok()?,
            cur.clone(),
            CString::new(segment.to_string()).ok()?,
            CString::new(size.to_string()).ok()?,
        ];
        Some(argv)
    });
    let exec_ptrs: Option<Vec<*const libc::c_char>> = exec.as_ref().map(|argv| {
        argv.iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    });
    // The keeper program runs with no environment; an instrumented build's
    // keeper gets where its coverage counters go.
    #[cfg(pyro_coverage)]
    let profile_env = std::env::var_os("LLVM_PROFILE_FILE").and_then(|v| {
        let mut kv = b"LLVM_PROFILE_FILE=".to_vec();
        kv.extend_from_slice(v.as_bytes());
        CString::new(kv).ok()
    });
    #[cfg(pyro_coverage)]
    let no_env: [*const libc::c_char; 2] = [
        profile_env
            .as_ref()
            .map_or(std::ptr::null(), |c| c.as_ptr()),
        std::ptr::null(),
    ];
    #[cfg(not(pyro_coverage))]
    let no_env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the child runs only async-signal-safe system calls on memory
    // allocated before the fork (`buf`, `cur`, `old`, the exec arguments)
    // and ends in `execve` or `_exit`, so forking from a multi-threaded
    // process is sound.
    match unsafe { libc::fork() } {
        -1 => Err(io(
            "starting the console keeper for",
            std::io::Error::last_os_error(),
        )),
        0 => {
            // SAFETY: as above; the grandchild is the keeper, the child
            // exits at once so the caller never has to reap the keeper.
            unsafe {
                if libc::fork() != 0 {
                    libc::_exit(0);
                }
                libc::setsid();
                keep_fds(rd.as_raw_fd(), file.as_raw_fd(), pid_wr.as_raw_fd());
                if let (Some(argv), Some(ptrs)) = (&exec, &exec_ptrs) {
                    libc::execve(argv[0].as_ptr(), ptrs.as_ptr(), no_env.as_ptr());
                    // The exec failed: run the loop in this copy instead.
                }
                ready();
                drain(&cur, &old, size, segment, &mut buf)
            }
        }
        child => {
            let mut status = 0;
            // SAFETY: `child` is our own child; it exits right away.
            unsafe { libc::waitpid(child, &mut status, 0) };
            drop((rd, file, pid_wr));
            match read_pid(pid_rd, KEEPER_START) {
                Some(pid) => Ok((wr, crate::process::ProcessId::of(pid))),
                // Nothing would read the console: the VM must not start.
                None => Err(io(
                    "starting the console keeper for",
                    std::io::Error::other(format!(
                        "the keeper did not report ready within {} s (it could not be forked, \
                         or the program it runs exited)",
                        KEEPER_START.as_secs()
                    )),
                )),
            }
        }
    }
}

/// How long a keeper may take to report that it is draining.
const KEEPER_START: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the keeper's pid from `rd` (4 bytes), waiting at most `limit`.
fn read_pid(rd: OwnedFd, limit: std::time::Duration) -> Option<u32> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let until = std::time::Instant::now() + limit;
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < bytes.len() {
        let left = until.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).ok()?;
        let mut fds = [PollFd::new(rd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        match nix::unistd::read(&rd, &mut bytes[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    u32::try_from(i32::from_ne_bytes(bytes))
        .ok()
        .filter(|p| *p > 0)
}

/// Tells the caller, through descriptor 2, this keeper's pid, and lets go
/// of that pipe (descriptor 2 becomes `/dev/null`).
///
/// # Safety
/// Must run in a keeper process whose descriptor 2 is that pipe.
unsafe fn ready() {
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        let bytes = libc::getpid().to_ne_bytes();
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 2);
            libc::close(null);
        } else {
            libc::close(2);
        }
    }
}

/// Makes the pipe descriptor 0, the log 1 and the pid pipe 2 (without
/// close-on-exec), and closes every other descriptor: locks and sockets of
/// the caller must not live on in the keeper.
///
/// # Safety
/// Must run in a freshly forked child, never in the parent.
unsafe fn keep_fds(rd: i32, file: i32, pid: i32) {
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        let (rd, file, pid) = (
            libc::fcntl(rd, libc::F_DUPFD, 10),
            libc::fcntl(file, libc::F_DUPFD, 10),
            libc::fcntl(pid, libc::F_DUPFD, 10),
        );
        libc::dup2(rd, 0);
        libc::dup2(file, 1);
        libc::dup2(pid, 2);
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                i32::try_from(lim.rlim_cur).unwrap_or(i32::MAX).min(1 << 20)
            } else {
                1 << 16
            };
            for fd in 3..top {
                libc::close(fd);
            }
        }
    }
}

/// The keeper's loop: reads descriptor 0, writes descriptor 1, rotates at
/// `segment` bytes (system calls only).
///
/// # Safety
/// Must run in a keeper process (forked, or started in keeper mode), whose
/// descriptors 0 and 1 are the pipe and the log.
unsafe fn drain(cur: &CString, old: &CString, mut size: u64, segment: u64, buf: &mut [u8]) -> ! {
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        loop {
            let n = libc::read(0, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 {
                end(0);
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                end(1);
            }
            let n = n as usize;
            let mut off = 0;
            while off < n {
                if size >= segment {
                    libc::rename(cur.as_ptr(), old.as_ptr());
                    let fd = libc::open(
                        cur.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND,
                        0o600,
                    );
                    if fd >= 0 {
                        libc::dup2(fd, 1);
                        libc::close(fd);
                    } else {
                        // No new file: start the old one over rather than
                        // let it grow past the cap.
                        libc::ftruncate(1, 0);
                    }
                    size = 0;
                }
                let room = usize::try_from(segment - size).unwrap_or(usize::MAX);
                let take = (n - off).min(room);
                let w = libc::write(1, buf[off..].as_ptr().cast(), take);
                if w < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                // A failed write (a full disk) drops this chunk but keeps
                // the pipe drained.
                let w = if w <= 0 { take } else { w as usize };
                off += w;
                size += w as u64;
            }
        }
    }
}

/// Whether this process is an instrumented keeper program told where its
/// coverage counters go (never a forked copy of its caller).
static WRITE_COUNTERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(pyro_coverage)]
unsafe extern "C" {
    // The profiler runtime that `-C instrument-coverage` links in.
    fn __llvm_profile_write_file() -> i32;
}

/// Ends the keeper with `code`. An instrumented keeper program first writes
/// its coverage counters, which `_exit` would drop; a forked copy does not
/// (its caller's threads may hold the runtime's locks). Best effort: a
/// keeper that teardown has to kill (a host-compat agent's, whose pipe
/// something else holds open) writes nothing.
///
/// # Safety
/// Must run in a keeper process.
unsafe fn end(code: i32) -> ! {
    #[cfg(pyro_coverage)]
    if WRITE_COUNTERS.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: a single-threaded process of its own image, about to end.
        unsafe { __llvm_profile_write_file() };
    }
    // SAFETY: ends this process; nothing to clean up.
    unsafe { libc::_exit(code) }
}

/// The end of a console log (its rotated half first when the current one
/// is short), at most `max_bytes`, never following a link.
pub fn console_tail(log: &Path, max_bytes: u64) -> String {
    let (now, cut_now) = crate::file_tail_bytes(log, max_bytes);
    let (mut out, cut) = if cut_now {
        (Vec::new(), true)
    } else {
        let (old, cut_old) = crate::file_tail_bytes(&rotated(log), max_bytes - now.len() as u64);
        (old, cut_old)
    };
    out.extend_from_slice(&now);
    crate::tail_text(&out, cut)
}

/// Wraps a pipe's write end as the two stdio handles of a child.
pub fn stdio_pair(wr: OwnedFd) -> Result<(std::process::Stdio, std::process::Stdio), VmmError> {
    let dup = wr
        .try_clone()
        .map_err(|e| VmmError::io("duplicating the console pipe", e))?;
    Ok((wr.into(), dup.into()))
}

#[cfg(test)]
mod tests;

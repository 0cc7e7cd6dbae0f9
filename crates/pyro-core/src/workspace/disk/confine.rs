//! e2fsprogs tools (`e2fsck`, `debugfs`) run on a guest-written image with
//! no more power than reading that one file needs.
//!
//! The image is the guest's: root in the guest can craft its superblock,
//! journal and extent trees to attack the C code that parses them. So the
//! tool never runs as the host's root: it gets the image as one inherited
//! descriptor (`/proc/self/fd/N`, the file made over to the unprivileged
//! uid), runs as that uid with no supplementary groups and no way to gain
//! privileges, in its own network and IPC namespaces, with bounds on its
//! memory, CPU time, open files and on how large it may make any file.
//! Its wall time is bounded by the caller.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use super::*;

/// The uid and gid the tools run as (the conventional `nobody`).
const UNPRIVILEGED: u32 = 65534;
/// Address space a tool may use.
const MEMORY_MAX: u64 = 1 << 30;
/// CPU seconds a tool may use.
const CPU_SECONDS_MAX: u64 = 120;
/// Descriptors a tool may hold.
const FILES_MAX: u64 = 64;

/// Opens the image at `path` for a confined tool (`writable` for e2fsck's
/// journal replay) and hands the file to [`UNPRIVILEGED`]: `path` must be
/// pyro's own private copy, never the workspace's disk itself.
pub(super) fn open_copy(path: &Path, writable: bool) -> Result<std::fs::File, CoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| CoreError::io(format!("opening {}", path.display()), e))?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::fchown(&file, Some(UNPRIVILEGED), Some(UNPRIVILEGED))
            .map_err(|e| CoreError::io(format!("handing over {}", path.display()), e))?;
    }
    Ok(file)
}

/// Sets `cmd` up to run confined with `image` (from [`open_copy`]) as its
/// only way to the disk; returns the path that names the image inside it.
pub(super) fn confine(cmd: &mut Command, image: &std::fs::File) -> std::ffi::OsString {
    use std::os::unix::process::CommandExt;
    let fd: RawFd = image.as_raw_fd();
    let size = image.metadata().map(|m| m.len()).unwrap_or(0);
    // SAFETY: between fork and exec the hook makes only system calls
    // (fcntl, unshare, setrlimit, setgroups, setresgid, setresuid, prctl)
    // on values computed before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || confine_here(fd, size));
    }
    format!("/proc/self/fd/{fd}").into()
}

/// What [`confine`]'s hook does to the process it runs in: keeps `fd` (the
/// image, `size` bytes) open across exec, bounds memory, CPU time, open
/// files, core dumps and file size, and (as root) leaves the network and
/// IPC namespaces and becomes [`UNPRIVILEGED`] with no groups; then no
/// privilege can be gained again.
///
/// # Safety
/// Only in a process about to exec (or to end): it changes it for good;
/// `fd` is borrowed and must stay open until the exec. It makes only
/// system calls and allocates nothing, so it is safe between fork and
/// exec.
unsafe fn confine_here(fd: RawFd, size: u64) -> std::io::Result<()> {
    // SAFETY: plain system calls on values this function owns.
    unsafe {
        // The image stays open across exec (all else is close-on-exec).
        if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let limit = |resource, value: u64| {
            let l = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        limit(libc::RLIMIT_AS, MEMORY_MAX)?;
        limit(libc::RLIMIT_CPU, CPU_SECONDS_MAX)?;
        limit(libc::RLIMIT_NOFILE, FILES_MAX)?;
        limit(libc::RLIMIT_CORE, 0)?;
        // No file may grow past the image (e2fsck writes only within it).
        limit(libc::RLIMIT_FSIZE, size.max(1))?;
        if libc::geteuid() == 0 {
            if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(UNPRIVILEGED, UNPRIVILEGED, UNPRIVILEGED) != 0
                || libc::setresuid(UNPRIVILEGED, UNPRIVILEGED, UNPRIVILEGED) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! Host access to files inside a VM's chroot.
//!
//! Everything under `<chroot_base>/firecracker/<id>/root` belongs to the
//! VM's uid, so a compromised Firecracker can replace any entry there with
//! a link, a FIFO or a device. The directories above it belong to root and
//! the VM's uid cannot rename or replace them. Host reads therefore start
//! from a handle on `<id>` (checked to be root's and not writable by anyone
//! else, opened without following a link) and resolve the rest with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`: no component may be a link, and nothing can lead out
//! of the jail. Only regular files are read, without blocking.
//!
//! Sockets in the jail cannot be opened this way (`connect` takes a path);
//! their peers are checked by uid instead ([`crate::vsock`], [`crate::api`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// Opens `root/<name>` under the jail directory `jail_dir`
/// (`<chroot_base>/firecracker/<id>`) for reading. Refuses a jail directory
/// that another user could change, any link on the way, and anything that
/// is not a regular file.
pub fn open_file(jail_dir: &Path, name: &str) -> io::Result<File> {
    let dir = open_jail_dir(jail_dir)?;
    // First a path handle (opening it touches nothing: a device node in
    // its place is not opened), then the real open only of a regular file.
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(Mode::empty())
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let fd = nix::fcntl::openat2(&dir, Path::new("root").join(name).as_path(), how)
        .map_err(io::Error::from)?;
    let handle = File::from(fd);
    if !handle.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name} in the jail is not a regular file"),
        ));
    }
    // Reopening through the handle reaches exactly the inode checked above.
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
}

fn open_jail_dir(jail_dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(jail_dir)?;
    let meta = dir.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the jail directory {} is not owned by uid {me} or is writable by others; \
                 refusing to read from it; remove it by hand once its VM is gone",
                jail_dir.display()
            ),
        ));
    }
    Ok(dir)
}

#[cfg(test)]
pub(crate) mod tests;

//! Firecracker for pyro.
//!
//! - [`binaries`]: where the Firecracker and jailer binaries come from, their
//!   pinned checksums, and installing them into the cache.
//! - [`api`]: a minimal client for Firecracker's HTTP API on its Unix socket.
//! - [`launch`]: starting one microVM (through the jailer when root), feeding
//!   it its configuration over the API, and waiting for the agent's
//!   readiness push.
//! - [`vsock`]: the host side of Firecracker's hybrid vsock.
//! - [`process`]: pid + start-time identities, liveness and killing.
//! - [`cgroup`]: cgroup version detection and cleanup of the jailer's groups.
//! - [`disk`]: sparse per-VM disks and sparse copies.
//! - [`host`]: facts about the host (KVM, PVM) that change how guests boot.
//! - [`jail`]: reading files inside a VM's chroot without following links.
//! - [`snapshot`]: full snapshots of a running VM, taken out of its jail.

#![warn(missing_docs)]

pub mod api;
pub mod binaries;
pub mod cgroup;
pub mod console;
pub mod disk;
pub mod host;
pub mod jail;
mod jail_prep;
pub mod launch;
pub mod process;
pub mod snapshot;
pub mod vsock;

mod error;
pub use error::VmmError;

/// Hashes a file with SHA-256, returning lowercase hex.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The end of a text file (at most `max_bytes`), for error reports. Never
/// follows a link at the end of `path`, and reads only regular files: a
/// jailed Firecracker cannot point the host at another file.
pub fn file_tail(path: &std::path::Path, max_bytes: u64) -> String {
    let (bytes, cut) = file_tail_bytes(path, max_bytes);
    tail_text(&bytes, cut)
}

/// The last `max_bytes` of a regular file (not through a final symlink),
/// and whether that is less than the whole file.
pub fn file_tail_bytes(path: &std::path::Path, max_bytes: u64) -> (Vec<u8>, bool) {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => open_tail_bytes(f, max_bytes),
        Err(_) => (Vec::new(), false),
    }
}

/// The last `max_bytes` of an open file if it is a regular file, and
/// whether that is less than the whole file.
pub fn open_tail_bytes(mut f: std::fs::File, max_bytes: u64) -> (Vec<u8>, bool) {
    use std::io::{Read, Seek, SeekFrom};
    let len = match f.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => return (Vec::new(), false),
    };
    let start = len.saturating_sub(max_bytes);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return (Vec::new(), false);
    }
    let mut buf = Vec::new();
    // The file may grow meanwhile: never more than asked for.
    let _ = f.take(max_bytes).read_to_end(&mut buf);
    (buf, start > 0)
}

/// Text from the end of a log: from a line boundary when `cut` into it.
pub fn tail_text(bytes: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = if cut {
        text.split_once('\n').map_or(&*text, |(_, rest)| rest)
    } else {
        &text
    };
    text.trim_end().to_owned()
}

#[cfg(test)]
mod tests;

//! Writes a baseline's files (the old side of diffs) from its manifest and
//! the guest's tar of `/workspace`, for a workspace that was not seeded
//! from the host (a fork). Only what the manifest lists is written, every file
//! is checked against the manifest's hash as it is written, and every
//! write resolves beneath the files directory without following a link
//! (the manifest's symlinks are stored as links, whatever their target, and
//! never traversed).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use sha2::Digest;

use super::*;

pub(super) fn beneath(dir: &File, path: &Path, flags: OFlag, mode: u32) -> std::io::Result<File> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    nix::fcntl::openat2(dir.as_fd(), path, how)
        .map(File::from)
        .map_err(std::io::Error::from)
}

/// The parent directory of `rel` (beneath `root`) and its last name.
pub(super) fn parent_of<'a>(
    root: &File,
    rel: &'a Path,
) -> std::io::Result<(File, &'a std::ffi::OsStr)> {
    let name = rel
        .file_name()
        .ok_or_else(|| std::io::Error::other("an empty path"))?;
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((
        beneath(root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?,
        name,
    ))
}

/// Opens the regular file `rel` beneath `root` for reading: no link
/// anywhere on the way, and nothing but a regular file (through an
/// `O_PATH` handle first, so a device or FIFO is never opened).
pub(super) fn open_regular_beneath(root: &Path, rel: &str) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = File::open(root).ok()?;
    let h = beneath(&dir, Path::new(rel), OFlag::O_PATH, 0).ok()?;
    if !h.metadata().ok()?.is_file() {
        return None;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", h.as_raw_fd()))
        .ok()
}

/// The target of the symlink `rel` beneath `root` (no link on the way to
/// it).
pub(super) fn read_link_beneath(root: &Path, rel: &str) -> Option<PathBuf> {
    let dir = File::open(root).ok()?;
    let (parent, name) = parent_of(&dir, Path::new(rel)).ok()?;
    nix::fcntl::readlinkat(parent.as_fd(), name)
        .ok()
        .map(PathBuf::from)
}

/// Writes the manifest's directories and links under `files`, then the
/// regular files from the tar at `tar` (as `CreateArchive` sends them),
/// each checked against the manifest. `Some(reason)` when the files do not
/// match the manifest (nothing is then to be trusted).
pub(super) fn write_baseline_files(
    manifest: &Path,
    tar: &Path,
    files: &Path,
) -> Result<Option<String>, CoreError> {
    let io = |what: &str, e: std::io::Error| CoreError::io(format!("{what} the baseline files"), e);
    std::fs::create_dir_all(files).map_err(|e| io("creating", e))?;
    let root = File::open(files).map_err(|e| io("opening", e))?;
    // Path -> (digest, size) of each file the manifest lists.
    let mut wanted: HashMap<String, (String, u64)> = HashMap::new();
    for e in crate::jsonl::Lines::<pyro_protocol::ManifestEntry>::open(manifest)? {
        let e = e?;
        let rel = Path::new(&e.path);
        match e.kind {
            EntryKind::Directory => {
                let (parent, name) = parent_of(&root, rel).map_err(|e| io("writing", e))?;
                nix::sys::stat::mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755))
                    .map_err(|e| io("writing", e.into()))?;
            }
            EntryKind::Symlink => {
                let target = e.link_target.clone().unwrap_or_default();
                let (parent, name) = parent_of(&root, rel).map_err(|e| io("writing", e))?;
                nix::unistd::symlinkat(target.as_str(), parent.as_fd(), name)
                    .map_err(|e| io("writing", e.into()))?;
            }
            EntryKind::File => {
                wanted.insert(
                    e.path.clone(),
                    (e.sha256.clone().unwrap_or_default(), e.size),
                );
            }
            _ => {}
        }
    }
    // A damaged archive is a mismatch like a damaged file: worth another
    // copy, never a baseline.
    let f = File::open(tar).map_err(|e| io("reading", e))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let entries = match ar.entries() {
        Ok(e) => e,
        Err(e) => return Ok(Some(format!("the archive cannot be read: {e}"))),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => return Ok(Some(format!("the archive cannot be read: {e}"))),
        };
        // Directories and links come from the manifest.
        if matches!(
            entry.header().entry_type(),
            tar::EntryType::Directory | tar::EntryType::Symlink
        ) {
            continue;
        }
        let Ok(path) = entry.path().map(|p| p.to_string_lossy().into_owned()) else {
            return Ok(Some("the archive has an unreadable name".into()));
        };
        let Some((sha, size)) = wanted.remove(&path) else {
            return Ok(Some(format!("{path} is not a file of the listing")));
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Ok(Some(format!("{path} is not a regular file")));
        }
        // Refused before a byte is written: never more than the listing said.
        if entry.size() != size {
            return Ok(Some(format!(
                "{path} is {} bytes in the archive and {size} in the listing",
                entry.size()
            )));
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        let (parent, name) = parent_of(&root, Path::new(&path)).map_err(|e| io("writing", e))?;
        let mut out = beneath(
            &parent,
            Path::new(name),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
        )
        .map_err(|e| io("writing", e))?;
        let mut hash = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(n) => n,
                Err(e) => return Ok(Some(format!("{path} cannot be read from the archive: {e}"))),
            };
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| io("writing", e))?;
        }
        if hex::encode(hash.finalize()) != sha {
            return Ok(Some(format!("{path} differs from the listing")));
        }
    }
    Ok(wanted.keys().next().map(|p| {
        format!(
            "{} is missing",
            std::ffi::OsStr::from_bytes(p.as_bytes()).to_string_lossy()
        )
    }))
}

/// Whether the baseline files under `files` (written by the host from its
/// own seed) are what the guest's manifest lists: a seed the guest stored
/// differently from what it was sent shows here. `Some(reason)` for the
/// first difference.
pub(super) fn check_baseline_files(
    manifest: &Path,
    files: &Path,
) -> Result<Option<String>, CoreError> {
    for e in crate::jsonl::Lines::<pyro_protocol::ManifestEntry>::open(manifest)? {
        let e = e?;
        let same = match e.kind {
            EntryKind::File => {
                open_regular_beneath(files, &e.path)
                    .map(|f| f.take(e.size.saturating_add(1)))
                    .and_then(|mut f| {
                        let mut hash = sha2::Sha256::new();
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            match f.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => hash.update(&buf[..n]),
                                Err(_) => return None,
                            }
                        }
                        Some(hex::encode(hash.finalize()))
                    })
                    == e.sha256
            }
            EntryKind::Symlink => {
                read_link_beneath(files, &e.path).map(|t| t.to_string_lossy().into_owned())
                    == e.link_target
            }
            _ => true,
        };
        if !same {
            return Ok(Some(format!("{} differs", e.path)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;

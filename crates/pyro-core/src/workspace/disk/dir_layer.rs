//! A layer that is a host directory (a host-compat workspace's upper layer,
//! and the environment's root tree under every workspace). A host-compat
//! guest writes its upper directory as root, so every access resolves from
//! a handle on the layer's root with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` and
//! inspects entries with `fstatat(AT_SYMLINK_NOFOLLOW)`; only regular files
//! are opened for reading (through an `O_PATH` handle first, so a device
//! node is never opened).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};

use super::overlay::{LINK_MAX, Layer, Node, NodeKind};
use super::*;

/// A directory layer rooted at `root`.
pub(crate) struct DirLayer {
    root: File,
    what: &'static str,
}

fn resolve() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

fn rel(path: &[Vec<u8>]) -> std::path::PathBuf {
    let mut p = std::path::PathBuf::from(".");
    for n in path {
        p.push(std::ffi::OsStr::from_bytes(n));
    }
    p
}

impl DirLayer {
    /// The layer at `root` (a missing directory is an empty layer).
    pub fn open(root: &Path, what: &'static str) -> Result<Option<Self>, CoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(root)
        {
            Ok(root) => Ok(Some(Self { root, what })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CoreError::io(format!("opening {}", root.display()), e)),
        }
    }

    fn err(&self, path: &[Vec<u8>], e: impl std::fmt::Display) -> CoreError {
        CoreError::io(
            format!("reading {} in the {}", overlay::display(path), self.what),
            std::io::Error::other(e.to_string()),
        )
    }

    /// Opens `path` (no link anywhere on it) with `flags`.
    fn open_at(&self, path: &[Vec<u8>], flags: OFlag) -> nix::Result<File> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .mode(Mode::empty())
            .resolve(resolve());
        nix::fcntl::openat2(self.root.as_fd(), rel(path).as_path(), how).map(File::from)
    }

    fn node_of(&self, parent: &File, name: &[u8], path: &[Vec<u8>]) -> Result<Node, CoreError> {
        let st = nix::sys::stat::fstatat(
            parent.as_fd(),
            std::ffi::OsStr::from_bytes(name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err(path, e))?;
        let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        let mode = st.st_mode & 0o7777;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let mut node = Node {
            kind: NodeKind::Special,
            mode,
            size,
            link: None,
            opaque: false,
        };
        match fmt {
            SFlag::S_IFREG => node.kind = NodeKind::File,
            SFlag::S_IFDIR => {
                node.kind = NodeKind::Dir;
                node.opaque = self.opaque(path)?;
            }
            SFlag::S_IFLNK => {
                node.kind = NodeKind::Symlink;
                let target =
                    nix::fcntl::readlinkat(parent.as_fd(), std::ffi::OsStr::from_bytes(name))
                        .map_err(|e| self.err(path, e))?;
                let mut t = target.as_bytes().to_vec();
                t.truncate(LINK_MAX as usize);
                node.link = Some(t);
            }
            SFlag::S_IFCHR if st.st_rdev == 0 => node.kind = NodeKind::Whiteout,
            _ => {}
        }
        Ok(node)
    }

    /// Whether the directory at `path` carries overlayfs's opaque mark.
    fn opaque(&self, path: &[Vec<u8>]) -> Result<bool, CoreError> {
        let dir = self
            .open_at(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| self.err(path, e))?;
        let mut buf = [0u8; 4];
        let name = c"trusted.overlay.opaque";
        // SAFETY: `dir` is an open descriptor; `name` is NUL-terminated and
        // `buf` is writable for its length.
        let n = unsafe {
            libc::fgetxattr(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        Ok(n == 1 && buf[0] == b'y')
    }
}

impl Layer for DirLayer {
    fn stat(&self, path: &[Vec<u8>]) -> Result<Option<Node>, CoreError> {
        let Some((name, parent_path)) = path.split_last() else {
            return Ok(Some(Node {
                kind: NodeKind::Dir,
                mode: 0o755,
                size: 0,
                link: None,
                opaque: false,
            }));
        };
        let parent = match self.open_at(parent_path, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(p) => p,
            // A parent that is missing, a link or not a directory: nothing here.
            Err(
                nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP,
            ) => return Ok(None),
            Err(e) => return Err(self.err(path, e)),
        };
        match nix::sys::stat::fstatat(
            parent.as_fd(),
            std::ffi::OsStr::from_bytes(name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            _ => self.node_of(&parent, name, path).map(Some),
        }
    }

    fn list(&self, path: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, Node)>, CoreError> {
        let dir = self
            .open_at(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| self.err(path, e))?;
        // The directory opened above, by its descriptor: no path is
        // resolved again.
        let rd = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .map_err(|e| self.err(path, e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| self.err(path, e))?;
            let name = e.file_name().as_bytes().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() >= ENTRIES_PER_DIR_MAX {
                return Err(CoreError::TooLarge(format!(
                    "{} in the {} has more than {ENTRIES_PER_DIR_MAX} entries",
                    overlay::display(path),
                    self.what
                )));
            }
            let mut child = path.to_vec();
            child.push(name.clone());
            let node = self.node_of(&dir, &name, &child)?;
            out.push((name, node));
        }
        Ok(out)
    }

    fn open(&self, path: &[Vec<u8>]) -> Result<Box<dyn Read + '_>, CoreError> {
        let handle = self
            .open_at(path, OFlag::O_PATH)
            .map_err(|e| self.err(path, e))?;
        let meta = handle.metadata().map_err(|e| self.err(path, e))?;
        if !meta.is_file() {
            return Err(self.err(path, "not a regular file"));
        }
        // Reopening through the handle reaches exactly the inode checked.
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
            .map_err(|e| self.err(path, e))?;
        Ok(Box::new(f))
    }
}

#[cfg(test)]
mod tests;

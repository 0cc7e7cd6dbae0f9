//! The merged view of a workspace's disk, as the guest's overlayfs shows
//! it: the upper layer (what the workspace wrote) over the lower one (the
//! environment's root), with overlayfs's whiteouts (a character device
//! 0:0 hides the lower entry of that name) and opaque directories (the
//! `trusted.overlay.opaque` attribute hides the lower directory's entries).
//! Nothing here follows a link: a path through a symlink is refused.

use super::*;

/// What an entry of a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// An overlayfs whiteout (upper layer only).
    Whiteout,
    /// A device, FIFO or socket.
    Special,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes (files and symlinks).
    pub size: u64,
    /// A symlink's target (at most [`LINK_MAX`] bytes).
    pub link: Option<Vec<u8>>,
    /// An opaque directory (upper layer only).
    pub opaque: bool,
}

/// The longest symlink target read from a guest's disk.
pub(crate) const LINK_MAX: u64 = pyro_vmm::disk::LINK_TARGET_MAX;

/// One layer of the disk, addressed by plain names from its root.
pub(crate) trait Layer {
    /// The entry at `path`, not following a final link; `None` when absent
    /// (or when a parent is not a directory).
    fn stat(&self, path: &[Vec<u8>]) -> Result<Option<Node>, CoreError>;
    /// The entries of the directory at `path`.
    fn list(&self, path: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, Node)>, CoreError>;
    /// The content of the regular file at `path`.
    fn open(&self, path: &[Vec<u8>]) -> Result<Box<dyn Read + '_>, CoreError>;
}

/// An entry of the merged view, and the layers a directory merges.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub node: Node,
    /// The entry (or the directory's upper part) is in the upper layer.
    pub in_upper: bool,
    /// The directory's lower part shows through (directories only).
    pub in_lower: bool,
}

/// Why a lookup failed.
#[derive(Debug)]
pub(crate) enum Miss {
    /// Nothing at that path.
    Absent,
    /// A component on the way is a symlink (`0` names it, `2` is its
    /// target) or not a directory.
    Through(String, NodeKind, Option<Vec<u8>>),
}

/// The upper layer over the lower one.
pub(crate) struct Merged<'a> {
    pub upper: &'a dyn Layer,
    pub lower: &'a dyn Layer,
}

impl Merged<'_> {
    /// The entry at `path` (plain names from `/`).
    pub fn lookup(&self, path: &[Vec<u8>]) -> Result<Result<Found, Miss>, CoreError> {
        let mut found = Found {
            node: Node {
                kind: NodeKind::Dir,
                mode: 0o755,
                size: 0,
                link: None,
                opaque: false,
            },
            in_upper: true,
            in_lower: true,
        };
        for i in 0..path.len() {
            if found.node.kind != NodeKind::Dir {
                let at = display(&path[..i]);
                return Ok(Err(Miss::Through(
                    at,
                    found.node.kind,
                    found.node.link.clone(),
                )));
            }
            let prefix = &path[..=i];
            let upper = if found.in_upper {
                self.upper.stat(prefix)?
            } else {
                None
            };
            let lower = if found.in_lower {
                self.lower.stat(prefix)?
            } else {
                None
            };
            found = match (upper, lower) {
                (Some(u), _) if u.kind == NodeKind::Whiteout => return Ok(Err(Miss::Absent)),
                (Some(u), l) if u.kind == NodeKind::Dir => Found {
                    in_upper: true,
                    in_lower: !u.opaque && l.is_some_and(|l| l.kind == NodeKind::Dir),
                    node: u,
                },
                (Some(u), _) => Found {
                    node: u,
                    in_upper: true,
                    in_lower: false,
                },
                (None, Some(l)) => Found {
                    in_upper: false,
                    in_lower: l.kind == NodeKind::Dir,
                    node: l,
                },
                (None, None) => return Ok(Err(Miss::Absent)),
            };
        }
        Ok(Ok(found))
    }

    /// The entries of the merged directory `found` at `path`, by name.
    pub fn list(
        &self,
        path: &[Vec<u8>],
        found: &Found,
    ) -> Result<BTreeMap<Vec<u8>, Found>, CoreError> {
        let mut out = BTreeMap::new();
        let mut hidden = std::collections::BTreeSet::new();
        if found.in_upper {
            for (name, node) in self.upper.list(path)? {
                if node.kind == NodeKind::Whiteout {
                    hidden.insert(name);
                    continue;
                }
                let dir = node.kind == NodeKind::Dir;
                let opaque = node.opaque;
                out.insert(
                    name,
                    Found {
                        node,
                        in_upper: true,
                        // Settled below, once the lower entries are known.
                        in_lower: dir && !opaque,
                    },
                );
            }
        }
        let mut lower_dirs = std::collections::BTreeSet::new();
        if found.in_lower {
            for (name, node) in self.lower.list(path)? {
                if hidden.contains(&name) {
                    continue;
                }
                if node.kind == NodeKind::Dir {
                    lower_dirs.insert(name.clone());
                }
                out.entry(name).or_insert(Found {
                    in_upper: false,
                    in_lower: node.kind == NodeKind::Dir,
                    node,
                });
            }
        }
        for (name, f) in &mut out {
            if f.in_upper && f.in_lower {
                f.in_lower = lower_dirs.contains(name);
            }
        }
        Ok(out)
    }

    /// The content of the regular file `found` at `path`.
    pub fn open(&self, path: &[Vec<u8>], found: &Found) -> Result<Box<dyn Read + '_>, CoreError> {
        if found.in_upper {
            self.upper.open(path)
        } else {
            self.lower.open(path)
        }
    }

    /// Streams the regular file `found` at `path` into `out`, refusing more
    /// than `max` bytes; the bytes copied.
    pub fn copy(
        &self,
        path: &[Vec<u8>],
        found: &Found,
        out: &mut dyn Write,
        max: u64,
    ) -> Result<u64, CoreError> {
        let r = self.open(path, found)?;
        let n = std::io::copy(&mut r.take(max + 1), out)
            .map_err(|e| CoreError::io(format!("reading {}", display(path)), e))?;
        if n > max {
            return Err(CoreError::TooLarge(format!(
                "{} is larger than {max} bytes",
                display(path)
            )));
        }
        Ok(n)
    }
}

/// `/a/b` from names (lossy for names that are not UTF-8).
pub(crate) fn display(path: &[Vec<u8>]) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.iter()
        .map(|n| format!("/{}", String::from_utf8_lossy(n)))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;

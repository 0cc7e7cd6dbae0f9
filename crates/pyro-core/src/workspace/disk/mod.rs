//! Offline disk tools: a stopped workspace's disk, read on the host without
//! booting it or mounting anything. The view is the guest's: the upper
//! layer (a Firecracker workspace's ext4 disk, or a host-compat
//! workspace's directory) over the environment's root tree, with
//! overlayfs's whiteouts and opaque directories honoured ([`overlay`]).
//! Everything read is guest-controlled and bounded: entries per directory
//! and per walk, bytes per read and per export, link target lengths.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use super::*;

mod confine;
mod dir_layer;
mod export;
mod ext4_layer;
mod overlay;

use overlay::{Found, Layer, Merged, Miss, Node, NodeKind};

/// Most entries one directory of a guest's disk may hold here.
const ENTRIES_PER_DIR_MAX: usize = 1_000_000;
/// Most entries one walk (a recursive listing, an export) visits.
const WALK_ENTRIES_MAX: u64 = 5_000_000;
/// Longest one walk may take.
const WALK_TIME_MAX: std::time::Duration = std::time::Duration::from_secs(600);

/// Waits for `child` at most `limit`; past it the child is killed and
/// reaped, and the answer is `None`.
fn wait_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let started = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// What `disk export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum DiskFormat {
    /// A tar of the tree.
    #[default]
    Tar,
    /// A standalone ext4 image holding the tree.
    Ext4,
}

impl DiskFormat {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tar => "tar",
            Self::Ext4 => "ext4",
        }
    }
}

/// A disk export.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DiskExportView {
    /// Workspace.
    pub workspace_id: String,
    /// The exported path in the guest.
    pub path: String,
    /// Host path written.
    pub output_path: PathBuf,
    /// `tar` or `ext4`.
    pub disk_format: DiskFormat,
    /// Entries written.
    pub entry_count: u64,
    /// Bytes of file content.
    pub bytes_written: u64,
    /// Devices, FIFOs and sockets left out (they are not files to copy).
    pub skipped: u64,
}

/// An empty layer (a host-compat workspace that never wrote anything).
struct Empty;

impl Layer for Empty {
    fn stat(&self, path: &[Vec<u8>]) -> Result<Option<Node>, CoreError> {
        Ok(path.is_empty().then_some(Node {
            kind: NodeKind::Dir,
            mode: 0o755,
            size: 0,
            link: None,
            opaque: false,
        }))
    }
    fn list(&self, _: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, Node)>, CoreError> {
        Ok(Vec::new())
    }
    fn open(&self, path: &[Vec<u8>]) -> Result<Box<dyn Read + '_>, CoreError> {
        Err(CoreError::NotFound(format!(
            "{} does not exist",
            overlay::display(path)
        )))
    }
}

/// A guest path as names from `/`: relative paths are under `/workspace`;
/// `.` is dropped and `..` refused.
fn disk_path(p: &str) -> Result<Vec<Vec<u8>>, CoreError> {
    let full = if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("{WORKSPACE_ROOT}/{p}")
    };
    let mut out = Vec::new();
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(CoreError::invalid(format!(
                    "{p:?} has `..`; give the path without it"
                )));
            }
            c => out.push(c.as_bytes().to_vec()),
        }
    }
    Ok(out)
}

fn entry(path: &[Vec<u8>], node: &Node) -> FileEntry {
    FileEntry {
        path: overlay::display(path),
        kind: match node.kind {
            NodeKind::File => EntryKind::File,
            NodeKind::Dir => EntryKind::Directory,
            NodeKind::Symlink => EntryKind::Symlink,
            NodeKind::Whiteout | NodeKind::Special => EntryKind::Other,
        },
        size: if node.kind == NodeKind::Dir {
            0
        } else {
            node.size
        },
        mode: node.mode,
        link_target: node
            .link
            .as_ref()
            .map(|l| String::from_utf8_lossy(l).into_owned()),
    }
}

fn missing(id: &str, path: &[Vec<u8>], miss: Miss) -> CoreError {
    let parent = overlay::display(&path[..path.len().saturating_sub(1)]);
    match miss {
        Miss::Absent => CoreError::NotFound(format!(
            "{} does not exist on the workspace's disk; see what is there with \
             ⟨do:workspace disk list {id} {parent}⟩",
            overlay::display(path)
        )),
        Miss::Through(at, NodeKind::Symlink, target) => {
            let target =
                String::from_utf8_lossy(target.as_deref().unwrap_or_default()).into_owned();
            // The usual case: /bin, /lib, /sbin are links into /usr.
            let instead = if target.starts_with('/') {
                target.clone()
            } else {
                let dir = at.rsplit_once('/').map_or("", |(d, _)| d);
                format!("{dir}/{target}")
            };
            CoreError::invalid(format!(
                "{} goes through {at}, a symlink to {target}, and the disk tools never follow a \
                 link; give the path under {instead} instead",
                overlay::display(path),
            ))
        }
        Miss::Through(at, _, _) => CoreError::invalid(format!(
            "{} goes through {at}, which is a file on the workspace's disk, not a directory; see \
             what is there with ⟨do:workspace disk list {id} {parent}⟩",
            overlay::display(path),
        )),
    }
}

impl Workspaces {
    /// Runs `f` on the merged view of stopped workspace `id`'s disk, under
    /// its lock, off the async workers.
    async fn with_disk<T: Send + 'static>(
        &self,
        id: &str,
        op: &'static str,
        f: impl FnOnce(&Merged<'_>, &Record) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, CoreError> {
        let lock = record::lock(&self.paths, id).await?;
        let rec = self.load_fresh(id).await?;
        if rec.state != State::Stopped {
            return Err(CoreError::State(format!(
                "workspace {id} is {}; {op} reads a stopped workspace's disk without booting it: \
                 ⟨do:workspace stop {id}⟩ first",
                rec.state.as_str()
            )));
        }
        let env = crate::environments::resolve(&self.paths, &rec.environment)?;
        let upper = self.upper(&rec);
        let scratch = crate::scratch::temp_dir(&self.paths)?;
        crate::blocking(move || {
            // The lock goes with the work: a caller that gives up does not
            // free the disk while it is still being read.
            let _lock = lock;
            // Read from a copy whose journal is replayed (dropped at the end).
            let replayed = match rec.backend {
                BackendKind::Firecracker if upper.is_file() => {
                    Some(ext4_layer::replayed_copy(&upper, &scratch)?)
                }
                _ => None,
            };
            let lower = dir_layer::DirLayer::open(&env.rootfs_tree(), "environment's root")?
                .ok_or_else(|| {
                    CoreError::NotFound(format!(
                        "the environment {} has no root tree on this host; ⟨do:env pull {}⟩ again",
                        rec.environment, rec.environment
                    ))
                })?;
            let upper: Box<dyn Layer> = match (rec.backend, &replayed) {
                (BackendKind::Firecracker, Some(copy)) => {
                    Box::new(ext4_layer::Ext4Layer::open(copy)?)
                }
                (BackendKind::Firecracker, None) => Box::new(Empty),
                (BackendKind::HostCompat, _) => {
                    match dir_layer::DirLayer::open(&upper.join("data"), "workspace's layer")? {
                        Some(l) => Box::new(l),
                        None => Box::new(Empty),
                    }
                }
            };
            let merged = Merged {
                upper: upper.as_ref(),
                lower: &lower,
            };
            f(&merged, &rec)
        })
        .await
    }

    /// Lists a path of a stopped workspace's disk: its entries (or with
    /// `recursive` its subtree), up to `max_entries` (all are counted).
    pub async fn disk_list(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
        max_entries: usize,
    ) -> Result<FileListView, CoreError> {
        limits::LIST_ENTRIES.check(max_entries)?;
        let path = disk_path(path)?;
        let workspace_id = id.to_owned();
        self.with_disk(id, "disk list", move |m, _| {
            let found = m
                .lookup(&path)?
                .map_err(|e| missing(&workspace_id, &path, e))?;
            let mut view = FileListView {
                workspace_id,
                path: overlay::display(&path),
                kind: entry(&path, &found.node).kind,
                recursive,
                entries: Vec::new(),
                total: 0,
                truncated: false,
            };
            let mut kept_bytes = 0;
            let mut keep = |view: &mut FileListView, e: FileEntry| {
                view.total += 1;
                let size = e.path.len() + e.link_target.as_ref().map_or(0, String::len);
                if view.entries.len() < max_entries && kept_bytes + size <= KEPT_BYTES_MAX {
                    kept_bytes += size;
                    view.entries.push(e);
                }
            };
            if found.node.kind != NodeKind::Dir {
                keep(&mut view, entry(&path, &found.node));
            } else {
                walk(m, &path, &found, recursive, &mut |p, f| {
                    keep(&mut view, entry(p, &f.node));
                    Ok(())
                })?;
            }
            view.truncated = view.total > view.entries.len() as u64;
            Ok(view)
        })
        .await
    }

    /// Reads a regular file of a stopped workspace's disk (bigger than
    /// `max_bytes` is an error).
    pub async fn disk_read(
        &self,
        id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<FileRead, CoreError> {
        self.redacted(id, self.disk_read_raw(id, path, max_bytes))
            .await
    }

    async fn disk_read_raw(
        &self,
        id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<FileRead, CoreError> {
        limits::FILE_READ_BYTES.check(max_bytes)?;
        let path = disk_path(path)?;
        let workspace_id = id.to_owned();
        self.with_disk(id, "disk read", move |m, _| {
            let found = m
                .lookup(&path)?
                .map_err(|e| missing(&workspace_id, &path, e))?;
            let shown = overlay::display(&path);
            match found.node.kind {
                NodeKind::File => {}
                NodeKind::Symlink => {
                    return Err(CoreError::invalid(format!(
                        "{shown} is a symlink to {}; read its target instead (the disk tools \
                         never follow a link)",
                        String::from_utf8_lossy(found.node.link.as_deref().unwrap_or_default())
                    )));
                }
                _ => {
                    return Err(CoreError::invalid(format!(
                        "{shown} is not a regular file; list it with ⟨op:workspace disk list⟩"
                    )));
                }
            }
            if found.node.size > max_bytes {
                return Err(CoreError::TooLarge(format!(
                    "{shown} is {} bytes, above the {max_bytes}-byte read limit; raise it with \
                     ⟨arg:max_bytes⟩ (up to {}) or copy it out with ⟨op:workspace disk export⟩",
                    found.node.size,
                    limits::FILE_READ_BYTES.max
                )));
            }
            let mut data = Vec::new();
            m.copy(&path, &found, &mut data, max_bytes)?;
            Ok(FileRead {
                workspace_id,
                path: shown,
                mode: found.node.mode,
                data,
                redactions: 0,
            })
        })
        .await
    }
}

/// What a walk does with each entry.
type Visit<'a> = dyn FnMut(&[Vec<u8>], &Found) -> Result<(), CoreError> + 'a;

/// Visits the entries under directory `found` at `path` in tree order (the
/// whole subtree with `recursive`), never through a link, at most
/// [`WALK_ENTRIES_MAX`] of them and for at most [`WALK_TIME_MAX`].
///
/// Memory follows the tree's depth and the directories on the current path
/// (each at most [`ENTRIES_PER_DIR_MAX`]), not its size: one path is kept and
/// grown or cut as the walk goes.
fn walk(
    m: &Merged<'_>,
    path: &[Vec<u8>],
    found: &Found,
    recursive: bool,
    visit: &mut Visit<'_>,
) -> Result<(), CoreError> {
    walk_until(
        m,
        path,
        found,
        recursive,
        std::time::Instant::now() + WALK_TIME_MAX,
        visit,
    )
}

fn walk_until(
    m: &Merged<'_>,
    path: &[Vec<u8>],
    found: &Found,
    recursive: bool,
    deadline: std::time::Instant,
    visit: &mut Visit<'_>,
) -> Result<(), CoreError> {
    if found.node.kind != NodeKind::Dir {
        return Ok(());
    }
    let mut seen = 0u64;
    let mut current = path.to_vec();
    // One iterator of children per directory being walked, deepest last.
    let mut levels = vec![m.list(path, found)?.into_iter()];
    while let Some(level) = levels.last_mut() {
        let Some((name, child)) = level.next() else {
            levels.pop();
            if levels.is_empty() {
                break;
            }
            current.pop();
            continue;
        };
        seen += 1;
        if seen > WALK_ENTRIES_MAX {
            return Err(CoreError::TooLarge(format!(
                "{} holds more than {WALK_ENTRIES_MAX} entries; give a subdirectory",
                overlay::display(path)
            )));
        }
        if seen.is_multiple_of(1024) && std::time::Instant::now() > deadline {
            return Err(CoreError::Timeout(format!(
                "walking {} took more than {} s ({seen} entries so far); give a subdirectory",
                overlay::display(path),
                WALK_TIME_MAX.as_secs()
            )));
        }
        current.push(name);
        visit(&current, &child)?;
        if recursive && child.node.kind == NodeKind::Dir {
            let children = m.list(&current, &child)?;
            levels.push(children.into_iter());
        } else {
            current.pop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

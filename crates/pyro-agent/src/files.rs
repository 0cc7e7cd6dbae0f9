//! Listing, reading and writing files, and manifests for diffs.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pyro_protocol::{AgentError, EntryKind, ErrorKind, FileEntry, ManifestEntry};

use crate::paths::{no_symlink_ancestors, workspace_path};

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> AgentError {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        ErrorKind::NotFound
    } else {
        ErrorKind::Io
    };
    let msg = if kind == ErrorKind::NotFound {
        format!("{} does not exist", path.display())
    } else {
        format!("{what} {}: {e}", path.display())
    };
    AgentError::new(kind, msg)
}

pub use pyro_archive::kind_of;

fn entry(path: &Path, m: &Metadata) -> FileEntry {
    let kind = kind_of(m);
    FileEntry {
        path: path.display().to_string(),
        kind,
        size: if kind == EntryKind::Directory {
            0
        } else {
            m.len()
        },
        mode: m.permissions().mode() & 0o7777,
        link_target: (kind == EntryKind::Symlink)
            .then(|| {
                std::fs::read_link(path)
                    .ok()
                    .map(|t| t.display().to_string())
            })
            .flatten(),
    }
}

/// Resolves a workspace path for reading: valid, no symlinked ancestors.
pub fn resolve(p: &str) -> Result<PathBuf, AgentError> {
    let path = workspace_path(p)?;
    no_symlink_ancestors(&path)?;
    Ok(path)
}

/// Lists `p`: returns the path's own entry and writes its children (or its
/// whole subtree) as JSON lines to `out`, in tree order. Returns how many
/// lines were written.
pub fn list(p: &str, recursive: bool, out: &mut dyn Write) -> Result<(FileEntry, u64), AgentError> {
    let path = resolve(p)?;
    let m = std::fs::symlink_metadata(&path).map_err(|e| io_err("reading", &path, &e))?;
    let root = entry(&path, &m);
    let mut count = 0;
    if root.kind == EntryKind::Directory {
        walk_lines(&path, recursive, out, &mut |p, m| {
            count += 1;
            Some(serde_json::to_vec(&entry(p, m)))
        })?;
    }
    Ok((root, count))
}

/// Turns a walked entry into its JSON line, or skips it (`None`).
type LineFn<'a> = dyn FnMut(&Path, &Metadata) -> Option<serde_json::Result<Vec<u8>>> + 'a;

/// Walks `dir` depth-first in tree order (each directory's names sorted as
/// the strings they are sent as, so the host can merge two streams), and
/// writes one JSON line per entry `line` returns.
fn walk_lines(
    dir: &Path,
    recursive: bool,
    out: &mut dyn Write,
    line: &mut LineFn<'_>,
) -> Result<(), AgentError> {
    let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| io_err("listing", dir, &e))?
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    names.sort();
    for (_, p) in names {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            // Gone since the directory was read.
            continue;
        };
        if let Some(json) = line(&p, &m) {
            let mut json = json.map_err(|e| {
                AgentError::new(ErrorKind::Io, format!("encoding {}: {e}", p.display()))
            })?;
            json.push(b'\n');
            out.write_all(&json)
                .map_err(|e| AgentError::new(ErrorKind::Io, format!("sending the listing: {e}")))?;
        }
        if recursive && m.is_dir() {
            walk_lines(&p, true, out, line)?;
        }
    }
    Ok(())
}

/// Opens a regular file for reading; returns it with its size and mode.
pub fn open_regular(p: &str) -> Result<(std::fs::File, u64, u32), AgentError> {
    let path = resolve(p)?;
    let m = std::fs::symlink_metadata(&path).map_err(|e| io_err("reading", &path, &e))?;
    match kind_of(&m) {
        EntryKind::File => {}
        EntryKind::Directory => {
            return Err(AgentError::new(
                ErrorKind::BadRequest,
                format!("{} is a directory; list it instead", path.display()),
            ));
        }
        EntryKind::Symlink => {
            let t = std::fs::read_link(&path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Err(AgentError::new(
                ErrorKind::BadRequest,
                format!(
                    "{} is a symlink to {t}; read its target instead",
                    path.display()
                ),
            ));
        }
        EntryKind::Other => {
            return Err(AgentError::new(
                ErrorKind::BadRequest,
                format!("{} is not a regular file", path.display()),
            ));
        }
    }
    let f = std::fs::File::open(&path).map_err(|e| io_err("opening", &path, &e))?;
    Ok((f, m.len(), m.permissions().mode() & 0o7777))
}

/// Writes `data` (read to its end) to `p` through a temp file and a rename.
/// An existing file keeps its mode; a new one gets `mode` or 0644. Missing
/// parent directories are created (never through a symlink).
pub fn write(
    p: &str,
    mode: Option<u32>,
    data: &mut dyn Read,
) -> Result<(u64, u32, bool), AgentError> {
    let path = resolve(p)?;
    if path == Path::new(crate::paths::WORKSPACE) {
        return Err(AgentError::new(
            ErrorKind::BadRequest,
            "cannot write over /workspace itself",
        ));
    }
    let existing = std::fs::symlink_metadata(&path).ok();
    let mode = match &existing {
        Some(m) if kind_of(m) != EntryKind::File => {
            return Err(AgentError::new(
                ErrorKind::Conflict,
                format!(
                    "{} exists and is not a regular file ({:?})",
                    path.display(),
                    kind_of(m)
                ),
            ));
        }
        Some(m) => m.permissions().mode() & 0o7777,
        None => mode.unwrap_or(0o644) & 0o7777,
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, &e))?;
    let (tmp, mut f) = crate::paths::new_temp(parent, "pyro-write")
        .map_err(|e| io_err("creating a temp file in", parent, &e))?;
    let result = (|| -> Result<u64, AgentError> {
        let n = std::io::copy(data, &mut f).map_err(|e| io_err("writing", &path, &e))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err("chmod", &tmp, &e))?;
        f.flush().map_err(|e| io_err("writing", &path, &e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err("replacing", &path, &e))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok((result?, mode, existing.is_none()))
}

/// Content hashes by (path, size, mtime, inode), so repeated manifests only
/// hash what changed.
#[derive(Debug, Default)]
pub struct HashCache {
    map: Mutex<HashMap<PathBuf, (Stamp, String)>>,
}

/// What must not change for a cached hash to stay valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
}

impl HashCache {
    fn hash(&self, path: &Path, m: &Metadata) -> Result<String, AgentError> {
        let key = Stamp {
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ino: m.ino(),
        };
        if let Ok(map) = self.map.lock()
            && let Some((stamp, h)) = map.get(path)
            && *stamp == key
        {
            return Ok(h.clone());
        }
        use sha2::Digest;
        let mut f = std::fs::File::open(path).map_err(|e| io_err("reading", path, &e))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(|e| io_err("reading", path, &e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let digest = hex(&h.finalize());
        if let Ok(mut map) = self.map.lock() {
            map.insert(path.to_owned(), (key, digest.clone()));
        }
        Ok(digest)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes every entry under `root` as JSON lines to `out`, in tree order,
/// with content hashes for files (none for a file that cannot be read: it
/// changed or went away meanwhile). Returns how many lines were written.
pub fn manifest(root: &str, cache: &HashCache, out: &mut dyn Write) -> Result<u64, AgentError> {
    let root = resolve(root)?;
    let mut count = 0;
    walk_lines(&root, true, out, &mut |p, m| {
        let rel = p.strip_prefix(&root).unwrap_or(p).display().to_string();
        if rel.starts_with(".pyro-stage-") {
            return None;
        }
        let kind = kind_of(m);
        count += 1;
        Some(serde_json::to_vec(&ManifestEntry {
            sha256: (kind == EntryKind::File)
                .then(|| cache.hash(p, m).ok())
                .flatten(),
            path: rel,
            kind,
            mode: m.permissions().mode() & 0o7777,
            size: if kind == EntryKind::Directory {
                0
            } else {
                m.len()
            },
            link_target: (kind == EntryKind::Symlink)
                .then(|| std::fs::read_link(p).ok().map(|t| t.display().to_string()))
                .flatten(),
        }))
    })?;
    out.flush()
        .map_err(|e| AgentError::new(ErrorKind::Io, format!("sending the manifest: {e}")))?;
    Ok(count)
}

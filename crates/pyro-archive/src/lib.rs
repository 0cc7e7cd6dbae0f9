//! Tar archives for pyro workspaces, with one set of rules on both sides of
//! the wire (the host packing a seed or unpacking an export, the agent
//! unpacking a seed or a sync):
//!
//! - members have relative, normalized names (no `..`, nothing absolute);
//! - only regular files, directories and symlinks; no hard links, devices,
//!   FIFOs or sockets;
//! - symlinks must be relative and stay inside the tree (`node_modules/.bin`
//!   style links are fine, `/etc/passwd` or `../../x` are not);
//! - file modes (executable bits included) and modification times survive.
//!
//! Extraction is all or nothing: every member is validated and unpacked into
//! a staging directory beside the destination first; only when the whole
//! archive has arrived and nothing conflicts are the entries moved into
//! place. A transfer that breaks off leaves the destination untouched.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

pub use pyro_protocol::{EntryKind, ErrorKind};

mod extract;
mod pack;

pub use extract::*;
pub use pack::*;

/// Why an archive operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveError {
    /// Failure class.
    pub kind: ErrorKind,
    /// What happened and what to do.
    pub message: String,
}

impl std::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ArchiveError {}

impl From<ArchiveError> for pyro_protocol::AgentError {
    fn from(e: ArchiveError) -> Self {
        pyro_protocol::AgentError::new(e.kind, e.message)
    }
}

impl ArchiveError {
    fn new(kind: ErrorKind, message: String) -> Self {
        Self { kind, message }
    }
}

/// What kind of entry this metadata describes.
pub fn kind_of(m: &Metadata) -> EntryKind {
    let t = m.file_type();
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Directory
    } else if t.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

/// Visits every entry below `dir` (depth-first, sorted, symlinks not
/// followed).
pub fn walk(
    dir: &Path,
    recursive: bool,
    f: &mut dyn FnMut(&Path, &Metadata),
) -> Result<(), ArchiveError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io("listing", dir, &e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        f(&p, &m);
        if recursive && m.is_dir() {
            walk(&p, true, f)?;
        }
    }
    Ok(())
}

/// Validates a relative member name: not empty, not absolute, no `..`.
pub fn relative_member(name: &str) -> Result<PathBuf, String> {
    let p = Path::new(name);
    if name.is_empty() || p.is_absolute() {
        return Err(format!("{name:?} is not a relative path"));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "{name:?} escapes the destination (`..` or an absolute path)"
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("{name:?} names no file"));
    }
    Ok(out)
}

/// Whether a symlink at `link` (relative to a tree root) pointing to
/// `target` stays inside that tree.
///
/// `..` may appear only as a leading run (`../../lib/x`), never after a name
/// (`a/../..`): the name could itself be a symlink, and `..` after it climbs
/// from wherever that link points, so a lexical check would be fooled by a
/// chain such as `d/up -> ..` plus `x -> d/up/..`.
pub fn symlink_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() || target.as_os_str().is_empty() {
        return false;
    }
    // The link's directory depth counts its names only: `./a` is at the
    // top, like `a`. A link path that climbs or is absolute is not inside.
    let mut depth: i64 = -1;
    for c in link.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
    }
    let mut named = false;
    for c in target.components() {
        match c {
            Component::ParentDir if named => return false,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => named = true,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn bad(msg: String) -> ArchiveError {
    ArchiveError::new(ErrorKind::BadRequest, msg)
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> ArchiveError {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        ErrorKind::NotFound
    } else {
        ErrorKind::Io
    };
    ArchiveError::new(kind, format!("{what} {}: {e}", path.display()))
}

/// A member that passed the rules.
#[derive(Debug)]
struct Member {
    /// Normalized relative path.
    rel: PathBuf,
    /// What it is.
    kind: EntryKind,
    /// Target, for symlinks.
    link_target: Option<PathBuf>,
}

/// Applies the rules to one archive member: `None` for headers to skip and
/// the archive's own root, or why the member is refused.
fn member<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Option<Member>, ArchiveError> {
    let raw = entry
        .path()
        .map_err(|e| bad(format!("bad member name: {e}")))?
        .display()
        .to_string();
    let Some(kind) = member_kind(entry, &raw)? else {
        return Ok(None);
    };
    let rel = match relative_member(&raw) {
        Ok(r) => r,
        // The archive's own root ("./") is not a member.
        Err(_) if kind == EntryKind::Directory && is_root(&raw) => return Ok(None),
        Err(e) => return Err(bad(format!("unsafe member: {e}"))),
    };
    let link_target = if kind == EntryKind::Symlink {
        let target = entry
            .link_name()
            .ok()
            .flatten()
            .map(|t| t.into_owned())
            .unwrap_or_default();
        check_link(&rel, &target)?;
        Some(target)
    } else {
        None
    };
    Ok(Some(Member {
        rel,
        kind,
        link_target,
    }))
}

/// Whether a member name is the archive's own root (`.`, `./`).
fn is_root(raw: &str) -> bool {
    Path::new(raw)
        .components()
        .all(|c| matches!(c, Component::CurDir))
}

/// The kind of a member, `None` for headers to skip, or why it is refused.
fn member_kind<R: Read>(
    entry: &tar::Entry<'_, R>,
    raw: &str,
) -> Result<Option<EntryKind>, ArchiveError> {
    Ok(Some(match entry.header().entry_type() {
        // Sparse files (GNU sparse entries) are regular files with holes.
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File
        }
        tar::EntryType::Directory => EntryKind::Directory,
        tar::EntryType::Symlink => EntryKind::Symlink,
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Err(bad(format!(
                "{raw} is a hard link (to {target}); archives for a workspace may not contain hard links"
            )));
        }
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(None),
        other => {
            return Err(bad(format!(
                "{raw} is a {other:?} entry; archives for a workspace may hold only files, directories and symlinks"
            )));
        }
    }))
}

fn check_link(rel: &Path, target: &Path) -> Result<(), ArchiveError> {
    if symlink_stays_inside(rel, target) {
        Ok(())
    } else {
        Err(bad(format!(
            "{} is a symlink to {} which points outside the archive; only relative links that stay inside are allowed",
            rel.display(),
            target.display()
        )))
    }
}

#[cfg(test)]
mod tests;

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
    let mut depth: i64 = link.components().count() as i64 - 1;
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

/// Unpacks the tar read from `input` into the existing directory `dest`.
/// Returns (entries, bytes of file content).
pub fn extract(input: impl Read, dest: &Path) -> Result<(u64, u64), ArchiveError> {
    let stage = dest.join(format!(".pyro-stage-{}-{}", std::process::id(), unique()));
    std::fs::create_dir(&stage).map_err(|e| io("creating", &stage, &e))?;
    let result = extract_staged(input, dest, &stage);
    let _ = std::fs::remove_dir_all(&stage);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn extract_staged(input: impl Read, dest: &Path, stage: &Path) -> Result<(u64, u64), ArchiveError> {
    let mut archive = tar::Archive::new(input);
    // No setuid or setgid files come out of an archive: a guest could
    // otherwise hand the host a setuid binary in an export.
    archive.set_mask(0o6000);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_preserve_ownerships(false);
    archive.set_overwrite(true);
    // Later members of the same path replace earlier ones, as with tar. The
    // staged tree is the list of members (memory stays flat whatever their
    // number); only directories named in the archive are remembered, so
    // only their modes are applied to directories that already exist.
    let mut explicit_dirs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut bytes = 0u64;
    let mut count = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| bad(format!("the archive is corrupt or was cut short: {e}")))?;
        let Some(Member { rel, kind, .. }) = member(&entry)? else {
            continue;
        };
        let staged = stage.join(&rel);
        // Nothing is ever written through a symlink (or below a file) that
        // an earlier member made.
        let mut ancestor = stage.to_path_buf();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            ancestor.push(c);
            if let Ok(m) = std::fs::symlink_metadata(&ancestor)
                && !m.is_dir()
            {
                return Err(ArchiveError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} is a {:?} in the archive, so {} cannot be written below it",
                        ancestor.strip_prefix(stage).unwrap_or(&ancestor).display(),
                        kind_of(&m),
                        rel.display()
                    ),
                ));
            }
        }
        if let Some(parent) = staged.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, &e))?;
        }
        let replaced = std::fs::symlink_metadata(&staged);
        if replaced.is_err() || kind == EntryKind::Directory && !explicit_dirs.contains(&rel) {
            // A new member (a directory created only as a parent so far
            // becomes one now).
            count += 1;
        }
        if let Ok(m) = replaced {
            if (kind_of(&m) == EntryKind::Directory) != (kind == EntryKind::Directory) {
                return Err(ArchiveError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} appears in the archive both as a directory and as a file",
                        rel.display()
                    ),
                ));
            }
            // A later member of the same path replaces the earlier one
            // (never written through, if that one was a symlink).
            if !m.is_dir() {
                std::fs::remove_file(&staged).map_err(|e| io("replacing", &rel, &e))?;
            }
        }
        if kind == EntryKind::File {
            bytes += entry.header().size().unwrap_or(0);
        }
        entry
            .unpack(&staged)
            .map_err(|e| io("unpacking", &rel, &e))?;
        if kind == EntryKind::Directory {
            explicit_dirs.insert(rel);
        }
    }
    // The archive's end marker is not the end of the transfer: read to the
    // real end, so a transfer that breaks off after it still changes
    // nothing.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .map_err(|e| bad(format!("the archive is corrupt or was cut short: {e}")))?;
    check_conflicts(dest, stage, Path::new(""))?;
    commit(dest, stage, Path::new(""), &explicit_dirs)?;
    Ok((count, bytes))
}

/// The names in staged directory `dir`, sorted.
fn staged_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, ArchiveError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io("listing", dir, &e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| io("listing", dir, &e))?;
    names.sort();
    Ok(names)
}

/// Fails if any staged entry (below `rel`) would replace a directory by a
/// file (or the other way round), or would be written through a symlink or
/// below a file. Walks the staged tree; a subtree new to `dest` cannot
/// conflict and is not descended into.
fn check_conflicts(dest: &Path, stage: &Path, rel: &Path) -> Result<(), ArchiveError> {
    for name in staged_names(&stage.join(rel))? {
        let rel = rel.join(&name);
        let staged_dir = std::fs::symlink_metadata(stage.join(&rel))
            .map_err(|e| io("reading", &rel, &e))?
            .is_dir();
        let target = dest.join(&rel);
        let Ok(m) = std::fs::symlink_metadata(&target) else {
            continue;
        };
        let existing = kind_of(&m);
        if (existing == EntryKind::Directory) != staged_dir {
            let msg = if staged_dir {
                format!(
                    "{} is a {existing:?} in the workspace, so the archive's entries below it \
                     cannot be written; remove it first",
                    target.display()
                )
            } else {
                format!(
                    "{} is a Directory in the workspace and a file in the archive; remove it first",
                    target.display()
                )
            };
            return Err(ArchiveError::new(ErrorKind::Conflict, msg));
        }
        if staged_dir {
            check_conflicts(dest, stage, &rel)?;
        }
    }
    Ok(())
}

/// Moves staged entries below `rel` into place: a directory new to `dest`
/// in one rename, files one by one, parents first. Directory modes named in
/// the archive are applied to directories that already existed afterwards
/// (children first, so read-only directories can still be filled).
fn commit(
    dest: &Path,
    stage: &Path,
    rel: &Path,
    explicit_dirs: &BTreeSet<PathBuf>,
) -> Result<(), ArchiveError> {
    for name in staged_names(&stage.join(rel))? {
        let rel = rel.join(&name);
        let (from, target) = (stage.join(&rel), dest.join(&rel));
        let m = std::fs::symlink_metadata(&from).map_err(|e| io("reading", &rel, &e))?;
        if m.is_dir() && target.is_dir() {
            commit(dest, stage, &rel, explicit_dirs)?;
            if explicit_dirs.contains(&rel) {
                let _ = std::fs::set_permissions(
                    &target,
                    std::fs::Permissions::from_mode(m.permissions().mode()),
                );
            }
        } else {
            std::fs::rename(&from, &target).map_err(|e| io("placing", &target, &e))?;
        }
    }
    Ok(())
}

/// Writes a tar of `path` to `out`: a directory's contents (names relative
/// to it), or a single file or symlink under its own name. Symlinks are
/// archived as symlinks. Returns (kind, entries, bytes).
pub fn create(path: &Path, out: impl Write) -> Result<(EntryKind, u64, u64), ArchiveError> {
    let m = std::fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ArchiveError::new(
                ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            )
        } else {
            io("reading", path, &e)
        }
    })?;
    let kind = kind_of(&m);
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let (mut entries, mut bytes) = (0u64, 0u64);
    match kind {
        EntryKind::Directory => {
            let mut err = None;
            walk(path, true, &mut |p, m| {
                if err.is_some() {
                    return;
                }
                let rel = p.strip_prefix(path).unwrap_or(p);
                if rel.to_string_lossy().starts_with(".pyro-stage-") {
                    return;
                }
                if kind_of(m) == EntryKind::Other {
                    return;
                }
                if let Err(e) = b.append_path_with_name(p, rel) {
                    err = Some(io("archiving", p, &e));
                }
                entries += 1;
                if m.is_file() {
                    bytes += m.len();
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
        }
        EntryKind::File | EntryKind::Symlink => {
            let name = path.file_name().map(PathBuf::from).unwrap_or_default();
            b.append_path_with_name(path, &name)
                .map_err(|e| io("archiving", path, &e))?;
            entries = 1;
            bytes = if kind == EntryKind::File { m.len() } else { 0 };
        }
        EntryKind::Other => {
            return Err(bad(format!(
                "{} is not a file, directory or symlink",
                path.display()
            )));
        }
    }
    b.into_inner()
        .map_err(|e| io("finishing the archive of", path, &e))?
        .flush()
        .map_err(|e| io("sending", path, &e))?;
    Ok((kind, entries, bytes))
}

/// Writes a tar of the listed files (relative to `root`); missing ones are
/// skipped. Returns the number archived.
pub fn create_selected(
    root: &Path,
    paths: &[String],
    out: impl Write,
) -> Result<u64, ArchiveError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let mut n = 0;
    for p in paths {
        let rel = relative_member(p).map_err(bad)?;
        let full = root.join(&rel);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if m.is_file() || m.file_type().is_symlink() => {
                b.append_path_with_name(&full, &rel)
                    .map_err(|e| io("archiving", &full, &e))?;
                n += 1;
            }
            _ => {}
        }
    }
    b.into_inner()
        .map_err(|e| io("finishing the archive of", root, &e))?
        .flush()
        .map_err(|e| io("sending", root, &e))?;
    Ok(n)
}

/// What packing wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packed {
    /// Members written.
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Packs the tree under `src` into a tar on `out`, by the rules above. With
/// `only`, packs just those relative paths (and the directories leading to
/// them). Fails naming the first entry the rules forbid.
pub fn pack_tree(
    src: &Path,
    only: Option<&BTreeSet<PathBuf>>,
    out: impl Write,
) -> Result<Packed, ArchiveError> {
    let mut wanted_dirs = BTreeSet::new();
    if let Some(only) = only {
        for p in only {
            let mut a = p.parent();
            while let Some(d) = a.filter(|d| !d.as_os_str().is_empty()) {
                wanted_dirs.insert(d.to_path_buf());
                a = d.parent();
            }
        }
    }
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let mut packed = Packed::default();
    let mut err = None;
    walk(src, true, &mut |p, m| {
        if err.is_some() {
            return;
        }
        let rel = p.strip_prefix(src).unwrap_or(p).to_path_buf();
        if let Some(only) = only
            && !only.contains(&rel)
            && !wanted_dirs.contains(&rel)
        {
            return;
        }
        let kind = kind_of(m);
        match kind {
            EntryKind::Other => {
                err = Some(bad(format!(
                    "{} is a socket, device or FIFO; a workspace may hold only files, directories and symlinks",
                    p.display()
                )));
                return;
            }
            EntryKind::Symlink => {
                let target = std::fs::read_link(p).unwrap_or_default();
                if !symlink_stays_inside(&rel, &target) {
                    err = Some(bad(format!(
                        "{} is a symlink to {} outside {}; pyro never follows or copies links that leave the tree \
                         (replace it with a relative link inside, or remove it)",
                        p.display(),
                        target.display(),
                        src.display()
                    )));
                    return;
                }
            }
            _ => {}
        }
        if let Err(e) = b.append_path_with_name(p, &rel) {
            err = Some(io("packing", p, &e));
            return;
        }
        packed.entries += 1;
        if kind == EntryKind::File {
            packed.bytes += m.len();
        }
    })?;
    if let Some(e) = err {
        return Err(e);
    }
    b.into_inner()
        .map_err(|e| io("finishing the archive of", src, &e))?
        .flush()
        .map_err(|e| io("writing", src, &e))?;
    Ok(packed)
}

/// Reads an (uncompressed) tar and writes a normalized copy that obeys the
/// rules, or fails naming the first member that does not. Nothing touches
/// the disk.
pub fn repack(input: impl Read, out: impl Write) -> Result<Packed, ArchiveError> {
    let mut archive = tar::Archive::new(input);
    let mut b = tar::Builder::new(out);
    let mut packed = Packed::default();
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| bad(format!("the archive is corrupt or was cut short: {e}")))?;
        let Some(Member {
            rel,
            kind,
            link_target,
        }) = member(&entry)?
        else {
            continue;
        };
        let mut h = entry.header().clone();
        match link_target {
            Some(target) => b
                .append_link(&mut h, &rel, &target)
                .map_err(|e| io("repacking", &rel, &e))?,
            None => {
                if kind == EntryKind::File {
                    packed.bytes += h.size().unwrap_or(0);
                }
                b.append_data(&mut h, &rel, &mut entry)
                    .map_err(|e| io("repacking", &rel, &e))?;
            }
        }
        packed.entries += 1;
    }
    b.into_inner()
        .map_err(|e| io("finishing", Path::new("archive"), &e))?
        .flush()
        .map_err(|e| io("writing", Path::new("archive"), &e))?;
    Ok(packed)
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
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, body: &[u8], mode: u32) {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, body).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str, kind: tar::EntryType) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(kind);
        h.set_mode(0o777);
        b.append_link(&mut h, name, target).unwrap();
    }

    #[test]
    fn extracts_modes_and_inside_symlinks() {
        let dest = tempfile::tempdir().unwrap();
        let data = tar_of(|b| {
            file(b, "bin/run.sh", b"#!/bin/sh\n", 0o755);
            file(b, "node_modules/pkg/cli.js", b"x", 0o644);
            link(
                b,
                "node_modules/.bin/cli",
                "../pkg/cli.js",
                tar::EntryType::Symlink,
            );
        });
        let (entries, bytes) = extract(data.as_slice(), dest.path()).unwrap();
        assert_eq!((entries, bytes), (3, 11));
        let m = std::fs::metadata(dest.path().join("bin/run.sh")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(dest.path().join("node_modules/.bin/cli")).unwrap(),
            Path::new("../pkg/cli.js")
        );
        assert_eq!(
            std::fs::read_dir(dest.path()).unwrap().count(),
            2,
            "staging left behind"
        );
    }

    #[test]
    fn refuses_unsafe_members_and_changes_nothing() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                tar_of(|b| link(b, "etc", "/etc", tar::EntryType::Symlink)),
                "points outside",
            ),
            (
                tar_of(|b| link(b, "a/up", "../../x", tar::EntryType::Symlink)),
                "points outside",
            ),
            (
                tar_of(|b| {
                    file(b, "a", b"1", 0o644);
                    link(b, "b", "a", tar::EntryType::Link)
                }),
                "hard link",
            ),
            (
                tar_of(|b| {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_size(0);
                    b.append_data(&mut h, "fifo", &[][..]).unwrap();
                }),
                "only files, directories and symlinks",
            ),
        ];
        for (data, msg) in cases {
            let dest = tempfile::tempdir().unwrap();
            std::fs::write(dest.path().join("keep"), "old").unwrap();
            let err = extract(data.as_slice(), dest.path()).unwrap_err();
            assert!(err.message.contains(msg), "{err:?} lacks {msg}");
            let names: Vec<_> = std::fs::read_dir(dest.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(names, ["keep"]);
        }
        // tar itself refuses `..` names, so build that header by hand.
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(&[b'x'; 512]);
        raw.extend_from_slice(&[0u8; 1024]);
        let dest = tempfile::tempdir().unwrap();
        let err = extract(raw.as_slice(), dest.path()).unwrap_err();
        assert!(err.message.contains("escapes"), "{err:?}");
    }

    #[test]
    fn chained_symlinks_cannot_climb_out() {
        // `d/up -> ..` is the root; `x -> d/up/..` would be its parent.
        assert!(symlink_stays_inside(Path::new("d/up"), Path::new("..")));
        assert!(!symlink_stays_inside(Path::new("x"), Path::new("d/up/..")));
        assert!(symlink_stays_inside(
            Path::new("node_modules/.bin/cli"),
            Path::new("../pkg/cli.js")
        ));
        let data = tar_of(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            b.append_data(&mut h, "d", &[][..]).unwrap();
            link(b, "d/up", "..", tar::EntryType::Symlink);
            link(b, "x", "d/up/..", tar::EntryType::Symlink);
        });
        let dest = tempfile::tempdir().unwrap();
        let err = extract(data.as_slice(), dest.path()).unwrap_err();
        assert!(err.message.contains("outside"), "{err:?}");
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    }

    #[test]
    fn members_are_never_written_through_an_archived_symlink() {
        let dest_parent = tempfile::tempdir().unwrap();
        let dest = dest_parent.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let data = tar_of(|b| {
            link(b, "l", ".", tar::EntryType::Symlink);
            file(b, "l/through.txt", b"x", 0o644);
        });
        let err = extract(data.as_slice(), &dest).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict, "{err:?}");
        assert!(err.message.contains("cannot be written below"), "{err:?}");
        assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);
        // A later member of the same name replaces a symlink rather than
        // writing through it.
        let data = tar_of(|b| {
            link(b, "f", "g", tar::EntryType::Symlink);
            file(b, "f", b"plain", 0o644);
        });
        extract(data.as_slice(), &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("f")).unwrap(), b"plain");
        assert!(!dest.join("g").exists());
    }

    #[test]
    fn setuid_and_setgid_bits_are_dropped() {
        let dest = tempfile::tempdir().unwrap();
        let data = tar_of(|b| {
            file(b, "suid", b"x", 0o4755);
            file(b, "sgid", b"x", 0o2755);
            file(b, "plain", b"x", 0o755);
        });
        extract(data.as_slice(), dest.path()).unwrap();
        for name in ["suid", "sgid", "plain"] {
            let mode = std::fs::metadata(dest.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o7777, 0o755, "{name}: {mode:o}");
        }
    }

    #[test]
    fn a_transfer_cut_after_the_end_marker_changes_nothing() {
        let dest = tempfile::tempdir().unwrap();
        let data = tar_of(|b| file(b, "a.txt", b"aaaa", 0o644));
        // The whole tar arrives, then the stream fails instead of ending.
        let broken = data.as_slice().chain(FailingReader);
        assert!(extract(broken, dest.path()).is_err());
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    }

    struct FailingReader;
    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "broke off",
            ))
        }
    }

    #[test]
    fn a_broken_transfer_changes_nothing() {
        let dest = tempfile::tempdir().unwrap();
        let data = tar_of(|b| {
            file(b, "a.txt", b"aaaa", 0o644);
            file(b, "b.txt", &[1u8; 4096], 0o644);
        });
        struct Broken<'a>(&'a [u8]);
        impl Read for Broken<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "broke off",
                    ));
                }
                let n = out.len().min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        assert!(extract(Broken(&data[..1500]), dest.path()).is_err());
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    }

    #[test]
    fn type_conflicts_are_refused_before_anything_moves() {
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir(dest.path().join("d")).unwrap();
        let data = tar_of(|b| {
            file(b, "new.txt", b"n", 0o644);
            file(b, "d", b"would replace a dir", 0o644);
        });
        let err = extract(data.as_slice(), dest.path()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(!dest.path().join("new.txt").exists());
    }

    #[test]
    fn create_round_trips_modes_and_symlinks() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/x.sh"), "echo").unwrap();
        std::fs::set_permissions(
            src.path().join("d/x.sh"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        symlink("d/x.sh", src.path().join("l")).unwrap();
        let mut out = Vec::new();
        let (kind, entries, bytes) = create(src.path(), &mut out).unwrap();
        assert_eq!((kind, entries, bytes), (EntryKind::Directory, 3, 4));
        let dest = tempfile::tempdir().unwrap();
        extract(out.as_slice(), dest.path()).unwrap();
        let m = std::fs::metadata(dest.path().join("d/x.sh")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o750);
        assert_eq!(
            std::fs::read_link(dest.path().join("l")).unwrap(),
            Path::new("d/x.sh")
        );
        let mut sel = Vec::new();
        assert_eq!(
            create_selected(src.path(), &["d/x.sh".into(), "missing".into()], &mut sel).unwrap(),
            1
        );
    }

    #[test]
    fn pack_tree_keeps_modes_and_inside_links_and_refuses_the_rest() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("node_modules/pkg")).unwrap();
        std::fs::create_dir_all(src.path().join("node_modules/.bin")).unwrap();
        std::fs::write(src.path().join("node_modules/pkg/cli.js"), "x").unwrap();
        std::fs::set_permissions(
            src.path().join("node_modules/pkg/cli.js"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        symlink("../pkg/cli.js", src.path().join("node_modules/.bin/cli")).unwrap();
        let mut out = Vec::new();
        let packed = pack_tree(src.path(), None, &mut out).unwrap();
        assert_eq!(
            packed,
            Packed {
                entries: 5,
                bytes: 1
            }
        );
        let dest = tempfile::tempdir().unwrap();
        extract(out.as_slice(), dest.path()).unwrap();
        let m = std::fs::metadata(dest.path().join("node_modules/pkg/cli.js")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);

        symlink("/etc/passwd", src.path().join("leak")).unwrap();
        let err = pack_tree(src.path(), None, Vec::new()).unwrap_err();
        assert!(
            err.message.contains("outside") && err.message.contains("leak"),
            "{err}"
        );
        std::fs::remove_file(src.path().join("leak")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(src.path().join("sock")).unwrap();
        let err = pack_tree(src.path(), None, Vec::new()).unwrap_err();
        assert!(err.message.contains("socket, device or FIFO"), "{err}");
    }

    #[test]
    fn sparse_files_round_trip() {
        let src = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(src.path().join("sparse.img")).unwrap();
        f.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&f, b"tail", (8 << 20) - 4).unwrap();
        drop(f);
        let mut out = Vec::new();
        pack_tree(src.path(), None, &mut out).unwrap();
        let dest = tempfile::tempdir().unwrap();
        extract(out.as_slice(), dest.path()).unwrap();
        let got = std::fs::read(dest.path().join("sparse.img")).unwrap();
        assert_eq!(got.len(), 8 << 20);
        assert_eq!(&got[got.len() - 4..], b"tail");
        let mut again = Vec::new();
        repack(out.as_slice(), &mut again).unwrap();
    }

    #[test]
    fn pack_tree_only_takes_the_listed_paths() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("a/b/tracked.txt"), "t").unwrap();
        std::fs::write(src.path().join("untracked.txt"), "u").unwrap();
        let only: BTreeSet<PathBuf> = [PathBuf::from("a/b/tracked.txt")].into();
        let mut out = Vec::new();
        let packed = pack_tree(src.path(), Some(&only), &mut out).unwrap();
        assert_eq!(packed.entries, 3, "a, a/b, a/b/tracked.txt");
        let dest = tempfile::tempdir().unwrap();
        extract(out.as_slice(), dest.path()).unwrap();
        assert!(dest.path().join("a/b/tracked.txt").exists());
        assert!(!dest.path().join("untracked.txt").exists());
    }

    #[test]
    fn repack_normalizes_and_refuses_like_extract() {
        let data = tar_of(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_mode(0o755);
            b.append_data(&mut h, "./", &[][..]).unwrap();
            file(b, "./x.sh", b"run", 0o700);
        });
        let mut out = Vec::new();
        assert_eq!(
            repack(data.as_slice(), &mut out).unwrap(),
            Packed {
                entries: 1,
                bytes: 3
            }
        );
        let dest = tempfile::tempdir().unwrap();
        extract(out.as_slice(), dest.path()).unwrap();
        assert_eq!(
            std::fs::metadata(dest.path().join("x.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let bad = tar_of(|b| link(b, "l", "/abs", tar::EntryType::Symlink));
        assert!(
            repack(bad.as_slice(), Vec::new())
                .unwrap_err()
                .message
                .contains("outside")
        );
        assert!(repack(&b"not a tar archive at all"[..], Vec::new()).is_err());
    }
}

//! Extraction: staged, checked against the destination, committed all or
//! nothing.

use super::*;

/// Unpacks the tar read from `input` into the existing directory `dest`.
/// Returns (entries, bytes of file content).
pub fn extract(input: impl Read, dest: &Path) -> Result<(u64, u64), ArchiveError> {
    let stage = dest.join(format!(".pyro-stage-{}-{}", std::process::id(), unique()));
    std::fs::create_dir(&stage).map_err(|e| io("creating", &stage, &e))?;
    let result = extract_staged(input, dest, &stage);
    let _ = std::fs::remove_dir_all(&stage);
    result
}

pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn extract_staged(
    input: impl Read,
    dest: &Path,
    stage: &Path,
) -> Result<(u64, u64), ArchiveError> {
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
pub(crate) fn staged_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, ArchiveError> {
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
pub(crate) fn check_conflicts(dest: &Path, stage: &Path, rel: &Path) -> Result<(), ArchiveError> {
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
pub(crate) fn commit(
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

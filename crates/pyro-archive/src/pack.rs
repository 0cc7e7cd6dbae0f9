//! Packing: one path, selected members, whole trees, and repacking an
//! archive under the extraction rules.

use super::*;

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

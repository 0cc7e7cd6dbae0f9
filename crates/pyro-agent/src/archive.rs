//! Tar archives in and out of the workspace.
//!
//! Extraction is all or nothing: every member is validated (relative path,
//! no `..`, no hard links or devices, symlinks that stay inside the tree) and
//! unpacked into a staging directory beside the destination first; only when
//! the whole archive has arrived and nothing conflicts are the entries moved
//! into place. A transfer that breaks off leaves the destination untouched.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pyro_protocol::{AgentError, EntryKind, ErrorKind};

use crate::files::kind_of;
use crate::paths::{relative_member, symlink_stays_inside};

fn bad(msg: String) -> AgentError {
    AgentError::new(ErrorKind::BadRequest, msg)
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> AgentError {
    AgentError::new(ErrorKind::Io, format!("{what} {}: {e}", path.display()))
}

/// Unpacks the tar read from `input` into the existing directory `dest`.
/// Returns (entries, bytes of file content).
pub fn extract(input: impl Read, dest: &Path) -> Result<(u64, u64), AgentError> {
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

fn extract_staged(input: impl Read, dest: &Path, stage: &Path) -> Result<(u64, u64), AgentError> {
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_preserve_ownerships(false);
    archive.set_overwrite(true);
    // Later members of the same path replace earlier ones, as with tar.
    let mut members: BTreeMap<PathBuf, EntryKind> = BTreeMap::new();
    let mut bytes = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| bad(format!("the archive is corrupt or was cut short: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| bad(format!("bad member name: {e}")))?
            .display()
            .to_string();
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
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
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(bad(format!(
                    "{raw} is a {other:?} entry; archives for a workspace may hold only files, directories and symlinks"
                )));
            }
        };
        let rel = match relative_member(&raw) {
            Ok(r) => r,
            // The archive's own root ("./") is not a member.
            Err(_)
                if kind == EntryKind::Directory
                    && raw
                        .trim_end_matches('/')
                        .trim_start_matches("./")
                        .is_empty() =>
            {
                continue;
            }
            Err(e) => return Err(bad(format!("unsafe member: {e}"))),
        };
        if kind == EntryKind::Symlink {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if !symlink_stays_inside(&rel, &target) {
                return Err(bad(format!(
                    "{} is a symlink to {} which points outside the archive; only relative links that stay inside are allowed",
                    rel.display(),
                    target.display()
                )));
            }
        }
        let staged = stage.join(&rel);
        if let Some(parent) = staged.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, &e))?;
        }
        if let Ok(m) = std::fs::symlink_metadata(&staged)
            && (kind_of(&m) == EntryKind::Directory) != (kind == EntryKind::Directory)
        {
            return Err(AgentError::new(
                ErrorKind::Conflict,
                format!(
                    "{} appears in the archive both as a directory and as a file",
                    rel.display()
                ),
            ));
        }
        if kind == EntryKind::File {
            bytes += entry.header().size().unwrap_or(0);
        }
        entry
            .unpack(&staged)
            .map_err(|e| io("unpacking", &rel, &e))?;
        members.insert(rel, kind);
    }
    check_conflicts(dest, &members)?;
    commit(dest, stage, &members)?;
    Ok((members.len() as u64, bytes))
}

/// Fails if any member would replace a directory by a file (or the other
/// way round), or would be written through a symlink or below a file.
fn check_conflicts(dest: &Path, members: &BTreeMap<PathBuf, EntryKind>) -> Result<(), AgentError> {
    for (rel, kind) in members {
        let mut cur = dest.to_path_buf();
        let comps: Vec<_> = rel.components().collect();
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let Ok(m) = std::fs::symlink_metadata(&cur) else {
                break;
            };
            let existing = kind_of(&m);
            let last = i + 1 == comps.len();
            if !last && existing != EntryKind::Directory {
                return Err(AgentError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} is a {existing:?} in the workspace, so {} cannot be written below it",
                        cur.display(),
                        rel.display()
                    ),
                ));
            }
            if last && (existing == EntryKind::Directory) != (*kind == EntryKind::Directory) {
                return Err(AgentError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} is a {existing:?} in the workspace and a {kind:?} in the archive; remove it first",
                        cur.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Moves staged entries into place (parents first), then applies directory
/// modes (children first, so read-only directories can still be filled).
fn commit(
    dest: &Path,
    stage: &Path,
    members: &BTreeMap<PathBuf, EntryKind>,
) -> Result<(), AgentError> {
    for (rel, kind) in members {
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, &e))?;
        }
        if *kind == EntryKind::Directory {
            if !target.is_dir() {
                std::fs::create_dir(&target).map_err(|e| io("creating", &target, &e))?;
            }
        } else {
            std::fs::rename(stage.join(rel), &target).map_err(|e| io("placing", &target, &e))?;
        }
    }
    for (rel, _) in members
        .iter()
        .rev()
        .filter(|(_, k)| **k == EntryKind::Directory)
    {
        if let Ok(m) = std::fs::metadata(stage.join(rel)) {
            let _ = std::fs::set_permissions(
                dest.join(rel),
                std::fs::Permissions::from_mode(m.permissions().mode()),
            );
        }
    }
    Ok(())
}

/// Writes a tar of `path` to `out`: a directory's contents (names relative
/// to it), or a single file or symlink under its own name. Symlinks are
/// archived as symlinks. Returns (kind, entries, bytes).
pub fn create(path: &Path, out: impl Write) -> Result<(EntryKind, u64, u64), AgentError> {
    let m = std::fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            AgentError::new(
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
            crate::files::walk(path, true, &mut |p, m| {
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
pub fn create_selected(root: &Path, paths: &[String], out: impl Write) -> Result<u64, AgentError> {
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
}

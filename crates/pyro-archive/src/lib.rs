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
        // Found by the `paths` fuzz target: `.` in the link's own path is
        // not a level.
        assert!(!symlink_stays_inside(Path::new("./a"), Path::new("../x")));
        assert!(!symlink_stays_inside(
            Path::new("a/./b"),
            Path::new("../../x")
        ));
        assert!(symlink_stays_inside(Path::new("./d/a"), Path::new("../x")));
        assert!(!symlink_stays_inside(Path::new("../a"), Path::new("x")));
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

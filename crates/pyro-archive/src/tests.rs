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

/// A writer that takes nothing.
struct Full;

impl Write for Full {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("no space left"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::Error::other("no space left"))
    }
}

/// `create` of what is not there, of what is not a file, directory or
/// symlink, and into a writer that fails: each a clear error. A tree's
/// FIFOs and pyro's own staging directories are left out; a single file
/// or link goes under its own name.
#[test]
fn create_refuses_what_it_cannot_pack_and_leaves_out_what_it_must() {
    let src = tempfile::tempdir().unwrap();
    let e = create(&src.path().join("missing"), Vec::new()).unwrap_err();
    assert!(
        e.kind == ErrorKind::NotFound && e.to_string().contains("does not exist"),
        "{e}"
    );
    let fifo = src.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let e = create(&fifo, Vec::new()).unwrap_err();
    assert!(
        e.to_string()
            .contains("is not a file, directory or symlink"),
        "{e}"
    );
    std::fs::create_dir(src.path().join(".pyro-stage-1")).unwrap();
    std::fs::write(src.path().join(".pyro-stage-1/half"), "x").unwrap();
    std::fs::write(src.path().join("kept"), "data").unwrap();
    let mut out = Vec::new();
    let (kind, entries, bytes) = create(src.path(), &mut out).unwrap();
    assert_eq!((kind, entries, bytes), (EntryKind::Directory, 1, 4));
    let mut a = tar::Archive::new(out.as_slice());
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["kept"]);
    let mut one = Vec::new();
    let (kind, entries, bytes) = create(&src.path().join("kept"), &mut one).unwrap();
    assert_eq!((kind, entries, bytes), (EntryKind::File, 1, 4));
    // A writer that fails: the error says so, for a tree and for a file.
    let e = create(src.path(), Full).unwrap_err();
    assert!(e.to_string().contains("no space left"), "{e}");
    let e = create(&src.path().join("kept"), Full).unwrap_err();
    assert!(e.to_string().contains("no space left"), "{e}");
}

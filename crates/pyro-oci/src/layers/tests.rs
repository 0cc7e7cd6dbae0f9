use super::*;

/// A tar entry with raw bytes for its name (the tar crate's builder
/// refuses `..`, which is what hostile layers hold).
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }
    fn raw(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        let mode = if kind.is_dir() { 0o755 } else { 0o644 };
        self.entry(name.as_bytes(), kind, mode, link, data)
    }
    /// An entry with a name of any bytes and its own mode.
    fn entry(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        mode: u32,
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.as_gnu_mut().unwrap().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn dir(&mut self, n: &str) -> &mut Self {
        self.raw(n, tar::EntryType::Directory, None, b"")
    }
    fn file(&mut self, n: &str, d: &str) -> &mut Self {
        self.raw(n, tar::EntryType::Regular, None, d.as_bytes())
    }
    fn done(&mut self, dir: &Path, name: &str, comp: Compression) -> PathBuf {
        let bytes = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap();
        let bytes = match comp {
            Compression::None => bytes,
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut e, &bytes).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(&bytes[..], 1).unwrap(),
        };
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn apply(root: &Path, blob: &Path) -> Result<Applied, OciError> {
    let mut done = Applied::default();
    apply_layer(root, blob, "test", &Limits::default(), &mut done).map(|_| done)
}

#[test]
fn layers_apply_in_order_with_whiteouts_and_opaque_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let l1 = Tar::new()
        .dir("./a/")
        .file("./a/keep", "k")
        .file("./a/gone", "g")
        .dir("opq")
        .file("opq/old", "o")
        .raw("dev-null", tar::EntryType::Char, None, b"")
        .done(tmp.path(), "l1", Compression::Gzip);
    let l2 = Tar::new()
        .file("a/.wh.gone", "")
        .file("opq/new", "n")
        .file("opq/.wh..wh..opq", "")
        .raw("a/hard", tar::EntryType::Link, Some("a/keep"), b"")
        .done(tmp.path(), "l2", Compression::Zstd);
    let d1 = apply(&root, &l1).unwrap();
    assert_eq!(d1.dropped_special, 1);
    let d2 = apply(&root, &l2).unwrap();
    assert_eq!(d2.whiteouts, 2);
    assert_eq!(std::fs::read_to_string(root.join("a/keep")).unwrap(), "k");
    assert!(!root.join("a/gone").exists(), "a whiteout was not honoured");
    assert!(
        !root.join("opq/old").exists(),
        "an opaque directory kept a lower file"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opq/new")).unwrap(),
        "n",
        "the layer's own file went with the opaque marker"
    );
    assert!(!root.join("dev-null").exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        root.join("a/hard").metadata().unwrap().ino(),
        root.join("a/keep").metadata().unwrap().ino()
    );
}

#[test]
fn links_never_lead_out_of_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "s").unwrap();
    let abs = outside.to_str().unwrap().to_owned();
    let l1 = Tar::new()
        .raw("abs", tar::EntryType::Symlink, Some(&abs), b"")
        .raw(
            "rel",
            tar::EntryType::Symlink,
            Some("../../../../outside"),
            b"",
        )
        .raw("loop", tar::EntryType::Symlink, Some("loop"), b"")
        .done(tmp.path(), "l1", Compression::None);
    apply(&root, &l1).unwrap();
    let l2 = Tar::new()
        .file("abs/planted", "x")
        .file("rel/planted", "y")
        .done(tmp.path(), "l2", Compression::None);
    apply(&root, &l2).unwrap();
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "a layer wrote outside the tree"
    );
    // Followed as if the tree were `/`.
    assert_eq!(
        std::fs::read_to_string(
            root.join(outside.strip_prefix("/").unwrap())
                .join("planted")
        )
        .unwrap(),
        "x"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("outside/planted")).unwrap(),
        "y"
    );

    for (name, tar) in [
        (
            "dotdot",
            Tar::new()
                .file("../escape", "e")
                .done(tmp.path(), "b1", Compression::None),
        ),
        (
            "hardlink out",
            Tar::new()
                .raw("h", tar::EntryType::Link, Some("../outside/secret"), b"")
                .done(tmp.path(), "b2", Compression::None),
        ),
        (
            "hardlink to a link",
            Tar::new()
                .raw("h", tar::EntryType::Link, Some("abs"), b"")
                .done(tmp.path(), "b3", Compression::None),
        ),
        (
            "link loop",
            Tar::new()
                .file("loop/x", "x")
                .done(tmp.path(), "b4", Compression::None),
        ),
        (
            "whiteout out",
            Tar::new()
                .file("../.wh.outside", "")
                .done(tmp.path(), "b5", Compression::None),
        ),
    ] {
        let err = apply(&root, &tar).unwrap_err().to_string();
        assert!(err.starts_with("layer test is refused"), "{name}: {err}");
    }
    assert!(
        outside.join("secret").exists(),
        "a whiteout deleted outside the tree"
    );
    // A whiteout through an absolute link deletes inside the tree only.
    let wo = Tar::new()
        .file("abs/.wh.planted", "")
        .done(tmp.path(), "w", Compression::None);
    apply(&root, &wo).unwrap();
    assert!(outside.join("secret").exists());
    assert!(
        !root
            .join(outside.strip_prefix("/").unwrap())
            .join("planted")
            .exists()
    );
}

#[test]
fn limits_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let l =
        Tar::new()
            .file("a", "12345")
            .file("b", "12345")
            .done(tmp.path(), "l", Compression::None);
    let small = Limits {
        max_bytes: 8,
        max_entries: 10,
    };
    let err = apply_layer(&root, &l, "x", &small, &mut Applied::default()).unwrap_err();
    assert!(err.to_string().contains("more than 8 bytes"), "{err}");
    let few = Limits {
        max_bytes: 100,
        max_entries: 1,
    };
    let err = apply_layer(&root, &l, "x", &few, &mut Applied::default()).unwrap_err();
    assert!(err.to_string().contains("more than 1 entries"), "{err}");
    std::fs::write(
        tmp.path().join("junk"),
        b"not a tar at all, just some bytes that go on",
    )
    .unwrap();
    assert!(apply(&root, &tmp.path().join("junk")).is_err());
}

#[test]
fn entry_paths_are_relative_and_bounded() {
    assert_eq!(entry_path(b"./a/b/").unwrap(), PathBuf::from("a/b"));
    assert_eq!(entry_path(b"/abs/x").unwrap(), PathBuf::from("abs/x"));
    assert_eq!(entry_path(b"./").unwrap(), PathBuf::new());
    assert!(entry_path(b"a/../../b").is_err());
    assert!(entry_path(&[b'a'; 300]).is_err());
}

#[test]
fn a_long_name_header_too_big_to_hold_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // A GNU long-name header claiming 64 GiB, and no body at all: the
    // tar crate would try to read it all into memory.
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(64 << 30);
    h.set_cksum();
    let blob = tmp.path().join("l");
    std::fs::write(&blob, h.as_bytes()).unwrap();
    let err = apply(&root, &blob).unwrap_err().to_string();
    assert!(err.contains("long name or PAX header"), "{err}");
}

#[test]
fn read_only_directories_still_take_their_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut t = Tar::new();
    t.dir("ro/");
    let mut h = tar::Header::new_gnu();
    h.set_path("ro2/").unwrap();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o555);
    h.set_size(0);
    h.set_cksum();
    t.0.append(&h, &b""[..]).unwrap();
    let l = t
        .file("ro2/inside", "x")
        .done(tmp.path(), "l", Compression::None);
    apply(&root, &l).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        root.join("ro2").metadata().unwrap().permissions().mode() & 0o777,
        0o555
    );
    assert_eq!(
        std::fs::read_to_string(root.join("ro2/inside")).unwrap(),
        "x"
    );
}

#[test]
fn header_check_walks_long_names_and_pax() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let long = "d".repeat(120);
    std::fs::create_dir_all(src.join(&long)).unwrap();
    std::fs::write(src.join(&long).join("f".repeat(120)), b"x").unwrap();
    std::os::unix::fs::symlink("t".repeat(150), src.join("l")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", &src).unwrap();
    let bytes = b.into_inner().unwrap();
    check_headers(&bytes[..], &Limits::default()).unwrap();
}

#[test]
fn deferred_directory_modes_never_land_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(outside.join("etc")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(outside.join("etc"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut t = Tar::new();
    t.dir("a/");
    let mut h = tar::Header::new_gnu();
    h.set_path("a/etc/").unwrap();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_cksum();
    t.0.append(&h, &b""[..]).unwrap();
    // `a` becomes a link to where `etc` lives outside.
    let l = t
        .raw(
            "a",
            tar::EntryType::Symlink,
            Some(outside.to_str().unwrap()),
            b"",
        )
        .done(tmp.path(), "l", Compression::None);
    apply(&root, &l).unwrap();
    assert_eq!(
        outside.join("etc").metadata().unwrap().permissions().mode() & 0o777,
        0o700,
        "a directory mode landed outside the tree"
    );
}

#[test]
fn pax_records_are_read_strictly() {
    assert_eq!(pax_size_record(b"12 size=100\n").unwrap(), Some(100));
    assert_eq!(pax_size_record(b"12 path=abc\n").unwrap(), None);
    for bad in [
        &b"99 size=1024\n"[..],
        b"11 size=100\n",
        b"12 size=1x0\n",
        b"size=1\n",
        b"13 size= 100\n",
    ] {
        assert!(
            pax_size_record(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A PAX header without a magic is refused, not read.
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..4].copy_from_slice(b"pax0");
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(12);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(b"12 size=100\n");
    bytes.resize(1024, 0);
    let err = check_headers(&bytes[..], &Limits::default()).unwrap_err();
    assert!(err.contains("without a ustar or GNU magic"), "{err}");
}

/// Entries a layer may not hold, each refused with its path and nothing
/// applied past it: a whiteout of nothing, a symlink with no target,
/// an entry type pyro does not know, a file under a file.
#[test]
fn odd_entries_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = |name: &str, tar: &mut Tar, says: &str| {
        let root = tmp.path().join(format!("root-{name}"));
        std::fs::create_dir(&root).unwrap();
        let l = tar.done(tmp.path(), name, Compression::None);
        let err = apply(&root, &l).unwrap_err();
        assert!(matches!(err, OciError::Layer { .. }), "{name}: {err}");
        assert!(err.to_string().contains(says), "{name}: {err}");
        root
    };
    refused("wh-nothing", Tar::new().file(".wh.", ""), "names nothing");
    refused("wh-dotdot", Tar::new().file(".wh...", ""), "names nothing");
    refused(
        "empty-link",
        Tar::new().raw("l", tar::EntryType::Symlink, Some(""), b""),
        "has no target",
    );
    refused(
        "unknown-type",
        Tar::new().raw("odd", tar::EntryType::new(b'Z'), None, b""),
        "entry type pyro does not know",
    );
    let root = refused(
        "under-file",
        Tar::new().file("f", "x").file("f/inner", "y"),
        "not a directory",
    );
    assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "x");
}

/// One raw header block of `kind` with `size` (GNU magic), and its data
/// padded to whole blocks.
fn block(kind: u8, size: u64, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..4].copy_from_slice(b"file");
    h.set_size(size);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out[156] = kind;
    let mut body = data.to_vec();
    body.resize(data.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&body);
    out
}

/// The header walk refuses what would make it and the tar crate part ways,
/// and what is over the limits, before anything is unpacked.
#[test]
fn the_header_walk_refuses_odd_and_oversized_archives() {
    let check = |bytes: &[u8], limits: &Limits| check_headers(bytes, limits);
    let roomy = Limits::default();
    // A global header while a PAX size waits for its entry.
    let mut t = block(b'x', 12, b"12 size=100\n");
    t.extend(block(b'g', 0, b""));
    let e = check(&t, &roomy).unwrap_err();
    assert!(e.contains("global PAX header between"), "{e}");
    // The PAX size replaces the header's: a 512-byte header size with a
    // PAX size of 100 skips one block of data, and the archive ends well.
    let mut t = block(b'x', 12, b"12 size=100\n");
    t.extend(block(b'0', 0, &[7u8; 100]));
    t.extend([0u8; 1024]);
    check(&t, &roomy).unwrap();
    // GNU sparse: a flag other than 0 or 1; an extension that never comes;
    // an extension block that ends the map.
    let mut sparse = block(b'S', 0, b"");
    sparse[482] = 2;
    let e = check(&sparse, &roomy).unwrap_err();
    assert!(e.contains("sparse map flag"), "{e}");
    sparse[482] = 1;
    let e = check(&sparse, &roomy).unwrap_err();
    assert!(e.contains("ends inside a sparse map"), "{e}");
    let mut ext = [0u8; 512];
    ext[504] = 0;
    sparse.extend_from_slice(&ext);
    sparse.extend([0u8; 1024]);
    check(&sparse, &roomy).unwrap();
    // Data cut short, and a size that is not a number.
    let mut cut = block(b'0', 2000, &[1u8; 512]);
    cut.truncate(1024);
    let e = check(&cut, &roomy).unwrap_err();
    assert!(e.contains("ends inside an entry"), "{e}");
    let mut nan = block(b'0', 0, b"");
    nan[124..136].copy_from_slice(b"12x4567\0\0\0\0\0");
    let e = check(&nan, &roomy).unwrap_err();
    assert!(e.contains("size is not a number"), "{e}");
    // A header cut short.
    let e = check(&block(b'0', 0, b"")[..100], &roomy).unwrap_err();
    assert!(e.contains("ends inside a header"), "{e}");
    // Over the limits: headers (three per entry allowed), and bytes (with
    // 1 KiB per entry of slack).
    let few = Limits {
        max_bytes: 1 << 20,
        max_entries: 1,
    };
    let many: Vec<u8> = (0..4).flat_map(|_| block(b'0', 0, b"")).collect();
    let e = check(&many, &few).unwrap_err();
    assert!(e.contains("more than 1 entries"), "{e}");
    let small = Limits {
        max_bytes: 10,
        max_entries: 1,
    };
    let e = check(&block(b'0', 2000, &[0u8; 2000]), &small).unwrap_err();
    assert!(e.contains("more than 10 bytes"), "{e}");
    // A base-256 size is read as such.
    assert_eq!(
        header_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
        Some(256)
    );
    assert_eq!(header_size(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
}

/// The root's own entry (`./`) sets only the root's mode; a name that is
/// not UTF-8 is no whiteout and is unpacked as it is; paths over the
/// length limit or holding a NUL are refused.
#[test]
fn the_root_entry_and_raw_names() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let l = Tar::new()
        .entry(b"./", tar::EntryType::Directory, 0o750, None, b"")
        .entry(b"\xffx\xfe", tar::EntryType::Regular, 0o644, None, b"hi")
        .done(tmp.path(), "raw", Compression::None);
    let done = apply(&root, &l).unwrap();
    assert_eq!((done.entries, done.whiteouts), (2, 0));
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    let raw = root.join(std::ffi::OsStr::from_bytes(b"\xffx\xfe"));
    assert_eq!(std::fs::read(raw).unwrap(), b"hi");

    let e = entry_path(&vec![b'a'; MAX_PATH + 1]).unwrap_err();
    assert!(e.contains("longer than 4096 bytes or holds a NUL"), "{e}");
    let e = entry_path(b"a\0b").unwrap_err();
    assert!(e.contains("holds a NUL"), "{e}");
}

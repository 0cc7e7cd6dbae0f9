use super::*;

/// An image made by mkfs.ext4 from `root`.
fn image_of(root: &Path, img: &Path) {
    std::fs::File::create(img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(root)
        .arg(img)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn markers_of_hostile_names_are_read_and_never_run() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    // Under /data: a path of `"`-named directories whose quoted form is
    // too long for a command file (debugfs reads it in 8 KiB pieces and
    // runs a piece starting with `!` by the shell), with names that
    // would be shell commands or break lines.
    let mut deep = root.join("data");
    let mut rel: Vec<Vec<u8>> = Vec::new();
    for _ in 0..12 {
        let n = "\"".repeat(250);
        deep.push(&n);
        rel.push(n.into_bytes());
    }
    std::fs::create_dir_all(&deep).unwrap();
    // debugfs would run it in this process's working directory.
    let marker = std::env::current_dir().unwrap().join("pyro-evil-ran");
    let evil = "  !touch pyro-evil-ran;#".to_owned();
    std::fs::create_dir(deep.join(&evil)).unwrap();
    nix::sys::stat::mknod(
        &deep.join("gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap();
    std::fs::create_dir(deep.join("line\nbreak")).unwrap();
    let img = t.path().join("img");
    image_of(&root, &img);
    let layer = Ext4Layer::open(&img).unwrap();
    let kinds: BTreeMap<String, NodeKind> = layer
        .list(&rel)
        .unwrap()
        .into_iter()
        .map(|(n, node)| (String::from_utf8_lossy(&n).into_owned(), node.kind))
        .collect();
    assert_eq!(kinds["gone"], NodeKind::Whiteout, "{kinds:?}");
    assert_eq!(kinds[&evil], NodeKind::Dir);
    assert_eq!(kinds["line\nbreak"], NodeKind::Dir);
    assert!(!marker.exists(), "a name ran as a command");
}

/// What a disk that is not a workspace's, or a path that is not what
/// a request needs, gets: an error naming the path, never a followed
/// link.
#[test]
fn wrong_disks_and_wrong_kinds_are_refused() {
    let t = tempfile::tempdir().unwrap();
    // No upper directory: not a workspace's disk.
    let bare = t.path().join("bare");
    std::fs::create_dir_all(bare.join("etc")).unwrap();
    let img = t.path().join("bare.img");
    image_of(&bare, &img);
    let Err(e) = Ext4Layer::open(&img) else {
        panic!("a disk without /data opened")
    };
    assert!(e.to_string().contains("not a workspace's"), "{e}");
    // Not an ext4 image at all.
    let junk = t.path().join("junk.img");
    std::fs::write(&junk, vec![7u8; 1 << 20]).unwrap();
    assert!(Ext4Layer::open(&junk).is_err());

    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("data/dir")).unwrap();
    std::fs::write(root.join("data/dir/passwd"), b"p").unwrap();
    std::fs::write(root.join("data/file"), b"x").unwrap();
    // A link to a directory that exists in the image: following it would
    // find `passwd`.
    std::os::unix::fs::symlink("/data/dir", root.join("data/link")).unwrap();
    let img = t.path().join("ws.img");
    image_of(&root, &img);
    let layer = Ext4Layer::open(&img).unwrap();
    let p =
        |parts: &[&str]| -> Vec<Vec<u8>> { parts.iter().map(|s| s.as_bytes().to_vec()).collect() };
    assert!(layer.stat(&p(&["missing"])).unwrap().is_none());
    assert!(layer.stat(&p(&["dir", "passwd"])).unwrap().is_some());
    // Through a link, or through a file: nothing there.
    assert!(layer.stat(&p(&["link", "passwd"])).unwrap().is_none());
    assert!(layer.stat(&p(&["file", "x"])).unwrap().is_none());
    let not_dir = |parts: &[&str]| match layer.list(&p(parts)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{parts:?} listed"),
    };
    assert!(not_dir(&["link", "x"]).contains("not a directory"));
    assert!(not_dir(&["file"]).contains("data/file"));
    let not_file = |parts: &[&str]| match layer.open(&p(parts)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{parts:?} opened"),
    };
    assert!(not_file(&["dir"]).contains("not a regular file"));
    assert!(not_file(&["link"]).contains("not a regular file"));
    assert!(not_file(&["link", "passwd"]).contains("not a regular file"));
    let mut body = String::new();
    layer
        .open(&p(&["file"]))
        .unwrap()
        .read_to_string(&mut body)
        .unwrap();
    assert_eq!(body, "x");
}

#[test]
fn stat_output_gives_whiteouts_and_opaque_directories_only() {
    let wh = b"Inode: 16   Type: character special    Mode:  0644   Flags: 0x0\n(New-style) Device major/minor number: 00:00 (hex 00:00)\n";
    assert_eq!(parse_stat(wh), (true, false));
    let dev = b"Inode: 17   Type: character special    Mode:  0644\nDevice major/minor number: 01:03 (hex 01:03)\n";
    assert_eq!(parse_stat(dev), (false, false));
    let opq = b"Inode: 12   Type: directory\nExtended attributes:\n  trusted.overlay.opaque (1) = \"y\"\n";
    assert_eq!(parse_stat(opq), (false, true));
    // An attribute whose value only looks like the mark does not count.
    let fake = b"Inode: 12   Type: directory\nExtended attributes:\n  user.x (40) = \"  trusted.overlay.opaque (1) = \\\"y\\\"\"\n";
    assert_eq!(parse_stat(fake), (false, false));
    assert_eq!(quoted(b"a \"b\""), b"\"a \"\"b\"\"\"");
}

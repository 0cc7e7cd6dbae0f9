use super::super::overlay::tests::p as names;
use super::*;

/// A host directory as a layer: what is there by kind (a FIFO is special,
/// a 0/0 character device a whiteout), never through a link on the way,
/// and only regular files are opened.
#[test]
fn a_directory_layer_reads_what_is_there_and_never_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        DirLayer::open(&dir.path().join("missing"), "test layer")
            .unwrap()
            .is_none()
    );
    let e = DirLayer::open(&dir.path().join("file"), "test layer");
    assert!(e.unwrap().is_none());
    std::fs::write(dir.path().join("file"), "x").unwrap();
    assert!(DirLayer::open(&dir.path().join("file"), "test layer").is_err());
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/f"), "data").unwrap();
    std::os::unix::fs::symlink("d", root.join("link")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(made.success());
    let whiteout = nix::sys::stat::mknod(
        &root.join("gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        0,
    );
    let layer = DirLayer::open(&root, "test layer").unwrap().unwrap();
    assert_eq!(layer.stat(&[]).unwrap().unwrap().kind, NodeKind::Dir);
    assert_eq!(
        layer.stat(&names("fifo")).unwrap().unwrap().kind,
        NodeKind::Special
    );
    if whiteout.is_ok() {
        assert_eq!(
            layer.stat(&names("gone")).unwrap().unwrap().kind,
            NodeKind::Whiteout
        );
    }
    let link = layer.stat(&names("link")).unwrap().unwrap();
    assert_eq!(
        (link.kind, link.link.as_deref()),
        (NodeKind::Symlink, Some(&b"d"[..]))
    );
    // Through the link, or under a file: nothing.
    assert!(layer.stat(&names("link/f")).unwrap().is_none());
    assert!(layer.stat(&names("d/f/x")).unwrap().is_none());
    assert!(layer.stat(&names("nope")).unwrap().is_none());
    let mut text = String::new();
    layer
        .open(&names("d/f"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "data");
    let e = layer.open(&names("fifo")).err().unwrap();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = layer.open(&names("link/f")).err().unwrap();
    assert!(e.to_string().contains("in the test layer"), "{e}");
    let e = layer.list(&names("link")).err().unwrap();
    assert!(
        e.to_string().contains("reading /link in the test layer"),
        "{e}"
    );
    let mut listed: Vec<_> = layer
        .list(&[])
        .unwrap()
        .into_iter()
        .map(|(n, node)| (String::from_utf8(n).unwrap(), node.kind))
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(listed[0], ("d".to_owned(), NodeKind::Dir));
    assert!(listed.contains(&("fifo".to_owned(), NodeKind::Special)));
}

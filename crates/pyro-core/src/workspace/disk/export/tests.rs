use super::super::overlay::tests::MemLayer;
use super::super::overlay::tests::p as names;
use super::*;

fn tar_of(m: &Merged<'_>, path: &str, max: u64) -> Result<(Counts, Vec<u8>), CoreError> {
    let p = names(path);
    let found = m.lookup(&p).unwrap().unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut budget = Budget { bytes: 0, max };
    let counts = write_tar(m, &p, &found, &mut tar, &mut budget)?;
    Ok((counts, tar.into_inner().unwrap()))
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

/// A tar export holds the tree's files, directories, links and long names,
/// skips (and counts) devices and the like, and stops at its budget or at a
/// file shorter than its stated size.
#[test]
fn a_tar_export_writes_what_is_there_and_stops_at_its_bounds() {
    let long = "n".repeat(120);
    let mut lower = MemLayer::default();
    lower
        .add("", NodeKind::Dir)
        .add("d", NodeKind::Dir)
        .file("d/a", "hello")
        .file(&format!("d/{long}"), "x")
        .add("d/fifo", NodeKind::Special);
    lower.nodes.insert(
        names("d/link"),
        Node {
            kind: NodeKind::Symlink,
            mode: 0o777,
            size: 0,
            link: Some(b"a".to_vec()),
            opaque: false,
        },
    );
    let upper = MemLayer::default();
    let m = Merged {
        upper: &upper,
        lower: &lower,
    };
    let (counts, bytes) = tar_of(&m, "/d", 1 << 20).unwrap();
    assert_eq!((counts.entries, counts.skipped, counts.bytes), (3, 1, 6));
    let mut got = tar_names(&bytes);
    got.sort();
    assert_eq!(got, ["a", "link", long.as_str()]);
    // One file: itself, by its own name.
    let (counts, bytes) = tar_of(&m, "/d/a", 1 << 20).unwrap();
    assert_eq!(counts.entries, 1);
    assert_eq!(tar_names(&bytes), ["a"]);
    // Over the budget: refused, saying what to do.
    let e = tar_of(&m, "/d", 600).err().unwrap();
    assert!(
        matches!(&e, CoreError::TooLarge(m) if m.contains("export a smaller part")),
        "{e}"
    );
    // A file that yields less than its size: an error, not a shifted tar.
    lower.nodes.get_mut(&names("d/a")).unwrap().size = 9;
    let m = Merged {
        upper: &upper,
        lower: &lower,
    };
    let e = tar_of(&m, "/d/a", 1 << 20).err().unwrap();
    assert!(e.to_string().contains("4 bytes short"), "{e}");
}

/// The tree an ext4 export is made from: written beneath its root, with
/// the same skips.
#[test]
fn a_tree_export_writes_beneath_its_root() {
    let mut lower = MemLayer::default();
    lower
        .add("", NodeKind::Dir)
        .add("d", NodeKind::Dir)
        .add("d/sub", NodeKind::Dir)
        .file("d/sub/f", "data")
        .add("d/dev", NodeKind::Special);
    let upper = MemLayer::default();
    let m = Merged {
        upper: &upper,
        lower: &lower,
    };
    let root = tempfile::tempdir().unwrap();
    let p = names("/d");
    let found = m.lookup(&p).unwrap().unwrap();
    let mut budget = Budget {
        bytes: 0,
        max: 1 << 20,
    };
    let counts = write_tree(&m, &p, &found, root.path(), &mut budget).unwrap();
    assert_eq!((counts.entries, counts.skipped, counts.bytes), (2, 1, 4));
    assert_eq!(
        std::fs::read_to_string(root.path().join("sub/f")).unwrap(),
        "data"
    );
    assert!(!root.path().join("dev").exists());
    // Names count against the budget too.
    let again = tempfile::tempdir().unwrap();
    let mut small = Budget { bytes: 0, max: 100 };
    let e = write_tree(&m, &p, &found, again.path(), &mut small)
        .err()
        .unwrap();
    assert!(matches!(e, CoreError::TooLarge(_)), "{e}");
}

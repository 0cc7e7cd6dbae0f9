use super::*;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

#[test]
fn a_disk_mkfs_refuses_is_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upper.ext4");
    // Zero bytes: mkfs.ext4 has nothing to format.
    let err = create_upper_disk(&path, 0).unwrap_err();
    assert!(err.to_string().contains("mkfs.ext4"), "{err}");
    assert!(!path.exists(), "a half-made disk stayed");
    let err = create_upper_disk(&dir.path().join("no/such/dir.ext4"), 8).unwrap_err();
    assert!(err.to_string().contains("creating"), "{err}");
}

#[test]
fn sparse_copy_keeps_holes_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let mut f = File::create(&src).unwrap();
    f.set_len(256 << 20).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(b"hello").unwrap();
    f.seek(SeekFrom::Start(200 << 20)).unwrap();
    f.write_all(&[7u8; 8192]).unwrap();
    drop(f);
    let dst = dir.path().join("dst.img");
    sparse_copy(&src, &dst).unwrap();
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
    let m = std::fs::metadata(&dst).unwrap();
    assert_eq!(m.len(), 256 << 20);
    assert!(
        m.blocks() * 512 < 4 << 20,
        "copy is not sparse: {} blocks",
        m.blocks()
    );
}

#[test]
fn a_source_that_ends_early_is_an_error_not_a_short_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::write(&src, [9u8; 4096]).unwrap();
    let s = File::open(&src).unwrap();
    let d = File::create(&dst).unwrap();
    // The kernel copies what there is, then answers 0: the rest falls to
    // reads and writes, which find the end.
    let err = copy_segment(&s, &d, 0, 8192).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    let err = copy_range(&s, &d, 1024, 8192).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    // A whole range copies byte for byte by either way, each into a
    // fresh empty file.
    let by_range = File::create(&dst).unwrap();
    copy_range(&s, &by_range, 0, 4096).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), vec![9u8; 4096]);
    let by_segment = File::create(&dst).unwrap();
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 0);
    copy_segment(&s, &by_segment, 0, 4096).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), vec![9u8; 4096]);
}

/// A symlink where the copy goes is refused, and what it points at is
/// left as it was; a regular file there is replaced whole.
#[test]
fn sparse_copy_never_follows_a_link_at_its_destination() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, victim) = (
        dir.path().join("src"),
        dir.path().join("dst"),
        dir.path().join("victim"),
    );
    std::fs::write(&src, [5u8; 10_000]).unwrap();
    std::fs::write(&victim, b"keep me").unwrap();
    std::os::unix::fs::symlink(&victim, &dst).unwrap();
    let err = sparse_copy(&src, &dst).unwrap_err();
    assert!(err.to_string().contains("creating the copy"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    // A larger file full of ones: emptied first, so the source's hole
    // reads back as zeros, not as what was there.
    std::fs::remove_file(&dst).unwrap();
    std::fs::write(&dst, vec![1u8; 4 << 20]).unwrap();
    let mut f = File::create(&src).unwrap();
    f.write_all(&[5u8; 4096]).unwrap();
    f.seek(SeekFrom::Start(2 << 20)).unwrap();
    f.write_all(&[6u8; 4096]).unwrap();
    drop(f);
    sparse_copy(&src, &dst).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), std::fs::read(&src).unwrap());
}

#[test]
fn sparse_copy_between_filesystems_keeps_holes_and_bytes() {
    // /dev/shm is a tmpfs and the temp dir is on disk: copy_file_range
    // cannot go between them, so the copy falls back to reads and writes.
    let shm = tempfile::tempdir_in("/dev/shm").expect("this test needs a tmpfs at /dev/shm");
    let disk = tempfile::tempdir().unwrap();
    let (a, b) = (
        std::fs::metadata(shm.path()).unwrap().dev(),
        std::fs::metadata(disk.path()).unwrap().dev(),
    );
    assert_ne!(a, b, "/dev/shm and the temp dir are one filesystem");
    let src = shm.path().join("src.img");
    let mut f = File::create(&src).unwrap();
    f.set_len(64 << 20).unwrap();
    f.seek(SeekFrom::Start(3 << 20)).unwrap();
    let data: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    f.write_all(&data).unwrap();
    drop(f);
    let dst = disk.path().join("dst.img");
    assert!(matches!(sparse_copy(&src, &dst).unwrap(), CopyMode::Sparse));
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
    let m = std::fs::metadata(&dst).unwrap();
    assert_eq!(m.len(), 64 << 20);
    assert!(
        m.blocks() * 512 < 16 << 20,
        "the copy lost its holes: {} blocks",
        m.blocks()
    );
}

#[test]
fn upper_disk_is_sparse_ext4() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("upper.ext4");
    create_upper_disk(&p, 512).unwrap();
    let m = std::fs::metadata(&p).unwrap();
    assert_eq!(m.len(), 512 << 20);
    assert!(m.blocks() * 512 < 32 << 20);
    let out = Command::new("dumpe2fs").arg("-h").arg(&p).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("pyro-upper"));
}

#[test]
fn ext4_geometry_of_real_and_forged_superblocks() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    File::create(&img).unwrap().set_len(8 << 20).unwrap();
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success());
    let bytes = std::fs::read(&img).unwrap();
    let sb = bytes[1024..2048].to_vec();
    let len = bytes.len() as u64;
    assert_eq!(check_ext4_geometry(&sb, len), Ok(()));
    // The image cut to half: the blocks no longer fit.
    assert!(
        check_ext4_geometry(&sb, len / 2)
            .unwrap_err()
            .contains("more than")
    );
    let forged = |at: usize, v: u32| {
        let mut f = sb.clone();
        f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        check_ext4_geometry(&f, len)
    };
    // The crash the `disk` fuzz target found: a huge block count.
    assert!(forged(0x04, u32::MAX).unwrap_err().contains("blocks of"));
    // A high word without the 64-bit feature still counts (review).
    assert!(forged(0x150, 7).unwrap_err().contains("blocks of"));
    assert!(forged(0x20, 1).unwrap_err().contains("per group"));
    assert!(forged(0x18, 30).unwrap_err().contains("block size"));
    assert!(check_ext4_geometry(&sb[..100], len).is_err());
    assert!(
        check_ext4_geometry(&[0; 1024], len)
            .unwrap_err()
            .contains("no ext4")
    );
}

use super::*;
use std::os::unix::fs::MetadataExt;

#[test]
fn a_disk_is_linked_or_else_copied_across_filesystems() {
    let disk = tempfile::tempdir().unwrap();
    let src = disk.path().join("base.ext4");
    std::fs::write(&src, b"image bytes").unwrap();
    // Same filesystem: a hard link (one inode, two names).
    let linked = disk.path().join("linked");
    link_or_copy(&src, &linked).unwrap();
    assert_eq!(std::fs::metadata(&src).unwrap().nlink(), 2);
    // /dev/shm is a tmpfs: a copy (the kernel cannot copy_file_range
    // between them), holes and all.
    {
        let shm = tempfile::tempdir_in("/dev/shm").expect("this test needs a tmpfs at /dev/shm");
        let copied = shm.path().join("copied");
        link_or_copy(&src, &copied).unwrap();
        assert_eq!(std::fs::read(&copied).unwrap(), b"image bytes");
        assert_eq!(std::fs::metadata(&src).unwrap().nlink(), 2);
        let sparse = disk.path().join("sparse.ext4");
        let f = std::fs::File::create(&sparse).unwrap();
        f.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"middle", 4 << 20).unwrap();
        let copied = shm.path().join("sparse");
        link_or_copy(&sparse, &copied).unwrap();
        assert_eq!(
            std::fs::read(&copied).unwrap(),
            std::fs::read(&sparse).unwrap()
        );
        let blocks = std::fs::metadata(&copied).unwrap().blocks();
        assert!(
            blocks * 512 < 1 << 20,
            "the copy lost its holes: {blocks} blocks"
        );
    }
    // A source that is not there: an error naming it.
    let e = link_or_copy(&disk.path().join("missing"), &disk.path().join("x")).unwrap_err();
    assert!(e.to_string().contains("linking"), "{e}");
}

use super::*;

#[test]
fn atomic_write_replaces_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.json");
    write_atomic(&p, b"one").unwrap();
    write_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temp files left behind"
    );
}

#[test]
fn locks_are_exclusive_between_handles() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let held = cache.lock("x").unwrap();
    let path = dir.path().join("locks/x.lock");
    let other = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    assert!(other.try_lock().is_err());
    drop(held);
    assert!(other.try_lock().is_ok());
}

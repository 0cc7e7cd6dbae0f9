use super::*;

/// Runs test `name` (its full path) again in a child of this test binary
/// with `envs` set, and asserts that it ran and passed: for a test that
/// needs an environment of its own (this crate has no unsafe code to change
/// its own).
pub(crate) fn rerun_with_env(name: &str, envs: &[(&str, &std::ffi::OsStr)]) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("1 passed"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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

use super::*;
use crate::jail::tests::test_jail as jail;

#[test]
fn a_snapshot_file_leaves_the_jail_read_only() {
    let (t, jail) = jail();
    std::fs::write(jail.join("root").join(TAKEN_STATE), "state").unwrap();
    let dest = t.path().join("out");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    assert_eq!(collect(&jail, TAKEN_STATE, me, &dest).unwrap(), 5);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "state");
    assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o777, 0o444);
    assert!(!jail.join("root").join(TAKEN_STATE).exists());
}

#[test]
fn a_snapshot_file_is_copied_to_another_filesystem() {
    // /dev/shm is a tmpfs; the jail is on the disk of the temp dir.
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        return;
    };
    let (_t, jail) = jail();
    std::fs::write(jail.join("root").join(TAKEN_MEM), "memory").unwrap();
    let dest = shm.path().join("mem");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    assert_eq!(collect(&jail, TAKEN_MEM, me, &dest).unwrap(), 6);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "memory");
    assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o777, 0o444);
    // A destination that cannot be: an error; the file stays in the jail.
    std::fs::write(jail.join("root").join(TAKEN_STATE), "state").unwrap();
    let nowhere = shm.path().join("missing/state");
    let e = collect(&jail, TAKEN_STATE, me, &nowhere).unwrap_err();
    assert!(e.to_string().contains("moving taken.vmstate"), "{e}");
    assert!(jail.join("root").join(TAKEN_STATE).exists());
}

#[test]
fn links_and_foreign_files_are_refused() {
    let (t, jail) = jail();
    let host = t.path().join("host-file");
    std::fs::write(&host, "host").unwrap();
    std::os::unix::fs::symlink(&host, jail.join("root").join(TAKEN_MEM)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    assert!(collect(&jail, TAKEN_MEM, me, &t.path().join("a")).is_err());
    // A hard link to a host file (two links).
    std::fs::remove_file(jail.join("root").join(TAKEN_MEM)).unwrap();
    std::fs::hard_link(&host, jail.join("root").join(TAKEN_MEM)).unwrap();
    let e = collect(&jail, TAKEN_MEM, me, &t.path().join("b")).unwrap_err();
    assert!(e.to_string().contains("2 links"), "{e}");
    // Another uid's file.
    let e = collect(&jail, TAKEN_MEM, me + 1, &t.path().join("c")).unwrap_err();
    assert!(e.to_string().contains("belongs to uid"), "{e}");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "host");
}

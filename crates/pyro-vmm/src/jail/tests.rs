use self::test_jail as jail;
use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn reads_a_regular_file_in_the_jail() {
    let (_t, jail) = jail();
    std::fs::write(jail.join("root/firecracker.log"), "hello").unwrap();
    let mut s = String::new();
    io::Read::read_to_string(&mut open_file(&jail, "firecracker.log").unwrap(), &mut s).unwrap();
    assert_eq!(s, "hello");
}

#[test]
fn links_fifos_and_escapes_are_refused() {
    let (t, jail) = jail();
    let secret = t.path().join("secret");
    std::fs::write(&secret, "host data").unwrap();
    // A final symlink, a symlinked directory, a FIFO, a `..` escape.
    std::os::unix::fs::symlink(&secret, jail.join("root/firecracker.log")).unwrap();
    std::os::unix::fs::symlink(t.path(), jail.join("root/dir")).unwrap();
    nix::unistd::mkfifo(&jail.join("root/fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    for name in ["firecracker.log", "dir/secret", "fifo", "../../../secret"] {
        assert!(open_file(&jail, name).is_err(), "{name} was opened");
    }
}

#[test]
fn a_jail_directory_writable_by_others_is_refused() {
    let (_t, jail) = jail();
    std::fs::write(jail.join("root/firecracker.log"), "x").unwrap();
    std::fs::set_permissions(&jail, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = open_file(&jail, "firecracker.log").unwrap_err();
    assert!(e.to_string().contains("writable by others"), "{e}");
}

/// A jail directory (`<tmp>/firecracker/vm`, with its `root`) as a launch
/// leaves it, for tests.
pub(crate) fn test_jail() -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let jail = t.path().join("firecracker").join("vm");
    std::fs::create_dir_all(jail.join("root")).unwrap();
    std::fs::set_permissions(&jail, std::fs::Permissions::from_mode(0o755)).unwrap();
    (t, jail)
}

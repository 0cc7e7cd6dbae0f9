use super::*;
use std::os::unix::fs::PermissionsExt;

fn spec(dir: &Path, jail: bool) -> LaunchSpec {
    LaunchSpec {
        id: "abc123".into(),
        firecracker: "/fc".into(),
        kernel: "/k".into(),
        base_image: "/b".into(),
        upper_disk: "/u".into(),
        vcpu_count: 1,
        mem_mib: 128,
        boot_args: String::new(),
        run_dir: dir.join("run"),
        restore: None,
        network: None,
        jail: jail.then(|| JailSpec {
            jailer: "/jailer".into(),
            chroot_base: dir.join("jail"),
            uid: 1,
            gid: 1,
            cgroup_version: CgroupVersion::V1,
            parent_cgroup: "pyro".into(),
            cgroup_settings: vec![],
        }),
    }
}

#[test]
fn a_writable_disk_on_another_filesystem_is_refused_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(other.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // Needs root to mount; CI runs as root.
        return;
    }
    let mut s = spec(dir.path(), true);
    for (field, name) in [(&mut s.kernel, "k"), (&mut s.base_image, "b")] {
        *field = dir.path().join(name);
        std::fs::write(&*field, name).unwrap();
    }
    s.upper_disk = other.path().join("upper.ext4");
    std::fs::write(&s.upper_disk, "disk").unwrap();
    let paths = VmPaths::for_spec(&s);
    let err = prepare_jail(&s, s.jail.as_ref().unwrap(), &paths)
        .unwrap_err()
        .to_string();
    let _ = std::process::Command::new("umount")
        .arg(other.path())
        .status();
    assert!(err.contains("different filesystems"), "{err}");
    assert!(
        !paths.jail_dir.unwrap().join("root/upper.ext4").exists(),
        "the disk was copied"
    );
}

#[test]
fn a_jail_left_by_an_earlier_boot_is_replaced_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), true);
    for (field, name) in [
        (&mut s.kernel, "k"),
        (&mut s.base_image, "b"),
        (&mut s.upper_disk, "u"),
    ] {
        *field = dir.path().join(name);
        std::fs::write(&*field, name).unwrap();
    }
    let paths = VmPaths::for_spec(&s);
    let root = paths.jail_dir.clone().unwrap().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // The last VM left links to host files where pyro writes.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").unwrap();
    for name in ["firecracker.log", "upper.ext4", "vmlinux"] {
        std::os::unix::fs::symlink(&victim, root.join(name)).unwrap();
    }
    let j = s.jail.clone().unwrap();
    prepare_jail(&s, &j, &paths).unwrap();
    touch(&paths.firecracker_log, None).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!root.join("firecracker.log").is_symlink());
    assert_eq!(
        std::fs::read_to_string(root.join("upper.ext4")).unwrap(),
        "u"
    );
}

#[test]
fn jailed_paths_live_in_the_chroot() {
    let p = VmPaths::for_spec(&spec(Path::new("/s"), true));
    assert_eq!(
        p.api_sock,
        Path::new("/s/jail/firecracker/abc123/root/api.sock")
    );
    assert_eq!(
        p.vsock_uds,
        Path::new("/s/jail/firecracker/abc123/root/v.sock")
    );
    assert_eq!(p.console_log, Path::new("/s/run/console.log"));
    let p = VmPaths::for_spec(&spec(Path::new("/s"), false));
    assert_eq!(p.api_sock, Path::new("/s/run/api.sock"));
    assert_eq!(p.jail_dir, None);
}

#[tokio::test]
async fn a_missing_firecracker_binary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), false);
    s.firecracker = dir.path().join("no-such-firecracker");
    let err = launch(&s, &mut |_, _| panic!("nothing was spawned"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-firecracker"), "{err}");
}

#[tokio::test]
async fn a_network_or_a_restore_needs_the_jail() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), false);
    s.network = Some(NetAttach {
        netns: "/run/netns/none".into(),
        tap: "tap0".into(),
        mac: "06:00:00:00:00:01".into(),
    });
    let err = launch(&s, &mut |_, _| panic!("nothing was spawned"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("only the jailer can enter"),
        "{err}"
    );
    s.network = None;
    s.restore = Some(RestoreSpec {
        vmstate: "/s".into(),
        mem: "/m".into(),
    });
    let err = launch(&s, &mut |_, _| panic!("nothing was spawned"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("only be restored in a jail"),
        "{err}"
    );
    assert!(
        !s.run_dir.exists(),
        "a refused launch made its run directory"
    );
}

#[test]
fn diagnostics_show_both_logs() {
    let dir = tempfile::tempdir().unwrap();
    let p = VmPaths::for_spec(&spec(dir.path(), false));
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    assert_eq!(p.diagnostics(), "(the guest printed nothing)");
    std::fs::write(&p.console_log, "Kernel panic - not syncing\n").unwrap();
    std::fs::write(&p.firecracker_log, "[WARN] vcpu exit\n").unwrap();
    let d = p.diagnostics();
    assert!(
        d.starts_with("Kernel panic") && d.contains("[WARN] vcpu exit"),
        "{d}"
    );
}

#[test]
fn jailed_diagnostics_never_follow_a_link_in_the_jail() {
    let dir = tempfile::tempdir().unwrap();
    let p = VmPaths::for_spec(&spec(dir.path(), true));
    let jail = p.jail_dir.clone().unwrap();
    std::fs::create_dir_all(jail.join("root")).unwrap();
    std::fs::set_permissions(&jail, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    std::fs::write(&p.firecracker_log, "[WARN] vcpu exit\n").unwrap();
    assert!(p.diagnostics().contains("[WARN] vcpu exit"));
    // A compromised Firecracker swaps its log for a link to a host file.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    std::fs::remove_file(&p.firecracker_log).unwrap();
    std::os::unix::fs::symlink(&secret, &p.firecracker_log).unwrap();
    assert!(!p.diagnostics().contains("host secret"));
    // A link higher up (the chroot itself), which `O_NOFOLLOW` alone
    // would follow.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("firecracker.log"), "host secret\n").unwrap();
    std::fs::remove_dir_all(jail.join("root")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, jail.join("root")).unwrap();
    assert!(!p.diagnostics().contains("host secret"));
    // A jail directory others may write is refused, and the report
    // says so.
    std::fs::remove_file(jail.join("root")).unwrap();
    std::fs::create_dir_all(jail.join("root")).unwrap();
    std::fs::write(&p.firecracker_log, "[WARN] vcpu exit\n").unwrap();
    std::fs::set_permissions(&jail, std::fs::Permissions::from_mode(0o777)).unwrap();
    let d = p.diagnostics();
    assert!(
        !d.contains("vcpu exit") && d.contains("writable by others"),
        "{d}"
    );
}

/// Removing a VM's files takes its jail and sockets, and a cgroup that
/// cannot go is reported with the processes still in it (the rest is
/// removed all the same).
#[test]
fn a_vm_whose_cgroup_cannot_go_is_reported_with_its_processes() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), true);
    let paths = VmPaths::for_spec(&s);
    let jail = paths.jail_dir.clone().unwrap();
    std::fs::create_dir_all(jail.join("root/dev")).unwrap();
    std::fs::write(jail.join("root/upper.ext4"), b"disk").unwrap();
    let cg = dir.path().join("cgroup");
    // A group the kernel would not let go: here a file keeps it.
    let group = cg.join("memory/pyro").join(&s.id);
    std::fs::create_dir_all(&group).unwrap();
    std::fs::write(group.join("cgroup.procs"), "4242\n4343\n").unwrap();
    let e = remove_vm_files(&s.id, &paths, Some((&cg, "pyro"))).unwrap_err();
    assert!(
        e.starts_with(&format!("{}: ", group.display())) && e.ends_with("(processes: 4242 4343)"),
        "{e}"
    );
    assert!(!jail.exists());
    std::fs::remove_file(group.join("cgroup.procs")).unwrap();
    remove_vm_files(&s.id, &paths, Some((&cg, "pyro"))).unwrap();
    assert!(!group.exists());
}

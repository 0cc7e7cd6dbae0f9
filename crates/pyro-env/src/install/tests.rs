use super::*;
use crate::catalog::lookup;

fn fake_install(cache: &Cache, name: &str, agent_sha: &str, kernel_key: &str) -> PathBuf {
    let spec = lookup(name).unwrap();
    let dir = env_dir(cache, spec);
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(dir.join("rootfs.ext4"), b"image").unwrap();
    let m = EnvManifest {
        layout_version: LAYOUT_VERSION,
        name: spec.name.into(),
        version: spec.version.into(),
        catalog_version: CATALOG_VERSION.into(),
        platform: PLATFORM.into(),
        packages: vec![],
        source: "test".into(),
        installed_at: 1.0,
        agent_sha256: agent_sha.into(),
        rootfs_sha256: crate::sha256_bytes(b"image"),
        rootfs_size_bytes: 5,
        kernel_key: kernel_key.into(),
        origin: None,
        image: None,
        description: None,
    };
    std::fs::write(
        dir.join("environment.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let kdir = cache.kernels_dir().join(kernel_key);
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::write(kdir.join("vmlinux"), b"k").unwrap();
    let km = kernel::KernelManifest {
        key: kernel_key.into(),
        sha256: crate::sha256_bytes(b"k"),
        size_bytes: 1,
        source_version: "x".into(),
        recipe_version: kernel::RECIPE_VERSION.into(),
        built_at: 0.0,
        build_seconds: 0.0,
    };
    std::fs::write(kdir.join("kernel.json"), serde_json::to_vec(&km).unwrap()).unwrap();
    dir
}

#[test]
fn installed_requires_every_piece_and_the_same_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let spec = &EnvRef::Catalog(lookup("debian:12").unwrap());
    let err = installed(&cache, spec, None).unwrap_err().to_string();
    assert_eq!(
        err,
        "environment debian:12 is not installed (it has not been pulled yet); run ⟨op:env pull debian:12⟩"
    );
    let dir = fake_install(&cache, "debian:12", "agent-a", "k1");
    assert!(installed(&cache, spec, None).is_ok());
    let a = AgentBinary {
        path: "/x".into(),
        sha256: "agent-a".into(),
    };
    assert!(installed(&cache, spec, Some(&a)).is_ok());
    let b = AgentBinary {
        path: "/x".into(),
        sha256: "agent-b".into(),
    };
    let err = installed(&cache, spec, Some(&b)).unwrap_err().to_string();
    assert!(err.contains("agent differs"), "{err}");
    std::fs::remove_dir_all(cache.kernels_dir().join("k1")).unwrap();
    assert!(
        installed(&cache, spec, None)
            .unwrap_err()
            .to_string()
            .contains("kernel is missing")
    );
    std::fs::remove_file(dir.join("rootfs.ext4")).unwrap();
    assert!(
        installed(&cache, spec, None)
            .unwrap_err()
            .to_string()
            .contains("incomplete")
    );
    let st = status(&cache, spec, None);
    assert!(!st.installed && st.status_reason.is_some());
}

#[test]
fn prune_keeps_valid_installs_and_their_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let keep = fake_install(&cache, "debian:12", "a", "k1");
    let envs = cache.environments_dir();
    std::fs::create_dir_all(envs.join(".staging-debian_12-4.0.0-xyz")).unwrap();
    std::fs::create_dir_all(envs.join("ubuntu_24-1.0.0")).unwrap();
    std::fs::create_dir_all(envs.join("debian_12-base-4.0.0")).unwrap(); // no manifest
    std::fs::create_dir_all(cache.kernels_dir().join("old-kernel")).unwrap();
    std::fs::create_dir_all(tmp.path().join("firecracker/1.0.0")).unwrap();
    let deleted = prune(&cache).unwrap();
    let names: Vec<String> = deleted
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // Sorted by full path: environments/, firecracker/, kernels/.
    assert_eq!(
        names,
        [
            ".staging-debian_12-4.0.0-xyz",
            "debian_12-base-4.0.0",
            "ubuntu_24-1.0.0",
            "1.0.0",
            "old-kernel"
        ]
    );
    assert!(keep.join("environment.json").exists());
    assert!(cache.kernels_dir().join("k1/vmlinux").exists());
    assert!(prune(&cache).unwrap().is_empty());
}

#[test]
fn prune_clears_downloads_and_transfer_leftovers_unless_one_is_under_way() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let blob = cache.blobs_dir().join("sha256-abc.partial");
    std::fs::create_dir_all(cache.blobs_dir()).unwrap();
    std::fs::write(&blob, b"half").unwrap();
    std::fs::create_dir_all(tmp.path().join(".import-x1")).unwrap();
    let busy = cache
        .lock_shared_blocking(crate::fetch::DOWNLOADS_LOCK)
        .unwrap();
    prune(&cache).unwrap();
    assert!(
        blob.exists() && tmp.path().join(".import-x1").exists(),
        "prune took a running import's files"
    );
    drop(busy);
    let deleted = prune(&cache).unwrap();
    assert!(
        deleted.contains(&blob) && deleted.contains(&tmp.path().join(".import-x1")),
        "{deleted:?}"
    );
    assert!(!blob.exists());
}

#[test]
fn prune_leaves_a_running_pull_its_staging_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let staging = cache
        .environments_dir()
        .join(".staging-debian_12-4.0.0-busy");
    std::fs::create_dir_all(&staging).unwrap();
    // A pull of debian:12 holds its lock (from another open file, as
    // another process would).
    let pulling = cache.lock("debian_12-4.0.0").unwrap();
    assert!(prune(&cache).unwrap().is_empty());
    assert!(staging.is_dir(), "a running build lost its staging tree");
    drop(pulling);
    assert_eq!(prune(&cache).unwrap(), std::slice::from_ref(&staging));
    assert!(!staging.exists());
}

/// A cold pull of a catalog environment builds its root tree (here with a
/// stand-in for mmdebstrap), bakes the agent in and packs the image; the
/// next pull finds it current and does nothing.
#[test]
fn a_cold_pull_builds_the_tree_and_the_next_one_does_nothing() {
    const NAME: &str = "install::tests::a_cold_pull_builds_the_tree_and_the_next_one_does_nothing";
    let Some(version) = kernel::source_version() else {
        panic!("this test needs the kernel source package (scripts/setup-host.sh installs it)");
    };
    // The pull runs in a second run of this test binary, whose environment
    // names a stand-in mmdebstrap and Firecracker (this crate has no unsafe
    // code to change its own).
    if let Some(dir) = std::env::var_os("COLD_PULL_TEST_DIR") {
        return cold_pull_in(std::path::Path::new(&dir), &version);
    }
    let tmp = tempfile::tempdir().unwrap();
    // The kernel this host would build, already in the cache.
    let cache = Cache::new(tmp.path().join("cache"));
    let kdir = cache.kernels_dir().join(kernel::key(&version));
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::write(kdir.join("vmlinux"), b"k").unwrap();
    let km = kernel::KernelManifest {
        key: kernel::key(&version),
        sha256: crate::sha256_bytes(b"k"),
        size_bytes: 1,
        source_version: version.clone(),
        recipe_version: kernel::RECIPE_VERSION.into(),
        built_at: 0.0,
        build_seconds: 0.0,
    };
    std::fs::write(kdir.join("kernel.json"), serde_json::to_vec(&km).unwrap()).unwrap();
    // mmdebstrap: makes a small tree at its last argument.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("mmdebstrap"),
        "#!/bin/sh\nfor a; do last=$a; done\nmkdir -p \"$last/etc\" \"$last/usr/sbin\"\n\
         echo stand-in > \"$last/etc/issue\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("mmdebstrap"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Firecracker given by the caller: nothing to install.
    crate::tests::rerun_with_env(
        NAME,
        &[
            ("COLD_PULL_TEST_DIR", tmp.path().as_os_str()),
            ("PATH", path.as_ref()),
            (pyro_vmm::binaries::FIRECRACKER_ENV, "/bin/true".as_ref()),
            (pyro_vmm::binaries::JAILER_ENV, "/bin/true".as_ref()),
        ],
    );
}

fn cold_pull_in(tmp: &std::path::Path, version: &str) {
    let cache = Cache::new(tmp.join("cache"));
    std::fs::write(tmp.join("agent"), b"\x7fELF stand-in agent").unwrap();
    let agent = AgentBinary {
        path: tmp.join("agent"),
        sha256: "a1".into(),
    };
    let spec = lookup("debian:12").unwrap();
    let report = pull(&cache, spec, &agent, &crate::NoProgress).unwrap();
    assert_eq!(
        report.actions,
        ["built the debian:12 root filesystem"],
        "{:?}",
        report.actions
    );
    let inst = &report.installed;
    assert_eq!(inst.manifest.agent_sha256, "a1");
    assert_eq!(inst.manifest.kernel_key, kernel::key(version));
    assert!(inst.manifest.packages.iter().any(|p| p == "git"));
    assert_eq!(
        std::fs::metadata(inst.rootfs_image()).unwrap().len(),
        inst.manifest.rootfs_size_bytes
    );
    let tree = inst.rootfs_tree();
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/issue")).unwrap(),
        "stand-in\n"
    );
    assert!(tree.join(crate::agent::GUEST_PATH).is_file());
    let again = pull(&cache, spec, &agent, &crate::NoProgress).unwrap();
    assert!(again.actions.is_empty(), "{:?}", again.actions);
}

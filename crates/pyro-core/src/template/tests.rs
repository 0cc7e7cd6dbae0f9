use super::*;

fn sources() -> Sources {
    Sources {
        kernel_key: "k".into(),
        rootfs_sha256: "r".into(),
        agent_sha256: "a".into(),
        firecracker_sha256: "f".into(),
        boot_args: "console=ttyS0".into(),
        host_kernel: "6.1".into(),
    }
}

/// A template directory as a build leaves it.
fn template(dir: &Path) -> Meta {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("snap.vmstate"), "state").unwrap();
    std::fs::write(dir.join("snap.mem"), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join("upper.ext4"), vec![1u8; 1024]).unwrap();
    std::fs::write(dir.join(HANDOFF_STATE), "waiting").unwrap();
    std::fs::write(dir.join(HANDOFF_MEM), vec![0u8; 4096]).unwrap();
    let meta = Meta {
        format_version: FORMAT_VERSION,
        environment: "debian:12".into(),
        environment_version: "1".into(),
        shape: Shape::default_shape(),
        sources: sources(),
        vmstate_sha256: pyro_vmm::sha256_file(&dir.join("snap.vmstate")).unwrap(),
        vmstate_bytes: 5,
        mem_bytes: 4096,
        upper_bytes: 1024,
        handoff_vmstate_sha256: pyro_vmm::sha256_file(&dir.join(HANDOFF_STATE)).unwrap(),
        handoff_vmstate_bytes: 7,
        handoff_mem_bytes: 4096,
        built_at: 0.0,
        build_ms: 0,
    };
    std::fs::write(dir.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    meta
}

fn checked(dir: &Path, wanted: &Sources) -> Result<Template, Unusable> {
    check(
        dir.to_owned(),
        "t".into(),
        "debian:12",
        Shape::default_shape(),
        wanted,
    )
}

#[test]
fn templates_are_missing_stale_damaged_or_usable() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("t");
    assert_eq!(checked(&dir, &sources()).unwrap_err(), Unusable::Missing);
    let meta = template(&dir);
    assert_eq!(checked(&dir, &sources()).unwrap().meta, meta);
    // Another shape or environment.
    let other = check(
        dir.clone(),
        "t".into(),
        "debian:13",
        Shape::default_shape(),
        &sources(),
    );
    assert!(matches!(other, Err(Unusable::Stale(_))));
    // A changed agent.
    let mut wanted = sources();
    wanted.agent_sha256 = "new".into();
    match checked(&dir, &wanted) {
        Err(Unusable::Stale(why)) => assert!(why.contains("the guest agent changed"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Another format.
    let mut m = meta.clone();
    m.format_version += 1;
    std::fs::write(dir.join("meta.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    assert!(matches!(checked(&dir, &sources()), Err(Unusable::Stale(_))));
    std::fs::write(dir.join("meta.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    // A damaged state file (same size), a short memory file, a link.
    std::fs::write(dir.join("snap.vmstate"), "STATE").unwrap();
    match checked(&dir, &sources()) {
        Err(Unusable::Damaged(why)) => assert!(why.contains("checksum"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.join("snap.vmstate"), "state").unwrap();
    std::fs::write(dir.join(HANDOFF_STATE), "WAITING").unwrap();
    match checked(&dir, &sources()) {
        Err(Unusable::Damaged(why)) => {
            assert!(
                why.contains("handoff.vmstate") && why.contains("checksum"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.join(HANDOFF_STATE), "waiting").unwrap();
    std::fs::remove_file(dir.join(HANDOFF_MEM)).unwrap();
    match checked(&dir, &sources()) {
        Err(Unusable::Damaged(why)) => assert!(why.contains("handoff.mem"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.join(HANDOFF_MEM), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join("snap.mem"), vec![0u8; 100]).unwrap();
    match checked(&dir, &sources()) {
        Err(Unusable::Damaged(why)) => assert!(why.contains("100 bytes"), "{why}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(dir.join("snap.mem")).unwrap();
    std::os::unix::fs::symlink(dir.join("upper.ext4"), dir.join("snap.mem")).unwrap();
    assert!(matches!(
        checked(&dir, &sources()),
        Err(Unusable::Damaged(_))
    ));
}

#[test]
fn every_source_makes_a_template_stale() {
    let base = sources();
    assert_eq!(changed(&base, &base), None);
    let mut s = base.clone();
    s.agent_sha256 = "b".into();
    assert_eq!(changed(&base, &s), Some("the guest agent"));
    let mut s = base.clone();
    s.kernel_key = "x".into();
    assert_eq!(changed(&base, &s), Some("the guest kernel"));
    let mut s = base.clone();
    s.rootfs_sha256 = "x".into();
    assert_eq!(changed(&base, &s), Some("the base image"));
    let mut s = base.clone();
    s.firecracker_sha256 = "x".into();
    assert_eq!(changed(&base, &s), Some("Firecracker"));
    let mut s = base.clone();
    s.boot_args = "x".into();
    assert_eq!(changed(&base, &s), Some("the kernel command line"));
    let mut s = base.clone();
    s.host_kernel = "x".into();
    assert_eq!(changed(&base, &s), Some("the host kernel"));
}

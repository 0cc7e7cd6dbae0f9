use super::*;

#[test]
fn a_fresh_cache_fails_with_fixes() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::new(
        tmp.path().join("state"),
        pyro_env::Cache::new(tmp.path().join("cache")),
    );
    let report = run(&paths);
    assert!(
        !report.ok,
        "an empty cache has no kernel, so guests cannot run"
    );
    let kernel = report
        .checks
        .iter()
        .find(|c| c.name == "guest kernel")
        .unwrap();
    assert_eq!(kernel.status, Status::Fail);
    assert!(
        kernel
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("pyro env pull")
    );
    for c in &report.checks {
        if c.status != Status::Pass {
            assert!(c.fix.is_some(), "{} has no fix hint", c.name);
        }
    }
    assert_eq!(report.checks.len(), 18);
}

/// Every judgment a host can get wrong: not passing, and with a fix.
#[test]
fn each_failing_probe_says_what_to_do() {
    use pyro_vmm::cgroup::CgroupVersion;
    let tmp = tempfile::tempdir().unwrap();
    let broken = [
        (platform_check("macos-aarch64"), Status::Fail),
        (kvm_check(true, false), Status::Fail),
        (kvm_check(false, false), Status::Fail),
        (privileges(false), Status::Warn),
        (cgroups_check(None), Status::Warn),
        (
            cgroups_check(Some((CgroupVersion::V2, vec![]))),
            Status::Warn,
        ),
        (
            cgroups_check(Some((CgroupVersion::V1, vec!["memory".into()]))),
            Status::Warn,
        ),
        (tun_check(false), Status::Warn),
        (
            tool_check("network: ip", "ip", "iproute2", "guest networking", None),
            Status::Warn,
        ),
        (firewall_check(None), Status::Warn),
        (ip_forward_check(false), Status::Warn),
        (
            disk_check("disk: cache", tmp.path(), tmp.path(), Ok(100 << 20)),
            Status::Fail,
        ),
        (
            disk_check("disk: cache", tmp.path(), tmp.path(), Ok(2 << 30)),
            Status::Warn,
        ),
        (
            disk_check(
                "disk: cache",
                tmp.path(),
                tmp.path(),
                Err(nix::errno::Errno::EACCES),
            ),
            Status::Warn,
        ),
        (build_tools_check(&["mmdebstrap", "python3"]), Status::Warn),
        (
            agent(&Err(pyro_env::EnvError::Agent("no agent here".into()))),
            Status::Warn,
        ),
    ];
    for (c, want) in &broken {
        assert_eq!(c.status, *want, "{c:?}");
        assert!(c.fix.as_deref().is_some_and(|f| !f.is_empty()), "{c:?}");
        assert!(!c.detail.is_empty(), "{c:?}");
    }
    assert!(broken[2].0.fix.as_deref().unwrap().contains("host-compat"));
    assert!(
        broken[5].0.detail.contains("no controllers"),
        "{:?}",
        broken[5].0
    );
    assert!(
        broken[6].0.detail.contains("only memory"),
        "{:?}",
        broken[6].0
    );
    assert!(broken[8].0.fix.as_deref().unwrap().contains("iproute2"));
    assert!(
        broken[11].0.detail.contains("0.1 GiB free"),
        "{:?}",
        broken[11].0
    );
    assert!(
        broken[13].0.detail.contains("cannot stat"),
        "{:?}",
        broken[13].0
    );
    assert_eq!(
        broken[14].0.fix.as_deref(),
        Some("apt-get install mmdebstrap python3")
    );

    let fine = [
        platform_check("linux-x86_64"),
        kvm_check(true, true),
        privileges(true),
        pvm_check(true),
        pvm_check(false),
        tun_check(true),
        tool_check(
            "network: ip",
            "ip",
            "iproute2",
            "x",
            Some("/sbin/ip".into()),
        ),
        firewall_check(Some("/usr/sbin/nft".into())),
        ip_forward_check(true),
        disk_check("disk: state", tmp.path(), tmp.path(), Ok(50 << 30)),
        build_tools_check(&[]),
    ];
    for c in &fine {
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(c.fix.is_none(), "{c:?}");
    }
}

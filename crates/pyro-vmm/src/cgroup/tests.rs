use super::*;

#[test]
fn detects_v1_and_v2_layouts() {
    let v1 = tempfile::tempdir().unwrap();
    for c in ["memory", "pids"] {
        std::fs::create_dir_all(v1.path().join(c)).unwrap();
        std::fs::write(v1.path().join(c).join("cgroup.procs"), "").unwrap();
    }
    assert_eq!(
        detect(v1.path()),
        Some((
            CgroupVersion::V1,
            vec!["memory".to_owned(), "pids".to_owned()]
        ))
    );
    let v2 = tempfile::tempdir().unwrap();
    std::fs::write(
        v2.path().join("cgroup.controllers"),
        "cpuset cpu io memory pids",
    )
    .unwrap();
    assert_eq!(detect(v2.path()).unwrap().1, vec!["memory", "pids", "cpu"]);
    assert_eq!(detect(tempfile::tempdir().unwrap().path()), None);
}

#[test]
fn this_process_is_in_no_vm_group() {
    assert_eq!(
        vm_of_process(std::process::id(), "pyro-test-nonexistent"),
        None
    );
}

#[test]
fn lists_and_removes_groups_in_every_hierarchy() {
    let root = tempfile::tempdir().unwrap();
    for c in ["memory", "pids"] {
        std::fs::create_dir_all(root.path().join(c).join("pyro").join("vm1")).unwrap();
    }
    std::fs::create_dir_all(root.path().join("pids").join("pyro").join("vm2")).unwrap();
    assert_eq!(list_ids(root.path(), "pyro"), vec!["vm1", "vm2"]);
    remove(root.path(), "pyro", "vm1").unwrap();
    assert_eq!(list_ids(root.path(), "pyro"), vec!["vm2"]);
    remove(root.path(), "pyro", "absent").unwrap();
}

#[test]
fn each_version_names_its_own_settings() {
    assert_eq!(
        (CgroupVersion::V1.as_arg(), CgroupVersion::V2.as_arg()),
        ("1", "2")
    );
    assert_eq!(CgroupVersion::V2.cpu_limit(500), ["cpu.max=50000 100000"]);
    assert_eq!(
        CgroupVersion::V1.cpu_limit(500),
        ["cpu.cfs_period_us=100000", "cpu.cfs_quota_us=50000"]
    );
    assert_eq!(CgroupVersion::V2.memory_limit_file(), "memory.max");
    assert_eq!(
        CgroupVersion::V1.memory_limit_file(),
        "memory.limit_in_bytes"
    );
}

use super::*;

#[test]
fn records_round_trip_and_list() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths::new(
        tmp.path().join("state"),
        pyro_env::Cache::new(tmp.path().join("cache")),
    );
    let rec = VmRecord {
        layout_version: VM_LAYOUT_VERSION,
        id: "abc".into(),
        backend: BackendKind::HostCompat,
        environment: "debian:12".into(),
        owner: Owner::this_process(),
        created_at: 1.5,
        process: None,
        firecracker: None,
        jail_uid: None,
        console_keeper: None,
        cgroup_parent: None,
        agent_socket: Some("/x/agent.sock".into()),
        network: None,
    };
    std::fs::create_dir_all(paths.vm_dir("abc")).unwrap();
    rec.save(&paths).unwrap();
    assert_eq!(VmRecord::load(&paths, "abc").unwrap(), rec);
    assert!(!rec.owner.is_gone(&paths, "abc"));
    let ws = Owner::Workspace {
        workspace_id: "0123456789abcdef".into(),
    };
    assert!(
        ws.is_gone(&paths, "abc"),
        "a missing workspace claims nothing"
    );
    std::fs::create_dir_all(paths.vm_dir("zzz")).unwrap();
    assert_eq!(VmRecord::list_ids(&paths), ["abc", "zzz"]);
    assert!(VmRecord::load(&paths, "zzz").is_none());
}

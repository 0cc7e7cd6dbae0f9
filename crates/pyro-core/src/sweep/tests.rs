use super::*;
use crate::BackendKind;
use crate::records::{Owner, VM_LAYOUT_VERSION};

fn paths() -> (tempfile::TempDir, Paths) {
    let tmp = tempfile::tempdir().unwrap();
    let p = Paths::new(
        tmp.path().join("state"),
        pyro_env::Cache::new(tmp.path().join("cache")),
    )
    .with_cgroup_root(tmp.path().join("cgroup"));
    (tmp, p)
}

fn record(id: &str, owner: Owner, process: Option<ProcessId>) -> VmRecord {
    VmRecord {
        layout_version: VM_LAYOUT_VERSION,
        id: id.into(),
        backend: BackendKind::HostCompat,
        environment: "debian:12".into(),
        owner,
        created_at: 0.0,
        process,
        firecracker: None,
        jail_uid: None,
        console_keeper: None,
        cgroup_parent: None,
        agent_socket: None,
        network: None,
    }
}

#[test]
#[allow(
    clippy::zombie_processes,
    reason = "the sweep kills and reaps the child"
)]
fn orphans_are_removed_and_live_sandboxes_kept() {
    let (_t, p) = paths();
    // An orphan: its owner is a process that no longer exists.
    let dead_owner = ProcessId {
        pid: std::process::id(),
        start_ticks: 1,
    };
    let child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let orphan_proc = ProcessId::of(child.id()).unwrap();
    std::fs::create_dir_all(p.vm_dir("orphan")).unwrap();
    record(
        "orphan",
        Owner::Process {
            process: dead_owner,
        },
        Some(orphan_proc),
    )
    .save(&p)
    .unwrap();
    // A live sandbox owned by this test process.
    std::fs::create_dir_all(p.vm_dir("live")).unwrap();
    record("live", Owner::this_process(), None)
        .save(&p)
        .unwrap();
    // Debris: a directory without a record, and a jail without a sandbox.
    std::fs::create_dir_all(p.vm_dir("debris")).unwrap();
    std::fs::create_dir_all(p.jail_base().join("firecracker/ghost/root")).unwrap();
    // Its cgroups, and a live sandbox's, in a fake v1 hierarchy.
    let parent = p.cgroup_parent();
    for c in ["memory", "pids"] {
        std::fs::create_dir_all(p.cgroup_root().join(c).join(&parent).join("ghost")).unwrap();
        std::fs::create_dir_all(p.cgroup_root().join(c).join(&parent).join("live")).unwrap();
    }

    let report = sweep(&p);
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(!orphan_proc.is_alive());
    assert!(!p.vm_dir("orphan").exists());
    assert!(!p.vm_dir("debris").exists());
    assert!(!p.jail_base().join("firecracker/ghost").exists());
    assert!(p.vm_dir("live").exists());
    assert_eq!(cgroup::list_ids(p.cgroup_root(), &parent), ["live"]);
    assert_eq!(report.removed.len(), 4, "{report:?}");
    assert!(
        report
            .removed
            .iter()
            .any(|l| l.starts_with("Removed sandbox orphan (")
                && l.ends_with("the pyro process that started it is gone")),
        "{report:?}"
    );
    assert_eq!(sweep(&p).removed.len(), 0);
}

#[test]
fn a_record_of_another_layout_version_is_reported_never_deleted() {
    let (_t, p) = paths();
    std::fs::create_dir_all(p.vm_dir("future")).unwrap();
    let mut rec = serde_json::to_value(record("future", Owner::this_process(), None)).unwrap();
    rec["layout_version"] = serde_json::json!(VM_LAYOUT_VERSION_NEXT);
    std::fs::write(VmRecord::file(&p, "future"), rec.to_string()).unwrap();
    std::fs::write(p.vm_dir("future").join("upper.ext4"), b"someone's disk").unwrap();
    std::fs::create_dir_all(p.jail_base().join("firecracker/future/root")).unwrap();
    let report = sweep(&p);
    assert!(p.vm_dir("future").join("upper.ext4").exists());
    assert!(p.jail_base().join("firecracker/future").exists());
    assert!(report.removed.is_empty(), "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|l| l.starts_with("Left sandbox future alone")),
        "{report:?}"
    );
}

const VM_LAYOUT_VERSION_NEXT: u32 = crate::records::VM_LAYOUT_VERSION + 1;

#[test]
fn id_under_finds_the_sandbox() {
    let base = Path::new("/s/vms");
    assert_eq!(
        id_under(Path::new("/s/vms/abc/api.sock"), base).as_deref(),
        Some("abc")
    );
    assert_eq!(id_under(Path::new("/other/abc"), base), None);
}

#[test]
fn only_the_served_socket_makes_a_process_ours() {
    let vms = Path::new("/s/vms");
    let fc = b"firecracker\0--api-sock\0/s/vms/abc/api.sock\0";
    assert_eq!(served_socket_id(fc, vms).as_deref(), Some("abc"));
    let agent = b"pyro-agent\0host-compat\0--lower\0/c/rootfs\0--socket\0/s/vms/def/agent.sock\0";
    assert_eq!(served_socket_id(agent, vms).as_deref(), Some("def"));
    // Someone reading a sandbox's log is not part of the sandbox.
    let tail = b"tail\0-f\0/s/vms/abc/console.log\0";
    assert_eq!(served_socket_id(tail, vms), None);
}

/// A process still serving a socket of a sandbox that no longer exists
/// (no record, no directory) is killed, and the report says so.
#[test]
#[allow(
    clippy::zombie_processes,
    reason = "the sweep kills and reaps the child"
)]
fn a_process_left_serving_a_removed_sandbox_is_killed() {
    let (_t, p) = paths();
    std::fs::create_dir_all(p.vms_dir()).unwrap();
    let socket = p.vms_dir().join("gone").join("agent.sock");
    // A shell blocked in a builtin: its own command line names the socket.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "read x", "sh", "--socket"])
        .arg(&socket)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !our_processes(&p).contains(&(pid, "gone".to_owned())) {
        assert!(std::time::Instant::now() < deadline, "the shell never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = sweep(&p);
    assert!(
        report.removed.contains(&format!(
            "Killed process {pid}, which was still running for the removed sandbox gone"
        )),
        "{report:?}"
    );
    // Killed and reaped by the sweep.
    assert!(ProcessId::of(pid).is_none_or(|p| !p.is_alive()));
    assert!(
        child
            .try_wait()
            .is_err_and(|e| e.raw_os_error() == Some(libc::ECHILD))
    );
}

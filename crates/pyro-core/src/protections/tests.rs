use super::*;

#[test]
fn what_each_host_lacks_is_named() {
    let all: Vec<String> = ["memory", "pids", "cpu"].map(String::from).to_vec();
    let p = host_side_of(BackendKind::Firecracker, true, &all, 2, 512);
    assert!(p.missing.is_empty(), "{:?}", p.missing);
    assert_eq!(
        p.host,
        Some(HostLimits {
            memory_bytes: Some(768 << 20),
            cpu_millicores: Some(2250),
            pids: Some(256)
        })
    );
    let p = host_side_of(BackendKind::Firecracker, true, &all[..2], 1, 512);
    assert!(
        p.missing[0].contains("no cpu cgroup controller"),
        "{:?}",
        p.missing
    );
    assert_eq!(p.host.unwrap().cpu_millicores, None);
    let p = host_side_of(BackendKind::Firecracker, false, &all, 1, 512);
    assert!(p.host.is_none() && p.missing[0].starts_with("not root"));
    let p = host_side_of(BackendKind::HostCompat, true, &all, 1, 512);
    assert!(p.host.is_none() && p.missing[0].contains("host-compat"));
    let u = pyro_protocol::GuestUsage {
        disk_total_bytes: 1 << 30,
        disk_free_bytes: 1 << 19,
        disk_full: true,
        memory_max_bytes: None,
        tasks_per_command: None,
        cpus: 1,
    };
    let p = host_side_of(BackendKind::Firecracker, true, &all, 1, 512).with_guest(&u);
    assert!(p.missing[0].contains("without limits"));
    assert_eq!(
        p.disk,
        Some(DiskUsage {
            total_mib: 1024,
            free_mib: 0,
            full: true
        })
    );
}

#[test]
fn each_limit_says_what_to_do() {
    assert!(
        limit_hit(GuestLimit::Disk, 1024, 512)
            .message
            .starts_with("workspace disk full")
    );
    assert!(
        limit_hit(GuestLimit::Memory, 1024, 512)
            .message
            .contains("mem_mib")
    );
    assert!(
        limit_hit(GuestLimit::Processes, 1024, 512)
            .message
            .contains("512 processes")
    );
}

/// A guest that does not answer in time: its side is unknown, and said so.
#[test]
fn a_silent_guest_is_named_as_unknown() {
    let all: Vec<String> = ["memory", "pids", "cpu"].map(String::from).to_vec();
    let p = host_side_of(BackendKind::Firecracker, true, &all, 1, 512).guest_silent();
    assert_eq!(p.guest, None);
    assert_eq!(
        p.missing,
        ["the guest's limits and disk space are unknown: it did not answer in 3 s"]
    );
}

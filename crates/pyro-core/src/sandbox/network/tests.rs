use super::*;

/// The relay's hook moves it into the namespace it was given (here the
/// test's own, entered from a fresh one), holding the listener as
/// descriptor 3 across exec: from another descriptor, and from 3 itself,
/// where dup2 would keep close-on-exec. Needs root (setns, unshare), as
/// the suite runs.
#[test]
fn the_relay_hook_enters_the_namespace_with_the_listener_as_descriptor_3() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it enters network namespaces)"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Far from 3, so the dup2 path is the one taken.
    // SAFETY: duplicates a descriptor this test owns.
    let lfd = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
    assert!(lfd >= 100);
    let ns = std::fs::File::open("/proc/self/ns/net").unwrap();
    let nsfd = ns.as_raw_fd();
    let home_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let entered = move || {
        // A namespace of its own first, so entering the given one shows.
        // SAFETY: a forked child of this test that ends right after.
        let away = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0
            && std::fs::read_link("/proc/self/ns/net").is_ok_and(|n| n != home_ns);
        (away, home_ns)
    };
    let bound_to_3 = move || {
        // SAFETY: reads of this process's own descriptor 3.
        let flags = unsafe { libc::fcntl(3, libc::F_GETFD) };
        // SAFETY: borrows descriptor 3 without closing it.
        let sock = std::mem::ManuallyDrop::new(unsafe {
            <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(3)
        });
        flags == 0 && sock.local_addr().is_ok_and(|a| a.port() == port)
    };
    let from_any = crate::tests::in_forked_child(|| {
        let (away, home) = entered();
        // SAFETY: a forked child of this test that ends right after.
        let hooked = away && unsafe { relay_hook(nsfd, lfd) }.is_ok();
        hooked && std::fs::read_link("/proc/self/ns/net").is_ok_and(|n| n == home) && bound_to_3()
    });
    assert!(from_any);
    let from_3 = crate::tests::in_forked_child(|| {
        // SAFETY: this child's descriptors; it ends right after. The
        // listener moves to 3, close-on-exec as every descriptor here is.
        let moved = unsafe { libc::dup3(lfd, 3, libc::O_CLOEXEC) } == 3;
        // SAFETY: as above.
        let hooked = moved && unsafe { relay_hook(nsfd, 3) }.is_ok();
        hooked && bound_to_3()
    });
    assert!(from_3);
    // A descriptor that is not a namespace: refused (EINVAL).
    let refused = crate::tests::in_forked_child(|| {
        // SAFETY: as above.
        let e = unsafe { relay_hook(lfd, lfd) }.unwrap_err();
        e.raw_os_error() == Some(libc::EINVAL)
    });
    assert!(refused);
    // SAFETY: the duplicate made above.
    unsafe { libc::close(lfd) };
}

/// The fake sandbox with `network` in its record.
fn with_network(dir: &Path, network: Option<NetRecord>) -> Sandbox {
    let (mut sandbox, _listener) = crate::sandbox::tests::fake_sandbox(dir);
    sandbox.record.network = network;
    sandbox.record.save(&sandbox.paths).unwrap();
    sandbox
}

/// Network calls on a sandbox without a network, or whose network was
/// never made, are refused as invalid; starting its daemon has nothing to
/// do.
#[tokio::test]
async fn a_sandbox_without_a_network_refuses_network_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut none = with_network(dir.path(), None);
    let policy = Policy::off();
    let e = none.set_network_policy(&policy).await.unwrap_err();
    assert!(
        matches!(&e, CoreError::Invalid(m) if m.contains("has no network")),
        "{e}"
    );
    let e = none.publish_port("web", 0, 8080).unwrap_err();
    assert!(
        matches!(&e, CoreError::Invalid(m) if m.contains("has no network")),
        "{e}"
    );
    none.start_network_daemon(&policy).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut unmade = with_network(
        dir.path(),
        Some(NetRecord {
            plumbing: None,
            daemon: None,
            log_dir: dir.path().join("log"),
        }),
    );
    let e = unmade.set_network_policy(&policy).await.unwrap_err();
    assert!(
        matches!(&e, CoreError::Invalid(m) if m.contains("never set up")),
        "{e}"
    );
    unmade.start_network_daemon(&policy).await.unwrap();
    assert!(
        !unmade
            .net_dir()
            .join(pyro_net::daemon::CONFIG_FILE)
            .exists()
    );
}

/// A policy whose rules cannot be applied (here: the namespace is gone)
/// is an error, and the daemon's configuration file keeps the policy still
/// in force.
#[tokio::test]
async fn a_policy_that_cannot_be_applied_leaves_the_old_one_on_file() {
    let dir = tempfile::tempdir().unwrap();
    let plumbing = Plumbing {
        id: "fakeagent0001".into(),
        netns: "pyro-test-no-such-namespace".into(),
        host_link: "pyro-test-none".into(),
        host_addr: std::net::Ipv4Addr::new(10, 255, 255, 1),
        ns_addr: std::net::Ipv4Addr::new(10, 255, 255, 2),
        host_table: "pyro_test_none".into(),
    };
    let mut sandbox = with_network(
        dir.path(),
        Some(NetRecord {
            plumbing: Some(plumbing.clone()),
            daemon: None,
            log_dir: dir.path().join("log"),
        }),
    );
    let net_dir = sandbox.net_dir();
    std::fs::create_dir_all(&net_dir).unwrap();
    let old = pyro_net::daemon::Config {
        version: pyro_net::daemon::CONFIG_VERSION,
        netns: plumbing.netns.clone(),
        policy: Policy::off(),
        vm: None,
        log_dir: dir.path().join("log"),
        generation: 1,
    };
    old.save(&net_dir).unwrap();
    let before = std::fs::read(net_dir.join(pyro_net::daemon::CONFIG_FILE)).unwrap();
    let new = Policy::parse(pyro_net::policy::Mode::Egress, &["api.example".into()], &[]).unwrap();
    let e = sandbox.set_network_policy(&new).await.unwrap_err();
    assert!(
        matches!(&e, CoreError::Io { context, .. } if context.contains("guest network")),
        "{e:?}"
    );
    assert_eq!(
        std::fs::read(net_dir.join(pyro_net::daemon::CONFIG_FILE)).unwrap(),
        before
    );
}

/// The network crate's errors become the core's: a host that cannot
/// network guests is its own kind, with the crate's reason and fix; any
/// other failure is an I/O error that names the set-up.
#[test]
fn network_errors_keep_their_kind() {
    let e = net_error(pyro_net::NetError::Unsupported("no /dev/net/tun".into()));
    assert!(
        matches!(&e, CoreError::NetworkUnavailable(m) if m == "no /dev/net/tun"),
        "{e}"
    );
    let e = net_error(pyro_net::NetError::Command {
        what: "nft".into(),
        detail: "failed".into(),
    });
    assert!(
        matches!(&e, CoreError::Io { context, .. } if context == "setting up the guest network"),
        "{e:?}"
    );
}

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

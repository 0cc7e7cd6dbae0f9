use super::*;

/// The relay's hook leaves it in the namespace it was given, holding the
/// listener as descriptor 3 across exec (from any descriptor, and from 3
/// itself, where dup2 would keep close-on-exec).
#[test]
fn the_relay_hook_enters_the_namespace_with_the_listener_as_descriptor_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ns = std::fs::File::open("/proc/self/ns/net").unwrap();
    let (lfd, nsfd) = (listener.as_raw_fd(), ns.as_raw_fd());
    let bound_to_3 = || {
        // SAFETY: reads of this process's own descriptor 3.
        let flags = unsafe { libc::fcntl(3, libc::F_GETFD) };
        // SAFETY: borrows descriptor 3 without closing it.
        let sock = std::mem::ManuallyDrop::new(unsafe {
            <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(3)
        });
        flags == 0 && sock.local_addr().is_ok_and(|a| a.port() == port)
    };
    let from_any = crate::tests::in_forked_child(None, || {
        // SAFETY: a forked child of this test that ends right after.
        unsafe { relay_hook(nsfd, lfd) }.is_ok() && bound_to_3()
    });
    assert!(from_any);
    let from_3 = crate::tests::in_forked_child(None, || {
        // The listener moves to 3 first, close-on-exec as every descriptor
        // of this process is.
        let moved = if lfd == 3 {
            // SAFETY: a flag of this child's own descriptor.
            unsafe { libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC) == 0 }
        } else {
            // SAFETY: this child's descriptors; it ends right after.
            unsafe { libc::dup3(lfd, 3, libc::O_CLOEXEC) == 3 }
        };
        // SAFETY: a forked child of this test that ends right after.
        let hooked = moved && unsafe { relay_hook(nsfd, 3) }.is_ok();
        hooked && bound_to_3()
    });
    assert!(from_3);
    // Not a namespace: refused.
    let refused = crate::tests::in_forked_child(None, || {
        // SAFETY: as above.
        unsafe { relay_hook(lfd, lfd) }.is_err()
    });
    assert!(refused);
}

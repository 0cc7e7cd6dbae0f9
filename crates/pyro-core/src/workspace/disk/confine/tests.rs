use super::*;

/// What a confined process is: its ids, groups, limits and network.
#[test]
fn a_confined_tool_runs_unprivileged_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    std::fs::write(&path, b"0123456789").unwrap();
    let file = open_copy(&path, true).unwrap();
    let mut cmd = Command::new("sh");
    let arg = confine(&mut cmd, &file);
    let script = "id -u; id -G; ulimit -v; ulimit -f; cat \"$1\"; echo; \
                      tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' \\n'; echo; \
                      head -c 20 /dev/zero > \"$1\" 2>/dev/null; echo wrote=$?";
    let out = cmd.args(["-c", script, "sh"]).arg(&arg).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    if nix::unistd::geteuid().is_root() {
        assert_eq!(lines[0], "65534", "{text}");
        assert_eq!(lines[1], "65534", "{text}");
        // Only loopback in its own network namespace.
        assert_eq!(lines[5].trim(), "lo", "{text}");
    }
    assert_eq!(lines[2], (MEMORY_MAX / 1024).to_string(), "{text}");
    // ulimit -f counts 512-byte blocks: the 10-byte image rounds to 0.
    assert_eq!(lines[3], "0", "{text}");
    assert_eq!(lines[4], "0123456789", "{text}");
    // Growing the image past its size is refused.
    assert_ne!(lines[6], "wrote=0", "{text}");
}

/// The hook itself, in a process of its own: what it leaves is what a tool
/// gets (the shell above sees the same from the outside).
#[test]
fn the_hook_leaves_its_process_bounded_and_unable_to_regain_privileges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image");
    let size: u64 = 64 << 20;
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let file = open_copy(&path, false).unwrap();
    let fd = file.as_raw_fd();
    let root = nix::unistd::geteuid().is_root();
    let net_before = std::fs::read_link("/proc/self/ns/net").unwrap();
    let kept = crate::tests::in_forked_child(|| {
        // SAFETY: a forked child of this test that ends right after.
        if unsafe { confine_here(fd, size) }.is_err() {
            return false;
        }
        let limit = |r| {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit into a local.
            unsafe { libc::getrlimit(r, &mut l) };
            (l.rlim_cur, l.rlim_max)
        };
        // SAFETY: reads of this process's own flags.
        let (fd_flags, no_new_privs) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFD),
                libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            )
        };
        let unprivileged = !root
            || (nix::unistd::geteuid().as_raw() == UNPRIVILEGED
                && nix::unistd::getegid().as_raw() == UNPRIVILEGED
                && nix::unistd::getgroups().is_ok_and(|g| g.is_empty())
                && std::fs::read_link("/proc/self/ns/net").is_ok_and(|n| n != net_before)
                // Root's own files are out of reach now.
                && std::fs::read_dir("/root").is_err());
        fd_flags == 0
            && no_new_privs == 1
            && limit(libc::RLIMIT_AS) == (MEMORY_MAX, MEMORY_MAX)
            && limit(libc::RLIMIT_CPU) == (CPU_SECONDS_MAX, CPU_SECONDS_MAX)
            && limit(libc::RLIMIT_NOFILE) == (FILES_MAX, FILES_MAX)
            && limit(libc::RLIMIT_CORE) == (0, 0)
            && limit(libc::RLIMIT_FSIZE) == (size, size)
            && unprivileged
    });
    assert!(kept, "the confined process was not what the hook promises");
    // A descriptor that is not open: the hook fails, and says so.
    let failed = crate::tests::in_forked_child(|| {
        // SAFETY: as above.
        unsafe { confine_here(-1, size) }.is_err()
    });
    assert!(failed);
}

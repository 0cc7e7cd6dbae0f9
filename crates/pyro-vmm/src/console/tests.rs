use super::*;
use std::io::Write;

#[test]
fn keeps_the_newest_output_within_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let (wr, keeper) = spawn_keeper(&log, 1 << 20).unwrap();
    assert!(keeper.is_some_and(|k| k.is_alive()));
    let mut pipe = std::fs::File::from(wr);
    // 200 MiB of numbered lines, as a guest looping on its serial port.
    let mut line = 0u64;
    let mut written = 0u64;
    while written < 200 << 20 {
        let chunk: String = (0..1000)
            .map(|_| {
                line += 1;
                format!("line {line:012}\n")
            })
            .collect();
        pipe.write_all(chunk.as_bytes()).unwrap();
        written += chunk.len() as u64;
    }
    drop(pipe);
    // The keeper exits once the pipe is closed and drained.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let last = format!("line {line:012}\n");
    loop {
        let now = std::fs::read_to_string(&log).unwrap_or_default();
        if now.ends_with(&last) {
            break;
        }
        assert!(std::time::Instant::now() < until, "the keeper fell behind");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let total =
        std::fs::metadata(&log).unwrap().len() + std::fs::metadata(rotated(&log)).unwrap().len();
    assert!(total <= 1 << 20, "{total} bytes kept");
    // At least the newest half of the cap, at most the cap.
    assert!(total >= 1 << 19, "{total} bytes kept");
    let tail = console_tail(&log, 4096);
    assert!(tail.ends_with(last.trim_end()), "{tail}");
}

#[test]
fn the_keeper_holds_no_descriptor_of_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let held = std::fs::File::create(dir.path().join("held")).unwrap();
    let log = dir.path().join("console.log");
    let (wr, _) = spawn_keeper(&log, 1 << 20).unwrap();
    // Find the keeper (the process whose stdout is the log) once it
    // has set itself up.
    let held_path = dir.path().join("held");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut keeper_fds = Vec::new();
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            let fd1 = p.path().join("fd/1");
            if std::fs::read_link(&fd1).ok().as_deref() == Some(log.as_path()) {
                keeper_fds = std::fs::read_dir(p.path().join("fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|f| std::fs::read_link(f.path()).ok())
                    .collect();
            }
        }
        if !keeper_fds.is_empty() && !keeper_fds.contains(&held_path) {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "no keeper, or it holds the caller's file: {keeper_fds:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop((held, wr));
}

/// The keeper keeps exactly its three descriptors: the pipe as 0, the log
/// as 1, the pid pipe as 2, none close-on-exec, and nothing else of its
/// caller's (locks, sockets).
#[test]
fn the_keeper_keeps_its_three_descriptors_and_nothing_else() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (rd, _wr) = nix::unistd::pipe().unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let (_pid_rd, pid_wr) = nix::unistd::pipe().unwrap();
    let stray = std::fs::File::open("/proc/self/status").unwrap();
    let ino = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).map(|m| m.ino());
    let want = [
        ino(rd.as_raw_fd()).unwrap(),
        ino(log.as_raw_fd()).unwrap(),
        ino(pid_wr.as_raw_fd()).unwrap(),
    ];
    let (a, b, c) = (rd.as_raw_fd(), log.as_raw_fd(), pid_wr.as_raw_fd());
    // Open in the caller, and gone in the keeper.
    assert!(ino(stray.as_raw_fd()).is_ok());
    // SAFETY: the child only makes system calls and ends with `_exit`.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: a freshly forked child, as keep_fds needs.
            unsafe { keep_fds(a, b, c) };
            // SAFETY: reads of this child's own descriptors.
            let kept = (0..3).all(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == 0);
            // SAFETY: as above.
            let others = (3..1024).any(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0);
            let same = (0..3).all(|fd| ino(fd).is_ok_and(|i| i == want[fd as usize]));
            #[cfg(pyro_coverage)]
            // SAFETY: the runtime linked in by `-C instrument-coverage`; it
            // opens the profile by name, and no other thread lives here.
            unsafe {
                __llvm_profile_write_file()
            };
            // SAFETY: ends the child without the harness's exit path.
            unsafe { libc::_exit(if kept && !others && same { 0 } else { 1 }) }
        }
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        child => {
            let mut status = 0;
            // SAFETY: our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the keeper's descriptors were not what it needs ({status})"
            );
        }
    }
}

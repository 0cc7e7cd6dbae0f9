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

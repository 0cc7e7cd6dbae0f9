use super::*;

#[test]
fn parses_names_with_spaces_and_parens() {
    let line =
        "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
    assert_eq!(
        parse_stat(line),
        Some(Stat {
            state: 'S',
            start_ticks: 98765
        })
    );
    assert_eq!(parse_stat("garbage"), None);
}

#[test]
fn current_process_is_alive_and_a_recycled_pid_is_not() {
    let me = ProcessId::current();
    assert!(me.is_alive());
    let other = ProcessId {
        start_ticks: me.start_ticks + 1,
        ..me
    };
    assert!(!other.is_alive());
    assert!(!other.signal(Signal::SIGCONT));
}

#[test]
#[allow(
    clippy::zombie_processes,
    reason = "kill_and_wait reaps the child itself"
)]
fn kill_and_wait_reaps_a_child() {
    let child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let id = ProcessId::of(child.id()).unwrap();
    assert!(id.is_alive());
    assert!(id.kill_and_wait(Duration::from_secs(5)));
    assert!(!id.is_alive());
    assert!(!std::path::Path::new(&format!("/proc/{}", child.id())).exists());
}

#[test]
#[allow(
    clippy::zombie_processes,
    reason = "terminate_and_wait reaps the children itself"
)]
fn terminate_and_wait_ends_politely_then_by_force() {
    // Ends on SIGTERM: gone well within the grace.
    let polite = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let id = ProcessId::of(polite.id()).unwrap();
    let t = Instant::now();
    assert!(id.terminate_and_wait(Duration::from_secs(20), Duration::from_secs(5)));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(!std::path::Path::new(&format!("/proc/{}", polite.id())).exists());
    // Ignores SIGTERM: killed once the grace is over.
    let stubborn = std::process::Command::new("sh")
        .args(["-c", "trap '' TERM; while :; do sleep 1; done"])
        // Its last `sleep 1` outlives it by up to a second: not holding
        // the test's output.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let id = ProcessId::of(stubborn.id()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    assert!(id.terminate_and_wait(Duration::from_millis(300), Duration::from_secs(5)));
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(!std::path::Path::new(&format!("/proc/{}", stubborn.id())).exists());
}

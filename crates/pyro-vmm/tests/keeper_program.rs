//! A keeper program that dies before it drains the console fails the
//! keeper's start (its own test binary: the keeper program is set once per
//! process).

#[test]
fn a_keeper_program_that_exits_at_once_is_an_error_not_a_silent_console() {
    pyro_vmm::console::use_keeper_program("/bin/false");
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = pyro_vmm::console::spawn_keeper(&dir.path().join("console.log"), 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not report ready"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

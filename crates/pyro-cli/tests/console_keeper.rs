//! The pyro program in console-keeper mode (what a VM's console keeper
//! executes): it drains the pipe on stdin into the log on stdout, keeps at
//! most the cap over the log and its rotated half, and ends with the pipe.

mod common;

use std::io::Write;
use std::process::Stdio;

#[test]
fn keeper_mode_keeps_the_newest_output_within_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let file = std::fs::File::create(&log).unwrap();
    // A 64 KiB segment: 128 KiB kept at most.
    let mut keeper = std::process::Command::new(common::pyro_bin())
        .arg("__pyro-console-keeper")
        .arg(&log)
        .arg("65536")
        .arg("0")
        .stdin(Stdio::piped())
        .stdout(file)
        // (Where the keeper reports its pid to the VM's launcher.)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = keeper.stdin.take().unwrap();
    let mut last = String::new();
    for i in 0..100_000u64 {
        last = format!("line {i:08}\n");
        pipe.write_all(last.as_bytes()).unwrap();
    }
    drop(pipe);
    assert!(keeper.wait().unwrap().success());
    let now = std::fs::read_to_string(&log).unwrap();
    let old = std::fs::read_to_string(dir.path().join("console.log.1")).unwrap();
    assert!(now.ends_with(&last), "{now}");
    assert!(now.len() + old.len() <= 128 << 10);
    assert!(now.len() + old.len() >= 64 << 10);
}

#[test]
fn keeper_mode_with_bad_arguments_exits_without_reading() {
    let o = std::process::Command::new(common::pyro_bin())
        .args(["__pyro-console-keeper", "/nonexistent/log", "many", "0"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

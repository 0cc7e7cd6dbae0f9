//! `pyro run` against real Firecracker guests (the `real-vm` nextest group
//! runs these one at a time).

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Home, pyro_bin, require_debian12, stderr, stdout};

#[test]
fn real_vm_pyro_run_end_to_end() {
    require_debian12();
    let home = Home::new();
    let o = home
        .cmd()
        .args(["run", "debian:12", "--", "git", "--version"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(stdout(&o).starts_with("git version 2."), "{}", stdout(&o));
    assert!(
        err.contains("execution_mode=guest_vsock exit_code=0"),
        "{err}"
    );
    home.assert_clean();
}

#[test]
fn real_vm_sigkill_mid_command_is_swept_by_the_next_invocation() {
    require_debian12();
    let home = Home::new();
    let mut child = std::process::Command::new(pyro_bin())
        .env("PYRO_HOME", home.path())
        .env("NO_COLOR", "1")
        .env_remove("PYRO_BACKEND")
        .args([
            "run",
            "debian:12",
            "--timeout-seconds",
            "600",
            "--",
            "echo started; sleep 600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the command runs inside the guest.
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let started = Instant::now();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n", "the guest never ran the command");
    assert!(started.elapsed() < Duration::from_secs(400));
    assert_eq!(home.sandboxes_left().len(), 1);
    assert_eq!(home.jails_left().len(), 1);
    assert!(
        !home.processes_left().is_empty(),
        "no Firecracker process while the command runs?"
    );
    assert!(
        !home.cgroups_left().is_empty(),
        "the jailer made no cgroup?"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    // Killed mid-command: everything is still there...
    assert_eq!(home.sandboxes_left().len(), 1);
    // ...until the next pyro invocation sweeps it.
    let o = home.cmd().args(["env", "list"]).output().unwrap();
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("the pyro process that started it is gone."),
        "{}",
        stderr(&o)
    );
    home.assert_clean();
}

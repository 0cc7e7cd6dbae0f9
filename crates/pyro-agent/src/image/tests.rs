use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_user_gets_its_own_home_and_name() {
    let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    let env = user_env_from(passwd, 1000);
    assert_eq!(env[0], ("HOME".into(), "/home/app".into()));
    assert_eq!(env[1], ("USER".into(), "app".into()));
    assert_eq!(user_env_from(passwd, 42)[0], ("HOME".into(), "/".into()));
}

#[test]
fn image_variables_are_parsed_and_checked() {
    let v = serde_json::json!([
        "PATH=/opt/bin:/usr/bin",
        "EMPTY=",
        "BAD NAME=x",
        "NOEQ",
        "A=b=c"
    ]);
    assert_eq!(
        parse_env(&v),
        [
            ("PATH".to_owned(), "/opt/bin:/usr/bin".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("A".to_owned(), "b=c".to_owned()),
        ]
    );
}

/// Runs `f` in a forked child of this test (it may drop privileges or
/// exec) and returns the child's exit status. A coverage build writes the
/// child's counters (to a file opened before `f`, so a dropped privilege
/// does not stop it) when `f` returns.
fn forked(f: impl FnOnce() -> u8) -> i32 {
    // SAFETY: the child runs `f` and ends with `_exit`; the harness's
    // thread holds no lock `f` takes.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            #[cfg(pyro_coverage)]
            crate::coverage::own_file_for_fork();
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
            #[cfg(pyro_coverage)]
            crate::coverage::write_now();
            // SAFETY: ends the child without the harness's exit path.
            unsafe { libc::_exit(i32::from(code)) }
        }
        nix::unistd::ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
            other => panic!("the child ended with {other:?}"),
        },
    }
}

/// `run-as`: bad arguments are refused with the usage, a program that is
/// not there is 127, and a script without `#!` runs through /bin/sh as
/// the user asked for.
#[test]
fn run_as_drops_to_the_user_and_runs_the_program() {
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(run_as(&args(&["1"])), 126);
    assert_eq!(run_as(&args(&["x", "0", "/bin/true", "true"])), 126);
    let missing = args(&["65534", "65534", "/no/such/program", "p"]);
    assert_eq!(forked(|| run_as(&missing)), 127);
    // A script with no `#!`, readable by anyone: it reports its uid.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    std::fs::write(&script, "exit $(( $(id -u) == 65534 ? 7 : 9 ))\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = script.to_str().unwrap();
    let as_nobody = args(&["65534", "65534", path, "script"]);
    assert_eq!(forked(|| run_as(&as_nobody)), 7);
}

use super::*;

#[test]
fn failures_carry_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("build.log");
    let mut seen = Vec::new();
    run_logged(
        "greeting",
        Command::new("sh").args(["-c", "echo one; echo two"]),
        &log,
        &mut |l| seen.push(l.to_owned()),
    )
    .unwrap();
    assert_eq!(seen, ["one", "two"]);
    let err = run_logged(
        "compiling",
        Command::new("sh").args(["-c", "echo almost; echo broken >&2; exit 2"]),
        &log,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("compiling failed; the build log is at"),
        "{err}"
    );
    // (stdout and stderr reach the log from two readers: in either order.)
    assert!(err.contains("almost") && err.contains("broken"), "{err}");
}

#[test]
fn missing_tools_name_their_package() {
    assert!(have("sh"));
    let err = require("pyro-no-such-tool", "pyro-pkg", "test things").unwrap_err();
    assert_eq!(
        err.to_string(),
        "pyro-no-such-tool is required to test things; install it with `apt-get install pyro-pkg`"
    );
}

#[test]
fn a_program_that_cannot_start_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_logged(
        "unpacking",
        &mut Command::new("/nonexistent/tool"),
        &dir.path().join("log"),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("unpacking: starting /nonexistent/tool"),
        "{err}"
    );
    assert_eq!(which("/bin/sh"), Some(PathBuf::from("/bin/sh")));
    assert_eq!(which("/nonexistent/tool"), None);
}

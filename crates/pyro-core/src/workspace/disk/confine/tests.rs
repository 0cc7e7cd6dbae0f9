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

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env() -> Vec<(String, String)> {
    vec![("PATH".into(), "/usr/bin:/bin".into())]
}

async fn read_all(r: Option<pipe::Receiver>) -> Vec<u8> {
    let mut out = Vec::new();
    r.unwrap().read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn runs_in_its_own_session_with_cwd_env_and_default_sigpipe() {
    let env = vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("FOO".into(), "bar".into()),
    ];
    let args = vec![
        "-c".into(),
        "pwd; echo $FOO; ps -o sid= -p $$; echo $$; grep SigIgn /proc/self/status >&2".into(),
    ];
    let mut c = spawn(&SpawnSpec {
        program: "sh".into(),
        args,
        env,
        cwd: "/tmp".into(),
        stdin: false,
        run_as: None,
    })
    .unwrap();
    let (out, err) = (c.stdout.take(), c.stderr.take());
    let (out, err) = tokio::join!(read_all(out), read_all(err));
    let status = c.wait().await.unwrap();
    assert!(status.success());
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(&lines[..2], ["/tmp", "bar"]);
    // Session id == its own pid: setsid took effect.
    assert_eq!(lines[2], lines[3], "{out}");
    // No ignored standard signal (SIGPIPE above all) inherited from the
    // agent. (glibc keeps its two internal real-time signals, 32 and 33,
    // ignored in a spawned child; no program uses them.)
    let err = String::from_utf8(err).unwrap();
    let mask = err
        .split_whitespace()
        .nth(1)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn line: {err}"));
    assert_eq!(mask & 0x7fff_ffff, 0, "ignored signals: {mask:#x}");
}

#[tokio::test]
async fn stdin_pipe_and_exit_codes() {
    let args = vec!["-c".into(), "cat; exit 7".into()];
    let mut c = spawn(&SpawnSpec {
        program: "/bin/sh".into(),
        args,
        env: env(),
        cwd: "/".into(),
        stdin: true,
        run_as: None,
    })
    .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(b"hello").await.unwrap();
    drop(stdin);
    assert_eq!(read_all(c.stdout.take()).await, b"hello");
    assert_eq!(c.wait().await.unwrap().code(), Some(7));
}

#[tokio::test]
async fn missing_and_unexecutable_programs() {
    let spec = |program: &str| SpawnSpec {
        program: program.into(),
        args: vec![],
        env: vec![],
        cwd: "/".into(),
        stdin: false,
        run_as: None,
    };
    assert!(matches!(
        spawn(&spec("pyro-no-such-program")),
        Err(SpawnError::NotFound(_))
    ));
    assert!(matches!(
        spawn(&spec("/no/such/program")),
        Err(SpawnError::NotFound(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("not-a-program");
    std::fs::write(&plain, "data").unwrap();
    assert!(matches!(
        spawn(&spec(plain.to_str().unwrap())),
        Err(SpawnError::NotExecutable(..))
    ));
    // Found on PATH but not executable (a directory of the same name
    // earlier on PATH is passed over): refused, naming the file; a
    // name with a slash is relative to the working directory.
    std::fs::create_dir_all(dir.path().join("d1/tool")).unwrap();
    std::fs::create_dir(dir.path().join("d2")).unwrap();
    std::fs::write(dir.path().join("d2/tool"), "data").unwrap();
    let env = [("PATH".to_owned(), "d1:d2".to_owned())];
    let cwd = dir.path().to_str().unwrap();
    match resolve("tool", &env, cwd) {
        Err(SpawnError::NotExecutable(name, e)) => {
            assert_eq!(name, "tool");
            assert!(e.to_string().contains("d2/tool is not executable"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        resolve("", &env, cwd),
        Err(SpawnError::NotFound(_))
    ));
    assert_eq!(
        resolve("d2/tool", &env, cwd).unwrap(),
        dir.path().join("d2/tool")
    );
}

#[tokio::test]
async fn scripts_without_shebang_and_relative_path_entries() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let script = bin.join("hello");
    std::fs::write(&script, "echo hello from $0 \"$1\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = vec![("PATH".to_owned(), "bin:/usr/bin:/bin".to_owned())];
    let args = vec!["world".to_owned()];
    let mut c = spawn(&SpawnSpec {
        program: "hello".into(),
        args,
        env,
        cwd: dir.path().to_str().unwrap().into(),
        stdin: false,
        run_as: None,
    })
    .unwrap();
    let out = read_all(c.stdout.take()).await;
    assert!(c.wait().await.unwrap().success());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "hello from {} world\n",
            dir.path().join("bin/hello").display()
        )
    );
}

#[tokio::test]
async fn the_group_can_be_killed_after_the_leader_exited() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    let args = vec![
        "-c".into(),
        format!("sleep 30 >/dev/null 2>&1 & echo $! > {}", pidfile.display()),
    ];
    let mut c = spawn(&SpawnSpec {
        program: "/bin/sh".into(),
        args,
        env: env(),
        cwd: "/".into(),
        stdin: false,
        run_as: None,
    })
    .unwrap();
    assert!(c.wait().await.unwrap().success());
    // Waiting again gives the same status (the leader is not reaped).
    assert!(c.wait().await.unwrap().success());
    let bg: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    c.kill_group();
    c.reap();
    for _ in 0..200 {
        let state = std::fs::read_to_string(format!("/proc/{bg}/stat")).unwrap_or_default();
        if state.is_empty() || state.contains(") Z") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the background process {bg} survived the group kill");
}

#[tokio::test]
async fn dropping_a_child_kills_and_reaps_its_group() {
    let args = vec!["-c".into(), "sleep 30 & sleep 30".into()];
    let c = spawn(&SpawnSpec {
        program: "/bin/sh".into(),
        args,
        env: env(),
        cwd: "/".into(),
        stdin: false,
        run_as: None,
    })
    .unwrap();
    let pid = c.pid();
    drop(c);
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // SAFETY: kill with signal 0 only checks for existence.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return;
        }
    }
    panic!("process {pid} still exists (killed but not reaped?)");
}

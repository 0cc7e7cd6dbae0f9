use super::*;
use pyro_protocol::{Frame, read_frame};
use std::collections::BTreeMap;

fn req(command: Command, timeout_ms: u64, limit: u64) -> ExecRequest {
    ExecRequest {
        command,
        cwd: Some("/".into()),
        env: BTreeMap::new(),
        timeout_ms,
        output_limit_bytes: limit,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    }
}

fn shell(s: &str) -> Command {
    Command::Shell { script: s.into() }
}

/// Runs a request over an in-memory pipe and collects what the host sees.
async fn exec(r: ExecRequest, stdin: Option<&[u8]>) -> (Vec<u8>, Vec<u8>, Response) {
    let (host, agent) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(run(agent, r));
    let (mut hr, mut hw) = tokio::io::split(host);
    if let Some(input) = stdin {
        write_frame(&mut hw, FrameKind::Stdin, input).await.unwrap();
        write_frame(&mut hw, FrameKind::StdinEnd, b"")
            .await
            .unwrap();
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let resp = loop {
        let f: Frame = read_frame(&mut hr).await.unwrap().expect("frame");
        match f.kind {
            FrameKind::Stdout => out.extend(f.payload),
            FrameKind::Stderr => err.extend(f.payload),
            FrameKind::Message => break f.message::<Response>().unwrap(),
            k => panic!("unexpected {k:?}"),
        }
    };
    server.await.unwrap().unwrap();
    (out, err, resp)
}

fn outcome(r: Response) -> ExecOutcome {
    match r {
        Response::Exec(o) => o,
        other => panic!("not an exec outcome: {other:?}"),
    }
}

#[tokio::test]
async fn separates_streams_and_reports_exit_code() {
    let (out, err, r) = exec(
        req(shell("echo out; echo err >&2; exit 3"), 10_000, 1 << 20),
        None,
    )
    .await;
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    let o = outcome(r);
    assert_eq!((o.exit_code, o.timed_out, o.stdout_bytes), (3, false, 4));
}

#[tokio::test]
async fn argv_is_not_reinterpreted_by_a_shell() {
    let argv = vec![
        "printf".into(),
        "%s\\n".into(),
        "a b".into(),
        "$HOME".into(),
    ];
    let (out, _, r) = exec(req(Command::Argv { argv }, 10_000, 1024), None).await;
    assert_eq!(out, b"a b\n$HOME\n");
    assert_eq!(outcome(r).exit_code, 0);
}

#[tokio::test]
async fn timeout_kills_the_group_and_keeps_partial_output() {
    let (out, _, r) = exec(
        req(
            shell("echo before; sleep 30 & sleep 30; echo after"),
            300,
            1024,
        ),
        None,
    )
    .await;
    assert_eq!(out, b"before\n");
    let o = outcome(r);
    assert!(o.timed_out);
    assert_eq!(o.exit_code, TIMEOUT_EXIT_CODE);
    assert!(o.duration_ms < 5_000, "took {} ms", o.duration_ms);
}

#[tokio::test]
async fn caps_output_and_counts_the_rest() {
    let (out, _, r) = exec(req(shell("head -c 100000 /dev/zero"), 10_000, 1000), None).await;
    assert_eq!(out.len(), 1000);
    let o = outcome(r);
    assert!(o.stdout_truncated && !o.stderr_truncated);
    assert_eq!(o.stdout_bytes, 100_000);
}

#[tokio::test]
async fn passes_non_utf8_bytes_and_stdin_through() {
    let mut r = req(shell("printf '\\377\\376'; cat"), 10_000, 1024);
    r.stdin = true;
    let (out, _, resp) = exec(r, Some(b"from stdin")).await;
    assert_eq!(out, b"\xff\xfefrom stdin");
    assert_eq!(outcome(resp).exit_code, 0);
}

#[tokio::test]
async fn missing_program_is_127_and_bad_cwd_is_an_error() {
    let argv = vec!["pyro-no-such-program".into()];
    let (_, err, r) = exec(req(Command::Argv { argv }, 10_000, 1024), None).await;
    assert!(String::from_utf8_lossy(&err).contains("command not found"));
    assert_eq!(outcome(r).exit_code, 127);
    let mut bad = req(shell("true"), 10_000, 1024);
    bad.cwd = Some("/no/such/dir".into());
    let (_, _, r) = exec(bad, None).await;
    assert!(matches!(
        r,
        Response::Error(AgentError {
            kind: ErrorKind::NotFound,
            ..
        })
    ));
}

#[tokio::test]
async fn env_is_base_plus_overrides() {
    let mut r = req(shell("echo $PATH; echo $FOO; echo ${LANG}"), 10_000, 4096);
    r.env.insert("FOO".into(), "bar".into());
    let (out, _, _) = exec(r, None).await;
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nbar\nC.UTF-8\n"
    );
    let mut r = req(shell("true"), 10_000, 4096);
    r.env.insert("BAD-NAME".into(), "x".into());
    let (_, _, resp) = exec(r, None).await;
    assert!(matches!(
        resp,
        Response::Error(AgentError {
            kind: ErrorKind::BadRequest,
            ..
        })
    ));
}

#[tokio::test]
async fn host_disconnect_kills_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    let script = format!("sleep 2; touch {}", marker.display());
    let (host, agent) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(run(agent, req(shell(&script), 30_000, 1024)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(host);
    assert!(server.await.unwrap().is_err());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !marker.exists(),
        "the command kept running after the host left"
    );
}

#[tokio::test]
async fn host_disconnect_kills_a_command_that_keeps_printing() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec yes", pidfile.display());
    let (host, agent) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(run(agent, req(shell(&script), 30_000, 1 << 30)));
    let (mut hr, hw) = tokio::io::split(host);
    // Some output arrives, then the host hangs up mid-stream.
    let f = read_frame(&mut hr).await.unwrap().expect("output");
    assert_eq!(f.kind, FrameKind::Stdout);
    drop((hr, hw));
    let res = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the agent kept serving a command nobody reads");
    assert!(res.unwrap().is_err());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for _ in 0..100 {
        // SAFETY: signal 0 only checks whether the process exists.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the command {pid} still runs after the host hung up");
}

#[tokio::test]
async fn host_disconnect_is_seen_while_stdin_goes_unread() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    // The command never reads stdin, so its pipe fills after 64 KiB.
    let script = format!("sleep 2; touch {}", marker.display());
    let mut r = req(shell(&script), 30_000, 1024);
    r.stdin = true;
    let (host, agent) = tokio::io::duplex(4 << 20);
    let server = tokio::spawn(run(agent, r));
    let (_hr, mut hw) = tokio::io::split(host);
    for _ in 0..16 {
        write_frame(&mut hw, FrameKind::Stdin, &[b'x'; CHUNK_BYTES])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop((_hr, hw));
    assert!(server.await.unwrap().is_err());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !marker.exists(),
        "the command kept running after the host left"
    );
}

#[tokio::test]
async fn requests_that_cannot_run_are_refused_or_fail_as_a_shell_would() {
    let argv = |v: &[&str]| Command::Argv {
        argv: v.iter().map(|s| (*s).to_owned()).collect(),
    };
    for (command, cwd, says) in [
        (argv(&[]), "/", "the command is empty"),
        (argv(&[""]), "/", "the program name is empty"),
        (shell(" \n "), "/", "the shell command is empty"),
        (shell("true"), "tmp", "must be an absolute path"),
    ] {
        let mut r = req(command, 1_000, 1 << 10);
        r.cwd = Some(cwd.into());
        let err = prepare(&r).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert!(err.message.contains(says), "{err:?}");
    }
    // A file that is not a program: 126, as a shell says it.
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("data");
    std::fs::write(&plain, "x").unwrap();
    let (_, err, r) = exec(req(argv(&[plain.to_str().unwrap()]), 5_000, 1 << 10), None).await;
    assert_eq!(outcome(r).exit_code, 126);
    assert!(
        String::from_utf8_lossy(&err).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&err)
    );
    let (code, text) = spawn_failure(&spawn::SpawnError::NotExecutable(
        "prog".into(),
        std::io::Error::other("bad ELF"),
    ));
    assert_eq!(
        (code, text.as_str()),
        (126, "pyro: prog: cannot execute: bad ELF\n")
    );
    let (code, text) = spawn_failure(&spawn::SpawnError::Setup(std::io::Error::other("no fds")));
    assert_eq!(
        (code, text.as_str()),
        (126, "pyro: cannot start the command: no fds\n")
    );
}

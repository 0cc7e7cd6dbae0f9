//! Command execution: spawn in a new session, stream output frames, enforce
//! the timeout on the whole process group, cap what is sent back, and kill
//! the group if the host goes away.

use std::io::ErrorKind as IoErrorKind;
use std::path::Path;
use std::time::Duration;

use pyro_protocol::{
    AgentError, CHUNK_BYTES, Command, ErrorKind, ExecOutcome, ExecRequest, FrameKind, Response,
    read_frame, valid_env_name, write_frame, write_message,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::spawn;

/// Default working directory.
pub const DEFAULT_CWD: &str = "/workspace";

/// How long to keep reading output after the command exited, for background
/// processes that still hold the pipes.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long one write of output to the host may block before the host
/// counts as gone (a host that stopped reading must not keep a command
/// running past its timeout).
const HOST_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit code reported when the timeout fired.
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// Serves one exec request on `stream`.
pub async fn run<S>(mut stream: S, req: ExecRequest) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let spec = match prepare(&req) {
        Ok(spec) => spec,
        Err(err) => {
            return write_message(&mut stream, &Response::Error(err))
                .await
                .map_err(|e| e.to_string());
        }
    };
    let (rd, mut wr) = tokio::io::split(stream);
    let started = Instant::now();
    let group = match crate::limits::Group::for_command(&req.limits) {
        Ok(g) => g,
        Err(err) => {
            return write_message(&mut wr, &Response::Error(err))
                .await
                .map_err(|e| e.to_string());
        }
    };
    let mut child = match spawn::spawn_in(&spec, group.as_ref()) {
        Ok(child) => child,
        Err(e) => {
            let (code, msg) = spawn_failure(&e);
            let _ = write_frame(&mut wr, FrameKind::Stderr, msg.as_bytes()).await;
            let outcome = ExecOutcome {
                exit_code: code,
                signal: None,
                timed_out: false,
                duration_ms: 0,
                stdout_bytes: 0,
                stderr_bytes: msg.len() as u64,
                stdout_truncated: false,
                stderr_truncated: false,
                limit: None,
            };
            return write_message(&mut wr, &Response::Exec(outcome))
                .await
                .map_err(|e| e.to_string());
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (host_tx, mut host_rx) = mpsc::channel(1);
    let host_reader = tokio::spawn(host_frames(rd, child.stdin.take(), host_tx));

    let limit = req.output_limit_bytes;
    let timeout_at = started + Duration::from_millis(req.timeout_ms);
    let mut out = StreamCount::default();
    let mut err = StreamCount::default();
    let mut obuf = vec![0u8; CHUNK_BYTES];
    let mut ebuf = vec![0u8; CHUNK_BYTES];
    let mut status = None;
    let mut timed_out = false;
    let mut drain_until = None;
    let mut host_gone = false;

    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        // A write to the host may block at most until a little after the
        // command's own timeout.
        let write_by =
            (Instant::now() + HOST_WRITE_TIMEOUT).min(timeout_at.max(Instant::now()) + DRAIN_GRACE);
        tokio::select! {
            r = read_some(&mut stdout, &mut obuf) => {
                if let Some(n) = r {
                    if out.take(n, limit) > 0 {
                        send(&mut wr, FrameKind::Stdout, &obuf[..out.last_sent], write_by, &mut host_gone).await;
                        if host_gone {
                            child.kill_group();
                        }
                    }
                } else {
                    stdout = None;
                }
            }
            r = read_some(&mut stderr, &mut ebuf) => {
                if let Some(n) = r {
                    if err.take(n, limit) > 0 {
                        send(&mut wr, FrameKind::Stderr, &ebuf[..err.last_sent], write_by, &mut host_gone).await;
                        if host_gone {
                            child.kill_group();
                        }
                    }
                } else {
                    stderr = None;
                }
            }
            s = child.wait(), if status.is_none() => {
                status = Some(s.map_err(|e| format!("wait: {e}"))?);
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            () = tokio::time::sleep_until(timeout_at), if status.is_none() && !timed_out => {
                // An exit that is ready together with the timeout wins: the
                // command finished in time.
                if let Ok(Some(s)) = child.try_status() {
                    status = Some(s);
                    drain_until = Some(Instant::now() + DRAIN_GRACE);
                } else {
                    timed_out = true;
                    child.kill_group();
                    crate::limits::kill(group.as_ref());
                }
            }
            () = sleep_until_opt(drain_until) => break,
            ev = host_rx.recv(), if !host_gone => {
                if ev.is_none() || ev == Some(HostEvent::Gone) {
                    // Nobody will read the result: do not leave the command
                    // running on its own.
                    host_gone = true;
                    child.kill_group();
                }
            }
        }
    }
    host_reader.abort();
    if host_gone {
        crate::limits::kill(group.as_ref());
        return Err("the host went away; the command was killed".into());
    }
    let status = status.ok_or("command status missing")?;
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    let exit_code = if timed_out {
        TIMEOUT_EXIT_CODE
    } else {
        status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0))
    };
    let outcome = ExecOutcome {
        exit_code,
        signal,
        timed_out,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout_bytes: out.total,
        stderr_bytes: err.total,
        stdout_truncated: out.total > limit,
        stderr_truncated: err.total > limit,
        limit: crate::limits::ended(group.as_ref(), exit_code),
    };
    write_message(&mut wr, &Response::Exec(outcome))
        .await
        .map_err(|e| e.to_string())?;
    wr.flush().await.map_err(|e| e.to_string())
}

/// Checks a request and turns it into what to spawn.
pub(crate) fn prepare(req: &ExecRequest) -> Result<spawn::SpawnSpec, AgentError> {
    let bad = |m: String| AgentError::new(ErrorKind::BadRequest, m);
    let (program, args) = match &req.command {
        Command::Argv { argv } => {
            let (prog, args) = argv
                .split_first()
                .ok_or_else(|| bad("the command is empty: give a program to run".into()))?;
            if prog.is_empty() {
                return Err(bad("the program name is empty".into()));
            }
            (prog.clone(), args.to_vec())
        }
        Command::Shell { script } => {
            if script.trim().is_empty() {
                return Err(bad(
                    "the shell command is empty: give a command to run".into()
                ));
            }
            ("/bin/sh".to_owned(), vec!["-c".to_owned(), script.clone()])
        }
    };
    let cwd = req.cwd.as_deref().unwrap_or(DEFAULT_CWD);
    if !cwd.starts_with('/') {
        return Err(bad(format!(
            "the working directory must be an absolute path, got {cwd:?}"
        )));
    }
    if cwd == DEFAULT_CWD {
        let _ = std::fs::create_dir_all(DEFAULT_CWD);
    }
    if !Path::new(cwd).is_dir() {
        return Err(AgentError::new(
            ErrorKind::NotFound,
            format!("the working directory {cwd} does not exist in the workspace"),
        ));
    }
    for name in req.env.keys() {
        if !valid_env_name(name) {
            return Err(bad(format!(
                "invalid environment variable name {name:?}: use letters, digits and _, not \
                 starting with a digit"
            )));
        }
    }
    // The base environment, with the request's variables replacing any of
    // the same name.
    let mut base = crate::image::command_env();
    if let Some(user) = req.run_as {
        base.extend(crate::image::user_env(user.uid));
    }
    let mut env: Vec<(String, String)> = base
        .into_iter()
        .filter(|(k, _)| !req.env.contains_key(k))
        .collect();
    env.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(spawn::SpawnSpec {
        program,
        args,
        env,
        cwd: cwd.to_owned(),
        stdin: req.stdin,
        run_as: req.run_as,
    })
}

/// Whether `id` is a valid host-chosen id for a job or a shell: 1 to 64
/// letters, digits or `-`.
pub(crate) fn valid_host_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Exit code and message for a command that could not start, as a shell
/// would report it.
pub(crate) fn spawn_failure(e: &spawn::SpawnError) -> (i32, String) {
    match e {
        spawn::SpawnError::NotFound(prog) => (127, format!("pyro: {prog}: command not found\n")),
        spawn::SpawnError::NotExecutable(prog, e) if e.kind() == IoErrorKind::PermissionDenied => {
            (126, format!("pyro: {prog}: permission denied\n"))
        }
        spawn::SpawnError::NotExecutable(prog, e) => {
            (126, format!("pyro: {prog}: cannot execute: {e}\n"))
        }
        spawn::SpawnError::Setup(e) => (126, format!("pyro: cannot start the command: {e}\n")),
    }
}

/// Counts a stream's bytes and decides how much of each chunk to send.
#[derive(Debug, Default)]
struct StreamCount {
    total: u64,
    last_sent: usize,
}

impl StreamCount {
    /// Records `n` new bytes; returns (and remembers) how many of them fit
    /// under `limit`.
    fn take(&mut self, n: usize, limit: u64) -> usize {
        let room = limit.saturating_sub(self.total);
        self.total += n as u64;
        self.last_sent = usize::try_from(room).unwrap_or(usize::MAX).min(n);
        self.last_sent
    }
}

/// Reads what `r` has (`None` at its end or on an error); pending forever
/// once `r` is gone, so a `select!` arm for a closed stream never fires.
pub(crate) async fn read_some<R: AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut [u8],
) -> Option<usize> {
    match r {
        Some(r) => match r.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever without one.
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends one output frame. A host that cannot be written to (the
/// connection broke, or it read nothing until `by`) is gone: the caller
/// then kills the command, which nobody would see end.
async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: FrameKind,
    data: &[u8],
    by: Instant,
    gone: &mut bool,
) {
    if !*gone
        && !matches!(
            tokio::time::timeout_at(by, write_frame(w, kind, data)).await,
            Ok(Ok(()))
        )
    {
        *gone = true;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum HostEvent {
    Gone,
}

/// Stdin the agent holds for a command that is not reading it yet (in
/// chunks of up to `CHUNK_BYTES`: 16 MiB). Past that the host waits.
const STDIN_BUFFER_CHUNKS: usize = 256;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forwards stdin frames to the command and reports when the host is gone.
/// A separate task writes to the command, so a command that never reads its
/// stdin does not stop this loop from seeing the host hang up.
async fn host_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    stdin: Option<tokio::net::unix::pipe::Sender>,
    tx: mpsc::Sender<HostEvent>,
) {
    let mut feed = None;
    let _writer = stdin.map(|mut s| {
        let (chunks, mut rx) = mpsc::channel::<Vec<u8>>(STDIN_BUFFER_CHUNKS);
        feed = Some(chunks);
        AbortOnDrop(tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if s.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // Dropping `s` here closes the command's stdin.
        }))
    });
    loop {
        match read_frame(&mut rd).await {
            Ok(Some(f)) if f.kind == FrameKind::Stdin => {
                if let Some(c) = &feed
                    && c.send(f.payload).await.is_err()
                {
                    feed = None;
                }
            }
            Ok(Some(f)) if f.kind == FrameKind::StdinEnd => feed = None,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                let _ = tx.send(HostEvent::Gone).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        let (code, text) =
            spawn_failure(&spawn::SpawnError::Setup(std::io::Error::other("no fds")));
        assert_eq!(
            (code, text.as_str()),
            (126, "pyro: cannot start the command: no fds\n")
        );
    }
}

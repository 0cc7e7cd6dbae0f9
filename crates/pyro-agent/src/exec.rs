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
mod tests;

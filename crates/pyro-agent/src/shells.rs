//! Interactive shells on PTYs: a shell keeps its working directory,
//! variables and running programs across requests.
//!
//! Each shell's output (the PTY merges stdout and stderr, as a terminal
//! does) goes into a bounded buffer addressed by offsets; a read from an
//! offset the buffer no longer holds says how much was dropped. At most
//! [`SHELLS_MAX`] shells run at once; an ended one is kept (its output
//! readable) until closed or made room for.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pyro_protocol::{
    AgentError, CHUNK_BYTES, ErrorKind, FrameKind, Response, ShellInfo, valid_env_name,
    write_frame, write_message,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ring::Ring;

/// Shells running at once.
pub const SHELLS_MAX: usize = 8;
/// Shells kept at once, ended ones included.
const KEPT_MAX: usize = 32;
/// Bytes of output a shell's buffer holds.
pub const BUFFER_BYTES: usize = 1 << 20;
/// Longest quiet time a read may wait for.
pub const IDLE_WAIT_MAX: Duration = Duration::from_secs(30);
/// How much longer than its quiet time a read may wait while output keeps
/// coming (a spinner is never quiet), and the most any read waits: well
/// under chat hosts' tool-call limits.
const READ_WAIT_EXTRA: Duration = Duration::from_secs(10);
const READ_WAIT_MAX: Duration = Duration::from_secs(40);
/// Most bytes one write may type.
pub const INPUT_MAX: usize = 64 << 10;

#[derive(Debug, Default)]
struct Inner {
    out: Ring<BUFFER_BYTES>,
    exit_code: Option<i32>,
    closed: bool,
    /// Terminal width and height.
    size: (u16, u16),
}

struct Shell {
    info: ShellInfo,
    inner: Mutex<Inner>,
    /// Woken on output and on exit.
    changed: Notify,
    writer: tokio::sync::Mutex<pty_process::OwnedWritePty>,
    /// The PTY's controller (for its foreground process group); open as
    /// long as the writer is.
    pty_fd: i32,
    /// The shell's process id (its session and first process group).
    pid: i32,
    order: u64,
    /// The task copying the PTY's output (ended on close).
    reader: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Shell {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> ShellInfo {
        let g = self.lock();
        let mut info = self.info.clone();
        info.state = if g.closed {
            "closed"
        } else if g.exit_code.is_some() {
            "exited"
        } else {
            "running"
        }
        .into();
        info.exit_code = g.exit_code;
        info.output_end = g.out.end();
        (info.cols, info.rows) = g.size;
        info
    }
}

#[derive(Default)]
struct Table {
    shells: HashMap<String, Arc<Shell>>,
    next: u64,
}

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn lookup(id: &str) -> Result<Arc<Shell>, AgentError> {
    table()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .shells
        .get(id)
        .cloned()
        .ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!(
                    "no shell {id} in this guest (it was closed, or ended with an earlier boot)"
                ),
            )
        })
}

fn bad(m: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::BadRequest, m)
}

/// `ShellOpen`: shell `id` (chosen by the host).
pub fn open(
    id: &str,
    cwd: &str,
    (cols, rows): (u16, u16),
    env: &BTreeMap<String, String>,
    keep_alive: bool,
) -> Result<Response, AgentError> {
    if !crate::exec::valid_host_id(id) {
        return Err(bad("a shell id is 1 to 64 letters, digits or `-`"));
    }
    if cols == 0 || rows == 0 {
        return Err(bad("a shell needs at least one column and one row"));
    }
    if !cwd.starts_with('/') || !std::path::Path::new(cwd).is_dir() {
        return Err(AgentError::new(
            ErrorKind::NotFound,
            format!("the working directory {cwd} does not exist in the workspace"),
        ));
    }
    for name in env.keys() {
        if !valid_env_name(name) {
            return Err(bad(format!(
                "invalid environment variable name {name:?}: use letters, digits and _, not \
                 starting with a digit"
            )));
        }
    }
    let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
    if t.shells.contains_key(id) {
        return Err(AgentError::new(
            ErrorKind::Conflict,
            format!("shell {id} exists already; open it under a new id"),
        ));
    }
    let running = t
        .shells
        .values()
        .filter(|s| s.lock().exit_code.is_none())
        .count();
    if running >= SHELLS_MAX {
        return Err(AgentError::new(
            ErrorKind::TooLarge,
            format!("{SHELLS_MAX} shells are already open here; close one first"),
        ));
    }
    if t.shells.len() >= KEPT_MAX {
        let oldest_ended = t
            .shells
            .iter()
            .filter(|(_, s)| s.lock().exit_code.is_some())
            .min_by_key(|(_, s)| s.order)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest_ended {
            t.shells.remove(&k);
        }
    }
    let io =
        |what: &str, e: pty_process::Error| AgentError::new(ErrorKind::Io, format!("{what}: {e}"));
    let (pty, pts) = pty_process::open().map_err(|e| io("opening a PTY", e))?;
    pty.resize(pty_process::Size::new(rows, cols))
        .map_err(|e| io("sizing the PTY", e))?;
    let program = if std::path::Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let mut vars: Vec<(String, String)> = crate::image::command_env()
        .into_iter()
        .filter(|(k, _)| !env.contains_key(k))
        .collect();
    vars.push(("TERM".into(), "xterm-256color".into()));
    vars.push(("PS1".into(), "pyro$ ".into()));
    vars.push(("PROMPT_COMMAND".into(), String::new()));
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Inside a cgroup of its own (see `limits`); the group goes when the
    // shell's processes have all ended.
    let group = crate::limits::Group::create();
    let mut cmd = pty_process::Command::new(program);
    if program == "/bin/bash" {
        cmd = cmd.args(["--noprofile", "--norc", "-i"]);
    } else {
        cmd = cmd.arg("-i");
    }
    let placed = group
        .as_ref()
        .map(crate::limits::Placed::enter)
        .transpose()
        .map_err(|e| AgentError::new(ErrorKind::Io, format!("entering the shell's cgroup: {e}")))?;
    let mut child = cmd
        .env_clear()
        .envs(vars)
        .current_dir(cwd)
        .spawn(pts)
        .map_err(|e| io("starting the shell", e))?;
    if let (Some(p), Some(pid)) = (&placed, child.id()) {
        p.started(i32::try_from(pid).unwrap_or(0));
    }
    drop(placed);
    // Left to the sweep of empty groups: the shell's processes are its.
    if let Some(g) = group {
        g.detach();
    }
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let pty_fd = pty.as_raw_fd();
    let (mut reader, writer) = pty.into_split();
    t.next += 1;
    let id = id.to_owned();
    let shell = Arc::new(Shell {
        info: ShellInfo {
            shell_id: id.clone(),
            cwd: cwd.to_owned(),
            cols,
            rows,
            state: "running".into(),
            exit_code: None,
            output_end: 0,
        },
        inner: Mutex::new(Inner {
            size: (cols, rows),
            ..Inner::default()
        }),
        changed: Notify::new(),
        writer: tokio::sync::Mutex::new(writer),
        pty_fd,
        pid,
        order: t.next,
        reader: Mutex::new(None),
    });
    t.shells.insert(id, shell.clone());
    drop(t);
    let s = shell.clone();
    let reader_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        // Output until the PTY closes (EIO once the shell and everything
        // holding the terminal are gone).
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    s.lock().out.push(&buf[..n]);
                    s.changed.notify_waiters();
                }
            }
        }
    });
    *shell.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader_task.abort_handle());
    let done = Arc::new(Notify::new());
    let reader_done = done.clone();
    tokio::spawn(async move {
        let _ = reader_task.await;
        reader_done.notify_one();
    });
    let s = shell.clone();
    tokio::spawn(async move {
        // A keep-alive shell holds the guest up until it ends.
        let _hold = crate::services::KeepAlive::new(keep_alive);
        let status = child.wait().await;
        let code = match status {
            Ok(st) => st.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(9)
            }),
            Err(_) => 255,
        };
        // What the shell left running in its session ends with it (now,
        // while its session id cannot yet belong to anyone else); then the
        // last output is read before the exit is told, so a read that sees
        // `exited` has everything.
        kill_session(pid);
        let _ = tokio::time::timeout(Duration::from_secs(2), done.notified()).await;
        s.lock().exit_code = Some(code);
        s.changed.notify_waiters();
    });
    Ok(Response::Shell(shell.info()))
}

/// `ShellRead`: waits as asked, sends output from `cursor`, then where it
/// got to.
pub async fn read<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    shell_id: &str,
    cursor: u64,
    max_bytes: u64,
    wait_idle_ms: Option<u64>,
) -> Result<(), String> {
    let shell = match lookup(shell_id) {
        Ok(s) => s,
        Err(e) => {
            return write_message(wr, &Response::Error(e))
                .await
                .map_err(|e| e.to_string());
        }
    };
    let max = usize::try_from(max_bytes)
        .unwrap_or(usize::MAX)
        .min(BUFFER_BYTES);
    if let Some(ms) = wait_idle_ms {
        let idle = Duration::from_millis(ms).min(IDLE_WAIT_MAX);
        let give_up = Instant::now() + (idle + READ_WAIT_EXTRA).min(READ_WAIT_MAX);
        loop {
            let notified = shell.changed.notified();
            {
                let g = shell.lock();
                let waiting = g.out.end().saturating_sub(cursor);
                if g.exit_code.is_some() || waiting >= max as u64 {
                    break;
                }
            }
            // Quiet for `idle`: done. Output restarts the wait.
            let until = (Instant::now() + idle).min(give_up);
            if tokio::time::timeout_at(until, notified).await.is_err() || Instant::now() >= give_up
            {
                break;
            }
        }
    }
    let (data, at, dropped, more) = {
        let g = shell.lock();
        let (data, at, dropped) = g.out.read(cursor, max);
        let more = at + (data.len() as u64) < g.out.end();
        (data, at, dropped, more)
    };
    for chunk in data.chunks(CHUNK_BYTES) {
        write_frame(wr, FrameKind::Stdout, chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    let answer = Response::ShellOutput {
        shell: shell.info(),
        next_cursor: at + data.len() as u64,
        dropped,
        more,
    };
    write_message(wr, &answer).await.map_err(|e| e.to_string())
}

/// `ShellWrite`.
pub async fn write(shell_id: &str, input: &str) -> Result<Response, AgentError> {
    if input.len() > INPUT_MAX {
        return Err(AgentError::new(
            ErrorKind::TooLarge,
            format!(
                "the input is {} bytes, above {INPUT_MAX}; type it in parts",
                input.len()
            ),
        ));
    }
    let shell = lookup(shell_id)?;
    if shell.lock().exit_code.is_some() {
        return Err(AgentError::new(
            ErrorKind::Conflict,
            format!("shell {shell_id} is not running (its process ended); open another"),
        ));
    }
    let mut w = shell.writer.lock().await;
    let typed = tokio::time::timeout(Duration::from_secs(10), async {
        w.write_all(input.as_bytes()).await?;
        w.flush().await
    })
    .await;
    match typed {
        Ok(Ok(())) => Ok(Response::Shell(shell.info())),
        Ok(Err(e)) => Err(AgentError::new(
            ErrorKind::Io,
            format!("typing into the shell: {e}"),
        )),
        Err(_) => Err(AgentError::new(
            ErrorKind::Io,
            "the shell has not read its input for 10 s (its terminal is full); read its output \
             or send it a signal",
        )),
    }
}

/// `ShellResize`: a new terminal size (the foreground program gets
/// `SIGWINCH`).
pub async fn resize(shell_id: &str, cols: u16, rows: u16) -> Result<Response, AgentError> {
    if cols == 0 || rows == 0 {
        return Err(bad("a shell needs at least one column and one row"));
    }
    let shell = lookup(shell_id)?;
    if shell.lock().exit_code.is_some() {
        return Err(AgentError::new(
            ErrorKind::Conflict,
            format!("shell {shell_id} is not running (its process ended)"),
        ));
    }
    shell
        .writer
        .lock()
        .await
        .resize(pty_process::Size::new(rows, cols))
        .map_err(|e| AgentError::new(ErrorKind::Io, format!("sizing the PTY: {e}")))?;
    shell.lock().size = (cols, rows);
    Ok(Response::Shell(shell.info()))
}

/// `ShellSignal`: to the terminal's foreground process group (the program
/// running in the shell, or the shell itself at its prompt).
pub fn signal(shell_id: &str, name: &str) -> Result<Response, AgentError> {
    let sig = match name.to_ascii_uppercase().trim_start_matches("SIG") {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        other => {
            return Err(bad(format!(
                "unknown signal {other:?}: use HUP, INT, TERM or KILL"
            )));
        }
    };
    let shell = lookup(shell_id)?;
    if shell.lock().exit_code.is_some() {
        return Err(AgentError::new(
            ErrorKind::Conflict,
            format!("shell {shell_id} is not running (its process ended)"),
        ));
    }
    // SAFETY: tcgetpgrp on the PTY controller this shell keeps open.
    let pgrp = unsafe { libc::tcgetpgrp(shell.pty_fd) };
    let target = if pgrp > 0 { pgrp } else { shell.pid };
    if target > 0 {
        // SAFETY: kill(2) of a process group in this shell's session.
        unsafe { libc::kill(-target, sig) };
    }
    Ok(Response::Shell(shell.info()))
}

/// `ShellClose`: hang up the shell's session, then kill what is left.
pub async fn close(shell_id: &str) -> Result<Response, AgentError> {
    let shell = lookup(shell_id)?;
    if shell.lock().exit_code.is_none() && shell.pid > 0 {
        // SAFETY: kill(2) of the shell's own process group.
        unsafe { libc::kill(-shell.pid, libc::SIGHUP) };
        let until = Instant::now() + Duration::from_secs(2);
        while shell.lock().exit_code.is_none() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // SAFETY: as above; whatever ignored the hang-up.
        unsafe { libc::kill(-shell.pid, libc::SIGKILL) };
    }
    // Programs the shell started in their own process groups share its
    // session: end every process whose session is the shell's (an exited
    // shell's session was ended when it exited).
    if shell.lock().exit_code.is_none() {
        kill_session(shell.pid);
    }
    if let Some(r) = shell
        .reader
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        r.abort();
    }
    shell.lock().closed = true;
    table()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .shells
        .remove(shell_id);
    Ok(Response::Shell(shell.info()))
}

/// `ShellList`.
pub fn list() -> Response {
    let t = table().lock().unwrap_or_else(|e| e.into_inner());
    let mut shells: Vec<&Arc<Shell>> = t.shells.values().collect();
    shells.sort_by_key(|s| s.order);
    Response::Shells {
        shells: shells.iter().map(|s| s.info()).collect(),
    }
}

/// Kills every process in session `sid` (by `/proc`).
fn kill_session(sid: i32) {
    if sid <= 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: getsid(2) only reads.
        if unsafe { libc::getsid(pid) } == sid {
            // SAFETY: kill(2) of a process of this shell's session.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests;

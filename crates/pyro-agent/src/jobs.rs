//! Jobs: commands that outlive the connection that started them, so a
//! build that takes minutes can be waited for across several short calls.
//!
//! A job's output goes into a bounded buffer per stream, addressed by
//! offsets from the start of the stream: a read sends what lies past the
//! caller's offset, and says how much before it the buffer no longer held.
//! At most [`JOBS_MAX`] jobs are kept; a finished one goes to make room
//! for a new one, a running one never does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pyro_protocol::{
    AgentError, CHUNK_BYTES, ErrorKind, ExecOutcome, ExecRequest, FrameKind, JobState, Response,
    write_frame, write_message,
};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::exec::{
    TIMEOUT_EXIT_CODE, prepare, read_some, sleep_until_opt, spawn_failure, valid_host_id,
};
use crate::ring::Ring;
use crate::spawn;

/// Jobs kept at once.
pub const JOBS_MAX: usize = 16;
/// Bytes of each stream a job's buffer holds.
pub const BUFFER_BYTES: usize = 2 << 20;
/// Longest one read may wait.
const WAIT_MAX: Duration = Duration::from_secs(600);
/// How long to keep reading output after the command exited.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Inner {
    out: Ring<BUFFER_BYTES>,
    err: Ring<BUFFER_BYTES>,
    outcome: Option<ExecOutcome>,
    cancelled: bool,
    /// A read has sent everything, the end included (it is the first to
    /// make room).
    collected: bool,
}

#[derive(Debug, Default)]
struct Job {
    inner: Mutex<Inner>,
    /// Woken on exit and on cancel (readers wait on it).
    changed: Notify,
    /// Tells the running job to kill its group (a permit is kept, so a
    /// cancel is never missed).
    kill: Notify,
    /// Sequence of creation (for eviction).
    order: u64,
}

impl Job {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
struct Table {
    jobs: HashMap<String, Arc<Job>>,
    next: u64,
}

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn lookup(id: &str) -> Result<Arc<Job>, AgentError> {
    table()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .jobs
        .get(id)
        .cloned()
        .ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!(
                    "no job {id} in this guest (its agent restarted, or it was made room for); \
                     the command's log on the host has what was read of it"
                ),
            )
        })
}

/// `JobStart`: spawns the command as job `job_id` and answers with its id.
pub fn start(job_id: &str, req: &ExecRequest) -> Result<Response, AgentError> {
    if !valid_host_id(job_id) {
        return Err(AgentError::new(
            ErrorKind::BadRequest,
            "a job id is 1 to 64 letters, digits or `-`",
        ));
    }
    if req.stdin {
        return Err(AgentError::new(
            ErrorKind::BadRequest,
            "a job cannot take stdin",
        ));
    }
    let spec = prepare(req)?;
    let group = crate::limits::Group::for_command(&req.limits)?;
    let (id, job) = {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        if t.jobs.contains_key(job_id) {
            return Err(AgentError::new(
                ErrorKind::Conflict,
                format!("job {job_id} exists already; start it under a new id"),
            ));
        }
        if t.jobs.len() >= JOBS_MAX {
            // Collected jobs go first; then the oldest finished one.
            let oldest_done = t
                .jobs
                .iter()
                .filter(|(_, j)| j.lock().outcome.is_some())
                .min_by_key(|(_, j)| (!j.lock().collected, j.order))
                .map(|(k, _)| k.clone());
            match oldest_done {
                Some(k) => {
                    t.jobs.remove(&k);
                }
                None => {
                    return Err(AgentError::new(
                        ErrorKind::TooLarge,
                        format!(
                            "{JOBS_MAX} commands are already running in the background here; \
                             wait for or cancel one first"
                        ),
                    ));
                }
            }
        }
        t.next += 1;
        let id = job_id.to_owned();
        let job = Arc::new(Job {
            order: t.next,
            ..Job::default()
        });
        t.jobs.insert(id.clone(), job.clone());
        (id, job)
    };
    let timeout = Duration::from_millis(req.timeout_ms);
    tokio::spawn(run(job, spec, timeout, group));
    Ok(Response::JobStarted { job_id: id })
}

/// Runs a job's command to its end, filling its buffers.
async fn run(
    job: Arc<Job>,
    spec: spawn::SpawnSpec,
    timeout: Duration,
    group: Option<crate::limits::Group>,
) {
    let started = Instant::now();
    let mut child = match spawn::spawn_in(&spec, group.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            let (code, msg) = spawn_failure(&e);
            let mut g = job.lock();
            g.err.push(msg.as_bytes());
            g.outcome = Some(ExecOutcome {
                exit_code: code,
                signal: None,
                timed_out: false,
                duration_ms: 0,
                stdout_bytes: 0,
                stderr_bytes: msg.len() as u64,
                stdout_truncated: false,
                stderr_truncated: false,
                limit: None,
            });
            drop(g);
            job.changed.notify_waiters();
            return;
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut obuf = vec![0u8; CHUNK_BYTES.min(64 << 10)];
    let mut ebuf = vec![0u8; CHUNK_BYTES.min(64 << 10)];
    let (mut out_total, mut err_total) = (0u64, 0u64);
    let timeout_at = started + timeout;
    let mut status = None;
    let mut timed_out = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        if status.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            r = read_some(&mut stdout, &mut obuf) => match r {
                Some(n) => {
                    out_total += n as u64;
                    job.lock().out.push(&obuf[..n]);
                    job.changed.notify_waiters();
                }
                None => stdout = None,
            },
            r = read_some(&mut stderr, &mut ebuf) => match r {
                Some(n) => {
                    err_total += n as u64;
                    job.lock().err.push(&ebuf[..n]);
                    job.changed.notify_waiters();
                }
                None => stderr = None,
            },
            s = child.wait(), if status.is_none() => {
                status = s.ok();
                if status.is_none() {
                    break;
                }
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
            () = tokio::time::sleep_until(timeout_at), if status.is_none() && !timed_out => {
                if let Ok(Some(s)) = child.try_status() {
                    status = Some(s);
                    drain_until = Some(Instant::now() + DRAIN_GRACE);
                } else {
                    timed_out = true;
                    child.kill_group();
                    crate::limits::kill(group.as_ref());
                }
            }
            () = job.kill.notified() => {
                child.kill_group();
                crate::limits::kill(group.as_ref());
            }
            () = sleep_until_opt(drain_until) => break,
        }
    }
    // Nothing of the job outlives it.
    child.kill_group();
    child.reap();
    let signal = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
    let exit_code = if timed_out {
        TIMEOUT_EXIT_CODE
    } else {
        status
            .and_then(|s| s.code())
            .unwrap_or_else(|| 128 + signal.unwrap_or(9))
    };
    let mut g = job.lock();
    g.outcome = Some(ExecOutcome {
        exit_code,
        signal,
        timed_out,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout_bytes: out_total,
        stderr_bytes: err_total,
        stdout_truncated: false,
        stderr_truncated: false,
        limit: crate::limits::ended(group.as_ref(), exit_code),
    });
    drop(g);
    job.changed.notify_waiters();
}

/// `JobRead`: waits, sends the output past the offsets, then the state.
pub async fn read<W: AsyncWrite + Unpin>(
    wr: &mut W,
    job_id: &str,
    from: (u64, u64),
    wait_ms: u64,
    max_bytes: u64,
) -> Result<(), String> {
    let job = match lookup(job_id) {
        Ok(j) => j,
        Err(e) => {
            return write_message(wr, &Response::Error(e))
                .await
                .map_err(|e| e.to_string());
        }
    };
    let max = usize::try_from(max_bytes)
        .unwrap_or(usize::MAX)
        .min(BUFFER_BYTES);
    // Until it ends, or a read's worth of output is waiting (so a reader
    // that keeps waiting never loses output to the bounded buffers).
    let until = Instant::now() + Duration::from_millis(wait_ms).min(WAIT_MAX);
    loop {
        let notified = job.changed.notified();
        {
            let g = job.lock();
            let waiting = g
                .out
                .end()
                .saturating_sub(from.0)
                .max(g.err.end().saturating_sub(from.1));
            if g.outcome.is_some() || waiting >= max as u64 {
                break;
            }
        }
        if tokio::time::timeout_at(until, notified).await.is_err() {
            break;
        }
    }
    let (out, err, state) = {
        let mut g = job.lock();
        let (out, out_at, out_dropped) = g.out.read(from.0, max);
        let (err, err_at, err_dropped) = g.err.read(from.1, max);
        let more =
            out_at + (out.len() as u64) < g.out.end() || err_at + (err.len() as u64) < g.err.end();
        let state = JobState {
            outcome: g.outcome.clone(),
            cancelled: g.cancelled,
            stdout_next: out_at + out.len() as u64,
            stderr_next: err_at + err.len() as u64,
            stdout_dropped: out_dropped,
            stderr_dropped: err_dropped,
            more,
        };
        if state.outcome.is_some() && !state.more {
            // Everything, the end included, is on its way (its buffers stay
            // until it is made room for: this answer may never arrive).
            g.collected = true;
        }
        (out, err, state)
    };
    for chunk in out.chunks(CHUNK_BYTES) {
        write_frame(wr, FrameKind::Stdout, chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    for chunk in err.chunks(CHUNK_BYTES) {
        write_frame(wr, FrameKind::Stderr, chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    write_message(wr, &Response::Job(state))
        .await
        .map_err(|e| e.to_string())
}

/// `JobCancel`: kills the job's process group.
pub fn cancel(job_id: &str) -> Result<Response, AgentError> {
    let job = lookup(job_id)?;
    let state = {
        let mut g = job.lock();
        if g.outcome.is_none() {
            g.cancelled = true;
            job.kill.notify_one();
        }
        JobState {
            outcome: g.outcome.clone(),
            cancelled: g.cancelled,
            stdout_next: g.out.end(),
            stderr_next: g.err.end(),
            stdout_dropped: 0,
            stderr_dropped: 0,
            more: false,
        }
    };
    job.changed.notify_waiters();
    Ok(Response::Job(state))
}

#[cfg(test)]
mod tests;

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
mod tests {
    use super::*;

    async fn read_all(id: &str, from: (u64, u64), wait_ms: u64) -> (Vec<u8>, JobState) {
        let mut wire = Vec::new();
        read(&mut wire, id, from, wait_ms, 1 << 20).await.unwrap();
        let mut rd = wire.as_slice();
        let mut out = Vec::new();
        loop {
            let f = pyro_protocol::read_frame(&mut rd).await.unwrap().unwrap();
            match f.kind {
                FrameKind::Stdout => out.extend(f.payload),
                FrameKind::Stderr => {}
                _ => {
                    let r: Response = serde_json::from_slice(&f.payload).unwrap();
                    let Response::Job(s) = r else { panic!("{r:?}") };
                    return (out, s);
                }
            }
        }
    }

    fn sh(script: &str) -> ExecRequest {
        ExecRequest {
            command: pyro_protocol::Command::Shell {
                script: script.into(),
            },
            cwd: Some("/".into()),
            env: Default::default(),
            timeout_ms: 60_000,
            output_limit_bytes: 1 << 20,
            stdin: false,
            limits: Default::default(),
            run_as: None,
        }
    }

    #[tokio::test]
    async fn a_job_runs_on_after_a_read_and_ends_with_its_status() {
        let Response::JobStarted { job_id } =
            start("t-one", &sh("echo one; sleep 1; echo two; exit 3")).unwrap()
        else {
            panic!()
        };
        let (out, s) = read_all(&job_id, (0, 0), 200).await;
        assert_eq!(out, b"one\n");
        assert!(s.outcome.is_none());
        let (out, s) = read_all(&job_id, (s.stdout_next, s.stderr_next), 10_000).await;
        assert_eq!(out, b"two\n");
        assert_eq!(s.outcome.unwrap().exit_code, 3);
    }

    /// A job with stdin is refused; one that cannot start ends at once with
    /// the reason on its stderr; one past its timeout is killed with 124.
    #[tokio::test]
    async fn jobs_that_cannot_start_or_run_too_long() {
        let mut with_stdin = sh("true");
        with_stdin.stdin = true;
        let e = start("t-in", &with_stdin).unwrap_err();
        assert!(e.message.contains("cannot take stdin"), "{}", e.message);

        let mut missing = sh("true");
        missing.command = pyro_protocol::Command::Argv {
            argv: vec!["/no/such/program".into()],
        };
        let Response::JobStarted { job_id } = start("t-missing", &missing).unwrap() else {
            panic!()
        };
        let (_, s) = read_all(&job_id, (0, 0), 10_000).await;
        let outcome = s.outcome.unwrap();
        assert_eq!(outcome.exit_code, 127, "{outcome:?}");
        assert!(outcome.stderr_bytes > 0);

        let mut slow = sh("echo started; sleep 30");
        slow.timeout_ms = 2_000;
        let Response::JobStarted { job_id } = start("t-slow", &slow).unwrap() else {
            panic!()
        };
        let (out, s) = read_all(&job_id, (0, 0), 10_000).await;
        assert_eq!(out, b"started\n");
        let outcome = s.outcome.unwrap();
        assert!(outcome.timed_out, "{outcome:?}");
        assert_eq!(outcome.exit_code, 124);
    }

    #[tokio::test]
    async fn a_cancelled_job_is_killed_with_its_group() {
        assert!(start("bad id", &sh("true")).is_err());
        let Response::JobStarted { job_id } = start("t-two", &sh("sleep 30 & sleep 30")).unwrap()
        else {
            panic!()
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel(&job_id).unwrap();
        let (_, s) = read_all(&job_id, (0, 0), 10_000).await;
        assert!(s.cancelled);
        assert_eq!(s.outcome.unwrap().exit_code, 137);
        assert!(cancel("j999999").is_err());
        assert!(start("t-two", &sh("true")).is_err(), "ids are never reused");
    }

    /// Fills the agent's one table: it needs a process of its own, as
    /// nextest (`make test`) gives each test.
    #[tokio::test]
    async fn at_most_jobs_max_run_and_a_finished_one_makes_room() {
        for i in 0..JOBS_MAX {
            start(&format!("cap-{i}"), &sh("sleep 30")).unwrap();
        }
        let err = start("cap-over", &sh("true")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::TooLarge, "{err:?}");
        assert!(
            err.message.contains("wait for or cancel one first"),
            "{err:?}"
        );
        // A cancelled (so finished) job is dropped for the new one.
        cancel("cap-0").unwrap();
        let mut started = false;
        for _ in 0..250 {
            if start("cap-over", &sh("true")).is_ok() {
                started = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(started, "a cancelled job still counted as running");
        assert!(lookup("cap-0").is_err(), "the finished job was kept");
        for i in 1..JOBS_MAX {
            cancel(&format!("cap-{i}")).unwrap();
        }
    }
}

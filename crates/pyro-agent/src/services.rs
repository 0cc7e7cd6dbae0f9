//! Services: named long-running processes the agent supervises, each in
//! its own process group, with a readiness check and logs on the guest's
//! disk.
//!
//! A service is `starting` until its readiness check passes (`ready`), its
//! readiness time runs out (`failed`, its group killed), or it exits
//! (`failed` before readiness, `exited` after). `stop` sends `TERM` to the
//! whole group and `KILL` after a grace period, and answers once nothing of
//! the group runs. Its output goes to rotated files (see [`crate::svclog`]),
//! written by threads of their own so a service never waits on the agent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pyro_protocol::{AgentError, ErrorKind, ExecRequest, Response, ServiceInfo, ServiceSpec};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::readiness::{check_readiness, probe_after};
use crate::spawn;
use crate::svclog::{self, Stream};

/// Services kept at once, ended ones included.
pub const SERVICES_MAX: usize = 16;
/// Longest a [`wait`] waits.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// Longest grace between `TERM` and `KILL`.
const GRACE_MAX: Duration = Duration::from_secs(60);
/// How long after `KILL` a group may take to go.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Longest readiness time.
const READY_TIMEOUT_MAX: Duration = Duration::from_secs(24 * 3600);

/// Services and shells that hold the guest up past its idle deadline.
pub static KEEP_ALIVE: AtomicUsize = AtomicUsize::new(0);

/// Counts one holder of [`KEEP_ALIVE`] until dropped.
pub struct KeepAlive(bool);

impl KeepAlive {
    /// A holder when `on`, else nothing.
    pub fn new(on: bool) -> Self {
        if on {
            KEEP_ALIVE.fetch_add(1, Ordering::SeqCst);
        }
        Self(on)
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if self.0 {
            KEEP_ALIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Exited,
    Failed,
    Stopped,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Exited => "exited",
            Phase::Failed => "failed",
            Phase::Stopped => "stopped",
        }
    }

    fn running(self) -> bool {
        matches!(self, Phase::Starting | Phase::Ready)
    }
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    pid: Option<i32>,
    exit_code: Option<i32>,
    reason: Option<String>,
    ready_after: Option<Duration>,
    ended_after: Option<Duration>,
    last_probe_error: Option<String>,
}

struct Service {
    name: String,
    inner: Mutex<Inner>,
    /// Woken on every change of phase.
    changed: Notify,
    /// Tells the supervisor to stop the group (a permit is kept).
    stop: Notify,
    grace: Mutex<Duration>,
    started: Instant,
    order: u64,
    logs: [Arc<svclog::Writer>; 2],
}

impl Service {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> ServiceInfo {
        let g = self.lock();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        ServiceInfo {
            name: self.name.clone(),
            state: g.phase.name().into(),
            pid: g.pid,
            exit_code: g.exit_code,
            reason: g.reason.clone(),
            ready_after_ms: g.ready_after.map(ms),
            ended_after_ms: g.ended_after.map(ms),
            last_probe_error: g.last_probe_error.clone(),
        }
    }

    fn set(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.changed.notify_waiters();
    }
}

#[derive(Default)]
struct Table {
    services: HashMap<String, Arc<Service>>,
    next: u64,
}

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn lookup(name: &str) -> Result<Arc<Service>, AgentError> {
    table()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .services
        .get(name)
        .cloned()
        .ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!(
                    "no service {name:?} runs in this guest (it ran in an earlier boot, or never)"
                ),
            )
        })
}

fn bad(m: impl Into<String>) -> AgentError {
    AgentError::new(ErrorKind::BadRequest, m)
}

/// Whether `name` is a valid service name: a letter or digit, then up to
/// 63 letters, digits, `.`, `_` or `-`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `ServiceStart`.
pub fn start(spec: ServiceSpec) -> Result<Response, AgentError> {
    if !valid_name(&spec.name) {
        return Err(bad(
            "a service name is a letter or digit, then up to 63 letters, digits, `.`, `_` or `-`",
        ));
    }
    if let Some(r) = &spec.readiness {
        check_readiness(r)?;
    }
    if spec.ready_interval_ms == 0 {
        return Err(bad("the readiness interval must be above 0 ms"));
    }
    let exec = ExecRequest {
        command: spec.command.clone(),
        cwd: Some(spec.cwd.clone()),
        env: spec.env.clone(),
        timeout_ms: 0,
        output_limit_bytes: 0,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    };
    let prepared = crate::exec::prepare(&exec)?;
    let svc = {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        // Running, or ended with its supervisor still clearing its group
        // (its log writers may still write).
        let busy = t.services.get(&spec.name).is_some_and(|old| {
            let g = old.lock();
            g.phase.running() || g.ended_after.is_none()
        });
        if busy {
            return Err(AgentError::new(
                ErrorKind::Conflict,
                format!(
                    "service {} is already running; stop it first, or start it under another name",
                    spec.name
                ),
            ));
        }
        if !t.services.contains_key(&spec.name) && t.services.len() >= SERVICES_MAX {
            let oldest_ended = t
                .services
                .iter()
                .filter(|(_, s)| !s.lock().phase.running())
                .min_by_key(|(_, s)| s.order)
                .map(|(k, _)| k.clone());
            match oldest_ended {
                Some(k) => {
                    t.services.remove(&k);
                }
                None => {
                    return Err(AgentError::new(
                        ErrorKind::TooLarge,
                        format!("{SERVICES_MAX} services already run here; stop one first"),
                    ));
                }
            }
        }
        let logs = svclog::Writer::create_pair(&spec.name, spec.memory_logs)
            .map_err(|e| AgentError::new(ErrorKind::Io, format!("creating its logs: {e}")))?;
        t.next += 1;
        let svc = Arc::new(Service {
            name: spec.name.clone(),
            inner: Mutex::new(Inner {
                phase: Phase::Starting,
                pid: None,
                exit_code: None,
                reason: None,
                ready_after: None,
                ended_after: None,
                last_probe_error: None,
            }),
            changed: Notify::new(),
            stop: Notify::new(),
            grace: Mutex::new(Duration::from_secs(5)),
            started: Instant::now(),
            order: t.next,
            logs,
        });
        t.services.insert(spec.name.clone(), svc.clone());
        svc
    };
    let group = crate::limits::Group::create();
    let mut child = match spawn::spawn_in(&prepared, group.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            let (code, msg) = crate::exec::spawn_failure(&e);
            svc.logs[1].append(msg.as_bytes());
            svc.set(|g| {
                g.phase = Phase::Failed;
                g.exit_code = Some(code);
                g.reason = Some("start_failed".into());
                g.ended_after = Some(Duration::ZERO);
            });
            return Ok(Response::Service(svc.info()));
        }
    };
    for (i, pipe) in [child.stdout.take(), child.stderr.take()]
        .into_iter()
        .enumerate()
    {
        if let Some(p) = pipe
            && let Ok(fd) = p.into_blocking_fd()
        {
            svclog::pump(fd, svc.logs[i].clone());
        }
    }
    svc.set(|g| {
        g.pid = Some(child.pid());
        if spec.readiness.is_none() {
            g.phase = Phase::Ready;
            g.ready_after = Some(Duration::ZERO);
        }
    });
    let info = svc.info();
    tokio::spawn(supervise(svc, child, spec, group));
    Ok(Response::Service(info))
}

/// Watches a service to its end: its readiness, its exit, a stop.
async fn supervise(
    svc: Arc<Service>,
    mut child: spawn::Child,
    spec: ServiceSpec,
    group: Option<crate::limits::Group>,
) {
    let _hold = KeepAlive::new(spec.keep_alive);
    let ready_by =
        svc.started + Duration::from_millis(spec.ready_timeout_ms).min(READY_TIMEOUT_MAX);
    let interval = Duration::from_millis(spec.ready_interval_ms);
    let mut stopped = None;
    loop {
        let starting = svc.lock().phase == Phase::Starting;
        tokio::select! {
            // An exit that comes with a stop is the service's own.
            biased;
            status = child.wait() => {
                let code = status.ok().map(|s| {
                    s.code().unwrap_or_else(|| {
                        128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9)
                    })
                });
                svc.set(|g| {
                    g.exit_code = code;
                    if g.phase == Phase::Starting {
                        g.phase = Phase::Failed;
                        g.reason = Some("exited_before_ready".into());
                    } else {
                        g.phase = Phase::Exited;
                    }
                });
                break;
            }
            () = svc.stop.notified() => {
                stopped = Some(stop_group(&mut child, &svc).await);
                break;
            }
            result = probe_after(spec.readiness.as_ref(), &spec.cwd, &spec.env, interval), if starting => {
                match result {
                    Ok(()) => svc.set(|g| {
                        if g.phase == Phase::Starting {
                            g.phase = Phase::Ready;
                            g.ready_after = Some(svc.started.elapsed());
                        }
                    }),
                    Err(e) => svc.lock().last_probe_error = Some(e),
                }
            }
            () = tokio::time::sleep_until(ready_by), if starting => {
                child.kill_group();
                let status = tokio::time::timeout(KILL_WAIT, child.wait()).await;
                svc.set(|g| {
                    g.phase = Phase::Failed;
                    g.reason = Some("readiness_timeout".into());
                    g.exit_code = status.ok().and_then(|s| s.ok()).map(|s| {
                        s.code().unwrap_or(137)
                    });
                });
                break;
            }
        }
    }
    // Nothing of the service outlives its main process.
    child.kill_group();
    crate::limits::kill(group.as_ref());
    wait_group_gone(child.pid(), KILL_WAIT).await;
    child.reap();
    svc.set(|g| {
        if let Some((code, reason)) = stopped {
            g.phase = Phase::Stopped;
            g.exit_code = code;
            g.reason = Some(reason);
        }
        g.ended_after = Some(svc.started.elapsed());
    });
}

/// `TERM` to the group, `KILL` after the grace period; the exit code and
/// which signal ended it.
async fn stop_group(child: &mut spawn::Child, svc: &Service) -> (Option<i32>, String) {
    let grace = *svc.grace.lock().unwrap_or_else(|e| e.into_inner());
    let pid = child.pid();
    child.signal_group(libc::SIGTERM);
    // A stopped (SIGSTOP) process acts on the TERM only once continued.
    child.signal_group(libc::SIGCONT);
    let until = Instant::now() + grace;
    let status = tokio::time::timeout_at(until, child.wait()).await;
    let gone = status.is_ok()
        && wait_group_gone(pid, until.saturating_duration_since(Instant::now())).await;
    let (status, reason) = if gone {
        (status.ok().and_then(|s| s.ok()), "sigterm")
    } else {
        child.kill_group();
        let s = tokio::time::timeout(KILL_WAIT, child.wait()).await;
        (s.ok().and_then(|s| s.ok()), "sigkill")
    };
    let code = status.map(|s| {
        s.code()
            .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9))
    });
    (code, reason.to_owned())
}

/// Waits up to `within` until no live process is in group `pgid`; whether
/// none is.
async fn wait_group_gone(pgid: i32, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        let alive = tokio::task::spawn_blocking(move || group_members(pgid))
            .await
            .unwrap_or(0);
        if alive == 0 {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Live (not zombie) processes in process group `pgid`, by `/proc`.
pub fn group_members(pgid: i32) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|c| c.is_ascii_digit()))
        })
        .filter(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            // After the command's name (which may hold anything): state,
            // ppid, pgrp.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let pgrp = f.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid) && state != Some("Z") && state != Some("X")
        })
        .count()
}

/// `ServiceWait`: waits while the service is `starting`.
pub async fn wait(name: &str, wait_ms: u64) -> Result<Response, AgentError> {
    let svc = lookup(name)?;
    let until = Instant::now() + Duration::from_millis(wait_ms).min(WAIT_MAX);
    loop {
        let notified = svc.changed.notified();
        if svc.lock().phase != Phase::Starting {
            break;
        }
        if tokio::time::timeout_at(until, notified).await.is_err() {
            break;
        }
    }
    Ok(Response::Service(svc.info()))
}

/// `ServiceStop`: answers once the group is gone (or was killed and did
/// not go in time: then its state says what is left).
pub async fn stop(name: &str, grace_ms: u64) -> Result<Response, AgentError> {
    let svc = lookup(name)?;
    let ended = {
        let g = svc.lock();
        !g.phase.running() && g.ended_after.is_some()
    };
    if ended {
        return Ok(Response::Service(svc.info()));
    }
    let grace = Duration::from_millis(grace_ms).min(GRACE_MAX);
    *svc.grace.lock().unwrap_or_else(|e| e.into_inner()) = grace;
    svc.stop.notify_one();
    let until = Instant::now() + grace + KILL_WAIT * 3;
    loop {
        let notified = svc.changed.notified();
        if svc.lock().ended_after.is_some() {
            break;
        }
        if tokio::time::timeout_at(until, notified).await.is_err() {
            break;
        }
    }
    Ok(Response::Service(svc.info()))
}

/// `ServiceList`.
pub fn list() -> Response {
    let t = table().lock().unwrap_or_else(|e| e.into_inner());
    let mut all: Vec<&Arc<Service>> = t.services.values().collect();
    all.sort_by_key(|s| s.order);
    Response::Services {
        services: all.into_iter().map(|s| s.info()).collect(),
    }
}

/// `ServiceLogs`: frames of each stream, then the spans.
pub async fn logs<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    name: &str,
    from: Option<(u64, u64)>,
    tail_lines: u64,
    max_bytes: u64,
) -> Result<(), String> {
    use pyro_protocol::{FrameKind, write_frame, write_message};
    let answer = if valid_name(name) {
        let live = lookup(name).ok();
        let max = usize::try_from(max_bytes)
            .unwrap_or(usize::MAX)
            .min(svclog::READ_MAX);
        let writers = live.as_ref().map(|s| s.logs.clone());
        let owned = name.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            let name = owned;
            let read = |i: usize, stream: Stream| {
                let at = from.map(|f| if i == 0 { f.0 } else { f.1 });
                svclog::read(
                    &name,
                    stream,
                    writers.as_ref().map(|w| &*w[i]),
                    at,
                    tail_lines,
                    max,
                )
            };
            Ok::<_, std::io::Error>((read(0, Stream::Stdout)?, read(1, Stream::Stderr)?))
        })
        .await
        .map_err(|e| e.to_string())?;
        match read {
            Ok(((out, out_span), (err, err_span))) => {
                for (kind, data) in [(FrameKind::Stdout, out), (FrameKind::Stderr, err)] {
                    for chunk in data.chunks(pyro_protocol::CHUNK_BYTES) {
                        write_frame(wr, kind, chunk)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Response::ServiceLogs {
                    service: live.map(|s| s.info()),
                    stdout: out_span,
                    stderr: err_span,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Response::Error(AgentError::new(
                ErrorKind::NotFound,
                format!("service {name} has no logs in this guest"),
            )),
            Err(e) => Response::Error(AgentError::new(
                ErrorKind::Io,
                format!("reading its logs: {e}"),
            )),
        }
    } else {
        Response::Error(bad("invalid service name"))
    };
    write_message(wr, &answer).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;

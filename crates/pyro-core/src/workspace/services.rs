//! Services: named long-running processes the guest agent supervises, with
//! a readiness check, logs on the guest's disk, and a restart policy.
//!
//! The host keeps a mark per service (`services.json`: what it runs, how it
//! becomes ready, the VM it was started in, whether it restarts when the
//! workspace starts), so a service that ended with a stop or a reset is
//! reported as ended, with the reason, and an `on-start` one comes back.

use pyro_protocol::{Readiness, ServiceInfo, ServiceSpec};

pub use super::service_types::*;
use super::*;
use crate::environments::Progress;

/// A service as the host knows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(super) struct Mark {
    name: String,
    pub(super) vm_id: String,
    command: pyro_protocol::Command,
    cwd: String,
    env: BTreeMap<String, String>,
    readiness: Option<Readiness>,
    ready_timeout_seconds: u64,
    ready_interval_ms: u64,
    restart: Restart,
    keep_alive: bool,
    started_at: f64,
    /// Stopped by request: it is not started again.
    #[serde(default)]
    stopped: Option<ServiceInfo>,
    /// Ports it publishes (again with each start).
    #[serde(default)]
    publish: Vec<super::PortMapping>,
    /// The secrets it gets (names: the values are looked up at each
    /// start, never saved here).
    #[serde(default)]
    secret_env: Vec<String>,
}

const MARKS_MAX: usize = 32;

fn marks_path(ws: &Workspaces, id: &str) -> PathBuf {
    ws.dir(id).join("services.json")
}

pub(super) fn load_marks(ws: &Workspaces, id: &str) -> Result<Vec<Mark>, CoreError> {
    crate::load_json_or_default(&marks_path(ws, id), "forget the workspace's services")
}

fn save_marks(ws: &Workspaces, id: &str, marks: &[Mark]) -> Result<(), CoreError> {
    crate::save_json(
        &marks_path(ws, id),
        &marks,
        "saving the workspace's services",
    )
}

/// Whether `name` is a valid service name.
pub fn valid_service_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn check_name(name: &str) -> Result<(), CoreError> {
    if valid_service_name(name) {
        return Ok(());
    }
    Err(CoreError::invalid(format!(
        "invalid service name {name:?}: ⟨arg:service_name⟩ is a letter or digit, then up to 63 \
         letters, digits, `.`, `_` or `-`"
    )))
}

fn readiness_view(r: &Readiness) -> ReadinessView {
    let (kind, target) = match r {
        Readiness::File { path } => ("file", path),
        Readiness::Tcp { address } => ("tcp", address),
        Readiness::Http { url } => ("http", url),
        Readiness::Command { command } => ("command", command),
    };
    ReadinessView {
        kind: kind.into(),
        target: target.clone(),
    }
}

/// How a service that the guest no longer reports ended, by the host.
fn ended_info(name: &str, reason: &str) -> ServiceInfo {
    ServiceInfo {
        name: name.to_owned(),
        state: "stopped".into(),
        pid: None,
        exit_code: None,
        reason: Some(reason.to_owned()),
        ready_after_ms: None,
        ended_after_ms: None,
        last_probe_error: None,
    }
}

/// A service as the guest describes it, checked.
pub(super) fn checked(i: ServiceInfo) -> Result<ServiceInfo, CoreError> {
    const STATES: [&str; 5] = ["starting", "ready", "exited", "failed", "stopped"];
    const REASONS: [&str; 5] = [
        "exited_before_ready",
        "readiness_timeout",
        "start_failed",
        "sigterm",
        "sigkill",
    ];
    // A year, in milliseconds: no service of a workspace runs longer.
    const MS_MAX: u64 = 366 * 86_400_000;
    if !STATES.contains(&i.state.as_str())
        || !valid_service_name(&i.name)
        || i.reason.as_deref().is_some_and(|r| !REASONS.contains(&r))
        || i.last_probe_error.as_ref().is_some_and(|r| r.len() > 4096)
        || i.ready_after_ms.is_some_and(|m| m > MS_MAX)
        || i.ended_after_ms.is_some_and(|m| m > MS_MAX)
    {
        return Err(CoreError::Transport(
            "the guest agent described a service it cannot have; the guest is misbehaving: \
             reset or delete it"
                .into(),
        ));
    }
    Ok(i)
}

fn service_info(r: Response, name: &str) -> Result<ServiceInfo, CoreError> {
    match r {
        Response::Service(i) if i.name == name => checked(i),
        Response::Service(_) => Err(CoreError::Transport(
            "the guest agent answered about another service; the guest is misbehaving: reset or \
             delete it"
                .into(),
        )),
        other => Err(crate::sandbox::unexpected(other)),
    }
}

pub(super) fn view(
    id: &str,
    m: &Mark,
    info: Option<&ServiceInfo>,
    ended: Option<&str>,
) -> ServiceView {
    let info = info.or(m.stopped.as_ref());
    let at = |ms: Option<u64>| ms.map(|ms| m.started_at + ms as f64 / 1000.0);
    ServiceView {
        workspace_id: id.to_owned(),
        service_name: m.name.clone(),
        state: info.map_or_else(|| "ended".into(), |i| i.state.clone()),
        reason: match info {
            Some(i) => i.reason.clone(),
            None => Some(ended.unwrap_or("its workspace stopped").to_owned()),
        },
        command: m.command.display(),
        cwd: m.cwd.clone(),
        readiness: m.readiness.as_ref().map(readiness_view),
        restart: m.restart,
        keep_alive: m.keep_alive,
        pid: info.and_then(|i| i.pid),
        exit_code: info.and_then(|i| i.exit_code),
        started_at: m.started_at,
        ready_at: at(info.and_then(|i| i.ready_after_ms)),
        ended_at: at(info.and_then(|i| i.ended_after_ms)),
        last_probe_error: info.and_then(|i| i.last_probe_error.clone()),
        published_ports: Vec::new(),
    }
}

impl Workspaces {
    /// Starts service `name` in started workspace `id` and waits for its
    /// readiness (as long as its readiness timeout: the caller's choice).
    pub async fn service_start(
        &self,
        id: &str,
        name: &str,
        opts: ServiceOptions,
        progress: &dyn Progress,
    ) -> Result<ServiceView, CoreError> {
        let redactor = self.redactor(id)?;
        self.service_start_raw(id, name, opts, progress)
            .await
            .map_err(|e| e.redact(&redactor))
    }

    async fn service_start_raw(
        &self,
        id: &str,
        name: &str,
        opts: ServiceOptions,
        progress: &dyn Progress,
    ) -> Result<ServiceView, CoreError> {
        check_name(name)?;
        crate::run::check_command(&opts.command)?;
        limits::READY_TIMEOUT_SECONDS.check(opts.ready_timeout_seconds)?;
        limits::READY_INTERVAL_MS.check(opts.ready_interval_ms)?;
        crate::run::check_env_names(&opts.env)?;
        // An unknown secret is refused before anything starts.
        secrets::merge_env(&self.secrets_of(id)?, &opts.env, &opts.secret_env)?;
        let readiness = opts.readiness.pick()?;
        let cwd = match opts.cwd.as_deref().map(str::trim) {
            None | Some("") => WORKSPACE_ROOT.to_owned(),
            Some(c) if c.starts_with('/') => c.to_owned(),
            Some(c) => guest_path(c)?,
        };
        let (rec, sandbox) = self.started_with(id, "service start", |_| {}).await?;
        super::publish::check_publish(id, &rec, &opts.publish)?;
        // One that runs is refused before its mark is touched.
        if let Ok(Response::Services { services }) = sandbox
            .call(Request::ServiceList, Duration::from_secs(30))
            .await
            && services
                .iter()
                .any(|s| s.name == name && matches!(s.state.as_str(), "starting" | "ready"))
        {
            return Err(CoreError::State(format!(
                "service {name} is already running in workspace {id}; stop it first with \
                 ⟨op:workspace service stop {id} {name}⟩"
            )));
        }
        let mark = Mark {
            name: name.to_owned(),
            vm_id: sandbox.id().to_owned(),
            command: opts.command,
            cwd,
            env: opts.env,
            readiness,
            ready_timeout_seconds: opts.ready_timeout_seconds,
            ready_interval_ms: opts.ready_interval_ms,
            restart: opts.restart,
            keep_alive: opts.keep_alive,
            started_at: now_unix(),
            stopped: None,
            publish: opts.publish,
            secret_env: opts.secret_env,
        };
        self.start_marked(id, &sandbox, mark, progress).await
    }

    /// Saves `mark`, starts it in the guest and waits for its readiness.
    async fn start_marked(
        &self,
        id: &str,
        sandbox: &Sandbox,
        mark: Mark,
        progress: &dyn Progress,
    ) -> Result<ServiceView, CoreError> {
        let name = mark.name.clone();
        // Its secrets are looked up before anything is published, saved or
        // started (a fork without them cannot start it again).
        let env = secrets::merge_env(&self.secrets_of(id)?, &mark.env, &mark.secret_env)?;
        // The host ports are taken first: a port in use fails the start
        // before anything is saved or runs.
        sandbox.unpublish(Some(&name)).await;
        // A restart publishes only while the policy still allows it.
        let publishing = record::load(&self.paths, id)
            .is_some_and(|r| r.network.mode == pyro_net::Mode::EgressPublishedPorts);
        let ports = if publishing { &mark.publish[..] } else { &[] };
        let published = super::publish::publish(sandbox, id, &name, ports)?;
        // The mark is saved before the guest starts it: a call killed in
        // between leaves a service that `list` shows and `stop` ends.
        let saved: Result<Option<Mark>, CoreError> = async {
            let _lock = record::lock(&self.paths, id).await?;
            let mut marks = load_marks(self, id)?;
            let previous = marks
                .iter()
                .position(|m| m.name == name)
                .map(|i| marks.remove(i));
            if marks.len() >= MARKS_MAX {
                // Services of earlier boots, then stopped ones, make room.
                let vm = mark.vm_id.clone();
                if let Some(i) = marks
                    .iter()
                    .position(|m| m.vm_id != vm && m.restart == Restart::No)
                    .or_else(|| marks.iter().position(|m| m.stopped.is_some()))
                {
                    marks.remove(i);
                } else {
                    return Err(CoreError::Quota(format!(
                        "workspace {id} has {MARKS_MAX} services; stop some with \
                         ⟨op:workspace service stop⟩"
                    )));
                }
            }
            marks.push(mark.clone());
            save_marks(self, id, &marks)?;
            Ok(previous)
        }
        .await;
        // Nothing saved: the ports taken for it go again.
        let previous = match saved {
            Ok(p) => p,
            Err(e) => {
                sandbox.unpublish(Some(&name)).await;
                return Err(e);
            }
        };
        let spec = ServiceSpec {
            name: name.clone(),
            command: mark.command.clone(),
            cwd: mark.cwd.clone(),
            env,
            memory_logs: !mark.secret_env.is_empty(),
            readiness: mark.readiness.clone(),
            ready_timeout_ms: mark.ready_timeout_seconds * 1000,
            ready_interval_ms: mark.ready_interval_ms,
            keep_alive: mark.keep_alive,
        };
        let started = sandbox
            .call(Request::ServiceStart(spec), Duration::from_secs(30))
            .await
            .and_then(|r| service_info(r, &name));
        if started.is_err() {
            sandbox.unpublish(Some(&name)).await;
        }
        let mut info = match started {
            Ok(i) => i,
            Err(e) => {
                // Only a refusal means the guest started nothing: after any
                // other failure it may run, and its mark stays so `stop`
                // can end it. The previous mark comes back only if the
                // mark is still this call's.
                if let CoreError::Agent(_) = e
                    && let Ok(_lock) = record::lock(&self.paths, id).await
                    && let Ok(mut marks) = load_marks(self, id)
                    && marks
                        .iter()
                        // Within a microsecond: a time read back from JSON
                        // may differ from the one written in its last bit.
                        .any(|m| m.name == name && (m.started_at - mark.started_at).abs() < 1e-6)
                {
                    marks.retain(|m| m.name != name);
                    marks.extend(previous);
                    let _ = save_marks(self, id, &marks);
                }
                return Err(match e {
                    CoreError::Agent(a) if a.kind == pyro_protocol::ErrorKind::Conflict => {
                        CoreError::State(format!(
                            "service {name} is already running in workspace {id}; stop it \
                             first with ⟨op:workspace service stop {id} {name}⟩"
                        ))
                    }
                    CoreError::Agent(a) if a.kind == pyro_protocol::ErrorKind::TooLarge => {
                        CoreError::Quota(format!(
                            "{} (see ⟨op:workspace service list {id}⟩; end one with \
                             ⟨op:workspace service stop⟩)",
                            a.message
                        ))
                    }
                    e => e,
                });
            }
        };
        // The agent fails it when its readiness time is up; the host waits
        // that long and a little more, never less.
        let until = tokio::time::Instant::now()
            + Duration::from_secs(mark.ready_timeout_seconds)
            + Duration::from_secs(15);
        while info.state == "starting" {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            progress.tick(&format!(
                "waiting for service {name} to be ready{}",
                info.last_probe_error
                    .as_deref()
                    .map(|e| format!(" (last check: {})", e.chars().take(200).collect::<String>()))
                    .unwrap_or_default()
            ));
            let wait = left.min(Duration::from_secs(5));
            info = service_info(
                sandbox
                    .call(
                        Request::ServiceWait {
                            name: name.clone(),
                            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(5000),
                        },
                        wait + Duration::from_secs(30),
                    )
                    .await?,
                &name,
            )?;
        }
        let mut v = view(id, &mark, Some(&info), None);
        if v.running() {
            v.published_ports = published;
        } else {
            sandbox.unpublish(Some(&name)).await;
        }
        Ok(v)
    }

    /// The mark of service `name`, or an error listing how to see them.
    pub(super) fn service_mark(&self, id: &str, name: &str) -> Result<Mark, CoreError> {
        check_name(name)?;
        load_marks(self, id)?
            .into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "workspace {id} has no service {name:?}; ⟨op:workspace service list {id}⟩ \
                     shows its services"
                ))
            })
    }

    /// What the running VM's agent says of every service (none when the
    /// workspace is not started, or none of its services is of this boot).
    async fn live_services(
        &self,
        id: &str,
        marks: &[Mark],
    ) -> Result<(Option<String>, Vec<ServiceInfo>), CoreError> {
        let rec = {
            let _lock = record::lock(&self.paths, id).await?;
            self.load_fresh(id).await?
        };
        let live = match (&rec.state, &rec.vm_id) {
            (State::Started, Some(vm)) if marks.iter().any(|m| &m.vm_id == vm) => {
                let sandbox = Sandbox::attach(&self.paths, vm)?;
                match sandbox
                    .call(Request::ServiceList, Duration::from_secs(30))
                    .await?
                {
                    Response::Services { services } if services.len() <= 64 => services
                        .into_iter()
                        .map(checked)
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err(CoreError::Transport(
                            "the guest agent answered a service listing with something else; \
                             the guest is misbehaving: reset or delete it"
                                .into(),
                        ));
                    }
                }
            }
            _ => Vec::new(),
        };
        let vm = (rec.state == State::Started).then_some(rec.vm_id).flatten();
        Ok((vm, live))
    }

    fn views(
        id: &str,
        marks: &[Mark],
        vm: Option<&String>,
        live: &[ServiceInfo],
    ) -> Vec<ServiceView> {
        marks
            .iter()
            .map(|m| {
                let this_boot = Some(&m.vm_id) == vm;
                let info = this_boot
                    .then(|| live.iter().find(|i| i.name == m.name))
                    .flatten();
                let reason = if this_boot {
                    "the guest no longer knows it"
                } else if m.restart == Restart::OnStart && vm.is_some() {
                    "its workspace started again without it (that start was interrupted); start \
                     it again with service start"
                } else if m.restart == Restart::OnStart {
                    "its workspace stopped (or was reset); it starts again with the workspace"
                } else {
                    "its workspace stopped (or was reset), which ends every service not started \
                     with restart on-start"
                };
                view(id, m, info, Some(reason))
            })
            .collect()
    }

    /// Every service of workspace `id`.
    pub async fn service_list(&self, id: &str) -> Result<ServiceListView, CoreError> {
        let marks = load_marks(self, id)?;
        let (vm, live) = self.live_services(id, &marks).await?;
        let mut services = Self::views(id, &marks, vm.as_ref(), &live);
        self.fill_published(vm.as_ref(), &mut services);
        Ok(ServiceListView {
            workspace_id: id.to_owned(),
            count: services.len(),
            running_count: services.iter().filter(|s| s.running()).count(),
            services,
        })
    }

    /// One service of workspace `id`.
    pub async fn service_status(&self, id: &str, name: &str) -> Result<ServiceView, CoreError> {
        let mark = self.service_mark(id, name)?;
        let (vm, live) = self.live_services(id, std::slice::from_ref(&mark)).await?;
        let mut v = Self::views(id, &[mark], vm.as_ref(), &live);
        self.fill_published(vm.as_ref(), &mut v);
        Ok(v.remove(0))
    }

    /// Stops service `name`: `TERM` to its process group, `KILL` after
    /// `grace_seconds`; it is not started again with the workspace. A
    /// service that already ended (its workspace stopped) is only marked.
    pub async fn service_stop(
        &self,
        id: &str,
        name: &str,
        grace_seconds: u64,
    ) -> Result<ServiceView, CoreError> {
        limits::STOP_GRACE_SECONDS.check(grace_seconds)?;
        let mark = self.service_mark(id, name)?;
        // The intent is saved first: a call killed once the guest stopped
        // it leaves a service that does not start again with the workspace.
        self.mark_stopped(id, name, ended_info(name, "stop requested"))
            .await?;
        let (vm, _) = self.live_services(id, &[]).await?;
        let this_boot = vm.as_ref() == Some(&mark.vm_id);
        let info = if this_boot {
            let sandbox = Sandbox::attach(&self.paths, &mark.vm_id)?;
            sandbox.unpublish(Some(name)).await;
            let stopped = sandbox
                .call(
                    Request::ServiceStop {
                        name: name.to_owned(),
                        grace_ms: grace_seconds * 1000,
                    },
                    Duration::from_secs(grace_seconds + 60),
                )
                .await;
            match stopped {
                Ok(r) => Some(service_info(r, name)?),
                Err(CoreError::Agent(a)) if a.kind == pyro_protocol::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        if let Some(i) = &info
            && matches!(i.state.as_str(), "starting" | "ready")
        {
            return Err(CoreError::State(format!(
                "service {name} still runs after TERM, its grace period and KILL (a process \
                 stuck in the kernel does not die); try ⟨op:workspace service stop {id} {name}⟩ \
                 again, or stop the workspace"
            )));
        }
        let last = info.clone().unwrap_or_else(|| {
            ended_info(
                name,
                if this_boot {
                    "the guest no longer knew it, so nothing of it ran"
                } else {
                    "its workspace had stopped, which ended it; it will not start again"
                },
            )
        });
        let m = self.mark_stopped(id, name, last).await?;
        Ok(view(id, &m, info.as_ref(), None))
    }

    /// Records how service `name` ended by request; its mark as saved.
    async fn mark_stopped(
        &self,
        id: &str,
        name: &str,
        last: ServiceInfo,
    ) -> Result<Mark, CoreError> {
        let _lock = record::lock(&self.paths, id).await?;
        let mut marks = load_marks(self, id)?;
        let Some(m) = marks.iter_mut().find(|m| m.name == name) else {
            return Err(CoreError::NotFound(format!(
                "service {name} of workspace {id} was removed meanwhile; \
                 ⟨op:workspace service list {id}⟩ shows its services"
            )));
        };
        m.stopped = Some(last);
        let m = m.clone();
        save_marks(self, id, &marks)?;
        Ok(m)
    }

    /// Starts again, in the freshly booted VM of workspace `id`, every
    /// service marked `on-start` (and not stopped by request); the rest
    /// stay ended. Failures are in the results, never lost.
    pub(super) async fn restart_services(
        &self,
        id: &str,
        progress: &dyn Progress,
    ) -> Vec<ServiceView> {
        let Ok(marks) = load_marks(self, id) else {
            return Vec::new();
        };
        let Some(rec) = record::load(&self.paths, id) else {
            return Vec::new();
        };
        let (Some(vm), State::Started) = (rec.vm_id.clone(), rec.state) else {
            return Vec::new();
        };
        let Ok(sandbox) = Sandbox::attach(&self.paths, &vm) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in marks
            .into_iter()
            .filter(|m| m.restart == Restart::OnStart && m.stopped.is_none() && m.vm_id != vm)
        {
            progress.step(&format!("starting service {}", m.name));
            let mark = Mark {
                vm_id: vm.clone(),
                started_at: now_unix(),
                ..m
            };
            match self
                .start_marked(id, &sandbox, mark.clone(), progress)
                .await
            {
                Ok(v) => out.push(v),
                Err(e) => {
                    let mut v = view(id, &mark, None, None);
                    v.state = "failed".into();
                    v.reason = Some(format!(
                        "starting it again failed: {}",
                        e.message(crate::hint::FrontEnd::Neutral)
                    ));
                    out.push(v);
                }
            }
        }
        out
    }

    /// After a reset: forgets every service not started again with the
    /// workspace; how many were forgotten.
    pub(super) fn clear_services(&self, id: &str) -> usize {
        let Ok(mut marks) = load_marks(self, id) else {
            return 0;
        };
        let before = marks.len();
        marks.retain(|m| m.restart == Restart::OnStart && m.stopped.is_none());
        let _ = save_marks(self, id, &marks);
        before - marks.len()
    }

    /// Shells open and services running in started workspace `view`'s VM,
    /// asked of its agent briefly (a guest that does not answer leaves the
    /// counts unknown, never the listing broken).
    pub(super) async fn fill_counts(&self, v: &mut View) {
        if v.network.mode.has_network() || v.network_denials > 0 {
            let (this, id) = (self.clone(), v.workspace_id.clone());
            v.network_denials = crate::blocking(move || Ok(this.denial_count(&id)))
                .await
                .unwrap_or(0);
        }
        if v.state != "started" {
            return;
        }
        let id = v.workspace_id.clone();
        let Some(rec) = record::load(&self.paths, &id) else {
            return;
        };
        let Some(vm) = rec.vm_id else { return };
        v.shell_count = Some(super::shells::count_for(self, &id, &vm));
        let marks = load_marks(self, &id).unwrap_or_default();
        let ours: Vec<&Mark> = marks.iter().filter(|m| m.vm_id == vm).collect();
        if ours.is_empty() {
            v.service_count = Some(0);
            v.running_service_count = Some(0);
            return;
        }
        let Ok(sandbox) = Sandbox::attach(&self.paths, &vm) else {
            return;
        };
        if let Ok(Ok(Response::Services { services })) = tokio::time::timeout(
            Duration::from_secs(3),
            sandbox.call(Request::ServiceList, Duration::from_secs(3)),
        )
        .await
        {
            let running = services
                .iter()
                .filter(|s| {
                    matches!(s.state.as_str(), "starting" | "ready")
                        && ours.iter().any(|m| m.name == s.name)
                })
                .count();
            v.service_count = Some(ours.len());
            v.running_service_count = Some(running);
        }
    }
}

#[cfg(test)]
mod tests;

//! Running commands, and reading their history.

use super::*;

impl Workspaces {
    /// Runs a command, streaming into `sink`, logging the full output. With
    /// `wait_seconds`, a command still running then is left running in the
    /// background and the result says `running` ([`Self::exec_wait`]
    /// continues it).
    pub async fn exec(
        &self,
        id: &str,
        opts: ExecOptions,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecView, CoreError> {
        let store = self.store_of(id)?;
        let redactor = secrets::store_redactor(&store);
        self.exec_inner(id, opts, &store.usable, &redactor, stdin, sink)
            .await
            .map_err(|e| e.redact(&redactor))
    }

    async fn exec_inner(
        &self,
        id: &str,
        opts: ExecOptions,
        secrets: &secrets::Secrets,
        redactor: &crate::redact::Redactor,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecView, CoreError> {
        crate::run::check_command(&opts.command)?;
        limits::TIMEOUT_SECONDS.check(opts.timeout_seconds)?;
        limits::OUTPUT_BYTES.check(opts.max_output_bytes)?;
        if let Some(w) = opts.wait_seconds {
            limits::WAIT_SECONDS.check(w)?;
            if stdin.is_some() {
                return Err(CoreError::invalid(
                    "a command given stdin is waited for to its end: leave out \
                     ⟨arg:wait_seconds⟩ (or ⟨arg:detach⟩), or the stdin",
                ));
            }
        }
        crate::run::check_env_names(&opts.env)?;
        let env = secrets::merge_env(secrets, &opts.env, &opts.secret_env)?;
        let command_limits = self.command_limits(id, &opts)?;
        let cwd = match opts.cwd.as_deref().map(str::trim) {
            None | Some("") => WORKSPACE_ROOT.to_owned(),
            Some(c) if c.starts_with('/') => c.to_owned(),
            Some(c) => guest_path(c)?,
        };
        let mut seq = 0;
        let (rec, sandbox) = self
            .started_with(id, "exec", |rec| {
                seq = rec.next_sequence;
                rec.next_sequence += 1;
            })
            .await?;
        let logs = self.dir(id).join("commands");
        // The command's text is redacted before its first save.
        let mut tee = cmdlog::LogSink::start(
            &logs,
            seq,
            redactor.text(&opts.command.display()).0,
            redactor.text(&cwd).0,
            opts.max_output_bytes,
            sink,
        )?;
        tee.redact(redactor);
        let req = ExecRequest {
            command: opts.command.clone(),
            cwd: Some(cwd.clone()),
            env,
            timeout_ms: opts.timeout_seconds * 1000,
            output_limit_bytes: LOG_CAP_BYTES,
            stdin: false,
            limits: command_limits,
            run_as: None,
        };
        let (tee, outcome) = match opts.wait_seconds {
            None => {
                let o = sandbox.exec_with_stdin(req, stdin, &mut tee).await;
                (tee, o)
            }
            Some(wait) => {
                // The id is chosen and saved before the job starts, and the
                // command's wait lock taken: a killed call leaves a job that
                // can still be waited for or cancelled, and no second
                // waiter logs its output twice.
                let _held = wait_lock(&logs, seq)?;
                let job = cmdlog::JobRef {
                    job_id: format!("x{}", random_hex(8)),
                    vm_id: sandbox.id().to_owned(),
                    stdout_next: 0,
                    stderr_next: 0,
                    timeout_seconds: opts.timeout_seconds,
                    stdout_logged: 0,
                    stderr_logged: 0,
                };
                tee.attach(job.clone());
                // A call dropped while following the job (a cancelled tool
                // call) kills it: nobody would know it runs.
                let mut guard = CancelOnDrop {
                    paths: self.paths.clone(),
                    vm_id: sandbox.id().to_owned(),
                    job_id: Some(job.job_id.clone()),
                };
                if let Err(e) = sandbox.job_start(&job.job_id, req).await {
                    guard.job_id = None;
                    let _ = tee.finish(Err(&e));
                    return Err(e);
                }
                let (tee, job, ended) = follow(&sandbox, tee, job, wait).await;
                guard.job_id = None;
                match self.settle(id, &rec, tee, job, ended, opts.max_output_bytes) {
                    Settled::View(v) => return v,
                    Settled::End(tee, o) => (*tee, o),
                }
            }
        };
        self.record_end(
            id,
            &rec,
            opts.timeout_seconds,
            opts.max_output_bytes,
            tee,
            outcome,
        )
        .await
    }

    /// Checks a command's own limits against their ranges and the
    /// workspace's memory, and words them for the agent.
    fn command_limits(
        &self,
        id: &str,
        opts: &ExecOptions,
    ) -> Result<pyro_protocol::CommandLimits, CoreError> {
        if let Some(m) = opts.max_memory_mib {
            crate::check_range("⟨arg:max_memory_mib⟩", m, limits::COMMAND_MEMORY_MIB)?;
        }
        if let Some(t) = opts.max_tasks {
            crate::check_range("⟨arg:max_tasks⟩", t, limits::COMMAND_TASKS)?;
        }
        if opts.max_memory_mib.is_some() || opts.max_tasks.is_some() {
            let rec = record::load(&self.paths, id).ok_or_else(|| not_found(id))?;
            if rec.backend == BackendKind::HostCompat {
                return Err(CoreError::invalid(
                    "host-compat cannot limit one command's memory or tasks: leave out \
                     ⟨arg:max_memory_mib⟩ and ⟨arg:max_tasks⟩, or use a Firecracker workspace",
                ));
            }
            if let Some(m) = opts.max_memory_mib.filter(|&m| m > u64::from(rec.mem_mib)) {
                return Err(CoreError::invalid(format!(
                    "⟨arg:max_memory_mib⟩ {m} is more than the workspace's {} MiB of memory",
                    rec.mem_mib
                )));
            }
        }
        Ok(pyro_protocol::CommandLimits {
            memory_max_bytes: opts.max_memory_mib.map(|m| m << 20),
            tasks_max: opts.max_tasks,
        })
    }

    /// Waits up to `wait_seconds` more for command `sequence` (one an
    /// `exec` left running in the background), returning what it wrote
    /// since the last wait; `running` again if it still runs then.
    pub async fn exec_wait(
        &self,
        id: &str,
        sequence: u64,
        wait_seconds: u64,
        max_output_bytes: u64,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecView, CoreError> {
        limits::WAIT_SECONDS.check(wait_seconds)?;
        limits::OUTPUT_BYTES.check(max_output_bytes)?;
        let redactor = self.redactor(id)?;
        self.continue_job(
            id,
            sequence,
            (wait_seconds, max_output_bytes, false),
            &redactor,
            sink,
        )
        .await
        .map_err(|e| e.redact(&redactor))
    }

    /// Kills command `sequence` (one running in the background) with its
    /// process group, and returns how it ended.
    pub async fn exec_cancel(
        &self,
        id: &str,
        sequence: u64,
        max_output_bytes: u64,
    ) -> Result<ExecView, CoreError> {
        limits::OUTPUT_BYTES.check(max_output_bytes)?;
        let mut sink = crate::sandbox::Discard;
        let redactor = self.redactor(id)?;
        self.continue_job(
            id,
            sequence,
            (10, max_output_bytes, true),
            &redactor,
            &mut sink,
        )
        .await
        .map_err(|e| e.redact(&redactor))
    }

    async fn continue_job(
        &self,
        id: &str,
        sequence: u64,
        (wait_seconds, max_output_bytes, cancel): (u64, u64, bool),
        redactor: &crate::redact::Redactor,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecView, CoreError> {
        let logs = self.dir(id).join("commands");
        let (rec, sandbox) =
            self.started_with(id, "exec_wait", |_| {})
                .await
                .map_err(|e| match e {
                    CoreError::State(m) if m.contains(" is stopped") => CoreError::State(format!(
                        "{m} (a command left running in the background ended with the workspace's \
                     VM; ⟨op:workspace logs {id}⟩ shows what it wrote)"
                    )),
                    e => e,
                })?;
        // One waiter per command: two would log its output twice.
        let held = wait_lock(&logs, sequence);
        if cancel
            && held.is_err()
            && let Some(job) = cmdlog::load(&logs, sequence).and_then(|e| e.job)
            && job.vm_id == sandbox.id()
        {
            // Another call is waiting for it: cancel it, and that call
            // reports the end.
            sandbox.job_cancel(&job.job_id).await?;
            return Err(CoreError::Busy(format!(
                "command {sequence} was cancelled; the call already waiting for it reports how it \
                 ended (or ⟨op:workspace logs {id}⟩ shows it)"
            )));
        }
        let _held = held?;
        let entry = cmdlog::load(&logs, sequence).ok_or_else(|| {
            CoreError::NotFound(format!(
                "no command {sequence} in workspace {id}'s history; ⟨op:workspace logs {id}⟩ \
                 lists them"
            ))
        })?;
        let Some(job) = entry.job.clone() else {
            return Err(CoreError::State(format!(
                "command {sequence} is not running in the background (it is {}); \
                 ⟨op:workspace logs {id}⟩ shows how it ended",
                entry.state.as_str()
            )));
        };
        let mut tee = cmdlog::LogSink::resume(&logs, entry, max_output_bytes, sink)?;
        tee.redact(redactor);
        if job.vm_id != sandbox.id() {
            let e = CoreError::State(format!(
                "command {sequence} ended when workspace {id} stopped (its output up to then is \
                 in ⟨op:workspace logs {id}⟩)"
            ));
            let _ = tee.finish(Err(&e));
            return Err(e);
        }
        if cancel && let Err(e) = sandbox.job_cancel(&job.job_id).await {
            if matches!(&e, CoreError::Agent(a) if a.kind == pyro_protocol::ErrorKind::NotFound) {
                // The agent no longer knows it: it ended with its agent.
                let _ = tee.finish(Err(&e));
            }
            return Err(e);
        }
        let timeout = job.timeout_seconds;
        let (tee, job, ended) = follow(&sandbox, tee, job, wait_seconds).await;
        match self.settle(id, &rec, tee, job, ended, max_output_bytes) {
            Settled::View(v) => v,
            Settled::End(tee, outcome) => {
                self.record_end(id, &rec, timeout, max_output_bytes, *tee, outcome)
                    .await
            }
        }
    }

    /// What a followed job leaves: still running (the entry keeps it, the
    /// result says `running`), a failure that leaves it running (reported,
    /// the entry keeps it for the next wait), or its end.
    fn settle<'a>(
        &self,
        id: &str,
        rec: &Record,
        mut tee: cmdlog::LogSink<'a>,
        job: cmdlog::JobRef,
        ended: Followed,
        max_output_bytes: u64,
    ) -> Settled<'a> {
        match ended {
            Followed::Running => {
                let timeout = job.timeout_seconds;
                let cut = tee.was_cut();
                let (entry, stdout, stderr) = tee.detach(job);
                Settled::View(Ok(running_view(
                    id,
                    rec.backend,
                    entry,
                    timeout,
                    max_output_bytes,
                    (stdout, stderr, cut),
                )))
            }
            Followed::Ended(o, cancelled) => {
                if cancelled {
                    tee.mark_cancelled();
                }
                Settled::End(Box::new(tee), Ok(o))
            }
            // The agent no longer knows the job (it ended with its agent):
            // the command is over, its end unknown.
            Followed::Failed(e @ CoreError::Agent(_)) => Settled::End(Box::new(tee), Err(e)),
            // Talking to the guest failed; the job may well run on.
            Followed::Failed(e) => {
                let (entry, _, _) = tee.detach(job);
                let why = match e {
                    CoreError::Transport(m) => m,
                    e => e.to_string(),
                };
                Settled::View(Err(CoreError::Transport(format!(
                    "{why}; command {} may still run in the background: \
                     ⟨do:workspace exec-wait {id} {}⟩ again",
                    entry.sequence, entry.sequence
                ))))
            }
        }
    }

    /// Records how a command ended (its log entry, the workspace's last
    /// command) and makes its result.
    async fn record_end(
        &self,
        id: &str,
        rec: &Record,
        timeout_seconds: u64,
        max_output_bytes: u64,
        tee: cmdlog::LogSink<'_>,
        outcome: Result<pyro_protocol::ExecOutcome, CoreError>,
    ) -> Result<ExecView, CoreError> {
        let cut = tee.was_cut();
        let (entry, stdout, stderr) = tee.finish(outcome.as_ref())?;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // Was the VM lost? Record that (if the workspace is free),
                // then report the error itself.
                if let Ok(_lock) = record::lock(&self.paths, id).await {
                    let _ = self.load_fresh(id).await;
                }
                return Err(e);
            }
        };
        let seq = entry.sequence;
        // The command ran: its result is returned whatever happens to this
        // bookkeeping (a busy workspace must not turn it into an error that
        // invites running it again).
        if let Ok(_lock) = record::lock(&self.paths, id).await {
            // A reset in the meantime cleared the history this command
            // belonged to: leave the new history alone.
            if let Some(mut now) =
                record::load(&self.paths, id).filter(|r| r.reset_count == rec.reset_count)
            {
                now.command_count += 1;
                now.last_activity_at = now_unix();
                now.last_command = Some(LastCommand {
                    sequence: seq,
                    command: entry.command.clone(),
                    exit_code: outcome.exit_code,
                    duration_ms: outcome.duration_ms,
                });
                let _ = record::save(&self.paths, &now);
            }
        }
        Ok(ExecView {
            log_error: entry.log_error,
            workspace_id: id.to_owned(),
            sequence: seq,
            command: entry.command,
            cwd: entry.cwd,
            state: ExecState::Finished,
            exit_code: Some(outcome.exit_code),
            timed_out: outcome.timed_out,
            timeout_seconds,
            truncated: cut,
            stdout,
            stderr,
            stdout_bytes: outcome.stdout_bytes,
            stderr_bytes: outcome.stderr_bytes,
            max_output_bytes,
            duration_ms: outcome.duration_ms,
            execution_mode: mode_of(rec.backend),
            limit: outcome
                .limit
                .map(|k| crate::protections::limit_hit(k, rec.mem_mib, rec.disk_mib)),
            redactions: entry.redactions,
        })
    }

    /// The command history: every command is counted; the asked-for ones
    /// come back with the end of their logged output (see
    /// [`cmdlog::read`]).
    pub async fn logs(&self, id: &str, query: LogsQuery) -> Result<LogsView, CoreError> {
        let live_vm = {
            let _lock = record::lock(&self.paths, id).await?;
            let mut rec = self.load_fresh(id).await?;
            self.touch(&mut rec).await?;
            rec.vm_id.filter(|_| rec.state == State::Started)
        };
        let dir = self.dir(id).join("commands");
        let (count, entries) =
            crate::blocking(move || cmdlog::read(&dir, &query, live_vm.as_deref())).await?;
        Ok(LogsView {
            workspace_id: id.to_owned(),
            count,
            entries,
        })
    }
}

/// Kills a job when dropped while armed (off the dropping task).
struct CancelOnDrop {
    paths: Paths,
    vm_id: String,
    job_id: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(job) = self.job_id.take() else {
            return;
        };
        let (paths, vm) = (self.paths.clone(), self.vm_id.clone());
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                if let Ok(s) = Sandbox::attach(&paths, &vm) {
                    let _ = s.job_cancel(&job).await;
                }
            });
        }
    }
}

/// Longest a wait goes on draining output the guest already holds.
const JOB_DRAIN_MAX: Duration = Duration::from_secs(30);

/// Bytes of each stream asked for per job read.
const JOB_READ_BYTES: u64 = 1 << 20;

/// Takes command `seq`'s wait lock (held while following it).
fn wait_lock(logs: &Path, seq: u64) -> Result<nix::fcntl::Flock<std::fs::File>, CoreError> {
    std::fs::create_dir_all(logs).map_err(|e| CoreError::io("creating the command log", e))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cmdlog::wait_lock_path(logs, seq))
        .map_err(|e| CoreError::io("opening the command's lock", e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        CoreError::Busy(format!(
            "another call is already waiting for command {seq}; try again when it returns"
        ))
    })
}

/// What [`Workspaces::settle`] decided.
enum Settled<'a> {
    /// The call's result.
    View(Result<ExecView, CoreError>),
    /// The command ended: record it.
    End(
        Box<cmdlog::LogSink<'a>>,
        Result<pyro_protocol::ExecOutcome, CoreError>,
    ),
}

/// How following a job ended.
enum Followed {
    /// It still runs (the wait is over).
    Running,
    /// It ended (and whether it was cancelled).
    Ended(pyro_protocol::ExecOutcome, bool),
    /// Talking to the guest failed.
    Failed(CoreError),
}

/// Logs job `job`'s output into `tee` until it ends or `wait_seconds`
/// pass, draining what the guest holds either way.
async fn follow<'a>(
    sandbox: &Sandbox,
    mut tee: cmdlog::LogSink<'a>,
    mut job: cmdlog::JobRef,
    wait_seconds: u64,
) -> (cmdlog::LogSink<'a>, cmdlog::JobRef, Followed) {
    let until = tokio::time::Instant::now() + Duration::from_secs(wait_seconds);
    // Output already waiting is drained past the wait, but not forever (a
    // guest that always says `more` is misbehaving).
    let drain_until = until + JOB_DRAIN_MAX;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let read = sandbox
            .job_read(
                &job.job_id,
                (job.stdout_next, job.stderr_next),
                left,
                JOB_READ_BYTES,
                &mut tee,
            )
            .await;
        let st = match read {
            Ok(st) => st,
            Err(e) => return (tee, job, Followed::Failed(e)),
        };
        tee.note_dropped(st.stdout_dropped, st.stderr_dropped);
        let moved = (st.stdout_next, st.stderr_next) != (job.stdout_next, job.stderr_next);
        job.stdout_next = st.stdout_next;
        job.stderr_next = st.stderr_next;
        tee.advance(job.stdout_next, job.stderr_next);
        if st.more && moved && tokio::time::Instant::now() < drain_until {
            continue;
        }
        if let Some(o) = st.outcome {
            return (tee, job, Followed::Ended(o, st.cancelled));
        }
        if tokio::time::Instant::now() >= until {
            return (tee, job, Followed::Running);
        }
    }
}

/// The result for a command left running in the background.
fn running_view(
    id: &str,
    backend: BackendKind,
    entry: LogEntry,
    timeout_seconds: u64,
    max_output_bytes: u64,
    (stdout, stderr, cut): (String, String, bool),
) -> ExecView {
    ExecView {
        workspace_id: id.to_owned(),
        sequence: entry.sequence,
        command: entry.command,
        cwd: entry.cwd,
        state: ExecState::Running,
        exit_code: None,
        timed_out: false,
        timeout_seconds,
        truncated: cut,
        stdout,
        stderr,
        stdout_bytes: entry.job.as_ref().map_or(0, |j| j.stdout_next),
        stderr_bytes: entry.job.as_ref().map_or(0, |j| j.stderr_next),
        max_output_bytes,
        duration_ms: 0,
        execution_mode: mode_of(backend),
        log_error: entry.log_error,
        limit: None,
        redactions: entry.redactions,
    }
}

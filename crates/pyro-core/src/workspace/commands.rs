//! Running commands, and reading their history.

use super::*;

impl Workspaces {
    /// Runs a command, streaming into `sink`, logging the full output.
    pub async fn exec(
        &self,
        id: &str,
        opts: ExecOptions,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecView, CoreError> {
        limits::TIMEOUT_SECONDS.check(opts.timeout_seconds)?;
        limits::OUTPUT_BYTES.check(opts.max_output_bytes)?;
        crate::run::check_env_names(&opts.env)?;
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
        let mode = mode_of(rec.backend);
        let logs = self.dir(id).join("commands");
        let mut tee = cmdlog::LogSink::start(
            &logs,
            seq,
            opts.command.display(),
            cwd.clone(),
            opts.max_output_bytes,
            sink,
        )?;
        let req = ExecRequest {
            command: opts.command.clone(),
            cwd: Some(cwd.clone()),
            env: opts.env.clone(),
            timeout_ms: opts.timeout_seconds * 1000,
            output_limit_bytes: LOG_CAP_BYTES,
            stdin: false,
        };
        let outcome = sandbox.exec_with_stdin(req, stdin, &mut tee).await;
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
        // The command ran: its result is returned whatever happens to this
        // bookkeeping (a busy workspace must not turn it into an error that
        // invites running it again).
        if let Ok(_lock) = record::lock(&self.paths, id).await {
            // A reset in the meantime cleared the history this command
            // belonged to: leave the new history alone.
            if let Some(mut rec) =
                record::load(&self.paths, id).filter(|r| r.reset_count == rec.reset_count)
            {
                rec.command_count += 1;
                rec.last_activity_at = now_unix();
                rec.last_command = Some(LastCommand {
                    sequence: seq,
                    command: entry.command.clone(),
                    exit_code: outcome.exit_code,
                    duration_ms: outcome.duration_ms,
                });
                let _ = record::save(&self.paths, &rec);
            }
        }
        Ok(ExecView {
            log_error: entry.log_error,
            workspace_id: id.to_owned(),
            sequence: seq,
            command: entry.command,
            cwd,
            exit_code: outcome.exit_code,
            timed_out: outcome.timed_out,
            timeout_seconds: opts.timeout_seconds,
            stdout,
            stderr,
            stdout_bytes: outcome.stdout_bytes,
            stderr_bytes: outcome.stderr_bytes,
            truncated: outcome.stdout_bytes > opts.max_output_bytes
                || outcome.stderr_bytes > opts.max_output_bytes,
            max_output_bytes: opts.max_output_bytes,
            duration_ms: outcome.duration_ms,
            execution_mode: mode,
        })
    }

    /// The command history: every command is counted; the asked-for ones
    /// come back with the end of their logged output (see
    /// [`cmdlog::read`]).
    pub async fn logs(&self, id: &str, query: LogsQuery) -> Result<LogsView, CoreError> {
        {
            let _lock = record::lock(&self.paths, id).await?;
            let mut rec = self.load_fresh(id).await?;
            self.touch(&mut rec).await?;
        }
        let dir = self.dir(id).join("commands");
        let (count, entries) = crate::blocking(move || cmdlog::read(&dir, &query)).await?;
        Ok(LogsView {
            workspace_id: id.to_owned(),
            count,
            entries,
        })
    }
}

//! The command history of a workspace: `commands/<seq>.json` (what ran and
//! how it ended) beside `<seq>.stdout` and `<seq>.stderr` (its output, at
//! most [`LOG_CAP_BYTES`] a stream: the host refuses more from the agent).
//!
//! The entry is written before the command starts and again when it ends,
//! so a command whose call was cancelled, or whose pyro process was killed,
//! is in the history saying so, never missing. Write errors on the host
//! (a full disk) are reported in the entry and in the exec result.

use std::io::Write;
use std::path::{Path, PathBuf};

use pyro_vmm::process::ProcessId;
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::sandbox::OutputSink;

mod history;
pub use history::{LogsQuery, read};

/// Output kept per stream in the command log.
pub const LOG_CAP_BYTES: u64 = 16 << 20;

/// How a logged command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum CommandState {
    /// Still running.
    Running,
    /// It ended; `exit_code` says how.
    Finished,
    /// The call was cancelled (or its connection dropped): the agent killed
    /// the command's process group.
    Cancelled,
    /// The pyro process running it went away (killed) before it ended; the
    /// agent killed the command with the connection.
    Interrupted,
    /// Talking to the guest failed; `error` says how. The command may have
    /// run in part.
    Failed,
}

/// A logged command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogEntry {
    /// Sequence number.
    pub sequence: u64,
    /// The command.
    pub command: String,
    /// Working directory.
    pub cwd: String,
    /// How it stands.
    pub state: CommandState,
    /// Exit code, once it finished.
    pub exit_code: Option<i32>,
    /// Whether it timed out.
    pub timed_out: bool,
    /// Run time.
    pub duration_ms: u64,
    /// When it was last recorded (Unix seconds).
    pub recorded_at: f64,
    /// Bytes it wrote to stdout.
    pub stdout_bytes: u64,
    /// Bytes it wrote to stderr.
    pub stderr_bytes: u64,
    /// Whether the log kept less than was written.
    pub log_truncated: bool,
    /// Why the log is incomplete on the host (a write failed), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
    /// What went wrong, for a failed command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pyro process running it (to tell a killed run); kept on disk,
    /// cleared by [`read`] once used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub runner: Option<ProcessId>,
    /// For a command still running in the guest after its call returned:
    /// where to pick it up (kept on disk, never part of an answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub job: Option<JobRef>,
    /// The end of its stdout (see `stdout_omitted_bytes`).
    #[serde(default)]
    pub stdout: String,
    /// The end of its stderr.
    #[serde(default)]
    pub stderr: String,
    /// Logged stdout bytes not returned (from its start).
    #[serde(default)]
    pub stdout_omitted_bytes: u64,
    /// Logged stderr bytes not returned (from its start).
    #[serde(default)]
    pub stderr_omitted_bytes: u64,
    /// Secret values redacted from its output so far (the logs hold the
    /// redacted text only).
    #[serde(default, skip_serializing_if = "crate::workspace::is_zero")]
    pub redactions: u64,
}

/// A command running in the guest as a job (see `Workspaces::exec_wait`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    /// Its id in the agent.
    pub job_id: String,
    /// The VM it runs in (another VM means it ended with a stop).
    pub vm_id: String,
    /// Offsets of the output logged so far.
    pub stdout_next: u64,
    /// The same for stderr.
    pub stderr_next: u64,
    /// Its timeout.
    #[serde(default)]
    pub timeout_seconds: u64,
    /// Bytes in the stdout log file when the offsets were saved (a waiter
    /// killed after writing more cuts the file back, so nothing is logged
    /// twice).
    #[serde(default)]
    pub stdout_logged: u64,
    /// The same for the stderr log file.
    #[serde(default)]
    pub stderr_logged: u64,
}

impl CommandState {
    /// Its name in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
            Self::Failed => "failed",
        }
    }
}

/// Loads entry `seq` of the history in `dir`.
pub fn load(dir: &Path, seq: u64) -> Option<LogEntry> {
    std::fs::read(path(dir, seq, "json"))
        .ok()
        .filter(|b| b.len() <= 1 << 20)
        .and_then(|b| serde_json::from_slice::<LogEntry>(&b).ok())
}

/// The lock file that one waiter on command `seq` holds.
pub fn wait_lock_path(dir: &Path, seq: u64) -> PathBuf {
    path(dir, seq, "lock")
}

fn path(dir: &Path, seq: u64, ext: &str) -> PathBuf {
    dir.join(format!("{seq:06}.{ext}"))
}

fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

fn save_in(dir: &Path, id: Option<(u64, u64)>, e: &LogEntry) -> Result<(), CoreError> {
    if dir_id(dir) != id {
        // A reset replaced this history meanwhile: the command is not part
        // of the new one (whose sequence numbers start again).
        return Ok(());
    }
    save(dir, e)
}

fn save(dir: &Path, e: &LogEntry) -> Result<(), CoreError> {
    let mut e = e.clone();
    e.recorded_at = crate::now_unix();
    crate::save_json(
        &path(dir, e.sequence, "json"),
        &e,
        "writing the command log",
    )
}

/// Tees a command's output into its log files (and the caller's sink),
/// keeps the first `limit` bytes of each stream for the result, and records
/// the entry. Dropped before [`LogSink::finish`], it records the command as
/// cancelled.
#[derive(Debug)]
pub struct LogSink<'a> {
    inner: &'a mut dyn OutputSink,
    dir: PathBuf,
    dir_id: Option<(u64, u64)>,
    entry: LogEntry,
    out: Option<std::fs::File>,
    err: Option<std::fs::File>,
    kept_out: Vec<u8>,
    kept_err: Vec<u8>,
    limit: usize,
    /// Whether output past `limit` was left out of the kept part.
    cut: bool,
    /// Bytes in each log file (stdout, stderr).
    logged: (u64, u64),
    /// Whether the command was cancelled (recorded so when it ends).
    cancelled: bool,
    done: bool,
    /// The workspace's secrets' redactor and a stream of it per output
    /// stream (none without secrets).
    redact: Option<Redacting>,
}

/// Output on its way through a redactor.
#[derive(Debug)]
struct Redacting {
    redactor: crate::redact::Redactor,
    out: crate::redact::Stream,
    err: crate::redact::Stream,
}

impl std::fmt::Debug for dyn OutputSink + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputSink")
    }
}

impl<'a> LogSink<'a> {
    /// Opens the log files and records the command as running.
    pub fn start(
        dir: &Path,
        seq: u64,
        command: String,
        cwd: String,
        limit: u64,
        inner: &'a mut dyn OutputSink,
    ) -> Result<Self, CoreError> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io("creating the command log", e))?;
        let open = |ext: &str| {
            let p = path(dir, seq, ext);
            std::fs::File::create(&p)
                .map_err(|e| CoreError::io(format!("creating {}", p.display()), e))
        };
        let entry = LogEntry {
            sequence: seq,
            command,
            cwd,
            state: CommandState::Running,
            exit_code: None,
            timed_out: false,
            duration_ms: 0,
            recorded_at: 0.0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            log_truncated: false,
            log_error: None,
            error: None,
            runner: Some(ProcessId::current()),
            job: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_omitted_bytes: 0,
            stderr_omitted_bytes: 0,
            redactions: 0,
        };
        let sink = Self {
            out: Some(open("stdout")?),
            err: Some(open("stderr")?),
            inner,
            dir: dir.to_owned(),
            dir_id: dir_id(dir),
            entry,
            kept_out: Vec::new(),
            kept_err: Vec::new(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            cut: false,
            logged: (0, 0),
            cancelled: false,
            done: false,
            redact: None,
        };
        save(&sink.dir, &sink.entry)?;
        Ok(sink)
    }

    /// Picks up logging a command that runs on as a job (`entry` as
    /// [`LogSink::detach`] saved it): its log files are appended to, and the
    /// first `limit` bytes of what comes now are kept for the result.
    pub fn resume(
        dir: &Path,
        mut entry: LogEntry,
        limit: u64,
        inner: &'a mut dyn OutputSink,
    ) -> Result<Self, CoreError> {
        let open = |ext: &str| {
            let p = path(dir, entry.sequence, ext);
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&p)
                .map_err(|e| CoreError::io(format!("opening {}", p.display()), e))
        };
        let (out, err) = (open("stdout")?, open("stderr")?);
        // Output logged after the offsets were last saved is logged again
        // from those offsets: cut it off first.
        let job = entry.job.clone().unwrap_or(JobRef {
            job_id: String::new(),
            vm_id: String::new(),
            stdout_next: 0,
            stderr_next: 0,
            timeout_seconds: 0,
            stdout_logged: 0,
            stderr_logged: 0,
        });
        for (f, len) in [(&out, job.stdout_logged), (&err, job.stderr_logged)] {
            let now = f.metadata().map(|m| m.len()).unwrap_or(0);
            if now > len {
                f.set_len(len)
                    .map_err(|e| CoreError::io("trimming the command log", e))?;
            }
        }
        entry.runner = Some(ProcessId::current());
        let sink = Self {
            out: Some(out),
            err: Some(err),
            inner,
            dir: dir.to_owned(),
            dir_id: dir_id(dir),
            entry,
            kept_out: Vec::new(),
            kept_err: Vec::new(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            cut: false,
            // What the files hold already (the cap is per stream, and the
            // next resume trims to these).
            logged: (job.stdout_logged, job.stderr_logged),
            cancelled: false,
            done: false,
            redact: None,
        };
        save_in(&sink.dir, sink.dir_id, &sink.entry)?;
        Ok(sink)
    }

    /// Redacts the secrets of `redactor` from everything logged and passed
    /// on from now on (the command's text too).
    pub fn redact(&mut self, redactor: &crate::redact::Redactor) {
        if redactor.is_empty() {
            return;
        }
        let mut n = 0;
        redactor.scrub(&mut self.entry.command, &mut n);
        self.entry.redactions += n;
        self.redact = Some(Redacting {
            redactor: redactor.clone(),
            out: redactor.stream(),
            err: redactor.stream(),
        });
        let _ = save_in(&self.dir, self.dir_id, &self.entry);
    }

    /// Bytes of each stream held back because they may begin a secret:
    /// a job's saved offsets stop before them, so the next wait reads
    /// them again rather than anything unredacted leaving.
    fn held(&self) -> (u64, u64) {
        self.redact
            .as_ref()
            .map_or((0, 0), |r| (r.out.held() as u64, r.err.held() as u64))
    }

    /// Redactions made in this call so far.
    pub fn redactions(&self) -> u64 {
        self.redact
            .as_ref()
            .map_or(0, |r| r.out.count() + r.err.count())
    }

    /// Records that the guest dropped output before it was read (its
    /// buffer is bounded): the log has a gap there, and says so.
    pub fn note_dropped(&mut self, stdout: u64, stderr: u64) {
        if stdout == 0 && stderr == 0 {
            return;
        }
        self.entry.log_truncated = true;
        let note = format!(
            "the guest dropped {stdout} bytes of stdout and {stderr} of stderr before they were \
             read (it holds 2 MiB per stream for a command in the background): the log has a gap; \
             wait for the command more often"
        );
        self.entry.log_error = Some(match self.entry.log_error.take() {
            Some(e) => format!("{e}; {note}"),
            None => note,
        });
    }

    /// Records that the command runs as `job` in the guest: from now on a
    /// sink dropped early leaves it `running`, for `exec_wait` to pick up.
    pub fn attach(&mut self, job: JobRef) {
        self.entry.job = Some(job);
        let _ = save_in(&self.dir, self.dir_id, &self.entry);
    }

    /// Moves the job's offsets past the output just logged, and saves
    /// them with the log files' lengths (after flushing), so a waiter
    /// killed at any point resumes without losing or repeating output.
    pub fn advance(&mut self, stdout_next: u64, stderr_next: u64) {
        for f in [self.out.as_mut(), self.err.as_mut()].into_iter().flatten() {
            let _ = f.flush();
        }
        let logged = self.logged;
        let held = self.held();
        if let Some(j) = self.entry.job.as_mut() {
            j.stdout_next = stdout_next.saturating_sub(held.0);
            j.stderr_next = stderr_next.saturating_sub(held.1);
            j.stdout_logged = logged.0;
            j.stderr_logged = logged.1;
        }
        let _ = save_in(&self.dir, self.dir_id, &self.entry);
    }

    /// Records the command as still running in the guest as `job` (its
    /// call returns now); returns the entry and the output kept.
    pub fn detach(mut self, mut job: JobRef) -> (LogEntry, String, String) {
        self.done = true;
        // What cannot begin a secret goes out now; the rest is read again
        // by the next wait.
        if let Some(mut r) = self.redact.take() {
            let (out, err) = (r.out.settle(), r.err.settle());
            self.pass_on(&out, &err);
            self.redact = Some(r);
        }
        let held = self.held();
        job.stdout_next = job.stdout_next.saturating_sub(held.0);
        job.stderr_next = job.stderr_next.saturating_sub(held.1);
        self.entry.redactions += self.redactions();
        job.stdout_logged = self.logged.0;
        job.stderr_logged = self.logged.1;
        self.entry.state = CommandState::Running;
        self.entry.runner = None;
        self.entry.job = Some(job);
        for f in [self.out.as_mut(), self.err.as_mut()].into_iter().flatten() {
            if let Err(e) = f.flush() {
                self.entry.log_error.get_or_insert_with(|| e.to_string());
            }
        }
        if let Err(e) = save_in(&self.dir, self.dir_id, &self.entry) {
            self.entry.log_error.get_or_insert_with(|| e.to_string());
        }
        (
            self.entry.clone(),
            String::from_utf8_lossy(&self.kept_out).into_owned(),
            String::from_utf8_lossy(&self.kept_err).into_owned(),
        )
    }

    /// Records the command as cancelled when it ends (a cancelled job).
    pub fn mark_cancelled(&mut self) {
        self.cancelled = true;
    }

    /// Whether output was left out of what is kept for the result.
    pub fn was_cut(&self) -> bool {
        self.cut
    }

    /// Why the log on the host is incomplete, if it is.
    pub fn log_error(&self) -> Option<&str> {
        self.entry.log_error.as_deref()
    }

    /// Records how the command ended; returns the entry and the output kept
    /// for the result.
    pub fn finish(
        mut self,
        outcome: Result<&pyro_protocol::ExecOutcome, &CoreError>,
    ) -> Result<(LogEntry, String, String), CoreError> {
        self.done = true;
        self.entry.job = None;
        if let Some(mut r) = self.redact.take() {
            let (out, err) = (r.out.finish(), r.err.finish());
            self.pass_on(&out, &err);
            self.entry.redactions += r.out.count() + r.err.count();
            self.redact = Some(r);
        }
        match outcome {
            Ok(o) => {
                self.entry.state = if self.cancelled {
                    CommandState::Cancelled
                } else {
                    CommandState::Finished
                };
                self.entry.exit_code = Some(o.exit_code);
                self.entry.timed_out = o.timed_out;
                self.entry.duration_ms = o.duration_ms;
                self.entry.stdout_bytes = o.stdout_bytes;
                self.entry.stderr_bytes = o.stderr_bytes;
                self.entry.log_truncated |= o.stdout_truncated || o.stderr_truncated;
            }
            Err(e) => {
                self.entry.state = CommandState::Failed;
                let mut m = e.message(crate::hint::FrontEnd::Neutral);
                if let Some(r) = &self.redact {
                    r.redactor.scrub(&mut m, &mut self.entry.redactions);
                }
                self.entry.error = Some(m);
            }
        }
        for f in [self.out.as_mut(), self.err.as_mut()].into_iter().flatten() {
            if let Err(e) = f.flush() {
                self.entry.log_error.get_or_insert_with(|| e.to_string());
            }
        }
        if let Err(e) = save_in(&self.dir, self.dir_id, &self.entry) {
            self.entry.log_error.get_or_insert_with(|| e.to_string());
        }
        Ok((
            self.entry.clone(),
            String::from_utf8_lossy(&self.kept_out).into_owned(),
            String::from_utf8_lossy(&self.kept_err).into_owned(),
        ))
    }

    /// Logs and passes on redacted output released at a call's end.
    fn pass_on(&mut self, out: &[u8], err: &[u8]) {
        self.write(true, out);
        self.inner.stdout(out);
        self.write(false, err);
        self.inner.stderr(err);
    }

    fn write(&mut self, stdout: bool, data: &[u8]) {
        let (file, kept) = if stdout {
            (&mut self.out, &mut self.kept_out)
        } else {
            (&mut self.err, &mut self.kept_err)
        };
        let logged = if stdout {
            &mut self.logged.0
        } else {
            &mut self.logged.1
        };
        // The log keeps at most LOG_CAP_BYTES a stream.
        let room = usize::try_from(LOG_CAP_BYTES.saturating_sub(*logged)).unwrap_or(usize::MAX);
        let to_log = &data[..room.min(data.len())];
        if to_log.len() < data.len() {
            self.entry.log_truncated = true;
        }
        *logged += to_log.len() as u64;
        if let Some(f) = file
            && !to_log.is_empty()
            && let Err(e) = f.write_all(to_log)
        {
            // Stop logging this stream, and say so.
            *file = None;
            let which = if stdout { "stdout" } else { "stderr" };
            self.entry.log_error.get_or_insert_with(|| {
                format!("writing the {which} log on the host failed ({e}); the log stops there")
            });
            let _ = save_in(&self.dir, self.dir_id, &self.entry);
        }
        let room = self.limit.saturating_sub(kept.len());
        self.cut |= room < data.len();
        kept.extend_from_slice(&data[..room.min(data.len())]);
    }
}

impl OutputSink for LogSink<'_> {
    fn stdout(&mut self, data: &[u8]) {
        let clean = match self.redact.as_mut() {
            Some(r) => std::borrow::Cow::Owned(r.out.push(data)),
            None => std::borrow::Cow::Borrowed(data),
        };
        self.write(true, &clean);
        self.inner.stdout(&clean);
    }
    fn stderr(&mut self, data: &[u8]) {
        let clean = match self.redact.as_mut() {
            Some(r) => std::borrow::Cow::Owned(r.err.push(data)),
            None => std::borrow::Cow::Borrowed(data),
        };
        self.write(false, &clean);
        self.inner.stderr(&clean);
    }
}

impl Drop for LogSink<'_> {
    fn drop(&mut self) {
        if !self.done {
            // A foreground command's held-back tail still goes to its log
            // (a job's is read again by the next wait: its offsets stop
            // before it).
            if self.entry.job.is_none()
                && let Some(mut r) = self.redact.take()
            {
                let (out, err) = (r.out.finish(), r.err.finish());
                self.write(true, &out);
                self.write(false, &err);
                self.entry.redactions += r.out.count() + r.err.count();
            }
            if self.entry.job.is_some() {
                // A job runs on in the guest: a wait that gave up leaves it
                // to the next one, from where this one got to.
                self.entry.runner = None;
            } else {
                self.entry.state = CommandState::Cancelled;
            }
            let _ = save_in(&self.dir, self.dir_id, &self.entry);
        }
    }
}

#[cfg(test)]
mod tests;

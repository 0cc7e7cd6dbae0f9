//! Interactive shells: PTYs run by the guest agent, several per workspace.
//!
//! The host keeps a mark per shell it opened (`shells.json`: its id here,
//! the VM and the agent's id for it), so a shell that ended with a stop or
//! a reset is reported as ended, with the reason, never silently gone.

use super::*;

/// A shell as the host knows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Mark {
    shell_id: String,
    vm_id: String,
    agent_id: String,
    cwd: String,
    cols: u16,
    rows: u16,
    opened_at: f64,
    #[serde(default)]
    keep_alive: bool,
}

/// What to open.
#[derive(Debug, Clone, Default)]
pub struct ShellOptions {
    /// Working directory: relative to `/workspace`, or absolute.
    pub cwd: Option<String>,
    /// Terminal width.
    pub cols: u16,
    /// Terminal height.
    pub rows: u16,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Whether it keeps the VM from its idle power-off while open.
    pub keep_alive: bool,
    /// Secrets given to the shell as environment variables: `SECRET` or
    /// `SECRET=VARIABLE`.
    pub secret_env: Vec<String>,
}

/// A shell.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ShellView {
    /// Workspace.
    pub workspace_id: String,
    /// The shell's id (give it to the other shell calls).
    pub shell_id: String,
    /// Working directory it started in.
    pub cwd: String,
    /// Terminal width.
    pub cols: u16,
    /// Terminal height.
    pub rows: u16,
    /// `running`; `exited` (its process ended: `exit_code`); `closed`; or
    /// `ended` (its workspace stopped or was reset: `ended_reason`).
    pub state: String,
    /// How its process ended, once it did.
    pub exit_code: Option<i32>,
    /// Why an `ended` shell ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_reason: Option<String>,
    /// When it was opened (Unix seconds).
    pub opened_at: f64,
    /// Whether it keeps the VM from its idle power-off while open.
    pub keep_alive: bool,
}

/// What a shell read returns.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ShellReadView {
    /// The shell.
    #[serde(flatten)]
    pub shell: ShellView,
    /// Where this read started in the shell's output.
    pub cursor: u64,
    /// Where the next read should start.
    pub next_cursor: u64,
    /// The output (as written, or rendered as a screen with `plain`).
    pub output: String,
    /// Whether the output was rendered as a person would see it.
    pub plain: bool,
    /// Whether more output is already waiting past `next_cursor`.
    pub truncated: bool,
    /// Bytes before `cursor` the guest no longer held (it keeps the last
    /// 1 MiB per shell): they are lost, and this says so.
    pub dropped_bytes: u64,
    /// Secret values redacted from `output` (each shows as
    /// `[redacted:NAME]`).
    #[serde(skip_serializing_if = "crate::workspace::is_zero")]
    pub redactions: u64,
}

/// Every shell of a workspace.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ShellListView {
    /// Workspace.
    pub workspace_id: String,
    /// How many.
    pub count: usize,
    /// The shells, oldest first.
    pub shells: Vec<ShellView>,
}

/// A closed shell.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ShellCloseView {
    /// The shell as it was.
    #[serde(flatten)]
    pub shell: ShellView,
    /// Always true: it and its processes are gone.
    pub closed: bool,
}

const MARKS_MAX: usize = 64;

fn marks_path(ws: &Workspaces, id: &str) -> PathBuf {
    ws.dir(id).join("shells.json")
}

fn load_marks(ws: &Workspaces, id: &str) -> Result<Vec<Mark>, CoreError> {
    crate::load_json_or_default(&marks_path(ws, id), "forget the workspace's shells")
}

fn save_marks(ws: &Workspaces, id: &str, marks: &[Mark]) -> Result<(), CoreError> {
    crate::save_json(&marks_path(ws, id), &marks, "saving the workspace's shells")
}

/// Forgets every shell of workspace `id` (after a reset, which ends them
/// and says so in its result); how many there were.
pub(super) fn clear_marks(ws: &Workspaces, id: &str) -> usize {
    let n = load_marks(ws, id).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(marks_path(ws, id));
    n
}

/// How many bytes at the end of `data` begin a UTF-8 character that is not
/// complete (0 to 3).
pub(super) fn incomplete_tail(data: &[u8]) -> usize {
    for back in 1..=data.len().min(4) {
        let b = data[data.len() - back];
        // The last byte that is not a continuation byte starts the last
        // character: is all of it there?
        if b & 0xC0 != 0x80 {
            let need = match b {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if need > back { back } else { 0 };
        }
    }
    0
}

/// Shells of workspace `id` opened in VM `vm` and not closed.
pub(super) fn count_for(ws: &Workspaces, id: &str, vm: &str) -> usize {
    load_marks(ws, id).map_or(0, |m| m.iter().filter(|m| m.vm_id == vm).count())
}

fn view(
    id: &str,
    m: &Mark,
    info: Option<&pyro_protocol::ShellInfo>,
    ended: Option<&str>,
) -> ShellView {
    ShellView {
        workspace_id: id.to_owned(),
        shell_id: m.shell_id.clone(),
        cwd: m.cwd.clone(),
        cols: m.cols,
        rows: m.rows,
        state: match (info, ended) {
            (Some(i), _) => i.state.clone(),
            (None, _) => "ended".into(),
        },
        exit_code: info.and_then(|i| i.exit_code),
        ended_reason: match info {
            Some(_) => None,
            None => Some(ended.unwrap_or("its workspace stopped").to_owned()),
        },
        opened_at: m.opened_at,
        keep_alive: m.keep_alive,
    }
}

/// A shell as the guest describes it, checked: its state is one of the
/// three it may be.
fn checked(i: pyro_protocol::ShellInfo) -> Result<pyro_protocol::ShellInfo, CoreError> {
    if !["running", "exited", "closed"].contains(&i.state.as_str()) {
        return Err(CoreError::Transport(
            "the guest agent described a shell in an unknown state; the guest is misbehaving: \
             reset or delete it"
                .into(),
        ));
    }
    Ok(i)
}

fn shell_info(r: Response) -> Result<pyro_protocol::ShellInfo, CoreError> {
    match r {
        Response::Shell(i) => checked(i),
        other => Err(crate::sandbox::unexpected(other)),
    }
}

fn agent_gone(e: &CoreError) -> bool {
    matches!(e, CoreError::Agent(a) if a.kind == pyro_protocol::ErrorKind::NotFound)
}

impl Workspaces {
    /// The started workspace `id`, its sandbox, and shell `shell_id`'s mark;
    /// a shell of an earlier boot is an error that says it ended.
    async fn shell_of(
        &self,
        id: &str,
        shell_id: &str,
        op: &str,
    ) -> Result<(Sandbox, Mark), CoreError> {
        let marks = load_marks(self, id)?;
        let mark = marks
            .iter()
            .find(|m| m.shell_id == shell_id)
            .cloned()
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "workspace {id} has no shell {shell_id:?} (a closed shell is gone); \
                     ⟨op:workspace shell list {id}⟩ shows its shells"
                ))
            })?;
        let (_, sandbox) = self
            .started_with(id, op, |_| {})
            .await
            .map_err(|e| match e {
                CoreError::State(m) => CoreError::State(format!(
                    "{m}; shell {shell_id} ended when the workspace stopped"
                )),
                e => e,
            })?;
        if mark.vm_id != sandbox.id() {
            return Err(CoreError::State(format!(
                "shell {shell_id} ended when workspace {id} stopped (or was reset); open another \
                 with ⟨op:workspace shell open {id}⟩"
            )));
        }
        Ok((sandbox, mark))
    }

    /// Opens an interactive shell in started workspace `id`.
    pub async fn shell_open(&self, id: &str, opts: ShellOptions) -> Result<ShellView, CoreError> {
        let store = self.store_of(id)?;
        self.shell_open_raw(id, opts, &store.usable)
            .await
            .map_err(|e| e.redact(&secrets::store_redactor(&store)))
    }

    async fn shell_open_raw(
        &self,
        id: &str,
        mut opts: ShellOptions,
        secrets: &secrets::Secrets,
    ) -> Result<ShellView, CoreError> {
        limits::SHELL_COLS.check(opts.cols)?;
        limits::SHELL_ROWS.check(opts.rows)?;
        crate::run::check_env_names(&opts.env)?;
        opts.env = secrets::merge_env(secrets, &opts.env, &opts.secret_env)?;
        let cwd = match opts.cwd.as_deref().map(str::trim) {
            None | Some("") => WORKSPACE_ROOT.to_owned(),
            Some(c) if c.starts_with('/') => c.to_owned(),
            Some(c) => guest_path(c)?,
        };
        let (_, sandbox) = self.started_with(id, "shell open", |_| {}).await?;
        // The mark is saved before the guest opens the shell: a call killed
        // in between leaves a shell that `list` shows and `close` ends.
        let shell_id = random_hex(6);
        let mark = Mark {
            shell_id: shell_id.clone(),
            vm_id: sandbox.id().to_owned(),
            agent_id: format!("h{shell_id}"),
            cwd: cwd.clone(),
            cols: opts.cols,
            rows: opts.rows,
            opened_at: now_unix(),
            keep_alive: opts.keep_alive,
        };
        {
            let _lock = record::lock(&self.paths, id).await?;
            let mut marks = load_marks(self, id)?;
            // Shells of earlier boots make room first (they ended); those
            // of this boot are never forgotten unasked.
            if marks.len() >= MARKS_MAX {
                let vm = mark.vm_id.clone();
                marks.retain(|m| m.vm_id == vm);
                if marks.len() >= MARKS_MAX {
                    return Err(CoreError::Quota(format!(
                        "workspace {id} has {MARKS_MAX} shells; close some with \
                         ⟨op:workspace shell close⟩"
                    )));
                }
            }
            marks.push(mark.clone());
            save_marks(self, id, &marks)?;
        }
        let opened = sandbox
            .call(
                Request::ShellOpen {
                    shell_id: mark.agent_id.clone(),
                    cwd,
                    cols: opts.cols,
                    rows: opts.rows,
                    env: opts.env,
                    keep_alive: opts.keep_alive,
                },
                Duration::from_secs(30),
            )
            .await
            .and_then(shell_info);
        let info = match opened {
            Ok(i) => i,
            Err(e) => {
                if let Ok(_lock) = record::lock(&self.paths, id).await
                    && let Ok(mut marks) = load_marks(self, id)
                {
                    marks.retain(|m| m.shell_id != shell_id);
                    let _ = save_marks(self, id, &marks);
                }
                return Err(e);
            }
        };
        Ok(view(id, &mark, Some(&info), None))
    }

    /// Reads shell output from `cursor`: at most `max_chars` bytes, after
    /// waiting for `wait_for_idle_ms` of quiet if given; with `plain`,
    /// rendered as a screen.
    pub async fn shell_read(
        &self,
        id: &str,
        shell_id: &str,
        cursor: u64,
        max_chars: u64,
        plain: bool,
        wait_for_idle_ms: Option<u64>,
    ) -> Result<ShellReadView, CoreError> {
        let r = self.redactor(id)?;
        let q = (cursor, max_chars, plain, wait_for_idle_ms);
        self.shell_read_raw(id, shell_id, q, &r)
            .await
            .map_err(|e| e.redact(&r))
    }

    async fn shell_read_raw(
        &self,
        id: &str,
        shell_id: &str,
        (cursor, max_chars, plain, wait_for_idle_ms): (u64, u64, bool, Option<u64>),
        redactor: &crate::redact::Redactor,
    ) -> Result<ShellReadView, CoreError> {
        limits::SHELL_READ_CHARS.check(max_chars)?;
        if let Some(ms) = wait_for_idle_ms {
            limits::SHELL_IDLE_MS.check(ms)?;
        }
        let (sandbox, mark) = self.shell_of(id, shell_id, "shell read").await?;
        // With secrets, a read covers at least two of the longest form, so
        // holding back the start of one never stops it moving on.
        let want = if redactor.is_empty() {
            max_chars
        } else {
            max_chars.max(2 * redactor.longest() as u64)
        };
        let (data, answer) = sandbox
            .shell_read(&mark.agent_id, cursor, want, wait_for_idle_ms)
            .await?;
        let Response::ShellOutput {
            shell,
            next_cursor,
            dropped,
            more,
        } = answer
        else {
            return Err(CoreError::Transport(
                "unexpected answer to a shell read".into(),
            ));
        };
        let shell = checked(shell)?;
        let sent = data.len() as u64;
        if data.is_empty() && dropped == 0 && next_cursor < cursor {
            return Err(CoreError::invalid(format!(
                "cursor {cursor} is past the end of shell {shell_id}'s output ({next_cursor}); \
                 read with ⟨arg:cursor={next_cursor}⟩"
            )));
        }
        if cursor
            .checked_add(dropped)
            .and_then(|c| c.checked_add(sent))
            != Some(next_cursor)
        {
            return Err(CoreError::Transport(
                "the guest agent reported a shell cursor that does not match what it sent; the \
                 guest is misbehaving: reset or delete it"
                    .into(),
            ));
        }
        // A character cut by the read's end is left for the next read
        // (raw reads only: a plain read renders a screen).
        let mut data = data;
        let mut next_cursor = next_cursor;
        let mut held = 0;
        if !plain {
            held = incomplete_tail(&data);
            if held > 0 && held < data.len() {
                data.truncate(data.len() - held);
                next_cursor -= held as u64;
            } else {
                held = 0;
            }
        }
        // Secrets go before the bytes are rendered; bytes at the end that
        // may begin one are read again with what follows (all of them once
        // the shell has ended).
        let (clean, mut redactions, keep) =
            redactor.settle(&data, shell.state != "running" && !more);
        let data = clean;
        next_cursor -= keep as u64;
        let cols = mark.cols;
        let limit = usize::try_from(max_chars).unwrap_or(usize::MAX);
        let (output, cut) = crate::blocking(move || {
            Ok(if plain {
                // The screen's end matters most: keep the last characters.
                let text = crate::terminal::render(&data, cols);
                let n = text.chars().count();
                if n > limit {
                    (text.chars().skip(n - limit).collect::<String>(), true)
                } else {
                    (text, false)
                }
            } else {
                (String::from_utf8_lossy(&data).into_owned(), false)
            })
        })
        .await?;
        let mut output = output;
        redactor.scrub(&mut output, &mut redactions);
        Ok(ShellReadView {
            shell: view(id, &mark, Some(&shell), None),
            cursor: cursor + dropped,
            next_cursor,
            output,
            plain,
            truncated: more || cut || held > 0,
            dropped_bytes: dropped,
            redactions,
        })
    }

    /// Types `input` (and a newline unless `no_newline`) into a shell.
    pub async fn shell_write(
        &self,
        id: &str,
        shell_id: &str,
        input: &str,
        newline: bool,
    ) -> Result<ShellView, CoreError> {
        let (sandbox, mark) = self.shell_of(id, shell_id, "shell write").await?;
        let mut text = input.to_owned();
        if newline {
            text.push('\n');
        }
        let info = shell_info(
            sandbox
                .call(
                    Request::ShellWrite {
                        shell_id: mark.agent_id.clone(),
                        input: text,
                    },
                    Duration::from_secs(30),
                )
                .await?,
        )?;
        Ok(view(id, &mark, Some(&info), None))
    }

    /// Changes a shell's terminal size (what runs in it is told, as a
    /// terminal tells it).
    pub async fn shell_resize(
        &self,
        id: &str,
        shell_id: &str,
        cols: u16,
        rows: u16,
    ) -> Result<ShellView, CoreError> {
        limits::SHELL_COLS.check(cols)?;
        limits::SHELL_ROWS.check(rows)?;
        let (sandbox, mut mark) = self.shell_of(id, shell_id, "shell resize").await?;
        let info = shell_info(
            sandbox
                .call(
                    Request::ShellResize {
                        shell_id: mark.agent_id.clone(),
                        cols,
                        rows,
                    },
                    Duration::from_secs(30),
                )
                .await?,
        )?;
        // The size plain reads render at.
        let _lock = record::lock(&self.paths, id).await?;
        let mut marks = load_marks(self, id)?;
        if let Some(m) = marks.iter_mut().find(|m| m.shell_id == shell_id) {
            (m.cols, m.rows) = (cols, rows);
            mark = m.clone();
        }
        save_marks(self, id, &marks)?;
        Ok(view(id, &mark, Some(&info), None))
    }

    /// Sends `signal` (HUP, INT, TERM or KILL) to what runs in a shell.
    pub async fn shell_signal(
        &self,
        id: &str,
        shell_id: &str,
        signal: &str,
    ) -> Result<ShellView, CoreError> {
        if !["HUP", "INT", "TERM", "KILL"].contains(&signal.to_ascii_uppercase().as_str()) {
            return Err(CoreError::invalid(format!(
                "unknown signal {signal:?}; ⟨arg:signal⟩ takes HUP, INT, TERM or KILL"
            )));
        }
        let (sandbox, mark) = self.shell_of(id, shell_id, "shell signal").await?;
        let info = shell_info(
            sandbox
                .call(
                    Request::ShellSignal {
                        shell_id: mark.agent_id.clone(),
                        signal: signal.to_ascii_uppercase(),
                    },
                    Duration::from_secs(30),
                )
                .await?,
        )?;
        Ok(view(id, &mark, Some(&info), None))
    }

    /// Ends a shell and every process it started. A shell that already
    /// ended with a stop is forgotten.
    pub async fn shell_close(&self, id: &str, shell_id: &str) -> Result<ShellCloseView, CoreError> {
        let marks = load_marks(self, id)?;
        let Some(mark) = marks.iter().find(|m| m.shell_id == shell_id).cloned() else {
            return Err(CoreError::NotFound(format!(
                "workspace {id} has no shell {shell_id:?}; ⟨op:workspace shell list {id}⟩ shows \
                 its shells"
            )));
        };
        let shell = match self.shell_of(id, shell_id, "shell close").await {
            Ok((sandbox, mark)) => {
                let closed = sandbox
                    .call(
                        Request::ShellClose {
                            shell_id: mark.agent_id.clone(),
                        },
                        Duration::from_secs(30),
                    )
                    .await;
                match closed {
                    Ok(r) => view(id, &mark, Some(&shell_info(r)?), None),
                    // The guest no longer has it: nothing runs; forget it.
                    Err(e) if agent_gone(&e) => {
                        view(id, &mark, None, Some("the guest no longer knew it"))
                    }
                    Err(e) => return Err(e),
                }
            }
            // Already ended with its VM: nothing runs; just forget it.
            Err(CoreError::State(_)) => view(id, &mark, None, None),
            Err(e) => return Err(e),
        };
        let _lock = record::lock(&self.paths, id).await?;
        let mut marks = load_marks(self, id)?;
        marks.retain(|m| m.shell_id != shell_id);
        save_marks(self, id, &marks)?;
        Ok(ShellCloseView {
            shell,
            closed: true,
        })
    }

    /// Every shell of workspace `id`: those of its running VM as the agent
    /// reports them, those of earlier boots as ended.
    pub async fn shell_list(&self, id: &str) -> Result<ShellListView, CoreError> {
        let rec = {
            let _lock = record::lock(&self.paths, id).await?;
            self.load_fresh(id).await?
        };
        let marks = load_marks(self, id)?;
        let live: Vec<pyro_protocol::ShellInfo> = match (&rec.state, &rec.vm_id) {
            (State::Started, Some(vm)) if marks.iter().any(|m| &m.vm_id == vm) => {
                let sandbox = Sandbox::attach(&self.paths, vm)?;
                match sandbox
                    .call(Request::ShellList, Duration::from_secs(30))
                    .await?
                {
                    Response::Shells { shells } => shells
                        .into_iter()
                        .take(256)
                        .map(checked)
                        .collect::<Result<_, _>>()?,
                    other => return Err(crate::sandbox::unexpected(other)),
                }
            }
            _ => Vec::new(),
        };
        let shells: Vec<ShellView> = marks
            .iter()
            .map(|m| {
                let info = (Some(&m.vm_id) == rec.vm_id.as_ref())
                    .then(|| live.iter().find(|i| i.shell_id == m.agent_id))
                    .flatten();
                let reason = if Some(&m.vm_id) == rec.vm_id.as_ref() {
                    "the guest no longer knows it"
                } else {
                    "its workspace stopped (or was reset), which ends every shell"
                };
                view(id, m, info, Some(reason))
            })
            .collect();
        Ok(ShellListView {
            workspace_id: id.to_owned(),
            count: shells.len(),
            shells,
        })
    }
}

#[cfg(test)]
mod tests;

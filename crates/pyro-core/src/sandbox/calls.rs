//! Talking to a sandbox's agent: one connection per request, every read
//! and write under a deadline, every size from the agent bounded.

use super::download::{DAMAGED_ATTEMPTS, is_damaged_upload};
use super::*;

/// The next frame from the agent; a closed connection mid-`what` is an
/// error.
pub(super) async fn next_frame<R: tokio::io::AsyncRead + Unpin>(
    s: &mut R,
    what: &str,
) -> Result<pyro_protocol::Frame, CoreError> {
    read_frame(s)
        .await
        .map_err(|e| CoreError::Transport(e.to_string()))?
        .ok_or_else(|| CoreError::Transport(format!("the agent closed the connection mid-{what}")))
}

/// The agent's answer in a `Message` frame; an `Error` answer is an error.
pub(super) fn answer(frame: &pyro_protocol::Frame) -> Result<Response, CoreError> {
    match frame
        .message::<Response>()
        .map_err(|e| CoreError::Transport(e.to_string()))?
    {
        Response::Error(e) => Err(e.into()),
        other => Ok(other),
    }
}

/// Reads the agent's closing answer; an `Error` answer is an error.
async fn read_answer<R: tokio::io::AsyncRead + Unpin>(s: &mut R) -> Result<Response, CoreError> {
    match read_message::<_, Response>(s, "its answer")
        .await
        .map_err(|e| CoreError::Transport(e.to_string()))?
    {
        Response::Error(e) => Err(e.into()),
        other => Ok(other),
    }
}

/// An answer or frame the request does not call for (quoted up to
/// [`QUOTE_MAX`] characters: a guest's answer can be megabytes).
pub(crate) fn unexpected(other: impl std::fmt::Debug) -> CoreError {
    CoreError::Transport(format!(
        "unexpected answer {}; the guest is misbehaving: reset or delete it",
        quoted(&other)
    ))
}

/// How much of a guest's answer an error quotes.
const QUOTE_MAX: usize = 200;

/// `v`'s debug form, cut at [`QUOTE_MAX`] characters (formatting stops
/// there, so a huge answer is never rendered whole).
fn quoted(v: &impl std::fmt::Debug) -> String {
    struct Capped(String, usize);
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if self.1 == QUOTE_MAX {
                    return Err(std::fmt::Error);
                }
                self.0.push(c);
                self.1 += 1;
            }
            Ok(())
        }
    }
    let mut out = Capped(String::new(), 0);
    if std::fmt::write(&mut out, format_args!("{v:?}")).is_err() {
        out.0.push('…');
    }
    out.0
}

impl Sandbox {
    /// Opens a connection, checks the greeting and sends `request`.
    pub(super) async fn open(&self, request: Request) -> Result<UnixStream, CoreError> {
        Ok(self.open_greeted(request).await?.1)
    }

    /// A connection to the agent (not yet greeted).
    async fn connect(&self) -> Result<UnixStream, CoreError> {
        match self.mode() {
            ExecutionMode::GuestVsock => {
                let fc = self
                    .record
                    .firecracker
                    .as_ref()
                    .ok_or_else(|| CoreError::Transport("no vsock path".into()))?;
                Ok(pyro_vmm::vsock::connect_within(
                    &fc.vsock_uds,
                    AGENT_PORT,
                    agent_deadline(pyro_vmm::vsock::HANDSHAKE_TIMEOUT),
                    self.record.jail_uid,
                )
                .await?)
            }
            ExecutionMode::HostCompat => {
                let sock = self
                    .record
                    .agent_socket
                    .as_ref()
                    .ok_or_else(|| CoreError::Transport("no socket".into()))?;
                UnixStream::connect(sock).await.map_err(|e| {
                    CoreError::Transport(format!("connecting to {}: {e}", sock.display()))
                })
            }
        }
    }

    /// [`Self::open`], also returning the agent's greeting.
    pub(super) async fn open_greeted(
        &self,
        request: Request,
    ) -> Result<(Hello, UnixStream), CoreError> {
        let mut stream = self.connect().await?;
        let hello: Hello = tokio::time::timeout(
            agent_deadline(GREETING_TIMEOUT),
            read_message(&mut stream, "its greeting"),
        )
        .await
        .map_err(|_| CoreError::Transport("the agent accepted but did not greet".into()))?
        .map_err(|e| CoreError::Transport(e.to_string()))?;
        check_protocol(&hello, &self.record.environment)?;
        let envelope = Envelope {
            protocol_version: PROTOCOL_VERSION,
            request,
        };
        let send = write_message(&mut stream, &envelope);
        // An agent that never reads cannot hold a large request forever.
        tokio::time::timeout(agent_deadline(Duration::from_secs(60)), send)
            .await
            .map_err(|_| CoreError::Transport("the agent did not take the request".into()))?
            .map_err(|e| CoreError::Transport(e.to_string()))?;
        Ok((hello, stream))
    }

    /// Sends a request whose answer is a single message.
    pub async fn call(&self, request: Request, timeout: Duration) -> Result<Response, CoreError> {
        Ok(self.call_greeted(request, timeout).await?.1)
    }

    /// [`Self::call_greeted`] with separate deadlines: `greet_within` for
    /// the connection, greeting and request, `answer_within` for the answer.
    /// `Ok(None)` when the greeting did not come in time (worth another
    /// connection: see the restore path).
    pub(super) async fn call_greeted_within(
        &self,
        request: Request,
        greet_within: Duration,
        answer_within: Duration,
    ) -> Result<Option<(Hello, Response)>, CoreError> {
        let Ok(opened) = tokio::time::timeout(greet_within, self.open_greeted(request)).await
        else {
            return Ok(None);
        };
        let (hello, mut s) = opened?;
        let answer = tokio::time::timeout(answer_within, read_answer(&mut s))
            .await
            .map_err(|_| {
                CoreError::Transport(format!("no answer within {} s", answer_within.as_secs()))
            })??;
        Ok(Some((hello, answer)))
    }

    /// [`Self::call`], also returning the agent's greeting.
    pub async fn call_greeted(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<(Hello, Response), CoreError> {
        let (hello, mut s) = self.open_greeted(request).await?;
        let timeout = agent_deadline(timeout);
        let answer = tokio::time::timeout(timeout, read_answer(&mut s))
            .await
            .map_err(|_| {
                CoreError::Transport(format!("no answer within {} s", timeout.as_secs()))
            })??;
        Ok((hello, answer))
    }

    /// Runs one command, streaming its output into `sink`. A dropped
    /// connection is reported, never retried: the command is not run twice.
    pub async fn exec(
        &self,
        req: ExecRequest,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecOutcome, CoreError> {
        self.exec_with_stdin(req, None, sink).await
    }

    /// [`Sandbox::exec`] with `stdin` streamed to the command (then closed).
    pub async fn exec_with_stdin(
        &self,
        mut req: ExecRequest,
        stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecOutcome, CoreError> {
        req.stdin = stdin.is_some();
        let limit = agent_deadline(Duration::from_millis(req.timeout_ms) + EXEC_GRACE);
        // The agent promised at most this much per stream; more is a
        // misbehaving (or hostile) guest, and is never buffered or logged.
        let output_cap = req.output_limit_bytes;
        let (mut rd, mut wr) = self.open(Request::Exec(req)).await?.into_split();
        // The write half stays open until the command ends: closing it is how
        // the agent learns the host went away (and kills the command).
        let pump = AbortOnDrop(tokio::spawn(async move {
            if let Some(mut input) = stdin {
                let mut buf = vec![0u8; pyro_protocol::CHUNK_BYTES];
                loop {
                    match tokio::io::AsyncReadExt::read(&mut input, &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if pyro_protocol::write_frame(&mut wr, FrameKind::Stdin, &buf[..n])
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
                let _ = pyro_protocol::write_frame(&mut wr, FrameKind::StdinEnd, b"").await;
            }
            std::future::pending::<()>().await;
            drop(wr);
        }));
        let read = async {
            let (mut out_bytes, mut err_bytes) = (0u64, 0u64);
            let over = |n: u64| {
                CoreError::Transport(format!(
                    "the guest agent sent more than the {output_cap} bytes of output per stream \
                     it was asked for ({n} so far), so the command was abandoned: the guest is \
                     misbehaving; reset or delete it"
                ))
            };
            loop {
                let frame = next_frame(&mut rd, "command").await?;
                match frame.kind {
                    FrameKind::Stdout => {
                        out_bytes += frame.payload.len() as u64;
                        if out_bytes > output_cap {
                            return Err(over(out_bytes));
                        }
                        sink.stdout(&frame.payload);
                    }
                    FrameKind::Stderr => {
                        err_bytes += frame.payload.len() as u64;
                        if err_bytes > output_cap {
                            return Err(over(err_bytes));
                        }
                        sink.stderr(&frame.payload);
                    }
                    FrameKind::Message => {
                        return match answer(&frame)? {
                            Response::Exec(outcome) => Ok(outcome),
                            other => Err(unexpected(other)),
                        };
                    }
                    other => return Err(unexpected(other)),
                }
            }
        };
        let result = tokio::time::timeout(limit, read).await.map_err(|_| {
            CoreError::Transport(format!(
                "the agent did not finish within {} s",
                limit.as_secs()
            ))
        });
        drop(pump);
        result?
    }

    /// Starts `req` as job `job_id`, which outlives this call.
    pub async fn job_start(&self, job_id: &str, mut req: ExecRequest) -> Result<(), CoreError> {
        req.stdin = false;
        let request = Request::JobStart {
            job_id: job_id.to_owned(),
            exec: req,
        };
        match self.call(request, FILE_OP_TIMEOUT).await? {
            Response::JobStarted { job_id: j } if j == job_id => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Waits up to `wait` for job `job_id` to end, streaming its output past
    /// `from` (at most `max_bytes` per stream) into `sink`.
    pub async fn job_read(
        &self,
        job_id: &str,
        from: (u64, u64),
        wait: Duration,
        max_bytes: u64,
        sink: &mut dyn OutputSink,
    ) -> Result<pyro_protocol::JobState, CoreError> {
        let request = Request::JobRead {
            job_id: job_id.to_owned(),
            stdout_from: from.0,
            stderr_from: from.1,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            max_bytes,
        };
        let mut s = self.open(request).await?;
        let read = async {
            let (mut out_bytes, mut err_bytes) = (0u64, 0u64);
            loop {
                let frame = next_frame(&mut s, "command output").await?;
                let n = frame.payload.len() as u64;
                match frame.kind {
                    FrameKind::Stdout | FrameKind::Stderr => {
                        let total = if frame.kind == FrameKind::Stdout {
                            &mut out_bytes
                        } else {
                            &mut err_bytes
                        };
                        *total += n;
                        // More than was asked for: a misbehaving guest.
                        if *total > max_bytes {
                            return Err(CoreError::Transport(format!(
                                "the guest agent sent more than the {max_bytes} bytes of output asked for; the \
                                 guest is misbehaving: reset or delete it"
                            )));
                        }
                        if frame.kind == FrameKind::Stdout {
                            sink.stdout(&frame.payload);
                        } else {
                            sink.stderr(&frame.payload);
                        }
                    }
                    FrameKind::Message => {
                        return match answer(&frame)? {
                            Response::Job(state) => {
                                // Offsets move by exactly what was sent and
                                // what was dropped.
                                let exact = |from: u64, dropped: u64, sent: u64, next: u64| {
                                    from.checked_add(dropped).and_then(|v| v.checked_add(sent))
                                        == Some(next)
                                };
                                if !exact(
                                    from.0,
                                    state.stdout_dropped,
                                    out_bytes,
                                    state.stdout_next,
                                ) || !exact(
                                    from.1,
                                    state.stderr_dropped,
                                    err_bytes,
                                    state.stderr_next,
                                ) {
                                    return Err(CoreError::Transport(
                                        "the guest agent reported output offsets that do not \
                                         match what it sent; the guest is misbehaving: reset or \
                                         delete it"
                                            .into(),
                                    ));
                                }
                                Ok(state)
                            }
                            other => Err(unexpected(other)),
                        };
                    }
                    other => return Err(unexpected(other)),
                }
            }
        };
        let limit = agent_deadline(wait + FILE_OP_TIMEOUT);
        tokio::time::timeout(limit, read).await.map_err(|_| {
            CoreError::Transport(format!(
                "the agent did not answer within {} s",
                limit.as_secs()
            ))
        })?
    }

    /// Reads shell `shell_id`'s output from `cursor` (at most `max_bytes`,
    /// after waiting for `wait_idle_ms` of quiet if asked): (output, the
    /// agent's answer: shell, next cursor, dropped, more).
    pub async fn shell_read(
        &self,
        shell_id: &str,
        cursor: u64,
        max_bytes: u64,
        wait_idle_ms: Option<u64>,
    ) -> Result<(Vec<u8>, Response), CoreError> {
        let request = Request::ShellRead {
            shell_id: shell_id.to_owned(),
            cursor,
            max_bytes,
            wait_idle_ms,
        };
        let mut s = self.open(request).await?;
        let read = async {
            let mut out = Vec::new();
            loop {
                let frame = next_frame(&mut s, "shell output").await?;
                match frame.kind {
                    FrameKind::Stdout => {
                        if (out.len() + frame.payload.len()) as u64 > max_bytes {
                            return Err(CoreError::Transport(format!(
                                "the guest agent sent more than the {max_bytes} bytes of shell \
                                 output asked for; the guest is misbehaving: reset or delete it"
                            )));
                        }
                        out.extend_from_slice(&frame.payload);
                    }
                    FrameKind::Message => {
                        return match answer(&frame)? {
                            r @ Response::ShellOutput { .. } => Ok((out, r)),
                            other => Err(unexpected(other)),
                        };
                    }
                    other => return Err(unexpected(other)),
                }
            }
        };
        // The agent waits at most 60 s for quiet output.
        let limit = agent_deadline(Duration::from_secs(60) + FILE_OP_TIMEOUT);
        tokio::time::timeout(limit, read).await.map_err(|_| {
            CoreError::Transport(format!(
                "the agent did not answer within {} s",
                limit.as_secs()
            ))
        })?
    }

    /// Reads service `name`'s logs: each stream's bytes (at most
    /// `max_bytes` each), and the agent's closing answer.
    pub async fn service_logs(
        &self,
        name: &str,
        from: Option<(u64, u64)>,
        tail_lines: u64,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, Vec<u8>, Response), CoreError> {
        let request = Request::ServiceLogs {
            name: name.to_owned(),
            from,
            tail_lines,
            max_bytes,
        };
        let mut s = self.open(request).await?;
        let read = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            loop {
                let frame = next_frame(&mut s, "service logs").await?;
                let buf = match frame.kind {
                    FrameKind::Stdout => &mut out,
                    FrameKind::Stderr => &mut err,
                    FrameKind::Message => {
                        return match answer(&frame)? {
                            r @ Response::ServiceLogs { .. } => Ok((out, err, r)),
                            other => Err(unexpected(other)),
                        };
                    }
                    other => return Err(unexpected(other)),
                };
                if (buf.len() + frame.payload.len()) as u64 > max_bytes {
                    return Err(CoreError::Transport(format!(
                        "the guest agent sent more than the {max_bytes} bytes of service logs \
                         asked for; the guest is misbehaving: reset or delete it"
                    )));
                }
                buf.extend_from_slice(&frame.payload);
            }
        };
        let limit = agent_deadline(FILE_OP_TIMEOUT);
        tokio::time::timeout(limit, read).await.map_err(|_| {
            CoreError::Transport(format!(
                "the agent did not answer within {} s",
                limit.as_secs()
            ))
        })?
    }

    /// Kills job `job_id`'s process group.
    pub async fn job_cancel(&self, job_id: &str) -> Result<pyro_protocol::JobState, CoreError> {
        match self
            .call(
                Request::JobCancel {
                    job_id: job_id.to_owned(),
                },
                FILE_OP_TIMEOUT,
            )
            .await?
        {
            Response::Job(state) => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// Streams the tar at `tar` into `dest` (all or nothing, in the agent).
    pub async fn put_archive(&self, dest: &str, tar: &Path) -> Result<(u64, u64), CoreError> {
        within("extracting an archive", ARCHIVE_TIMEOUT, async {
            let mut last = None;
            for _ in 0..DAMAGED_ATTEMPTS {
                match self.put_archive_inner(dest, tar).await {
                    Err(e) if is_damaged_upload(&e) => {
                        tracing::warn!("an upload to the guest arrived damaged; sending it again");
                        last = Some(e);
                    }
                    other => return other,
                }
            }
            Err(last.expect("at least one attempt"))
        })
        .await
    }

    pub(super) async fn put_archive_inner(
        &self,
        dest: &str,
        tar: &Path,
    ) -> Result<(u64, u64), CoreError> {
        let s = self
            .open(Request::ExtractArchive {
                dest: dest.to_owned(),
            })
            .await?;
        let (mut rd, mut wr) = s.into_split();
        let mut file = tokio::fs::File::open(tar)
            .await
            .map_err(|e| CoreError::io(format!("opening {}", tar.display()), e))?;
        let mut buf = vec![0u8; pyro_protocol::CHUNK_BYTES];
        let mut hash = <sha2::Sha256 as sha2::Digest>::new();
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf)
                .await
                .map_err(|e| CoreError::io(format!("reading {}", tar.display()), e))?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hash, &buf[..n]);
            if let Err(e) = pyro_protocol::write_frame(&mut wr, FrameKind::Data, &buf[..n]).await {
                // The agent may have refused the archive early: its answer
                // says why.
                return match read_message::<_, Response>(&mut rd, "its answer").await {
                    Ok(Response::Error(err)) => Err(err.into()),
                    _ => Err(CoreError::Transport(e.to_string())),
                };
            }
        }
        // The digest lets the agent refuse an upload damaged on the way.
        let digest = hex::encode(sha2::Digest::finalize(hash));
        pyro_protocol::write_frame(&mut wr, FrameKind::DataEnd, digest.as_bytes())
            .await
            .map_err(|e| CoreError::Transport(e.to_string()))?;
        match read_answer(&mut rd).await? {
            Response::Extracted { entries, bytes } => Ok((entries, bytes)),
            other => Err(unexpected(other)),
        }
    }

    /// Writes a file atomically; returns (size, mode, created).
    pub async fn write_file(
        &self,
        path: &str,
        mode: Option<u32>,
        data: &[u8],
    ) -> Result<(u64, u32, bool), CoreError> {
        within("writing a file", FILE_OP_TIMEOUT, async {
            let mut last = None;
            for _ in 0..DAMAGED_ATTEMPTS {
                match self.write_file_inner(path, mode, data).await {
                    Err(e) if is_damaged_upload(&e) => {
                        tracing::warn!("an upload to the guest arrived damaged; sending it again");
                        last = Some(e);
                    }
                    other => return other,
                }
            }
            Err(last.expect("at least one attempt"))
        })
        .await
    }

    pub(super) async fn write_file_inner(
        &self,
        path: &str,
        mode: Option<u32>,
        data: &[u8],
    ) -> Result<(u64, u32, bool), CoreError> {
        let mut s = self
            .open(Request::WriteFile {
                path: path.to_owned(),
                mode,
            })
            .await?;
        let t = |e: pyro_protocol::FrameError| CoreError::Transport(e.to_string());
        for chunk in data.chunks(pyro_protocol::CHUNK_BYTES) {
            pyro_protocol::write_frame(&mut s, FrameKind::Data, chunk)
                .await
                .map_err(t)?;
        }
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
        pyro_protocol::write_frame(&mut s, FrameKind::DataEnd, digest.as_bytes())
            .await
            .map_err(t)?;
        match read_answer(&mut s).await? {
            Response::FileWritten {
                size,
                mode,
                created,
            } => Ok((size, mode, created)),
            other => Err(unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests;

//! A guest that resumes waiting for its disk: the handoff to its init on
//! [`pyro_protocol::ROOT_PORT`] (see `pyro-agent`'s `template` module),
//! and the template guest's cold boot that takes it there.

use super::*;

/// How long one handoff attempt waits for init's answer (init mounts the
/// disk first: about a second on a PVM host, longer after a journal replay).
const HANDOFF_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a template guest's warm-up may take on top of its boot.
const TEMPLATE_WARM_UP: Duration = Duration::from_secs(pyro_protocol::TEMPLATE_WARM_UP_SECONDS);

/// How one handoff attempt ended.
enum Attempt {
    /// Init answered.
    Answer(Response),
    /// The handoff went out; no answer came (init may have taken it).
    Sent(CoreError),
    /// Nothing went out.
    Failed(CoreError),
}

impl Sandbox {
    /// Hands the restored guest's init its identity (on
    /// [`pyro_protocol::ROOT_PORT`]), then takes its agent's greeting. The
    /// greeting is what counts once the handoff went out: an answer lost to
    /// the resume's vsock reset does not matter once the agent greets. An
    /// answer that refuses (a handoff init could not apply) fails at once.
    pub(super) async fn hand_over(
        &mut self,
        spec: &SandboxSpec<'_>,
        booting: pyro_vmm::launch::Booting,
    ) -> Result<Hello, CoreError> {
        let (hello, answered) = {
            let greeting = booting.wait_ready(agent_deadline(spec.boot_timeout));
            tokio::pin!(greeting);
            let handoff = self.handoff(&spec.hostname, spec.idle_seconds, spec.boot_timeout);
            tokio::pin!(handoff);
            let mut answered = None;
            let mut done = false;
            loop {
                tokio::select! {
                    // An answer ready with the greeting is looked at first:
                    // a refusal must not be passed over.
                    biased;
                    result = &mut handoff, if !done => match result {
                        Ok(us) => {
                            answered = us;
                            done = true;
                        }
                        // Refused or never taken: the guest will not greet.
                        Err(e) => return Err(e),
                    },
                    hello = &mut greeting => break (hello?, answered),
                }
            }
        };
        self.refresh_us = answered;
        Ok(hello)
    }

    /// Sends the handoff until the guest's init answers it; returns the
    /// time init took, in microseconds, or `None` when a handoff went out
    /// and init then stopped listening (it took it; its answer was lost).
    async fn handoff(
        &self,
        hostname: &str,
        idle_seconds: u64,
        boot_timeout: Duration,
    ) -> Result<Option<u64>, CoreError> {
        // Firecracker resets the guest's vsock transport as it resumes. A
        // connection the guest accepts before it has processed that reset
        // is dropped on its side while the host side stays open, silent (or
        // closed later); on a PVM host that window is 0.1 to 0.3 s. So:
        // connections with a short deadline for init's first word (a live
        // init sends it at once), doubling, with a pause as long between
        // them, until one is answered, within the boot deadline. (Many
        // quick attempts were measured slower: every dropped connection
        // costs the just-resumed guest time.)
        let until = Instant::now() + agent_deadline(boot_timeout);
        let mut greet_within = Duration::from_millis(100);
        let mut sent = false;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CoreError::Transport(format!(
                    "the restored guest's init did not take its handoff within {} s",
                    boot_timeout.as_secs()
                )));
            }
            // Made per attempt: the clock it carries is the host's now.
            let req = refresh_request(hostname, idle_seconds);
            let attempt = self
                .handoff_once(
                    &req,
                    greet_within.min(left),
                    left.min(HANDOFF_ANSWER_TIMEOUT),
                )
                .await;
            let (e, went_out) = match attempt {
                Attempt::Answer(Response::Refreshed {
                    reseeded: false, ..
                }) => {
                    return Err(CoreError::Transport(
                        "the restored guest could not reseed its random generator; siblings \
                         would share random numbers"
                            .into(),
                    ));
                }
                Attempt::Answer(Response::Refreshed { refresh_us, .. }) => {
                    return Ok(Some(refresh_us));
                }
                Attempt::Answer(Response::Error(e)) => return Err(CoreError::Agent(e)),
                Attempt::Answer(other) => {
                    // The guest's words: 200 characters of them.
                    let what: String = format!("{other:?}").chars().take(200).collect();
                    return Err(CoreError::Transport(format!(
                        "unexpected answer to the handoff: {what}"
                    )));
                }
                // Init closes its listener once it has a handoff: after
                // one went out, a refused connection means it was taken.
                Attempt::Failed(_) if sent => return Ok(None),
                Attempt::Sent(e) => (e, true),
                Attempt::Failed(e) => (e, false),
            };
            sent |= went_out;
            tracing::debug!("handoff attempt failed ({e}); connecting again");
            tokio::time::sleep(greet_within.min(left)).await;
            greet_within = (greet_within * 2).min(Duration::from_secs(2));
        }
    }

    /// One handoff attempt: init's first word within `greet_within`, its
    /// answer within `answer_within`.
    async fn handoff_once(
        &self,
        req: &Request,
        greet_within: Duration,
        answer_within: Duration,
    ) -> Attempt {
        let mut s = match self.connect_root(greet_within).await {
            Ok(s) => s,
            Err(e) => return Attempt::Failed(e),
        };
        let first = tokio::time::timeout(
            greet_within,
            pyro_protocol::read_message::<_, Response>(&mut s, "init's first word"),
        )
        .await;
        match first {
            Ok(Ok(Response::Pong { .. })) => {}
            Ok(Ok(_)) => {
                return Attempt::Failed(CoreError::Transport(
                    "init's first word was not the one it sends".into(),
                ));
            }
            Ok(Err(e)) => return Attempt::Failed(CoreError::Transport(e.to_string())),
            Err(_) => {
                return Attempt::Failed(CoreError::Transport(
                    "init accepted but said nothing".into(),
                ));
            }
        }
        let envelope = pyro_protocol::Envelope {
            protocol_version: pyro_protocol::PROTOCOL_VERSION,
            request: req.clone(),
        };
        match tokio::time::timeout(
            answer_within,
            pyro_protocol::write_message(&mut s, &envelope),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Attempt::Failed(CoreError::Transport(e.to_string())),
            Err(_) => {
                return Attempt::Failed(CoreError::Transport(
                    "init did not take the handoff".into(),
                ));
            }
        }
        match tokio::time::timeout(
            answer_within,
            pyro_protocol::read_message(&mut s, "its answer to the handoff"),
        )
        .await
        {
            Ok(Ok(answer)) => Attempt::Answer(answer),
            Ok(Err(e)) => Attempt::Sent(CoreError::Transport(e.to_string())),
            Err(_) => Attempt::Sent(CoreError::Transport(format!(
                "no answer to the handoff within {} s",
                answer_within.as_secs()
            ))),
        }
    }

    /// Connects to a guest's init waiting on [`pyro_protocol::ROOT_PORT`].
    async fn connect_root(&self, within: Duration) -> Result<UnixStream, CoreError> {
        let fc = self
            .record
            .firecracker
            .as_ref()
            .ok_or_else(|| CoreError::Transport("no vsock path".into()))?;
        Ok(pyro_vmm::vsock::connect_within(
            &fc.vsock_uds,
            pyro_protocol::ROOT_PORT,
            within,
            self.record.jail_uid,
        )
        .await?)
    }

    /// Boots a template guest cold (`pyro.template=1`) and returns once its
    /// init, warmed up, waits on [`pyro_protocol::ROOT_PORT`]: the moment
    /// to snapshot it.
    pub(crate) async fn boot_template(&mut self, spec: &SandboxSpec<'_>) -> Result<(), CoreError> {
        let started = Instant::now();
        let booting = self.launch_firecracker(spec, None, true).await?;
        let until = started + spec.boot_timeout + TEMPLATE_WARM_UP;
        loop {
            if let Ok(mut s) = self.connect_root(Duration::from_secs(2)).await
                && let Ok(Ok(Response::Pong { .. })) = tokio::time::timeout(
                    Duration::from_secs(2),
                    pyro_protocol::read_message::<_, Response>(&mut s, "init's first word"),
                )
                .await
            {
                self.boot_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                // Its agent greets only after a handoff.
                booting.without_greeting();
                return Ok(());
            }
            let alive = self.record.process.as_ref().is_some_and(|p| p.is_alive());
            if !alive || Instant::now() >= until {
                let reason = if alive {
                    format!(
                        "the template guest did not wait for its handoff within {} s",
                        (spec.boot_timeout + TEMPLATE_WARM_UP).as_secs()
                    )
                } else {
                    "the template guest stopped before it waited for its handoff".into()
                };
                return Err(CoreError::Vmm(pyro_vmm::VmmError::Boot {
                    reason,
                    console_tail: self.console_tail(),
                }));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Resumes `restore`, a snapshot of a template guest waiting for its
    /// disk, and hands it over (the template build's second stage).
    pub(crate) async fn resume_waiting(
        &mut self,
        spec: &SandboxSpec<'_>,
        restore: pyro_vmm::launch::RestoreSpec,
    ) -> Result<(), CoreError> {
        let started = Instant::now();
        let booting = self.launch_firecracker(spec, Some(restore), false).await?;
        let hello = self.hand_over(spec, booting).await?;
        check_protocol(&hello, &spec.env.name)?;
        self.hello = Some(hello);
        self.boot_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

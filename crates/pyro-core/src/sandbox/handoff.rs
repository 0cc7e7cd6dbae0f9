//! A guest that resumes waiting for its disk: the handoff to its init on
//! [`pyro_protocol::ROOT_PORT`] (see `pyro-agent`'s `template` module),
//! and the template guest's cold boot that takes it there.

use super::*;

/// How long one handoff attempt waits for init's answer (init mounts the
/// disk first: about a second on a PVM host).
const HANDOFF_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a restored guest may take from the resume to its greeting.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a template guest's warm-up may take on top of its boot.
const TEMPLATE_WARM_UP: Duration = Duration::from_secs(300);

impl Sandbox {
    /// Hands the restored guest's init its identity (on
    /// [`pyro_protocol::ROOT_PORT`]), then takes its agent's greeting. The
    /// greeting is what counts: an answer lost to the resume's vsock reset
    /// does not matter once the agent greets.
    pub(super) async fn hand_over(
        &mut self,
        spec: &SandboxSpec<'_>,
        booting: pyro_vmm::launch::Booting,
    ) -> Result<Hello, CoreError> {
        let (hello, answered) = {
            let greeting = booting.wait_ready(agent_deadline(HANDOFF_TIMEOUT));
            tokio::pin!(greeting);
            let handoff = self.handoff(spec);
            tokio::pin!(handoff);
            let mut answered = None;
            loop {
                tokio::select! {
                    hello = &mut greeting => break (hello?, answered),
                    done = &mut handoff, if answered.is_none() => match done {
                        Ok(us) => answered = Some(us),
                        // Refused or never taken: the guest will not greet.
                        Err(e) => return Err(e),
                    },
                }
            }
        };
        self.refresh_us = answered;
        Ok(hello)
    }

    /// Sends the handoff until the guest's init answers it; returns the
    /// time init took, in microseconds.
    async fn handoff(&self, spec: &SandboxSpec<'_>) -> Result<u64, CoreError> {
        let req = refresh_request(&spec.hostname, spec.idle_seconds);
        // Firecracker resets the guest's vsock transport as it resumes. A
        // connection the guest accepts before it has processed that reset
        // is dropped on its side while the host side stays open, silent (or
        // closed later); on a PVM host that window is 0.1 to 0.3 s. So:
        // connections with a short deadline for init's first word (a live
        // init sends it at once), doubling, until one is answered, within
        // the overall deadline. (Many quick attempts were measured slower:
        // every dropped connection costs the just-resumed guest time.)
        let until = Instant::now() + agent_deadline(HANDOFF_TIMEOUT);
        let mut greet_within = Duration::from_millis(100);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CoreError::Transport(format!(
                    "the restored guest's init did not take its handoff within {} s",
                    HANDOFF_TIMEOUT.as_secs()
                )));
            }
            match self
                .handoff_once(
                    &req,
                    greet_within.min(left),
                    left.min(HANDOFF_ANSWER_TIMEOUT),
                )
                .await
            {
                Ok(Response::Refreshed {
                    reseeded: false, ..
                }) => {
                    return Err(CoreError::Transport(
                        "the restored guest could not reseed its random generator; siblings \
                         would share random numbers"
                            .into(),
                    ));
                }
                Ok(Response::Refreshed { refresh_us, .. }) => return Ok(refresh_us),
                Ok(Response::Error(e)) => return Err(CoreError::Agent(e)),
                Ok(other) => {
                    return Err(CoreError::Transport(format!(
                        "unexpected answer to the handoff: {other:?}"
                    )));
                }
                Err(e) => {
                    tracing::debug!("handoff attempt failed ({e}); connecting again");
                    greet_within = (greet_within * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// One handoff attempt: init's first word within `greet_within`, its
    /// answer within `answer_within`.
    async fn handoff_once(
        &self,
        req: &Request,
        greet_within: Duration,
        answer_within: Duration,
    ) -> Result<Response, CoreError> {
        let mut s = self.connect_root(greet_within).await?;
        let first: Response = tokio::time::timeout(
            greet_within,
            pyro_protocol::read_message(&mut s, "init's first word"),
        )
        .await
        .map_err(|_| CoreError::Transport("init accepted but said nothing".into()))?
        .map_err(|e| CoreError::Transport(e.to_string()))?;
        if !matches!(first, Response::Pong { .. }) {
            return Err(CoreError::Transport(
                "init's first word was not the one it sends".into(),
            ));
        }
        let envelope = pyro_protocol::Envelope {
            protocol_version: pyro_protocol::PROTOCOL_VERSION,
            request: req.clone(),
        };
        tokio::time::timeout(
            answer_within,
            pyro_protocol::write_message(&mut s, &envelope),
        )
        .await
        .map_err(|_| CoreError::Transport("init did not take the handoff".into()))?
        .map_err(|e| CoreError::Transport(e.to_string()))?;
        tokio::time::timeout(
            answer_within,
            pyro_protocol::read_message(&mut s, "its answer to the handoff"),
        )
        .await
        .map_err(|_| {
            CoreError::Transport(format!(
                "no answer to the handoff within {} s",
                answer_within.as_secs()
            ))
        })?
        .map_err(|e| CoreError::Transport(e.to_string()))
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
        let _booting = self.launch_firecracker(spec, None, true).await?;
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

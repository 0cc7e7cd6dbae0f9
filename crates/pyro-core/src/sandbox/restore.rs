//! Starting a guest from a template snapshot, and what a boot reports
//! about how it started.

use serde::{Deserialize, Serialize};

use super::*;
use crate::template::{self, Shape, Unusable};

/// How a guest started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum BootMode {
    /// Resumed from a template snapshot.
    Restored,
    /// Booted its kernel from scratch.
    Cold,
}

/// How a guest started, and why that way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BootInfo {
    /// Restored or cold.
    pub boot_mode: BootMode,
    /// Which template, or why it booted cold.
    pub boot_reason: String,
}

impl BootMode {
    /// `restored` or `cold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restored => "restored",
            Self::Cold => "cold",
        }
    }
}

impl BootInfo {
    fn cold(reason: impl Into<String>) -> Self {
        Self {
            boot_mode: BootMode::Cold,
            boot_reason: reason.into(),
        }
    }
}

/// How the caller would like the guest started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootPref {
    /// From the template of its environment and shape (built first if there
    /// is none), cold when that cannot be done. A guest's disk is kept: one
    /// with a disk resumes the handoff snapshot with it, one without gets a
    /// copy of the template's disk and resumes the fresh snapshot.
    Template,
    /// Cold, for this reason.
    Cold(String),
}

/// The reason a `--cold-boot` request gives.
pub const COLD_BOOT_ASKED: &str = "a cold boot was asked for";

/// Progress reports for a boot (a template build takes a while).
#[derive(Clone, Copy)]
pub struct ProgressRef<'a>(pub &'a dyn Progress);

impl std::fmt::Debug for ProgressRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressRef")
    }
}

impl Default for ProgressRef<'_> {
    fn default() -> Self {
        Self(&pyro_env::NoProgress)
    }
}

/// A refresh with fresh entropy and the host's time now.
pub(crate) fn refresh_request(hostname: &str, idle_seconds: u64) -> Request {
    Request::Refresh {
        entropy: crate::random_bytes(pyro_protocol::REFRESH_ENTROPY_BYTES),
        unix_time_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        hostname: hostname.to_owned(),
        idle_seconds,
    }
}

/// How long one greeted refresh attempt waits for its answer (the agent
/// takes about 0.2 s on a PVM host).
const REFRESH_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a restored agent may take to answer its refresh.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a networked guest boots cold.
pub const NETWORKED_BOOTS_COLD: &str =
    "a guest with a network interface boots cold (templates are built without one)";

impl Sandbox {
    /// Boots per `spec.boot`: restored from a template when asked and
    /// possible, otherwise cold, and records how and why.
    pub(super) async fn boot_guest(
        &mut self,
        spec: &SandboxSpec<'_>,
    ) -> Result<(Hello, BootInfo), CoreError> {
        let networked = spec
            .network
            .as_ref()
            .is_some_and(|n| n.policy.mode.has_network());
        let reason = match &spec.boot {
            BootPref::Cold(reason) => reason.clone(),
            BootPref::Template if networked => NETWORKED_BOOTS_COLD.into(),
            BootPref::Template => match self.restore(spec).await {
                Ok(booted) => return Ok(booted),
                Err(reason) => {
                    spec.progress.0.step(&format!("booting cold: {reason}"));
                    self.clear_failed_restore(spec).await?;
                    reason
                }
            },
        };
        self.ensure_upper(spec).await?;
        let hello = self.boot_firecracker(spec).await?;
        Ok((hello, BootInfo::cold(reason)))
    }

    /// Creates the writable disk if there is none.
    pub(super) async fn ensure_upper(&self, spec: &SandboxSpec<'_>) -> Result<(), CoreError> {
        let upper = self.upper_path(spec);
        if upper.exists() {
            return Ok(());
        }
        let mib = spec.disk_mib;
        crate::blocking(move || {
            pyro_vmm::disk::create_upper_disk(&upper, mib).map_err(CoreError::from)
        })
        .await
    }

    fn upper_path(&self, spec: &SandboxSpec<'_>) -> PathBuf {
        spec.upper
            .clone()
            .unwrap_or_else(|| self.paths.vm_dir(&self.record.id).join("upper.ext4"))
    }

    /// Resumes the template; on failure, why (for the cold boot's reason).
    async fn restore(&mut self, spec: &SandboxSpec<'_>) -> Result<(Hello, BootInfo), String> {
        if self.record.jail_uid.is_none() {
            return Err("templates need the jailer, which needs root".into());
        }
        let shape = Shape {
            vcpu_count: spec.vcpu_count,
            mem_mib: spec.mem_mib,
            disk_mib: spec.disk_mib,
        };
        let first_line = |e: CoreError| e.first_line();
        let t0 = Instant::now();
        let phase = |what: &str| tracing::debug!("restore: {what} at {:?}", t0.elapsed());
        let (p, e) = (self.paths.clone(), spec.env.clone());
        let wanted = crate::blocking(move || template::sources(&p, &e))
            .await
            .map_err(first_line)?;
        phase("sources");
        // A guest with a disk of its own (a stopped workspace, a snapshot's
        // copy, a fork) resumes the template's handoff snapshot: its init
        // mounts the disk only then. A new guest gets its own copy of the
        // template's disk (shared extents where the filesystem can) and
        // resumes the fresh snapshot, taken with that disk mounted. Checked
        // first: a disk no template fits costs no template build.
        let upper = self.upper_path(spec);
        let want = shape.disk_mib << 20;
        let u = upper.clone();
        let own = crate::blocking(move || match std::fs::symlink_metadata(&u) {
            Ok(m) if m.is_file() && m.len() == want => Ok(Ok(true)),
            Ok(m) => Ok(Err(format!(
                "its disk is {} bytes, not the {want} of the template's shape",
                m.len()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ok(false)),
            Err(e) => Err(CoreError::io(format!("reading {}", u.display()), e)),
        })
        .await
        .map_err(first_line)??;
        let name = template::name(spec.env, shape);
        let mut fresh = false;
        // Held from the lookup until the jail links the template's files:
        // no rebuild or removal can swap them in between, so the memory
        // always comes with the disk it was taken with.
        let (t, using) = loop {
            let using = template::lock(
                &self.paths,
                &template::use_lock(&name),
                true,
                Duration::from_secs(60),
            )
            .await
            .map_err(first_line)?;
            let (p, e, w) = (self.paths.clone(), spec.env.clone(), wanted.clone());
            let found = crate::blocking(move || Ok(template::lookup(&p, &e, shape, &w)))
                .await
                .map_err(first_line)?;
            match found {
                Ok(t) => break (t, using),
                Err(Unusable::Damaged(why)) => {
                    drop(using);
                    let (p, n) = (self.paths.clone(), name.clone());
                    let _ = crate::blocking(move || template::remove(&p, &n)).await;
                    return Err(format!("{why}; it was removed and is rebuilt on next use"));
                }
                Err(other) if fresh => {
                    return Err(format!(
                        "the template just built is not usable: {}",
                        other.reason()
                    ));
                }
                Err(Unusable::Missing | Unusable::Stale(_)) => {
                    drop(using);
                    // Boxed: a build boots a sandbox of its own.
                    Box::pin(template::build(
                        &self.paths,
                        spec.env,
                        shape,
                        spec.boot_timeout,
                        false,
                        spec.progress.0,
                    ))
                    .await
                    .map_err(|e| format!("the template could not be built: {}", first_line(e)))?;
                    fresh = true;
                }
            }
        };
        phase("template checked");
        if !own {
            let (src, dst) = (t.upper(), upper.clone());
            crate::blocking(move || {
                let tmp = dst.with_extension("restoring");
                let copied = pyro_vmm::disk::sparse_copy(&src, &tmp)
                    .map_err(CoreError::from)
                    .and_then(|_| {
                        std::fs::rename(&tmp, &dst)
                            .map_err(|e| CoreError::io("installing the disk", e))
                    });
                if copied.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                copied
            })
            .await
            .map_err(|e| format!("copying the template's disk: {}", first_line(e)))?;
        }
        self.copied_upper = !own;
        phase("disk ready");
        let restore = if own {
            pyro_vmm::launch::RestoreSpec {
                vmstate: t.handoff_vmstate(),
                mem: t.handoff_mem(),
            }
        } else {
            pyro_vmm::launch::RestoreSpec {
                vmstate: t.vmstate(),
                mem: t.mem(),
            }
        };
        let launched = self.launch_firecracker(spec, Some(restore), false).await;
        drop(using);
        let booting = match launched {
            Ok(b) => b,
            Err(e) => {
                // Firecracker refusing the snapshot (a host that changed
                // under it) would refuse it every time: the template goes,
                // and the next use builds a new one.
                if matches!(&e, CoreError::Vmm(pyro_vmm::VmmError::Boot { reason, .. }) if reason.contains("/snapshot/load"))
                {
                    let (p, n) = (self.paths.clone(), t.name.clone());
                    let _ = crate::blocking(move || template::remove(&p, &n)).await;
                }
                return Err(format!(
                    "restoring the template {} failed: {}",
                    t.name,
                    first_line(e)
                ));
            }
        };
        phase("loaded and resumed");
        let hello = if own {
            self.hand_over(spec, booting).await
        } else {
            // Its agent greeted before the snapshot; it answers a refresh.
            booting.without_greeting();
            self.refresh(&spec.hostname, spec.idle_seconds).await
        }
        .map_err(|e| format!("the restored guest did not answer: {}", first_line(e)))?;
        phase("identity set");
        let built = if fresh { ", built just now" } else { "" };
        let how = if own { "with its own disk, " } else { "" };
        Ok((
            hello,
            BootInfo {
                boot_mode: BootMode::Restored,
                boot_reason: format!("restored {how}from the template {}{built}", t.name),
            },
        ))
    }

    /// Makes the restored guest its own machine before anything else
    /// reaches it.
    async fn refresh(&mut self, hostname: &str, idle_seconds: u64) -> Result<Hello, CoreError> {
        let req = refresh_request(hostname, idle_seconds);
        // Firecracker resets the guest's vsock transport as it resumes. A
        // connection the guest accepts before it has processed that reset
        // is dropped on its side while the host side stays open, silent (or
        // closed later); on a PVM host that window is 0.1 to 0.3 s. So:
        // connections with a short deadline for the greeting (a live agent
        // greets at once), doubling, until one is answered, within the
        // overall deadline.
        // (Many quick attempts were measured slower: every dropped
        // connection costs the just-resumed guest time.)
        // A refresh is idempotent, so one that is lost may be sent again.
        let until = Instant::now() + agent_deadline(REFRESH_TIMEOUT);
        let mut greet_within = Duration::from_millis(100);
        let (hello, answer) = loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CoreError::Transport(format!(
                    "the agent did not greet within {} s of the resume",
                    REFRESH_TIMEOUT.as_secs()
                )));
            }
            // The reset can also drop a connection that was greeted: its
            // answer never comes, or the connection closes. Only the agent
            // refusing the refresh is final.
            let answer_within = left.min(REFRESH_ANSWER_TIMEOUT);
            match self
                .call_greeted_within(req.clone(), greet_within.min(left), answer_within)
                .await
            {
                Ok(Some(done)) => break done,
                Err(e @ CoreError::Agent(_)) => return Err(e),
                Err(e) if Instant::now() >= until => return Err(e),
                other => {
                    tracing::debug!(
                        "refresh attempt failed ({:?}); connecting again",
                        other.err()
                    );
                    greet_within = (greet_within * 2).min(Duration::from_secs(2));
                }
            }
        };
        match answer {
            Response::Refreshed {
                reseeded,
                refresh_us,
                ..
            } => {
                if !reseeded {
                    return Err(CoreError::Transport(
                        "the restored guest could not reseed its random generator; siblings \
                         would share random numbers"
                            .into(),
                    ));
                }
                tracing::debug!("agent refresh took {refresh_us} us");
                self.refresh_us = Some(refresh_us);
                Ok(hello)
            }
            other => Err(super::unexpected(other)),
        }
    }

    /// After a failed restore: the process, its jail and cgroups go, and
    /// a disk copied from the template goes (a cold boot starts from a new
    /// disk); the guest's own disk stays.
    async fn clear_failed_restore(&mut self, spec: &SandboxSpec<'_>) -> Result<(), CoreError> {
        if self.record.process.is_some() {
            // The evidence, for `PYRO_LOG=warn` (the default) on stderr.
            tracing::warn!(
                "the restored guest {} failed; its console and Firecracker log:\n{}",
                self.record.id,
                self.console_tail()
            );
        }
        let (paths, record, upper, copied) = (
            self.paths.clone(),
            self.record.clone(),
            self.upper_path(spec),
            std::mem::take(&mut self.copied_upper),
        );
        crate::blocking(move || {
            // What went wrong is already in the reason; leftovers that will
            // not go are the next teardown's to report.
            let _ = stop_vm(&paths, &record);
            if !copied {
                return Ok(());
            }
            match std::fs::remove_file(&upper) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(CoreError::io(format!("removing {}", upper.display()), e)),
            }
        })
        .await?;
        self.record.process = None;
        self.record.save(&self.paths)
    }
}

#[cfg(test)]
mod tests;

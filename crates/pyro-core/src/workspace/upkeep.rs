//! Keeping records true: bringing a record up to date with its VM, the
//! sweep, listing, status, metadata updates and deletion.

use super::*;

impl Workspaces {
    pub(super) fn refresh(&self, rec: &mut Record) -> Fate {
        let now = now_unix();
        let op_dead = rec
            .operation
            .as_ref()
            .is_some_and(|o| !o.process.is_alive());
        match rec.state {
            State::Started => {
                let sandbox = rec
                    .vm_id
                    .as_deref()
                    .and_then(|v| Sandbox::attach(&self.paths, v).ok());
                if sandbox.as_ref().is_some_and(Sandbox::is_running) {
                    // A pyro process killed while copying the disk left the
                    // guest paused: resume it.
                    if op_dead && rec.operation.as_ref().is_some_and(|o| o.kind == "copy") {
                        rec.operation = None;
                        let failed = sandbox.as_ref().and_then(|s| s.resume_blocking().err());
                        if let Some(e) = failed {
                            // Never left paused: stopped, its disk kept.
                            rec.last_error = Some(e.message(crate::hint::FrontEnd::Neutral));
                            if let Some(s) = sandbox {
                                let _ = s.destroy();
                            }
                            rec.state = State::Stopped;
                            rec.vm_id = None;
                            rec.stopped_at = Some(now);
                            rec.state_reason = Some(
                                "its guest could not be resumed after a disk copy was \
                                 interrupted, so it was stopped; the disk is kept"
                                    .into(),
                            );
                        }
                        return Fate::Changed;
                    }
                    return Fate::Keep;
                }
                let console = sandbox
                    .as_ref()
                    .map(Sandbox::console_tail)
                    .unwrap_or_default();
                if let Some(s) = sandbox {
                    let _ = s.destroy();
                }
                let expired = now + 5.0 >= rec.last_activity_at + rec.ttl_seconds as f64;
                rec.state = State::Stopped;
                rec.operation = None;
                rec.vm_id = None;
                rec.stopped_at = Some(now);
                if expired {
                    let grace = expiry_grace();
                    rec.state_reason = Some(format!(
                        "idle for its TTL of {} s, so its VM stopped itself; the disk is kept, and the workspace is \
                         deleted {} s after stopping unless started again",
                        rec.ttl_seconds, grace
                    ));
                    // From when the stop was seen at the earliest: a guest
                    // held up past the host's deadline (a keep-alive
                    // service) still gets its whole grace period.
                    let stopped = (rec.last_activity_at + rec.ttl_seconds as f64).max(now);
                    rec.delete_after = Some(stopped + grace as f64);
                } else {
                    rec.state_reason = Some("its VM stopped unexpectedly (the guest console is in last_error); the disk is kept, \
                         and starting the workspace boots it again".into());
                    rec.last_error = Some(console);
                }
                Fate::Changed
            }
            State::Creating if op_dead => {
                // A fork whose group was committed is kept: it was made.
                let committed = rec
                    .operation
                    .as_ref()
                    .and_then(|o| o.group.as_deref())
                    .is_some_and(|g| {
                        super::fork::commit_marker::holds(&self.paths, g, &rec.workspace_id)
                    });
                match rec.vm_id.clone() {
                    Some(vm) if committed => {
                        rec.mark_started(&vm, now);
                        Fate::Changed
                    }
                    _ => Fate::Delete,
                }
            }
            State::Resetting if op_dead => {
                if let Some(s) = rec
                    .vm_id
                    .as_deref()
                    .and_then(|v| Sandbox::attach(&self.paths, v).ok())
                {
                    let _ = s.destroy();
                }
                if rec.backend == BackendKind::HostCompat {
                    recover_swap(&self.upper(rec));
                }
                rec.state = State::Stopped;
                rec.vm_id = None;
                rec.operation = None;
                rec.stopped_at = Some(now);
                rec.state_reason = Some(if rec.pristine {
                    "a reset was interrupted (the pyro process doing it was killed); the next start \
                     makes its baseline again; reset again or start it"
                        .into()
                } else {
                    "a reset was interrupted (the pyro process doing it was killed); its disk is either the snapshot \
                     it was reset to or what it was before; reset again or start it"
                        .into()
                });
                Fate::Changed
            }
            State::Stopped if rec.delete_after.is_some_and(|t| now >= t) => Fate::Delete,
            _ => Fate::Keep,
        }
    }

    /// Removes what a killed reset or record save leaves in a workspace's
    /// directory (call with its lock held): a half-copied disk or layer,
    /// the old command log on its way out, unrenamed temp files. How many
    /// entries went.
    pub(super) fn clear_leftovers(&self, id: &str) -> usize {
        let dir = self.dir(id);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return 0;
        };
        // A layer swap cut between its renames is finished first; only
        // then are the spare copies debris.
        recover_swap(&dir.join("upper"));
        let has_layer = dir.join("upper").exists();
        let mut n = clear_spools(&dir.join("baseline")) + self.clear_snapshot_debris(id);
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let debris = name == "upper.ext4.new"
                || name == "upper.restoring"
                || (has_layer && (name == "upper.new" || name == "upper.old"))
                || name.starts_with(".commands-")
                || name.starts_with(".tmp");
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if debris {
                let gone = if meta.is_dir() {
                    std::fs::remove_dir_all(e.path())
                } else {
                    std::fs::remove_file(e.path())
                };
                n += usize::from(gone.is_ok());
            }
        }
        n
    }

    /// [`Self::remove`], off the async workers.
    pub(super) async fn discard(&self, rec: Record) {
        let this = self.clone();
        let _ = crate::blocking(move || {
            this.remove(&rec);
            Ok(())
        })
        .await;
    }

    /// Removes a workspace's sandbox and directory (rename first, so a
    /// half-deleted workspace never looks like a workspace).
    pub(super) fn remove(&self, rec: &Record) {
        if let Some(s) = rec
            .vm_id
            .as_deref()
            .and_then(|v| Sandbox::attach(&self.paths, v).ok())
        {
            let _ = s.destroy();
        }
        let dir = self.dir(&rec.workspace_id);
        let trash = record::root(&self.paths).join(format!(
            ".trash-{}-{}",
            rec.workspace_id,
            std::process::id()
        ));
        if std::fs::rename(&dir, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// Brings every workspace up to date and deletes the ones whose time is
    /// up (expired past the grace period, or half-created by a killed
    /// process). Busy workspaces are skipped. Returns what it brought up
    /// to date and what it removed, a sentence each.
    pub fn sweep(&self) -> (Vec<String>, Vec<String>) {
        let mut updated = Vec::new();
        let mut done = Vec::new();
        if let Ok(rd) = std::fs::read_dir(record::root(&self.paths)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".trash-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        for id in record::list_ids(&self.paths) {
            let Some(_lock) = record::lock_for_sweep(&self.paths, &id) else {
                continue;
            };
            let Some(mut rec) = record::load(&self.paths, &id) else {
                // A directory without a record file. A create makes the
                // directory and its record under the global lock, so holding
                // that lock and still finding no record means a create died
                // between the two: nothing uses the directory. (A record
                // that exists but cannot be read is left alone: it may be
                // another pyro version's.)
                if let Ok(_global) = self.paths.lock("workspaces")
                    && !record::exists(&self.paths, &id)
                {
                    let _ = std::fs::remove_dir_all(self.dir(&id));
                }
                continue;
            };
            // Held lock: no reset or save of this workspace is under way,
            // so half-made files are debris of a killed process.
            let cleared = self.clear_leftovers(&id);
            if cleared > 0 {
                done.push(format!(
                    "Removed {cleared} temp file(s) left in workspace {id} by a pyro process that \
                     was killed"
                ));
            }
            match self.refresh(&mut rec) {
                Fate::Keep => {}
                Fate::Changed => {
                    let _ = record::save(&self.paths, &rec);
                    updated.push(format!(
                        "Workspace {id} is now {}: {}",
                        rec.state.as_str(),
                        rec.state_reason.as_deref().unwrap_or("its VM is gone")
                    ));
                }
                Fate::Delete => {
                    self.remove(&rec);
                    done.push(if rec.state == State::Creating {
                        format!(
                            "Removed workspace {id}: the pyro process creating it was killed \
                             before it finished"
                        )
                    } else {
                        format!(
                            "Deleted workspace {id}: it expired and stayed stopped past its grace \
                             period (PYRO_EXPIRY_GRACE_SECONDS)"
                        )
                    });
                }
            }
        }
        super::fork::commit_marker::sweep(&self.paths);
        (updated, done)
    }

    /// Every workspace, most recently active first. (Bringing records up to
    /// date may tear down dead VMs: that runs off the async workers.)
    pub async fn list(&self) -> Result<ListView, CoreError> {
        let this = self.clone();
        let mut workspaces = crate::blocking(move || Ok(this.list_blocking())).await?;
        // Each started VM is asked at once, all within one deadline: a guest
        // that does not answer leaves its counts unknown, not the list slow.
        let mut asks = tokio::task::JoinSet::new();
        for (i, v) in workspaces.iter().enumerate() {
            if v.state == "started" {
                let (this, mut v) = (self.clone(), v.clone());
                asks.spawn(async move {
                    this.fill_counts(&mut v).await;
                    (i, v)
                });
            }
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok((i, v)))) = tokio::time::timeout_at(until, asks.join_next()).await {
            workspaces[i] = v;
        }
        Ok(ListView {
            count: workspaces.len(),
            workspaces,
        })
    }

    /// The ids of the workspaces (stopped ones too) built on environment
    /// `name`: it must not be replaced or removed under them.
    pub fn using_environment(&self, name: &str) -> Result<Vec<String>, CoreError> {
        Ok(record::list_ids(&self.paths)
            .into_iter()
            .filter(|id| record::load(&self.paths, id).is_some_and(|r| r.environment == name))
            .collect())
    }

    pub(super) fn list_blocking(&self) -> Vec<View> {
        let mut out: Vec<Record> = Vec::new();
        for id in record::list_ids(&self.paths) {
            match record::try_lock(&self.paths, &id) {
                Some(_lock) => {
                    if let Ok(rec) = self.load_fresh_blocking(&id) {
                        out.push(rec);
                    }
                }
                None => out.extend(record::load(&self.paths, &id)),
            }
        }
        out.sort_by(|a, b| {
            b.last_activity_at
                .total_cmp(&a.last_activity_at)
                .then(b.created_at.total_cmp(&a.created_at))
                .then(a.workspace_id.cmp(&b.workspace_id))
        });
        out.iter().map(view).collect()
    }

    /// A workspace's current state (counts as activity).
    /// Answers at once: while another call holds the workspace (a reset,
    /// a start), the record as that call last saved it (its operation
    /// included).
    pub async fn status(&self, id: &str) -> Result<View, CoreError> {
        let Some(_lock) = record::try_lock(&self.paths, id) else {
            return record::load(&self.paths, id)
                .map(|r| view(&r))
                .ok_or_else(|| not_found(id));
        };
        let mut rec = self.load_fresh(id).await?;
        self.touch(&mut rec).await?;
        drop(_lock);
        let mut v = view(&rec);
        // Both ask the guest, each within 3 s: at once.
        let (_, usage) = tokio::join!(self.fill_counts(&mut v), self.usage(&rec));
        match usage {
            Some(Some(u)) => v.protections = v.protections.clone().with_guest(&u),
            Some(None) => v.protections = v.protections.clone().guest_silent(),
            None => {}
        }
        Ok(v)
    }

    /// What a started guest says of its limits and its disk (`status`):
    /// `None` when there is no guest to ask, `Some(None)` when it did not
    /// answer in 3 s.
    async fn usage(&self, rec: &Record) -> Option<Option<pyro_protocol::GuestUsage>> {
        if rec.state != State::Started || rec.backend != BackendKind::Firecracker {
            return None;
        }
        let sandbox = Sandbox::attach(&self.paths, rec.vm_id.as_ref()?).ok()?;
        let asked = tokio::time::timeout(
            Duration::from_secs(3),
            sandbox.call(Request::Usage, Duration::from_secs(3)),
        );
        Some(match asked.await {
            Ok(Ok(Response::Usage(u))) => Some(u),
            _ => None,
        })
    }

    /// Changes name and labels.
    pub async fn update(
        &self,
        id: &str,
        name: Option<String>,
        clear_name: bool,
        set_labels: BTreeMap<String, String>,
        clear_labels: Vec<String>,
    ) -> Result<View, CoreError> {
        if name.is_some() && clear_name {
            return Err(CoreError::invalid(
                "⟨arg:name⟩ and ⟨arg:clear_name⟩ cannot be used together",
            ));
        }
        if name.is_none() && !clear_name && set_labels.is_empty() && clear_labels.is_empty() {
            return Err(CoreError::invalid(
                "nothing to update: pass ⟨arg:name⟩, ⟨arg:clear_name⟩, ⟨arg:label⟩ or ⟨arg:clear_label⟩",
            ));
        }
        let name = name.as_deref().map(valid_name).transpose()?;
        let mut labels = Vec::new();
        for (k, v) in &set_labels {
            labels.push(valid_label(k, v)?);
        }
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        let before = (rec.name.clone(), rec.labels.clone());
        if let Some(n) = name {
            rec.name = Some(n);
        }
        if clear_name {
            rec.name = None;
        }
        for k in &clear_labels {
            if rec.labels.remove(k.trim()).is_none() {
                return Err(CoreError::invalid(format!(
                    "workspace {id} has no label {k:?} to clear"
                )));
            }
        }
        rec.labels.extend(labels);
        if (rec.name.clone(), rec.labels.clone()) == before {
            return Err(CoreError::invalid(
                "the update changes nothing: the name and labels already are so",
            ));
        }
        record::save(&self.paths, &rec)?;
        self.touch(&mut rec).await?;
        Ok(view(&rec))
    }

    /// Deletes the workspace: its VM, disks, baseline and history.
    pub async fn delete(&self, id: &str) -> Result<DeleteView, CoreError> {
        if !record::valid_id(id) || !self.dir(id).exists() {
            return Err(not_found(id));
        }
        let _lock = record::lock(&self.paths, id).await?;
        let rec = record::load(&self.paths, id).ok_or_else(|| not_found(id))?;
        self.discard(rec).await;
        Ok(DeleteView {
            workspace_id: id.to_owned(),
            deleted: true,
        })
    }

    /// The environment a workspace runs, ready to boot (pulled when
    /// missing).
    pub(super) async fn environment(
        &self,
        id: &str,
        progress: &dyn Progress,
    ) -> Result<Installed, CoreError> {
        let name = record::load(&self.paths, id)
            .map(|r| r.environment)
            .ok_or_else(|| not_found(id))?;
        crate::environments::ensure_ready(&self.paths, &name, progress).await
    }
}

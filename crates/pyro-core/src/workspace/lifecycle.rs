//! Creating, booting, baselining, resetting, stopping and starting.

use super::*;

impl Workspaces {
    /// Creates, boots and seeds a workspace and takes its baseline. On any
    /// failure nothing is left: no record, VM, disk or directory.
    pub async fn create(
        &self,
        env: &Installed,
        req: CreateRequest,
        progress: &dyn Progress,
    ) -> Result<View, CoreError> {
        let name = req.name.as_deref().map(valid_name).transpose()?;
        let mut labels = BTreeMap::new();
        for (k, v) in &req.labels {
            let (k, v) = valid_label(k, v)?;
            labels.insert(k, v);
        }
        crate::run::check_machine(req.backend, req.vcpu_count, req.mem_mib)?;
        req.network
            .check()
            .map_err(|e| CoreError::invalid(e.to_string()))?;
        crate::network::check_backend(&req.network, req.backend, req.allow_host_compat)?;
        limits::WORKSPACE_TTL_SECONDS.check(req.ttl_seconds)?;
        limits::DISK_MIB.check(req.disk_mib)?;
        if let Some(b) = req.boot_timeout {
            crate::check_range(
                "⟨arg:boot_timeout_seconds⟩",
                b.as_secs(),
                limits::BOOT_TIMEOUT_SECONDS,
            )?;
        }
        let secrets = secrets::resolve(&req.secrets)?;
        let quota = max_workspaces()?;
        // Pack and check the seed before anything exists.
        let seed = match &req.seed {
            Some(s) => {
                progress.step(&format!("packing {}", s.path.display()));
                let (paths, path, mode) = (self.paths.clone(), s.path.clone(), s.mode);
                let prep = crate::blocking(move || seed::prepare(&paths, &path, mode)).await?;
                Some((prep, s.clone()))
            }
            None => None,
        };
        let id = random_hex(8);
        let now = now_unix();
        let mut rec = Record {
            layout_version: record::WORKSPACE_LAYOUT_VERSION,
            workspace_id: id.clone(),
            name,
            labels,
            environment: env.name.to_owned(),
            environment_version: env.version.to_owned(),
            backend: req.backend,
            fallback_reason: None,
            vcpu_count: req.vcpu_count,
            mem_mib: req.mem_mib,
            disk_mib: req.disk_mib,
            ttl_seconds: req.ttl_seconds,
            created_at: now,
            last_activity_at: now,
            state: State::Creating,
            state_reason: None,
            stopped_at: None,
            delete_after: None,
            last_error: None,
            vm_id: None,
            operation: Some(Operation {
                kind: "create".into(),
                process: pyro_vmm::process::ProcessId::current(),
                group: None,
            }),
            command_count: 0,
            next_sequence: 1,
            last_command: None,
            seed: SeedInfo::empty(),
            reset_count: 0,
            last_reset_at: None,
            baseline_at: None,
            forked_from: None,
            boot: None,
            pristine: false,
            network: req.network.clone(),
            secrets: secrets.keys().cloned().collect(),
        };
        {
            let _global = self.paths.lock_async("workspaces").await?;
            let count = record::list_ids(&self.paths).len();
            if count >= quota {
                return Err(CoreError::Quota(format!(
                    "workspace quota reached: {count} of {quota} (PYRO_MAX_WORKSPACES) exist; delete one with \
                     ⟨op:workspace delete ID⟩, or raise PYRO_MAX_WORKSPACES"
                )));
            }
            std::fs::create_dir_all(self.dir(&id))
                .map_err(|e| CoreError::io(format!("creating {}", self.dir(&id).display()), e))?;
            let store = secrets::Store {
                usable: secrets.clone(),
                redact_only: secrets::Secrets::new(),
            };
            if let Err(e) = secrets::save(&self.dir(&id), &store) {
                let _ = std::fs::remove_dir_all(self.dir(&id));
                return Err(e);
            }
            record::save(&self.paths, &rec)?;
        }
        let _lock = match record::lock(&self.paths, &id).await {
            Ok(l) => l,
            Err(e) => {
                self.discard(rec).await;
                return Err(e);
            }
        };
        match self.create_inner(env, &req, &mut rec, seed, progress).await {
            Ok(()) => Ok(view(&rec)),
            Err(e) => {
                self.discard(rec).await;
                Err(e)
            }
        }
    }

    pub(super) async fn create_inner(
        &self,
        env: &Installed,
        req: &CreateRequest,
        rec: &mut Record,
        seed: Option<(seed::Prepared, SeedSource)>,
        progress: &dyn Progress,
    ) -> Result<(), CoreError> {
        progress.step(&format!(
            "booting a {} {}",
            env.name,
            if rec.backend == BackendKind::Firecracker {
                "guest"
            } else {
                "host-compat sandbox"
            }
        ));
        let mut boot = Boot::template(req.cold_boot, progress);
        boot.timeout = req.boot_timeout;
        let mut sandbox = match self.boot(env, rec, &boot).await {
            Ok(s) => s,
            Err(e) => {
                let reason = crate::run::fallback_reason(e, rec.backend, req.allow_host_compat)?;
                progress.step(&format!(
                    "the guest could not boot ({reason}); using host-compat"
                ));
                let _ = std::fs::remove_file(self.upper(rec));
                rec.backend = BackendKind::HostCompat;
                rec.fallback_reason = Some(reason);
                self.boot(env, rec, &boot).await?
            }
        };
        rec.vm_id = Some(sandbox.id().to_owned());
        record::save(&self.paths, rec)?;
        let dir = self.dir(&rec.workspace_id);
        let baseline = dir.join("baseline");
        std::fs::create_dir_all(baseline.join("files"))
            .map_err(|e| CoreError::io("creating the baseline directory", e))?;
        if let Some((prep, src)) = &seed {
            progress.step(&format!(
                "seeding /workspace from {}",
                prep.source.display()
            ));
            let (entries, bytes) = sandbox.put_archive(WORKSPACE_ROOT, prep.tar.path()).await?;
            let (tar, files) = (prep.tar.path().to_owned(), baseline.join("files"));
            let kept = baseline.join(SEED_TAR);
            crate::blocking(move || {
                // Kept to replay onto a restored template (reset, start).
                std::fs::copy(&tar, &kept).map_err(|e| CoreError::io("keeping the seed", e))?;
                let f = std::fs::File::open(&tar)
                    .map_err(|e| CoreError::io("reopening the seed", e))?;
                pyro_archive::extract(std::io::BufReader::new(f), &files).map_err(|e| {
                    CoreError::io(
                        "keeping the baseline files",
                        std::io::Error::other(e.message),
                    )
                })
            })
            .await?;
            rec.seed = SeedInfo {
                mode: prep.mode.to_owned(),
                origin: src.origin.to_owned(),
                source_path: Some(prep.source.clone()),
                seed_mode: src.mode.as_str().to_owned(),
                destination: WORKSPACE_ROOT.to_owned(),
                entry_count: entries,
                bytes_written: bytes,
            };
        }
        progress.step("taking the baseline");
        self.take_baseline(&sandbox, rec).await?;
        if seed.is_some() {
            let baseline = self.dir(&rec.workspace_id).join("baseline");
            let differs = crate::blocking(move || {
                materialize::check_baseline_files(
                    &baseline.join("manifest.jsonl"),
                    &baseline.join("files"),
                )
            })
            .await?;
            if let Some(why) = differs {
                return Err(CoreError::Transport(format!(
                    "the guest stored the seed differently from what it was sent ({why}); \
                     nothing was kept; create the workspace again"
                )));
            }
        }
        rec.baseline_at = Some(now_unix());
        rec.pristine = true;
        rec.state = State::Started;
        rec.operation = None;
        rec.last_activity_at = now_unix();
        record::save(&self.paths, rec)?;
        sandbox.keep();
        Ok(())
    }

    /// Boots the workspace's sandbox on its disk: restored from the
    /// template (the handoff snapshot with the workspace's disk, or the
    /// fresh one with a copy of the template's disk when it has none) or
    /// cold (a disk made first if there is none). How it booted goes into
    /// the record.
    pub(super) async fn boot(
        &self,
        env: &Installed,
        rec: &mut Record,
        boot: &Boot<'_>,
    ) -> Result<Sandbox, CoreError> {
        let upper = self.upper(rec);
        if rec.backend == BackendKind::HostCompat {
            recover_swap(&upper);
            std::fs::create_dir_all(&upper)
                .map_err(|e| CoreError::io(format!("creating {}", upper.display()), e))?;
        }
        let spec = self.spec(env, rec, boot);
        let mut sandbox = Sandbox::create(&self.paths, &spec).await?;
        sandbox.boot(&spec).await?;
        rec.boot = sandbox.boot_info().cloned();
        Ok(sandbox)
    }

    /// Whether the baseline can be made again as a template restore plus
    /// the seed: a Firecracker workspace that is not a fork (a fork's
    /// baseline is a copy of its parent's disk) and kept its seed (an older
    /// pyro did not).
    pub(super) fn can_replay(&self, rec: &Record) -> bool {
        let kept = self.dir(&rec.workspace_id).join("baseline").join(SEED_TAR);
        rec.backend == BackendKind::Firecracker
            && rec.forked_from.is_none()
            && (rec.seed.entry_count == 0 || kept.is_file())
    }

    /// Boots a template restore (or, failing that, a new cold disk) in
    /// place of the workspace's disk and replays the seed: the baseline,
    /// made again.
    async fn boot_baseline(
        &self,
        env: &Installed,
        rec: &mut Record,
        cold_boot: bool,
        progress: &dyn Progress,
    ) -> Result<Sandbox, CoreError> {
        // Recorded before the disk goes: whatever happens from here (a
        // failure, a kill), the next start makes the baseline again rather
        // than booting a missing or half-made disk.
        rec.pristine = true;
        record::save(&self.paths, rec)?;
        let upper = self.upper(rec);
        crate::blocking(move || match std::fs::remove_file(&upper) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CoreError::io("removing the old disk", e)),
        })
        .await?;
        let sandbox = self
            .boot(env, rec, &Boot::template(cold_boot, progress))
            .await?;
        let kept = self.dir(&rec.workspace_id).join("baseline").join(SEED_TAR);
        if kept.is_file() {
            progress.step("replaying the seed");
            if let Err(e) = sandbox.put_archive(WORKSPACE_ROOT, &kept).await {
                let _ = sandbox.close().await;
                return Err(e);
            }
        }
        Ok(sandbox)
    }

    /// Records the manifest of `/workspace` and copies the writable layer
    /// with the guest quiesced (flushed, and paused on Firecracker).
    pub(super) async fn take_baseline(
        &self,
        sandbox: &Sandbox,
        rec: &Record,
    ) -> Result<(), CoreError> {
        let baseline = self.dir(&rec.workspace_id).join("baseline");
        // Spooled beside its final place (one filesystem for the rename);
        // a killed create takes the whole workspace directory with it.
        let spool = tempfile::Builder::new()
            .prefix(".pyro-manifest-")
            .tempfile_in(&baseline)
            .map_err(|e| CoreError::io("creating a temp file", e))?
            .into_temp_path();
        diff::fetch_manifest(sandbox, &spool).await?;
        spool
            .persist(baseline.join("manifest.jsonl"))
            .map_err(|e| CoreError::io("saving the baseline manifest", e.error))?;
        sandbox
            .call(Request::Sync, Duration::from_secs(120))
            .await?;
        sandbox.set_paused(true).await?;
        let (backend, upper) = (rec.backend, self.upper(rec));
        let copied = crate::blocking(move || match backend {
            BackendKind::Firecracker => {
                pyro_vmm::disk::sparse_copy(&upper, &baseline.join("upper.ext4"))
                    .map(|_| ())
                    .map_err(CoreError::from)
            }
            BackendKind::HostCompat => copy_tree(&upper.join("data"), &baseline.join("upper-data")),
        })
        .await;
        sandbox.set_paused(false).await?;
        copied
    }

    /// Puts the workspace back to its baseline: everything done since create
    /// goes (inside and outside `/workspace`), as does the command history;
    /// name, labels and the baseline stay.
    /// The workspace's environment is pulled first if it is missing.
    pub async fn reset(
        &self,
        id: &str,
        snapshot: &str,
        cold_boot: bool,
        progress: &dyn Progress,
    ) -> Result<ResetView, CoreError> {
        // An unknown snapshot is an error before any pull or boot.
        let rec = record::load(&self.paths, id).ok_or_else(|| not_found(id))?;
        self.snapshot_layer(&rec, snapshot)?;
        let env = &self.environment(id, progress).await?;
        progress.step(&format!("resetting to {snapshot} and booting"));
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        if rec.state == State::Creating {
            return Err(CoreError::State(format!(
                "workspace {id} is still being created"
            )));
        }
        let source = self.snapshot_layer(&rec, snapshot)?;
        rec.state = State::Resetting;
        rec.operation = Some(Operation {
            kind: "reset".into(),
            process: pyro_vmm::process::ProcessId::current(),
            group: None,
        });
        record::save(&self.paths, &rec)?;
        match self
            .reset_inner(env, &mut rec, snapshot, &source, cold_boot, progress)
            .await
        {
            Ok(()) => {
                let mut cleared = vec!["command history".to_owned()];
                let shells = super::shells::clear_marks(self, id);
                if shells > 0 {
                    cleared.push(format!("{shells} shell(s)"));
                }
                let services = self.clear_services(id);
                if services > 0 {
                    cleared.push(format!("{services} service(s)"));
                }
                drop(_lock);
                let mut workspace = view(&rec);
                workspace.services_restarted = self.restart_services(id, progress).await;
                Ok(ResetView {
                    workspace,
                    workspace_reset: ResetInfo {
                        snapshot_name: snapshot.to_owned(),
                        kind: if snapshot == BASELINE {
                            SnapshotKind::Baseline
                        } else {
                            SnapshotKind::Named
                        },
                        cleared,
                    },
                })
            }
            Err(e) => {
                // Whatever step failed, the VM is gone (or about to be) and
                // the disk is either the baseline or what it was: a stopped
                // workspace that can be reset or started again.
                if let Some(s) = rec
                    .vm_id
                    .take()
                    .and_then(|v| Sandbox::attach(&self.paths, &v).ok())
                {
                    let _ = s.close().await;
                }
                rec.state = State::Stopped;
                rec.operation = None;
                rec.stopped_at = Some(now_unix());
                rec.state_reason = Some(if rec.pristine {
                    format!(
                        "a reset to {snapshot} failed; the next start makes its baseline again; \
                         reset again or start it"
                    )
                } else {
                    format!(
                        "a reset to {snapshot} failed; its disk is either that snapshot or what it \
                         was before; reset again or start it"
                    )
                });
                rec.last_error = Some(e.message(crate::hint::FrontEnd::Neutral));
                record::save(&self.paths, &rec)?;
                Err(e)
            }
        }
    }

    /// The steps of [`Self::reset`] after the record says `resetting`.
    pub(super) async fn reset_inner(
        &self,
        env: &Installed,
        rec: &mut Record,
        snapshot: &str,
        source: &Path,
        cold_boot: bool,
        progress: &dyn Progress,
    ) -> Result<(), CoreError> {
        if let Some(s) = rec
            .vm_id
            .as_deref()
            .and_then(|v| Sandbox::attach(&self.paths, v).ok())
        {
            s.close().await?;
        }
        rec.vm_id = None;
        // The baseline made again from the template and the seed, where it
        // can be; otherwise the snapshot's disk (the template's handoff
        // snapshot resumes with it).
        let copy_disk = cold_boot || snapshot != BASELINE || !self.can_replay(rec);
        let dir = self.dir(&rec.workspace_id);
        let upper = self.upper(rec);
        let backend = rec.backend;
        let source = source.to_owned();
        if copy_disk {
            // The disk becomes the snapshot's copy: only the baseline's copy
            // is the baseline.
            rec.pristine = snapshot == BASELINE && rec.pristine;
            record::save(&self.paths, rec)?;
        }
        // Copies and deletions run off the async workers: other calls
        // (status, list) keep answering meanwhile.
        crate::blocking(move || {
            match backend {
                _ if !copy_disk => {}
                BackendKind::Firecracker => {
                    let new = dir.join("upper.ext4.new");
                    pyro_vmm::disk::sparse_copy(&source, &new)?;
                    std::fs::rename(&new, &upper)
                        .map_err(|e| CoreError::io("installing the baseline disk", e))?;
                }
                BackendKind::HostCompat => {
                    let new = upper.with_extension("new");
                    let _ = std::fs::remove_dir_all(&new);
                    std::fs::create_dir_all(&new)
                        .map_err(|e| CoreError::io("creating the new layer", e))?;
                    copy_tree(&source, &new.join("data"))?;
                    swap_dir(&new, &upper)?;
                }
            }
            let commands = dir.join("commands");
            if commands.exists() {
                let trash = dir.join(format!(".commands-{}", std::process::id()));
                if std::fs::rename(&commands, &trash).is_ok() {
                    let _ = std::fs::remove_dir_all(&trash);
                }
            }
            Ok(())
        })
        .await?;
        rec.command_count = 0;
        rec.last_command = None;
        rec.next_sequence = 1;
        let mut sandbox = if copy_disk {
            self.boot(env, rec, &Boot::template(cold_boot, progress))
                .await?
        } else {
            self.boot_baseline(env, rec, false, progress).await?
        };
        rec.pristine = snapshot == BASELINE;
        let now = now_unix();
        rec.mark_started(sandbox.id(), now);
        rec.reset_count += 1;
        rec.last_reset_at = Some(now);
        record::save(&self.paths, rec)?;
        sandbox.keep();
        Ok(())
    }

    /// Stops the VM (flushing the guest first); the disk is kept.
    pub async fn stop(&self, id: &str) -> Result<View, CoreError> {
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        if rec.state != State::Started {
            return Err(CoreError::State(format!(
                "workspace {id} is {}, not started",
                rec.state.as_str()
            )));
        }
        if let Some(s) = rec
            .vm_id
            .as_deref()
            .and_then(|v| Sandbox::attach(&self.paths, v).ok())
        {
            s.shutdown(Duration::from_secs(60)).await?;
        }
        rec.state = State::Stopped;
        rec.vm_id = None;
        rec.stopped_at = Some(now_unix());
        rec.state_reason = Some("stopped on request; the disk is kept".into());
        rec.last_activity_at = now_unix();
        record::save(&self.paths, &rec)?;
        Ok(view(&rec))
    }

    /// Boots a stopped workspace again from its disk (the template's
    /// handoff snapshot resumed with it); one that nothing has reached since
    /// its baseline was made is made again from the template and its seed
    /// instead.
    /// The workspace's environment is pulled first if it is missing.
    pub async fn start(
        &self,
        id: &str,
        cold_boot: bool,
        progress: &dyn Progress,
    ) -> Result<View, CoreError> {
        let env = &self.environment(id, progress).await?;
        progress.step("booting");
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        if rec.state != State::Stopped {
            return Err(CoreError::State(format!(
                "workspace {id} is {}, not stopped",
                rec.state.as_str()
            )));
        }
        rec.operation = Some(Operation {
            kind: "start".into(),
            process: pyro_vmm::process::ProcessId::current(),
            group: None,
        });
        record::save(&self.paths, &rec)?;
        // A workspace nothing has reached since its baseline gets the
        // baseline made again (restored, or cold with --cold-boot); any other
        // resumes the template's handoff snapshot with its own disk.
        let replay = rec.pristine && self.can_replay(&rec);
        let booted = if replay {
            self.boot_baseline(env, &mut rec, cold_boot, progress).await
        } else {
            self.boot(env, &mut rec, &Boot::template(cold_boot, progress))
                .await
        };
        rec.operation = None;
        let mut sandbox = match booted {
            Ok(s) => s,
            Err(e) => {
                // A pristine workspace's disk is its baseline, made again
                // at each start: nothing of it is lost.
                rec.state_reason = Some(if replay {
                    "a start failed (last_error says why); nothing had changed since the \
                     baseline, which the next start makes again; start it again or reset it"
                        .into()
                } else {
                    "a start failed (last_error says why); the disk is kept; start it again or \
                     reset it"
                        .into()
                });
                rec.last_error = Some(e.message(crate::hint::FrontEnd::Neutral));
                // The boot's error is the one to report, even if the record
                // cannot take its reason.
                if let Err(save) = record::save(&self.paths, &rec) {
                    tracing::warn!("saving the failed start's reason: {save}");
                }
                return Err(e);
            }
        };
        rec.mark_started(sandbox.id(), now_unix());
        record::save(&self.paths, &rec)?;
        sandbox.keep();
        drop(_lock);
        let mut v = view(&rec);
        v.services_restarted = self.restart_services(id, progress).await;
        Ok(v)
    }
}

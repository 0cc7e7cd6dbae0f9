//! Forks: new workspaces whose disk starts as a copy of another's (its
//! current disk, taken consistently, or one of its snapshots). A fork has
//! its own id, hostname and machine id, and its fork point as its
//! baseline; it shares nothing writable with its origin.

use super::*;

/// What to fork.
#[derive(Debug, Clone, Default)]
pub struct ForkRequest {
    /// Start from this snapshot of the origin (else its current disk).
    pub snapshot: Option<String>,
    /// Name of the fork (with `-1`, `-2`... appended when there are
    /// several).
    pub name: Option<String>,
    /// How many forks (all or none).
    pub count: u32,
    /// Give the forks the origin's secrets (else they get none).
    pub with_secrets: bool,
}

/// Where a fork came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ForkedFrom {
    /// The origin workspace.
    pub workspace_id: String,
    /// The origin's snapshot it started from (none: its disk at the time).
    pub snapshot_name: Option<String>,
}

/// The forks one call made.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ForkView {
    /// The origin workspace (untouched).
    pub origin_workspace_id: String,
    /// The origin's snapshot the forks start from (none: its disk at the
    /// time of the call).
    pub snapshot_name: Option<String>,
    /// How many.
    pub count: usize,
    /// The new workspaces, started, each with its fork point as baseline.
    pub workspaces: Vec<View>,
    /// The origin's secrets the forks did not get (all of them unless
    /// `with_secrets` was asked for).
    pub secrets_left_out: Vec<String>,
}

impl Workspaces {
    /// Makes `req.count` forks of workspace `id`, all or none. The origin's
    /// environment is pulled first if it is missing.
    pub async fn fork(
        &self,
        id: &str,
        req: ForkRequest,
        progress: &dyn Progress,
    ) -> Result<ForkView, CoreError> {
        limits::FORK_COUNT.check(req.count)?;
        let name = req.name.as_deref().map(valid_name).transpose()?;
        if let (Some(n), true) = (&name, req.count > 1) {
            // The longest name the forks will get must be a valid one.
            valid_name(&format!("{n}-{}", req.count))?;
        }
        if let Some(s) = req.snapshot.as_deref().filter(|s| *s != BASELINE) {
            valid_snapshot_name(s)?;
        }
        let quota = max_workspaces()?;
        let env = self.environment(id, progress).await?;
        // The fork point: a private copy of the origin's layer, taken under
        // its lock, in this process's scratch directory (swept if killed).
        let scratch = crate::DropOffWorkers::new(
            tempfile::Builder::new()
                .prefix("fork-")
                .tempdir_in(crate::scratch::temp_dir(&self.paths)?)
                .map_err(|e| CoreError::io("creating a temp directory", e))?,
        );
        let origin = {
            let _lock = record::lock(&self.paths, id).await?;
            let mut rec = self.load_fresh(id).await?;
            if !matches!(rec.state, State::Started | State::Stopped) {
                return Err(CoreError::State(format!(
                    "workspace {id} is {}; fork it once that finishes",
                    rec.state.as_str()
                )));
            }
            let point = scratch.path().join(layer_name(rec.backend));
            progress.step("copying the fork point");
            match req.snapshot.as_deref() {
                Some(s) => {
                    let (src, dst, backend) = (self.snapshot_layer(&rec, s)?, point, rec.backend);
                    crate::blocking(move || copy_layer_file(backend, &src, &dst)).await?;
                }
                None => self.copy_layer(&mut rec, &point).await?,
            }
            self.touch(&mut rec).await?;
            record::save(&self.paths, &rec)?;
            rec
        };
        // A fork redacts every value its origin did (its disk may hold
        // what the origin's commands wrote), and can hand them out only
        // when asked to.
        let origin_store = self.store_of(id)?;
        let store = if req.with_secrets {
            origin_store
        } else {
            let mut redact_only = origin_store.redact_only;
            redact_only.extend(origin_store.usable);
            secrets::Store {
                usable: secrets::Secrets::new(),
                redact_only,
            }
        };
        let secrets_left_out: Vec<String> = origin
            .secrets
            .iter()
            .filter(|n| !store.usable.contains_key(*n))
            .cloned()
            .collect();
        let point = scratch.path().join(layer_name(origin.backend));
        let count = req.count as usize;
        // Each fork holds a copy of the point and its baseline another:
        // refuse up front what the state directory cannot hold.
        {
            let (p, root) = (point.clone(), record::root(&self.paths));
            let what = format!("{count} fork(s)");
            crate::blocking(move || {
                ensure_room(
                    disk_usage(&p).saturating_mul(2 * count as u64),
                    &root,
                    &what,
                )
            })
            .await?;
        }
        let now = now_unix();
        let group = random_hex(8);
        let mut forks: Vec<Record> = (0..count)
            .map(|i| {
                let mut rec = origin.clone();
                rec.workspace_id = random_hex(8);
                rec.name = match (&name, count) {
                    (Some(n), 1) => Some(n.clone()),
                    (Some(n), _) => Some(format!("{n}-{}", i + 1)),
                    (None, _) => None,
                };
                rec.created_at = now;
                rec.last_activity_at = now;
                rec.state = State::Creating;
                rec.state_reason = None;
                rec.stopped_at = None;
                rec.delete_after = None;
                rec.last_error = None;
                rec.vm_id = None;
                rec.operation = Some(Operation {
                    kind: "fork".into(),
                    process: pyro_vmm::process::ProcessId::current(),
                    group: Some(group.clone()),
                });
                rec.command_count = 0;
                rec.next_sequence = 1;
                rec.last_command = None;
                rec.reset_count = 0;
                rec.last_reset_at = None;
                rec.pristine = false;
                rec.boot = None;
                rec.secrets = store.usable.keys().cloned().collect();
                rec.forked_from = Some(ForkedFrom {
                    workspace_id: id.to_owned(),
                    snapshot_name: req.snapshot.clone(),
                });
                rec
            })
            .collect();
        // Until the commit, any way out of here (an error, a dropped call)
        // removes every fork made so far.
        let mut unmade = Unmade {
            engine: self.clone(),
            ids: forks.iter().map(|r| r.workspace_id.clone()).collect(),
        };
        {
            let _global = self.paths.lock_async("workspaces").await?;
            let existing = record::list_ids(&self.paths).len();
            if existing + count > quota {
                return Err(CoreError::Quota(format!(
                    "{count} fork(s) would make {} workspaces, over the quota of {quota} \
                     (PYRO_MAX_WORKSPACES); delete some with ⟨op:workspace delete ID⟩, fork fewer, \
                     or raise PYRO_MAX_WORKSPACES",
                    existing + count
                )));
            }
            for rec in &forks {
                let dir = self.dir(&rec.workspace_id);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
                secrets::save(&dir, &store)?;
                record::save(&self.paths, rec)?;
            }
        }
        let mut made = Ok(());
        for (i, rec) in forks.iter_mut().enumerate() {
            progress.step(&format!("making fork {} of {count}", i + 1));
            made = self.make_fork(&env, rec, &point, progress).await;
            if made.is_err() {
                break;
            }
        }
        // All or none: the forks stay `creating` (deleted if this process
        // dies) until every one is made.
        // Forks boot one after another: one whose guest stopped meanwhile
        // (its TTL ran out) would be committed as a dead VM.
        if made.is_ok() {
            let (paths, vms) = (
                self.paths.clone(),
                forks.iter().map(|r| r.vm_id.clone()).collect::<Vec<_>>(),
            );
            let ttl = origin.ttl_seconds;
            made = crate::blocking(move || {
                let gone = vms.iter().position(|vm| {
                    !vm.as_deref()
                        .and_then(|v| Sandbox::attach(&paths, v).ok())
                        .is_some_and(|s| s.is_running())
                });
                match gone {
                    None => Ok(()),
                    Some(i) => Err(CoreError::State(format!(
                        "fork {} of {} stopped before the others were made (its TTL of {ttl} s \
                         may have run out: forks keep the origin's TTL); no fork was kept: fork \
                         fewer at a time",
                        i + 1,
                        vms.len()
                    ))),
                }
            })
            .await;
        }
        if let Err(e) = made {
            unmade.discard().await;
            return Err(e);
        }
        // The commit, in one step: once the group's marker exists, every
        // fork of it is kept (a `creating` fork of a dead process whose
        // group is committed is finished by the next command, not removed).
        if let Err(e) = commit_marker::write(&self.paths, &group, &unmade.ids) {
            unmade.discard().await;
            return Err(e);
        }
        unmade.ids.clear();
        for rec in &mut forks {
            let vm = rec.vm_id.clone().unwrap_or_default();
            rec.mark_started(&vm, now_unix());
            // A fork that cannot be marked now is marked by the next
            // command's refresh (its group is committed).
            if let Ok(_lock) = record::lock(&self.paths, &rec.workspace_id).await {
                let _ = record::save(&self.paths, rec);
            }
        }
        commit_marker::remove(&self.paths, &group);
        // The fork point can be big: removed off the workers.
        let _ = crate::blocking(move || {
            drop(scratch);
            Ok(())
        })
        .await;
        Ok(ForkView {
            origin_workspace_id: id.to_owned(),
            snapshot_name: req.snapshot,
            count,
            workspaces: forks.iter().map(view).collect(),
            secrets_left_out,
        })
    }

    /// Gives a reserved fork its disk, boots it and takes its baseline.
    async fn make_fork(
        &self,
        env: &Installed,
        rec: &mut Record,
        point: &Path,
        progress: &dyn Progress,
    ) -> Result<(), CoreError> {
        let _lock = record::lock(&self.paths, &rec.workspace_id).await?;
        let (backend, src, upper) = (rec.backend, point.to_owned(), self.upper(rec));
        crate::blocking(move || match backend {
            BackendKind::Firecracker => copy_layer_file(backend, &src, &upper),
            BackendKind::HostCompat => {
                std::fs::create_dir_all(&upper)
                    .map_err(|e| CoreError::io(format!("creating {}", upper.display()), e))?;
                copy_tree(&src, &upper.join("data"))
            }
        })
        .await?;
        let mut sandbox = self
            .boot(env, rec, &Boot::template(false, progress))
            .await?;
        rec.vm_id = Some(sandbox.id().to_owned());
        record::save(&self.paths, rec)?;
        let baseline = self.dir(&rec.workspace_id).join("baseline");
        std::fs::create_dir_all(&baseline)
            .map_err(|e| CoreError::io("creating the baseline directory", e))?;
        // The manifest and the disk copy first; then /workspace's files,
        // the old side of the fork's diffs, checked against that manifest.
        self.take_baseline(&sandbox, rec).await?;
        let (entries, bytes) = self.fork_files(&sandbox, &baseline).await?;
        rec.seed = SeedInfo {
            mode: "fork".into(),
            origin: "fork".into(),
            source_path: None,
            seed_mode: "all".into(),
            destination: WORKSPACE_ROOT.to_owned(),
            entry_count: entries,
            bytes_written: bytes,
        };
        rec.baseline_at = Some(now_unix());
        record::save(&self.paths, rec)?;
        sandbox.keep();
        Ok(())
    }
}

/// Attempts at a fork's baseline files before giving up.
const FILES_ATTEMPTS: usize = 3;

impl Workspaces {
    /// Takes `/workspace` from the fork's guest as its baseline files and
    /// checks every file and link against the baseline manifest; a copy
    /// that does not match (a guest on a nested host has been seen to send
    /// a damaged first archive after boot) is taken again. Entries and
    /// bytes.
    async fn fork_files(
        &self,
        sandbox: &Sandbox,
        baseline: &Path,
    ) -> Result<(u64, u64), CoreError> {
        let mut last = String::new();
        for _ in 0..FILES_ATTEMPTS {
            let files = baseline.join("files");
            let tar = baseline.join(".tmp-files.tar");
            let answer = sandbox
                .get_archive(
                    Request::CreateArchive {
                        path: WORKSPACE_ROOT.into(),
                    },
                    &tar,
                    // Never more than the state directory can hold.
                    super::export::export_budget(baseline)?,
                )
                .await?;
            let (entries, bytes) = match answer {
                Response::Archived { entries, bytes, .. } => (entries, bytes),
                other => {
                    return Err(crate::sandbox::unexpected(other));
                }
            };
            let manifest = baseline.join("manifest.jsonl");
            let checked = crate::blocking(move || {
                let _ = std::fs::remove_dir_all(&files);
                let r = materialize::write_baseline_files(&manifest, &tar, &files);
                let _ = std::fs::remove_file(&tar);
                r
            })
            .await?;
            match checked {
                None => return Ok((entries, bytes)),
                Some(why) => last = why,
            }
        }
        Err(CoreError::Transport(format!(
            "the fork's guest sent /workspace {FILES_ATTEMPTS} times in a form that does not \
             match its own listing ({last}); the fork was not kept; try again"
        )))
    }
}

/// Copies a layer (a disk image, or a host-compat layer directory) to a
/// new path.
pub(super) fn copy_layer_file(
    backend: BackendKind,
    src: &Path,
    dst: &Path,
) -> Result<(), CoreError> {
    match backend {
        BackendKind::Firecracker => pyro_vmm::disk::sparse_copy(src, dst)
            .map(|_| ())
            .map_err(CoreError::from),
        BackendKind::HostCompat => copy_tree(src, dst),
    }
}

/// Forks reserved but not committed: removed (VM and directory) when this
/// is dropped, on a thread of its own so a dropped call never blocks an
/// async worker.
struct Unmade {
    engine: Workspaces,
    ids: Vec<String>,
}

impl Unmade {
    /// Removes the forks now, off the async workers, before returning.
    async fn discard(mut self) {
        let work = self.work();
        let _ = crate::blocking(move || {
            work();
            Ok(())
        })
        .await;
    }

    fn work(&mut self) -> impl FnOnce() + Send + 'static {
        let (engine, ids) = (self.engine.clone(), std::mem::take(&mut self.ids));
        move || {
            for id in ids {
                match record::load(&engine.paths, &id) {
                    Some(rec) => engine.remove(&rec),
                    None => {
                        let _ = std::fs::remove_dir_all(engine.dir(&id));
                    }
                }
            }
        }
    }
}

impl Drop for Unmade {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let work = self.work();
        // In a runtime, off its workers and awaited by nobody; else here.
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}

/// The commit of a group of forks: a file naming the group's workspaces,
/// written atomically once every fork is made.
pub(super) mod commit_marker {
    use super::*;

    fn dir(paths: &Paths) -> PathBuf {
        paths.state().join("fork-commits")
    }

    fn path(paths: &Paths, group: &str) -> Option<PathBuf> {
        (group.len() == 16 && group.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| dir(paths).join(group))
    }

    /// Commits `group` (its workspaces `ids`).
    pub fn write(paths: &Paths, group: &str, ids: &[String]) -> Result<(), CoreError> {
        let p = path(paths, group).ok_or_else(|| CoreError::invalid("bad fork group"))?;
        std::fs::create_dir_all(dir(paths))
            .map_err(|e| CoreError::io("creating the fork commit directory", e))?;
        crate::save_json(&p, &ids, "committing the forks")
    }

    /// Whether `group` is committed with workspace `id` in it.
    pub fn holds(paths: &Paths, group: &str, id: &str) -> bool {
        path(paths, group)
            .and_then(|p| std::fs::read(p).ok())
            .filter(|b| b.len() <= 64 << 10)
            .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
            .is_some_and(|ids| ids.iter().any(|i| i == id))
    }

    /// Removes `group`'s commit (its forks are all marked started).
    pub fn remove(paths: &Paths, group: &str) {
        if let Some(p) = path(paths, group) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Removes every commit none of whose workspaces is still `creating`
    /// (what a process killed between commit and cleanup leaves).
    pub fn sweep(paths: &Paths) -> usize {
        let Ok(rd) = std::fs::read_dir(dir(paths)) else {
            return 0;
        };
        let mut n = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(p) = path(paths, &name) else {
                continue;
            };
            let ids = std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
                .unwrap_or_default();
            let pending = ids.iter().any(|id| {
                record::valid_id(id)
                    && record::load(paths, id).is_some_and(|r| r.state == State::Creating)
            });
            if !pending && std::fs::remove_file(&p).is_ok() {
                n += 1;
            }
        }
        n
    }
}

//! Named snapshots of a workspace's whole writable disk (installed
//! packages, `/etc` edits and `/workspace` alike): create, list, delete,
//! and the layer a reset starts from.
//!
//! ```text
//! workspaces/<id>/snapshots/<name>/snapshot.json     name and time
//! workspaces/<id>/snapshots/<name>/upper.ext4 | upper-data/
//! ```
//!
//! A snapshot is made in `snapshots/.tmp-*` and renamed into place once
//! whole, so a killed create leaves either the snapshot or debris that the
//! next call on the workspace removes.

use std::os::unix::fs::MetadataExt;

use super::*;

/// Version of `snapshot.json`.
const SNAPSHOT_LAYOUT_VERSION: u32 = 1;

/// Kept beside a named snapshot's layer.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Meta {
    layout_version: u32,
    snapshot_name: String,
    created_at: f64,
}

/// Whether a snapshot is the baseline or one the user named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum SnapshotKind {
    /// The disk right after seeding (or a fork's fork point).
    Baseline,
    /// Taken with `snapshot create`.
    Named,
}

/// One snapshot.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SnapshotView {
    /// Workspace.
    pub workspace_id: String,
    /// Its name (`baseline` for the baseline).
    pub snapshot_name: String,
    /// `baseline` or `named`.
    pub kind: SnapshotKind,
    /// When it was taken (Unix seconds).
    pub created_at: f64,
    /// Space it takes on the host's disk (only the blocks written).
    pub size_bytes: u64,
    /// Whether it can be deleted (the baseline cannot).
    pub deletable: bool,
    /// The workspace's secrets, which a snapshot never holds (they stay
    /// with the workspace; a fork gets them with `with_secrets`). Set by
    /// `snapshot create`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets_left_out: Vec<String>,
}

/// A workspace's snapshots.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SnapshotListView {
    /// Workspace.
    pub workspace_id: String,
    /// How many, the baseline included.
    pub count: usize,
    /// The most named snapshots a workspace keeps.
    pub limit: usize,
    /// The baseline first, then named snapshots, newest first.
    pub snapshots: Vec<SnapshotView>,
}

/// A deleted snapshot.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SnapshotDeleteView {
    /// Workspace.
    pub workspace_id: String,
    /// The deleted snapshot.
    pub snapshot_name: String,
    /// Always true.
    pub deleted: bool,
}

/// Checks a snapshot name: `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`.
pub fn valid_snapshot_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(format!(
            "snapshot name {name:?} is not valid: use 1 to 64 letters, digits, `.`, `_` and `-`, \
             starting with a letter or digit"
        )))
    }
}

/// The name of a backend's layer inside a snapshot or the baseline.
pub(super) fn layer_name(backend: BackendKind) -> &'static str {
    match backend {
        BackendKind::Firecracker => "upper.ext4",
        BackendKind::HostCompat => "upper-data",
    }
}

/// Space `path` takes on disk (blocks written, never following a link).
pub(super) fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(rd) = std::fs::read_dir(path)
    {
        for e in rd.flatten() {
            total += disk_usage(&e.path());
        }
    }
    total
}

impl Workspaces {
    fn snapshots_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join("snapshots")
    }

    /// The named snapshots of a workspace, newest first.
    fn named_snapshots(&self, id: &str) -> Vec<(Meta, PathBuf)> {
        let mut out: Vec<(Meta, PathBuf)> = std::fs::read_dir(self.snapshots_dir(id))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        valid_snapshot_name(&name).ok()?;
                        let dir = e.path();
                        let body = std::fs::read(dir.join("snapshot.json")).ok()?;
                        let meta: Meta = serde_json::from_slice(&body).ok()?;
                        (meta.snapshot_name == name).then_some((meta, dir))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| {
            b.0.created_at
                .total_cmp(&a.0.created_at)
                .then(a.0.snapshot_name.cmp(&b.0.snapshot_name))
        });
        out
    }

    /// The names a reset or fork may use, for errors.
    fn snapshot_names(&self, id: &str) -> String {
        std::iter::once(BASELINE.to_owned())
            .chain(
                self.named_snapshots(id)
                    .into_iter()
                    .map(|(m, _)| m.snapshot_name),
            )
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The layer snapshot `name` holds (the baseline's for `baseline`).
    pub(super) fn snapshot_layer(&self, rec: &Record, name: &str) -> Result<PathBuf, CoreError> {
        let id = &rec.workspace_id;
        let layer = layer_name(rec.backend);
        if name == BASELINE {
            return Ok(self.dir(id).join("baseline").join(layer));
        }
        valid_snapshot_name(name)?;
        let dir = self.snapshots_dir(id).join(name);
        if !dir.join("snapshot.json").is_file() {
            return Err(CoreError::NotFound(format!(
                "workspace {id} has no snapshot {name:?}; its snapshots are: {}",
                self.snapshot_names(id)
            )));
        }
        Ok(dir.join(layer))
    }

    /// Copies the workspace's writable layer to `dst` (a new path)
    /// consistently: a running guest is flushed and, on Firecracker, paused
    /// for the copy; the record names the operation meanwhile, so a pyro
    /// process killed mid-copy has its guest resumed by the next call. Call
    /// with the workspace's lock held.
    pub(super) async fn copy_layer(&self, rec: &mut Record, dst: &Path) -> Result<(), CoreError> {
        let (backend, upper) = (rec.backend, self.upper(rec));
        let dst = dst.to_owned();
        let copy = move || match backend {
            BackendKind::Firecracker => pyro_vmm::disk::sparse_copy(&upper, &dst)
                .map(|_| ())
                .map_err(CoreError::from),
            BackendKind::HostCompat => copy_tree(&upper.join("data"), &dst),
        };
        if rec.state != State::Started {
            return crate::blocking(copy).await;
        }
        let vm = rec
            .vm_id
            .clone()
            .ok_or_else(|| CoreError::State(format!("workspace {} has no VM", rec.workspace_id)))?;
        let sandbox = Sandbox::attach(&self.paths, &vm)?;
        sandbox
            .call(Request::Sync, Duration::from_secs(120))
            .await?;
        rec.operation = Some(Operation {
            kind: "copy".into(),
            process: pyro_vmm::process::ProcessId::current(),
            group: None,
        });
        record::save(&self.paths, rec)?;
        let paused = sandbox.set_paused(true).await;
        let copied = match paused {
            Ok(()) => crate::blocking(copy).await,
            Err(e) => Err(e),
        };
        // Resumed whatever happened (a pause that failed may still have
        // taken effect); a guest that cannot be resumed is stopped rather
        // than left paused: its disk is kept.
        if let Err(e) = sandbox.set_paused(false).await {
            let _ = crate::blocking(move || sandbox.destroy()).await;
            rec.state = State::Stopped;
            rec.vm_id = None;
            rec.stopped_at = Some(now_unix());
            rec.state_reason = Some(
                "its guest could not be resumed after a disk copy, so it was stopped; the disk is \
                 kept, and starting the workspace boots it again"
                    .into(),
            );
            rec.last_error = Some(e.message(crate::hint::FrontEnd::Neutral));
            rec.operation = None;
            record::save(&self.paths, rec)?;
            // The copy is not kept: the origin changed under the caller.
            return Err(CoreError::State(format!(
                "workspace {} could not be resumed after its disk was copied, so it was stopped \
                 (its disk is kept; nothing was made from the copy): ⟨do:workspace start {}⟩ \
                 and try again",
                rec.workspace_id, rec.workspace_id
            )));
        }
        rec.operation = None;
        record::save(&self.paths, rec)?;
        copied
    }

    /// Snapshots the workspace's whole writable disk as `name` (running or
    /// stopped). Its cost follows the data written, not the disk's size.
    pub async fn snapshot_create(&self, id: &str, name: &str) -> Result<SnapshotView, CoreError> {
        if name == BASELINE {
            return Err(CoreError::invalid(
                "the snapshot name `baseline` is reserved for the workspace's disk right after \
                 seeding; pick another name",
            ));
        }
        valid_snapshot_name(name)?;
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        self.clear_snapshot_debris(id);
        if !matches!(rec.state, State::Started | State::Stopped) {
            return Err(CoreError::State(format!(
                "workspace {id} is {}; snapshot it once that finishes",
                rec.state.as_str()
            )));
        }
        let dir = self.snapshots_dir(id);
        if dir.join(name).exists() {
            return Err(CoreError::Conflict(format!(
                "workspace {id} already has a snapshot {name:?}; pick another name, or delete it \
                 first with ⟨op:workspace snapshot delete⟩"
            )));
        }
        let limit = limits::SNAPSHOTS_PER_WORKSPACE;
        if self.named_snapshots(id).len() >= limit {
            return Err(CoreError::Quota(format!(
                "workspace {id} already keeps {limit} snapshots, the most it may; delete one with \
                 ⟨op:workspace snapshot delete⟩"
            )));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
        // Refused up front: a copy that fills the state directory would
        // stop every workspace from saving its record.
        let (upper, room) = (self.upper(&rec), dir.clone());
        crate::blocking(move || ensure_room(disk_usage(&upper), &room, "the snapshot")).await?;
        // A part-made copy is as big as what was copied: dropped off the
        // workers on every way out.
        let tmp = crate::DropOffWorkers::new(
            tempfile::Builder::new()
                .prefix(".tmp-snapshot-")
                .tempdir_in(&dir)
                .map_err(|e| CoreError::io("creating a snapshot directory", e))?,
        );
        let layer = tmp.path().join(layer_name(rec.backend));
        self.copy_layer(&mut rec, &layer).await?;
        let meta = Meta {
            layout_version: SNAPSHOT_LAYOUT_VERSION,
            snapshot_name: name.to_owned(),
            created_at: now_unix(),
        };
        crate::save_json(
            &tmp.path().join("snapshot.json"),
            &meta,
            "saving the snapshot",
        )?;
        std::fs::rename(tmp.path(), dir.join(name))
            .map_err(|e| CoreError::io("putting the snapshot in place", e))?;
        let _ = tmp.into_inner().keep();
        self.touch(&mut rec).await?;
        record::save(&self.paths, &rec)?;
        let at = dir.join(name);
        let size_bytes = crate::blocking(move || Ok(disk_usage(&at))).await?;
        Ok(SnapshotView {
            workspace_id: id.to_owned(),
            snapshot_name: name.to_owned(),
            kind: SnapshotKind::Named,
            created_at: meta.created_at,
            size_bytes,
            deletable: true,
            secrets_left_out: rec.secrets.clone(),
        })
    }

    /// The baseline, then the named snapshots, newest first.
    pub async fn snapshot_list(&self, id: &str) -> Result<SnapshotListView, CoreError> {
        let rec = {
            let _lock = record::lock(&self.paths, id).await?;
            let rec = self.load_fresh(id).await?;
            self.clear_snapshot_debris(id);
            rec
        };
        let this = self.clone();
        crate::blocking(move || {
            let id = rec.workspace_id.clone();
            let baseline = this.dir(&id).join("baseline").join(layer_name(rec.backend));
            let mut snapshots = vec![SnapshotView {
                workspace_id: id.clone(),
                snapshot_name: BASELINE.to_owned(),
                kind: SnapshotKind::Baseline,
                created_at: rec.baseline_at.unwrap_or(rec.created_at),
                size_bytes: disk_usage(&baseline),
                deletable: false,
                secrets_left_out: Vec::new(),
            }];
            for (meta, dir) in this.named_snapshots(&id) {
                snapshots.push(SnapshotView {
                    workspace_id: id.clone(),
                    snapshot_name: meta.snapshot_name,
                    kind: SnapshotKind::Named,
                    created_at: meta.created_at,
                    size_bytes: disk_usage(&dir),
                    deletable: true,
                    secrets_left_out: Vec::new(),
                });
            }
            Ok(SnapshotListView {
                workspace_id: id,
                count: snapshots.len(),
                limit: limits::SNAPSHOTS_PER_WORKSPACE,
                snapshots,
            })
        })
        .await
    }

    /// Deletes a named snapshot (the baseline stays).
    pub async fn snapshot_delete(
        &self,
        id: &str,
        name: &str,
    ) -> Result<SnapshotDeleteView, CoreError> {
        if name == BASELINE {
            return Err(CoreError::invalid(
                "the baseline snapshot cannot be deleted: reset and diff need it",
            ));
        }
        valid_snapshot_name(name)?;
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        self.clear_snapshot_debris(id);
        let dir = self.snapshots_dir(id);
        if !dir.join(name).join("snapshot.json").is_file() {
            return Err(CoreError::NotFound(format!(
                "workspace {id} has no snapshot {name:?}; its snapshots are: {}",
                self.snapshot_names(id)
            )));
        }
        // Renamed out of sight first: a killed delete leaves debris, never
        // half a snapshot under its name.
        let trash = dir.join(format!(".tmp-deleting-{name}-{}", std::process::id()));
        std::fs::rename(dir.join(name), &trash)
            .map_err(|e| CoreError::io("deleting the snapshot", e))?;
        crate::blocking(move || {
            let _ = std::fs::remove_dir_all(&trash);
            Ok(())
        })
        .await?;
        self.touch(&mut rec).await?;
        record::save(&self.paths, &rec)?;
        Ok(SnapshotDeleteView {
            workspace_id: id.to_owned(),
            snapshot_name: name.to_owned(),
            deleted: true,
        })
    }

    /// Removes what killed snapshot calls left in `snapshots/`.
    pub(super) fn clear_snapshot_debris(&self, id: &str) -> usize {
        let Ok(rd) = std::fs::read_dir(self.snapshots_dir(id)) else {
            return 0;
        };
        // A killed snapshot's debris can be a whole disk copy.
        crate::off_workers(|| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
                .count()
        })
    }
}

/// Refuses work that needs `need` bytes in `dir`'s filesystem beyond a
/// reserve kept free for records and logs.
pub(super) fn ensure_room(need: u64, dir: &Path, what: &str) -> Result<(), CoreError> {
    let free =
        crate::free_bytes(dir).map_err(|e| CoreError::io("checking free space", e.into()))?;
    room_in(need, free, dir, what)
}

/// Free space kept by [`ensure_room`].
const RESERVE: u64 = 256 << 20;

/// [`ensure_room`] for `free` bytes free in `dir`'s filesystem.
fn room_in(need: u64, free: u64, dir: &Path, what: &str) -> Result<(), CoreError> {
    let need = need.saturating_add(RESERVE);
    if need > free {
        return Err(CoreError::TooLarge(format!(
            "{what} needs about {} MiB and {} has {} MiB free (pyro keeps {} MiB of it free); \
             free some space, or delete snapshots or workspaces",
            need >> 20,
            dir.display(),
            free >> 20,
            RESERVE >> 20
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! Files: sync push, listings, reads, writes, patches and the diff.

use super::*;

impl Workspaces {
    /// Pushes a host directory or archive into the workspace (all or
    /// nothing).
    pub async fn sync_push(
        &self,
        id: &str,
        source: &Path,
        dest: Option<&str>,
    ) -> Result<SyncView, CoreError> {
        let dest = guest_path(dest.unwrap_or(WORKSPACE_ROOT))?;
        let (paths, path) = (self.paths.clone(), source.to_owned());
        let prep = crate::blocking(move || seed::prepare(&paths, &path, SeedMode::All)).await?;
        let (rec, sandbox) = self.started(id, "sync push").await?;
        let (entries, bytes) = sandbox.put_archive(&dest, prep.tar.path()).await?;
        Ok(SyncView {
            workspace_id: id.to_owned(),
            mode: prep.mode.to_owned(),
            source_path: prep.source,
            destination: dest,
            entry_count: entries,
            bytes_written: bytes,
            execution_mode: mode_of(rec.backend),
        })
    }

    /// Lists a path: its children, or with `recursive` its whole subtree,
    /// up to `max_entries` of them (the rest are counted). Memory stays flat
    /// whatever the tree's size: the listing is spooled to a file.
    pub async fn file_list(
        &self,
        id: &str,
        path: &str,
        recursive: bool,
        max_entries: usize,
    ) -> Result<FileListView, CoreError> {
        let path = guest_path(path)?;
        limits::LIST_ENTRIES.check(max_entries)?;
        let (_, sandbox) = self.started(id, "file list").await?;
        let spool = tempfile::Builder::new()
            .prefix(".pyro-list-")
            .tempfile_in(crate::scratch::temp_dir(&self.paths)?)
            .map_err(|e| CoreError::io("creating a temp file", e))?
            .into_temp_path();
        let root = match sandbox
            .get_lines::<FileEntry>(
                Request::ListFiles { path, recursive },
                &spool,
                diff::MANIFEST_LIMIT,
                Duration::from_secs(300),
            )
            .await?
        {
            Response::Files { root, .. } => root,
            other => return Err(crate::sandbox::unexpected(other)),
        };
        let workspace_id = id.to_owned();
        if root.kind != EntryKind::Directory {
            return Ok(FileListView {
                workspace_id,
                path: root.path.clone(),
                kind: root.kind,
                recursive,
                entries: vec![root],
                total: 1,
                truncated: false,
            });
        }
        crate::blocking(move || {
            let mut entries = Vec::new();
            let (mut total, mut kept_bytes) = (0, 0);
            for e in crate::jsonl::Lines::<FileEntry>::open(&spool)? {
                let e = e?;
                total += 1;
                let size = e.path.len() + e.link_target.as_ref().map_or(0, String::len);
                // Long names count too: the answer stays small.
                if entries.len() < max_entries && kept_bytes + size <= KEPT_BYTES_MAX {
                    kept_bytes += size;
                    entries.push(e);
                }
            }
            Ok(FileListView {
                workspace_id,
                truncated: total > entries.len() as u64,
                path: root.path,
                kind: root.kind,
                recursive,
                entries,
                total,
            })
        })
        .await
    }

    /// Reads a file (whole, up to `max_bytes`; bigger files are an error).
    pub async fn file_read(
        &self,
        id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<FileRead, CoreError> {
        self.redacted(id, self.file_read_raw(id, path, max_bytes))
            .await
    }

    async fn file_read_raw(
        &self,
        id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<FileRead, CoreError> {
        let path = guest_path(path)?;
        limits::FILE_READ_BYTES.check(max_bytes)?;
        let (_, sandbox) = self.started(id, "file read").await?;
        let (data, size, truncated, mode) = sandbox.read_file(&path, max_bytes).await?;
        if truncated {
            return Err(CoreError::TooLarge(format!(
                "{path} is {size} bytes, above the {max_bytes}-byte read limit; raise it with ⟨arg:max_bytes⟩ (up to \
                 {}) or copy the file out with ⟨op:workspace export⟩",
                limits::FILE_READ_BYTES.max
            )));
        }
        Ok(FileRead {
            workspace_id: id.to_owned(),
            path,
            mode,
            data,
            redactions: 0,
        })
    }

    /// Writes a file (an existing file keeps its mode).
    pub async fn file_write(
        &self,
        id: &str,
        path: &str,
        data: &[u8],
        max_bytes: u64,
    ) -> Result<FileWriteView, CoreError> {
        let path = guest_path(path)?;
        limits::FILE_WRITE_BYTES.check(max_bytes)?;
        if data.len() as u64 > max_bytes {
            return Err(CoreError::TooLarge(format!(
                "the content is {} bytes, above the {max_bytes}-byte write limit; raise it with ⟨arg:max_bytes⟩ (up to \
                 {}) or use ⟨op:workspace sync push⟩",
                data.len(),
                limits::FILE_WRITE_BYTES.max
            )));
        }
        let (_, sandbox) = self.started(id, "file write").await?;
        let (size, mode, created) = sandbox.write_file(&path, None, data).await?;
        Ok(FileWriteView {
            workspace_id: id.to_owned(),
            path,
            bytes_written: size,
            mode: format!("{mode:04o}"),
            created,
        })
    }

    /// Applies a unified or git diff to `/workspace`, all files or none.
    pub async fn patch_apply(&self, id: &str, patch: &str) -> Result<PatchView, CoreError> {
        if patch.trim().is_empty() {
            return Err(CoreError::invalid("the patch is empty"));
        }
        if patch.len() > PATCH_LIMIT {
            return Err(CoreError::TooLarge(format!(
                "the patch is {} bytes, above the {PATCH_LIMIT}-byte limit; split it, or use ⟨op:workspace sync push⟩",
                patch.len()
            )));
        }
        let (_, sandbox) = self.started(id, "patch apply").await?;
        match sandbox
            .call(
                Request::ApplyPatch {
                    root: WORKSPACE_ROOT.into(),
                    patch: patch.to_owned(),
                },
                Duration::from_secs(300),
            )
            .await?
        {
            Response::Patched { files } => Ok(PatchView {
                workspace_id: id.to_owned(),
                changed: !files.is_empty(),
                files,
            }),
            other => Err(crate::sandbox::unexpected(other)),
        }
    }

    /// What changed in `/workspace` since the baseline (see
    /// [`diff::compute`] for the bounds).
    pub async fn diff(&self, id: &str, limits: DiffLimits) -> Result<DiffView, CoreError> {
        self.redacted(id, self.diff_raw(id, limits)).await
    }

    async fn diff_raw(&self, id: &str, limits: DiffLimits) -> Result<DiffView, CoreError> {
        crate::limits::DIFF_ENTRIES.check(limits.max_entries)?;
        crate::limits::DIFF_PATCH_BYTES.check(limits.max_patch_bytes)?;
        let (_, sandbox) = self.started(id, "diff").await?;
        let baseline = self.dir(id).join("baseline");
        diff::compute(
            &sandbox,
            id,
            &baseline,
            &crate::scratch::temp_dir(&self.paths)?,
            limits,
        )
        .await
    }
}

//! Files in and out of a workspace: sync, list, read, write, patch, diff, export.

#[allow(unused_imports)]
use super::*;

#[tool_router(router = files_router, vis = "pub(super)")]
impl PyroServer {
    /// Copy host files in.
    #[tool(
        description = "Copy a host directory or .tar/.tar.gz/.tgz (under the server's allowed roots) into the workspace at dest, keeping file modes and in-tree symlinks. All or nothing: a conflict or a bad archive changes nothing.",
        annotations(
            title = "Push files into a workspace",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_sync_push(
        &self,
        Parameters(a): Parameters<SyncArgs>,
    ) -> Result<Json<workspace::SyncView>, ToolError> {
        let src = self.confine("source_path", &a.source_path)?;
        self.ctx
            .workspaces
            .sync_push(&a.workspace_id, &src, Some(&a.dest))
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// List files.
    #[tool(
        description = "List a directory in the workspace (or describe one path): path, kind (file, directory, symlink), size, mode and link target. Relative paths are under /workspace.",
        annotations(
            title = "List workspace files",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_file_list(
        &self,
        Parameters(a): Parameters<ListFilesArgs>,
    ) -> Result<Json<workspace::FileListView>, ToolError> {
        self.ctx
            .workspaces
            .file_list(&a.workspace_id, &a.path, a.recursive, a.max_entries)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Read a file.
    #[tool(
        description = "Read a file from the workspace. Text comes back as UTF-8, binary as base64 (see encoding). Files above max_bytes are an error; use workspace_export for big files.",
        annotations(
            title = "Read a workspace file",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_file_read(
        &self,
        Parameters(a): Parameters<ReadArgs>,
    ) -> Result<Json<workspace::FileReadView>, ToolError> {
        let read = self
            .ctx
            .workspaces
            .file_read(&a.workspace_id, &a.path, a.max_bytes)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(Json(read.into_view()))
    }

    /// Write a file.
    #[tool(
        description = "Create or replace a text file in the workspace with exactly `text` (no shell quoting needed). An existing file keeps its mode (e.g. stays executable); missing directories are created. Paths are relative to /workspace and may not leave it.",
        annotations(
            title = "Write a workspace file",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_file_write(
        &self,
        Parameters(a): Parameters<WriteArgs>,
    ) -> Result<Json<workspace::FileWriteView>, ToolError> {
        self.ctx
            .workspaces
            .file_write(&a.workspace_id, &a.path, a.text.as_bytes(), a.max_bytes)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Apply a patch.
    #[tool(
        description = "Apply a unified diff or `git diff` output to /workspace: edits, new and deleted files, renames, mode changes and (with git diff --binary) binary files. All files or none: if any hunk does not apply, nothing changes and the error says which file.",
        annotations(
            title = "Apply a patch",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_patch_apply(
        &self,
        Parameters(a): Parameters<PatchArgs>,
    ) -> Result<Json<workspace::PatchView>, ToolError> {
        self.ctx
            .workspaces
            .patch_apply(&a.workspace_id, &a.patch)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Diff against the baseline.
    #[tool(
        description = "Show what changed in /workspace since the workspace was created (or last reset) as a git-style patch plus a per-path summary. Use it to review work before workspace_export.",
        annotations(
            title = "Diff against the baseline",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_diff(
        &self,
        Parameters(a): Parameters<DiffArgs>,
    ) -> Result<Json<workspace::DiffView>, ToolError> {
        self.ctx
            .workspaces
            .diff(
                &a.workspace_id,
                workspace::DiffLimits {
                    max_entries: a.max_entries,
                    max_patch_bytes: a.max_patch_bytes,
                },
            )
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Export to the host.
    #[tool(
        description = "Copy a file or directory out of /workspace to a new host path (under the server's allowed roots), keeping modes and in-tree symlinks.",
        annotations(
            title = "Export from a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_export(
        &self,
        Parameters(a): Parameters<ExportArgs>,
    ) -> Result<Json<workspace::ExportView>, ToolError> {
        let out = self.confine_new("output_path", &a.output_path)?;
        self.ctx
            .workspaces
            .export(&a.workspace_id, &a.path, &out)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }
}

//! A stopped workspace's disk, read without booting it (`workspace-full`).

#[allow(unused_imports)]
use super::*;

#[tool_router(router = disk_router, vis = "pub(super)")]
impl PyroServer {
    /// List a stopped workspace's disk.
    #[tool(
        description = "List a path of a STOPPED workspace's disk without booting it (workspace_stop first): the guest's own view, installed packages and /etc included. Relative paths are under /workspace; absolute ones anywhere in the guest. Symlinks are shown, never followed.",
        annotations(
            title = "List a stopped workspace's disk",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_disk_list(
        &self,
        Parameters(a): Parameters<ListFilesArgs>,
    ) -> Result<Json<workspace::FileListView>, ToolError> {
        self.ctx
            .workspaces
            .disk_list(&a.workspace_id, &a.path, a.recursive, a.max_entries)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Read a file of a stopped workspace's disk.
    #[tool(
        description = "Read one regular file of a STOPPED workspace's disk without booting it (text as UTF-8, binary as base64). Files above max_bytes are an error; use workspace_disk_export for big ones.",
        annotations(
            title = "Read a stopped workspace's disk",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_disk_read(
        &self,
        Parameters(a): Parameters<ReadArgs>,
    ) -> Result<Json<workspace::FileReadView>, ToolError> {
        self.ctx
            .workspaces
            .disk_read(&a.workspace_id, &a.path, a.max_bytes)
            .await
            .map(|r| Json(r.into_view()))
            .map_err(|e| self.fail(e))
    }

    /// Export a stopped workspace's disk.
    #[tool(
        description = "Write a tree of a STOPPED workspace's disk (the whole disk by default) to a new host path under the server's allowed roots, as a tar or as a standalone ext4 image, without booting it. Devices and FIFOs are left out and counted.",
        annotations(
            title = "Export a stopped workspace's disk",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_disk_export(
        &self,
        Parameters(a): Parameters<DiskExportArgs>,
    ) -> Result<Json<workspace::DiskExportView>, ToolError> {
        let out = self.confine_new("output_path", &a.output_path)?;
        self.ctx
            .workspaces
            .disk_export(&a.workspace_id, &a.path, &out, a.format)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }
}

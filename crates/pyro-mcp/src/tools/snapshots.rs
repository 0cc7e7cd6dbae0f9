//! Snapshots of a workspace's whole disk, and forks (`workspace-full`).

#[allow(unused_imports)]
use super::*;

#[tool_router(router = snapshots_router, vis = "pub(super)")]
impl PyroServer {
    /// Snapshot a workspace's disk.
    #[tool(
        description = "Save the workspace's whole disk (installed packages, /etc and /workspace) as a named snapshot, running or stopped; workspace_reset with snapshot returns to it and workspace_fork starts new workspaces from it. Cheap: it costs the data written since the environment's image. Names: letters, digits, `.`, `_`, `-`; `baseline` is taken. (On the host-compat backend a running workspace is synced, not paused: stop it first if processes are still writing.)",
        annotations(
            title = "Snapshot a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn snapshot_create(
        &self,
        Parameters(a): Parameters<SnapshotArgs>,
    ) -> Result<Json<workspace::SnapshotView>, ToolError> {
        self.ctx
            .workspaces
            .snapshot_create(&a.workspace_id, &a.snapshot_name)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// List a workspace's snapshots.
    #[tool(
        description = "List a workspace's snapshots: baseline (its disk right after seeding) first, then named ones, newest first, each with its time, size on disk and whether it can be deleted.",
        annotations(
            title = "List snapshots",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn snapshot_list(
        &self,
        Parameters(a): Parameters<IdArgs>,
    ) -> Result<Json<workspace::SnapshotListView>, ToolError> {
        self.ctx
            .workspaces
            .snapshot_list(&a.workspace_id)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Delete a snapshot.
    #[tool(
        description = "Delete one named snapshot of a workspace (the baseline cannot be deleted). The workspace itself is not changed.",
        annotations(
            title = "Delete a snapshot",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn snapshot_delete(
        &self,
        Parameters(a): Parameters<SnapshotArgs>,
    ) -> Result<Json<workspace::SnapshotDeleteView>, ToolError> {
        self.ctx
            .workspaces
            .snapshot_delete(&a.workspace_id, &a.snapshot_name)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Fork a workspace.
    #[tool(
        description = "Make new workspaces (count of them, all or none) whose disk starts as a copy of this workspace's current disk or of one of its snapshots. Each fork gets its own workspace_id and hostname, runs on its own, shares nothing writable with the origin, and diffs against its fork point. Use it to try several approaches side by side. Forks count against the workspace quota.",
        annotations(
            title = "Fork a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_fork(
        &self,
        Parameters(a): Parameters<ForkArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<workspace::ForkView>, ToolError> {
        let phase = Phase::new("forking");
        let req = workspace::ForkRequest {
            snapshot: a.snapshot,
            name: a.name,
            count: a.count,
            with_secrets: a.with_secrets,
        };
        // Not cancellable midway: a fork either completes or removes every
        // fork it made.
        with_progress(
            &rc,
            &phase,
            Box::pin(self.ctx.workspaces.fork(&a.workspace_id, req, &phase)),
        )
        .await
        .map(Json)
        .map_err(|e| self.fail(e))
    }
}

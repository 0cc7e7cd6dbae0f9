//! Stopping and starting a workspace's VM (`workspace-full`).

#[allow(unused_imports)]
use super::*;

#[tool_router(router = power_router, vis = "pub(super)")]
impl PyroServer {
    /// Stop a workspace's VM.
    #[tool(
        description = "Stop a workspace's VM to free its memory; the disk is kept and workspace_start boots it again.",
        annotations(
            title = "Stop a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_stop(
        &self,
        Parameters(a): Parameters<IdArgs>,
    ) -> Result<Json<workspace::View>, ToolError> {
        self.ctx
            .workspaces
            .stop(&a.workspace_id)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Start a stopped workspace.
    #[tool(
        description = "Boot a stopped workspace (stopped on request or after its idle deadline) from its disk, with all files as they were.",
        annotations(
            title = "Start a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_start(
        &self,
        Parameters(a): Parameters<IdArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<workspace::View>, ToolError> {
        let phase = Phase::new("booting");
        with_progress(
            &rc,
            &phase,
            Box::pin(self.ctx.workspaces.start(&a.workspace_id, false, &phase)),
        )
        .await
        .map(Json)
        .map_err(|e| self.fail(e))
    }
}

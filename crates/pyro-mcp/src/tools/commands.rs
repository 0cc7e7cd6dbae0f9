//! Running commands in a workspace and reading their history.

#[allow(unused_imports)]
use super::*;

#[tool_router(router = commands_router, vis = "pub(super)")]
impl PyroServer {
    /// Run a command in a workspace.
    #[tool(
        description = "Run a command in a workspace (cwd /workspace unless given) and return exit_code, stdout, stderr and byte counts. A non-zero exit_code is a normal result. Output beyond max_output_bytes is cut (truncated: true) but kept in workspace_logs. The command is killed after timeout_seconds (exit_code 124, output so far kept); keep calls short and split long work.",
        annotations(
            title = "Run a command in a workspace",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_exec(
        &self,
        Parameters(a): Parameters<ExecArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<workspace::ExecView>, ToolError> {
        let opts = ExecOptions {
            command: a.command.into_command()?,
            cwd: a.cwd,
            env: a.env.unwrap_or_default(),
            timeout_seconds: a.timeout_seconds,
            max_output_bytes: a.max_output_bytes,
        };
        let phase = Phase::new("running the command");
        let mut sink = pyro_core::sandbox::Discard;
        let work = self
            .ctx
            .workspaces
            .exec(&a.workspace_id, opts, None, &mut sink);
        tokio::select! {
            r = with_progress(&rc, &phase, work) => r.map(Json).map_err(|e| self.fail(e)),
            () = rc.ct.cancelled() => Err(ToolError::new("cancelled", "cancelled; the command was killed".into())),
        }
    }

    /// Command history.
    #[tool(
        description = "Show the workspace's command history (since creation or the last reset): each command with its exit code, duration and output (cut to max_output_bytes per stream).",
        annotations(
            title = "Workspace command history",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_logs(
        &self,
        Parameters(a): Parameters<LogsArgs>,
    ) -> Result<Json<workspace::LogsView>, ToolError> {
        self.ctx
            .workspaces
            .logs(
                &a.workspace_id,
                workspace::LogsQuery {
                    tail: a.tail,
                    sequence: a.sequence,
                    max_output_bytes: a.max_output_bytes,
                },
            )
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }
}

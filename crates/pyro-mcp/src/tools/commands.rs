//! Running commands in a workspace and reading their history.

#[allow(unused_imports)]
use super::*;

#[tool_router(router = commands_router, vis = "pub(super)")]
impl PyroServer {
    /// Run a command in a workspace.
    #[tool(
        description = "Run a command in a workspace (cwd /workspace unless given) and return exit_code, stdout, stderr and byte counts. A non-zero exit_code is a normal result. Output beyond max_output_bytes is cut (truncated: true) but kept in workspace_logs. The command is killed after timeout_seconds (exit_code 124, output so far kept). For long work (builds, test suites) give a large timeout_seconds: if it still runs after wait_seconds (default 40), the call returns state: running with its sequence and the output so far, and the command keeps running; call workspace_exec_wait with that sequence to wait more (or workspace_exec_cancel to stop it).",
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
        self.full_only("secret_env", a.secret_env.is_some())?;
        let opts = ExecOptions {
            secret_env: secret_env(a.secret_env),
            command: a.command.into(),
            cwd: a.cwd,
            env: a.env.unwrap_or_default(),
            timeout_seconds: a.timeout_seconds,
            max_output_bytes: a.max_output_bytes,
            wait_seconds: Some(a.wait_seconds),
            max_memory_mib: a.max_memory_mib,
            max_tasks: a.max_tasks,
        };
        let phase = Phase::new("running the command");
        let mut sink = pyro_core::sandbox::Discard;
        let work = self
            .ctx
            .workspaces
            .exec(&a.workspace_id, opts, None, &mut sink);
        tokio::select! {
            r = with_progress(&rc, &phase, work) => r.map(Json).map_err(|e| self.fail(e)),
            () = rc.ct.cancelled() => Err(ToolError::new("cancelled", "cancelled; the command is being killed (workspace_exec_wait with its sequence reports its end)".into())),
        }
    }

    /// Wait for a command running in the background.
    #[tool(
        description = "Wait up to wait_seconds more for a command that workspace_exec returned with state: running, and return the output it wrote since the last call (stdout, stderr) and, once it ended, its exit_code (state: finished). Still running after the wait: state: running again; call this again.",
        annotations(
            title = "Wait for a background command",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_exec_wait(
        &self,
        Parameters(a): Parameters<ExecWaitArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<workspace::ExecView>, ToolError> {
        let phase = Phase::new("waiting for the command");
        let mut sink = pyro_core::sandbox::Discard;
        let work = self.ctx.workspaces.exec_wait(
            &a.workspace_id,
            a.sequence,
            a.wait_seconds,
            a.max_output_bytes,
            &mut sink,
        );
        tokio::select! {
            r = with_progress(&rc, &phase, work) => r.map(Json).map_err(|e| self.fail(e)),
            () = rc.ct.cancelled() => Err(ToolError::new("cancelled", "cancelled; the command still runs in the background".into())),
        }
    }

    /// Stop a command running in the background.
    #[tool(
        description = "Kill a command running in the background (its whole process group) and return how it ended with its last output.",
        annotations(
            title = "Stop a background command",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_exec_cancel(
        &self,
        Parameters(a): Parameters<ExecCancelArgs>,
    ) -> Result<Json<workspace::ExecView>, ToolError> {
        self.ctx
            .workspaces
            .exec_cancel(&a.workspace_id, a.sequence, a.max_output_bytes)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
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

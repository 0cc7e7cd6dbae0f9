//! Interactive shells in a workspace (`workspace-full`).

#[allow(unused_imports)]
use super::*;

#[tool_router(router = shells_router, vis = "pub(super)")]
impl PyroServer {
    /// Open a shell.
    #[tool(
        description = "Open an interactive shell (bash on a terminal) in a started workspace: it keeps its directory, exported variables and running programs between calls. Type with shell_write, read with shell_read (wait_for_idle_ms after a write), stop a program with shell_signal, end it with shell_close. A stop or reset of the workspace ends every shell.",
        annotations(
            title = "Open a shell",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn shell_open(
        &self,
        Parameters(a): Parameters<ShellOpenArgs>,
    ) -> Result<Json<workspace::ShellView>, ToolError> {
        let opts = workspace::ShellOptions {
            cwd: a.cwd,
            cols: a.cols,
            rows: a.rows,
            env: a.env.unwrap_or_default(),
            keep_alive: a.keep_alive,
            secret_env: secret_env(a.secret_env),
        };
        self.ctx
            .workspaces
            .shell_open(&a.workspace_id, opts)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Read a shell's output.
    #[tool(
        description = "Read a shell's output from cursor (0 first, then the previous next_cursor). plain: true renders it as the screen shows it (a redrawn progress line reads as its last state). truncated: more is already waiting; dropped_bytes: output before cursor that the guest no longer held (it keeps the last 1 MiB). state says whether the shell still runs (exited: exit_code).",
        annotations(
            title = "Read a shell",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn shell_read(
        &self,
        Parameters(a): Parameters<ShellReadArgs>,
    ) -> Result<Json<workspace::ShellReadView>, ToolError> {
        self.ctx
            .workspaces
            .shell_read(
                &a.workspace_id,
                &a.shell_id,
                a.cursor,
                a.max_chars,
                a.plain,
                a.wait_for_idle_ms,
            )
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Type into a shell.
    #[tool(
        description = "Type input into a shell (Enter pressed after it unless append_newline: false); then shell_read with wait_for_idle_ms to see what it did.",
        annotations(
            title = "Type into a shell",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn shell_write(
        &self,
        Parameters(a): Parameters<ShellWriteArgs>,
    ) -> Result<Json<workspace::ShellView>, ToolError> {
        self.ctx
            .workspaces
            .shell_write(&a.workspace_id, &a.shell_id, &a.input, a.append_newline)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Signal what runs in a shell.
    #[tool(
        description = "Send HUP, INT (like Ctrl-C; the default), TERM or KILL to the program running in a shell's foreground (or the shell itself at its prompt).",
        annotations(
            title = "Signal a shell",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn shell_signal(
        &self,
        Parameters(a): Parameters<ShellSignalArgs>,
    ) -> Result<Json<workspace::ShellView>, ToolError> {
        self.ctx
            .workspaces
            .shell_signal(&a.workspace_id, &a.shell_id, &a.signal)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Close a shell.
    #[tool(
        description = "End a shell and every process it started, programs it put in the background included (closed: true); the shell id is then gone.",
        annotations(
            title = "Close a shell",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn shell_close(
        &self,
        Parameters(a): Parameters<ShellIdArgs>,
    ) -> Result<Json<workspace::ShellCloseView>, ToolError> {
        self.ctx
            .workspaces
            .shell_close(&a.workspace_id, &a.shell_id)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// List shells.
    #[tool(
        description = "List a workspace's shells: running, exited (exit_code), or ended by a stop or reset (ended_reason).",
        annotations(
            title = "List shells",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn shell_list(
        &self,
        Parameters(a): Parameters<IdArgs>,
    ) -> Result<Json<workspace::ShellListView>, ToolError> {
        self.ctx
            .workspaces
            .shell_list(&a.workspace_id)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }
}

//! Workspace lifecycle tools: create, list, update, status, reset, delete.

#[allow(unused_imports)]
use super::*;

#[tool_router(router = lifecycle_router, vis = "pub(super)")]
impl PyroServer {
    /// Create a persistent workspace.
    #[tool(
        description = "Create a persistent workspace: a microVM with /workspace seeded from seed_path (a host directory or archive) or, when the server runs inside a Git project and seed_path is omitted, from the project's tracked files. Returns workspace_id: pass it to every other workspace_* tool. The workspace lives until workspace_delete; its VM stops after ttl_seconds without any call (files are kept) and the result says when. Next: workspace_exec, workspace_file_read, workspace_patch_apply.",
        annotations(
            title = "Create a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_create(
        &self,
        Parameters(a): Parameters<CreateArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<workspace::View>, ToolError> {
        let mut req = CreateRequest::new(self.ctx.options.backend);
        req.name = a.name;
        req.labels = a.labels.unwrap_or_default();
        req.ttl_seconds = a.ttl_seconds;
        req.vcpu_count = a.vcpu_count;
        req.mem_mib = a.mem_mib;
        req.disk_mib = a.disk_mib;
        self.full_only("secrets", a.secrets.is_some())?;
        for s in a.secrets.unwrap_or_default() {
            let source = match (s.value, s.file_path) {
                (Some(v), None) => workspace::secrets::SecretSource::Value(v),
                (None, Some(p)) => {
                    workspace::secrets::SecretSource::File(self.confine("secrets[].file_path", &p)?)
                }
                _ => {
                    return Err(ToolError::from(format!(
                        "secret {} needs exactly one of value and file_path",
                        s.name
                    )));
                }
            };
            req.secrets.push(workspace::secrets::SecretSpec {
                name: s.name,
                source,
            });
        }
        req.network = pyro_core::network::policy_from(
            a.network_policy.as_deref(),
            &a.allow_hosts,
            &a.allow_cidrs,
        )
        .map_err(|e| self.fail(e))?;
        let mode = a.seed_mode;
        req.seed = match (a.seed_path, &self.ctx.options.project) {
            (Some(p), _) => Some(SeedSource {
                path: self.confine("seed_path", &p)?,
                mode,
                origin: "seed_path",
            }),
            (None, Some(project)) => Some(SeedSource {
                path: project.clone(),
                mode: SeedMode::GitTracked,
                origin: "project",
            }),
            (None, None) => None,
        };
        let phase = Phase::new("creating the workspace");
        // Not cancellable midway: a create either completes or removes
        // everything itself.
        let work = async {
            let env = self.env(&a.environment, &phase).await?;
            self.ctx
                .workspaces
                .create(&env, req, &phase)
                .await
                .map_err(|e| self.fail(e))
        };
        with_progress(&rc, &phase, Box::pin(work)).await.map(Json)
    }

    /// List workspaces.
    #[tool(
        description = "List every workspace (most recently active first) with its state, name, labels, idle deadline (expires_at) and last command. Use it to find a workspace_id you lost.",
        annotations(
            title = "List workspaces",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_list(
        &self,
        Parameters(_a): Parameters<NoArgs>,
    ) -> Result<Json<workspace::ListView>, ToolError> {
        self.ctx
            .workspaces
            .list()
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Rename or relabel a workspace.
    #[tool(
        description = "Change a workspace's name and labels (labels are merged; clear_labels removes keys). Counts as activity.",
        annotations(
            title = "Update a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_update(
        &self,
        Parameters(a): Parameters<UpdateArgs>,
    ) -> Result<Json<workspace::View>, ToolError> {
        self.ctx
            .workspaces
            .update(
                &a.workspace_id,
                a.name,
                a.clear_name,
                a.labels.unwrap_or_default(),
                a.clear_labels.unwrap_or_default(),
            )
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// A workspace's state.
    #[tool(
        description = "Show one workspace: state (started, stopped with the reason, ...), idle deadline (expires_at), command count, last command, seed and resets. Counts as activity, so it also keeps the VM from stopping.",
        annotations(
            title = "Workspace status",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_status(
        &self,
        Parameters(a): Parameters<IdArgs>,
    ) -> Result<Json<workspace::View>, ToolError> {
        self.ctx
            .workspaces
            .status(&a.workspace_id)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Reset to the baseline.
    #[tool(
        description = "Return the workspace's whole disk to its baseline (right after seeding) or to a named snapshot: every change since, inside and outside /workspace (installed tools included), and the command history are discarded (workspace_reset in the result says so); snapshots, name, labels and workspace_id stay. The VM reboots. Prefer it over repairing a broken workspace by hand.",
        annotations(
            title = "Reset a workspace",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_reset(
        &self,
        Parameters(a): Parameters<ResetArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<workspace::ResetView>, ToolError> {
        let phase = Phase::new("resetting and booting");
        with_progress(
            &rc,
            &phase,
            Box::pin(
                self.ctx
                    .workspaces
                    .reset(&a.workspace_id, &a.snapshot, false, &phase),
            ),
        )
        .await
        .map(Json)
        .map_err(|e| self.fail(e))
    }

    /// Delete a workspace.
    #[tool(
        description = "Delete a workspace for good: its VM, disk, baseline and history. The workspace_id stops working.",
        annotations(
            title = "Delete a workspace",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_delete(
        &self,
        Parameters(a): Parameters<IdArgs>,
    ) -> Result<Json<workspace::DeleteView>, ToolError> {
        self.ctx
            .workspaces
            .delete(&a.workspace_id)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }
}

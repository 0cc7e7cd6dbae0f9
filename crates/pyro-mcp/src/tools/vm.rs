//! `vm_run`: one command in a disposable microVM.

#[allow(unused_imports)]
use super::*;

#[tool_router(router = run_router, vis = "pub(super)")]
impl PyroServer {
    /// Run one command in a fresh microVM that is deleted right after.
    #[tool(
        description = "Run one command in a brand-new disposable microVM and return its exit code, stdout and stderr; the VM is deleted afterwards, so nothing persists. Use it for one-off checks. For iterative work on files, create a workspace instead (workspace_create). A non-zero exit_code is a normal result, not an error. Booting takes seconds on fast hosts and longer on nested ones.",
        annotations(
            title = "Run in a disposable VM",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn vm_run(
        &self,
        Parameters(a): Parameters<VmRunArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<run::RunResult>, ToolError> {
        let mut opts = run::RunOptions::new(a.command.into());
        opts.timeout_seconds = a.timeout_seconds;
        opts.max_output_bytes = a.max_output_bytes;
        opts.mem_mib = a.mem_mib;
        opts.fit_ttl_to_timeout();
        opts.backend = self.ctx.options.backend;
        opts.network = pyro_core::network::policy_from(
            a.network.then_some("egress"),
            &a.allow_hosts,
            &a.allow_cidrs,
        )
        .map_err(|e| self.fail(e))?;
        // The schema's bounds, which serde does not enforce, before any work.
        opts.validate().map_err(|e| self.fail(e))?;
        let phase = Phase::new("booting the VM");
        let p2 = phase.clone();
        let mut events = move |ev: run::RunEvent| {
            if let run::RunEvent::Running { .. } = ev {
                p2.set("running the command");
            }
        };
        let mut sink = pyro_core::sandbox::Discard;
        let paths = self.ctx.options.paths.clone();
        let work = async {
            let env = self.env(&a.environment, &phase).await?;
            run::run(&paths, &env, &opts, &mut sink, &mut events)
                .await
                .map_err(|e| self.fail(e))
        };
        tokio::select! {
            r = with_progress(&rc, &phase, work) => r.map(Json),
            () = rc.ct.cancelled() => Err(ToolError::new("cancelled", "cancelled; the VM was deleted".into())),
        }
    }
}

//! A workspace's network policy (`workspace-full`).

#[allow(unused_imports)]
use super::*;

#[tool_router(router = network_router, vis = "pub(super)")]
impl PyroServer {
    /// Change a workspace's network policy.
    #[tool(
        description = "Replace a workspace's network policy: off, egress, or egress+published-ports, with optional allow_hosts (NAME or NAME:PORT, resolved on the host) and allow_cidrs that narrow egress. A running guest's rules change at once, without a reboot (applied: now); a guest started without a network interface gets one at its next start (applied: next_start). Refused connections fail fast and are listed by workspace_network_log.",
        annotations(
            title = "Set a workspace's network policy",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_network_set(
        &self,
        Parameters(a): Parameters<NetworkSetArgs>,
    ) -> Result<Json<workspace::NetworkView>, ToolError> {
        let policy = pyro_core::network::policy_from(
            a.network_policy.as_deref(),
            &a.allow_hosts,
            &a.allow_cidrs,
        )
        .map_err(|e| self.fail(e))?;
        self.ctx
            .workspaces
            .network_set(&a.workspace_id, policy)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Read what the network policy refused.
    #[tool(
        description = "List the newest connections and DNS queries a workspace's network policy refused, with time, destination, port and the rule (private, link-local, loopback, cgnat, host, not-allowed, gateway, flows, dns), plus the total on record. Use it when a command in the guest fails to connect or resolve a name.",
        annotations(
            title = "Read network denials",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_network_log(
        &self,
        Parameters(a): Parameters<NetworkLogArgs>,
    ) -> Result<Json<workspace::NetworkLogView>, ToolError> {
        self.ctx
            .workspaces
            .network_log(&a.workspace_id, a.limit)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }
}

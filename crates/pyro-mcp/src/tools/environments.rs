//! The environment catalog (`workspace-full`).

#[allow(unused_imports)]
use super::*;

#[tool_router(router = environments_router, vis = "pub(super)")]
impl PyroServer {
    /// The environment catalog.
    #[tool(
        description = "List the environments workspaces can use and whether each is ready on this host.",
        annotations(
            title = "List environments",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn environment_list(
        &self,
        Parameters(_a): Parameters<NoArgs>,
    ) -> Result<Json<EnvList>, ToolError> {
        let catalog = pyro_core::environments::catalog(&self.ctx.options.paths);
        let environments = catalog
            .environments
            .into_iter()
            .map(|st| EnvItem {
                name: st.name,
                description: st.description,
                default_packages: st.default_packages,
                installed: st.installed,
                status_reason: st.status_reason,
            })
            .collect();
        Ok(Json(EnvList {
            catalog_version: catalog.catalog_version.into(),
            environments,
        }))
    }
}

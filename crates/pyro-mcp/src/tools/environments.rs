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
    ) -> Result<Json<pyro_core::environments::Catalog>, ToolError> {
        Ok(Json(pyro_core::environments::catalog(
            &self.ctx.options.paths,
        )))
    }
}

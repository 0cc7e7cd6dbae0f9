//! The tools. Descriptions are written for a model: what the tool does,
//! which handle it needs, how long the handle lives, and what to call next.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyro_core::Command;
use pyro_core::workspace::{self, CreateRequest, ExecOptions, SeedMode, SeedSource};
use pyro_core::{CoreError, run};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::Context;

mod args;
mod commands;
mod disk;
mod environments;
mod files;
mod lifecycle;
mod network;
mod power;
mod services;
mod shells;
mod snapshots;
mod vm;

pub use args::*;

/// What a `vm-run` server tells the model at the start.
pub const VM_RUN_INSTRUCTIONS: &str = "\
pyro runs commands in disposable Linux microVMs. vm_run boots a fresh VM, runs one command (a \
shell string or an argv array), returns its exit code, stdout and stderr, and deletes the VM: \
nothing persists between calls. Commands that fail still succeed as calls: read exit_code and \
stderr.";

/// What a workspace server tells the model at the start.
pub const INSTRUCTIONS: &str = "\
pyro gives you disposable Linux workspaces, each a Firecracker microVM with a persistent disk and \
/workspace as its working directory. The normal loop: workspace_create (seed it with a repo via \
seed_path; inside a Git project it is seeded with the project's tracked files by default) -> \
workspace_sync_push to bring more host files -> workspace_exec to run commands and \
workspace_file_read / workspace_file_write / workspace_patch_apply to edit without shell quoting -> \
workspace_diff and workspace_export to get results out -> workspace_reset to return to the \
baseline and retry -> workspace_delete when done. A workspace_id lives until deleted; its VM stops \
after ttl_seconds without any call (the disk is kept). For a single throwaway command use vm_run. \
Commands that fail still succeed as calls: read exit_code and stderr.";

/// A tool error: the message for the model (worded for tools: argument
/// and tool names), and its class, also in structured form in the result's
/// `_meta` (`pyro/error_kind`: `not_found`, `invalid_argument`, `busy`...).
#[derive(Debug)]
pub struct ToolError {
    kind: &'static str,
    message: String,
}

impl From<String> for ToolError {
    /// The server's own checks (bounds, host paths, commands) are about the
    /// arguments.
    fn from(message: String) -> Self {
        Self {
            kind: "invalid_argument",
            message,
        }
    }
}

impl From<&str> for ToolError {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl ToolError {
    /// An error of a given class.
    fn new(kind: &'static str, message: String) -> Self {
        Self { kind, message }
    }
}

impl rmcp::handler::server::tool::IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let mut r =
            rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(self.message)]);
        r.meta = Some(kind_meta(self.kind));
        Ok(r.into())
    }
}

/// `_meta` naming an error's class.
fn kind_meta(kind: &str) -> rmcp::model::MetaObject {
    let mut meta = rmcp::model::MetaObject::new();
    meta.0
        .insert("pyro/error_kind".into(), serde_json::Value::from(kind));
    meta
}

/// The server.
#[derive(Debug, Clone)]
pub struct PyroServer {
    tool_router: ToolRouter<Self>,
    ctx: Arc<Context>,
}

/// What a long call is doing, for its progress notifications.
#[derive(Debug, Clone)]
pub(super) struct Phase(Arc<Mutex<String>>);

impl Phase {
    fn new(what: &str) -> Self {
        Self(Arc::new(Mutex::new(what.to_owned())))
    }

    fn set(&self, what: &str) {
        if let Ok(mut p) = self.0.lock() {
            what.clone_into(&mut p);
        }
    }
}

impl pyro_core::environments::Progress for Phase {
    fn step(&self, msg: &str) {
        self.set(msg);
    }
    fn tick(&self, msg: &str) {
        self.set(msg);
    }
}

/// Sends `notifications/progress` every few seconds while `work` runs, when
/// the client asked for progress.
async fn with_progress<F: Future>(
    rc: &RequestContext<RoleServer>,
    phase: &Phase,
    work: F,
) -> F::Output {
    let Some(token) = rc.meta.get_progress_token() else {
        return work.await;
    };
    tokio::pin!(work);
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut n = 0u32;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                n += 1;
                let msg = format!("{} ({} s)", phase.0.lock().map(|p| p.clone()).unwrap_or_default(), started.elapsed().as_secs());
                let _ = rc.peer.notify_progress(ProgressNotificationParam::new(token.clone(), f64::from(n)).with_message(msg)).await;
            }
        }
    }
}

/// Arguments only the workspace-full profile offers: (tool, argument).
const FULL_ONLY_ARGS: &[(&str, &str)] = &[
    ("workspace_create", "secrets"),
    ("workspace_exec", "secret_env"),
];

/// Drops the definitions nothing in `schema` refers to any more.
fn prune_defs(schema: &mut serde_json::Map<String, serde_json::Value>) {
    let Some(serde_json::Value::Object(defs)) = schema.remove("$defs") else {
        return;
    };
    let rest = serde_json::Value::Object(schema.clone()).to_string();
    let kept: serde_json::Map<String, serde_json::Value> = defs
        .into_iter()
        .filter(|(name, _)| rest.contains(&format!("\"#/$defs/{name}\"")))
        .collect();
    if !kept.is_empty() {
        schema.insert("$defs".into(), serde_json::Value::Object(kept));
    }
}

/// A profile's tools: one router per domain, composed.
pub(crate) fn router_for(profile: crate::Profile) -> ToolRouter<PyroServer> {
    use crate::Profile;
    let run = PyroServer::run_router();
    let core = || {
        PyroServer::lifecycle_router() + PyroServer::commands_router() + PyroServer::files_router()
    };
    match profile {
        Profile::VmRun => run,
        Profile::WorkspaceCore => {
            // Secrets are a workspace-full capability: the core profile's
            // schemas do not offer them (and its calls refuse them).
            let mut r = run + core();
            for (tool, arg) in FULL_ONLY_ARGS {
                if let Some(route) = r.map.get_mut(*tool) {
                    let mut schema = (*route.attr.input_schema).clone();
                    if let Some(serde_json::Value::Object(props)) = schema.get_mut("properties") {
                        props.remove(*arg);
                    }
                    prune_defs(&mut schema);
                    route.attr.input_schema = Arc::new(schema);
                }
            }
            r
        }
        Profile::WorkspaceFull => {
            run + core()
                + PyroServer::power_router()
                + PyroServer::environments_router()
                + PyroServer::snapshots_router()
                + PyroServer::disk_router()
                + PyroServer::shells_router()
                + PyroServer::services_router()
                + PyroServer::network_router()
        }
    }
}

impl PyroServer {
    /// A server over `ctx` exposing its profile's tools.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            tool_router: router_for(ctx.options.profile),
            ctx,
        }
    }

    /// Refuses `arg` (one of [`FULL_ONLY_ARGS`]) outside workspace-full.
    fn full_only(&self, arg: &str, given: bool) -> Result<(), ToolError> {
        if given && self.ctx.options.profile != crate::Profile::WorkspaceFull {
            return Err(ToolError::from(format!(
                "{arg} is offered by the workspace-full profile only and this server runs {}: \
                 leave {arg} out, or ask the user to run `pyro mcp serve` with the \
                 workspace-full profile",
                self.ctx.options.profile.as_str()
            )));
        }
        Ok(())
    }

    /// An engine error as this server's tool error: worded for its tools
    /// (an operation it has no tool for is a command for the user).
    fn fail(&self, e: CoreError) -> ToolError {
        ToolError {
            kind: e.kind(),
            message: e.message_for_tools(&|t| self.tool_router.has_route(t)),
        }
    }

    /// The environment `name`, pulled first when missing (progress goes
    /// to `phase`).
    async fn env(
        &self,
        name: &str,
        phase: &Phase,
    ) -> Result<pyro_core::environments::Installed, ToolError> {
        pyro_core::environments::ensure_ready(&self.ctx.options.paths, name, phase)
            .await
            .map_err(|e| self.fail(e))
    }

    fn confine(&self, what: &str, p: &str) -> Result<PathBuf, String> {
        let path = self.ctx.options.cwd.join(p);
        let canon = path
            .canonicalize()
            .map_err(|e| format!("{what} {}: {e}", path.display()))?;
        self.check_root(what, &canon)?;
        Ok(canon)
    }

    /// A path to create, under the allowed roots. Its existing part is
    /// resolved (symlinks included) and checked; the part still to be made
    /// must be plain names, since a `..` there would climb out of the
    /// checked directory once the names before it are created.
    fn confine_new(&self, what: &str, p: &str) -> Result<PathBuf, String> {
        let path = self.ctx.options.cwd.join(p);
        let mut probe = path.parent().map(PathBuf::from).unwrap_or_default();
        while !probe.exists() {
            if !probe.pop() {
                break;
            }
        }
        let to_make = path.strip_prefix(&probe).unwrap_or(&path);
        if to_make
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!(
                "{what} {p:?} has `..` after a directory that does not exist yet; give a path without it"
            ));
        }
        let canon = probe
            .canonicalize()
            .map_err(|e| format!("{what} {}: {e}", path.display()))?;
        self.check_root(what, &canon)?;
        Ok(path)
    }

    fn check_root(&self, what: &str, canon: &std::path::Path) -> Result<(), String> {
        let roots = &self.ctx.options.roots;
        if roots.iter().any(|r| canon.starts_with(r)) {
            return Ok(());
        }
        let list = roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "{what} {} is outside the host directories this server may use ({list}); pick a path under them, \
             or ask the user to restart this server with that directory allowed (its allow-root \
             option)",
            canon.display()
        ))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PyroServer {
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let mut response = self.tool_router.call(tcc).await?;
        // Tool errors rmcp raises itself (arguments that do not parse) get
        // a class too.
        if let rmcp::model::CallToolResponse::Complete(r) = &mut response
            && r.is_error == Some(true)
            && r.meta.is_none()
        {
            r.meta = Some(kind_meta("invalid_argument"));
        }
        Ok(response)
    }

    fn get_info(&self) -> ServerConfig {
        let mut config = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        let mut info = Implementation::new("pyro", env!("CARGO_PKG_VERSION"));
        let profile = self.ctx.options.profile;
        info.title = Some(format!("pyro ({})", profile.as_str()));
        config.server_info = info;
        config.instructions = Some(profile.instructions().into());
        config
    }
}

#[cfg(test)]
mod tests;

//! `pyro mcp serve`: pyro's workspace engine as MCP tools over stdio.
//!
//! Three profiles: `vm-run` (one-shot `vm_run`), `workspace-core` (the
//! default: `vm_run` plus the fifteen workspace tools of the normal chat
//! loop) and `workspace-full` (adds environment listing and workspace
//! stop/start; later shells, services, snapshots, disk tools, secrets and
//! network policy as they land in `pyro-core`).
//!
//! Every tool has a model-facing description, an input schema with defaults
//! and bounds (unknown arguments are refused), all four annotations, and an
//! output schema with structured content (plus the JSON text copy).
//! Infrastructure and policy failures are tool errors; a command that exits
//! non-zero is a successful call carrying its exit code. Calls run
//! concurrently; host paths are confined to the allowed roots.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod tools;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyro_core::workspace::Workspaces;
use pyro_core::{BackendKind, Paths};
use rmcp::ServiceExt;

pub use tools::PyroServer;

/// A tool profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `vm_run` only.
    VmRun,
    /// The normal persistent chat loop (the default).
    WorkspaceCore,
    /// Everything pyro offers.
    WorkspaceFull,
}

impl Profile {
    /// The profile's name (as `--profile` takes it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VmRun => "vm-run",
            Self::WorkspaceCore => "workspace-core",
            Self::WorkspaceFull => "workspace-full",
        }
    }

    /// What the server tells the model at the start: only about the tools
    /// it has.
    pub fn instructions(self) -> &'static str {
        match self {
            Self::VmRun => tools::VM_RUN_INSTRUCTIONS,
            Self::WorkspaceCore | Self::WorkspaceFull => tools::INSTRUCTIONS,
        }
    }

    /// The tools of this profile, in name order.
    pub fn tools(self) -> Vec<String> {
        let mut names: Vec<String> = tools::router_for(self)
            .list_all()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        names
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tool profile.
    pub profile: Profile,
    /// Backend for VMs.
    pub backend: BackendKind,
    /// Host directories tools may read from and write to (canonical).
    pub roots: Vec<PathBuf>,
    /// A Git checkout whose tracked files seed workspaces by default.
    pub project: Option<PathBuf>,
    /// State and cache.
    pub paths: Paths,
    /// Where relative host paths resolve from.
    pub cwd: PathBuf,
}

impl Options {
    /// Options for a server started in `cwd`: the allowed roots are `cwd`
    /// plus `extra_roots`; the project is `project_path` or the Git checkout
    /// containing `cwd`, if any.
    pub fn new(
        profile: Profile,
        backend: BackendKind,
        paths: Paths,
        cwd: &Path,
        extra_roots: &[PathBuf],
        project_path: Option<&Path>,
    ) -> Result<Self, String> {
        let canon = |p: &Path, what: &str| {
            p.canonicalize()
                .map_err(|e| format!("{what} {}: {e}", p.display()))
        };
        let cwd = canon(cwd, "the working directory")?;
        let mut roots = vec![cwd.clone()];
        for r in extra_roots {
            let r = canon(&cwd.join(r), "--allow-root")?;
            if !r.is_dir() {
                return Err(format!("--allow-root {} is not a directory", r.display()));
            }
            roots.push(r);
        }
        let project = match project_path {
            Some(p) => {
                let p = canon(&cwd.join(p), "--project-path")?;
                Some(git_toplevel(&p).ok_or_else(|| {
                    format!(
                        "--project-path {} is not inside a Git checkout",
                        p.display()
                    )
                })?)
            }
            None => git_toplevel(&cwd),
        };
        if let Some(p) = &project
            && !roots.iter().any(|r| p.starts_with(r))
        {
            roots.push(p.clone());
        }
        Ok(Self {
            profile,
            backend,
            roots,
            project,
            paths,
            cwd,
        })
    }
}

/// The top of the Git checkout containing `dir`, if any.
fn git_toplevel(dir: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Shared server state.
#[derive(Debug)]
pub struct Context {
    /// Options.
    pub options: Options,
    /// The workspace engine.
    pub workspaces: Workspaces,
}

impl Context {
    /// Context for `options`.
    pub fn new(options: Options) -> Arc<Self> {
        let workspaces = Workspaces::new(options.paths.clone());
        Arc::new(Self {
            options,
            workspaces,
        })
    }
}

/// Serves MCP on stdin/stdout until the client goes away.
pub async fn serve_stdio(options: Options) -> Result<(), String> {
    let server = PyroServer::new(Context::new(options));
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP session did not start: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("the MCP session failed: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests;

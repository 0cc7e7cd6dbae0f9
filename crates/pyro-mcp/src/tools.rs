//! The tools. Descriptions are written for a model: what the tool does,
//! which handle it needs, how long the handle lives, and what to call next.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyro_core::workspace::{self, CreateRequest, ExecOptions, SeedMode, SeedSource};
use pyro_core::{Command, EntryKind, FileEntry, PatchedFile};
use pyro_core::{CoreError, run};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Context;

/// The `workspace-core` profile.
pub const CORE_TOOLS: [&str; 16] = [
    "vm_run",
    "workspace_create",
    "workspace_delete",
    "workspace_diff",
    "workspace_exec",
    "workspace_export",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_list",
    "workspace_logs",
    "workspace_patch_apply",
    "workspace_reset",
    "workspace_status",
    "workspace_sync_push",
    "workspace_update",
];

/// The `workspace-full` profile.
pub const FULL_TOOLS: [&str; 19] = [
    "environment_list",
    "vm_run",
    "workspace_create",
    "workspace_delete",
    "workspace_diff",
    "workspace_exec",
    "workspace_export",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_list",
    "workspace_logs",
    "workspace_patch_apply",
    "workspace_reset",
    "workspace_start",
    "workspace_status",
    "workspace_stop",
    "workspace_sync_push",
    "workspace_update",
];

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

/// An engine error as a tool error: the same words, with the CLI commands
/// it suggests named as the tools a model can call.
fn tool_error(e: CoreError) -> String {
    let mut m = e.to_string();
    for (cli, tool) in [
        ("`pyro workspace list`", "workspace_list"),
        ("`pyro workspace delete ID`", "workspace_delete"),
        ("`pyro workspace export`", "workspace_export"),
        ("`pyro workspace sync push`", "workspace_sync_push"),
    ] {
        m = m.replace(cli, tool);
    }
    if let Some(i) = m.find("run `pyro workspace start ") {
        m.truncate(i);
        m.push_str("call workspace_start (workspace-full profile) or workspace_reset first");
    }
    m.replace("--max-bytes", "max_bytes")
}

/// Default output cap per stream returned to the model.
const OUTPUT_DEFAULT: u64 = 32 << 10;
/// Largest output cap a model may ask for.
const OUTPUT_MAX: u64 = 1 << 20;
/// Longest command timeout a tool accepts: a tool call waits for the
/// command, and chat hosts give up on calls far shorter than a day.
const TIMEOUT_MAX: u64 = 3600;

fn default_env() -> String {
    "debian:12".into()
}
fn default_timeout() -> u64 {
    30
}
fn default_output() -> u64 {
    OUTPUT_DEFAULT
}
fn default_ttl() -> u64 {
    workspace::DEFAULT_TTL_SECONDS
}
fn default_one() -> u8 {
    1
}
fn default_mem() -> u32 {
    1024
}
fn default_root() -> String {
    "/workspace".into()
}
fn default_read() -> u64 {
    64 << 10
}
fn default_tail() -> usize {
    workspace::cmdlog::LOGS_TAIL_DEFAULT
}
fn default_log_output() -> u64 {
    workspace::cmdlog::LOGS_OUTPUT_DEFAULT
}
fn default_patch_cap() -> u64 {
    workspace::diff::PATCH_DEFAULT
}
fn default_list_entries() -> usize {
    workspace::LIST_ENTRIES_DEFAULT
}
fn default_diff_entries() -> usize {
    workspace::diff::ENTRIES_DEFAULT
}
fn default_baseline() -> String {
    "baseline".into()
}

/// A command: a shell string (run by `sh -c`) or an argv array (run
/// directly, no shell).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CommandArg {
    /// A shell command line, run by `sh -c`.
    Shell(String),
    /// Program and arguments, run directly without a shell.
    Argv(Vec<String>),
}

impl CommandArg {
    fn into_command(self) -> Result<Command, String> {
        match self {
            Self::Shell(s) if s.trim().is_empty() => {
                Err("command is empty: give a shell string or an argv array".into())
            }
            Self::Shell(script) => Ok(Command::Shell { script }),
            Self::Argv(argv) if argv.first().is_none_or(String::is_empty) => {
                Err("command is empty: give a shell string or an argv array".into())
            }
            Self::Argv(argv) => Ok(Command::Argv { argv }),
        }
    }
}

fn check_range(name: &str, v: u64, lo: u64, hi: u64) -> Result<(), String> {
    pyro_core::check_range(name, v, (lo, hi)).map_err(tool_error)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRunArgs {
    /// Command to run: a shell string (run by `sh -c`) or an argv array.
    pub command: CommandArg,
    /// Environment to boot (debian:12 has git; debian:12-build adds gcc, make, cmake, python3).
    #[serde(default = "default_env")]
    pub environment: String,
    /// Kill the command and everything it started after this many seconds (exit code 124).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u64,
    /// Bytes of stdout and of stderr returned (the rest is counted in stdout_bytes/stderr_bytes).
    #[serde(default = "default_output")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_output_bytes: u64,
    /// Guest memory in MiB.
    #[serde(default = "default_mem")]
    #[schemars(range(min = 128, max = 32768))]
    pub mem_mib: u32,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// Environment (debian:12 has git; debian:12-base is minimal; debian:12-build adds gcc, make, cmake, python3).
    #[serde(default = "default_env")]
    pub environment: String,
    /// Host directory or .tar/.tar.gz/.tgz to copy into /workspace. Without it, a server started in a Git project seeds the project's tracked files.
    pub seed_path: Option<String>,
    /// `all` copies every file of a seed directory; `git-tracked` only the files Git tracks.
    #[serde(default)]
    pub seed_mode: SeedMode,
    /// Optional name to recognise the workspace by.
    pub name: Option<String>,
    /// Optional labels, e.g. {"issue": "123"}.
    pub labels: Option<BTreeMap<String, String>>,
    /// The VM stops after this many seconds without any call on the workspace (its disk is kept; workspace_status says so).
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 10, max = 604800))]
    pub ttl_seconds: u64,
    /// vCPUs.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 8))]
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    #[serde(default = "default_mem")]
    #[schemars(range(min = 128, max = 32768))]
    pub mem_mib: u32,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// New name.
    pub name: Option<String>,
    /// Remove the name.
    #[serde(default)]
    pub clear_name: bool,
    /// Labels to set (others are kept).
    pub labels: Option<BTreeMap<String, String>>,
    /// Label keys to remove.
    pub clear_labels: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// Host directory or .tar/.tar.gz/.tgz to copy (it must lie under the server's allowed roots).
    pub source_path: String,
    /// Destination in the guest; relative paths are under /workspace.
    #[serde(default = "default_root")]
    pub dest: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// Command to run: a shell string (run by `sh -c`) or an argv array.
    pub command: CommandArg,
    /// Working directory; relative paths are under /workspace (the default).
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: Option<BTreeMap<String, String>>,
    /// Kill the command and everything it started after this many seconds (exit code 124). Keep calls short: use several calls for long work.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u64,
    /// Bytes of stdout and of stderr returned (workspace_logs keeps up to 16 MiB).
    #[serde(default = "default_output")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_output_bytes: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// Only the last this many commands.
    #[serde(default = "default_tail")]
    #[schemars(range(min = 1, max = workspace::cmdlog::LOGS_TAIL_MAX))]
    pub tail: usize,
    /// Only this command (its sequence number from workspace_exec).
    #[serde(default)]
    pub sequence: Option<u64>,
    /// Bytes of each command's stdout and stderr returned: their ends (stdout_omitted_bytes says how much came before).
    #[serde(default = "default_log_output")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_output_bytes: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFilesArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// Path; relative paths are under /workspace.
    #[serde(default = "default_root")]
    pub path: String,
    /// Descend into directories.
    #[serde(default)]
    pub recursive: bool,
    /// Entries returned (all are counted in total).
    #[serde(default = "default_list_entries")]
    #[schemars(range(min = 1, max = workspace::LIST_ENTRIES_MAX))]
    pub max_entries: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// File path; relative paths are under /workspace.
    pub path: String,
    /// Largest file to read; bigger files are an error (use workspace_export for those).
    #[serde(default = "default_read")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_bytes: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// File path; relative paths are under /workspace. Missing directories are created.
    pub path: String,
    /// The complete new content (at most 1 MiB).
    pub text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// A unified diff or `git diff` output (paths relative to /workspace, with or without a/ b/ prefixes).
    pub patch: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// Bytes of patch text returned (whole files; the first file is cut if it alone is bigger).
    #[serde(default = "default_patch_cap")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_patch_bytes: u64,
    /// Changed paths listed (all are counted in summary).
    #[serde(default = "default_diff_entries")]
    #[schemars(range(min = 1, max = workspace::diff::ENTRIES_MAX))]
    pub max_entries: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// File or directory to export; relative paths are under /workspace.
    pub path: String,
    /// A new host path to write (under the server's allowed roots; it must not exist yet).
    pub output_path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The snapshot to return to.
    #[serde(default = "default_baseline")]
    pub snapshot: String,
}

/// The workspace list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListResult {
    /// How many.
    pub count: usize,
    /// Most recently active first.
    pub workspaces: Vec<workspace::View>,
}

/// A deletion.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteResult {
    /// The deleted workspace.
    pub workspace_id: String,
    /// Always true.
    pub deleted: bool,
}

/// A directory listing.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileListResult {
    /// Workspace.
    pub workspace_id: String,
    /// The listed path.
    pub path: String,
    /// What the path is.
    pub kind: EntryKind,
    /// Its first entries in tree order (or the path itself when it is not a directory).
    pub entries: Vec<FileEntry>,
    /// Every entry, returned or not.
    pub total: u64,
    /// Whether entries stop short of total (raise max_entries or list a subdirectory).
    pub truncated: bool,
}

/// A file read.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileReadResult {
    /// Workspace.
    pub workspace_id: String,
    /// The path.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Permission bits, octal.
    pub mode: String,
    /// `utf-8` or, for binary files, `base64`.
    pub encoding: String,
    /// The content.
    pub content: String,
}

/// A file write.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileWriteResult {
    /// Workspace.
    pub workspace_id: String,
    /// The path.
    pub path: String,
    /// Bytes written.
    pub bytes_written: u64,
    /// Resulting mode, octal (an existing file keeps its mode).
    pub mode: String,
    /// Whether the file is new.
    pub created: bool,
}

/// A patch application.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PatchResult {
    /// Workspace.
    pub workspace_id: String,
    /// The files it changed.
    pub files: Vec<PatchedFile>,
}

/// One changed path of a diff.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffItem {
    /// Path relative to /workspace.
    pub path: String,
    /// How it changed.
    pub status: workspace::diff::Status,
    /// What it is.
    pub kind: EntryKind,
    /// Whether it is binary (no text patch).
    pub binary: bool,
    /// Why its content is left out of the patch (a `# pyro:` line stands in for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted: Option<String>,
}

/// A diff against the baseline.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffResult {
    /// Workspace.
    pub workspace_id: String,
    /// Whether anything changed.
    pub changed: bool,
    /// Counts by status.
    pub summary: BTreeMap<String, u64>,
    /// The first changed paths, in tree order.
    pub entries: Vec<DiffItem>,
    /// Changed paths counted in summary but not listed (raise max_entries).
    pub entries_not_listed: u64,
    /// The git-style patch (workspace_patch_apply accepts it), possibly cut.
    pub patch: String,
    /// Full size of the patch.
    pub patch_bytes: u64,
    /// Whether `patch` was cut to max_patch_bytes.
    pub truncated: bool,
}

/// Command history.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LogsResult {
    /// Workspace.
    pub workspace_id: String,
    /// Commands logged since creation or the last reset.
    pub count: usize,
    /// The last `tail` of them, output cut to max_output_bytes.
    pub entries: Vec<workspace::LogEntry>,
}

/// An environment.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EnvItem {
    /// Name to pass as `environment`.
    pub name: String,
    /// Description.
    pub description: String,
    /// Notable packages.
    pub default_packages: Vec<String>,
    /// Whether it is ready on this host.
    pub installed: bool,
    /// Why not, if not.
    pub status_reason: Option<String>,
}

/// The environment catalog.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EnvList {
    /// Catalog version.
    pub catalog_version: String,
    /// Environments.
    pub environments: Vec<EnvItem>,
}

/// The server.
#[derive(Debug, Clone)]
pub struct PyroServer {
    tool_router: ToolRouter<Self>,
    ctx: Arc<Context>,
}

/// Sends `notifications/progress` every few seconds while `work` runs, when
/// the client asked for progress.
async fn with_progress<F: Future>(
    rc: &RequestContext<RoleServer>,
    phase: &Arc<Mutex<String>>,
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
                let msg = format!("{} ({} s)", phase.lock().map(|p| p.clone()).unwrap_or_default(), started.elapsed().as_secs());
                let _ = rc.peer.notify_progress(ProgressNotificationParam::new(token.clone(), f64::from(n)).with_message(msg)).await;
            }
        }
    }
}

impl PyroServer {
    /// A server over `ctx` exposing its profile's tools.
    pub fn new(ctx: Arc<Context>) -> Self {
        let mut router = Self::tool_router();
        let keep = ctx.options.profile.tools();
        let names: Vec<String> = router
            .list_all()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        for name in names {
            if !keep.contains(&name.as_str()) {
                router.disable_route(name);
            }
        }
        Self {
            tool_router: router,
            ctx,
        }
    }

    fn env(&self, name: &str) -> Result<pyro_core::environments::Installed, String> {
        pyro_core::environments::resolve(&self.ctx.options.paths, name).map_err(|e| {
            format!("{e} in a terminal on this host (the first pull builds the guest kernel and takes a few minutes)")
        })
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
             or restart the server with --allow-root DIR",
            canon.display()
        ))
    }
}

#[tool_router]
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
    ) -> Result<Json<run::RunResult>, String> {
        // The schema's bounds, which serde does not enforce, before any work.
        check_range("timeout_seconds", a.timeout_seconds, 1, TIMEOUT_MAX)?;
        check_range("max_output_bytes", a.max_output_bytes, 1, OUTPUT_MAX)?;
        let env = self.env(&a.environment)?;
        let mut opts = run::RunOptions::new(a.command.into_command()?);
        opts.timeout_seconds = a.timeout_seconds;
        opts.max_output_bytes = a.max_output_bytes;
        opts.mem_mib = a.mem_mib;
        opts.ttl_seconds = opts.ttl_seconds.max(a.timeout_seconds);
        opts.backend = self.ctx.options.backend;
        let phase = Arc::new(Mutex::new("booting the VM".to_owned()));
        let p2 = phase.clone();
        let mut events = move |ev: run::RunEvent| {
            if let (run::RunEvent::Running { .. }, Ok(mut p)) = (ev, p2.lock()) {
                *p = "running the command".into();
            }
        };
        let mut sink = pyro_core::sandbox::Discard;
        let paths = self.ctx.options.paths.clone();
        let work = run::run(&paths, &env, &opts, &mut sink, &mut events);
        tokio::select! {
            r = with_progress(&rc, &phase, work) => r.map(Json).map_err(tool_error),
            () = rc.ct.cancelled() => Err("cancelled; the VM was deleted".into()),
        }
    }

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
    ) -> Result<Json<workspace::View>, String> {
        let env = self.env(&a.environment)?;
        let mut req = CreateRequest::new(self.ctx.options.backend);
        req.name = a.name;
        req.labels = a.labels.unwrap_or_default();
        req.ttl_seconds = a.ttl_seconds;
        req.vcpu_count = a.vcpu_count;
        req.mem_mib = a.mem_mib;
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
        let phase = Arc::new(Mutex::new("creating the workspace".to_owned()));
        let p2 = phase.clone();
        let say = move |m: &str| {
            if let Ok(mut p) = p2.lock() {
                *p = m.to_owned();
            }
        };
        // Not cancellable midway: a create either completes or removes
        // everything itself.
        with_progress(
            &rc,
            &phase,
            Box::pin(self.ctx.workspaces.create(&env, req, &say)),
        )
        .await
        .map(Json)
        .map_err(tool_error)
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
    ) -> Result<Json<ListResult>, String> {
        let workspaces = self.ctx.workspaces.list().await.map_err(tool_error)?;
        Ok(Json(ListResult {
            count: workspaces.len(),
            workspaces,
        }))
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
    ) -> Result<Json<workspace::View>, String> {
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
            .map_err(tool_error)
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
    ) -> Result<Json<workspace::View>, String> {
        self.ctx
            .workspaces
            .status(&a.workspace_id)
            .await
            .map(Json)
            .map_err(tool_error)
    }

    /// Copy host files in.
    #[tool(
        description = "Copy a host directory or .tar/.tar.gz/.tgz (under the server's allowed roots) into the workspace at dest, keeping file modes and in-tree symlinks. All or nothing: a conflict or a bad archive changes nothing.",
        annotations(
            title = "Push files into a workspace",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_sync_push(
        &self,
        Parameters(a): Parameters<SyncArgs>,
    ) -> Result<Json<workspace::SyncView>, String> {
        let src = self.confine("source_path", &a.source_path)?;
        self.ctx
            .workspaces
            .sync_push(&a.workspace_id, &src, Some(&a.dest))
            .await
            .map(Json)
            .map_err(tool_error)
    }

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
    ) -> Result<Json<workspace::ExecView>, String> {
        check_range("timeout_seconds", a.timeout_seconds, 1, TIMEOUT_MAX)?;
        check_range("max_output_bytes", a.max_output_bytes, 1, OUTPUT_MAX)?;
        let opts = ExecOptions {
            command: a.command.into_command()?,
            cwd: a.cwd,
            env: a.env.unwrap_or_default(),
            timeout_seconds: a.timeout_seconds,
            max_output_bytes: a.max_output_bytes,
        };
        let phase = Arc::new(Mutex::new("running the command".to_owned()));
        let mut sink = pyro_core::sandbox::Discard;
        let work = self
            .ctx
            .workspaces
            .exec(&a.workspace_id, opts, None, &mut sink);
        tokio::select! {
            r = with_progress(&rc, &phase, work) => r.map(Json).map_err(tool_error),
            () = rc.ct.cancelled() => Err("cancelled; the command was killed".into()),
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
    ) -> Result<Json<LogsResult>, String> {
        let (count, entries) = self
            .ctx
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
            .map_err(tool_error)?;
        Ok(Json(LogsResult {
            workspace_id: a.workspace_id,
            count,
            entries,
        }))
    }

    /// List files.
    #[tool(
        description = "List a directory in the workspace (or describe one path): path, kind (file, directory, symlink), size, mode and link target. Relative paths are under /workspace.",
        annotations(
            title = "List workspace files",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_file_list(
        &self,
        Parameters(a): Parameters<ListFilesArgs>,
    ) -> Result<Json<FileListResult>, String> {
        let l = self
            .ctx
            .workspaces
            .file_list(&a.workspace_id, &a.path, a.recursive, a.max_entries)
            .await
            .map_err(tool_error)?;
        Ok(Json(FileListResult {
            workspace_id: a.workspace_id,
            path: l.root.path,
            kind: l.root.kind,
            entries: l.entries,
            total: l.total,
            truncated: l.truncated,
        }))
    }

    /// Read a file.
    #[tool(
        description = "Read a file from the workspace. Text comes back as UTF-8, binary as base64 (see encoding). Files above max_bytes are an error; use workspace_export for big files.",
        annotations(
            title = "Read a workspace file",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_file_read(
        &self,
        Parameters(a): Parameters<ReadArgs>,
    ) -> Result<Json<FileReadResult>, String> {
        check_range("max_bytes", a.max_bytes, 1, workspace::FILE_LIMIT_DEFAULT)?;
        let (path, data, mode) = self
            .ctx
            .workspaces
            .file_read(&a.workspace_id, &a.path, a.max_bytes)
            .await
            .map_err(|e| match e {
                // Core's advice names the CLI's larger limit.
                CoreError::TooLarge(_) => format!(
                    "{} is larger than max_bytes ({}); raise max_bytes (up to {}) or copy it out with \
                     workspace_export",
                    a.path,
                    a.max_bytes,
                    workspace::FILE_LIMIT_DEFAULT
                ),
                other => tool_error(other),
            })?;
        let (content, encoding) = pyro_core::workspace::text_or_base64(&data);
        Ok(Json(FileReadResult {
            workspace_id: a.workspace_id,
            path,
            size_bytes: data.len() as u64,
            mode: format!("{mode:04o}"),
            encoding: encoding.into(),
            content,
        }))
    }

    /// Write a file.
    #[tool(
        description = "Create or replace a text file in the workspace with exactly `text` (no shell quoting needed). An existing file keeps its mode (e.g. stays executable); missing directories are created. Paths are relative to /workspace and may not leave it.",
        annotations(
            title = "Write a workspace file",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_file_write(
        &self,
        Parameters(a): Parameters<WriteArgs>,
    ) -> Result<Json<FileWriteResult>, String> {
        if a.text.len() as u64 > workspace::FILE_LIMIT_DEFAULT {
            return Err(format!(
                "text is {} bytes, above the {} bytes workspace_file_write takes; push \
                 the file with workspace_sync_push",
                a.text.len(),
                workspace::FILE_LIMIT_DEFAULT
            ));
        }
        let (path, size, mode, created) = self
            .ctx
            .workspaces
            .file_write(
                &a.workspace_id,
                &a.path,
                a.text.as_bytes(),
                workspace::FILE_LIMIT_DEFAULT,
            )
            .await
            .map_err(tool_error)?;
        Ok(Json(FileWriteResult {
            workspace_id: a.workspace_id,
            path,
            bytes_written: size,
            mode: format!("{mode:04o}"),
            created,
        }))
    }

    /// Apply a patch.
    #[tool(
        description = "Apply a unified diff or `git diff` output to /workspace: edits, new and deleted files, renames, mode changes and (with git diff --binary) binary files. All files or none: if any hunk does not apply, nothing changes and the error says which file.",
        annotations(
            title = "Apply a patch",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_patch_apply(
        &self,
        Parameters(a): Parameters<PatchArgs>,
    ) -> Result<Json<PatchResult>, String> {
        let files = self
            .ctx
            .workspaces
            .patch_apply(&a.workspace_id, &a.patch)
            .await
            .map_err(tool_error)?;
        Ok(Json(PatchResult {
            workspace_id: a.workspace_id,
            files,
        }))
    }

    /// Diff against the baseline.
    #[tool(
        description = "Show what changed in /workspace since the workspace was created (or last reset) as a git-style patch plus a per-path summary. Use it to review work before workspace_export.",
        annotations(
            title = "Diff against the baseline",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_diff(
        &self,
        Parameters(a): Parameters<DiffArgs>,
    ) -> Result<Json<DiffResult>, String> {
        let d = self
            .ctx
            .workspaces
            .diff(
                &a.workspace_id,
                workspace::DiffLimits {
                    max_entries: a.max_entries,
                    max_patch_bytes: a.max_patch_bytes,
                },
            )
            .await
            .map_err(tool_error)?;
        Ok(Json(DiffResult {
            workspace_id: d.workspace_id,
            changed: d.changed,
            summary: d.summary,
            entries: d
                .entries
                .into_iter()
                .map(|e| DiffItem {
                    path: e.path,
                    status: e.status,
                    kind: e.kind,
                    binary: e.binary,
                    omitted: e.omitted,
                })
                .collect(),
            entries_not_listed: d.entries_not_listed,
            patch_bytes: d.patch_bytes,
            patch: d.patch,
            truncated: d.patch_truncated,
        }))
    }

    /// Export to the host.
    #[tool(
        description = "Copy a file or directory out of /workspace to a new host path (under the server's allowed roots), keeping modes and in-tree symlinks.",
        annotations(
            title = "Export from a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn workspace_export(
        &self,
        Parameters(a): Parameters<ExportArgs>,
    ) -> Result<Json<workspace::ExportView>, String> {
        let out = self.confine_new("output_path", &a.output_path)?;
        self.ctx
            .workspaces
            .export(&a.workspace_id, &a.path, &out)
            .await
            .map(Json)
            .map_err(tool_error)
    }

    /// Reset to the baseline.
    #[tool(
        description = "Return the workspace to its baseline (right after seeding): every change since, inside and outside /workspace (installed tools included), and the command history are discarded; name, labels and workspace_id stay. The VM reboots. Prefer it over repairing a broken workspace by hand.",
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
    ) -> Result<Json<workspace::View>, String> {
        let name = self
            .ctx
            .workspaces
            .environment_of(&a.workspace_id)
            .map_err(tool_error)?;
        let env = self.env(&name)?;
        let phase = Arc::new(Mutex::new("resetting and booting".to_owned()));
        with_progress(
            &rc,
            &phase,
            self.ctx
                .workspaces
                .reset(&env, &a.workspace_id, &a.snapshot),
        )
        .await
        .map(Json)
        .map_err(tool_error)
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
    ) -> Result<Json<DeleteResult>, String> {
        self.ctx
            .workspaces
            .delete(&a.workspace_id)
            .await
            .map_err(tool_error)?;
        Ok(Json(DeleteResult {
            workspace_id: a.workspace_id,
            deleted: true,
        }))
    }

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
    ) -> Result<Json<EnvList>, String> {
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

    /// Stop a workspace's VM.
    #[tool(
        description = "Stop a workspace's VM to free its memory; the disk is kept and workspace_start boots it again.",
        annotations(
            title = "Stop a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_stop(
        &self,
        Parameters(a): Parameters<IdArgs>,
    ) -> Result<Json<workspace::View>, String> {
        self.ctx
            .workspaces
            .stop(&a.workspace_id)
            .await
            .map(Json)
            .map_err(tool_error)
    }

    /// Start a stopped workspace.
    #[tool(
        description = "Boot a stopped workspace (stopped on request or after its idle deadline) from its disk, with all files as they were.",
        annotations(
            title = "Start a workspace",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn workspace_start(
        &self,
        Parameters(a): Parameters<IdArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<workspace::View>, String> {
        let name = self
            .ctx
            .workspaces
            .environment_of(&a.workspace_id)
            .map_err(tool_error)?;
        let env = self.env(&name)?;
        let phase = Arc::new(Mutex::new("booting".to_owned()));
        with_progress(
            &rc,
            &phase,
            self.ctx.workspaces.start(&env, &a.workspace_id),
        )
        .await
        .map(Json)
        .map_err(tool_error)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PyroServer {
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
mod tests {
    use super::*;

    #[test]
    fn commands_are_shell_strings_or_argv() {
        let c: CommandArg = serde_json::from_value(serde_json::json!("echo hi")).unwrap();
        assert_eq!(
            c.into_command().unwrap(),
            Command::Shell {
                script: "echo hi".into()
            }
        );
        let c: CommandArg =
            serde_json::from_value(serde_json::json!(["printf", "%s", "a b"])).unwrap();
        assert!(matches!(c.into_command().unwrap(), Command::Argv { argv } if argv.len() == 3));
        let c: CommandArg = serde_json::from_value(serde_json::json!([])).unwrap();
        assert!(c.into_command().is_err());
    }

    #[test]
    fn unknown_arguments_are_refused() {
        let err =
            serde_json::from_value::<CreateArgs>(serde_json::json!({"network_policy": "egress"}))
                .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `network_policy`"),
            "{err}"
        );
    }
}

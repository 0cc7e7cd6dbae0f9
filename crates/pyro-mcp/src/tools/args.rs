//! Tool arguments: their defaults, bounds and schemas.

use super::*;

/// Default output cap per stream returned to the model.
use pyro_core::limits::{self, Bound};

/// `#[serde(default = ...)]` wants a function: one per bound, returning the
/// bound's default.
macro_rules! defaults {
    ($($name:ident: $t:ty = $bound:expr;)*) => {
        $(pub(super) fn $name() -> $t {
            let b: Bound<$t> = $bound;
            b.default
        })*
    };
}

defaults! {
    default_timeout: u64 = limits::TIMEOUT_SECONDS;
    default_output: u64 = limits::OUTPUT_BYTES;
    default_ttl: u64 = limits::WORKSPACE_TTL_SECONDS;
    default_vcpus: u8 = limits::VCPUS;
    default_mem: u32 = limits::MEM_MIB;
    default_disk: u64 = limits::DISK_MIB;
    default_read: u64 = limits::FILE_READ_BYTES;
    default_write: u64 = limits::FILE_WRITE_BYTES;
    default_tail: usize = limits::LOGS_TAIL;
    default_log_output: u64 = limits::LOGS_OUTPUT_BYTES;
    default_patch_cap: u64 = limits::DIFF_PATCH_BYTES;
    default_list_entries: usize = limits::LIST_ENTRIES;
    default_diff_entries: usize = limits::DIFF_ENTRIES;
    default_fork_count: u32 = limits::FORK_COUNT;
}

pub(super) fn default_env() -> String {
    pyro_core::environments::DEFAULT_ENVIRONMENT.into()
}
pub(super) fn default_root() -> String {
    workspace::WORKSPACE_ROOT.into()
}
pub(super) fn default_baseline() -> String {
    workspace::BASELINE.into()
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

impl From<CommandArg> for Command {
    /// As given: core refuses an empty command, in words for this server.
    fn from(c: CommandArg) -> Self {
        match c {
            CommandArg::Shell(script) => Command::Shell { script },
            CommandArg::Argv(argv) => Command::Argv { argv },
        }
    }
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
    #[schemars(range(min = limits::TIMEOUT_SECONDS.min, max = limits::TIMEOUT_SECONDS.max))]
    pub timeout_seconds: u64,
    /// Bytes of stdout and of stderr returned (the rest is counted in stdout_bytes/stderr_bytes).
    #[serde(default = "default_output")]
    #[schemars(range(min = limits::OUTPUT_BYTES.min, max = limits::OUTPUT_BYTES.max))]
    pub max_output_bytes: u64,
    /// Guest memory in MiB.
    #[serde(default = "default_mem")]
    #[schemars(range(min = limits::MEM_MIB.min, max = limits::MEM_MIB.max))]
    pub mem_mib: u32,
    /// Give the guest egress to the internet under the network policy (without it the guest has no network interface). Private, link-local and host addresses stay refused unless allow_cidrs names them.
    #[serde(default)]
    pub network: bool,
    /// Host names the guest may resolve and reach, as NAME or NAME:PORT (any TCP/UDP port, e.g. github.com:22). Names resolve on the host; other names do not resolve in the guest. Any entry narrows egress to the allowlists.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Networks the guest may reach, as CIDR or CIDR:PORT (e.g. 10.0.5.0/24:5432), even inside the ranges refused by default (private, link-local, CGNAT; a host address only as a /32).
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
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
    /// The VM stops after this many seconds without any call on the workspace (its disk is kept; workspace_status says so). Open shells and running services do not count as calls unless started with keep_alive.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = limits::WORKSPACE_TTL_SECONDS.min, max = limits::WORKSPACE_TTL_SECONDS.max))]
    pub ttl_seconds: u64,
    /// vCPUs.
    #[serde(default = "default_vcpus")]
    #[schemars(range(min = limits::VCPUS.min, max = limits::VCPUS.max))]
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    #[serde(default = "default_mem")]
    #[schemars(range(min = limits::MEM_MIB.min, max = limits::MEM_MIB.max))]
    pub mem_mib: u32,
    /// Size of the writable disk in MiB (sparse: only what is written uses space).
    #[serde(default = "default_disk")]
    #[schemars(range(min = limits::DISK_MIB.min, max = limits::DISK_MIB.max))]
    pub disk_mib: u64,
    /// What the guest may reach: off (no network interface), egress, or egress+published-ports (services may publish ports on the host's 127.0.0.1). Default: egress when allow_hosts or allow_cidrs is given, else off.
    pub network_policy: Option<String>,
    /// Host names the guest may resolve and reach, as NAME or NAME:PORT (any TCP/UDP port, e.g. github.com:22). Names resolve on the host; other names do not resolve in the guest. Any entry narrows egress to the allowlists.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Networks the guest may reach, as CIDR or CIDR:PORT (e.g. 10.0.5.0/24:5432), even inside the ranges refused by default (private, link-local, CGNAT; a host address only as a /32).
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// Secrets commands can be given with secret_env (workspace-full): each {"name", "value"} or {"name", "file_path"} (a host file under the allowed roots). Kept on the host only, never in a snapshot or fork, and redacted from every output.
    pub secrets: Option<Vec<SecretArg>>,
}

/// One secret of `workspace_create`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretArg {
    /// Its name: a letter or _, then letters, digits and _ (e.g. GITHUB_TOKEN).
    pub name: String,
    /// Its value (or give file_path).
    pub value: Option<String>,
    /// A host file holding its value (one trailing newline dropped).
    pub file_path: Option<String>,
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
    #[schemars(range(min = limits::TIMEOUT_SECONDS.min, max = limits::TIMEOUT_SECONDS.max))]
    pub timeout_seconds: u64,
    /// Bytes of stdout and of stderr returned (workspace_logs keeps up to 16 MiB).
    #[serde(default = "default_output")]
    #[schemars(range(min = limits::OUTPUT_BYTES.min, max = limits::OUTPUT_BYTES.max))]
    pub max_output_bytes: u64,
    /// Return after this many seconds even if the command still runs: it keeps running in the background (state: running) and workspace_exec_wait continues it.
    #[serde(default = "default_wait")]
    #[schemars(range(min = limits::WAIT_SECONDS.min, max = limits::WAIT_SECONDS.max))]
    pub wait_seconds: u64,
    /// Cap this command's memory, MiB; past it the guest's OOM killer ends it (default: it shares the guest's memory with the other commands).
    #[schemars(range(min = limits::COMMAND_MEMORY_MIB.0, max = limits::COMMAND_MEMORY_MIB.1))]
    pub max_memory_mib: Option<u64>,
    /// Cap this command's tasks (processes and threads) at once; forks past it fail (default: 512).
    #[schemars(range(min = limits::COMMAND_TASKS.0, max = limits::COMMAND_TASKS.1))]
    pub max_tasks: Option<u64>,
    /// Secrets of the workspace to give the command as environment variables, as {"SECRET": "VARIABLE"} (workspace-full). Their values never show: every output holds [redacted:SECRET] instead.
    pub secret_env: Option<BTreeMap<String, String>>,
}

fn default_wait() -> u64 {
    limits::WAIT_SECONDS.default
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecWaitArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The sequence of a command workspace_exec returned with state: running.
    pub sequence: u64,
    /// Wait at most this many seconds for it to end (it keeps running after).
    #[serde(default = "default_wait")]
    #[schemars(range(min = limits::WAIT_SECONDS.min, max = limits::WAIT_SECONDS.max))]
    pub wait_seconds: u64,
    /// Bytes of the new stdout and of the new stderr returned (workspace_logs keeps up to 16 MiB).
    #[serde(default = "default_output")]
    #[schemars(range(min = limits::OUTPUT_BYTES.min, max = limits::OUTPUT_BYTES.max))]
    pub max_output_bytes: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecCancelArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The sequence of a command running in the background.
    pub sequence: u64,
    /// Bytes of the output it wrote since the last wait returned (stdout and stderr each).
    #[serde(default = "default_output")]
    #[schemars(range(min = limits::OUTPUT_BYTES.min, max = limits::OUTPUT_BYTES.max))]
    pub max_output_bytes: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// Only the last this many commands.
    #[serde(default = "default_tail")]
    #[schemars(range(min = limits::LOGS_TAIL.min, max = limits::LOGS_TAIL.max))]
    pub tail: usize,
    /// Only this command (its sequence number from workspace_exec).
    #[serde(default)]
    pub sequence: Option<u64>,
    /// Bytes of each command's stdout and stderr returned: their ends (stdout_omitted_bytes says how much came before).
    #[serde(default = "default_log_output")]
    #[schemars(range(min = limits::LOGS_OUTPUT_BYTES.min, max = limits::LOGS_OUTPUT_BYTES.max))]
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
    #[schemars(range(min = limits::LIST_ENTRIES.min, max = limits::LIST_ENTRIES.max))]
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
    #[schemars(range(min = limits::FILE_READ_BYTES.min, max = limits::FILE_READ_BYTES.max))]
    pub max_bytes: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// File path; relative paths are under /workspace. Missing directories are created.
    pub path: String,
    /// The complete new content (at most max_bytes).
    pub text: String,
    /// The most bytes text may hold; a longer text is refused (push big files with workspace_sync_push).
    #[serde(default = "default_write")]
    #[schemars(range(min = limits::FILE_WRITE_BYTES.min, max = limits::FILE_WRITE_BYTES.max))]
    pub max_bytes: u64,
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
    #[schemars(range(min = limits::DIFF_PATCH_BYTES.min, max = limits::DIFF_PATCH_BYTES.max))]
    pub max_patch_bytes: u64,
    /// Changed paths listed (all are counted in summary).
    #[serde(default = "default_diff_entries")]
    #[schemars(range(min = limits::DIFF_ENTRIES.min, max = limits::DIFF_ENTRIES.max))]
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
    /// The snapshot to return to: `baseline` (the disk right after seeding) or a named snapshot.
    #[serde(default = "default_baseline")]
    pub snapshot: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The snapshot's name: 1 to 64 letters, digits, `.`, `_` and `-`, starting with a letter or digit (`baseline` is the workspace's disk right after seeding).
    pub snapshot_name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkArgs {
    /// The workspace to fork (it is not changed).
    pub workspace_id: String,
    /// Start from this snapshot of the workspace (see snapshot_list) instead of its current disk.
    pub snapshot: Option<String>,
    /// A name for the fork (with -1, -2... appended when count is more than 1).
    pub name: Option<String>,
    /// How many forks to make, all or none.
    #[serde(default = "default_fork_count")]
    #[schemars(range(min = limits::FORK_COUNT.min, max = limits::FORK_COUNT.max))]
    pub count: u32,
    /// Give the forks the workspace's secrets; without it they get none and secrets_left_out names them.
    #[serde(default)]
    pub with_secrets: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskExportArgs {
    /// The workspace_id of a stopped workspace.
    pub workspace_id: String,
    /// The tree to export, in the guest (`/`, the whole disk, by default).
    #[serde(default = "default_disk_root")]
    pub path: String,
    /// A new host path (under the server's allowed roots); it must not exist.
    pub output_path: String,
    /// `tar` or `ext4` (a standalone ext4 image).
    #[serde(default)]
    pub format: workspace::DiskFormat,
}

pub(super) fn default_disk_root() -> String {
    "/".into()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellOpenArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// Working directory; relative paths are under /workspace (the default).
    pub cwd: Option<String>,
    /// Terminal width.
    #[serde(default = "default_cols")]
    #[schemars(range(min = limits::SHELL_COLS.min, max = limits::SHELL_COLS.max))]
    pub cols: u16,
    /// Terminal height.
    #[serde(default = "default_rows")]
    #[schemars(range(min = limits::SHELL_ROWS.min, max = limits::SHELL_ROWS.max))]
    pub rows: u16,
    /// Extra environment variables.
    pub env: Option<BTreeMap<String, String>>,
    /// Keep the VM from its idle power-off while this shell is open (by default an open shell does not).
    #[serde(default)]
    pub keep_alive: bool,
    /// Secrets of the workspace to give the shell as environment variables, as {"SECRET": "VARIABLE"}. Their values never show: reads hold [redacted:SECRET] instead.
    pub secret_env: Option<BTreeMap<String, String>>,
}

/// `{"SECRET": "VARIABLE"}` as core takes it.
pub fn secret_env(map: Option<BTreeMap<String, String>>) -> Vec<String> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(secret, var)| format!("{secret}={var}"))
        .collect()
}

fn default_cols() -> u16 {
    limits::SHELL_COLS.default
}

fn default_rows() -> u16 {
    limits::SHELL_ROWS.default
}

fn default_read_chars() -> u64 {
    limits::SHELL_READ_CHARS.default
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellReadArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The shell_id returned by shell_open.
    pub shell_id: String,
    /// Where to read from: 0, then the previous read's next_cursor.
    #[serde(default)]
    pub cursor: u64,
    /// Most output returned, bytes (so at most this many characters).
    #[serde(default = "default_read_chars")]
    #[schemars(range(min = limits::SHELL_READ_CHARS.min, max = limits::SHELL_READ_CHARS.max))]
    pub max_chars: u64,
    /// Render the output as a person would see the terminal (control sequences applied, colours dropped).
    #[serde(default)]
    pub plain: bool,
    /// First wait until the output has been quiet this many milliseconds (or the shell ended): use it after shell_write.
    #[schemars(range(min = limits::SHELL_IDLE_MS.min, max = limits::SHELL_IDLE_MS.max))]
    pub wait_for_idle_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellWriteArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The shell_id returned by shell_open.
    pub shell_id: String,
    /// The text to type.
    pub input: String,
    /// Press Enter after it.
    #[serde(default = "yes")]
    pub append_newline: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSignalArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The shell_id returned by shell_open.
    pub shell_id: String,
    /// HUP, INT, TERM or KILL (to what runs in the shell's foreground).
    #[serde(default = "default_signal")]
    pub signal: String,
}

fn default_signal() -> String {
    limits::SHELL_SIGNAL.into()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellIdArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The shell_id returned by shell_open.
    pub shell_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// The allowlist fields are repeated in each struct rather than flattened:
// serde's `deny_unknown_fields` does not work with `flatten`.
pub struct NetworkSetArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// off, egress or egress+published-ports. Default: egress when allow_hosts or allow_cidrs is given, else off.
    pub network_policy: Option<String>,
    /// Host names the guest may resolve and reach, as NAME or NAME:PORT (any TCP/UDP port, e.g. github.com:22). Names resolve on the host; other names do not resolve in the guest. Any entry narrows egress to the allowlists.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Networks the guest may reach, as CIDR or CIDR:PORT (e.g. 10.0.5.0/24:5432), even inside the ranges refused by default (private, link-local, CGNAT; a host address only as a /32).
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkLogArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// How many of the newest denials to return.
    #[serde(default = "default_network_log")]
    #[schemars(range(min = limits::NETWORK_LOG_ENTRIES.min, max = limits::NETWORK_LOG_ENTRIES.max))]
    pub limit: usize,
}

fn default_network_log() -> usize {
    limits::NETWORK_LOG_ENTRIES.default
}

//! Tool results (structured content and its JSON text copy).

use super::*;

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

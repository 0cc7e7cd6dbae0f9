//! The documents workspace calls return: the CLI prints them with `--json`
//! and the MCP server returns them as structured content, so both front
//! ends give the same document for the same operation.

use super::*;

/// Every workspace.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ListView {
    /// How many.
    pub count: usize,
    /// Most recently active first.
    pub workspaces: Vec<View>,
}

/// A deletion.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeleteView {
    /// The deleted workspace.
    pub workspace_id: String,
    /// Always true.
    pub deleted: bool,
}

/// A listing of a path in `/workspace`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileListView {
    /// Workspace.
    pub workspace_id: String,
    /// The listed path, absolute.
    pub path: String,
    /// What the path is.
    pub kind: EntryKind,
    /// Whether the whole subtree was listed (else only the children).
    pub recursive: bool,
    /// The first entries in tree order (the path itself when it is not a
    /// directory).
    pub entries: Vec<FileEntry>,
    /// Every entry, returned or not.
    pub total: u64,
    /// Whether `entries` stops short of `total` (raise the entry limit or
    /// list a subdirectory).
    pub truncated: bool,
}

/// A file read: the bytes, turned into [`FileReadView`] for a document.
#[derive(Debug, Clone)]
pub struct FileRead {
    /// Workspace.
    pub workspace_id: String,
    /// The path, absolute.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// The whole content.
    pub data: Vec<u8>,
    /// Secret values redacted from it.
    pub redactions: u64,
}

impl super::secrets::Redact for FileRead {
    fn redact(&mut self, r: &crate::redact::Redactor) {
        if !r.is_empty() {
            let (data, n) = r.bytes(&self.data);
            self.data = data;
            self.redactions += n;
        }
    }
}

impl FileRead {
    /// The document: text as is, anything else base64.
    pub fn into_view(self) -> FileReadView {
        let size_bytes = self.data.len() as u64;
        let (content, encoding) = match String::from_utf8(self.data) {
            Ok(t) => (t, "utf-8"),
            Err(e) => (base64(e.as_bytes()), "base64"),
        };
        FileReadView {
            workspace_id: self.workspace_id,
            path: self.path,
            size_bytes,
            mode: format!("{:04o}", self.mode),
            encoding: encoding.to_owned(),
            content,
            redactions: self.redactions,
        }
    }
}

/// A file read, as a document.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileReadView {
    /// Workspace.
    pub workspace_id: String,
    /// The path, absolute.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Permission bits, octal.
    pub mode: String,
    /// `utf-8` or, for binary files, `base64`.
    pub encoding: String,
    /// The content.
    pub content: String,
    /// Secret values redacted from the content (each shows as
    /// `[redacted:NAME]`, so `size_bytes` is the redacted size).
    #[serde(skip_serializing_if = "crate::workspace::is_zero")]
    pub redactions: u64,
}

/// A file write.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileWriteView {
    /// Workspace.
    pub workspace_id: String,
    /// The path, absolute.
    pub path: String,
    /// Bytes written.
    pub bytes_written: u64,
    /// Resulting mode, octal (an existing file keeps its mode).
    pub mode: String,
    /// Whether the file is new.
    pub created: bool,
}

/// A patch application.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PatchView {
    /// Workspace.
    pub workspace_id: String,
    /// Whether any file changed (always true: a patch that changes nothing is refused).
    pub changed: bool,
    /// The files it changed.
    pub files: Vec<PatchedFile>,
}

/// A reset: the workspace, and what the reset did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResetView {
    /// The workspace after the reset.
    #[serde(flatten)]
    pub workspace: View,
    /// What the reset did.
    pub workspace_reset: ResetInfo,
}

/// What a reset did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResetInfo {
    /// The snapshot the disk returned to.
    pub snapshot_name: String,
    /// `baseline` or `named`.
    pub kind: SnapshotKind,
    /// What the reset cleared besides the disk (snapshots are kept).
    pub cleared: Vec<String>,
}

/// Command history.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogsView {
    /// Workspace.
    pub workspace_id: String,
    /// Commands logged since creation or the last reset.
    pub count: usize,
    /// The asked-for ones, oldest first, output cut to the asked-for size.
    pub entries: Vec<LogEntry>,
}

//! Diffs against the baseline, computed incrementally: the guest reports a
//! manifest (paths, kinds, modes, content hashes), the host compares it with
//! the baseline manifest, fetches only the changed files, and renders a
//! git-style patch against its copy of the baseline files. The patch is one
//! `pyro workspace patch apply` accepts.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyro_protocol::{EntryKind, ManifestEntry, Request, tree_order};
use serde::Serialize;

use crate::CoreError;
use crate::jsonl::Lines;
use crate::sandbox::Sandbox;

mod changes;
mod patch;

pub use changes::*;
pub use patch::*;

/// Bytes of changed content a diff fetches from the guest (and, apart, reads
/// from the baseline); files beyond it are listed as omitted.
pub const FETCH_LIMIT: u64 = 64 << 20;
/// Largest manifest (JSON lines) accepted from the guest: about five million
/// files.
pub const MANIFEST_LIMIT: u64 = 1 << 30;

/// How much of a diff to return.
#[derive(Debug, Clone, Copy)]
pub struct DiffLimits {
    /// Changed paths listed in [`DiffView::entries`].
    pub max_entries: usize,
    /// Bytes of patch text in [`DiffView::patch`].
    pub max_patch_bytes: u64,
}

impl Default for DiffLimits {
    fn default() -> Self {
        Self {
            max_entries: crate::limits::DIFF_ENTRIES.default,
            max_patch_bytes: crate::limits::DIFF_PATCH_BYTES.default,
        }
    }
}

/// A diff.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DiffView {
    /// Workspace.
    pub workspace_id: String,
    /// Whether anything changed.
    pub changed: bool,
    /// Counts by status, `omitted` and `total` (every changed path, listed
    /// or not).
    pub summary: BTreeMap<String, u64>,
    /// The first changed paths, in tree order.
    pub entries: Vec<DiffEntry>,
    /// Changed paths counted but not listed in `entries`.
    pub entries_not_listed: u64,
    /// The start of the git-style patch (whole files, unless one file alone
    /// is over the limit).
    pub patch: String,
    /// Size of the whole patch.
    pub patch_bytes: u64,
    /// Whether `patch` is only the start of it (raise the patch size
    /// limit, or export the files).
    pub truncated: bool,
    /// Bytes of changed content fetched from the guest.
    pub bytes_fetched: u64,
    /// Secret values redacted from the patch and the paths (each shows as
    /// `[redacted:NAME]`).
    #[serde(skip_serializing_if = "crate::workspace::is_zero")]
    pub redactions: u64,
    #[serde(skip)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    full_patch: Option<Arc<tempfile::TempPath>>,
    /// Applied to the whole patch as it is written out.
    #[serde(skip)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    redactor: Option<crate::redact::Redactor>,
}

impl crate::workspace::secrets::Redact for DiffView {
    fn redact(&mut self, r: &crate::redact::Redactor) {
        if r.is_empty() {
            return;
        }
        let mut n = 0;
        r.scrub(&mut self.patch, &mut n);
        // A patch cut at its limit may end with the start of a value: that
        // start goes too.
        if self.truncated {
            let mut cut = self.patch.len() - r.pending(self.patch.as_bytes());
            while !self.patch.is_char_boundary(cut) {
                cut -= 1;
            }
            self.patch.truncate(cut);
        }
        for e in &mut self.entries {
            r.scrub(&mut e.path, &mut n);
            if let Some(o) = e.omitted.as_mut() {
                r.scrub(o, &mut n);
            }
        }
        self.redactions += n;
        self.redactor = Some(r.clone());
    }
}

impl DiffView {
    /// Writes the whole patch (also the part past [`DiffView::patch`]).
    pub fn write_patch(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match (&self.full_patch, &self.redactor) {
            (Some(p), None) => {
                std::io::copy(&mut std::fs::File::open(p.to_path_buf())?, out)?;
                Ok(())
            }
            (Some(p), Some(r)) => {
                let mut f = std::fs::File::open(p.to_path_buf())?;
                let mut s = r.stream();
                let mut buf = vec![0; 64 << 10];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&s.push(&buf[..n]))?;
                }
                out.write_all(&s.finish())
            }
            (None, _) => out.write_all(self.patch.as_bytes()),
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DiffEntry {
    /// Path relative to `/workspace`.
    pub path: String,
    /// How it changed.
    pub status: Status,
    /// What it is now (or was).
    pub kind: EntryKind,
    /// Whether the content is binary (no text patch).
    pub binary: bool,
    /// Set when its content is left out of the patch, saying why (over the
    /// diff's content budget, unreadable); the patch then has a `# pyro:`
    /// line for it instead of a diff, never an emptied or added file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted: Option<String>,
}

/// Spools the guest's manifest of `/workspace` into `out`, every line
/// checked (read it back with [`Lines`]).
pub async fn fetch_manifest(sandbox: &Sandbox, out: &Path) -> Result<(), CoreError> {
    match sandbox
        .get_lines::<ManifestEntry>(
            Request::Manifest {
                root: super::WORKSPACE_ROOT.into(),
            },
            out,
            MANIFEST_LIMIT,
            std::time::Duration::from_secs(600),
        )
        .await?
    {
        pyro_protocol::Response::Manifest { .. } => Ok(()),
        other => Err(crate::sandbox::unexpected(other)),
    }
}

/// What a diff's first pass decides: which changed files to fetch, in
/// tree order, within the budget.
fn plan(base: &Path, now: &Path) -> Result<Vec<String>, CoreError> {
    let mut wanted = Vec::new();
    let mut budget = Budget::new();
    merge(Lines::open(base)?, Lines::open(now)?, &mut |c: Change| {
        if c.needs_new_content() && budget.take(&c) {
            wanted.push(c.path);
        }
        Ok(())
    })?;
    Ok(wanted)
}

/// The fetch budget, spent in tree order: both passes make the same choice
/// for every file without remembering it.
struct Budget {
    bytes: u64,
    names: usize,
}

/// Room for the names in one request (well under the frame limit).
const NAMES_LIMIT: usize = 8 << 20;

impl Budget {
    fn new() -> Self {
        Self {
            bytes: FETCH_LIMIT,
            names: NAMES_LIMIT,
        }
    }

    /// Whether `c`'s new content fits (and charges it if so).
    fn take(&mut self, c: &Change) -> bool {
        let size = c.new.as_ref().map_or(0, |n| n.size);
        // What it costs in the archive: a header, long-name records and the
        // content padded to 512-byte blocks; and its name in the request.
        let cost = 1536 + size.div_ceil(512) * 512;
        let name = serde_json::to_string(&c.path).map_or(usize::MAX, |s| s.len() + 1);
        if cost <= self.bytes && name <= self.names {
            self.bytes -= cost;
            self.names -= name;
            true
        } else {
            false
        }
    }
}

/// Most lines (old and new together) one file's text diff covers.
pub const LINE_LIMIT: usize = 500_000;

fn too_many_lines(old: Option<&[u8]>, new: Option<&[u8]>) -> bool {
    let lines = |b: Option<&[u8]>| b.map_or(0, bytecount_lines);
    lines(old) + lines(new) > LINE_LIMIT
}

fn bytecount_lines(b: &[u8]) -> usize {
    b.iter().filter(|c| **c == b'\n').count()
}

/// Path -> (is a symlink, content or link target).
type Fetched = HashMap<String, (bool, Vec<u8>)>;

/// Reads the fetched tar, never more than the budget of content.
fn read_fetched(tar: &Path) -> Result<(Fetched, u64), CoreError> {
    let bad = |e: std::io::Error| CoreError::Transport(format!("reading the fetched files: {e}"));
    let f = std::fs::File::open(tar).map_err(bad)?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let mut fetched = Fetched::new();
    let mut bytes = 0;
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let kind = entry.header().entry_type();
        let data = if kind == tar::EntryType::Symlink {
            entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.as_os_str().as_encoded_bytes().to_vec())
                .unwrap_or_default()
        } else if kind == tar::EntryType::Regular {
            // Never more than the budget, whatever the header says (a
            // sparse entry would expand its holes).
            let room = FETCH_LIMIT.saturating_sub(bytes);
            let mut data = Vec::new();
            (&mut entry)
                .take(room + 1)
                .read_to_end(&mut data)
                .map_err(bad)?;
            if data.len() as u64 > room {
                // Grown past the budget since the manifest (or a guest
                // sending more than asked): left out, so it reads as
                // changed meanwhile.
                continue;
            }
            data
        } else {
            // Not something a diff asked for: leave it out.
            continue;
        };
        bytes += data.len() as u64;
        fetched.insert(path, (kind == tar::EntryType::Symlink, data));
    }
    Ok((fetched, bytes))
}

/// Reads a baseline file or link target (never following a link at the
/// end, never more than `room` bytes). `None` when it cannot be read.
fn read_old(files: &Path, e: &ManifestEntry, room: u64) -> Option<Vec<u8>> {
    if e.kind == EntryKind::Symlink {
        return super::materialize::read_link_beneath(files, &e.path)
            .map(|t| t.as_os_str().as_encoded_bytes().to_vec());
    }
    let f = super::materialize::open_regular_beneath(files, &e.path)?;
    let mut data = Vec::new();
    f.take(room + 1).read_to_end(&mut data).ok()?;
    (data.len() as u64 <= room).then_some(data)
}

/// Everything a diff's second pass needs.
struct Render {
    id: String,
    base: PathBuf,
    now: PathBuf,
    files: PathBuf,
    patch_path: PathBuf,
    fetched: Fetched,
    bytes_fetched: u64,
    limits: DiffLimits,
}

/// The second pass: walks both manifests again, renders each change into
/// the patch file and keeps the first entries.
fn render_all(r: Render) -> Result<DiffView, CoreError> {
    let out = std::fs::File::create(&r.patch_path)
        .map_err(|e| CoreError::io("creating the patch file", e))?;
    let mut out = std::io::BufWriter::new(out);
    let mut budget = Budget::new();
    let mut old_room = FETCH_LIMIT;
    let mut entries = Vec::new();
    let mut summary: BTreeMap<String, u64> = BTreeMap::new();
    let mut total: u64 = 0;
    let mut patch = String::new();
    let mut patch_bytes: u64 = 0;
    let mut patch_truncated = false;
    let mut kept_bytes = 0;
    merge(
        Lines::open(&r.base)?,
        Lines::open(&r.now)?,
        &mut |c: Change| {
            let fits = c.needs_new_content() && budget.take(&c);
            let old_needed = matches!(
                c.status,
                Status::Modified | Status::Deleted | Status::TypeChanged
            ) && c
                .old
                .as_ref()
                .is_some_and(|o| matches!(o.kind, EntryKind::File | EntryKind::Symlink));
            let old_over = old_needed && c.old.as_ref().is_some_and(|o| o.size > old_room);
            let old = if old_needed && !old_over {
                c.old.as_ref().and_then(|o| read_old(&r.files, o, old_room))
            } else {
                None
            };
            old_room -= old.as_ref().map_or(0, |o| o.len() as u64);
            // Fetched content counts only if it is what the manifest
            // described (same type, same hash): a file that changed in the
            // meantime is not rendered from a different version.
            let new = r
                .fetched
                .get(&c.path)
                .filter(|(is_link, data)| {
                    c.new.as_ref().is_some_and(|n| match n.kind {
                        EntryKind::Symlink => {
                            *is_link
                                && n.link_target.as_deref().map(str::as_bytes)
                                    == Some(data.as_slice())
                        }
                        EntryKind::File => {
                            !*is_link
                                && n.sha256.as_deref()
                                    == Some(pyro_env::sha256_bytes(data).as_str())
                        }
                        _ => false,
                    })
                })
                .map(|(_, data)| data.as_slice());
            let status = serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let control_chars = c.path.chars().any(char::is_control);
            // Content that should be there and is not is said to be
            // missing, never shown as an emptied, deleted or added file.
            let omitted = if control_chars {
                // A name with a newline could forge patch lines.
                Some("its name contains control characters, which a patch cannot carry".into())
            } else if c.needs_new_content() && new.is_none() {
                Some(if fits {
                    "it changed or went away while the diff was taken; diff again".into()
                } else {
                    format!(
                        "it is {} bytes, over the {} MiB of changed content a diff fetches; \
                         export it to see it",
                        c.new.as_ref().map_or(0, |n| n.size),
                        FETCH_LIMIT >> 20
                    )
                })
            } else if too_many_lines(old.as_deref(), new) {
                Some(format!(
                    "it has over {LINE_LIMIT} lines between its two versions, more than a diff \
                     renders; export it to compare"
                ))
            } else if old_over {
                Some(format!(
                    "its baseline copy is over the {} MiB of baseline content a diff reads",
                    FETCH_LIMIT >> 20
                ))
            } else if old_needed && old.is_none() {
                Some("its baseline copy on the host cannot be read".into())
            } else {
                None
            };
            let (text, binary) = match &omitted {
                Some(why) => (
                    format!(
                        "# pyro: {status} {}: content omitted: {why}\n",
                        if control_chars {
                            format!("{:?}", c.path)
                        } else {
                            c.path.clone()
                        }
                    ),
                    false,
                ),
                None => render(&c, old.as_deref(), new),
            };
            out.write_all(text.as_bytes())
                .map_err(|e| CoreError::io("writing the patch file", e))?;
            if !patch_truncated && patch_bytes + text.len() as u64 <= r.limits.max_patch_bytes {
                patch.push_str(&text);
            } else if !patch_truncated {
                patch_truncated = true;
                if patch.is_empty() {
                    // One file alone over the limit: its start.
                    let mut end = usize::try_from(r.limits.max_patch_bytes).unwrap_or(usize::MAX);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    patch.push_str(&text[..end]);
                }
            }
            patch_bytes += text.len() as u64;
            if omitted.is_some() {
                *summary.entry("omitted".into()).or_default() += 1;
            }
            *summary.entry(status).or_default() += 1;
            total += 1;
            if entries.len() < r.limits.max_entries
                && kept_bytes + c.path.len() <= super::KEPT_BYTES_MAX
            {
                kept_bytes += c.path.len();
                entries.push(DiffEntry {
                    kind: c
                        .new
                        .as_ref()
                        .or(c.old.as_ref())
                        .map_or(EntryKind::File, |e| e.kind),
                    path: c.path,
                    status: c.status,
                    binary,
                    omitted,
                });
            }
            Ok(())
        },
    )?;
    out.flush()
        .map_err(|e| CoreError::io("writing the patch file", e))?;
    summary.insert("total".into(), total);
    Ok(DiffView {
        workspace_id: r.id,
        changed: total > 0,
        summary,
        entries_not_listed: total - entries.len() as u64,
        entries,
        patch,
        patch_bytes,
        truncated: patch_truncated,
        bytes_fetched: r.bytes_fetched,
        full_patch: None,
        redactions: 0,
        redactor: None,
    })
}

/// Computes a diff of a running workspace against its baseline directory
/// (`manifest.jsonl` and `files/`). Spool files go to `tmp`. Host memory is
/// bounded by the fetch budget (the changed content, twice: once fetched,
/// once from the baseline) and the listed entries, whatever the file count.
pub async fn compute(
    sandbox: &Sandbox,
    id: &str,
    baseline: &Path,
    tmp: &Path,
    limits: DiffLimits,
) -> Result<DiffView, CoreError> {
    let base = baseline.join("manifest.jsonl");
    if !base.is_file() {
        return Err(CoreError::State(format!(
            "workspace {id} has no baseline manifest; it cannot be diffed (delete it and create it again)"
        )));
    }
    let spool = |suffix: &str| {
        tempfile::Builder::new()
            .prefix(".pyro-diff-")
            .suffix(suffix)
            .tempfile_in(tmp)
            .map(tempfile::NamedTempFile::into_temp_path)
            .map_err(|e| CoreError::io("creating a temp file", e))
    };
    let now = spool(".jsonl")?;
    fetch_manifest(sandbox, &now).await?;
    let wanted = {
        let (b, n) = (base.clone(), now.to_path_buf());
        crate::blocking(move || plan(&b, &n)).await?
    };
    let (fetched, bytes_fetched) = if wanted.is_empty() {
        (Fetched::new(), 0)
    } else {
        let tar = spool(".tar")?;
        sandbox
            .get_archive(
                Request::ReadFiles {
                    root: super::WORKSPACE_ROOT.into(),
                    paths: wanted,
                },
                &tar,
                // Room for tar headers and for files that grew since the
                // manifest.
                2 * FETCH_LIMIT,
            )
            .await?;
        crate::blocking(move || read_fetched(&tar)).await?
    };
    let patch_file = spool(".patch")?;
    let r = Render {
        id: id.to_owned(),
        base,
        now: now.to_path_buf(),
        files: baseline.join("files"),
        patch_path: patch_file.to_path_buf(),
        fetched,
        bytes_fetched,
        limits,
    };
    let mut view = crate::blocking(move || render_all(r)).await?;
    drop(now);
    view.full_patch = Some(Arc::new(patch_file));
    Ok(view)
}

#[cfg(test)]
mod tests;

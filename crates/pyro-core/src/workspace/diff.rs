//! Diffs against the baseline, computed incrementally: the guest reports a
//! manifest (paths, kinds, modes, content hashes), the host compares it with
//! the baseline manifest, fetches only the changed files, and renders a
//! git-style patch against its copy of the baseline files. The patch is one
//! `pyro workspace patch apply` accepts.

use std::collections::BTreeMap;

use pyro_protocol::{EntryKind, ManifestEntry};
use serde::Serialize;

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Status {
    /// New since the baseline.
    Added,
    /// Gone since the baseline.
    Deleted,
    /// Content changed (and maybe the mode).
    Modified,
    /// Only the mode changed.
    ModeChanged,
    /// A file became a symlink, a directory, or the other way round.
    TypeChanged,
}

/// One changed path, before rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Path relative to `/workspace`.
    pub path: String,
    /// How it changed.
    pub status: Status,
    /// The baseline entry.
    pub old: Option<ManifestEntry>,
    /// The current entry.
    pub new: Option<ManifestEntry>,
}

impl Change {
    /// Whether rendering needs the current content from the guest.
    pub fn needs_new_content(&self) -> bool {
        matches!(
            self.status,
            Status::Added | Status::Modified | Status::TypeChanged
        ) && self
            .new
            .as_ref()
            .is_some_and(|n| matches!(n.kind, EntryKind::File | EntryKind::Symlink))
    }
}

/// Compares two manifests. Directories only count when a path changes
/// between directory and non-directory (Git does not track directories).
pub fn changes(base: &[ManifestEntry], now: &[ManifestEntry]) -> Vec<Change> {
    let b: BTreeMap<&str, &ManifestEntry> = base.iter().map(|e| (e.path.as_str(), e)).collect();
    let n: BTreeMap<&str, &ManifestEntry> = now.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut paths: Vec<&str> = b.keys().chain(n.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut out = Vec::new();
    for p in paths {
        let (old, new) = (b.get(p).copied(), n.get(p).copied());
        let is_dir = |e: Option<&ManifestEntry>| e.is_some_and(|e| e.kind == EntryKind::Directory);
        let status = match (old, new) {
            (None, Some(_)) if is_dir(new) => continue,
            (Some(_), None) if is_dir(old) => continue,
            (None, Some(_)) => Status::Added,
            (Some(_), None) => Status::Deleted,
            (Some(o), Some(nw)) if o.kind != nw.kind => Status::TypeChanged,
            (Some(o), Some(_)) if o.kind == EntryKind::Directory => continue,
            (Some(o), Some(nw)) if o.sha256 != nw.sha256 || o.link_target != nw.link_target => {
                Status::Modified
            }
            (Some(o), Some(nw)) if git_mode(o) != git_mode(nw) => Status::ModeChanged,
            _ => continue,
        };
        out.push(Change {
            path: p.to_owned(),
            status,
            old: old.cloned(),
            new: new.cloned(),
        });
    }
    out
}

/// Git's mode string for an entry.
pub fn git_mode(e: &ManifestEntry) -> &'static str {
    match e.kind {
        EntryKind::Symlink => "120000",
        EntryKind::Directory => "040000",
        _ if e.mode & 0o111 != 0 => "100755",
        _ => "100644",
    }
}

fn is_text(b: &[u8]) -> bool {
    !b.contains(&0) && std::str::from_utf8(b).is_ok()
}

/// Renders one change as a git-style patch. `old`/`new` are the contents
/// (link targets for symlinks). Returns the text and whether the content is
/// binary (then only a marker line is rendered).
pub fn render(c: &Change, old: Option<&[u8]>, new: Option<&[u8]>) -> (String, bool) {
    let p = &c.path;
    let mut out = String::new();
    if c.status == Status::TypeChanged {
        // Git shows a type change as a deletion plus an addition.
        let del = Change {
            status: Status::Deleted,
            new: None,
            ..c.clone()
        };
        let add = Change {
            status: Status::Added,
            old: None,
            ..c.clone()
        };
        let (mut a, ab) = if del
            .old
            .as_ref()
            .is_some_and(|o| o.kind == EntryKind::Directory)
        {
            (String::new(), false)
        } else {
            render(&del, old, None)
        };
        let (b, bb) = if add
            .new
            .as_ref()
            .is_some_and(|n| n.kind == EntryKind::Directory)
        {
            (String::new(), false)
        } else {
            render(&add, None, new)
        };
        a.push_str(&b);
        return (a, ab || bb);
    }
    out.push_str(&format!("diff --git a/{p} b/{p}\n"));
    let (old_label, new_label) = match c.status {
        Status::Added => {
            out.push_str(&format!(
                "new file mode {}\n",
                c.new.as_ref().map_or("100644", git_mode)
            ));
            ("/dev/null".to_owned(), format!("b/{p}"))
        }
        Status::Deleted => {
            out.push_str(&format!(
                "deleted file mode {}\n",
                c.old.as_ref().map_or("100644", git_mode)
            ));
            (format!("a/{p}"), "/dev/null".to_owned())
        }
        _ => {
            let (om, nm) = (
                c.old.as_ref().map_or("", git_mode),
                c.new.as_ref().map_or("", git_mode),
            );
            if om != nm {
                out.push_str(&format!("old mode {om}\nnew mode {nm}\n"));
            }
            (format!("a/{p}"), format!("b/{p}"))
        }
    };
    if c.status == Status::ModeChanged {
        return (out, false);
    }
    let (o, n) = (old.unwrap_or_default(), new.unwrap_or_default());
    if !is_text(o) || !is_text(n) {
        out.push_str(&format!(
            "Binary files {old_label} and {new_label} differ\n"
        ));
        return (out, true);
    }
    let (o, n) = (String::from_utf8_lossy(o), String::from_utf8_lossy(n));
    let diff = similar::TextDiff::from_lines(o.as_ref(), n.as_ref());
    let body = diff
        .unified_diff()
        .context_radius(3)
        .header(&old_label, &new_label)
        .to_string();
    out.push_str(&body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha: &str, mode: u32) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode,
            size: 1,
            sha256: Some(sha.into()),
            link_target: None,
        }
    }

    fn dir(path: &str) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            kind: EntryKind::Directory,
            mode: 0o755,
            size: 0,
            sha256: None,
            link_target: None,
        }
    }

    #[test]
    fn classifies_changes_and_ignores_directories() {
        let base = vec![
            dir("d"),
            file("d/same", "1", 0o644),
            file("edit", "1", 0o644),
            file("gone", "1", 0o644),
            file("x", "1", 0o644),
        ];
        let now = vec![
            dir("d"),
            dir("newdir"),
            file("d/same", "1", 0o644),
            file("edit", "2", 0o644),
            file("new", "3", 0o644),
            file("x", "1", 0o755),
        ];
        let got: Vec<(String, Status)> = changes(&base, &now)
            .into_iter()
            .map(|c| (c.path, c.status))
            .collect();
        assert_eq!(
            got,
            [
                ("edit".to_owned(), Status::Modified),
                ("gone".to_owned(), Status::Deleted),
                ("new".to_owned(), Status::Added),
                ("x".to_owned(), Status::ModeChanged),
            ]
        );
    }

    #[test]
    fn renders_git_style_patches() {
        let c = Change {
            path: "message.txt".into(),
            status: Status::Modified,
            old: Some(file("message.txt", "1", 0o644)),
            new: Some(file("message.txt", "2", 0o644)),
        };
        let (text, binary) = render(&c, Some(b"broken\n"), Some(b"fixed\n"));
        assert!(!binary);
        assert_eq!(
            text,
            "diff --git a/message.txt b/message.txt\n--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n"
        );
        let add = Change {
            path: "run.sh".into(),
            status: Status::Added,
            old: None,
            new: Some(file("run.sh", "3", 0o755)),
        };
        let (text, _) = render(&add, None, Some(b"echo hi\n"));
        assert!(
            text.starts_with(
                "diff --git a/run.sh b/run.sh\nnew file mode 100755\n--- /dev/null\n+++ b/run.sh\n"
            ),
            "{text}"
        );
        let bin = Change {
            path: "img".into(),
            status: Status::Added,
            old: None,
            new: Some(file("img", "4", 0o644)),
        };
        let (text, binary) = render(&bin, None, Some(&[0, 1, 2]));
        assert!(
            binary && text.ends_with("Binary files /dev/null and b/img differ\n"),
            "{text}"
        );
    }
}

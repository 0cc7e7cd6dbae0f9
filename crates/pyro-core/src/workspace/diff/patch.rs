//! One change as git-style patch text.

use super::*;

/// Git's mode string for an entry.
pub fn git_mode(e: &ManifestEntry) -> &'static str {
    match e.kind {
        EntryKind::Symlink => "120000",
        EntryKind::Directory => "040000",
        _ if e.mode & 0o111 != 0 => "100755",
        _ => "100644",
    }
}

pub(super) fn is_text(b: &[u8]) -> bool {
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
    // A deadline keeps a pathological pair (many changed lines) from
    // holding the host: past it the diff is still correct, only less small.
    let diff = similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(2))
        .diff_lines(o.as_ref(), n.as_ref());
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

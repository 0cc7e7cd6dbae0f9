//! What changed between two manifests, in tree order.

use super::*;

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
    let mut out = Vec::new();
    let ok = |v: &[ManifestEntry]| -> Vec<Result<ManifestEntry, CoreError>> {
        let mut v = v.to_vec();
        v.sort_by(|a, b| tree_order(&a.path, &b.path));
        v.into_iter().map(Ok).collect()
    };
    let _ = merge(ok(base).into_iter(), ok(now).into_iter(), &mut |c| {
        out.push(c);
        Ok(())
    });
    out
}

/// Walks two manifests in tree order side by side (neither is held in
/// memory) and hands each changed path to `f`.
pub fn merge(
    base: impl Iterator<Item = Result<ManifestEntry, CoreError>>,
    now: impl Iterator<Item = Result<ManifestEntry, CoreError>>,
    f: &mut dyn FnMut(Change) -> Result<(), CoreError>,
) -> Result<(), CoreError> {
    let (mut base, mut now) = (base.peekable(), now.peekable());
    loop {
        let order = match (base.peek(), now.peek()) {
            (None, None) => return Ok(()),
            (Some(Err(_)), _) => {
                return Err(base.next().and_then(Result::err).unwrap_or_else(gone));
            }
            (_, Some(Err(_))) => return Err(now.next().and_then(Result::err).unwrap_or_else(gone)),
            (Some(Ok(_)), None) => Ordering::Less,
            (None, Some(Ok(_))) => Ordering::Greater,
            (Some(Ok(b)), Some(Ok(n))) => tree_order(&b.path, &n.path),
        };
        let (old, new) = match order {
            Ordering::Less => (base.next().and_then(Result::ok), None),
            Ordering::Greater => (None, now.next().and_then(Result::ok)),
            Ordering::Equal => (
                base.next().and_then(Result::ok),
                now.next().and_then(Result::ok),
            ),
        };
        if let Some(c) = classify(old, new) {
            f(c)?;
        }
    }
}

pub(super) fn gone() -> CoreError {
    CoreError::Transport("a manifest ended early".into())
}

pub(super) fn classify(old: Option<ManifestEntry>, new: Option<ManifestEntry>) -> Option<Change> {
    let is_dir =
        |e: &Option<ManifestEntry>| e.as_ref().is_some_and(|e| e.kind == EntryKind::Directory);
    let status = match (&old, &new) {
        (None, None) => return None,
        (None, Some(_)) if is_dir(&new) => return None,
        (Some(_), None) if is_dir(&old) => return None,
        (None, Some(_)) => Status::Added,
        (Some(_), None) => Status::Deleted,
        (Some(o), Some(nw)) if o.kind != nw.kind => Status::TypeChanged,
        (Some(o), Some(_)) if o.kind == EntryKind::Directory => return None,
        // A file whose content could not be hashed may have changed: it
        // is reported (and then omitted), never assumed the same.
        (Some(o), Some(nw))
            if o.sha256 != nw.sha256
                || o.link_target != nw.link_target
                || (o.kind == EntryKind::File && o.sha256.is_none()) =>
        {
            Status::Modified
        }
        (Some(o), Some(nw)) if git_mode(o) != git_mode(nw) => Status::ModeChanged,
        _ => return None,
    };
    let path = new.as_ref().or(old.as_ref())?.path.clone();
    Some(Change {
        path,
        status,
        old,
        new,
    })
}

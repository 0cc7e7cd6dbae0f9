//! Applying unified and git diffs, all files or none.
//!
//! Every file patch is parsed and applied in memory first (against the
//! current file, or symlink target, as its base); only when all succeed are
//! the results written to temp files beside their targets and renamed into
//! place, and deletions done. Git extended headers are honoured: new and
//! deleted files, renames, mode changes (including the executable bit and
//! symlinks) and, with `git diff --binary`, binary changes.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use diffy::patch_set::{FileMode, FileOperation, ParseOptions, PatchKind, PatchSet};
use pyro_protocol::{AgentError, ErrorKind, PatchedFile};

use crate::paths::no_symlink_between;
use pyro_archive::{relative_member, symlink_stays_inside};

fn rejected(msg: String) -> AgentError {
    AgentError::new(ErrorKind::PatchRejected, msg)
}

/// A file as the patch sees it.
#[derive(Debug, Clone)]
pub struct Base {
    /// Its bytes (a symlink's: its target).
    pub content: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
    /// Whether it is a symlink.
    pub symlink: bool,
}

#[derive(Debug)]
enum Action {
    Write {
        content: Vec<u8>,
        mode: u32,
        symlink: bool,
    },
    Delete,
}

#[derive(Debug)]
struct Planned {
    path: PathBuf,
    action: Action,
    status: &'static str,
    from: Option<PathBuf>,
}

fn read_base(root: &Path, rel: &Path) -> Result<Option<Base>, AgentError> {
    let full = root.join(rel);
    no_symlink_between(root, &full)?;
    let m = match std::fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AgentError::new(
                ErrorKind::Io,
                format!("reading {}: {e}", full.display()),
            ));
        }
    };
    if m.file_type().is_symlink() {
        let t =
            std::fs::read_link(&full).map_err(|e| AgentError::new(ErrorKind::Io, e.to_string()))?;
        return Ok(Some(Base {
            content: t.as_os_str().as_encoded_bytes().to_vec(),
            mode: 0o777,
            symlink: true,
        }));
    }
    if !m.is_file() {
        return Err(rejected(format!(
            "{} is not a regular file, so a patch cannot change it",
            rel.display()
        )));
    }
    let content =
        std::fs::read(&full).map_err(|e| AgentError::new(ErrorKind::Io, e.to_string()))?;
    Ok(Some(Base {
        content,
        mode: m.permissions().mode() & 0o7777,
        symlink: false,
    }))
}

fn path_of(bytes: &[u8], strip: bool) -> Result<PathBuf, AgentError> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| rejected("the patch names a path that is not UTF-8".into()))?;
    let s = if strip {
        s.split_once('/').map_or(s, |(_, rest)| rest)
    } else {
        s
    };
    relative_member(s).map_err(|e| {
        AgentError::new(
            ErrorKind::InvalidPath,
            format!("the patch names an unsafe path: {e}; paths must stay inside the workspace"),
        )
    })
}

/// Applies `patch` under `root`. Returns what changed, or an error with
/// nothing changed.
pub fn apply(root: &Path, patch: &str) -> Result<Vec<PatchedFile>, AgentError> {
    let planned = plan(patch, |rel| read_base(root, rel))?;
    commit(root, &planned)?;
    Ok(changes(&planned))
}

/// What `patch` would change, with `base_of` saying what a path (relative,
/// already checked to stay inside) holds now; nothing is written. The
/// guest's `apply` and the fuzz target share this.
pub fn check(
    patch: &str,
    base_of: impl FnMut(&Path) -> Result<Option<Base>, AgentError>,
) -> Result<Vec<PatchedFile>, AgentError> {
    plan(patch, base_of).map(|p| changes(&p))
}

fn changes(planned: &[Planned]) -> Vec<PatchedFile> {
    planned
        .iter()
        .map(|p| PatchedFile {
            path: p.path.display().to_string(),
            status: p.status.to_owned(),
            from: p.from.as_ref().map(|f| f.display().to_string()),
        })
        .collect()
}

fn plan(
    patch: &str,
    mut base_of: impl FnMut(&Path) -> Result<Option<Base>, AgentError>,
) -> Result<Vec<Planned>, AgentError> {
    let git = patch.starts_with("diff --git ") || patch.contains("\ndiff --git ");
    let opts = if git {
        ParseOptions::gitdiff()
    } else {
        ParseOptions::unidiff()
    };
    let mut planned: Vec<Planned> = Vec::new();
    let mut touched = BTreeSet::new();
    for fp in PatchSet::parse_bytes(patch.as_bytes(), opts) {
        let fp = fp.map_err(|e| {
            AgentError::new(
                ErrorKind::BadRequest,
                format!("the patch does not parse: {e}"),
            )
        })?;
        let op = fp.operation();
        // `a/` and `b/` prefixes are stripped when present (git and most
        // tools write them); bare paths are taken as they are.
        let strip = match op {
            FileOperation::Create(p) | FileOperation::Delete(p) => {
                p.starts_with(b"a/") || p.starts_with(b"b/")
            }
            FileOperation::Modify {
                original: a,
                modified: b,
            }
            | FileOperation::Rename { from: a, to: b }
            | FileOperation::Copy { from: a, to: b } => {
                a.starts_with(b"a/") && b.starts_with(b"b/")
            }
        };
        let (from, to, status) = match op {
            FileOperation::Create(p) => (None, path_of(p, strip)?, "added"),
            FileOperation::Delete(p) => (Some(path_of(p, strip)?), path_of(p, strip)?, "deleted"),
            FileOperation::Modify { original, modified } => (
                Some(path_of(original, strip)?),
                path_of(modified, strip)?,
                "modified",
            ),
            FileOperation::Rename { from, to } => {
                (Some(path_of(from, strip)?), path_of(to, strip)?, "renamed")
            }
            FileOperation::Copy { from, to } => {
                (Some(path_of(from, strip)?), path_of(to, strip)?, "copied")
            }
        };
        // A plain diff's two names are one file: different names would
        // leave the tool's intent (patch the old name? write the new one?)
        // to a guess. git's rename and copy headers say it.
        if status == "modified"
            && let Some(f) = from.as_ref().filter(|f| **f != to)
        {
            return Err(rejected(format!(
                "the patch's --- and +++ lines name different files ({} and {}); name the same \
                 file in both, or make the patch with git diff, whose rename header says a file \
                 moves",
                f.display(),
                to.display()
            )));
        }
        // Each path may be touched once: the target, and a rename's source.
        let mut paths = vec![to.clone()];
        if status == "renamed"
            && let Some(f) = &from
        {
            paths.push(f.clone());
        }
        for p in paths {
            if !touched.insert(p.clone()) {
                return Err(rejected(format!(
                    "the patch changes {} more than once",
                    p.display()
                )));
            }
        }
        let base = match &from {
            Some(f) => Some(base_of(f)?.ok_or_else(|| {
                rejected(format!(
                    "the patch changes {} which does not exist in the workspace",
                    f.display()
                ))
            })?),
            None => None,
        };
        if matches!(status, "added" | "renamed" | "copied") && base_of(&to)?.is_some() {
            return Err(rejected(format!(
                "the patch creates {} which already exists",
                to.display()
            )));
        }
        let empty = Base {
            content: Vec::new(),
            mode: 0o644,
            symlink: false,
        };
        let base_ref = base.as_ref().unwrap_or(&empty);
        let content = match fp.patch() {
            PatchKind::Text(p) => diffy::apply_bytes(&base_ref.content, p).map_err(|e| {
                rejected(format!(
                    "the patch does not apply to {}: {e}; its context lines must match the file as it is now",
                    to.display()
                ))
            })?,
            PatchKind::Binary(b) => b.apply(&base_ref.content).map_err(|e| {
                rejected(format!(
                    "{} has a binary change the patch cannot carry ({e}); regenerate it with `git diff --binary`",
                    to.display()
                ))
            })?,
        };
        if status == "deleted" {
            planned.push(Planned {
                path: to,
                action: Action::Delete,
                status,
                from: None,
            });
            continue;
        }
        let (mode, symlink) = match fp.new_mode() {
            Some(FileMode::Executable) => (0o755, false),
            // `new mode 100644`: a regular file without execute bits.
            Some(FileMode::Regular) if base.is_none() || base_ref.symlink => (0o644, false),
            Some(FileMode::Regular) => (base_ref.mode & !0o111, false),
            Some(FileMode::Symlink) => (0o777, true),
            Some(FileMode::Gitlink) => {
                return Err(rejected(format!(
                    "{} is a git submodule change, which a workspace cannot apply",
                    to.display()
                )));
            }
            None if base.is_none() => (0o644, false),
            None => (base_ref.mode, base_ref.symlink),
        };
        // A file the patch names but leaves as it was (a header without
        // hunks, or hunks that change nothing) is not reported as changed.
        if status == "modified"
            && base.is_some()
            && content == base_ref.content
            && (mode, symlink) == (base_ref.mode, base_ref.symlink)
        {
            continue;
        }
        if symlink {
            let target = PathBuf::from(
                String::from_utf8_lossy(&content)
                    .trim_end_matches('\n')
                    .to_owned(),
            );
            if !symlink_stays_inside(&to, &target) {
                return Err(rejected(format!(
                    "the patch makes {} a symlink to {} outside the workspace",
                    to.display(),
                    target.display()
                )));
            }
        }
        let from = if status == "renamed" { from } else { None };
        planned.push(Planned {
            path: to,
            action: Action::Write {
                content,
                mode,
                symlink,
            },
            status,
            from,
        });
    }
    if planned.is_empty() {
        return Err(AgentError::new(
            ErrorKind::BadRequest,
            "the patch contains no file changes".to_owned(),
        ));
    }
    Ok(planned)
}

/// Writes every new version to a temp file, then renames them all into
/// place and performs deletions. A failure before the renames removes the
/// temp files and leaves the tree as it was.
fn commit(root: &Path, planned: &[Planned]) -> Result<(), AgentError> {
    let mut temps: Vec<(PathBuf, PathBuf)> = Vec::new();
    let cleanup = |temps: &[(PathBuf, PathBuf)]| {
        for (t, _) in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    // Everything that could stop a rename is checked before the first one,
    // so a refused patch changes nothing.
    let writes: Vec<&Path> = planned
        .iter()
        .filter(|p| matches!(p.action, Action::Write { .. }))
        .map(|p| p.path.as_path())
        .collect();
    for (i, a) in writes.iter().enumerate() {
        if std::fs::symlink_metadata(root.join(a)).is_ok_and(|m| m.is_dir()) {
            return Err(rejected(format!(
                "{} is a directory in the workspace; the patch cannot write a file there",
                a.display()
            )));
        }
        if let Some(b) = writes
            .iter()
            .enumerate()
            .find(|(j, b)| *j != i && b.starts_with(a))
            .map(|(_, b)| b)
        {
            return Err(rejected(format!(
                "the patch writes both {} and {} below it; a path cannot be a file and a directory",
                a.display(),
                b.display()
            )));
        }
    }
    for p in planned {
        let Action::Write {
            content,
            mode,
            symlink,
        } = &p.action
        else {
            continue;
        };
        let target = root.join(&p.path);
        if let Err(e) = no_symlink_between(root, &target) {
            cleanup(&temps);
            return Err(e);
        }
        let parent = target.parent().unwrap_or(root);
        let staged = (|| -> std::io::Result<PathBuf> {
            std::fs::create_dir_all(parent)?;
            let (tmp, mut f) = crate::paths::new_temp(parent, "pyro-patch")?;
            if *symlink {
                drop(f);
                std::fs::remove_file(&tmp)?;
                let t = String::from_utf8_lossy(content)
                    .trim_end_matches('\n')
                    .to_owned();
                std::os::unix::fs::symlink(t, &tmp)?;
            } else {
                let written = f
                    .write_all(content)
                    .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(*mode)));
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
            Ok(tmp)
        })();
        match staged {
            Ok(tmp) => temps.push((tmp, target)),
            Err(e) => {
                cleanup(&temps);
                return Err(AgentError::new(
                    ErrorKind::Io,
                    format!("writing {}: {e}", p.path.display()),
                ));
            }
        }
    }
    for (tmp, target) in &temps {
        std::fs::rename(tmp, target).map_err(|e| {
            AgentError::new(
                ErrorKind::Io,
                format!("replacing {}: {e}", target.display()),
            )
        })?;
    }
    for p in planned {
        let gone = match (&p.action, &p.from) {
            (Action::Delete, _) => Some(&p.path),
            (_, Some(from)) => Some(from),
            _ => None,
        };
        if let Some(rel) = gone {
            let _ = std::fs::remove_file(root.join(rel));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

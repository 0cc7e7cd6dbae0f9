//! Path rules for workspace file operations: every path is an absolute,
//! normalized path at or below `/workspace`, and no operation walks through a
//! symlink (a link inside the tree may point anywhere, so following one could
//! leave the tree).

use std::path::{Component, Path, PathBuf};

use pyro_protocol::{AgentError, ErrorKind};

/// The workspace root inside the guest.
pub const WORKSPACE: &str = "/workspace";

fn invalid(msg: String) -> AgentError {
    AgentError::new(ErrorKind::InvalidPath, msg)
}

/// Creates a new temp file named `.{prefix}-{pid}-{n}` in `dir`, with a
/// name no other request of this agent uses at the same time (`create_new`:
/// never an existing file or a symlink planted there). Returns its path.
pub fn new_temp(dir: &Path, prefix: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{prefix}-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Checks that `p` is an absolute path at or below `/workspace` with no `.`
/// or `..` components, and returns it normalized.
pub fn workspace_path(p: &str) -> Result<PathBuf, AgentError> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(invalid(format!("{p:?} is not an absolute path")));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(invalid(format!(
                    "{p:?} contains `..`; paths must stay inside {WORKSPACE}"
                )));
            }
            Component::Prefix(_) => return Err(invalid(format!("{p:?} is not a Linux path"))),
        }
    }
    if !out.starts_with(WORKSPACE) {
        return Err(invalid(format!(
            "{p:?} is outside {WORKSPACE}; paths must stay inside {WORKSPACE}"
        )));
    }
    Ok(out)
}

/// Checks that no existing ancestor of `path` below `/workspace` is a
/// symlink (the path itself may be one; callers decide what that means).
pub fn no_symlink_ancestors(path: &Path) -> Result<(), AgentError> {
    no_symlink_between(Path::new(WORKSPACE), path)
}

/// Checks that no existing directory between `root` (exclusive) and `path`
/// (exclusive) is a symlink or a non-directory.
pub fn no_symlink_between(root: &Path, path: &Path) -> Result<(), AgentError> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| invalid(format!("{} is outside {}", path.display(), root.display())))?;
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(invalid(format!(
                    "{} goes through the symlink {}; pyro does not follow symlinks in workspace paths",
                    path.display(),
                    cur.display()
                )));
            }
            Ok(m) if !m.is_dir() => {
                return Err(AgentError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{} is a file, so {} cannot exist below it",
                        cur.display(),
                        path.display()
                    ),
                ));
            }
            Ok(_) => {}
            Err(_) => return Ok(()), // the rest does not exist yet
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

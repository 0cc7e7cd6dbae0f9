//! Temporary files, and cleaning up after a process that was killed.
//!
//! Each pyro process keeps its temp files (packed seeds, spooled listings,
//! diff spools) in its own directory, `tmp/<pid>.<start ticks>` under the
//! state directory. What must live elsewhere (an export's archive and
//! staging directory, which land beside the output so the final rename
//! stays on one filesystem, and the directories made for the output) is
//! first *noted* there: a note holding the directory (path, device and
//! inode) and the name is written and synced before the thing is created,
//! and removed after it is gone or kept. When the process is gone (its pid
//! no longer runs with the same start time), the next sweep removes what
//! its notes name (through a handle on the very directory noted, never
//! through a link; a made directory only if it is empty) and then its
//! directory, so a `kill -9` at any step leaves nothing behind once another
//! pyro command has run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pyro_vmm::process::ProcessId;

use crate::{CoreError, Paths};

/// Names of temp files in users' directories start with this.
pub const EXPORT_PREFIX: &str = ".pyro-export-";

/// Loose files in `tmp/` (from pyro versions before per-process temp
/// directories) are removed once they are older than this.
const LOOSE_AGE: Duration = Duration::from_secs(3600);

/// Markers are tiny; a bigger one is not ours to trust.
const MARKER_MAX_BYTES: u64 = 8192;

fn root(paths: &Paths) -> PathBuf {
    paths.state().join("tmp")
}

fn dir_name(p: ProcessId) -> String {
    format!("{}.{}", p.pid, p.start_ticks)
}

fn parse_dir_name(name: &str) -> Option<ProcessId> {
    let (pid, ticks) = name.split_once('.')?;
    Some(ProcessId {
        pid: pid.parse().ok()?,
        start_ticks: ticks.parse().ok()?,
    })
}

/// This process's temp directory (made on first use). Processes are told
/// apart by pid and start time, so one state directory must not be shared
/// across pid namespaces.
pub fn temp_dir(paths: &Paths) -> Result<PathBuf, CoreError> {
    // Without a known start time the sweep of another process could take
    // this one for dead: refuse rather than guess.
    let me = ProcessId::of(std::process::id()).ok_or_else(|| {
        CoreError::io(
            "reading this process's start time in /proc",
            std::io::Error::other("/proc/self/stat is unreadable; is /proc mounted?"),
        )
    })?;
    let dir = root(paths).join(dir_name(me));
    std::fs::create_dir_all(dir.join("notes"))
        .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// What a note asks the sweep to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// A temp file or directory (removed whole).
    Temp,
    /// A directory made for an output (removed only if empty).
    MadeDir,
}

/// A note's content: where the thing is, and which directory it was in
/// (device and inode, so a path that now leads elsewhere is not touched).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct NoteBody {
    kind: NoteKind,
    parent: PathBuf,
    dev: u64,
    ino: u64,
    name: String,
}

/// A note that something exists outside the state directory; dropping it
/// removes the note (drop it after the thing is gone or kept).
#[derive(Debug)]
pub struct Note {
    marker: PathBuf,
    /// The name noted (in the directory it was noted for).
    pub name: String,
}

impl Drop for Note {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.marker);
    }
}

/// Notes `name` in the existing directory `parent` before anything is
/// created there. For [`NoteKind::Temp`] pass `None` to get a fresh name
/// `.pyro-export-<random><suffix>`; create exactly [`Note::name`] (e.g.
/// `tempfile::Builder::prefix(&note.name).rand_bytes(0)`) and keep the note
/// alive longer than it.
pub fn note(
    paths: &Paths,
    kind: NoteKind,
    parent: &Path,
    name: Option<&str>,
    suffix: &str,
) -> Result<Note, CoreError> {
    use std::os::unix::fs::MetadataExt;
    let parent = parent
        .canonicalize()
        .map_err(|e| CoreError::io(format!("resolving {}", parent.display()), e))?;
    let meta = std::fs::metadata(&parent)
        .map_err(|e| CoreError::io(format!("reading {}", parent.display()), e))?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => format!("{EXPORT_PREFIX}{}{suffix}", crate::random_hex(8)),
    };
    let body = NoteBody {
        kind,
        parent,
        dev: meta.dev(),
        ino: meta.ino(),
        name: name.clone(),
    };
    let marker = temp_dir(paths)?.join("notes").join(crate::random_hex(8));
    let mut f = std::fs::File::create_new(&marker)
        .map_err(|e| CoreError::io(format!("creating {}", marker.display()), e))?;
    let bytes = serde_json::to_vec(&body).map_err(|e| CoreError::io("writing a note", e.into()))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| CoreError::io(format!("writing {}", marker.display()), e))?;
    Ok(Note { marker, name })
}

/// Removes the temp directories of processes that are gone, with what
/// their notes name, and old loose files. Returns one line per thing
/// removed and per problem.
pub fn sweep(paths: &Paths) -> (Vec<String>, Vec<String>) {
    let (mut removed, mut problems) = (Vec::new(), Vec::new());
    let Ok(rd) = std::fs::read_dir(root(paths)) else {
        return (removed, problems);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        match parse_dir_name(&name) {
            Some(p) if meta.is_dir() => {
                if p.is_alive() {
                    continue;
                }
                let mut notes = read_notes(&e.path().join("notes"));
                // Temp files first, then made directories deepest first.
                notes.sort_by_key(|n| {
                    (
                        n.kind == NoteKind::MadeDir,
                        std::cmp::Reverse(n.parent.as_os_str().len()),
                    )
                });
                for n in &notes {
                    let target = n.parent.join(&n.name);
                    match remove_noted(n) {
                        Ok(true) => removed.push(format!(
                            "Removed {}, left by an export whose pyro process is gone",
                            target.display()
                        )),
                        Ok(false) => {}
                        Err(err) => problems.push(format!(
                            "Did not remove {}, left by an export whose pyro process is gone: \
                             {err}; remove it by hand if it is still there",
                            target.display()
                        )),
                    }
                }
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    problems.push(format!(
                        "Could not remove {}, the temp files of a pyro process that is gone: \
                         {err}; remove it by hand",
                        e.path().display()
                    ));
                }
            }
            _ => {
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|age| age > LOOSE_AGE);
                if old {
                    let _ = if meta.is_dir() {
                        std::fs::remove_dir_all(e.path())
                    } else {
                        std::fs::remove_file(e.path())
                    };
                }
            }
        }
    }
    (removed, problems)
}

fn read_notes(notes: &Path) -> Vec<NoteBody> {
    use std::io::Read;
    let Ok(rd) = std::fs::read_dir(notes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let mut bytes = Vec::new();
        let read = std::fs::File::open(e.path())
            .and_then(|f| f.take(MARKER_MAX_BYTES).read_to_end(&mut bytes));
        if read.is_ok()
            && let Ok(body) = serde_json::from_slice::<NoteBody>(&bytes)
        {
            out.push(body);
        }
    }
    out
}

/// Removes what a note names, if it is still there. The directory it was
/// in is opened without following any link and must be the very directory
/// noted (device and inode); the name must be a single component, and a
/// temp's name an export temp name. Whether something was removed.
fn remove_noted(n: &NoteBody) -> std::io::Result<bool> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let single = !n.name.is_empty() && !n.name.contains('/') && n.name != "." && n.name != "..";
    let ours = single
        && n.parent.is_absolute()
        && (n.kind == NoteKind::MadeDir || n.name.starts_with(EXPORT_PREFIX));
    if !ours {
        return Ok(false);
    }
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let dir = match nix::fcntl::openat2(nix::fcntl::AT_FDCWD, n.parent.as_path(), how) {
        Ok(fd) => std::fs::File::from(fd),
        Err(nix::errno::Errno::ENOENT) if n.kind == NoteKind::MadeDir => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let meta = dir.metadata()?;
    if (meta.dev(), meta.ino()) != (n.dev, n.ino) {
        return Err(std::io::Error::other(format!(
            "{} is no longer the directory the export used",
            n.parent.display()
        )));
    }
    // The entry, reached through the checked directory handle.
    let target = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(&n.name);
    match (n.kind, target.symlink_metadata()) {
        (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        (_, Err(e)) => Err(e),
        (NoteKind::MadeDir, Ok(m)) if m.is_dir() => {
            // Only if empty: whatever was put there since is the user's.
            Ok(std::fs::remove_dir(&target).is_ok())
        }
        (NoteKind::MadeDir, Ok(_)) => Ok(false),
        (NoteKind::Temp, Ok(m)) if m.is_dir() => std::fs::remove_dir_all(&target).map(|()| true),
        (NoteKind::Temp, Ok(_)) => std::fs::remove_file(&target).map(|()| true),
    }
}

#[cfg(test)]
mod tests;

//! Temporary files, and cleaning up after a process that was killed.
//!
//! Each pyro process keeps its temp files (packed seeds, spooled listings,
//! diff spools) in its own directory, `tmp/<pid>.<start ticks>` under the
//! state directory. A temp file that must live elsewhere (an export's
//! archive and staging directory, which land beside the output so the
//! final rename stays on one filesystem) is first *noted* there: a marker
//! file holding its path is written before the file is created, and
//! removed after it is gone. When the process is gone (its pid no longer
//! runs with the same start time), the next sweep removes what its markers
//! name and then its directory, so a `kill -9` at any step leaves nothing
//! behind for long.

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

/// This process's temp directory (made on first use).
pub fn temp_dir(paths: &Paths) -> Result<PathBuf, CoreError> {
    let dir = root(paths).join(dir_name(ProcessId::current()));
    std::fs::create_dir_all(dir.join("notes"))
        .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// A note that a temp file exists at a path outside the state directory;
/// dropping it removes the note (drop it after the file is gone).
#[derive(Debug)]
pub struct Note {
    marker: PathBuf,
    /// The temp file's name (in the directory it was noted for).
    pub name: String,
}

impl Drop for Note {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.marker);
    }
}

/// Picks a fresh name `.pyro-export-<random><suffix>` in `parent` and notes
/// it before anything is created there. Create the file or directory with
/// exactly [`Note::name`] (e.g. `tempfile::Builder::prefix(&note.name)
/// .rand_bytes(0)`), and keep the note alive longer than it.
pub fn note_export(paths: &Paths, parent: &Path, suffix: &str) -> Result<Note, CoreError> {
    let parent = std::path::absolute(parent)
        .map_err(|e| CoreError::io(format!("resolving {}", parent.display()), e))?;
    let name = format!("{EXPORT_PREFIX}{}{suffix}", crate::random_hex(8));
    let marker = temp_dir(paths)?.join("notes").join(&name);
    let mut f = std::fs::File::create_new(&marker)
        .map_err(|e| CoreError::io(format!("creating {}", marker.display()), e))?;
    f.write_all(parent.join(&name).as_os_str().as_encoded_bytes())
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
                for target in noted_targets(&e.path().join("notes")) {
                    match remove_noted(&target) {
                        Ok(true) => removed.push(format!(
                            "Removed {}, left by an export whose pyro process is gone",
                            target.display()
                        )),
                        Ok(false) => {}
                        Err(err) => problems.push(format!(
                            "Could not remove {}, left by an export whose pyro process is gone: \
                             {err}; remove it by hand",
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

fn noted_targets(notes: &Path) -> Vec<PathBuf> {
    use std::io::Read;
    use std::os::unix::ffi::OsStringExt;
    let Ok(rd) = std::fs::read_dir(notes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let mut bytes = Vec::new();
        let read = std::fs::File::open(e.path())
            .and_then(|f| f.take(MARKER_MAX_BYTES).read_to_end(&mut bytes));
        if read.is_ok() && !bytes.is_empty() {
            out.push(PathBuf::from(std::ffi::OsString::from_vec(bytes)));
        }
    }
    out
}

/// Removes a noted temp file or directory (never through a link). Only an
/// absolute path whose name is an export temp name is touched. Whether
/// something was removed.
fn remove_noted(target: &Path) -> std::io::Result<bool> {
    let ours = target.is_absolute()
        && target
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(EXPORT_PREFIX));
    if !ours {
        return Ok(false);
    }
    match target.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(target).map(|()| true),
        Ok(_) => std::fs::remove_file(target).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> (tempfile::TempDir, Paths) {
        let t = tempfile::tempdir().unwrap();
        let p = Paths::new(
            t.path().join("state"),
            pyro_env::Cache::new(t.path().join("c")),
        );
        (t, p)
    }

    /// A process that has exited (its identity can never match again).
    fn dead_process() -> ProcessId {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let p = ProcessId::of(child.id()).unwrap();
        child.wait().unwrap();
        p
    }

    #[test]
    fn a_dead_process_leaves_nothing_after_a_sweep() {
        let (t, paths) = paths();
        let out = t.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        // As an export killed midway leaves it: its temp dir with a note,
        // the noted archive and staging directory beside the output.
        let dead = root(&paths).join(dir_name(dead_process()));
        std::fs::create_dir_all(dead.join("notes")).unwrap();
        std::fs::write(dead.join("spool.jsonl"), "x").unwrap();
        for (name, dir) in [(".pyro-export-aa.tar", false), (".pyro-export-bb", true)] {
            let target = out.join(name);
            if dir {
                std::fs::create_dir_all(target.join("sub")).unwrap();
            } else {
                std::fs::write(&target, "tar").unwrap();
            }
            std::fs::write(
                dead.join("notes").join(name),
                target.as_os_str().as_encoded_bytes(),
            )
            .unwrap();
        }
        // A note naming something that is not an export temp is ignored.
        std::fs::write(out.join("precious"), "keep").unwrap();
        std::fs::write(
            dead.join("notes/x"),
            out.join("precious").as_os_str().as_encoded_bytes(),
        )
        .unwrap();
        // This process's own directory stays.
        let mine = temp_dir(&paths).unwrap();
        std::fs::write(mine.join("in-use"), "x").unwrap();

        let (removed, problems) = sweep(&paths);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!dead.exists());
        assert!(!out.join(".pyro-export-aa.tar").exists());
        assert!(!out.join(".pyro-export-bb").exists());
        assert_eq!(
            std::fs::read_to_string(out.join("precious")).unwrap(),
            "keep"
        );
        assert!(mine.join("in-use").exists());
    }

    #[test]
    fn a_note_lives_until_dropped_and_names_an_absent_file() {
        let (t, paths) = paths();
        let note = note_export(&paths, t.path(), ".tar").unwrap();
        assert!(note.name.starts_with(EXPORT_PREFIX) && note.name.ends_with(".tar"));
        assert!(!t.path().join(&note.name).exists());
        let marker = note.marker.clone();
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            t.path().join(&note.name).to_string_lossy()
        );
        drop(note);
        assert!(!marker.exists());
    }
}

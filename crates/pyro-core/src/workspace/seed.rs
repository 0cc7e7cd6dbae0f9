//! Turning a host directory or archive into a validated tar for the guest:
//! the same rules as the agent's (relative names, files/directories/symlinks
//! only, symlinks that stay inside, modes kept), checked on the host before
//! anything is created, so bad input never leaves half a workspace.

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::{CoreError, Paths};

/// Which files of a directory to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SeedMode {
    /// Everything under the directory (`.git` included).
    #[default]
    All,
    /// Only the files Git tracks (`git ls-files`), without `.git`.
    GitTracked,
}

impl SeedMode {
    /// The user-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::GitTracked => "git-tracked",
        }
    }
}

/// A packed, validated tar ready to stream.
#[derive(Debug)]
pub struct Prepared {
    /// The tar file (deleted on drop).
    pub tar: tempfile::NamedTempFile,
    /// `directory` or `archive`.
    pub mode: &'static str,
    /// The source, made absolute.
    pub source: PathBuf,
    /// Entries in the tar.
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Packs `source` (a directory, or a `.tar`/`.tar.gz`/`.tgz` archive).
pub fn prepare(paths: &Paths, source: &Path, mode: SeedMode) -> Result<Prepared, CoreError> {
    let meta = std::fs::metadata(source).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CoreError::invalid(format!("{} does not exist", source.display()))
        } else {
            CoreError::io(format!("reading {}", source.display()), e)
        }
    })?;
    let source = source
        .canonicalize()
        .map_err(|e| CoreError::io(format!("resolving {}", source.display()), e))?;
    let tar = tempfile::Builder::new()
        .prefix("seed-")
        .suffix(".tar")
        .tempfile_in(crate::scratch::temp_dir(paths)?)
        .map_err(|e| CoreError::io("creating a temp file for the seed", e))?;
    let invalid = |e: pyro_archive::ArchiveError| CoreError::invalid(e.message);
    let (kind, packed) = if meta.is_dir() {
        let only = match mode {
            SeedMode::All => None,
            SeedMode::GitTracked => Some(git_tracked(&source)?),
        };
        let out = std::io::BufWriter::new(tar.as_file());
        (
            "directory",
            pyro_archive::pack_tree(&source, only.as_ref(), out).map_err(invalid)?,
        )
    } else {
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if mode == SeedMode::GitTracked {
            return Err(CoreError::invalid(format!(
                "⟨arg:seed_mode=git-tracked⟩ needs a directory (a Git checkout), not {}",
                source.display()
            )));
        }
        let f = std::fs::File::open(&source)
            .map_err(|e| CoreError::io(format!("opening {}", source.display()), e))?;
        let out = std::io::BufWriter::new(tar.as_file());
        let packed = if name.ends_with(".tar") {
            pyro_archive::repack(BufReader::new(f), out)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            pyro_archive::repack(flate2::read::GzDecoder::new(BufReader::new(f)), out)
        } else {
            return Err(CoreError::invalid(format!(
                "{} is neither a directory nor a .tar, .tar.gz or .tgz archive",
                source.display()
            )));
        };
        (
            "archive",
            packed
                .map_err(|e| CoreError::invalid(format!("{}: {}", source.display(), e.message)))?,
        )
    };
    Ok(Prepared {
        tar,
        mode: kind,
        source,
        entries: packed.entries,
        bytes: packed.bytes,
    })
}

/// The paths Git tracks under `dir` (relative), or why there are none.
pub fn git_tracked(dir: &Path) -> Result<BTreeSet<PathBuf>, CoreError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        // Without --full-name, names are relative to `dir` and only those
        // under it are listed.
        .args(["ls-files", "-z", "--cached"])
        .output()
        .map_err(|e| {
            CoreError::invalid(format!(
                "⟨arg:seed_mode=git-tracked⟩ needs git on the host ({e})"
            ))
        })?;
    if !out.status.success() {
        return Err(CoreError::invalid(format!(
            "{} is not a Git checkout ({}); use ⟨arg:seed_mode=all⟩",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .collect())
}

#[cfg(test)]
mod tests;

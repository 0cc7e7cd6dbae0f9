//! `workspace export`: a file or directory out of `/workspace` to a new
//! host path, all or nothing.
//!
//! The archive and the extracted copy land beside the output (so the final
//! rename stays on one filesystem), within a budget checked against the
//! free space first. Everything made on the way (missing parent
//! directories, the archive, the staging directory) is noted before it is
//! made ([`crate::scratch`]): a failed export removes it at once, a killed
//! one at the next sweep. Filesystem work runs off the async workers.

use std::path::{Path, PathBuf};

use pyro_protocol::{EntryKind, Request, Response};

use super::{ExportView, Workspaces, guest_path};
use crate::CoreError;
use crate::scratch::{Note, NoteKind};

/// The most one export may bring to the host.
pub const EXPORT_MAX_BYTES: u64 = 16 << 30;

/// Free space an export always leaves on the output's filesystem.
pub const EXPORT_RESERVE_BYTES: u64 = 256 << 20;

/// How many bytes of archive an export into `dir` may take: the archive and
/// the extracted copy both land on `dir`'s filesystem, so half of its free
/// space less a reserve, and never more than [`EXPORT_MAX_BYTES`].
pub(super) fn export_budget(dir: &Path) -> Result<u64, CoreError> {
    let free = crate::free_bytes(dir).map_err(|e| {
        CoreError::io(
            format!("checking free space in {}", dir.display()),
            e.into(),
        )
    })?;
    budget_for(free, dir)
}

/// [`export_budget`] for `free` bytes free in `dir`'s filesystem.
pub(super) fn budget_for(free: u64, dir: &Path) -> Result<u64, CoreError> {
    let budget = (free.saturating_sub(EXPORT_RESERVE_BYTES) / 2).min(EXPORT_MAX_BYTES);
    if budget == 0 {
        return Err(CoreError::TooLarge(format!(
            "{} has {free} bytes free, less than the {} MiB an export leaves free; free some \
             space or export elsewhere",
            dir.display(),
            EXPORT_RESERVE_BYTES >> 20
        )));
    }
    Ok(budget)
}

/// What an export has made so far. Dropping it removes the temps, then the
/// directories made for the output (if still empty, and unless kept), then
/// the notes (fields drop in this order), off the async workers.
#[derive(Debug, Default)]
struct Scratch {
    tar: Option<tempfile::NamedTempFile>,
    staging: Option<tempfile::TempDir>,
    /// Directories made, outermost first.
    made: Vec<PathBuf>,
    notes: Vec<Note>,
}

impl Scratch {
    /// Makes `dir` and its missing ancestors, each noted first.
    fn make_dirs(&mut self, ws: &Workspaces, dir: &Path) -> Result<(), CoreError> {
        let mut missing = Vec::new();
        let mut p = Some(dir);
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            missing.push(d.to_path_buf());
            p = d.parent();
        }
        for d in missing.into_iter().rev() {
            let (parent, name) = match (d.parent(), d.file_name()) {
                (Some(p), Some(n)) => (
                    if p.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        p
                    },
                    n.to_string_lossy().into_owned(),
                ),
                _ => continue,
            };
            self.notes.push(crate::scratch::note(
                &ws.paths,
                NoteKind::MadeDir,
                parent,
                Some(&name),
                "",
            )?);
            std::fs::create_dir(&d)
                .map_err(|e| CoreError::io(format!("creating {}", d.display()), e))?;
            self.made.push(d);
        }
        Ok(())
    }

    /// The archive's temp file and the staging directory's name, both
    /// noted before anything is created.
    fn make_temps(&mut self, ws: &Workspaces, parent: &Path) -> Result<(), CoreError> {
        let tar = crate::scratch::note(&ws.paths, NoteKind::Temp, parent, None, ".tar")?;
        let staging = crate::scratch::note(&ws.paths, NoteKind::Temp, parent, None, "")?;
        let in_parent =
            |e| CoreError::io(format!("creating a temp file in {}", parent.display()), e);
        self.tar = Some(
            tempfile::Builder::new()
                .prefix(&tar.name)
                .rand_bytes(0)
                .tempfile_in(parent)
                .map_err(in_parent)?,
        );
        self.notes.push(tar);
        self.staging = Some(
            tempfile::Builder::new()
                .prefix(&staging.name)
                .rand_bytes(0)
                .tempdir_in(parent)
                .map_err(in_parent)?,
        );
        self.notes.push(staging);
        Ok(())
    }

    fn tar(&self) -> &Path {
        self.tar.as_ref().map_or(Path::new(""), |t| t.path())
    }

    fn staging(&self) -> &Path {
        self.staging.as_ref().map_or(Path::new(""), |t| t.path())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (tar, staging, made, notes) = (
            self.tar.take(),
            self.staging.take(),
            std::mem::take(&mut self.made),
            std::mem::take(&mut self.notes),
        );
        crate::off_workers(move || {
            drop((tar, staging));
            // Deepest first; remove_dir leaves anything that is not empty.
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
            drop(notes);
        });
    }
}

/// Redacts `redactor`'s secrets from the text files under `root` (a file
/// or a directory pyro just extracted; links are never followed): each
/// file holding one is rewritten beside itself and renamed over. A file
/// with a NUL byte in its first 8 KiB is binary and copied as it is.
/// Returns (redactions, files).
fn redact_tree(root: &Path, redactor: &crate::redact::Redactor) -> Result<(u64, u64), CoreError> {
    use std::io::{Read, Write};
    if redactor.is_empty() {
        return Ok((0, 0));
    }
    let io = |p: &Path, e| CoreError::io(format!("redacting {}", p.display()), e);
    let (mut total, mut files) = (0, 0);
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).map_err(|e| io(&p, e))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).map_err(|e| io(&p, e))? {
                todo.push(e.map_err(|e| io(&p, e))?.path());
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        let mut f = std::fs::File::open(&p).map_err(|e| io(&p, e))?;
        let mut buf = vec![0u8; 64 << 10];
        let n = f.read(&mut buf).map_err(|e| io(&p, e))?;
        if buf[..n.min(8192)].contains(&0) {
            continue;
        }
        let tmp = p.with_file_name(format!(
            ".{}.pyro-redact-{}",
            p.file_name().unwrap_or_default().to_string_lossy(),
            crate::random_hex(6)
        ));
        let mut out = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| io(&tmp, e))?,
        );
        let mut s = redactor.stream();
        let mut piece = n;
        while piece > 0 {
            out.write_all(&s.push(&buf[..piece]))
                .map_err(|e| io(&tmp, e))?;
            piece = f.read(&mut buf).map_err(|e| io(&p, e))?;
        }
        out.write_all(&s.finish()).map_err(|e| io(&tmp, e))?;
        out.flush().map_err(|e| io(&tmp, e))?;
        if s.count() == 0 {
            let _ = std::fs::remove_file(&tmp);
            continue;
        }
        std::fs::set_permissions(&tmp, meta.permissions()).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io(&p, e))?;
        total += s.count();
        files += 1;
    }
    Ok((total, files))
}

impl Workspaces {
    /// Copies a file or directory out of `/workspace` to a new host path.
    pub async fn export(
        &self,
        id: &str,
        path: &str,
        output: &Path,
    ) -> Result<ExportView, CoreError> {
        let redactor = self.redactor(id)?;
        self.export_raw(id, path, output, redactor.clone())
            .await
            .map_err(|e| e.redact(&redactor))
    }

    async fn export_raw(
        &self,
        id: &str,
        path: &str,
        output: &Path,
        redactor: crate::redact::Redactor,
    ) -> Result<ExportView, CoreError> {
        let path = guest_path(path)?;
        if std::fs::symlink_metadata(output).is_ok() {
            return Err(CoreError::invalid(format!(
                "{} already exists; export writes only to a new path",
                output.display()
            )));
        }
        let parent = output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        // The output's directories, then (once the workspace is known to be
        // running) the temps; the archive and the extracted copy both land
        // beside the output: refuse up front what cannot fit, and stop the
        // transfer at that.
        let (mut scratch, max_bytes) = {
            let (this, parent) = (self.clone(), parent.clone());
            crate::blocking(move || {
                let mut scratch = Scratch::default();
                scratch.make_dirs(&this, &parent)?;
                let max = export_budget(&parent)?;
                Ok((scratch, max))
            })
            .await?
        };
        let (_, sandbox) = self.started(id, "export").await?;
        scratch = {
            let (this, parent) = (self.clone(), parent.clone());
            crate::blocking(move || {
                scratch.make_temps(&this, &parent)?;
                Ok(scratch)
            })
            .await?
        };
        let (kind, entries, bytes) = match sandbox
            .get_archive(
                Request::CreateArchive { path: path.clone() },
                scratch.tar(),
                max_bytes,
            )
            .await
            .map_err(|e| match e {
                CoreError::TooLarge(_) => CoreError::TooLarge(format!(
                    "{path} is larger than an export may be here ({max_bytes} bytes: at most \
                     {} GiB, and half of the free space in {} less a {} MiB reserve, since the \
                     archive and the copy both land there); export a smaller part, or free space",
                    EXPORT_MAX_BYTES >> 30,
                    parent.display(),
                    EXPORT_RESERVE_BYTES >> 20
                )),
                other => other,
            })? {
            Response::Archived {
                kind,
                entries,
                bytes,
            } => (kind, entries, bytes),
            other => return Err(crate::sandbox::unexpected(other)),
        };
        // Extract into the staging directory and move the result into place.
        let (what, out) = (path.clone(), output.to_path_buf());
        let (output, (redactions, redacted_files)) = crate::blocking(move || {
            let f = std::fs::File::open(scratch.tar())
                .map_err(|e| CoreError::io("reading the export", e))?;
            pyro_archive::extract(std::io::BufReader::new(f), scratch.staging()).map_err(|e| {
                CoreError::invalid(format!("{what} cannot be exported safely: {}", e.message))
            })?;
            let from = match kind {
                EntryKind::Directory => scratch.staging().to_path_buf(),
                _ => scratch
                    .staging()
                    .join(Path::new(&what).file_name().unwrap_or_default()),
            };
            let redacted = redact_tree(&from, &redactor)?;
            // Never replace something that appeared at `output` meanwhile.
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &from,
                nix::fcntl::AT_FDCWD,
                &out,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(|e| {
                if e == nix::errno::Errno::EEXIST {
                    CoreError::invalid(format!(
                        "{} appeared while exporting; export writes only to a new path",
                        out.display()
                    ))
                } else {
                    CoreError::io(format!("writing {}", out.display()), e.into())
                }
            })?;
            // The output's directories stay; the temps go (here, off the
            // async workers).
            scratch.made.clear();
            drop(scratch);
            Ok((out.canonicalize().unwrap_or(out), redacted))
        })
        .await?;
        Ok(ExportView {
            workspace_id: id.to_owned(),
            workspace_path: path,
            output_path: output,
            kind,
            entry_count: entries,
            bytes_written: bytes,
            redactions,
            redacted_files,
        })
    }
}

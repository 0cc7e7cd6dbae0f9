//! `disk export`: a tree of a stopped workspace's disk, as a tar or as a
//! standalone ext4 image (made with `mkfs.ext4 -d` from a copy of the tree
//! written beside the output, never following a link). The output is made
//! under a temp name noted for the sweep, and renamed into place only if
//! nothing is there.

use super::*;
use crate::scratch::NoteKind;

/// Longest `mkfs.ext4` may take to build an export's image.
const MKFS_TIME_MAX: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Bytes and entries an export may write, checked as it goes.
struct Budget {
    bytes: u64,
    max: u64,
}

impl Budget {
    fn take(&mut self, n: u64, what: &str) -> Result<(), CoreError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.max {
            return Err(CoreError::TooLarge(format!(
                "{what} is larger than this export may be here ({} bytes: at most {} GiB, and \
                 half of the output directory's free space less a reserve); export a smaller \
                 part, or free space",
                self.max,
                super::super::EXPORT_MAX_BYTES >> 30
            )));
        }
        Ok(())
    }
}

/// Counts of what an export wrote.
#[derive(Debug, Default)]
struct Counts {
    entries: u64,
    bytes: u64,
    skipped: u64,
}

/// Writes one entry (its guest path, its path in the export, the entry);
/// the bytes of content written.
type Write1<'a> = dyn FnMut(&[Vec<u8>], &Path, &Found) -> Result<u64, CoreError> + 'a;

/// Visits the tree at `path` (its entries, for a directory; itself,
/// otherwise) with each entry's path relative to the export's root, and
/// counts what `write` wrote (the bytes of content it returns); devices,
/// FIFOs and sockets are skipped and counted, never handed to `write`.
fn each_entry(
    m: &Merged<'_>,
    path: &[Vec<u8>],
    found: &Found,
    write: &mut Write1<'_>,
) -> Result<Counts, CoreError> {
    let mut counts = Counts::default();
    let base = if found.node.kind == NodeKind::Dir {
        path.len()
    } else {
        path.len().saturating_sub(1)
    };
    let mut one = |p: &[Vec<u8>], f: &Found| -> Result<(), CoreError> {
        if matches!(f.node.kind, NodeKind::Whiteout | NodeKind::Special) {
            counts.skipped += 1;
            return Ok(());
        }
        let rel: std::path::PathBuf = p[base..].iter().map(|n| OsStr::from_bytes(n)).collect();
        counts.bytes += write(p, &rel, f)?;
        counts.entries += 1;
        Ok(())
    };
    if found.node.kind == NodeKind::Dir {
        walk(m, path, found, true, &mut one)?;
    } else {
        one(path, found)?;
    }
    Ok(counts)
}

/// A file's content, exactly `left` bytes: a layer that yields fewer than
/// the size it stated is an error (the tar header already says the size, so
/// a short entry would shift every later one).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended {} bytes short of its stated size; the disk may be damaged \
                     (export again, or check it with e2fsck)",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes the tree at `path` (its entries, for a directory; itself,
/// otherwise) into `tar`.
fn write_tar<W: Write>(
    m: &Merged<'_>,
    path: &[Vec<u8>],
    found: &Found,
    tar: &mut tar::Builder<W>,
    budget: &mut Budget,
) -> Result<Counts, CoreError> {
    let counts = each_entry(m, path, found, &mut |p, rel, f| {
        let io = |e: std::io::Error| {
            CoreError::io(format!("writing {} to the archive", overlay::display(p)), e)
        };
        // Headers count too: a header, and for a long name or link target a
        // GNU record of it (each rounded up to 512-byte blocks).
        let long = |n: usize| {
            if n > 99 {
                512 + n.div_ceil(512) * 512
            } else {
                0
            }
        };
        let link_len = f.node.link.as_ref().map_or(0, Vec::len);
        budget.take(
            (512 + long(rel.as_os_str().len()) + long(link_len)) as u64,
            &overlay::display(path),
        )?;
        let mut h = tar::Header::new_gnu();
        // Ownership is not carried, so neither are setuid and setgid.
        h.set_mode(f.node.mode & 0o1777);
        h.set_mtime(0);
        match f.node.kind {
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, rel, std::io::empty()).map_err(io)?;
            }
            NodeKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                let target = OsStr::from_bytes(f.node.link.as_deref().unwrap_or_default());
                tar.append_link(&mut h, rel, target).map_err(io)?;
            }
            NodeKind::File => {
                budget.take(f.node.size, &overlay::display(path))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(f.node.size);
                let r = Exact {
                    inner: m.open(p, f)?.take(f.node.size),
                    left: f.node.size,
                };
                tar.append_data(&mut h, rel, r).map_err(io)?;
                return Ok(f.node.size);
            }
            NodeKind::Whiteout | NodeKind::Special => {}
        }
        Ok(0)
    })?;
    tar.finish()
        .map_err(|e| CoreError::io("finishing the archive", e))?;
    Ok(counts)
}

/// Writes the tree at `path` under the directory `root` (never through a
/// link: every name is resolved beneath `root`).
fn write_tree(
    m: &Merged<'_>,
    path: &[Vec<u8>],
    found: &Found,
    root: &Path,
    budget: &mut Budget,
) -> Result<Counts, CoreError> {
    use super::super::materialize::{beneath, parent_of};
    use nix::fcntl::OFlag;
    let dir = std::fs::File::open(root).map_err(|e| CoreError::io("opening the staging", e))?;
    each_entry(m, path, found, &mut |p, rel, f| {
        let io = |e: std::io::Error| CoreError::io(format!("copying {}", overlay::display(p)), e);
        // Names and a little metadata count against the budget too.
        budget.take(4096, &overlay::display(path))?;
        match f.node.kind {
            NodeKind::Dir => {
                let (parent, name) = parent_of(&dir, rel).map_err(io)?;
                nix::sys::stat::mkdirat(
                    std::os::fd::AsFd::as_fd(&parent),
                    name,
                    nix::sys::stat::Mode::from_bits_truncate((f.node.mode & 0o1777) | 0o700),
                )
                .map_err(|e| io(e.into()))?;
            }
            NodeKind::Symlink => {
                let (parent, name) = parent_of(&dir, rel).map_err(io)?;
                let target = OsStr::from_bytes(f.node.link.as_deref().unwrap_or_default());
                nix::unistd::symlinkat(target, std::os::fd::AsFd::as_fd(&parent), name)
                    .map_err(|e| io(e.into()))?;
            }
            NodeKind::File => {
                budget.take(f.node.size, &overlay::display(path))?;
                let mut out = beneath(
                    &dir,
                    rel,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                    f.node.mode & 0o1777,
                )
                .map_err(io)?;
                return m.copy(p, f, &mut out, f.node.size);
            }
            NodeKind::Whiteout | NodeKind::Special => {}
        }
        Ok(0)
    })
}

/// Makes an ext4 image at `image` holding the tree in `tree`.
fn make_image(tree: &Path, image: &Path, bytes: u64, entries: u64) -> Result<(), CoreError> {
    // Room for the data, a block per entry, and the filesystem's own.
    let size = ((bytes + entries * 4096) / 4 * 5 + (64 << 20)).div_ceil(1 << 20) << 20;
    std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .and_then(|f| f.set_len(size))
        .map_err(|e| CoreError::io("sizing the image", e))?;
    let mut child = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "pyro-export", "-N"])
        .arg((entries + 1024).to_string())
        .arg("-d")
        .arg(tree)
        .arg(image)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| CoreError::io("running mkfs.ext4 (from e2fsprogs; install it)", e))?;
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut err).take(64 << 10).read_to_end(&mut text);
        text
    });
    let status = wait_within(&mut child, MKFS_TIME_MAX)
        .map_err(|e| CoreError::io("waiting for mkfs.ext4", e))?;
    let text = reader.join().unwrap_or_default();
    match status {
        Some(st) if st.success() => Ok(()),
        Some(_) => Err(CoreError::io(
            "making the ext4 image",
            std::io::Error::other(String::from_utf8_lossy(&text).trim().to_owned()),
        )),
        None => Err(CoreError::Timeout(format!(
            "making the ext4 image took more than {} s; export a smaller part, or as a tar",
            MKFS_TIME_MAX.as_secs()
        ))),
    }
}

impl Workspaces {
    /// Exports a tree of a stopped workspace's disk to the new host path
    /// `output`, as a tar or an ext4 image.
    pub async fn disk_export(
        &self,
        id: &str,
        path: &str,
        output: &Path,
        format: DiskFormat,
    ) -> Result<DiskExportView, CoreError> {
        let guest = disk_path(path)?;
        if output.symlink_metadata().is_ok() {
            return Err(CoreError::invalid(format!(
                "{} already exists; disk export writes only to a new path",
                output.display()
            )));
        }
        let parent = output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if !parent.is_dir() {
            return Err(CoreError::invalid(format!(
                "{} is not a directory; create it first",
                parent.display()
            )));
        }
        let max = super::super::export::export_budget(&parent)?;
        let (workspace_id, output, paths) = (id.to_owned(), output.to_owned(), self.paths.clone());
        self.with_disk(id, "disk export", move |m, _| {
            let found = m
                .lookup(&guest)?
                .map_err(|e| missing(&workspace_id, &guest, e))?;
            let mut budget = Budget { bytes: 0, max };
            let in_parent =
                |e| CoreError::io(format!("creating a temp file in {}", parent.display()), e);
            let note = crate::scratch::note(&paths, NoteKind::Temp, &parent, None, ".out")?;
            let temp = tempfile::Builder::new()
                .prefix(&note.name)
                .rand_bytes(0)
                .tempfile_in(&parent)
                .map_err(in_parent)?;
            let counts = match format {
                DiskFormat::Tar => {
                    let mut tar = tar::Builder::new(std::io::BufWriter::new(
                        temp.reopen().map_err(in_parent)?,
                    ));
                    let c = write_tar(m, &guest, &found, &mut tar, &mut budget)?;
                    tar.into_inner()
                        .and_then(|mut w| w.flush())
                        .map_err(|e| CoreError::io("writing the archive", e))?;
                    c
                }
                DiskFormat::Ext4 => {
                    let staging_note =
                        crate::scratch::note(&paths, NoteKind::Temp, &parent, None, "")?;
                    let staging = tempfile::Builder::new()
                        .prefix(&staging_note.name)
                        .rand_bytes(0)
                        .tempdir_in(&parent)
                        .map_err(in_parent)?;
                    let c = write_tree(m, &guest, &found, staging.path(), &mut budget)?;
                    make_image(staging.path(), temp.path(), c.bytes, c.entries)?;
                    drop(staging);
                    drop(staging_note);
                    c
                }
            };
            temp.as_file()
                .sync_all()
                .map_err(|e| CoreError::io("flushing the export", e))?;
            // Into place only if nothing took the name meanwhile.
            let tmp_path = temp.into_temp_path();
            nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                tmp_path.as_ref() as &Path,
                nix::fcntl::AT_FDCWD,
                &output,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            )
            .map_err(|e| match e {
                nix::errno::Errno::EEXIST => CoreError::Conflict(format!(
                    "{} appeared while the export ran; nothing was written there: move it \
                     away or choose another output path",
                    output.display()
                )),
                e => CoreError::io(
                    format!("putting the export at {}", output.display()),
                    e.into(),
                ),
            })?;
            let _ = tmp_path.keep();
            drop(note);
            Ok(DiskExportView {
                workspace_id,
                path: overlay::display(&guest),
                output_path: output,
                disk_format: format,
                entry_count: counts.entries,
                bytes_written: counts.bytes,
                skipped: counts.skipped,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests;

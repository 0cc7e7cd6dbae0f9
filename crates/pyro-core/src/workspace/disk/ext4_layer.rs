//! A layer that is an ext4 image: a Firecracker workspace's upper disk,
//! whose `/data` directory is the guest overlay's upper directory. The
//! image is guest-written, so it is read in user space (ext4-view, which
//! checks what it parses and replays the journal in memory); nothing is
//! mounted on the host.
//!
//! ext4-view does not expose device numbers or extended attributes, which
//! overlayfs's markers live in (a whiteout is a character device 0:0, an
//! opaque directory has `trusted.overlay.opaque` = `y`). Those two facts
//! are read with `debugfs` (e2fsprogs, which also makes the images), in
//! one batch per listing, each query behind a random delimiter so nothing
//! in the image can pose as an answer. Both it and `e2fsck` (which replays
//! the journal of a private copy first) run confined ([`confine`]): never
//! as the host's root, with the copy as their only way to the disk.

use std::cell::RefCell;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::confine;
use super::overlay::{LINK_MAX, Layer, Node, NodeKind};
use super::*;

/// Longest a batch of marker queries may take.
const DEBUGFS_DEADLINE: Duration = Duration::from_secs(120);
/// Most output read from one `debugfs` run.
const DEBUGFS_OUTPUT_MAX: u64 = 64 << 20;

/// Most paths asked of one debugfs run.
const BATCH_PATHS_MAX: usize = 2000;

/// Longest command line put in a debugfs command file (it reads lines in
/// pieces of 8 KiB).
const BATCH_LINE_MAX: usize = 2048;

fn markers_unknown(image: &Path, path: &[u8]) -> CoreError {
    ext4_err(
        image,
        path,
        "debugfs did not describe it, so whether it hides files of the environment is unknown",
    )
}

/// The upper directory inside the image.
const UPPER_DIR: &[u8] = b"/data";

/// An ext4 image layer.
pub(crate) struct Ext4Layer {
    fs: ext4_view::Ext4,
    image: PathBuf,
    /// Markers already read: path -> (whiteout, opaque).
    markers: RefCell<HashMap<Vec<u8>, (bool, bool)>>,
}

fn abs(path: &[Vec<u8>]) -> Vec<u8> {
    let mut p = UPPER_DIR.to_vec();
    for n in path {
        p.push(b'/');
        p.extend_from_slice(n);
    }
    p
}

fn ext4_err(image: &Path, path: &[u8], e: impl std::fmt::Display) -> CoreError {
    CoreError::io(
        format!(
            "reading {} in the disk image {}",
            String::from_utf8_lossy(path),
            image.display()
        ),
        std::io::Error::other(e.to_string()),
    )
}

/// `"…"` for debugfs, which reads `""` inside quotes as one `"`.
fn quoted(path: &[u8]) -> Vec<u8> {
    let mut q = vec![b'"'];
    for &b in path {
        if b == b'"' {
            q.push(b'"');
        }
        q.push(b);
    }
    q.push(b'"');
    q
}

/// A private copy of `image` (sparse: it costs the blocks written) with
/// its journal replayed: a guest powers off without unmounting, and
/// debugfs, unlike ext4-view, reads the disk as it is, not as the journal
/// says it is. `e2fsck -E journal_only` replays it in user space, on the
/// copy, within a deadline.
pub(super) fn replayed_copy(image: &Path, dir: &Path) -> Result<tempfile::TempPath, CoreError> {
    let copy = tempfile::Builder::new()
        .prefix("disk-")
        .suffix(".ext4")
        .tempfile_in(dir)
        .map_err(|e| CoreError::io("creating a temp file", e))?
        .into_temp_path();
    pyro_vmm::disk::sparse_copy(image, &copy)?;
    let file = confine::open_copy(&copy, true)?;
    let mut cmd = Command::new("e2fsck");
    let confined = confine::confine(&mut cmd, &file);
    let mut child = cmd
        .args(["-fy", "-E", "journal_only"])
        .arg(confined)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| CoreError::io("running e2fsck (from e2fsprogs; install it)", e))?;
    let Some(status) = wait_within(&mut child, DEBUGFS_DEADLINE)
        .map_err(|e| CoreError::io("waiting for e2fsck", e))?
    else {
        return Err(ext4_err(image, b"/", "replaying its journal took too long"));
    };
    // 0: clean, 1: errors corrected (the journal replayed).
    if status.code().is_none_or(|c| c > 1) {
        return Err(ext4_err(
            image,
            b"/",
            format!("its journal could not be replayed (e2fsck: {status})"),
        ));
    }
    Ok(copy)
}

/// Refuses an image whose superblock claims a geometry the file cannot
/// hold, before ext4-view sizes its tables by it (a forged block count
/// would have it allocate tens of GiB and abort pyro).
fn check_geometry(image: &Path) -> Result<(), CoreError> {
    use std::io::{Seek, SeekFrom};
    let (at, len) = pyro_vmm::disk::EXT4_SUPERBLOCK;
    let mut f =
        std::fs::File::open(image).map_err(|e| CoreError::io("opening the disk image", e))?;
    let image_len = f
        .metadata()
        .map_err(|e| CoreError::io("reading the disk image's size", e))?
        .len();
    let mut sb = Vec::with_capacity(len);
    f.seek(SeekFrom::Start(at))
        .and_then(|_| (&mut f).take(len as u64).read_to_end(&mut sb))
        .map_err(|e| CoreError::io("reading the disk image's superblock", e))?;
    pyro_vmm::disk::check_ext4_geometry(&sb, image_len)
        .map_err(|e| ext4_err(image, b"/", format!("the image is damaged: {e}")))
}

impl Ext4Layer {
    /// The image at `image` (which must exist and be a regular file).
    pub fn open(image: &Path) -> Result<Self, CoreError> {
        check_geometry(image)?;
        let fs = ext4_view::Ext4::load_from_path(image)
            .map_err(|e| ext4_err(image, b"/", format!("the image cannot be read: {e}")))?;
        // The upper directory itself must be one: every walk starts there,
        // and ext4-view would follow a link in its place (reading a target
        // of whatever size the guest wrote).
        if !fs.symlink_metadata(UPPER_DIR).is_ok_and(|m| m.is_dir()) {
            return Err(ext4_err(
                image,
                UPPER_DIR,
                "it is not a directory, so the disk is not a workspace's",
            ));
        }
        Ok(Self {
            fs,
            image: image.to_owned(),
            markers: RefCell::new(HashMap::new()),
        })
    }

    /// Whether every proper prefix of `path` is a directory in the image
    /// (so ext4-view, which follows links in the middle of a path, never
    /// does).
    fn parents_are_dirs(&self, path: &[Vec<u8>]) -> bool {
        (0..path.len()).all(|i| {
            let p = abs(&path[..i]);
            self.fs
                .symlink_metadata(p.as_slice())
                .is_ok_and(|m| m.is_dir())
        })
    }

    /// Reads the markers of `paths` (absolute in the image) with debugfs.
    fn load_markers(&self, paths: &[Vec<u8>]) -> Result<(), CoreError> {
        let todo: Vec<&Vec<u8>> = paths
            .iter()
            .filter(|p| !self.markers.borrow().contains_key(*p))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        // A command file is read line by line in pieces of 8 KiB, each run
        // as a command (and one starting with `!` by the shell): only short
        // lines without a line break go in it. Any other path is asked
        // alone, as one command-line argument, which is never split.
        let (batch, alone): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = todo.into_iter().partition(|p| {
            !p.iter().any(|b| matches!(b, b'\n' | b'\r')) && quoted(p).len() < BATCH_LINE_MAX
        });
        for p in alone {
            let mut cmd = b"stat ".to_vec();
            cmd.extend(quoted(p));
            let out = self.debugfs(&[OsStr::from_bytes(b"-R"), OsStr::from_bytes(&cmd)], None)?;
            if !String::from_utf8_lossy(&out)
                .lines()
                .any(|l| l.starts_with("Inode: "))
            {
                return Err(markers_unknown(&self.image, p));
            }
            self.markers
                .borrow_mut()
                .insert(p.clone(), parse_stat(&out));
        }
        // Batches of a bounded size: the output of one stays well under the
        // cap whatever the directory holds.
        for chunk in batch.chunks(BATCH_PATHS_MAX) {
            self.load_batch(chunk)?;
        }
        Ok(())
    }

    /// Reads the markers of `batch` (short, single-line paths) in one
    /// debugfs run.
    fn load_batch(&self, batch: &[&Vec<u8>]) -> Result<(), CoreError> {
        let nonce = crate::random_hex(16);
        let mut script = Vec::new();
        for (i, p) in batch.iter().enumerate() {
            script.extend_from_slice(format!("ls \"/.pyro-{nonce}-{i}\"\nstat ").as_bytes());
            script.extend(quoted(p));
            script.push(b'\n');
        }
        let out = self.debugfs(
            &[OsStr::from_bytes(b"-f"), OsStr::from_bytes(b"-")],
            Some(script),
        )?;
        let text = String::from_utf8_lossy(&out);
        let mut sections: HashMap<usize, String> = HashMap::new();
        let mut current: Option<usize> = None;
        let marker = format!("debugfs: ls \"/.pyro-{nonce}-");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&marker) {
                current = rest.trim_end_matches('"').parse().ok();
                continue;
            }
            if let Some(i) = current {
                let s = sections.entry(i).or_default();
                s.push_str(line);
                s.push('\n');
            }
        }
        let mut markers = self.markers.borrow_mut();
        for (i, p) in batch.iter().enumerate() {
            // No answer is never taken as "no marker": that would show
            // deleted files again.
            let section = sections.remove(&i).unwrap_or_default();
            if !section.lines().any(|l| l.starts_with("Inode: ")) {
                return Err(markers_unknown(&self.image, p));
            }
            markers.insert((*p).clone(), parse_stat(section.as_bytes()));
        }
        Ok(())
    }

    /// Runs debugfs read-only on the image, with a deadline and a bound on
    /// its output.
    fn debugfs(&self, args: &[&OsStr], stdin: Option<Vec<u8>>) -> Result<Vec<u8>, CoreError> {
        let file = confine::open_copy(&self.image, false)?;
        let mut cmd = Command::new("debugfs");
        let confined = confine::confine(&mut cmd, &file);
        let mut child = cmd
            .args(args)
            .arg(confined)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                CoreError::io(
                    "running debugfs (from e2fsprogs; install it, as for mkfs.ext4)",
                    e,
                )
            })?;
        if let (Some(mut w), Some(body)) = (child.stdin.take(), stdin) {
            std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut w, &body);
            });
        }
        let mut out = Vec::new();
        let mut so = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let _ = (&mut so).take(DEBUGFS_OUTPUT_MAX).read_to_end(&mut out);
            out
        });
        let Some(status) = wait_within(&mut child, DEBUGFS_DEADLINE)
            .map_err(|e| CoreError::io("waiting for debugfs", e))?
        else {
            return Err(CoreError::Timeout(format!(
                "reading the disk image's overlay markers took longer than {} s (debugfs); \
                 ask for a smaller part of the disk",
                DEBUGFS_DEADLINE.as_secs()
            )));
        };
        let out = reader.join().map_err(|_| {
            CoreError::io("reading debugfs", std::io::Error::other("reader failed"))
        })?;
        if !status.success() || out.len() as u64 >= DEBUGFS_OUTPUT_MAX {
            return Err(CoreError::io(
                "reading the disk image's overlay markers",
                std::io::Error::other(format!(
                    "debugfs failed ({status}) or said more than {} MiB; the disk may be \
                     damaged: check it with `e2fsck -n` on a copy, or read a smaller part",
                    DEBUGFS_OUTPUT_MAX >> 20
                )),
            ));
        }
        Ok(out)
    }

    fn node(&self, path: &[Vec<u8>], meta: &ext4_view::Metadata) -> Result<Node, CoreError> {
        let ft = meta.file_type();
        let mut node = Node {
            kind: NodeKind::Special,
            mode: u32::from(meta.mode()) & 0o7777,
            size: meta.len(),
            link: None,
            opaque: false,
        };
        let p = abs(path);
        if ft.is_regular_file() {
            node.kind = NodeKind::File;
        } else if ft.is_dir() {
            node.kind = NodeKind::Dir;
            node.opaque = self.markers.borrow().get(&p).is_some_and(|m| m.1);
        } else if ft.is_symlink() {
            node.kind = NodeKind::Symlink;
            if meta.len() > LINK_MAX {
                return Err(ext4_err(
                    &self.image,
                    &p,
                    "a symlink target over 4096 bytes",
                ));
            }
            let t = self
                .fs
                .read_link(p.as_slice())
                .map_err(|e| ext4_err(&self.image, &p, e))?;
            node.link = Some(t.as_ref().to_vec());
        } else if ft.is_char_dev() && self.markers.borrow().get(&p).is_some_and(|m| m.0) {
            node.kind = NodeKind::Whiteout;
        }
        Ok(node)
    }

    /// The paths among `entries` whose markers matter: directories and
    /// character devices.
    fn needs_markers(path: &[Vec<u8>], ft: ext4_view::FileType) -> Option<Vec<u8>> {
        (ft.is_dir() || ft.is_char_dev()).then(|| abs(path))
    }
}

/// (whiteout, opaque) from one `stat` output.
fn parse_stat(out: &[u8]) -> (bool, bool) {
    let text = String::from_utf8_lossy(out);
    let mut whiteout = false;
    let mut opaque = false;
    let mut is_char = false;
    // Only whole lines in debugfs's own form count: attribute values (which
    // the guest chooses) are printed after their name, never at a line's
    // start.
    for line in text.lines() {
        if line.starts_with("Inode: ") && line.contains("   Type: character special ") {
            is_char = true;
        }
        let dev = line.strip_prefix("(New-style) ").unwrap_or(line);
        if let Some(rest) = dev.strip_prefix("Device major/minor number: ") {
            whiteout = rest.split_whitespace().next() == Some("00:00");
        }
        if line == "  trusted.overlay.opaque (1) = \"y\"" {
            opaque = true;
        }
    }
    (whiteout && is_char, opaque)
}

impl Layer for Ext4Layer {
    fn stat(&self, path: &[Vec<u8>]) -> Result<Option<Node>, CoreError> {
        if !self.parents_are_dirs(path) {
            return Ok(None);
        }
        let p = abs(path);
        let meta = match self.fs.symlink_metadata(p.as_slice()) {
            Ok(m) => m,
            Err(ext4_view::Ext4Error::NotFound) => return Ok(None),
            Err(e) => return Err(ext4_err(&self.image, &p, e)),
        };
        if let Some(q) = Self::needs_markers(path, meta.file_type()) {
            self.load_markers(&[q])?;
        }
        self.node(path, &meta).map(Some)
    }

    fn list(&self, path: &[Vec<u8>]) -> Result<Vec<(Vec<u8>, Node)>, CoreError> {
        let p = abs(path);
        if !self.parents_are_dirs(path) {
            return Err(ext4_err(&self.image, &p, "not a directory"));
        }
        let mut metas = Vec::new();
        for e in self
            .fs
            .read_dir(p.as_slice())
            .map_err(|e| ext4_err(&self.image, &p, e))?
        {
            let e = e.map_err(|e| ext4_err(&self.image, &p, e))?;
            let name = e.file_name().as_ref().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            if metas.len() >= ENTRIES_PER_DIR_MAX {
                return Err(CoreError::TooLarge(format!(
                    "{} in the workspace's disk has more than {ENTRIES_PER_DIR_MAX} entries",
                    overlay::display(path)
                )));
            }
            let mut child = path.to_vec();
            child.push(name);
            let meta = e.metadata().map_err(|e| ext4_err(&self.image, &p, e))?;
            metas.push((child, meta));
        }
        let wanted: Vec<Vec<u8>> = metas
            .iter()
            .filter_map(|(c, m)| Self::needs_markers(c, m.file_type()))
            .collect();
        self.load_markers(&wanted)?;
        metas
            .iter()
            .map(|(c, m)| Ok((c.last().cloned().unwrap_or_default(), self.node(c, m)?)))
            .collect()
    }

    fn open(&self, path: &[Vec<u8>]) -> Result<Box<dyn Read + '_>, CoreError> {
        let p = abs(path);
        if !self.parents_are_dirs(path) {
            return Err(ext4_err(&self.image, &p, "not a regular file"));
        }
        let meta = self
            .fs
            .symlink_metadata(p.as_slice())
            .map_err(|e| ext4_err(&self.image, &p, e))?;
        if !meta.file_type().is_regular_file() {
            return Err(ext4_err(&self.image, &p, "not a regular file"));
        }
        let f = self
            .fs
            .open(p.as_slice())
            .map_err(|e| ext4_err(&self.image, &p, e))?;
        Ok(Box::new(f))
    }
}

#[cfg(test)]
mod tests;

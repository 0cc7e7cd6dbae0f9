//! Per-VM disks: sparse writable upper disks, and copies whose cost follows
//! the data, not the image size.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::VmmError;

/// Creates a sparse ext4 image of `size_mib` at `path` for a VM's writable
/// overlay layer. The guest mounts it with `noinit_itable`, so nothing zeroes
/// inode tables in the (slow, emulated on PVM) guest kernel.
pub fn create_upper_disk(path: &Path, size_mib: u64) -> Result<(), VmmError> {
    let f =
        File::create(path).map_err(|e| VmmError::io(format!("creating {}", path.display()), e))?;
    let made = format_upper_disk(f, path, size_mib);
    if made.is_err() {
        // Whatever step failed, no half-made disk stays behind.
        let _ = std::fs::remove_file(path);
    }
    made
}

fn format_upper_disk(f: File, path: &Path, size_mib: u64) -> Result<(), VmmError> {
    f.set_len(size_mib << 20)
        .map_err(|e| VmmError::io(format!("sizing {}", path.display()), e))?;
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "pyro-upper", "-m", "0", "-J", "size=8"])
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(path)
        .output()
        .map_err(|e| {
            VmmError::io(
                "running mkfs.ext4 (install e2fsprogs: apt-get install e2fsprogs)",
                e,
            )
        })?;
    if !out.status.success() {
        return Err(VmmError::io(
            format!("mkfs.ext4 {}", path.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        ));
    }
    Ok(())
}

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMode {
    /// Shared extents (FICLONE).
    Reflink,
    /// Only the data extents were copied; holes stay holes.
    Sparse,
}

/// Copies `src` to file `dst` (made, or emptied; a symlink there is
/// refused, never followed): a reflink where the filesystem can, otherwise
/// only the data extents (SEEK_DATA/SEEK_HOLE + copy_file_range). A source
/// whose size changes during the copy is an error.
pub fn sparse_copy(src: &Path, dst: &Path) -> Result<CopyMode, VmmError> {
    use std::os::unix::fs::OpenOptionsExt;
    let ctx = |what: &str| format!("{what} ({} -> {})", src.display(), dst.display());
    let s = File::open(src).map_err(|e| VmmError::io(ctx("opening the source"), e))?;
    let d = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dst)
        .map_err(|e| VmmError::io(ctx("creating the copy"), e))?;
    // SAFETY: both descriptors are open files owned by this function.
    if unsafe { libc::ioctl(d.as_raw_fd(), libc::FICLONE, s.as_raw_fd()) } == 0 {
        return Ok(CopyMode::Reflink);
    }
    let len = s
        .metadata()
        .map_err(|e| VmmError::io(ctx("stat"), e))?
        .len();
    d.set_len(len)
        .map_err(|e| VmmError::io(ctx("sizing the copy"), e))?;
    let sfd = s.as_raw_fd();
    let mut off: i64 = 0;
    let end = i64::try_from(len).unwrap_or(i64::MAX);
    while off < end {
        // SAFETY: lseek on an open descriptor; ENXIO means no data after off.
        let data = unsafe { libc::lseek(sfd, off, libc::SEEK_DATA) };
        if data < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(VmmError::io(ctx("SEEK_DATA"), err));
        }
        // SAFETY: as above; there is always a hole at the end of the file.
        let hole = unsafe { libc::lseek(sfd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(VmmError::io(
                ctx("SEEK_HOLE"),
                std::io::Error::last_os_error(),
            ));
        }
        copy_segment(&s, &d, data, hole).map_err(|e| VmmError::io(ctx("copying"), e))?;
        off = hole;
    }
    // A source cut short meanwhile ends the loop early (no data after the
    // new end): the copy would look whole with zeros where data was.
    let now = s
        .metadata()
        .map_err(|e| VmmError::io(ctx("stat"), e))?
        .len();
    if now != len {
        return Err(VmmError::io(
            ctx("copying"),
            std::io::Error::other(format!(
                "the source changed size during the copy ({len} -> {now} bytes); copy it again"
            )),
        ));
    }
    d.sync_all()
        .map_err(|e| VmmError::io(ctx("flushing the copy"), e))?;
    Ok(CopyMode::Sparse)
}

/// Copies `[from, to)` of `s` into the same range of `d`: by
/// `copy_file_range`, and by reads and writes where the kernel cannot
/// (between filesystems: EXDEV; ENOSYS, EOPNOTSUPP, EINVAL) or where it
/// copies nothing before `to` (some filesystems answer 0 instead of an
/// error). A source that ends before `to` is an error, never a short copy
/// that looks whole.
fn copy_segment(s: &File, d: &File, from: i64, to: i64) -> std::io::Result<()> {
    let (sfd, dfd) = (s.as_raw_fd(), d.as_raw_fd());
    let (mut i, mut o) = (from, from);
    while i < to {
        let want = usize::try_from(to - i).unwrap_or(usize::MAX).min(1 << 30);
        // SAFETY: valid descriptors and offsets owned by this loop.
        let n = unsafe { libc::copy_file_range(sfd, &mut i, dfd, &mut o, want, 0) };
        if n > 0 {
            continue;
        }
        let err = std::io::Error::last_os_error();
        let fallback = n == 0
            || matches!(
                err.raw_os_error(),
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
            );
        if !fallback {
            return Err(err);
        }
        return copy_range(s, d, i, to);
    }
    Ok(())
}

/// `[from, to)` of `s` into `d` by reads and writes; a source that ends
/// early is an `UnexpectedEof` error.
fn copy_range(s: &File, d: &File, from: i64, to: i64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let (mut at, end) = (
        u64::try_from(from).unwrap_or(0),
        u64::try_from(to).unwrap_or(0),
    );
    while at < end {
        let want = usize::try_from(end - at)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        s.read_exact_at(&mut buf[..want], at)?;
        d.write_all_at(&buf[..want], at)?;
        at += want as u64;
    }
    Ok(())
}

/// The longest symlink target pyro reads from a guest's disk: a longer
/// one is refused before it is read (a reader sizes its buffer by the
/// length the guest wrote).
pub const LINK_TARGET_MAX: u64 = 4096;

/// Where an ext4 superblock starts, and how many of its bytes
/// [`check_ext4_geometry`] reads.
pub const EXT4_SUPERBLOCK: (u64, usize) = (1024, 1024);

/// Most block groups an image may claim (1 Mi: 128 TiB at 4 KiB blocks).
const EXT4_GROUPS_MAX: u64 = 1 << 20;

/// Checks the geometry a guest-written ext4 superblock claims against the
/// image it sits in, before a reader sizes anything by it: ext4-view
/// allocates a table for as many block groups as the superblock says, so a
/// forged block count would make it ask for tens of GiB and abort the
/// process. `sb` is the superblock's bytes (from [`EXT4_SUPERBLOCK`]'s
/// offset), `image_len` the image's length. The error says which field is
/// impossible.
pub fn check_ext4_geometry(sb: &[u8], image_len: u64) -> Result<(), String> {
    let u32_at = |at: usize| {
        sb.get(at..at + 4)
            .map(|b| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .ok_or_else(|| "the superblock is cut short".to_owned())
    };
    let u16_at = |at: usize| {
        sb.get(at..at + 2)
            .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or_else(|| "the superblock is cut short".to_owned())
    };
    if u16_at(0x38)? != 0xEF53 {
        return Err("it has no ext4 superblock".into());
    }
    let log = u32_at(0x18)?;
    if log > 6 {
        return Err(format!(
            "its block size (2^{} bytes) is impossible",
            log + 10
        ));
    }
    let block = 1024u64 << log;
    let incompat = u32_at(0x60)?;
    let wide = incompat & 0x80 != 0;
    // The high word counts whether or not the 64-bit feature is set, as
    // ext4-view counts it.
    let blocks = u32_at(0x04)? | (u32_at(0x150)? << 32);
    if blocks.saturating_mul(block) > image_len {
        return Err(format!(
            "it claims {blocks} blocks of {block} bytes, more than the {image_len}-byte image holds"
        ));
    }
    let per_group = u32_at(0x20)?;
    if per_group < 8 || per_group > 8 * block {
        return Err(format!("its blocks per group ({per_group}) are impossible"));
    }
    let first = u32_at(0x14)?;
    let groups = blocks.saturating_sub(first).div_ceil(per_group);
    let desc = if wide { u16_at(0xFE)?.max(32) } else { 32 };
    if groups > EXT4_GROUPS_MAX || groups.saturating_mul(desc) > image_len {
        return Err(format!("its {groups} block groups do not fit the image"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

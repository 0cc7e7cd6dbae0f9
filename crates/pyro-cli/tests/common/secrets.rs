//! Looking for a secret's value where it must never be.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::Path;

use base64::Engine as _;

/// The forms of `value` that must not appear: clear, base64 at each of the
/// three alignments (the characters that depend on the value alone), hex.
pub fn forms(value: &str) -> Vec<Vec<u8>> {
    let mut out = vec![value.as_bytes().to_vec()];
    let b64 = base64::engine::general_purpose::STANDARD;
    for prefix in ["", "a", "ab"] {
        let enc = b64.encode(format!("{prefix}{value}"));
        let skip = (prefix.len() * 8).div_ceil(6);
        let end = ((prefix.len() + value.len()) * 8) / 6;
        out.push(enc.as_bytes()[skip..end].to_vec());
    }
    out.push(hex::encode(value).into_bytes());
    out
}

/// Whether `text` holds any form of `value`.
pub fn shows(text: &[u8], value: &str) -> bool {
    forms(value)
        .iter()
        .any(|f| text.windows(f.len()).any(|w| w == f.as_slice()))
}

/// Files under `root` holding any form of `value`, except those named in
/// `skip`. Sparse files (VM disks) are read by their data extents only.
pub fn leaks(root: &Path, value: &str, skip: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                todo.push(e.path());
            }
        } else if meta.is_file()
            && !p.file_name().is_some_and(|n| skip.iter().any(|s| n == *s))
            && file_shows(&p, value)
        {
            found.push(p.display().to_string());
        }
    }
    found
}

fn file_shows(p: &Path, value: &str) -> bool {
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let overlap = forms(value).iter().map(Vec::len).max().unwrap_or(0);
    let mut at = 0u64;
    while at < len {
        // SAFETY: lseek on an open descriptor; no memory is touched.
        let data = unsafe { libc::lseek(f.as_raw_fd(), at as i64, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        let (start, end) = (data as u64, (hole.max(data) as u64).min(len));
        if f.seek(SeekFrom::Start(start)).is_err() {
            break;
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut tail: Vec<u8> = Vec::new();
        let mut left = end - start;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let Ok(n) = f.read(&mut buf[..want]) else {
                break;
            };
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if shows(&tail, value) {
                return true;
            }
            tail.drain(..tail.len().saturating_sub(overlap));
            left -= n as u64;
        }
        at = end.max(start + 1);
    }
    false
}

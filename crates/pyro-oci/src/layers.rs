//! Applying image layers to a root tree, in order, as a container runtime
//! would: whiteouts (`.wh.NAME`) delete what lower layers made, an opaque
//! marker (`.wh..wh..opq`) empties a directory of what lower layers put
//! there, and later entries replace earlier ones.
//!
//! Layers are hostile. Every entry path is relative and has no `..`; the
//! directories on the way to an entry are resolved inside the tree (a link
//! is followed as if the tree were `/`, so `etc -> /host` lands on
//! `<tree>/host`, never outside); the entry itself is never followed; a
//! hard link may only name a regular file inside the tree. Device nodes,
//! FIFOs and sockets are dropped and counted. Entry counts, name and path
//! lengths and total bytes are bounded.

use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::OciError;

/// Bounds on what layers may make.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of regular files, over all layers.
    pub max_bytes: u64,
    /// Entries, over all layers.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 16 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// What applying layers did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Applied {
    /// Layers applied.
    pub layers: usize,
    /// Entries written.
    pub entries: u64,
    /// Bytes of regular files written.
    pub bytes: u64,
    /// Whiteouts and opaque markers honoured.
    pub whiteouts: u64,
    /// Device nodes, FIFOs and sockets dropped.
    pub dropped_special: u64,
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// From a file's first bytes (media types lie more often than magic).
    pub fn sniff(path: &Path) -> Result<Self, OciError> {
        let mut head = [0u8; 4];
        let mut f = std::fs::File::open(path)
            .map_err(|e| OciError::io(format!("reading {}", path.display()), e))?;
        let n = f
            .read(&mut head)
            .map_err(|e| OciError::io(format!("reading {}", path.display()), e))?;
        Ok(match &head[..n] {
            [0x1f, 0x8b, ..] => Self::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => Self::Zstd,
            _ => Self::None,
        })
    }
}

const MAX_NAME: usize = 255;
const MAX_PATH: usize = 4096;
const MAX_HOPS: usize = 40;
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// A layer file's tar stream, decompressed by what its first bytes say.
pub(crate) fn open_layer(path: &Path) -> Result<Box<dyn Read>, OciError> {
    let f = std::fs::File::open(path)
        .map_err(|e| OciError::io(format!("reading {}", path.display()), e))?;
    let f = std::io::BufReader::new(f);
    Ok(match Compression::sniff(path)? {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(f)
                .map_err(|e| OciError::io(format!("reading {}", path.display()), e))?,
        ),
    })
}

/// Applies the layer at `blob` (tar, gzip or zstd) to `root`, which this
/// process alone writes. `name` names the layer in errors.
pub fn apply_layer(
    root: &Path,
    blob: &Path,
    name: &str,
    limits: &Limits,
    done: &mut Applied,
) -> Result<(), OciError> {
    let refuse = |detail: String| OciError::Layer {
        layer: name.to_owned(),
        detail,
    };
    let read_err = |e: std::io::Error| refuse(format!("it is not a readable tar archive ({e})"));
    // The tar crate reads a long name or a PAX header whole into memory:
    // check every header's size (and count every header, whiteouts too)
    // before a pass that reads them.
    check_headers(open_layer(blob)?, limits).map_err(&refuse)?;
    // Whiteouts speak of lower layers only: apply them all first, then the
    // layer's own entries (which may recreate what was whited out).
    let mut archive = tar::Archive::new(open_layer(blob)?);
    for entry in archive.entries().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry_path(&entry.path_bytes()).map_err(&refuse)?;
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !file_name.starts_with(WHITEOUT) {
            continue;
        }
        done.whiteouts += 1;
        let parent =
            resolve_dir(root, path.parent().unwrap_or(Path::new("")), false).map_err(&refuse)?;
        let Some(parent) = parent else { continue };
        if file_name == OPAQUE {
            if let Ok(rd) = std::fs::read_dir(&parent) {
                for e in rd.flatten() {
                    remove_entry(&e.path())
                        .map_err(|e| OciError::io(format!("emptying {}", parent.display()), e))?;
                }
            }
        } else {
            let target = &file_name[WHITEOUT.len()..];
            if target.is_empty() || target == "." || target == ".." {
                return Err(refuse(format!("whiteout {} names nothing", path.display())));
            }
            remove_entry(&parent.join(target)).map_err(|e| {
                OciError::io(format!("deleting {}", parent.join(target).display()), e)
            })?;
        }
    }
    let mut dir_modes: Vec<(PathBuf, u32, (u64, u64))> = Vec::new();
    let mut archive = tar::Archive::new(open_layer(blob)?);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let path = entry_path(&entry.path_bytes()).map_err(&refuse)?;
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(WHITEOUT))
        {
            continue;
        }
        done.entries += 1;
        if done.entries > limits.max_entries {
            return Err(refuse(format!(
                "the image has more than {} entries",
                limits.max_entries
            )));
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(read_err)? & 0o7777;
        let owner = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        if path.as_os_str().is_empty() {
            // The root itself: only its mode and owner.
            if kind.is_dir() {
                set_meta(root, mode, owner, false)
                    .map_err(|e| OciError::io("setting the root's mode", e))?;
            }
            continue;
        }
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            done.dropped_special += 1;
            continue;
        }
        let parent = resolve_dir(root, path.parent().unwrap_or(Path::new("")), true)
            .map_err(&refuse)?
            .expect("created");
        let leaf = parent.join(path.file_name().expect("a non-empty path has a name"));
        let io = |what: &str| {
            let leaf = leaf.clone();
            let what = what.to_owned();
            move |e| OciError::io(format!("{what} {}", leaf.display()), e)
        };
        match kind {
            tar::EntryType::Directory => {
                let is_dir = leaf.symlink_metadata().is_ok_and(|m| m.is_dir());
                if !is_dir {
                    remove_entry(&leaf).map_err(io("replacing"))?;
                    std::fs::create_dir(&leaf).map_err(io("creating"))?;
                }
                // Its own mode once the layer is in: a read-only directory
                // must still take the entries that follow it.
                set_meta(&leaf, 0o755, owner, false).map_err(io("setting the owner of"))?;
                dir_modes.push((path.clone(), mode, owner));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.size();
                done.bytes = done.bytes.saturating_add(size);
                if done.bytes > limits.max_bytes {
                    return Err(refuse(format!(
                        "its files come to more than {} bytes",
                        limits.max_bytes
                    )));
                }
                remove_entry(&leaf).map_err(io("replacing"))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&leaf)
                    .map_err(io("creating"))?;
                let copied =
                    std::io::copy(&mut (&mut entry).take(size), &mut f).map_err(read_err)?;
                if copied != size {
                    return Err(refuse(format!("{} ends early", path.display())));
                }
                // Builds compare modification times: keep the image's.
                if let Ok(mtime) = header.mtime() {
                    let _ = f.set_modified(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime),
                    );
                }
                drop(f);
                set_meta(&leaf, mode, owner, false).map_err(io("setting the mode of"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(format!("symlink {} has no target", path.display())))?;
                if target.is_empty() || target.len() > MAX_PATH || target.contains(&0) {
                    return Err(refuse(format!(
                        "symlink {} has an empty or overlong target",
                        path.display()
                    )));
                }
                remove_entry(&leaf).map_err(io("replacing"))?;
                let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&target);
                std::os::unix::fs::symlink(target, &leaf).map_err(io("creating"))?;
                set_meta(&leaf, mode, owner, true).map_err(io("setting the owner of"))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(format!("hard link {} has no target", path.display())))?;
                let target = entry_path(&target).map_err(&refuse)?;
                let tparent = resolve_dir(root, target.parent().unwrap_or(Path::new("")), false)
                    .map_err(&refuse)?;
                let source = tparent
                    .zip(target.file_name())
                    .map(|(p, n)| p.join(n))
                    .filter(|s| s.symlink_metadata().is_ok_and(|m| m.is_file()))
                    .ok_or_else(|| {
                        refuse(format!(
                            "hard link {} names {}, which is not a regular file of the image",
                            path.display(),
                            target.display()
                        ))
                    })?;
                if source == leaf {
                    continue;
                }
                remove_entry(&leaf).map_err(io("replacing"))?;
                // linkat without AT_SYMLINK_FOLLOW: the source is not followed.
                std::fs::hard_link(&source, &leaf).map_err(io("linking"))?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                return Err(refuse(format!(
                    "{} has an entry type pyro does not know ({other:?})",
                    path.display()
                )));
            }
        }
    }
    // Deepest first, so a read-only parent is set after its children.
    // Each path is resolved again inside the tree: a later entry of the
    // layer may have replaced a directory on the way with a link.
    dir_modes.sort_by_key(|(p, ..)| std::cmp::Reverse(p.components().count()));
    for (rel, mode, owner) in dir_modes {
        if let Ok(Some(dir)) = resolve_dir(root, &rel, false) {
            set_meta(&dir, mode, owner, false)
                .map_err(|e| OciError::io(format!("setting the mode of {}", dir.display()), e))?;
        }
    }
    done.layers += 1;
    Ok(())
}

/// The largest long name, long link or PAX header pyro reads.
const MAX_META_ENTRY: u64 = 64 << 10;

/// Walks a tar's headers itself (the tar crate would read a long name or
/// a PAX header whole into memory first): refuses a metadata entry (GNU
/// long name or link, PAX header) over [`MAX_META_ENTRY`], more headers
/// than `limits` allows entries (with room for their metadata), and more
/// bytes than `limits` allows. Data is skipped, not kept; the walk stops
/// at the first zero block, as the tar crate's does.
pub fn check_headers(mut reader: impl Read, limits: &Limits) -> Result<(), String> {
    let bad = |what: &str| format!("it is not a readable tar archive ({what})");
    let mut block = [0u8; 512];
    let read_block = |r: &mut dyn Read, b: &mut [u8; 512]| -> Result<bool, String> {
        let mut got = 0;
        while got < 512 {
            match r.read(&mut b[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(bad("it ends inside a header")),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(bad(&e.to_string())),
            }
        }
        Ok(true)
    };
    let (mut headers, mut bytes) = (0u64, 0u64);
    let byte_cap = limits
        .max_bytes
        .saturating_add(limits.max_entries.saturating_mul(1024));
    let mut pax_size: Option<u64> = None;
    loop {
        if !read_block(&mut reader, &mut block)? || block.iter().all(|b| *b == 0) {
            return Ok(());
        }
        headers += 1;
        if headers > limits.max_entries.saturating_mul(3) {
            return Err(format!("it has more than {} entries", limits.max_entries));
        }
        let kind = block[156];
        let mut size =
            header_size(&block[124..136]).ok_or_else(|| bad("a header's size is not a number"))?;
        // Where this walk and the tar crate's could part (and the tar crate
        // then read a header this walk took for data), the layer is
        // refused instead: metadata headers without a ustar or GNU magic,
        // a global header while a PAX size waits, malformed PAX records,
        // sparse flags other than 0 and 1.
        let meta = matches!(kind, b'L' | b'K' | b'x');
        let recognized = &block[257..265] == b"ustar  \0" || &block[257..265] == b"ustar\x0000";
        if meta && !recognized {
            return Err(bad(
                "a long name or PAX header without a ustar or GNU magic",
            ));
        }
        if kind == b'g' && pax_size.is_some() {
            return Err(bad(
                "a global PAX header between a PAX header and its entry",
            ));
        }
        if !meta
            && kind != b'g'
            && let Some(s) = pax_size.take()
        {
            size = s;
        }
        if meta {
            if size > MAX_META_ENTRY {
                return Err(format!(
                    "a long name or PAX header of {size} bytes (pyro reads at most {MAX_META_ENTRY})"
                ));
            }
            let mut body = vec![0u8; usize::try_from(size.div_ceil(512) * 512).unwrap_or(0)];
            reader
                .read_exact(&mut body)
                .map_err(|e| bad(&e.to_string()))?;
            if kind == b'x' {
                let len = usize::try_from(size).unwrap_or(0);
                pax_size = pax_size_record(&body[..len]).map_err(|e| bad(&e))?;
            }
            continue;
        }
        if kind == b'S' {
            // GNU sparse: extension blocks of the sparse map follow.
            let flag = |b: u8| match b {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(bad("a sparse map flag other than 0 or 1")),
            };
            let mut extended = flag(block[482])?;
            while extended {
                if !read_block(&mut reader, &mut block)? {
                    return Err(bad("it ends inside a sparse map"));
                }
                headers += 1;
                extended = flag(block[504])?;
            }
        }
        bytes = bytes.saturating_add(size);
        if bytes > byte_cap {
            return Err(format!(
                "its files come to more than {} bytes",
                limits.max_bytes
            ));
        }
        let mut data = (&mut reader).take(size.div_ceil(512) * 512);
        let skipped =
            std::io::copy(&mut data, &mut std::io::sink()).map_err(|e| bad(&e.to_string()))?;
        if skipped != size.div_ceil(512) * 512 {
            return Err(bad("it ends inside an entry"));
        }
    }
}

/// A tar header's size field: octal, or GNU base-256.
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = 0;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of a PAX header, read strictly (each record
/// `LEN key=value\n` with LEN its exact length in bytes; anything
/// malformed is an error, since a laxer or stricter reader would walk the
/// archive differently).
fn pax_size_record(body: &[u8]) -> Result<Option<u64>, String> {
    let digits = |t: &[u8]| -> Option<u64> {
        std::str::from_utf8(t)
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
    };
    let mut rest = body;
    let mut size = None;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or("a PAX record without a length")?;
        let len = digits(&rest[..sp])
            .and_then(|l| usize::try_from(l).ok())
            .ok_or("a PAX record with a bad length")?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("a PAX record whose length is wrong".into());
        }
        let record = &rest[sp + 1..len - 1];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or("a PAX record without `=`")?;
        if &record[..eq] == b"size" {
            size = Some(digits(&record[eq + 1..]).ok_or("a PAX size that is not a number")?);
        }
        rest = &rest[len..];
    }
    Ok(size)
}

/// Sets permission bits and, as root, the owner; never follows `path`
/// when it is a link (`link`: only the owner is set).
fn set_meta(path: &Path, mode: u32, (uid, gid): (u64, u64), link: bool) -> std::io::Result<()> {
    if is_root() {
        let (uid, gid) = (
            u32::try_from(uid).unwrap_or(65534),
            u32::try_from(gid).unwrap_or(65534),
        );
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if !link {
        // chmod after chown: chown clears set-id bits.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Deletes whatever is at `path` (a directory with its contents), without
/// following it; nothing there is fine.
fn remove_entry(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        // remove_dir_all does not follow links inside.
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    }
}

/// A tar entry's path, made relative and checked: no `..`, bounded
/// lengths, no NUL. The root (`./`) is the empty path.
pub fn entry_path(raw: &[u8]) -> Result<PathBuf, String> {
    if raw.len() > MAX_PATH || raw.contains(&0) {
        return Err(format!(
            "an entry path is longer than {MAX_PATH} bytes or holds a NUL"
        ));
    }
    let p = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => {
                if n.len() > MAX_NAME {
                    return Err(format!(
                        "an entry name is longer than {MAX_NAME} bytes: {}",
                        p.display()
                    ));
                }
                out.push(n);
            }
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!(
                    "entry {} climbs out of the image with `..`",
                    p.display()
                ));
            }
        }
    }
    Ok(out)
}

/// The directory `rel` names inside `root`, following links as if `root`
/// were `/` (never above it). With `create`, missing directories are made
/// (0755, root-owned); without, a missing one gives `None`.
pub fn resolve_dir(root: &Path, rel: &Path, create: bool) -> Result<Option<PathBuf>, String> {
    let mut todo: Vec<std::ffi::OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .rev()
        .collect();
    let mut stack: Vec<std::ffi::OsString> = Vec::new();
    let mut hops = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            stack.pop();
            continue;
        }
        if name == "." || name.is_empty() {
            continue;
        }
        let here = stack
            .iter()
            .fold(root.to_path_buf(), |p, n| p.join(n))
            .join(&name);
        match here.symlink_metadata() {
            Ok(m) if m.is_dir() => stack.push(name),
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(format!(
                        "{} goes through more than {MAX_HOPS} links",
                        rel.display()
                    ));
                }
                let target = std::fs::read_link(&here)
                    .map_err(|e| format!("reading link {}: {e}", here.display()))?;
                if target.is_absolute() {
                    stack.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push(n.to_owned()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory, yet the layer puts entries under it",
                    here.display()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                std::fs::create_dir(&here)
                    .map_err(|e| format!("creating {}: {e}", here.display()))?;
                std::fs::set_permissions(&here, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("chmod {}: {e}", here.display()))?;
                stack.push(name);
            }
            Err(e) => return Err(format!("reading {}: {e}", here.display())),
        }
    }
    Ok(Some(
        stack.iter().fold(root.to_path_buf(), |p, n| p.join(n)),
    ))
}

#[cfg(test)]
mod tests;

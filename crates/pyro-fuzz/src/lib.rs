//! Fuzz targets. Each takes arbitrary bytes and drives one parser of input
//! that pyro does not control (a guest's frames and archives, a caller's
//! patches and paths, a guest-written disk image, DNS queries and kernel
//! log messages from a guest's network, container image layers), through
//! the function pyro itself
//! calls. A target panics only on a broken invariant; an error return is a
//! correct answer to bad input.
//!
//! The coverage-guided driver is `fuzz/` (libFuzzer, built on the stable
//! toolchain by `scripts/fuzz.sh`); the seed corpora live in
//! `fuzz/corpus/<target>/`, and this crate's tests feed every seed through
//! its target on each test run.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use pyro_agent::patch::{self, Base};
use pyro_protocol::{AgentError, Envelope, FrameKind, Hello, Request, Response};

/// A target: its name (the corpus directory and the fuzz binary) and its
/// entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("frame", frame),
    ("archive", archive),
    ("patch", patch),
    ("paths", paths),
    ("disk", disk),
    ("dns", dns),
    ("nflog", nflog),
    ("layers", layers),
];

/// A container image layer (plain, gzip or zstd tar) from a registry or
/// an image archive, applied twice (the second time over what the first
/// made, as a later layer would) to a root tree three levels down in a
/// scratch directory, as `env import` does: nothing may appear beside the
/// tree, at any level.
pub fn layers(data: &[u8]) {
    use pyro_oci::layers::{Applied, Limits, apply_layer};
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let root = dir.path().join("a/b/root");
    let blob = dir.path().join("blob");
    if std::fs::create_dir_all(&root).is_err() || std::fs::write(&blob, data).is_err() {
        return;
    }
    let limits = Limits {
        max_bytes: 4 << 20,
        max_entries: 2000,
    };
    for _ in 0..2 {
        let _ = apply_layer(&root, &blob, "fuzz", &limits, &mut Applied::default());
    }
    for (level, only) in [("", &["a", "blob"][..]), ("a", &["b"]), ("a/b", &["root"])] {
        assert_eq!(
            names_in(&dir.path().join(level)),
            only,
            "a layer wrote outside the tree"
        );
    }
}

/// The agent protocol as the host reads it from a guest: frames one after
/// another, and each control message decoded as every message type.
pub fn frame(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((frame, used))) = pyro_protocol::decode_frame(rest) {
        assert!(used > 4 && used <= rest.len(), "a frame took {used} bytes");
        assert!(frame.payload.len() < pyro_protocol::MAX_FRAME_BYTES);
        if frame.kind == FrameKind::Message {
            let _ = frame.message::<Response>();
            let _ = frame.message::<Request>();
            let _ = frame.message::<Hello>();
            let _ = frame.message::<Envelope>();
        }
        rest = &rest[used..];
    }
}

/// A tar from a guest or a caller: checked and normalised in memory (the
/// host's `repack`), then unpacked into a scratch directory (the agent's
/// and the host's `extract`), which must keep everything inside it.
pub fn archive(data: &[u8]) {
    let mut normalised = Vec::new();
    let _ = pyro_archive::repack(data, &mut normalised);
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    // Three levels deep, so an escape by a `..` or two lands in the
    // scratch directory, where it is seen.
    let dest = dir.path().join("a/b/dest");
    if std::fs::create_dir_all(&dest).is_err() {
        return;
    }
    let _ = pyro_archive::extract(data, &dest);
    // Nothing may appear beside the destination, at any level.
    for (level, only) in [("", "a"), ("a", "b"), ("a/b", "dest")] {
        assert_eq!(
            names_in(&dir.path().join(level)),
            [only],
            "extract wrote outside"
        );
    }
}

/// The names in a directory, sorted (none when it cannot be read).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A patch against a small in-memory tree, planned by the agent's own
/// patch code. Every path it plans must stay inside the tree.
pub fn patch(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tree: BTreeMap<&Path, Base> = [
        ("a.txt", b"one\ntwo\nthree\n".to_vec(), 0o644, false),
        ("bin/run.sh", b"#!/bin/sh\necho hi\n".to_vec(), 0o755, false),
        ("link", b"a.txt".to_vec(), 0o777, true),
    ]
    .into_iter()
    .map(|(p, content, mode, symlink)| {
        let base = Base {
            content,
            mode,
            symlink,
        };
        (Path::new(p), base)
    })
    .collect();
    let base_of = |p: &Path| -> Result<Option<Base>, AgentError> {
        assert!(
            lexically_inside(p),
            "the patch code asked for {}",
            p.display()
        );
        Ok(tree.get(p).cloned())
    };
    if let Ok(changed) = patch::check(text, base_of) {
        for c in changed {
            assert!(lexically_inside(Path::new(&c.path)), "patched {}", c.path);
        }
    }
}

/// Path rules: a caller's workspace path, a member name in an archive, and
/// whether a symlink target stays in its tree. Each answer is checked
/// against an independent lexical walk.
pub fn paths(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(p) = pyro_agent::paths::workspace_path(a) {
        let rel = p.strip_prefix(pyro_agent::paths::WORKSPACE);
        assert!(
            rel.is_ok_and(lexically_inside_or_root),
            "{a:?} became {}",
            p.display()
        );
    }
    if let Ok(p) = pyro_archive::relative_member(a) {
        assert!(lexically_inside(&p), "{a:?} became {}", p.display());
    }
    let (link, target) = (Path::new(a), Path::new(b));
    if pyro_archive::relative_member(a).is_ok() && pyro_archive::symlink_stays_inside(link, target)
    {
        let mut full = link.parent().map(Path::to_path_buf).unwrap_or_default();
        full.push(target);
        assert!(
            resolves_inside(&full),
            "{a:?} -> {b:?} was judged to stay inside"
        );
    }
}

/// A guest-written disk image, read in user space the way pyro's disk
/// tools read it: its geometry checked first, as they check it, then every
/// directory walked (bounded), every regular file
/// opened and read (bounded), every link's target read when its length is
/// within what they read (they refuse a longer one unread).
pub fn disk(data: &[u8]) {
    const ENTRIES_MAX: usize = 256;
    const READ_MAX: u64 = 1 << 20;
    let (at, len) = pyro_vmm::disk::EXT4_SUPERBLOCK;
    let sb = data.get(at as usize..).unwrap_or_default();
    if pyro_vmm::disk::check_ext4_geometry(&sb[..sb.len().min(len)], data.len() as u64).is_err() {
        return;
    }
    let Ok(fs) = ext4_view::Ext4::load(Box::new(data.to_vec())) else {
        return;
    };
    let mut todo = vec![(b"/".to_vec(), 0usize)];
    let mut seen = 0;
    while let Some((dir, depth)) = todo.pop() {
        let Ok(entries) = fs.read_dir(dir.as_slice()) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > ENTRIES_MAX {
                return;
            }
            let name = e.file_name().as_ref().to_vec();
            if name == b"." || name == b".." {
                continue;
            }
            let mut path = dir.clone();
            if path.last() != Some(&b'/') {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let Ok(meta) = fs.symlink_metadata(path.as_slice()) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() && depth < 8 {
                todo.push((path, depth + 1));
            } else if ft.is_regular_file() {
                if let Ok(f) = fs.open(path.as_slice()) {
                    let _ =
                        std::io::copy(&mut std::io::Read::take(f, READ_MAX), &mut std::io::sink());
                }
            } else if ft.is_symlink() && meta.len() <= pyro_vmm::disk::LINK_TARGET_MAX {
                let _ = fs.read_link(path.as_slice());
            }
        }
    }
}

/// A DNS query from a guest, as the policy resolver parses it, and the
/// replies it builds from it (which must parse as the same question).
pub fn dns(data: &[u8]) {
    use pyro_net::dns;
    let _ = dns::format_error(data);
    let Ok(q) = dns::parse_query(data) else {
        return;
    };
    let addrs = [std::net::Ipv4Addr::new(203, 0, 113, 7)];
    for reply in [
        dns::answer(data, &q, &addrs, 30),
        dns::reply_with(data, &q, dns::Rcode::Refused),
    ] {
        assert!(reply.len() >= 12, "a reply without a header");
        assert_eq!(reply[..2], data[..2], "a reply with another id");
    }
}

/// A netlink datagram of logged packets, as the denial reader walks it.
pub fn nflog(data: &[u8]) {
    for p in pyro_net::nflog::packets_in(data) {
        let _ = pyro_net::nflog::parse_ipv4(&p.payload);
    }
    let _ = pyro_net::nflog::parse_packet_attrs(data);
    let _ = pyro_net::nflog::parse_ipv4(data);
}

/// A relative path of names only (no root, no `..`).
fn lexically_inside(p: &Path) -> bool {
    !p.as_os_str().is_empty() && lexically_inside_or_root(p)
}

fn lexically_inside_or_root(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Walks `p` lexically from a tree's root: false if it ever climbs above.
fn resolves_inside(p: &Path) -> bool {
    let mut stack: Vec<PathBuf> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => stack.push(n.into()),
            Component::CurDir => {}
            Component::ParentDir => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests;

//! Images from a tarball: the output of `docker save` (its
//! `manifest.json`) or an OCI image layout (`index.json` and
//! `blobs/sha256/…`), as `docker save` of Docker 25 and later writes both.
//!
//! The tarball is hostile like any layer: only regular files with clean
//! relative paths are taken out (links inside it are remembered and
//! resolved among its own members), sizes are bounded, and every blob is
//! checked against its digest (OCI layout) or the config's `diff_ids`
//! (the older `docker save` layout).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::resolve::{Doc, ImageConfig};
use crate::{OciError, sha256_digest};

/// An image read from a tarball.
#[derive(Debug)]
pub struct LocalImage {
    /// Its config.
    pub config: ImageConfig,
    /// The digest that names it: the manifest's (OCI layout) or the
    /// config's (older `docker save`).
    pub digest: String,
    /// Its layers, in order, as files under the work directory.
    pub layers: Vec<PathBuf>,
}

const MAX_MEMBERS: usize = 100_000;

/// Unpacks the image tarball at `tarball` into `work` (an empty
/// directory this process owns) and reads it.
pub fn open(tarball: &Path, work: &Path, max_bytes: u64) -> Result<LocalImage, OciError> {
    let what = format!("the image archive {}", tarball.display());
    let bad = |d: String| OciError::invalid(what.clone(), d);
    let f = std::fs::File::open(tarball)
        .map_err(|e| OciError::io(format!("reading {}", tarball.display()), e))?;
    let limits = crate::layers::Limits {
        max_bytes,
        max_entries: MAX_MEMBERS as u64,
    };
    crate::layers::check_headers(std::io::BufReader::new(&f), &limits).map_err(&bad)?;
    let f = std::fs::File::open(tarball)
        .map_err(|e| OciError::io(format!("reading {}", tarball.display()), e))?;
    let mut ar = tar::Archive::new(std::io::BufReader::new(f));
    let mut files: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut links: HashMap<PathBuf, PathBuf> = HashMap::new();
    let (mut total, mut count) = (0u64, 0usize);
    for entry in ar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        count += 1;
        if count > MAX_MEMBERS {
            return Err(bad(format!("it has more than {MAX_MEMBERS} members")));
        }
        let path = crate::layers::entry_path(&entry.path_bytes()).map_err(&bad)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() {
            if let Some(t) = entry.link_name_bytes() {
                let t =
                    Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&t));
                let joined = path.parent().unwrap_or(Path::new("")).join(t);
                if let Ok(clean) = normalize(&joined) {
                    links.insert(path, clean);
                }
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > max_bytes {
            return Err(OciError::TooLarge {
                what,
                size: total,
                limit: max_bytes,
            });
        }
        let dest = work.join(format!("m{count}"));
        let mut out = std::fs::File::create(&dest)
            .map_err(|e| OciError::io(format!("writing {}", dest.display()), e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| bad(e.to_string()))?;
        files.insert(path, dest);
    }
    let find = |name: &Path| -> Result<PathBuf, OciError> {
        let mut p = normalize(name).map_err(&bad)?;
        for _ in 0..8 {
            if let Some(f) = files.get(&p) {
                return Ok(f.clone());
            }
            match links.get(&p) {
                Some(next) => p = next.clone(),
                None => break,
            }
        }
        Err(bad(format!("it has no member {}", name.display())))
    };
    let read_small = |p: &Path| -> Result<Vec<u8>, OciError> {
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        if len > crate::MAX_MANIFEST_BYTES as u64 {
            return Err(bad(format!("a metadata member is {len} bytes")));
        }
        std::fs::read(p).map_err(|e| OciError::io(format!("reading {}", p.display()), e))
    };
    let blob = |digest: &str| -> Result<PathBuf, OciError> {
        let hex = crate::sha256_hex(digest)?;
        let p = find(&Path::new("blobs/sha256").join(hex))?;
        let actual = crate::registry::file_digest(&p)?;
        if actual != digest {
            return Err(OciError::Digest {
                what: format!("blob {digest} of {}", tarball.display()),
                expected: digest.into(),
                actual,
            });
        }
        Ok(p)
    };

    if let Ok(index) = find(Path::new("index.json")) {
        let mut doc = crate::resolve::parse(&read_small(&index)?, "the archive's index.json");
        // Docker's index.json names its one manifest without a platform.
        if let Err(OciError::Platform { .. }) = doc {
            let v: serde_json::Value =
                serde_json::from_slice(&read_small(&index)?).map_err(|e| bad(e.to_string()))?;
            if let Some([one]) = v["manifests"].as_array().map(Vec::as_slice)
                && one["platform"].is_null()
                && let Some(d) = one["digest"].as_str()
            {
                doc = Ok(Doc::Index(d.to_owned()));
            }
        }
        let mut digest = match doc? {
            Doc::Index(d) => d,
            Doc::Image(_) => return Err(bad("index.json is a manifest, not an index".into())),
        };
        for _ in 0..4 {
            let bytes = read_small(&blob(&digest)?)?;
            match crate::resolve::parse(&bytes, &format!("manifest {digest}"))? {
                Doc::Index(next) => digest = next,
                Doc::Image(m) => {
                    let config =
                        crate::resolve::parse_config(&read_small(&blob(&m.config.digest)?)?)?;
                    let layers = m
                        .layers
                        .iter()
                        .map(|l| blob(&l.digest))
                        .collect::<Result<_, _>>()?;
                    return Ok(LocalImage {
                        config,
                        digest,
                        layers,
                    });
                }
            }
        }
        return Err(bad("its indexes nest more than four deep".into()));
    }

    let manifest = find(Path::new("manifest.json"))?;
    let v: serde_json::Value = serde_json::from_slice(&read_small(&manifest)?)
        .map_err(|e| bad(format!("manifest.json: {e}")))?;
    let images = v
        .as_array()
        .ok_or_else(|| bad("manifest.json is not a list".into()))?;
    let [image] = images.as_slice() else {
        return Err(bad(format!(
            "it holds {} images; save one image per archive",
            images.len()
        )));
    };
    let config_name = image["Config"]
        .as_str()
        .ok_or_else(|| bad("manifest.json has no Config".into()))?;
    let config_bytes = read_small(&find(Path::new(config_name))?)?;
    let config = crate::resolve::parse_config(&config_bytes)?;
    let names: Vec<&str> = image["Layers"]
        .as_array()
        .ok_or_else(|| bad("manifest.json has no Layers".into()))?
        .iter()
        .map(|l| {
            l.as_str()
                .ok_or_else(|| bad("a layer name is not a string".into()))
        })
        .collect::<Result<_, _>>()?;
    if names.len() > crate::MAX_LAYERS {
        return Err(bad(format!("it has {} layers", names.len())));
    }
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    if diff_ids.len() != names.len() {
        return Err(bad(format!(
            "its config lists {} layer digests for {} layers",
            diff_ids.len(),
            names.len()
        )));
    }
    let mut layers = Vec::new();
    for (name, want) in names.iter().zip(&diff_ids) {
        let p = find(Path::new(name))?;
        let actual = uncompressed_digest(&p)?;
        if &actual != want {
            return Err(OciError::Digest {
                what: format!("layer {name} of {}", tarball.display()),
                expected: want.clone(),
                actual,
            });
        }
        layers.push(p);
    }
    Ok(LocalImage {
        config,
        digest: sha256_digest(&config_bytes),
        layers,
    })
}

/// The sha256 of a layer's uncompressed tar (what `diff_ids` list).
fn uncompressed_digest(path: &Path) -> Result<String, OciError> {
    let io = |e| OciError::io(format!("reading {}", path.display()), e);
    let mut r = crate::layers::open_layer(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A member path with `.` and `..` resolved (never above the top).
fn normalize(p: &Path) -> Result<PathBuf, String> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop()
                    .ok_or_else(|| format!("{} climbs out of the archive", p.display()))?;
            }
            _ => {}
        }
    }
    Ok(out.iter().collect())
}

#[cfg(test)]
mod tests;

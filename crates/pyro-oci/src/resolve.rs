//! Choosing the linux/amd64 manifest of an index, and reading manifests
//! and configs with their bounds.

use oci_client::manifest::OciImageManifest;
use serde::Deserialize;

use crate::{MAX_LAYERS, MAX_MANIFEST_BYTES, OciError};

/// Media types of an index (OCI and Docker).
pub(crate) const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Media types of an image manifest (OCI and Docker).
pub(crate) const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

/// What a manifest document is.
pub(crate) enum Doc {
    /// An index: the digest of its linux/amd64 manifest.
    Index(String),
    /// An image manifest.
    Image(Box<OciImageManifest>),
}

/// Reads a manifest or index (`what` names it in errors).
pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Doc, OciError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(OciError::TooLarge {
            what: what.into(),
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES as u64,
        });
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| OciError::invalid(what, e))?;
    let is_index = probe
        .media_type
        .as_deref()
        .is_some_and(|m| INDEX_TYPES.contains(&m))
        || (probe.media_type.is_none() && probe.manifests.is_some());
    if is_index {
        let entries = probe.manifests.unwrap_or_default();
        let offered: Vec<String> = entries
            .iter()
            .filter_map(|e| e.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        let amd64: Vec<_> = entries
            .iter()
            .filter(|e| {
                e.platform.as_ref().is_some_and(|p| {
                    p.os == "linux" && matches!(p.architecture.as_str(), "amd64" | "x86_64")
                })
            })
            .collect();
        let chosen = amd64.iter().find(|e| {
            e.media_type
                .as_deref()
                .is_none_or(|m| MANIFEST_TYPES.contains(&m))
        });
        if chosen.is_none()
            && let Some(e) = amd64.first()
        {
            return Err(OciError::invalid(
                what,
                format!(
                    "its linux/amd64 entry is {}, not an image manifest",
                    e.media_type.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        return match chosen {
            Some(e) => {
                crate::sha256_hex(&e.digest)?;
                Ok(Doc::Index(e.digest.clone()))
            }
            None => Err(OciError::Platform {
                reference: what.into(),
                offered: if offered.is_empty() {
                    "none".into()
                } else {
                    offered.join(", ")
                },
            }),
        };
    }
    if let Some(m) = probe.media_type.as_deref()
        && !MANIFEST_TYPES.contains(&m)
    {
        return Err(OciError::invalid(
            what,
            format!("media type {m} is neither an image manifest nor an index"),
        ));
    }
    let manifest: OciImageManifest =
        serde_json::from_slice(bytes).map_err(|e| OciError::invalid(what, e))?;
    if manifest.layers.len() > MAX_LAYERS {
        return Err(OciError::invalid(
            what,
            format!(
                "it has {} layers; pyro accepts at most {MAX_LAYERS}",
                manifest.layers.len()
            ),
        ));
    }
    for d in manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config))
    {
        crate::sha256_hex(&d.digest)?;
        if d.size < 0 || d.size as u64 > crate::MAX_BLOB_BYTES {
            return Err(OciError::TooLarge {
                what: format!("blob {}", d.digest),
                size: d.size.max(0) as u64,
                limit: crate::MAX_BLOB_BYTES,
            });
        }
    }
    Ok(Doc::Image(Box::new(manifest)))
}

/// The parts of an image config pyro uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
pub struct ImageConfig {
    /// `os`.
    #[serde(default)]
    pub os: String,
    /// `architecture`.
    #[serde(default)]
    pub architecture: String,
    /// `config`: how the image means its processes to run.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// `rootfs.diff_ids`: the digests of the uncompressed layers.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `config` of an image config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
pub struct RunConfig {
    /// `KEY=VALUE` pairs.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// The working directory.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
pub struct RootFs {
    /// Digests of the uncompressed layers, in order.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Reads an image config, checking it is for linux/amd64.
pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, OciError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(OciError::TooLarge {
            what: "the image config".into(),
            size: bytes.len() as u64,
            limit: MAX_MANIFEST_BYTES as u64,
        });
    }
    let c: ImageConfig =
        serde_json::from_slice(bytes).map_err(|e| OciError::invalid("the image config", e))?;
    if (!c.os.is_empty() && c.os != "linux")
        || (!c.architecture.is_empty() && !matches!(c.architecture.as_str(), "amd64" | "x86_64"))
    {
        return Err(OciError::Platform {
            reference: "the image".into(),
            offered: format!("{}/{}", c.os, c.architecture),
        });
    }
    if let Some(env) = c.config.as_ref().and_then(|r| r.env.as_ref())
        && (env.len() > 1024 || env.iter().any(|e| e.len() > 32 << 10 || !e.contains('=')))
    {
        return Err(OciError::invalid(
            "the image config",
            "its Env has more than 1024 entries, an entry over 32 KiB, or one without `=`",
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests;

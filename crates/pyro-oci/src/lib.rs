//! pyro's OCI registry client.
//!
//! Everything here treats the registry, its manifests, its blobs and the
//! layers inside them as hostile: sizes are bounded before and while they
//! are read, every manifest and blob is checked against its sha256 digest
//! before it is used, and layer contents are applied to a root tree
//! without ever following a link out of it (see [`layers`]).
//!
//! - [`auth`]: credentials from the environment or the Docker config file.
//! - [`registry`]: manifest resolution (index to linux/amd64), resumable
//!   digest-verified blob downloads with retries, chunked pushes.
//! - [`layers`]: applying image layers in order, with whiteouts and opaque
//!   directories.
//! - [`archive`]: images from a `docker save` or OCI-layout tarball.

#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "registry")]
pub mod archive;
#[cfg(feature = "registry")]
pub mod auth;
pub mod layers;
#[cfg(feature = "registry")]
pub mod registry;
#[cfg(feature = "registry")]
mod resolve;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "registry")]
pub use oci_client::Reference;
#[cfg(feature = "registry")]
pub use oci_client::manifest::{OciDescriptor, OciImageManifest};
#[cfg(feature = "registry")]
pub use oci_client::secrets::RegistryAuth;
#[cfg(feature = "registry")]
pub use resolve::{ImageConfig, RunConfig, parse_config};

/// The largest manifest or image config pyro reads.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// The most layers an image may have.
pub const MAX_LAYERS: usize = 256;
/// The largest blob pyro downloads (compressed).
pub const MAX_BLOB_BYTES: u64 = 32 << 30;

/// Everything that can go wrong talking to a registry or reading an image.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error(
        "{reference:?} is not an image reference ({reason}); write it as REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST"
    )]
    Reference {
        /// What was given.
        reference: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The registry refused the credentials, or wants some.
    #[error(
        "the registry {registry} refused access to {reference} ({detail}); set PYRO_REGISTRY_USERNAME and PYRO_REGISTRY_PASSWORD, or log in with `docker login {registry}`"
    )]
    Auth {
        /// Registry host.
        registry: String,
        /// The reference.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// The manifest or blob does not exist.
    #[error("{reference} was not found in its registry ({detail}); check the name and tag")]
    NotFound {
        /// The reference.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// Content did not match its digest: nothing from it was used.
    #[error(
        "{what} does not match its digest (expected {expected}, got {actual}); nothing from it was installed. The registry or something between served altered content: try again, and report it if it persists"
    )]
    Digest {
        /// What was checked.
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// Something is larger than pyro accepts.
    #[error("{what} is {size} bytes, more than the {limit} pyro accepts")]
    TooLarge {
        /// What.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The image has no linux/amd64 variant.
    #[error(
        "{reference} has no linux/amd64 image (it offers: {offered}); pyro guests are linux/amd64"
    )]
    Platform {
        /// The reference.
        reference: String,
        /// The platforms it offers.
        offered: String,
    },
    /// A manifest, config or archive is malformed or unsupported.
    #[error("{what} is not usable: {detail}")]
    Invalid {
        /// What.
        what: String,
        /// Why.
        detail: String,
    },
    /// A layer tries something pyro refuses (a path out of the tree, a link
    /// out of the tree, too many entries).
    #[error("layer {layer} is refused: {detail}")]
    Layer {
        /// Which layer (digest or index).
        layer: String,
        /// What it tried.
        detail: String,
    },
    /// The registry failed, after retries.
    #[error(
        "the registry failed {doing} after {attempts} attempts: {detail}; check that it is reachable and try again (downloads resume where they stopped)"
    )]
    Registry {
        /// What was being done.
        doing: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        detail: String,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl OciError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Invalid {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

#[cfg(feature = "registry")]
/// Parses an image reference (`registry/repo:tag`, `repo@sha256:…`; a bare
/// name such as `python:3.12` means Docker Hub's library).
pub fn parse_reference(text: &str) -> Result<Reference, OciError> {
    text.parse::<Reference>().map_err(|e| OciError::Reference {
        reference: text.to_owned(),
        reason: e.to_string(),
    })
}

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The hex part of a `sha256:` digest, checked to be 64 lowercase hex
/// digits (pyro accepts no other algorithm).
pub fn sha256_hex(digest: &str) -> Result<&str, OciError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| {
            OciError::invalid(
                format!("digest {digest:?}"),
                "pyro accepts sha256 digests only",
            )
        })?;
    Ok(hex)
}

/// Transfer progress: called with the bytes done and the total.
pub type OnBytes = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Progress that goes nowhere.
pub fn quiet() -> OnBytes {
    std::sync::Arc::new(|_, _| {})
}

#[cfg(test)]
mod tests;

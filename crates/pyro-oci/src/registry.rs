//! Talking to a registry: resolving a reference to a digest-verified image
//! manifest, downloading blobs (resumable, retried, verified), pushing
//! blobs in chunks and manifests.
//!
//! Registries on loopback (`localhost`, `127.0.0.0/8`, `[::1]`) are spoken
//! to over plain HTTP, as Docker does; every other registry over HTTPS.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::Digest;

use crate::resolve::{self, Doc, INDEX_TYPES, MANIFEST_TYPES};
use crate::{MAX_BLOB_BYTES, MAX_MANIFEST_BYTES, OciError, OnBytes, sha256_digest};

/// How many times a transient failure is retried.
pub const ATTEMPTS: u32 = 5;

/// A resolved image: its manifest, verified against its digest.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The image manifest (linux/amd64 when the reference named an index).
    pub manifest: OciImageManifest,
    /// The manifest's bytes.
    pub manifest_bytes: Vec<u8>,
    /// The manifest's digest.
    pub digest: String,
    /// The index's digest, when the reference named one.
    pub index_digest: Option<String>,
}

/// A client for one registry, with its credentials.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    backoff: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Whether `registry` (host with optional port) is on loopback.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn install_crypto_provider() {
    // Several callers may race; the first one wins, the rest are no-ops.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Registry {
    /// A client for the registry of `reference`, with `auth`.
    pub fn new(reference: &Reference, auth: RegistryAuth) -> Self {
        install_crypto_provider();
        let registry = reference.resolve_registry().to_owned();
        let protocol = if is_loopback(&registry) {
            ClientProtocol::HttpsExcept(vec![registry])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("pyro/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        Self {
            client: Client::new(config),
            auth,
            backoff: Duration::from_millis(500),
        }
    }

    /// [`Registry::new`] with the credentials [`crate::auth`] finds.
    pub fn for_reference(reference: &Reference) -> Result<Self, OciError> {
        let auth = crate::auth::credentials_for(reference.resolve_registry())?;
        Ok(Self::new(reference, auth))
    }

    /// Sets the first retry's delay (it doubles each time; tests use 0).
    pub fn with_backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// Runs `op` until it succeeds, fails for good, or has failed
    /// [`ATTEMPTS`] times; waits between attempts, doubling the wait.
    async fn retrying<T, F, Fut>(
        &self,
        reference: &Reference,
        doing: &str,
        mut op: F,
    ) -> Result<T, OciError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut wait = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Oci(e)) => match classify(e, reference) {
                    Failure::Final(e) => return Err(e),
                    Failure::Oci(e) if attempt >= ATTEMPTS => {
                        return Err(OciError::Registry {
                            doing: doing.into(),
                            attempts: attempt,
                            detail: e.to_string(),
                        });
                    }
                    Failure::Oci(e) => {
                        tracing::warn!(%e, attempt, "{doing}: retrying");
                    }
                },
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(8));
        }
    }

    /// Gets the tokens (or stores the basic credentials) a push needs:
    /// for pulling, which the existence checks use, and for pushing.
    async fn authorize(&self, reference: &Reference) -> Result<(), Failure> {
        for op in [
            oci_client::RegistryOperation::Pull,
            oci_client::RegistryOperation::Push,
        ] {
            self.client
                .auth(reference, &self.auth, op)
                .await
                .map_err(Failure::Oci)?;
        }
        Ok(())
    }

    /// Fetches `reference`'s manifest, choosing the linux/amd64 manifest
    /// of an index, and checks both against their digests.
    pub async fn resolve(&self, reference: &Reference) -> Result<Resolved, OciError> {
        let accept: Vec<&str> = INDEX_TYPES
            .iter()
            .chain(MANIFEST_TYPES.iter())
            .copied()
            .collect();
        let (bytes, digest) = self.manifest_bytes(reference, &accept).await?;
        if let Some(pinned) = reference.digest()
            && pinned != digest
        {
            return Err(OciError::Digest {
                what: format!("the manifest of {reference}"),
                expected: pinned.to_owned(),
                actual: digest,
            });
        }
        match resolve::parse(&bytes, &reference.whole())? {
            Doc::Image(m) => Ok(Resolved {
                manifest: *m,
                manifest_bytes: bytes,
                digest,
                index_digest: None,
            }),
            Doc::Index(chosen) => {
                let index_digest = digest;
                let by_digest = reference.clone_with_digest(chosen.clone());
                let (bytes, digest) = self.manifest_bytes(&by_digest, &MANIFEST_TYPES).await?;
                if digest != chosen {
                    return Err(OciError::Digest {
                        what: format!("the linux/amd64 manifest of {reference}"),
                        expected: chosen,
                        actual: digest,
                    });
                }
                match resolve::parse(&bytes, &by_digest.whole())? {
                    Doc::Image(m) => Ok(Resolved {
                        manifest: *m,
                        manifest_bytes: bytes,
                        digest,
                        index_digest: Some(index_digest),
                    }),
                    Doc::Index(_) => Err(OciError::invalid(
                        by_digest.whole(),
                        "an index names another index",
                    )),
                }
            }
        }
    }

    /// A manifest's bytes and the sha256 of those bytes (which is what
    /// pyro trusts, whatever the registry's headers say).
    async fn manifest_bytes(
        &self,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<(Vec<u8>, String), OciError> {
        let (bytes, _) = self
            .retrying(
                reference,
                &format!("fetching the manifest of {reference}"),
                || async {
                    tokio::time::timeout(
                        Duration::from_secs(120),
                        self.client.pull_manifest_raw(reference, &self.auth, accept),
                    )
                    .await
                    .map_err(|_| {
                        Failure::Oci(OciDistributionError::IoError(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no manifest within 120 s",
                        )))
                    })?
                    .map_err(Failure::Oci)
                },
            )
            .await?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(OciError::TooLarge {
                what: format!("the manifest of {reference}"),
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_BYTES as u64,
            });
        }
        let digest = sha256_digest(&bytes);
        Ok((bytes.to_vec(), digest))
    }

    /// Downloads a small blob (a config) into memory, verified.
    pub async fn blob_bytes(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
    ) -> Result<Vec<u8>, OciError> {
        if desc.size < 0 || desc.size as usize > MAX_MANIFEST_BYTES {
            return Err(OciError::TooLarge {
                what: format!("blob {}", desc.digest),
                size: desc.size.max(0) as u64,
                limit: MAX_MANIFEST_BYTES as u64,
            });
        }
        let dir = tempfile::tempdir().map_err(|e| OciError::io("creating a temp directory", e))?;
        let path = dir.path().join("blob");
        self.fetch_blob(reference, desc, &path, &crate::quiet())
            .await?;
        std::fs::read(&path).map_err(|e| OciError::io("reading a downloaded blob", e))
    }

    /// Downloads `desc` to `dest`, verified against its digest and size.
    /// Bytes go to `dest` + `.partial` first; an interrupted download (a
    /// network error, or a killed process) continues from there on the
    /// next call. `dest` appears only once the whole blob checks out.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        dest: &Path,
        on_bytes: &OnBytes,
    ) -> Result<(), OciError> {
        crate::sha256_hex(&desc.digest)?;
        // Only from this registry: a descriptor's own `urls` could point
        // anywhere (plain HTTP, internal addresses).
        let desc = &OciDescriptor {
            urls: None,
            ..desc.clone()
        };
        let size = u64::try_from(desc.size).unwrap_or(u64::MAX);
        if size > MAX_BLOB_BYTES {
            return Err(OciError::TooLarge {
                what: format!("blob {}", desc.digest),
                size,
                limit: MAX_BLOB_BYTES,
            });
        }
        let partial = partial_path(dest);
        let mut restarted = false;
        loop {
            let r = self
                .retrying(
                    reference,
                    &format!("downloading blob {}", desc.digest),
                    || self.fetch_attempt(reference, desc, size, &partial, on_bytes),
                )
                .await;
            match r {
                Ok(()) => break,
                // A partial file from before may itself be what is wrong:
                // start once from nothing before giving up.
                Err(OciError::Digest { .. }) if !restarted => {
                    restarted = true;
                    let _ = std::fs::remove_file(&partial);
                }
                Err(e) => {
                    if matches!(e, OciError::Digest { .. }) {
                        let _ = std::fs::remove_file(&partial);
                    }
                    return Err(e);
                }
            }
        }
        std::fs::rename(&partial, dest)
            .map_err(|e| OciError::io(format!("renaming into {}", dest.display()), e))
    }

    async fn fetch_attempt(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        size: u64,
        partial: &Path,
        on_bytes: &OnBytes,
    ) -> Result<(), Failure> {
        let io = |what: &str, e| {
            Failure::Final(OciError::io(format!("{what} {}", partial.display()), e))
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(partial)
            .map_err(|e| io("opening", e))?;
        let mut have = file.metadata().map_err(|e| io("reading", e))?.len();
        if have > size {
            file.set_len(0).map_err(|e| io("truncating", e))?;
            have = 0;
        }
        // The hash covers what is already there.
        let mut hasher = sha2::Sha256::new();
        hash_prefix(&mut file, have, &mut hasher).map_err(|e| io("reading", e))?;
        if have < size || size == 0 {
            let resp = self
                .client
                .pull_blob_stream_partial(reference, desc, have, None)
                .await
                .map_err(Failure::Oci)?;
            let mut stream = match resp {
                oci_client::client::BlobResponse::Partial(s) => s.stream,
                oci_client::client::BlobResponse::Full(s) => {
                    // The registry ignored the range: start over.
                    file.set_len(0).map_err(|e| io("truncating", e))?;
                    file.seek(std::io::SeekFrom::Start(0))
                        .map_err(|e| io("seeking", e))?;
                    have = 0;
                    hasher = sha2::Sha256::new();
                    s.stream
                }
            };
            file.seek(std::io::SeekFrom::Start(have))
                .map_err(|e| io("seeking", e))?;
            on_bytes(have, size);
            // A registry that trickles (each read inside the read timeout,
            // yet nowhere near done) is cut off: under 16 KiB/s on average
            // after the first minute of an attempt. The next attempt
            // resumes.
            let (started, from) = (std::time::Instant::now(), have);
            while let Some(chunk) = stream.next().await {
                let secs = started.elapsed().as_secs();
                if secs > 60 && (have - from) / secs < 16 << 10 {
                    return Err(Failure::Oci(OciDistributionError::IoError(
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the registry sent {} bytes in {secs} s", have - from),
                        ),
                    )));
                }
                let chunk = chunk.map_err(|e| Failure::Oci(OciDistributionError::IoError(e)))?;
                if have + chunk.len() as u64 > size {
                    let _ = file.set_len(0);
                    return Err(Failure::Final(OciError::TooLarge {
                        what: format!("blob {} (its manifest says {size} bytes)", desc.digest),
                        size: have + chunk.len() as u64,
                        limit: size,
                    }));
                }
                file.write_all(&chunk).map_err(|e| io("writing", e))?;
                hasher.update(&chunk);
                have += chunk.len() as u64;
                on_bytes(have, size);
            }
        }
        file.sync_all().map_err(|e| io("flushing", e))?;
        if have != size {
            // The stream ended early: keep what came, and go on from there.
            return Err(Failure::Oci(OciDistributionError::IoError(
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the registry sent {have} of {size} bytes"),
                ),
            )));
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != desc.digest {
            return Err(Failure::Final(OciError::Digest {
                what: format!("blob {} of {reference}", desc.digest),
                expected: desc.digest.clone(),
                actual,
            }));
        }
        Ok(())
    }

    /// Uploads the file at `path` as a blob (in chunks), unless the
    /// registry has it already; its descriptor.
    pub async fn push_file(
        &self,
        reference: &Reference,
        path: &Path,
        media_type: &str,
        on_bytes: &OnBytes,
    ) -> Result<OciDescriptor, OciError> {
        let size = std::fs::metadata(path)
            .map_err(|e| OciError::io(format!("reading {}", path.display()), e))?
            .len();
        let digest = file_digest(path)?;
        let desc = OciDescriptor {
            media_type: media_type.into(),
            digest: digest.clone(),
            size: size as i64,
            ..Default::default()
        };
        let exists = self
            .retrying(reference, "checking for a blob", || async {
                self.authorize(reference).await?;
                self.client
                    .blob_exists(reference, &digest)
                    .await
                    .map_err(Failure::Oci)
            })
            .await?;
        if exists {
            on_bytes(size, size);
            return Ok(desc);
        }
        self.retrying(
            reference,
            &format!("uploading {}", path.display()),
            || async {
                let file = std::fs::File::open(path).map_err(|e| {
                    Failure::Final(OciError::io(format!("reading {}", path.display()), e))
                })?;
                let stream = file_stream(file, size, on_bytes.clone());
                self.client
                    .push_blob_stream(reference, stream, &digest, Some(size))
                    .await
                    .map_err(Failure::Oci)
            },
        )
        .await?;
        Ok(desc)
    }

    /// Uploads bytes as a blob; its descriptor.
    pub async fn push_bytes(
        &self,
        reference: &Reference,
        data: Vec<u8>,
        media_type: &str,
    ) -> Result<OciDescriptor, OciError> {
        let digest = sha256_digest(&data);
        let desc = OciDescriptor {
            media_type: media_type.into(),
            digest: digest.clone(),
            size: data.len() as i64,
            ..Default::default()
        };
        let data = bytes::Bytes::from(data);
        self.retrying(reference, "uploading a config", || async {
            self.authorize(reference).await?;
            self.client
                .push_blob(reference, data.clone(), &digest)
                .await
                .map_err(Failure::Oci)
        })
        .await?;
        Ok(desc)
    }

    /// Uploads a manifest under `reference`'s tag; its digest.
    pub async fn push_manifest(
        &self,
        reference: &Reference,
        manifest: &[u8],
        media_type: &str,
    ) -> Result<String, OciError> {
        let ct = reqwest_header(media_type)?;
        let body = bytes::Bytes::copy_from_slice(manifest);
        self.retrying(reference, "uploading the manifest", || async {
            self.client
                .push_manifest_raw(reference, body.clone(), ct.clone())
                .await
                .map_err(Failure::Oci)
        })
        .await?;
        Ok(sha256_digest(manifest))
    }
}

fn reqwest_header(v: &str) -> Result<http::HeaderValue, OciError> {
    http::HeaderValue::from_str(v).map_err(|e| OciError::invalid(format!("media type {v:?}"), e))
}

/// Where a download's bytes go until it checks out.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

fn hash_prefix(
    file: &mut std::fs::File,
    len: u64,
    hasher: &mut sha2::Sha256,
) -> std::io::Result<()> {
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = file.read(&mut buf[..(left.min(1 << 20)) as usize])?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// The sha256 digest of a file.
pub fn file_digest(path: &Path) -> Result<String, OciError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| OciError::io(format!("reading {}", path.display()), e))?;
    let mut h = sha2::Sha256::new();
    let len = f
        .metadata()
        .map_err(|e| OciError::io(format!("reading {}", path.display()), e))?
        .len();
    hash_prefix(&mut f, len, &mut h)
        .map_err(|e| OciError::io(format!("reading {}", path.display()), e))?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn file_stream(
    mut file: std::fs::File,
    size: u64,
    on_bytes: OnBytes,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, OciDistributionError>> + Send + 'static {
    let mut sent = 0u64;
    futures_util::stream::poll_fn(move |_| {
        let mut buf = vec![0u8; 4 << 20];
        match file.read(&mut buf) {
            Ok(0) => std::task::Poll::Ready(None),
            Ok(n) => {
                buf.truncate(n);
                sent += n as u64;
                on_bytes(sent, size);
                std::task::Poll::Ready(Some(Ok(bytes::Bytes::from(buf))))
            }
            Err(e) => std::task::Poll::Ready(Some(Err(OciDistributionError::IoError(e)))),
        }
    })
}

/// A failure of one attempt: worth retrying, or not.
enum Failure {
    /// From the registry client: [`classify`] decides.
    Oci(OciDistributionError),
    /// Not worth retrying.
    Final(OciError),
}

/// Sorts a client error into final (auth, not found, bad content) and
/// transient (network, 5xx, 429).
fn classify(e: OciDistributionError, reference: &Reference) -> Failure {
    use OciDistributionError as E;
    let registry = reference.resolve_registry().to_owned();
    let whole = reference.whole();
    match e {
        E::AuthenticationFailure(d) => Failure::Final(OciError::Auth {
            registry,
            reference: whole,
            detail: d,
        }),
        E::UnauthorizedError { url } => Failure::Final(OciError::Auth {
            registry,
            reference: whole,
            detail: format!("401 from {url}"),
        }),
        E::ImageManifestNotFoundError(d) => Failure::Final(OciError::NotFound {
            reference: whole,
            detail: d,
        }),
        E::DigestError(d) => Failure::Final(OciError::Digest {
            what: whole,
            expected: String::new(),
            actual: d.to_string(),
        }),
        E::RequestError(e) if e.status().is_some_and(is_final_status) => {
            let code = e.status().map(|s| s.as_u16()).unwrap_or(0);
            final_by_code(code, e.to_string(), registry, whole)
        }
        E::ServerError { code, url, message }
            if http::StatusCode::from_u16(code).is_ok_and(is_final_status) =>
        {
            final_by_code(
                code,
                format!("{code} from {url}: {message}"),
                registry,
                whole,
            )
        }
        E::RegistryError { envelope, url } => {
            let text = envelope.to_string();
            let lower = text.to_ascii_lowercase();
            if lower.contains("unauthorized") || lower.contains("denied") {
                Failure::Final(OciError::Auth {
                    registry,
                    reference: whole,
                    detail: format!("{text} ({url})"),
                })
            } else if lower.contains("unknown") || lower.contains("not found") {
                Failure::Final(OciError::NotFound {
                    reference: whole,
                    detail: format!("{text} ({url})"),
                })
            } else {
                Failure::Oci(E::RegistryError { envelope, url })
            }
        }
        other => Failure::Oci(other),
    }
}

/// A 4xx other than a timeout or rate limit: trying again will not help.
fn is_final_status(s: http::StatusCode) -> bool {
    s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429
}

fn final_by_code(code: u16, detail: String, registry: String, whole: String) -> Failure {
    Failure::Final(match code {
        401 | 403 => OciError::Auth {
            registry,
            reference: whole,
            detail,
        },
        404 => OciError::NotFound {
            reference: whole,
            detail,
        },
        _ => OciError::invalid(whole, detail),
    })
}

#[cfg(test)]
mod tests;

//! Running registry transfers from pyro-env's blocking code, with
//! progress, and the download cache they resume from.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyro_oci::registry::Registry;
use pyro_oci::{OciDescriptor, OnBytes, Reference};

use crate::{Cache, EnvError, Progress};

/// Held (shared) by every download; `env prune` clears the download cache
/// only when it can take it alone.
pub(crate) const DOWNLOADS_LOCK: &str = "downloads";

/// Runs async `work` to completion on a runtime of its own, on a thread of
/// its own (so that it works whether or not the caller is inside a
/// runtime), while this thread reports its byte counts to `progress` as
/// `label: 12.0/80.5 MiB at 9.8 MiB/s` four times a second.
pub(crate) fn run<T, F, Fut>(progress: &dyn Progress, label: &str, work: F) -> Result<T, EnvError>
where
    T: Send,
    F: FnOnce(OnBytes) -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, EnvError>>,
{
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let seen = counts.clone();
    let on_bytes: OnBytes = Arc::new(move |done, total| {
        seen.0.store(done, Ordering::Relaxed);
        seen.1.store(total, Ordering::Relaxed);
    });
    std::thread::scope(|s| {
        let job = s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| EnvError::io("starting a runtime for registry transfers", e))?;
            rt.block_on(work(on_bytes))
        });
        let started = Instant::now();
        let mut first: Option<u64> = None;
        while !job.is_finished() {
            std::thread::sleep(Duration::from_millis(250));
            let (done, total) = (
                counts.0.load(Ordering::Relaxed),
                counts.1.load(Ordering::Relaxed),
            );
            if total == 0 {
                continue;
            }
            let base = *first.get_or_insert(done);
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            progress.tick(&format!(
                "{label}: {:.1}/{:.1} MiB at {:.1} MiB/s",
                mib(done),
                mib(total),
                mib(done.saturating_sub(base)) / secs
            ));
        }
        job.join().unwrap_or_else(|_| {
            Err(EnvError::io(
                "a registry transfer",
                std::io::Error::other("its thread panicked"),
            ))
        })
    })
}

/// Where blob `digest` is kept once downloaded.
pub(crate) fn blob_path(cache: &Cache, digest: &str) -> Result<PathBuf, EnvError> {
    let hex = pyro_oci::sha256_hex(digest)?;
    Ok(cache.blobs_dir().join(format!("sha256-{hex}")))
}

/// Downloads `desc` into the download cache (resuming a partial one, and
/// reusing a complete one that still checks out); its path.
pub(crate) async fn download(
    cache: &Cache,
    reg: &Registry,
    reference: &Reference,
    desc: &OciDescriptor,
    on_bytes: &OnBytes,
) -> Result<PathBuf, EnvError> {
    let dest = blob_path(cache, &desc.digest)?;
    std::fs::create_dir_all(cache.blobs_dir())
        .map_err(|e| EnvError::io(format!("creating {}", cache.blobs_dir().display()), e))?;
    if dest.is_file() {
        if pyro_oci::registry::file_digest(&dest)? == desc.digest {
            on_bytes(desc.size as u64, desc.size as u64);
            return Ok(dest);
        }
        let _ = std::fs::remove_file(&dest);
    }
    reg.fetch_blob(reference, desc, &dest, on_bytes).await?;
    Ok(dest)
}

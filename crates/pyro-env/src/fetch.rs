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
/// reusing a complete one that still checks out), and hard-links it into
/// `work` (a directory of the caller's in the cache), where it stays the
/// caller's whatever other processes do with the cache; that path. One
/// process at a time downloads a given blob (a lock per digest).
pub(crate) async fn download(
    cache: &Cache,
    reg: &Registry,
    reference: &Reference,
    desc: &OciDescriptor,
    on_bytes: &OnBytes,
    work: &std::path::Path,
) -> Result<PathBuf, EnvError> {
    let dest = blob_path(cache, &desc.digest)?;
    let hex = pyro_oci::sha256_hex(&desc.digest)?.to_owned();
    std::fs::create_dir_all(cache.blobs_dir())
        .map_err(|e| EnvError::io(format!("creating {}", cache.blobs_dir().display()), e))?;
    // Another process downloading the same blob holds this until its
    // copy is complete (or it is killed).
    let _one = cache.lock(&format!("blob-{hex}"))?;
    let have = dest.is_file() && pyro_oci::registry::file_digest(&dest)? == desc.digest;
    if have {
        on_bytes(desc.size as u64, desc.size as u64);
    } else {
        let _ = std::fs::remove_file(&dest);
        reg.fetch_blob(reference, desc, &dest, on_bytes).await?;
    }
    let mine = work.join(format!("sha256-{hex}"));
    let _ = std::fs::remove_file(&mine);
    std::fs::hard_link(&dest, &mine).map_err(|e| {
        EnvError::io(
            format!("linking {} into {}", dest.display(), work.display()),
            e,
        )
    })?;
    Ok(mine)
}

/// Drops a blob from the download cache once it is installed (a process
/// still using it has its own link).
pub(crate) fn forget(cache: &Cache, digest: &str) {
    let (Ok(p), Ok(hex)) = (blob_path(cache, digest), pyro_oci::sha256_hex(digest)) else {
        return;
    };
    // Not while another process checks or links it.
    if let Ok(_one) = cache.lock(&format!("blob-{hex}")) {
        let _ = std::fs::remove_file(p);
    }
}

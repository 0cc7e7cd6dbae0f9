//! Handlers for workspace file requests. Blocking work (tar, hashing, file
//! I/O) runs on blocking threads; bulk bytes stream as data frames.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use pyro_protocol::{AgentError, EntryKind, ErrorKind, Response, write_message};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::files::{self, HashCache};
use crate::paths::{WORKSPACE, no_symlink_ancestors, workspace_path};
use crate::stream::{ChunkReader, ChunkWriter, Inbound, pump_in, pump_out};

type Reply = Result<Response, AgentError>;

fn joined<T>(r: Result<Result<T, AgentError>, tokio::task::JoinError>) -> Result<T, AgentError> {
    r.map_err(|e| AgentError::new(ErrorKind::Io, format!("worker failed: {e}")))?
}

async fn finish<W: AsyncWrite + Unpin>(wr: &mut W, reply: Reply) -> Result<(), String> {
    let resp = reply.unwrap_or_else(Response::Error);
    write_message(wr, &resp).await.map_err(|e| e.to_string())
}

/// A directory under `/workspace` (created if missing, never through a
/// symlink) for extraction.
fn dest_dir(dest: &str) -> Result<PathBuf, AgentError> {
    let dir = workspace_path(dest)?;
    no_symlink_ancestors(&dir)?;
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        Ok(_) => Err(AgentError::new(
            ErrorKind::Conflict,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(_) => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                AgentError::new(ErrorKind::Io, format!("creating {}: {e}", dir.display()))
            })?;
            Ok(dir)
        }
    }
}

/// `ExtractArchive`: the tar follows as data frames.
pub async fn extract<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    dest: String,
) -> Result<(), String> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let dir = match dest_dir(&dest) {
        Ok(d) => d,
        Err(e) => {
            // Drain what the host sends before answering. Nothing consumes
            // it: with the receiver gone, every chunk is dropped at once
            // (a receiver kept alive here filled up and hung the transfer).
            let (tx, rx) = mpsc::channel(1);
            drop(rx);
            pump_in(&mut rd, tx).await;
            return finish(&mut wr, Err(e)).await;
        }
    };
    let (tx, rx) = mpsc::channel(16);
    let job = tokio::task::spawn_blocking(move || {
        pyro_archive::extract(ChunkReader::new(rx), &dir).map_err(AgentError::from)
    });
    let ended = pump_in(&mut rd, tx).await;
    let result = joined(job.await);
    if ended == Inbound::Broken {
        return Err("the host went away mid-transfer; nothing was extracted".into());
    }
    let result = ended.failure("nothing was extracted").and(result);
    finish(
        &mut wr,
        result.map(|(entries, bytes)| Response::Extracted { entries, bytes }),
    )
    .await
}

/// Runs `produce` on a blocking thread, streams what it writes as data
/// frames, then answers with its result.
async fn stream_out<W, T, F>(
    wr: &mut W,
    produce: F,
    answer: impl FnOnce(T) -> Response,
) -> Result<(), String>
where
    W: AsyncWrite + Unpin,
    T: Send + 'static,
    F: FnOnce(ChunkWriter) -> Result<T, AgentError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let job = tokio::task::spawn_blocking(move || produce(ChunkWriter::new(tx)));
    pump_out(wr, rx).await.map_err(|e| e.to_string())?;
    finish(wr, joined(job.await).map(answer)).await
}

/// `CreateArchive`: stream a tar of one path.
pub async fn create_archive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    path: String,
) -> Result<(), String> {
    let (_rd, mut wr) = tokio::io::split(stream);
    let resolved = match files::resolve(&path) {
        Ok(p) => p,
        Err(e) => return finish(&mut wr, Err(e)).await,
    };
    stream_out(
        &mut wr,
        move |w| pyro_archive::create(&resolved, w).map_err(AgentError::from),
        |(kind, entries, bytes)| Response::Archived {
            kind,
            entries,
            bytes,
        },
    )
    .await
}

/// `ReadFiles`: stream a tar of selected files.
pub async fn read_files<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    root: String,
    paths: Vec<String>,
) -> Result<(), String> {
    let (_rd, mut wr) = tokio::io::split(stream);
    let root = match files::resolve(&root) {
        Ok(p) => p,
        Err(e) => return finish(&mut wr, Err(e)).await,
    };
    stream_out(
        &mut wr,
        move |w| pyro_archive::create_selected(&root, &paths, w).map_err(AgentError::from),
        |n| Response::Archived {
            kind: EntryKind::Directory,
            entries: n,
            bytes: 0,
        },
    )
    .await
}

/// `ReadFile`: up to `max_bytes` as data frames.
pub async fn read_file<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    path: String,
    max_bytes: u64,
) -> Result<(), String> {
    let (_rd, mut wr) = tokio::io::split(stream);
    stream_out(
        &mut wr,
        move |mut w| {
            #[cfg(pyro_coverage)]
            let opened = match crate::coverage::open_profile(&path) {
                Some(o) => o.map_err(|e| AgentError::new(ErrorKind::Io, format!("{path}: {e}")))?,
                None => files::open_regular(&path)?,
            };
            #[cfg(not(pyro_coverage))]
            let opened = files::open_regular(&path)?;
            let (f, size, mode) = opened;
            std::io::copy(&mut f.take(max_bytes), &mut w)
                .map_err(|e| AgentError::new(ErrorKind::Io, format!("reading {path}: {e}")))?;
            Ok((size, mode))
        },
        |(size, mode)| Response::FileRead {
            size,
            truncated: size > max_bytes,
            mode,
        },
    )
    .await
}

/// `WriteFile`: the content follows as data frames.
pub async fn write_file<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    path: String,
    mode: Option<u32>,
) -> Result<(), String> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(16);
    let job =
        tokio::task::spawn_blocking(move || files::write(&path, mode, &mut ChunkReader::new(rx)));
    let ended = pump_in(&mut rd, tx).await;
    let result = joined(job.await);
    if ended == Inbound::Broken {
        return Err("the host went away mid-transfer; the file was not written".into());
    }
    let result = ended.failure("the file was not written").and(result);
    finish(
        &mut wr,
        result.map(|(size, mode, created)| Response::FileWritten {
            size,
            mode,
            created,
        }),
    )
    .await
}

/// `ListFiles`: entries as JSON lines, then the answer.
pub async fn list<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    path: String,
    recursive: bool,
) -> Result<(), String> {
    let (_rd, mut wr) = tokio::io::split(stream);
    stream_out(
        &mut wr,
        move |mut w| {
            let r = files::list(&path, recursive, &mut w)?;
            w.flush()
                .map_err(|e| AgentError::new(ErrorKind::Io, format!("sending the listing: {e}")))?;
            Ok(r)
        },
        |(root, entries)| Response::Files { root, entries },
    )
    .await
}

/// `Manifest`: entries as JSON lines, then the answer.
pub async fn manifest<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    root: String,
    cache: Arc<HashCache>,
) -> Result<(), String> {
    let (_rd, mut wr) = tokio::io::split(stream);
    stream_out(
        &mut wr,
        move |mut w| files::manifest(&root, &cache, &mut w),
        |entries| Response::Manifest { entries },
    )
    .await
}

/// `ApplyPatch`.
pub async fn apply_patch(root: String, patch: String) -> Reply {
    let files = joined(
        tokio::task::spawn_blocking(move || {
            let dir = workspace_path(&root)?;
            no_symlink_ancestors(&dir)?;
            if !dir.is_dir() {
                return Err(AgentError::new(
                    ErrorKind::NotFound,
                    format!("{} is not a directory", dir.display()),
                ));
            }
            crate::patch::apply(&dir, &patch)
        })
        .await,
    )?;
    Ok(Response::Patched { files })
}

/// Makes sure `/workspace` exists (a fresh upper layer may lack it).
pub fn ensure_workspace_root() {
    let _ = std::fs::create_dir_all(WORKSPACE);
}

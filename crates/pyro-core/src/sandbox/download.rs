//! Downloads from a sandbox's agent (archives, listings, manifests, file
//! reads): every byte bounded, checked against the digest the agent sends
//! after it, and asked for again when it arrived damaged.

use super::calls::{answer, next_frame, unexpected};
use super::*;
use crate::jsonl::{Entry, Lines};

/// Why [`read_data`] stopped.
enum DataError {
    /// The agent: its frames, its answer, or more data than allowed.
    Agent(CoreError),
    /// The data does not match the digest the agent sent after it: damaged
    /// on the way (worth asking again).
    Damaged,
    /// Writing the data on the host.
    Write(std::io::Error),
}

/// Reads the agent's `Data` frames into `out` (at most `max_bytes`; more is
/// `over(received)`), then its answer. Every download (archives, listings,
/// manifests, file reads) goes through here.
async fn read_data<R, W>(
    s: &mut R,
    what: &str,
    out: &mut W,
    max_bytes: u64,
    over: impl Fn(u64) -> CoreError,
) -> Result<Response, DataError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let mut received: u64 = 0;
    let mut hash = sha2::Sha256::new();
    loop {
        let frame = next_frame(s, what).await.map_err(DataError::Agent)?;
        match frame.kind {
            FrameKind::Data => {
                hash.update(&frame.payload);
                received += frame.payload.len() as u64;
                if received > max_bytes {
                    return Err(DataError::Agent(over(received)));
                }
                out.write_all(&frame.payload)
                    .await
                    .map_err(DataError::Write)?;
            }
            FrameKind::DataEnd => {
                // The agent's digest of what it sent (older agents send
                // none).
                let digest = hex::encode(std::mem::take(&mut hash).finalize());
                if !frame.payload.is_empty() && frame.payload != digest.as_bytes() {
                    return Err(DataError::Damaged);
                }
            }
            FrameKind::Message => {
                out.flush().await.map_err(DataError::Write)?;
                return answer(&frame).map_err(DataError::Agent);
            }
            other => return Err(DataError::Agent(unexpected(other))),
        }
    }
}

/// Transfers tried before data that keeps arriving damaged is an error.
pub(super) const DAMAGED_ATTEMPTS: usize = 3;

/// Whether the agent refused an upload because it arrived damaged (nothing
/// of it was used; sending it again may succeed).
pub(super) fn is_damaged_upload(e: &CoreError) -> bool {
    matches!(e, CoreError::Agent(a) if a.kind == pyro_protocol::ErrorKind::Damaged)
}

fn damaged(what: &str) -> CoreError {
    CoreError::Transport(format!(
        "the {what} from the guest arrived damaged {DAMAGED_ATTEMPTS} times (it does not match \
         the digest the guest sent with it); nothing of it was used; try again, and if it \
         persists, reset the workspace"
    ))
}

impl Sandbox {
    /// Sends `request` (one that answers with a tar, such as `CreateArchive`
    /// or `ReadFiles`) and streams the tar into the file `out`, refusing
    /// more than `max_bytes` of it. Returns the agent's closing answer.
    pub async fn get_archive(
        &self,
        request: Request,
        out: &Path,
        max_bytes: u64,
    ) -> Result<Response, CoreError> {
        within(
            "packing an archive",
            ARCHIVE_TIMEOUT,
            self.receive(request, out, max_bytes, "archive"),
        )
        .await
    }

    /// Sends `request` (one that answers with JSON lines of `T`, such as
    /// `Manifest` or `ListFiles`) and spools the lines into the file `out`,
    /// refusing more than `max_bytes`. Every line is read through once
    /// before this returns (read them again with [`crate::jsonl::Lines`]):
    /// a listing the guest damaged before it was sent (a line that does not
    /// parse, a path out of order) is asked for again, at most
    /// [`DAMAGED_ATTEMPTS`] times, like data damaged on the way.
    pub async fn get_lines<T: Entry + Send + 'static>(
        &self,
        request: Request,
        out: &Path,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<Response, CoreError> {
        within("listing files", timeout, async {
            let mut last = None;
            for _ in 0..DAMAGED_ATTEMPTS {
                let answer = self
                    .receive(request.clone(), out, max_bytes, "listing")
                    .await?;
                let spool = out.to_owned();
                match crate::blocking(move || {
                    for e in Lines::<T>::open(&spool)? {
                        e?;
                    }
                    Ok(())
                })
                .await
                {
                    Ok(()) => return Ok(answer),
                    // Only the guest's lines: a host read error is final.
                    Err(e @ CoreError::Transport(_)) => {
                        tracing::warn!("{e}; asking for the listing again");
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(last.unwrap_or_else(|| damaged("listing")))
        })
        .await
    }

    pub(super) async fn receive(
        &self,
        request: Request,
        out: &Path,
        max_bytes: u64,
        what: &str,
    ) -> Result<Response, CoreError> {
        for _ in 0..DAMAGED_ATTEMPTS {
            let mut s = self.open(request.clone()).await?;
            let mut file = tokio::fs::File::create(out)
                .await
                .map_err(|e| CoreError::io(format!("creating {}", out.display()), e))?;
            let got = read_data(&mut s, what, &mut file, max_bytes, |_| {
                CoreError::TooLarge(format!(
                    "the {what} from the guest exceeds {max_bytes} bytes; ask for less at a time"
                ))
            })
            .await;
            match got {
                Ok(answer) => return Ok(answer),
                Err(DataError::Damaged) => {
                    tracing::warn!(
                        "data from the guest arrived damaged (its digest does not match); asking again"
                    );
                    continue;
                }
                Err(DataError::Agent(e)) => return Err(e),
                Err(DataError::Write(e)) => {
                    return Err(CoreError::io(format!("writing {}", out.display()), e));
                }
            }
        }
        Err(damaged(what))
    }

    /// Reads up to `max_bytes` of a file.
    pub async fn read_file(
        &self,
        path: &str,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, u64, bool, u32), CoreError> {
        within(
            "reading a file",
            FILE_OP_TIMEOUT,
            self.read_file_inner(path, max_bytes),
        )
        .await
    }

    pub(super) async fn read_file_inner(
        &self,
        path: &str,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, u64, bool, u32), CoreError> {
        let mut answer = None;
        let mut data = Vec::new();
        for _ in 0..DAMAGED_ATTEMPTS {
            let mut s = self
                .open(Request::ReadFile {
                    path: path.to_owned(),
                    max_bytes,
                })
                .await?;
            data.clear();
            let got = read_data(&mut s, "read", &mut data, max_bytes, |_| {
                CoreError::Transport(format!(
                    "the agent sent more than the {max_bytes} bytes asked for"
                ))
            })
            .await;
            match got {
                Ok(a) => {
                    answer = Some(a);
                    break;
                }
                Err(DataError::Damaged) => {
                    tracing::warn!(
                        "data from the guest arrived damaged (its digest does not match); asking again"
                    );
                    continue;
                }
                Err(DataError::Agent(e)) => return Err(e),
                Err(DataError::Write(e)) => {
                    return Err(CoreError::io("buffering a file read", e));
                }
            }
        }
        match answer.ok_or_else(|| damaged("file"))? {
            Response::FileRead {
                size,
                truncated,
                mode,
            } => Ok((data, size, truncated, mode)),
            other => Err(unexpected(other)),
        }
    }
}

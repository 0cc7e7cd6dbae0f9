//! Bridges between the async frame stream and blocking tar/file code: data
//! frames feed a [`ChunkReader`] on a blocking thread, and a [`ChunkWriter`]
//! there feeds data frames back.

use std::io::{Read, Write};

use pyro_protocol::{CHUNK_BYTES, FrameKind, read_frame, write_frame};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Reads what the host streams, chunk by chunk. An empty chunk marks the
/// end; a channel closed without it means the transfer broke off, which is
/// an error (never a silently short archive).
#[derive(Debug)]
pub struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ChunkReader {
    /// A reader over chunks from `rx`.
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(chunk) if chunk.is_empty() => self.done = true,
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the transfer from the host broke off",
                    ));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Buffers writes into chunks sent to the async side.
#[derive(Debug)]
pub struct ChunkWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// A writer sending chunks to `tx`.
    pub fn new(tx: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the host went away"))
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// How an upload from the host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// `DataEnd` with a matching digest.
    Ended,
    /// `DataEnd` whose digest does not match what arrived.
    Damaged,
    /// The connection broke or carried something else.
    Broken,
}

impl Inbound {
    /// The agent's answer for an upload that did not end properly, saying
    /// what was left undone (`undone`: "nothing was extracted").
    pub fn failure(self, undone: &str) -> Result<(), pyro_protocol::AgentError> {
        match self {
            Self::Ended => Ok(()),
            Self::Damaged => Err(pyro_protocol::AgentError::new(
                pyro_protocol::ErrorKind::Damaged,
                format!(
                    "the upload arrived damaged (its digest does not match what the host sent); \
                     {undone}; send it again"
                ),
            )),
            Self::Broken => Err(pyro_protocol::AgentError::new(
                pyro_protocol::ErrorKind::Io,
                format!("the host went away mid-transfer; {undone}"),
            )),
        }
    }
}

/// Feeds the host's `Data` frames (until `DataEnd`) into `tx` and says how
/// the upload ended; when the consumer stops early the rest is read and
/// dropped so the connection stays in step.
pub async fn pump_in<R: AsyncRead + Unpin>(rd: &mut R, tx: mpsc::Sender<Vec<u8>>) -> Inbound {
    let mut consumer_alive = true;
    let mut hash = Sha256::new();
    loop {
        match read_frame(rd).await {
            Ok(Some(f)) if f.kind == FrameKind::Data => {
                hash.update(&f.payload);
                if consumer_alive && !f.payload.is_empty() && tx.send(f.payload).await.is_err() {
                    consumer_alive = false;
                }
            }
            Ok(Some(f)) if f.kind == FrameKind::DataEnd => {
                // The host's digest of what it sent: data damaged on the
                // way never counts as ended, so nothing of it is kept.
                if !f.payload.is_empty() && f.payload != hex(&hash.finalize()).as_bytes() {
                    crate::log::error("an upload from the host arrived damaged; refusing it");
                    return Inbound::Damaged;
                }
                if consumer_alive {
                    let _ = tx.send(Vec::new()).await;
                }
                return Inbound::Ended;
            }
            // Anything else, or a broken connection: drop `tx` without the
            // end marker, which the reader reports as an interrupted transfer.
            _ => return Inbound::Broken,
        }
    }
}

/// Sends chunks from `rx` as `Data` frames, then `DataEnd` carrying the
/// SHA-256 (hex) of everything sent, so the host can tell data damaged on
/// the way (a nested host's guest was seen to damage the first transfer
/// after boot) from the real thing.
pub async fn pump_out<W: AsyncWrite + Unpin>(
    wr: &mut W,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let io = |e: pyro_protocol::FrameError| std::io::Error::other(e.to_string());
    let mut hash = Sha256::new();
    while let Some(chunk) = rx.recv().await {
        hash.update(&chunk);
        write_frame(wr, FrameKind::Data, &chunk).await.map_err(io)?;
    }
    write_frame(wr, FrameKind::DataEnd, hex(&hash.finalize()).as_bytes())
        .await
        .map_err(io)
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

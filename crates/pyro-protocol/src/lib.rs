//! The wire protocol between the pyro host and its guest agent.
//!
//! Transport: a stream socket per request (Firecracker hybrid vsock, or a Unix
//! socket in the host-compat backend). On every connection the agent speaks
//! first with a [`Hello`]; the host answers with one [`Envelope`] carrying its
//! protocol version and one [`Request`], then both sides exchange frames until
//! the agent sends the final [`Response`].
//!
//! Frames are `u32` big-endian length, one [`FrameKind`] byte, then the
//! payload; the length counts the kind byte and the payload. Control messages
//! are JSON ([`FrameKind::Message`]); bulk bytes (command output, stdin, file
//! and archive data) travel raw in their own frame kinds, so non-UTF-8 data
//! never has to be escaped.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod limits;
mod messages;
pub use limits::*;
pub use messages::*;

/// Version of this protocol. Host and agent refuse to talk across versions.
pub const PROTOCOL_VERSION: u32 = 5;

/// vsock port the guest agent listens on.
pub const AGENT_PORT: u32 = 5000;

/// vsock port on the host side (CID 2) that the agent connects to once it is
/// ready to serve; Firecracker forwards it to `<uds_path>_<port>`.
pub const READY_PORT: u32 = 5001;

/// vsock port a template guest's init listens on while it waits for its
/// root filesystem: the snapshot is taken there, and after a restore the
/// host sends [`Request::Refresh`] on it (see `docs/architecture.md`).
pub const ROOT_PORT: u32 = 5002;

/// Commands a template guest runs before each of its snapshots, so the
/// guests restored from it find their code and data in the page cache: the
/// exec path, a login shell, git, a look at the workspace, Python. Init
/// runs them before the handoff snapshot, the agent before the fresh one.
pub const WARM_UP_SCRIPTS: &[&str] = &[
    "true",
    "bash -lc 'echo warm' >/dev/null",
    "git --version >/dev/null 2>&1 || true",
    "ls -la /workspace >/dev/null; cat /etc/os-release >/dev/null",
    "command -v python3 >/dev/null && python3 -c 'import json, os, subprocess' || true",
];

/// How long init's warm-up may take in all (PVM emulates every page fault).
pub const TEMPLATE_WARM_UP_SECONDS: u64 = 300;

/// Where an instrumented guest agent keeps its coverage counters, and the
/// one path outside `/workspace` its `ReadFile` serves (`make test`'s
/// builds only: pyro-agent's `coverage.rs`, pyro-core's `sandbox/coverage.rs`).
#[cfg(pyro_coverage)]
pub const COVERAGE_PROFILE: &str = "/run/pyro-agent.profraw";

/// Tasks (processes and threads) one command may have at once inside a
/// guest: the agent's per-command cgroup caps them.
pub const GUEST_TASKS_PER_COMMAND: u64 = 512;

/// Largest frame either side accepts.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// Largest chunk of bulk data put in one frame.
pub const CHUNK_BYTES: usize = 64 << 10;

/// Longest JSON line in a streamed listing or manifest (a 4 KiB path and a
/// 4 KiB link target, every byte escaped, fit).
pub const MAX_LINE_BYTES: usize = 128 << 10;

/// The order of streamed listings and manifests: path components compared
/// one by one (a directory's entries follow it directly), which is the order
/// of a depth-first walk that sorts each directory's names.
pub fn tree_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/')
        .filter(|c| !c.is_empty())
        .cmp(b.split('/').filter(|c| !c.is_empty()))
}

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON control message.
    Message = 0,
    /// Bytes the command wrote to its standard output.
    Stdout = 1,
    /// Bytes the command wrote to its standard error.
    Stderr = 2,
    /// Bytes for the command's standard input.
    Stdin = 3,
    /// The host has no more standard input; the agent closes the pipe.
    StdinEnd = 4,
    /// Bulk payload bytes (archives, file contents).
    Data = 5,
    /// End of a bulk payload.
    DataEnd = 6,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Message,
            1 => Self::Stdout,
            2 => Self::Stderr,
            3 => Self::Stdin,
            4 => Self::StdinEnd,
            5 => Self::Data,
            6 => Self::DataEnd,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: FrameKind,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// Decodes a JSON control message from this frame.
    pub fn message<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        if self.kind != FrameKind::Message {
            return Err(FrameError::Unexpected {
                expected: "a message",
                got: self.kind,
            });
        }
        serde_json::from_slice(&self.payload).map_err(FrameError::Json)
    }
}

/// Framing and decoding failures.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The transport failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame larger than [`MAX_FRAME_BYTES`].
    #[error("peer sent a {0}-byte frame, above the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    /// A zero-length frame has no kind byte.
    #[error("peer sent an empty frame")]
    Empty,
    /// The kind byte is not one this version knows.
    #[error("peer sent a frame of unknown kind {0}")]
    UnknownKind(u8),
    /// A control message did not parse.
    #[error("peer sent a malformed message: {0}")]
    Json(serde_json::Error),
    /// The frame arrived where another kind was expected.
    #[error("expected {expected}, got a {got:?} frame")]
    Unexpected {
        /// What the reader wanted.
        expected: &'static str,
        /// What arrived.
        got: FrameKind,
    },
    /// The peer closed the connection before the exchange finished.
    #[error("peer closed the connection before {0}")]
    Closed(&'static str),
}

/// Encodes one frame (header and payload in one buffer, so one write).
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len() + 1).unwrap_or(u32::MAX);
    let mut buf = Vec::with_capacity(payload.len() + 5);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.push(kind as u8);
    buf.extend_from_slice(payload);
    buf
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: FrameKind,
    payload: &[u8],
) -> Result<(), FrameError> {
    if payload.len() + 1 > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(payload.len() + 1));
    }
    w.write_all(&encode_frame(kind, payload)).await?;
    Ok(())
}

/// Writes one JSON control message.
pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg).map_err(FrameError::Json)?;
    write_frame(w, FrameKind::Message, &body).await
}

/// Reads one frame; `Ok(None)` when the peer closed the connection cleanly
/// between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame_length(len)?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    frame_from_body(buf).map(Some)
}

/// The body length a frame header announces, checked against
/// [`MAX_FRAME_BYTES`].
fn frame_length(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// A frame from its body (the kind byte, then the payload).
fn frame_from_body(mut buf: Vec<u8>) -> Result<Frame, FrameError> {
    let kind = FrameKind::from_byte(buf[0]).ok_or(FrameError::UnknownKind(buf[0]))?;
    buf.remove(0);
    Ok(Frame { kind, payload: buf })
}

/// Decodes the first frame in `buf` the way [`read_frame`] reads one from
/// a stream: `Ok(None)` when `buf` holds less than a whole frame, else the
/// frame and how many bytes of `buf` it took.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some((header, rest)) = buf.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let len = frame_length(*header)?;
    match rest.get(..len) {
        Some(body) => Ok(Some((frame_from_body(body.to_vec())?, 4 + len))),
        None => Ok(None),
    }
}

/// Reads one frame that must be a JSON message of type `T`.
pub async fn read_message<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    what: &'static str,
) -> Result<T, FrameError> {
    match read_frame(r).await? {
        Some(frame) => frame.message(),
        None => Err(FrameError::Closed(what)),
    }
}

/// The environment every command starts from, before request overrides.
pub fn base_command_env() -> BTreeMap<String, String> {
    [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", "/root"),
        ("LANG", "C.UTF-8"),
        ("USER", "root"),
        ("LOGNAME", "root"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Whether `name` is a valid environment variable name for a command.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && name.len() <= 128
}

/// Whether `name` is a hostname the agent accepts (`pyro.hostname=`): one
/// RFC 1123 label, 1-63 letters, digits and `-`, not starting or ending
/// with `-`.
pub fn valid_hostname(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests;

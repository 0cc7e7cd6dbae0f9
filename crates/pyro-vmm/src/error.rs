use std::path::PathBuf;

/// Everything that can go wrong driving Firecracker.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// A binary pyro needs is not where it should be.
    #[error("{what} was not found at {path}; {hint}")]
    BinaryMissing {
        /// "the Firecracker binary", "the jailer binary".
        what: &'static str,
        /// Where we looked.
        path: PathBuf,
        /// How to fix it.
        hint: String,
    },
    /// A cached binary does not match its pinned checksum.
    #[error(
        "checksum mismatch for {path}: expected sha256 {expected}, got {actual}; \
         delete it and run ⟨op:env pull⟩ to reinstall"
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Pinned digest.
        expected: String,
        /// Digest of the file on disk.
        actual: String,
    },
    /// Installing Firecracker failed.
    #[error("cannot install Firecracker: {0}")]
    Install(String),
    /// The Firecracker API answered with an error.
    #[error("Firecracker rejected {method} {path} (HTTP {status}): {fault}")]
    Api {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// HTTP status code.
        status: u16,
        /// Firecracker's `fault_message`.
        fault: String,
    },
    /// Talking to the API socket failed.
    #[error("cannot reach the Firecracker API at {sock}: {reason}")]
    ApiTransport {
        /// Socket path.
        sock: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The guest did not become ready.
    #[error("{reason}\n--- guest console (last lines) ---\n{console_tail}")]
    Boot {
        /// What happened.
        reason: String,
        /// The end of the guest console and the Firecracker log.
        console_tail: String,
    },
    /// The vsock connection failed.
    #[error("cannot reach the guest agent: {0}")]
    Vsock(String),
    /// A path is too long for a Unix socket address.
    #[error(
        "the socket path {0} is longer than a Unix socket address allows (107 bytes); \
         use a shorter PYRO_HOME"
    )]
    SocketPathTooLong(PathBuf),
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl VmmError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

//! pyro's engine, shared by the CLI and the MCP server.
//!
//! - [`paths`]: the state directory (`$PYRO_HOME`) and the cache.
//! - [`records`]: versioned, atomically written VM records (created under
//!   the `vms` lock).
//! - [`workspace`]: persistent workspaces.
//! - [`sandbox`]: one running guest on either backend (Firecracker microVM,
//!   or host-compat), and talking to its agent.
//! - [`sweep`]: finding and removing what crashed or killed pyro processes
//!   left behind.
//! - [`run`]: one-shot `pyro run`.
//! - [`template`]: snapshots of a warmed-up guest that new guests resume
//!   from (fast start).
//! - [`doctor`], [`demo`]: host diagnostics and the lifecycle demo.
//! - [`environments`]: the catalog, install status, resolving and pulling.
//! - [`host`]: connecting chat hosts (their own configuration files).
//! - [`hint`]: next steps in messages, worded per front end.
//! - [`limits`]: every default and bound the front ends show.

#![warn(missing_docs)]

/// Call first thing in `main`, before any thread starts. If this process
/// was started as one of pyro's helpers (the console keeper of a VM, its
/// network daemon, a published port's relay), runs
/// it and never returns. Otherwise makes later helpers start from this
/// program (`/proc/self/exe`) rather than as forked copies of this process,
/// so each holds only its own few pages, not this process's heap.
pub fn helper_main() {
    pyro_vmm::console::run_keeper_if_asked();
    pyro_net::run_helper_if_asked();
    pyro_vmm::console::use_keeper_program("/proc/self/exe");
}

pub mod demo;
pub mod demo_network;
pub mod doctor;
pub mod environments;
pub mod hint;
pub mod host;
pub mod jsonl;
pub mod limits;
pub mod network;
pub mod paths;
pub mod protections;
pub mod records;
pub mod redact;
pub mod run;
pub mod sandbox;
pub mod scratch;
pub mod sweep;
pub mod template;
pub mod terminal;
pub mod workspace;

use serde::{Deserialize, Serialize};

pub use paths::Paths;
/// Wire types that appear in core's results (what a command is, entry
/// kinds, listings, patch results), so front ends need nothing below core.
pub use pyro_protocol::{Command, EntryKind, FileEntry, PatchedFile};

/// How a command actually ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ExecutionMode {
    /// In a Firecracker guest, over vsock.
    GuestVsock,
    /// In the host-compat sandbox (a chroot on the host).
    HostCompat,
}

impl ExecutionMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GuestVsock => "guest_vsock",
            Self::HostCompat => "host_compat",
        }
    }
}

/// Which runtime backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Firecracker microVMs (the default).
    Firecracker,
    /// The agent as a host process in a chroot with private namespaces.
    HostCompat,
}

impl BackendKind {
    /// Parses a backend name.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        match s {
            "firecracker" => Ok(Self::Firecracker),
            "host-compat" => Ok(Self::HostCompat),
            other => Err(CoreError::invalid(format!(
                "unknown backend {other:?}; expected one of: firecracker, host-compat"
            ))),
        }
    }

    /// The user-facing name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firecracker => "firecracker",
            Self::HostCompat => "host-compat",
        }
    }

    /// An explicit choice, else `PYRO_BACKEND`, else Firecracker.
    pub fn resolve(explicit: Option<Self>) -> Result<Self, CoreError> {
        if let Some(b) = explicit {
            return Ok(b);
        }
        match std::env::var("PYRO_BACKEND") {
            Ok(v) if !v.is_empty() => {
                Self::parse(&v).map_err(|e| CoreError::invalid(format!("PYRO_BACKEND: {e}")))
            }
            _ => Ok(Self::Firecracker),
        }
    }
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is invalid; the message names the rule.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the current state.
    #[error("{0}")]
    State(String),
    /// A quota would be exceeded.
    #[error("{0}")]
    Quota(String),
    /// What the request would make exists already.
    #[error("{0}")]
    Conflict(String),
    /// Another call holds what this one needs; try again later.
    #[error("{0}")]
    Busy(String),
    /// Something is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// Work ran past its deadline and was stopped.
    #[error("{0}")]
    Timeout(String),
    /// Environments.
    #[error(transparent)]
    Env(#[from] pyro_env::EnvError),
    /// Firecracker.
    #[error(transparent)]
    Vmm(#[from] pyro_vmm::VmmError),
    /// The guest could not start; with `--allow-host-compat` pyro could
    /// have fallen back.
    #[error(
        "the guest could not boot and host-compat fallback is off: {0}\n\
         (⟨say:host_compat_fallback⟩)"
    )]
    GuestUnavailable(Box<CoreError>),
    /// The agent refused or failed a request.
    #[error("the guest agent reported: {0}")]
    Agent(#[from] pyro_protocol::AgentError),
    /// Talking to the agent failed.
    #[error("lost contact with the guest agent: {0}")]
    Transport(String),
    /// The host-compat sandbox failed to start.
    #[error(
        "the host-compat sandbox did not start: {reason}\n--- sandbox log (last lines) ---\n{log_tail}"
    )]
    HostCompat {
        /// What happened.
        reason: String,
        /// The end of the sandbox's log.
        log_tail: String,
    },
    /// This host cannot give guests the network asked for.
    #[error("{0}")]
    NetworkUnavailable(String),
    /// A state operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl CoreError {
    /// The error with `redactor`'s secrets redacted from its text (an
    /// error can quote the guest: a path, a command's words, its output).
    pub fn redact(self, redactor: &redact::Redactor) -> Self {
        if redactor.is_empty() {
            return self;
        }
        let r = |m: String| redactor.text(&m).0;
        match self {
            Self::Invalid(m) => Self::Invalid(r(m)),
            Self::NotFound(m) => Self::NotFound(r(m)),
            Self::State(m) => Self::State(r(m)),
            Self::Quota(m) => Self::Quota(r(m)),
            Self::Conflict(m) => Self::Conflict(r(m)),
            Self::Busy(m) => Self::Busy(r(m)),
            Self::TooLarge(m) => Self::TooLarge(r(m)),
            Self::Timeout(m) => Self::Timeout(r(m)),
            Self::Transport(m) => Self::Transport(r(m)),
            Self::NetworkUnavailable(m) => Self::NetworkUnavailable(r(m)),
            Self::Agent(mut a) => {
                a.message = r(a.message);
                Self::Agent(a)
            }
            Self::HostCompat { reason, log_tail } => Self::HostCompat {
                reason: r(reason),
                log_tail: r(log_tail),
            },
            Self::Io { context, source } => {
                let source = match source.get_ref() {
                    Some(inner) => std::io::Error::new(source.kind(), r(inner.to_string())),
                    None => source,
                };
                Self::Io {
                    context: r(context),
                    source,
                }
            }
            Self::GuestUnavailable(e) => Self::GuestUnavailable(Box::new(e.redact(redactor))),
            // From the host's own state, never the guest's.
            e @ (Self::Env(_) | Self::Vmm(_)) => e,
        }
    }

    /// The first line of the message (worded for no front end in
    /// particular): a reason to carry inside another result.
    pub fn first_line(&self) -> String {
        let text = self.message(crate::hint::FrontEnd::Neutral);
        text.lines().next().unwrap_or(&text).to_owned()
    }

    /// A machine-readable class of the error (stable; front ends report
    /// it: the CLI's `--json` error `kind`, and its exit status through
    /// [`Self::is_usage`]).
    pub fn kind(&self) -> &'static str {
        use pyro_env::EnvError;
        match self {
            Self::Invalid(_) => "invalid_argument",
            Self::TooLarge(_) => "too_large",
            Self::NotFound(_) => "not_found",
            Self::State(_) => "wrong_state",
            Self::Quota(_) => "quota",
            Self::Conflict(_) => "conflict",
            Self::Busy(_) => "busy",
            Self::Timeout(_) => "timeout",
            Self::Env(e) => match e {
                EnvError::Unknown { .. } => "unknown_environment",
                EnvError::NotInstalled { .. } => "not_installed",
                EnvError::Corrupt { .. } => "corrupt_cache",
                EnvError::MissingTool { .. } => "missing_tool",
                EnvError::Vmm(_) => "firecracker",
                EnvError::BadName { .. } => "invalid_argument",
                EnvError::InUse { .. } => "conflict",
                EnvError::Artifact { .. } => "not_an_environment",
                EnvError::Oci(o) => match o {
                    pyro_oci::OciError::Reference { .. } => "invalid_argument",
                    pyro_oci::OciError::Auth { .. } => "registry_auth",
                    pyro_oci::OciError::NotFound { .. } => "not_found",
                    pyro_oci::OciError::Digest { .. } => "digest_mismatch",
                    pyro_oci::OciError::TooLarge { .. } => "too_large",
                    pyro_oci::OciError::Platform { .. } => "unsupported_platform",
                    pyro_oci::OciError::Layer { .. } => "refused_layer",
                    pyro_oci::OciError::Invalid { .. } => "invalid_image",
                    pyro_oci::OciError::Registry { .. } => "registry",
                    pyro_oci::OciError::Io { .. } => "io",
                },
                _ => "environment",
            },
            Self::Vmm(_) => "firecracker",
            Self::GuestUnavailable(_) => "guest_unavailable",
            Self::Agent(_) => "agent",
            Self::Transport(_) => "agent_transport",
            Self::HostCompat { .. } => "host_compat",
            Self::NetworkUnavailable(_) => "network_unavailable",
            Self::Io { .. } => "io",
        }
    }

    /// Whether the request itself was wrong (as opposed to the operation
    /// failing): bad arguments, an unknown environment, a size over a limit.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Invalid(_)
                | Self::TooLarge(_)
                | Self::Env(
                    pyro_env::EnvError::Unknown { .. }
                        | pyro_env::EnvError::BadName { .. }
                        | pyro_env::EnvError::Oci(pyro_oci::OciError::Reference { .. })
                )
        )
    }

    /// The message in `front`'s words (see [`hint`]): flags for the CLI,
    /// tool arguments for MCP.
    pub fn message(&self, front: hint::FrontEnd) -> String {
        hint::render(&self.to_string(), front)
    }

    /// The message for an MCP server that has only the tools `has_tool`
    /// says (see [`hint::render_for`]).
    pub fn message_for_tools(&self, has_tool: &dyn Fn(&str) -> bool) -> String {
        hint::render_for(&self.to_string(), hint::FrontEnd::Mcp, has_tool)
    }

    /// An invalid-request error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Writes `value` as pretty JSON to `path` atomically; `context` says what is
/// being saved, for the error.
pub(crate) fn save_json<T: Serialize>(
    path: &std::path::Path,
    value: &T,
    context: &str,
) -> Result<(), CoreError> {
    let body = serde_json::to_vec_pretty(value)
        .map_err(|e| CoreError::io(context, std::io::Error::other(e)))?;
    pyro_env::write_atomic(path, &body)
        .map_err(|e| CoreError::io(context, std::io::Error::other(e.to_string())))
}

/// Reads JSON saved by [`save_json`]; a missing file is the default value.
/// A damaged one is an error that says `forget` (what removing it loses).
pub(crate) fn load_json_or_default<T: serde::de::DeserializeOwned + Default>(
    path: &std::path::Path,
    forget: &str,
) -> Result<T, CoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        CoreError::io(
            format!("reading {} (remove it to {forget})", path.display()),
            std::io::Error::other(e),
        )
    })
}

/// Checks that `v` lies in `lo..=hi`; the error names the flag and the rule.
pub fn check_range<T: PartialOrd + std::fmt::Display>(
    flag: &str,
    v: T,
    (lo, hi): (T, T),
) -> Result<(), CoreError> {
    if v < lo || v > hi {
        return Err(CoreError::invalid(format!(
            "{flag} must be between {lo} and {hi} (got {v})"
        )));
    }
    Ok(())
}

pub use pyro_env::now_unix;

/// Bytes free to an unprivileged writer in the filesystem of `dir`.
pub(crate) fn free_bytes(dir: &std::path::Path) -> nix::Result<u64> {
    nix::sys::statvfs::statvfs(dir).map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
}

/// `n` random bytes as lowercase hex (from the kernel's CSPRNG). Panics if
/// that source fails other than by an interrupted call.
pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

/// `n` random bytes from the kernel's CSPRNG. Panics if that source fails
/// other than by an interrupted call.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: getrandom writes at most `n - filled` bytes into the tail
        // of `buf`, which is that long.
        let r = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), n - filled, 0) };
        if r > 0 {
            filled += r as usize;
        } else if r < 0 {
            let e = std::io::Error::last_os_error();
            // Only an interrupted call is worth retrying; anything else
            // (no getrandom under a seccomp filter) would spin forever.
            assert!(
                e.kind() == std::io::ErrorKind::Interrupted,
                "the kernel's random source failed: {e}"
            );
        }
    }
    buf
}

/// Runs `f`, which blocks (waits for processes, deletes big files), without
/// stalling the async runtime: on a multi-threaded runtime's worker the
/// worker hands its other tasks on first. For `Drop` impls, which cannot
/// await [`blocking`].
pub fn off_workers<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A value whose drop blocks (a big temp directory or disk copy): dropped
/// through [`off_workers`], so an early `?` on an async worker never
/// stalls the runtime.
#[derive(Debug)]
pub struct DropOffWorkers<T>(Option<T>);

impl<T> DropOffWorkers<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(Some(value))
    }

    /// The value, no longer dropped off the workers.
    pub fn into_inner(mut self) -> T {
        self.0.take().expect("present until dropped")
    }
}

impl<T> std::ops::Deref for DropOffWorkers<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T> Drop for DropOffWorkers<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            off_workers(move || drop(v));
        }
    }
}

/// Runs blocking work (copies, directory walks, archive packing, file
/// reads, rendering) off the async worker threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoreError::io("a worker thread", std::io::Error::other(e.to_string())))?
}

#[cfg(test)]
pub(crate) mod tests;

//! `pyro-agent`: the process pyro talks to inside a workspace.
//!
//! In a Firecracker guest it is the kernel's `init`: as PID 1 it mounts the
//! pseudo-filesystems, assembles the root filesystem (the read-only base image
//! as the overlay's lower layer, the per-VM disk as its upper layer), pivots
//! into it, reaps orphans, and runs the protocol server in a child process.
//!
//! In the host-compat backend the same binary is started by pyro on the host
//! (`pyro-agent host-compat ...`): it unshares mount, PID, UTS and IPC
//! namespaces, becomes PID 1 of the new PID namespace and assembles the same
//! overlay from the environment's root tree and a host directory.

#[cfg(pyro_coverage)]
mod coverage;
mod exec;
mod files;
mod image;
mod init;
mod jobs;
mod limits;
mod log;
mod ops;
mod readiness;
mod refresh;
mod ring;
mod server;
mod services;
mod shells;
mod spawn;
mod stream;
mod svclog;
mod template;

use pyro_agent::{patch, paths};

use std::os::fd::{IntoRawFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `pyro-agent host-compat`.
#[derive(Debug)]
pub struct HostCompatArgs {
    /// The environment's root tree (overlay lower layer).
    pub lower: PathBuf,
    /// Directory holding the overlay's `data` and `work` directories.
    pub upper: PathBuf,
    /// Empty directory where the overlay is mounted before pivoting into it.
    pub mountpoint: PathBuf,
    /// Unix socket path to serve on.
    pub socket: PathBuf,
    /// Unix socket path of the host's readiness listener.
    pub ready: PathBuf,
    /// Idle deadline in seconds (0: none).
    pub idle_seconds: u64,
    /// Hostname inside the sandbox.
    pub hostname: String,
}

/// Where the server gets its connections and announces readiness.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    /// vsock: listen on [`pyro_protocol::AGENT_PORT`], push readiness to the host CID.
    Vsock,
    /// Inherited Unix socket descriptors (host-compat).
    Unix {
        /// Listening socket.
        listener: RawFd,
        /// Connected socket to the host's readiness listener.
        ready: RawFd,
    },
}

/// Everything the protocol server needs to know.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connection source.
    pub transport: Transport,
    /// Guest or host-compat.
    pub mode: pyro_protocol::AgentMode,
    /// Initial idle deadline in seconds (0: none).
    pub idle_seconds: u64,
}

fn main() -> ExitCode {
    #[cfg(pyro_coverage)]
    coverage::redirect();
    dispatch()
}

/// Runs what the command line asks for. Never inlined: an instrumented build
/// (`pyro_coverage`) reads where its counters live once per function, at
/// entry, and `main` moved them just before calling this.
#[inline(never)]
fn dispatch() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--version") => {
            log::out(&format!("pyro-agent {}", env!("CARGO_PKG_VERSION")));
            ExitCode::SUCCESS
        }
        Some("run-as") => ExitCode::from(image::run_as(&args[2..])),
        Some("host-compat") => match parse_host_compat(&args[2..]) {
            Ok(hc) => init::host_compat(hc),
            Err(e) => {
                log::error(&format!(
                    "{e}\nusage: pyro-agent host-compat --lower DIR --upper DIR --mountpoint DIR --socket PATH --ready PATH [--idle-seconds N] [--hostname NAME]"
                ));
                ExitCode::from(2)
            }
        },
        _ if std::process::id() == 1 => init::guest(),
        _ => {
            log::error(
                "pyro-agent runs as init inside a pyro guest, or as `pyro-agent host-compat ...` \
                 started by pyro; it is not meant to be run by hand",
            );
            ExitCode::from(2)
        }
    }
}

fn parse_host_compat(args: &[String]) -> Result<HostCompatArgs, String> {
    let mut out = HostCompatArgs {
        lower: PathBuf::new(),
        upper: PathBuf::new(),
        mountpoint: PathBuf::new(),
        socket: PathBuf::new(),
        ready: PathBuf::new(),
        idle_seconds: 0,
        hostname: "pyro".into(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--lower" => out.lower = value.into(),
            "--upper" => out.upper = value.into(),
            "--mountpoint" => out.mountpoint = value.into(),
            "--socket" => out.socket = value.into(),
            "--ready" => out.ready = value.into(),
            "--hostname" => out.hostname = value.clone(),
            "--idle-seconds" => {
                out.idle_seconds = value
                    .parse()
                    .map_err(|_| format!("--idle-seconds: not a number: {value}"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    for (name, p) in [
        ("--lower", &out.lower),
        ("--upper", &out.upper),
        ("--mountpoint", &out.mountpoint),
        ("--socket", &out.socket),
        ("--ready", &out.ready),
    ] {
        if p.as_os_str().is_empty() {
            return Err(format!("{name} is required"));
        }
    }
    Ok(out)
}

/// Leaks an owned descriptor into a raw one that survives `fork`.
fn keep_fd(fd: impl IntoRawFd) -> RawFd {
    fd.into_raw_fd()
}

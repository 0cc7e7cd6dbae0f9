//! The host side of Firecracker's hybrid vsock: host-to-guest connections go
//! through the VM's Unix socket with a `CONNECT <port>` line; guest-to-host
//! connections arrive on a Unix listener at `<uds>_<port>`.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::VmmError;

/// Longest path a Unix socket address holds.
pub const MAX_SOCKET_PATH: usize = 107;

/// Where Firecracker forwards guest connections to host `port`.
pub fn listener_path(uds: &Path, port: u32) -> PathBuf {
    PathBuf::from(format!("{}_{port}", uds.display()))
}

/// Checks that `path` fits in a Unix socket address.
pub fn check_socket_path(path: &Path) -> Result<(), VmmError> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(VmmError::SocketPathTooLong(path.to_owned()));
    }
    Ok(())
}

/// How long the hybrid vsock handshake (`CONNECT`, then `OK <port>`) may
/// take. Firecracker answers at once; a VM that does not is wedged.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to guest `port` through the VM's vsock socket. Fails fast when
/// the agent is not listening (Firecracker then closes the connection), and
/// after [`HANDSHAKE_TIMEOUT`] when nothing answers at all. With `peer_uid`,
/// the socket must be served by that user (the jailed Firecracker).
pub async fn connect(uds: &Path, port: u32, peer_uid: Option<u32>) -> Result<UnixStream, VmmError> {
    connect_within(uds, port, HANDSHAKE_TIMEOUT, peer_uid).await
}

/// Refuses a connection whose server is not `uid`: a jailed Firecracker can
/// replace its socket with a link to another socket on the host, and
/// `connect` follows links.
pub fn check_peer(s: &UnixStream, uid: Option<u32>, path: &Path) -> Result<(), VmmError> {
    let Some(uid) = uid else { return Ok(()) };
    match s.peer_cred() {
        Ok(c) if c.uid() == uid => Ok(()),
        Ok(c) => Err(VmmError::Vsock(format!(
            "{} is served by uid {}, not by the VM's uid {uid}; the VM is misbehaving: stop it",
            path.display(),
            c.uid()
        ))),
        Err(e) => Err(VmmError::Vsock(format!(
            "checking who serves {}: {e}",
            path.display()
        ))),
    }
}

/// [`connect`] with its own deadline.
pub async fn connect_within(
    uds: &Path,
    port: u32,
    limit: std::time::Duration,
    peer_uid: Option<u32>,
) -> Result<UnixStream, VmmError> {
    tokio::time::timeout(limit, handshake(uds, port, peer_uid))
        .await
        .map_err(|_| {
            VmmError::Vsock(format!(
                "the VM did not answer the vsock handshake on {} within {:.1} s; it may be \
                 wedged (stop and start it)",
                uds.display(),
                limit.as_secs_f64()
            ))
        })?
}

async fn handshake(uds: &Path, port: u32, peer_uid: Option<u32>) -> Result<UnixStream, VmmError> {
    let mut s = UnixStream::connect(uds)
        .await
        .map_err(|e| VmmError::Vsock(format!("connecting to {}: {e}", uds.display())))?;
    check_peer(&s, peer_uid, uds)?;
    let not_listening = || VmmError::Vsock(format!("nothing listens on guest port {port} (yet)"));
    let handshake = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => not_listening(),
        _ => VmmError::Vsock(format!("vsock handshake: {e}")),
    };
    s.write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(handshake)?;
    // Read the reply byte by byte: what follows belongs to the agent.
    let mut line = Vec::with_capacity(16);
    loop {
        let mut b = [0u8; 1];
        let n = s.read(&mut b).await.map_err(handshake)?;
        if n == 0 {
            return Err(not_listening());
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        if line.len() > 64 {
            return Err(VmmError::Vsock("malformed vsock handshake reply".into()));
        }
    }
    if !line.starts_with(b"OK ") {
        return Err(VmmError::Vsock(format!(
            "vsock handshake refused: {}",
            String::from_utf8_lossy(&line)
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests;

//! A published port: a TCP relay from a listener on the host's loopback to
//! a port of the guest. It runs inside the VM's namespace (where the guest
//! is reachable) holding a listening socket made in the host's namespace,
//! so nothing but that one port connects the two.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use pyro_vmm::process::ProcessId;
use tokio::sync::Semaphore;

use crate::{GUEST_IP, NetError};

/// Connections relayed at once at most; more are closed on arrival.
pub const MAX_CONNECTIONS: usize = 64;
/// How long connecting to the guest may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// Binds the host side of a published port on 127.0.0.1 (`host_port` 0:
/// any free port). Returns the socket and the port it got.
pub fn bind_host_side(host_port: u16) -> Result<(std::net::TcpListener, u16), NetError> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, host_port)).map_err(|e| {
        NetError::io(
            format!("listening on 127.0.0.1:{host_port} (is the port taken? ask for another)"),
            e,
        )
    })?;
    let port = l
        .local_addr()
        .map_err(|e| NetError::io("reading the published port", e))?
        .port();
    Ok((l, port))
}

/// Relays connections from `listener` to the guest's `guest_port` until
/// `vm` ends. Call it from the VM's namespace.
pub fn run(listener: OwnedFd, guest_port: u16, vm: Option<ProcessId>) -> Result<(), NetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NetError::io("starting a runtime", e))?;
    rt.block_on(async move {
        let std_listener = std::net::TcpListener::from(listener);
        std_listener
            .set_nonblocking(true)
            .map_err(|e| NetError::io("the published port", e))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| NetError::io("the published port", e))?;
        let target = SocketAddr::V4(SocketAddrV4::new(GUEST_IP, guest_port));
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        // pyro stops a relay with SIGTERM (its connections end with it).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| NetError::io("SIGTERM handler", e))?;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                accepted = listener.accept() => {
                    let Ok((mut inbound, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let _slot = slot;
                        let Ok(Ok(mut outbound)) = tokio::time::timeout(
                            CONNECT_DEADLINE,
                            tokio::net::TcpStream::connect(target),
                        )
                        .await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                }
                _ = tick.tick() => {
                    if vm.is_some_and(|p| !p.is_alive()) {
                        return Ok(());
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests;

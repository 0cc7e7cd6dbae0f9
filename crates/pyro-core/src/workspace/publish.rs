//! Published ports: a service's guest port reachable on the host's
//! 127.0.0.1 through a relay that lives and dies with the service (and the
//! VM), under the policy `egress+published-ports`.

use serde::{Deserialize, Serialize};

use super::*;

/// Ports one service may publish at most.
pub const PUBLISHED_PER_SERVICE: usize = 8;

/// A port to publish: the guest's port, on a chosen host port or any free
/// one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host port on 127.0.0.1 (0: any free port).
    pub host_port: u16,
    /// The guest's port.
    pub guest_port: u16,
}

impl std::str::FromStr for PortMapping {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0 && !p.to_string().is_empty())
        };
        let (host, guest) = match s.trim().split_once(':') {
            Some((h, g)) => (port(h), port(g)),
            None => (Some(0), port(s.trim())),
        };
        match (host, guest) {
            (Some(host_port), Some(guest_port)) => Ok(PortMapping {
                host_port,
                guest_port,
            }),
            _ => Err(CoreError::invalid(format!(
                "{s:?} is not a port to publish: ⟨arg:published_ports⟩ takes GUEST_PORT or \
                 HOST_PORT:GUEST_PORT, ports from 1 to 65535 (the host side is always 127.0.0.1)"
            ))),
        }
    }
}

/// A port a service publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublishedPort {
    /// The guest's port.
    pub guest_port: u16,
    /// Where it is reachable on the host.
    pub host_address: String,
    /// The host port.
    pub host_port: u16,
}

/// Checks the ports `publish` asks for against the workspace's policy.
pub(super) fn check_publish(
    id: &str,
    rec: &Record,
    publish: &[PortMapping],
) -> Result<(), CoreError> {
    if publish.is_empty() {
        return Ok(());
    }
    if publish.len() > PUBLISHED_PER_SERVICE {
        return Err(CoreError::invalid(format!(
            "a service publishes at most {PUBLISHED_PER_SERVICE} ports"
        )));
    }
    for (i, m) in publish.iter().enumerate() {
        if publish[..i].iter().any(|o| {
            o.guest_port == m.guest_port || (m.host_port != 0 && o.host_port == m.host_port)
        }) {
            return Err(CoreError::invalid(format!(
                "⟨arg:published_ports⟩ names guest port {} or host port {} twice; publish each \
                 once",
                m.guest_port, m.host_port
            )));
        }
    }
    if rec.network.mode != pyro_net::Mode::EgressPublishedPorts {
        return Err(CoreError::State(format!(
            "workspace {id} has the network policy {}, which publishes no ports; set \
             egress+published-ports first (⟨op:workspace network set {id}⟩ with \
             ⟨arg:network_policy=egress+published-ports⟩)",
            rec.network.mode
        )));
    }
    Ok(())
}

/// Starts the relays of `publish` for service `name`; on failure none of
/// them stays.
pub(super) fn publish(
    sandbox: &Sandbox,
    id: &str,
    name: &str,
    publish: &[PortMapping],
) -> Result<Vec<PublishedPort>, CoreError> {
    if publish.is_empty() {
        return Ok(Vec::new());
    }
    if sandbox.record().network.is_none() {
        return Err(CoreError::State(format!(
            "workspace {id}'s running guest was started without a network interface; stop and \
             start it to bring up its network, then publish"
        )));
    }
    let mut out = Vec::new();
    for m in publish {
        match sandbox.publish_port(name, m.host_port, m.guest_port) {
            Ok(host_port) => out.push(PublishedPort {
                guest_port: m.guest_port,
                host_address: "127.0.0.1".into(),
                host_port,
            }),
            Err(e) => {
                crate::off_workers(|| {
                    super::super::sandbox::stop_relays_for(sandbox, name);
                });
                return Err(e);
            }
        }
    }
    Ok(out)
}

impl Workspaces {
    /// Fills in the ports the running services of VM `vm` publish.
    pub(super) fn fill_published(&self, vm: Option<&String>, views: &mut [ServiceView]) {
        let Some(sandbox) = vm.and_then(|vm| Sandbox::attach(&self.paths, vm).ok()) else {
            return;
        };
        for v in views.iter_mut().filter(|v| v.running()) {
            v.published_ports = published(&sandbox, &v.service_name);
        }
    }
}

/// The ports service `name` publishes now.
fn published(sandbox: &Sandbox, name: &str) -> Vec<PublishedPort> {
    let mut v: Vec<PublishedPort> = sandbox
        .published(name)
        .into_iter()
        .map(|r| PublishedPort {
            guest_port: r.guest_port,
            host_address: "127.0.0.1".into(),
            host_port: r.host_port,
        })
        .collect();
    v.sort_by_key(|p| p.guest_port);
    v
}

#[cfg(test)]
mod tests;

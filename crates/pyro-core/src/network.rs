//! Network policies as front ends pass them: a mode name and allowlists,
//! checked here once with errors that name the arguments.

use pyro_net::{Policy, PolicyError};

use crate::{BackendKind, CoreError};

pub use pyro_net::denials::Denial;
/// The network policy types front ends show.
pub use pyro_net::{Mode, Policy as NetworkPolicy};

/// Builds a policy from a mode name (`None`: `egress` when an allowlist is
/// given, else `off`) and allowlist entries.
pub fn policy_from(
    mode: Option<&str>,
    allow_hosts: &[String],
    allow_cidrs: &[String],
) -> Result<Policy, CoreError> {
    let mode = match mode {
        Some(m) => m.parse::<Mode>().map_err(|e| invalid(&e))?,
        None if !allow_hosts.is_empty() || !allow_cidrs.is_empty() => Mode::Egress,
        None => Mode::Off,
    };
    Policy::parse(mode, allow_hosts, allow_cidrs).map_err(|e| invalid(&e))
}

fn invalid(e: &PolicyError) -> CoreError {
    let next = match e {
        PolicyError::Mode(_) => "pass ⟨arg:network_policy⟩ as one of these",
        PolicyError::Host { .. } => "fix the ⟨arg:allow_host⟩ entry",
        PolicyError::Cidr(_) | PolicyError::Port(_) => {
            "fix the ⟨arg:allow_host⟩ or ⟨arg:allow_cidr⟩ entry"
        }
        PolicyError::AllowlistWithoutNetwork => "pass ⟨arg:network_policy=egress⟩ with them",
        PolicyError::TooMany => "allow a wider CIDR instead of many addresses",
    };
    CoreError::invalid(format!("{e}; {next}"))
}

/// Refuses a networked policy where it cannot be enforced.
pub fn check_backend(
    policy: &Policy,
    backend: BackendKind,
    allow_host_compat: bool,
) -> Result<(), CoreError> {
    if !policy.mode.has_network() {
        return Ok(());
    }
    if backend == BackendKind::HostCompat || allow_host_compat {
        return Err(CoreError::invalid(format!(
            "the network policy {} needs a Firecracker guest: a host-compat sandbox shares the \
             host's network and cannot be held to a policy; drop ⟨arg:allow_host_compat⟩ and use \
             the firecracker backend, or use ⟨arg:network_policy=off⟩",
            policy.mode
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

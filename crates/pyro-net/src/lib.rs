//! Guest networking under a policy.
//!
//! Each networked VM gets a network namespace of its own (`pyro-<id>`),
//! holding the VM's TAP (`tap0`, the guest link) and one end of a veth
//! pair (`uplink`) whose other end (`pv<id>`) sits in the host's namespace.
//! Every namespace uses the same guest link ([`GUEST_IP`] behind
//! [`GATEWAY_IP`]), so a guest's configuration never depends on its
//! namespace (and a template snapshot fits every one); the uplinks get
//! distinct /30s from [`UPLINK_POOL`].
//!
//! Inside the namespace a single nftables table (`inet pyro`, see
//! [`rules`]) filters what the guest sends: explicitly allowed CIDRs first,
//! then the denied ranges (loopback, link-local, RFC 1918, CGNAT, the
//! host's own addresses, pyro's own links), then either everything else
//! (plain egress) or only the addresses the policy resolver handed out for
//! allowed names. Denied TCP is answered with a reset and anything else
//! with an ICMP error, so nothing hangs; each denial is logged through
//! NFLOG to the namespace's daemon ([`daemon`]), which also serves the
//! guest's only DNS server on the gateway address. In the host's namespace
//! pyro adds one table per VM (`ip pyro_<id>`) that masquerades the uplink;
//! it never changes the host's other tables or its global settings.

pub mod cidr;
pub mod daemon;
pub mod denials;
pub mod dns;
pub mod netns;
pub mod nflog;
pub mod policy;
pub mod relay;
pub mod rules;

use std::net::Ipv4Addr;

pub use cidr::Cidr;
pub use policy::{CidrRule, HostRule, Mode, Policy, PolicyError};

/// The guest's address on its link (the same in every namespace).
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The namespace's address on the guest link: the guest's gateway and its
/// only DNS server.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Prefix length of the guest link.
pub const GUEST_PREFIX: u8 = 30;
/// Where uplink /30s are taken from (RFC 2544 benchmarking space, which no
/// real network routes).
pub const UPLINK_POOL: Cidr = Cidr::new_unchecked(Ipv4Addr::new(198, 19, 0, 0), 16);
/// The TAP's name inside the namespace.
pub const TAP_NAME: &str = "tap0";
/// The namespace end of the uplink.
pub const UPLINK_NAME: &str = "uplink";
/// The NFLOG group denials are logged to (per namespace).
pub const NFLOG_GROUP: u16 = 1;

/// `argv[1]` of a network daemon process (see [`run_helper_if_asked`]).
pub const DAEMON_ARG: &str = "__pyro-network-daemon";
/// `argv[1]` of a published port's relay.
pub const RELAY_ARG: &str = "__pyro-relay";

/// If this process was started as a network helper, runs it and exits;
/// otherwise returns at once. Call it first thing in `main`.
///
/// - `<program> __pyro-network-daemon --network-dir DIR`: [`daemon::run`].
/// - `<program> __pyro-relay --network-dir DIR --guest-port N [--vm-pid P]`,
///   started inside the VM's namespace with the host-side listener as
///   descriptor 3: [`relay::run`].
pub fn run_helper_if_asked() {
    let args: Vec<String> = std::env::args().collect();
    let Some(which) = args.get(1).map(String::as_str) else {
        return;
    };
    if which != DAEMON_ARG && which != RELAY_ARG {
        return;
    }
    let flag = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    let result = match (which, flag("--network-dir")) {
        (DAEMON_ARG, Some(dir)) => daemon::run(std::path::Path::new(&dir)),
        (RELAY_ARG, Some(_)) => match flag("--guest-port").and_then(|p| p.parse().ok()) {
            Some(port) => {
                use std::os::fd::FromRawFd;
                // SAFETY: pyro starts the relay with the listening socket
                // duplicated onto descriptor 3 and nothing else there; this
                // is its only owner.
                let listener = unsafe { std::os::fd::OwnedFd::from_raw_fd(3) };
                let vm = flag("--vm-pid")
                    .and_then(|p| p.parse().ok())
                    .and_then(pyro_vmm::process::ProcessId::of);
                relay::run(listener, port, vm)
            }
            None => Err(NetError::Unsupported("--guest-port is missing".into())),
        },
        _ => Err(NetError::Unsupported("--network-dir is missing".into())),
    };
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "pyro network helper: {e}");
            std::process::exit(1)
        }
    }
}

/// The kernel command line words that configure the guest's interface
/// (`ip=`, handled by the kernel) and its resolver (`pyro.dns=`, handled by
/// the agent).
pub fn guest_boot_args() -> Vec<String> {
    vec![
        format!("ip={GUEST_IP}::{GATEWAY_IP}:255.255.255.252::eth0:off"),
        format!("pyro.dns={GATEWAY_IP}"),
    ]
}

/// The MAC address of the guest's interface (locally administered).
pub const GUEST_MAC: &str = "06:00:c6:12:00:02";

/// The namespace of VM `id`.
pub fn netns_name(id: &str) -> String {
    format!("pyro-{id}")
}

/// The host end of VM `id`'s uplink (at most 15 bytes for ids of up to 13).
pub fn host_link_name(id: &str) -> String {
    format!("pv{id}")
}

/// The host-side nftables table (family `ip`) of VM `id`.
pub fn host_table_name(id: &str) -> String {
    format!("pyro_{id}")
}

/// Whether `id` can name a namespace, a link and a table: 1-13 lower-case
/// hex digits or letters.
pub fn valid_id(id: &str) -> bool {
    (1..=13).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Errors of the host-side network plumbing.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command (`ip`, `nft`) failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was being done.
        what: String,
        /// Its error output, or why it could not run.
        detail: String,
    },
    /// The host cannot give guests a network.
    #[error("{0}")]
    Unsupported(String),
    /// A file of the network state.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl NetError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

//! What a guest may reach: a mode and, optionally, allowlists.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cidr::{Cidr, CidrError};

/// Most entries one allowlist may hold.
pub const MAX_RULES: usize = 64;

/// How a guest is networked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Mode {
    /// No network interface at all.
    #[default]
    #[serde(rename = "off")]
    Off,
    /// Outbound connections under the policy.
    #[serde(rename = "egress")]
    Egress,
    /// Outbound connections, and services may publish ports on the host's
    /// loopback.
    #[serde(rename = "egress+published-ports")]
    EgressPublishedPorts,
}

impl Mode {
    /// Every mode, in the order help texts list them.
    pub const ALL: [Mode; 3] = [Mode::Off, Mode::Egress, Mode::EgressPublishedPorts];

    /// Its name on the command line and in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Egress => "egress",
            Mode::EgressPublishedPorts => "egress+published-ports",
        }
    }

    /// Whether the guest has an interface.
    pub fn has_network(&self) -> bool {
        *self != Mode::Off
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| PolicyError::Mode(s.to_owned()))
    }
}

/// A host name the guest may resolve and reach, on one port or all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostRule {
    /// Lower-case, without a trailing dot.
    pub name: String,
    /// One port, or every port.
    pub port: Option<u16>,
}

/// A network the guest may reach, on one port or all (it wins over the
/// ranges denied by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CidrRule {
    /// The network.
    pub cidr: Cidr,
    /// One port, or every port.
    pub port: Option<u16>,
}

/// A workspace's (or run's) network policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Policy {
    /// The mode.
    pub mode: Mode,
    /// Host names (`NAME` or `NAME:PORT`); with any allowlist entry, egress
    /// reaches only what the allowlists name.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub allow_hosts: Vec<HostRule>,
    /// Networks (`CIDR` or `CIDR:PORT`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub allow_cidrs: Vec<CidrRule>,
}

impl Policy {
    /// The policy with no network.
    pub fn off() -> Self {
        Self::default()
    }

    /// Builds and checks a policy from its parts as typed by a user.
    pub fn parse(mode: Mode, hosts: &[String], cidrs: &[String]) -> Result<Self, PolicyError> {
        let mut p = Policy {
            mode,
            allow_hosts: hosts.iter().map(|h| h.parse()).collect::<Result<_, _>>()?,
            allow_cidrs: cidrs.iter().map(|c| c.parse()).collect::<Result<_, _>>()?,
        };
        p.allow_hosts.sort();
        p.allow_hosts.dedup();
        p.allow_cidrs.sort();
        p.allow_cidrs.dedup();
        p.check()?;
        Ok(p)
    }

    /// Checks the rules that tie the parts together.
    pub fn check(&self) -> Result<(), PolicyError> {
        if self.mode == Mode::Off && self.restricted() {
            return Err(PolicyError::AllowlistWithoutNetwork);
        }
        if self.allow_hosts.len() > MAX_RULES || self.allow_cidrs.len() > MAX_RULES {
            return Err(PolicyError::TooMany);
        }
        Ok(())
    }

    /// Whether egress is narrowed to the allowlists.
    pub fn restricted(&self) -> bool {
        !self.allow_hosts.is_empty() || !self.allow_cidrs.is_empty()
    }

    /// The ports `name` may be reached on: `Some(None)` for every port,
    /// `Some(Some(ports))` for some, `None` when the name is not allowed
    /// (every name is, under unrestricted egress).
    pub fn ports_for(&self, name: &str) -> Option<Option<Vec<u16>>> {
        if !self.mode.has_network() {
            return None;
        }
        if !self.restricted() {
            return Some(None);
        }
        let rules: Vec<&HostRule> = self.allow_hosts.iter().filter(|r| r.name == name).collect();
        if rules.is_empty() {
            None
        } else if rules.iter().any(|r| r.port.is_none()) {
            Some(None)
        } else {
            Some(Some(rules.iter().filter_map(|r| r.port).collect()))
        }
    }
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An unknown mode.
    #[error("unknown network policy {0:?}; use off, egress or egress+published-ports")]
    Mode(String),
    /// A host entry that is not `NAME[:PORT]`.
    #[error(
        "{given:?} is not an allowed host ({why}); write NAME or NAME:PORT, e.g. github.com:22"
    )]
    Host {
        /// What was given.
        given: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A CIDR entry that is not `CIDR[:PORT]`.
    #[error("{0}; write CIDR or CIDR:PORT, e.g. 10.0.5.0/24:5432")]
    Cidr(CidrError),
    /// A port that is not 1-65535.
    #[error("{0:?} has a port that is not a number from 1 to 65535")]
    Port(String),
    /// An allowlist under `off`.
    #[error("allowlists narrow egress, but the network policy is off")]
    AllowlistWithoutNetwork,
    /// Too many entries.
    #[error("an allowlist may hold at most 64 entries")]
    TooMany,
}

fn split_port(s: &str) -> Result<(&str, Option<u16>), PolicyError> {
    match s.rsplit_once(':') {
        // An IPv6 literal has several colons: leave it whole for the
        // address parser to name.
        Some((head, _)) if head.contains(':') => Ok((s, None)),
        Some((head, port)) => {
            let p = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0 && port.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| PolicyError::Port(s.to_owned()))?;
            Ok((head, Some(p)))
        }
        None => Ok((s, None)),
    }
}

impl FromStr for HostRule {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let (name, port) = split_port(s.trim())?;
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let bad = |why| PolicyError::Host {
            given: s.to_owned(),
            why,
        };
        if name.is_empty() || name.len() > 253 {
            return Err(bad("a name has 1 to 253 characters"));
        }
        if name.contains('*') {
            return Err(bad("wildcards are not supported; list each name"));
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(bad("an address is a CIDR rule, not a host"));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("each dot-separated label has 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad("a name holds only letters, digits, '-', '_' and dots"));
            }
        }
        Ok(HostRule { name, port })
    }
}

impl FromStr for CidrRule {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let (net, port) = split_port(s.trim())?;
        Ok(CidrRule {
            cidr: net.parse().map_err(PolicyError::Cidr)?,
            port,
        })
    }
}

macro_rules! display_with_port {
    ($t:ty, $field:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.port {
                    Some(p) => write!(f, "{}:{p}", self.$field),
                    None => write!(f, "{}", self.$field),
                }
            }
        }
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
display_with_port!(HostRule, name);
display_with_port!(CidrRule, cidr);

#[cfg(test)]
mod tests;

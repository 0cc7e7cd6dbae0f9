//! IPv4 networks in CIDR notation.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address with its host bits clear and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    /// A network from parts the caller knows are valid (host bits clear,
    /// prefix at most 32).
    pub const fn new_unchecked(addr: Ipv4Addr, prefix: u8) -> Self {
        Self { addr, prefix }
    }

    /// A network; `None` when the prefix is over 32 or host bits are set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32 && u32::from(addr) & !mask(prefix) == 0).then_some(Self { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `n`-th address of the network (wrapping inside it).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | (n & !mask(self.prefix)))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `A.B.C.D` or `A.B.C.D/N`.
    #[error("{0:?} is not an IPv4 address or network (expected A.B.C.D or A.B.C.D/N)")]
    Syntax(String),
    /// An IPv6 network.
    #[error("{0:?} is an IPv6 network, but guests have IPv4 only")]
    Ipv6(String),
    /// The prefix is over 32.
    #[error("{0:?} has a prefix over 32")]
    Prefix(String),
    /// Host bits are set.
    #[error("{given:?} has host bits set; did you mean {suggested}?")]
    HostBits {
        /// What was given.
        given: String,
        /// The network it lies in.
        suggested: Cidr,
    },
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: Ipv4Addr = a.parse().map_err(|_| {
            if a.contains(':') {
                CidrError::Ipv6(s.to_owned())
            } else {
                CidrError::Syntax(s.to_owned())
            }
        })?;
        let prefix = match p {
            None => 32,
            Some(p) if !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .map_err(|_| CidrError::Syntax(s.to_owned()))?,
            Some(_) => return Err(CidrError::Syntax(s.to_owned())),
        };
        if prefix > 32 {
            return Err(CidrError::Prefix(s.to_owned()));
        }
        Cidr::new(addr, prefix).ok_or_else(|| CidrError::HostBits {
            given: s.to_owned(),
            suggested: Cidr::new_unchecked(Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix),
        })
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;

//! The nftables rules: one table in the VM's namespace that filters what
//! the guest sends, and one in the host's that masquerades its uplink.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::policy::{CidrRule, Mode, Policy};
use crate::{GATEWAY_IP, GUEST_IP, NFLOG_GROUP, TAP_NAME, UPLINK_NAME};

/// Connections (conntrack entries) one guest may hold open at once, so a
/// guest cannot fill the host's connection tracking.
pub const MAX_FLOWS: u32 = 4096;
/// New connections one guest may open per second.
pub const NEW_FLOWS_PER_SECOND: u32 = 500;

/// Denials logged per second at most (a flood beyond it is still refused,
/// and counted in the `unlogged` counter).
pub const LOG_RATE_PER_SECOND: u32 = 50;

/// A range denied under every policy unless an allowed CIDR names it, and
/// the rule name its denials are logged under.
#[derive(Debug, Clone, Copy)]
pub struct DeniedRange {
    /// The rule name (`loopback`, `link-local`, ...).
    pub rule: &'static str,
    /// Its networks.
    pub nets: &'static [&'static str],
}

/// The ranges denied by default, in the order they are checked.
pub const DENIED: &[DeniedRange] = &[
    DeniedRange {
        rule: "loopback",
        nets: &["127.0.0.0/8"],
    },
    DeniedRange {
        rule: "link-local",
        nets: &["169.254.0.0/16"],
    },
    DeniedRange {
        rule: "private",
        nets: &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
    },
    DeniedRange {
        rule: "cgnat",
        nets: &["100.64.0.0/10"],
    },
    DeniedRange {
        rule: "pyro-link",
        nets: &["198.18.0.0/15"],
    },
    DeniedRange {
        rule: "reserved",
        nets: &["0.0.0.0/8", "224.0.0.0/3"],
    },
];

/// The rule names a denial may carry: the ranges above, `host` (one of the
/// host's own addresses), `not-allowed` (outside the allowlists),
/// `gateway` (the namespace itself, other than its DNS server), `flows`
/// (over [`MAX_FLOWS`] open connections or [`NEW_FLOWS_PER_SECOND`] new
/// ones a second) and `dns` (a name the resolver refused).
pub fn rule_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = DENIED.iter().map(|d| d.rule).collect();
    v.extend(["host", "not-allowed", "gateway", "flows", "dns"]);
    v
}

fn deny_chain(out: &mut String, rule: &str) {
    // Beyond the log rate a denial is counted instead of logged; either
    // way it is refused.
    let _ = writeln!(
        out,
        "  chain deny_{c} {{\n    limit rate over {LOG_RATE_PER_SECOND}/second burst \
         {LOG_RATE_PER_SECOND} packets counter name \"unlogged\" goto refuse\n    log group \
         {NFLOG_GROUP} prefix \"pyro:{rule}\" goto refuse\n  }}",
        c = rule.replace('-', "_")
    );
}

fn port_elements(cidr: &str, port: Option<u16>) -> [String; 2] {
    let ports = port.map_or_else(|| "0-65535".to_owned(), |p| p.to_string());
    [
        format!("{cidr} . tcp . {ports}"),
        format!("{cidr} . udp . {ports}"),
    ]
}

/// The namespace's table for `policy` (atomically replacing any earlier
/// one when fed to `nft -f`). `host_addrs` are the host's own addresses;
/// `generation` tells this policy's connections from earlier ones (a
/// connection a new policy no longer allows is refused at its next packet).
/// Addresses the resolver learns go into the `dns_allow` set later.
pub fn namespace_ruleset(policy: &Policy, host_addrs: &[Ipv4Addr], generation: u32) -> String {
    let mut o = String::new();
    o.push_str("table inet pyro\ndelete table inet pyro\ntable inet pyro {\n");
    o.push_str("  counter unlogged {}\n");
    // The guest's connections as conntrack counts them (one element: the
    // guest has one address).
    o.push_str("  set flows {\n    type ipv4_addr\n    size 16\n    flags dynamic\n  }\n");
    let rules = normalized(policy);
    let set = |o: &mut String, name: &str, items: &[String]| {
        let _ = writeln!(
            o,
            "  set {name} {{\n    type ipv4_addr . inet_proto . inet_service\n    flags interval\n{}  }}",
            elements(items)
        );
    };
    // A host address or one of pyro's links is allowed only by a CIDR that
    // names exactly it (a /32), never by a wider one.
    let exact: Vec<String> = rules
        .iter()
        .filter(|r| r.cidr.prefix() == 32)
        .flat_map(|r| port_elements(&r.cidr.to_string(), r.port))
        .collect();
    let allow: Vec<String> = rules
        .iter()
        .flat_map(|r| port_elements(&r.cidr.to_string(), r.port))
        .collect();
    set(&mut o, "exact_allow", &exact);
    set(&mut o, "cidr_allow", &allow);
    set(&mut o, "dns_allow", &[]);
    let hosts: Vec<String> = host_addrs.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(
        o,
        "  set host_addrs {{\n    type ipv4_addr\n    flags interval\n{}  }}",
        elements(&hosts)
    );
    let accept = format!("ct mark set {generation} accept");
    // Nothing but the guest's own IPv4 address comes in from the guest.
    let _ = writeln!(
        o,
        "  chain guest_in {{\n    type filter hook prerouting priority raw; policy accept;\n    iifname \"{TAP_NAME}\" meta nfproto != ipv4 drop\n    iifname \"{TAP_NAME}\" ip saddr != {GUEST_IP} drop\n    iifname \"{UPLINK_NAME}\" meta nfproto != ipv4 drop\n  }}"
    );
    // What the guest sends through the namespace.
    let _ = writeln!(
        o,
        "  chain forward {{\n    type filter hook forward priority filter; policy drop;\n    meta nfproto != ipv4 drop\n    ct state established,related ct mark {generation} accept\n    ct state invalid drop\n    iifname != \"{TAP_NAME}\" drop\n    oifname != \"{UPLINK_NAME}\" goto deny_gateway\n    ct state new add @flows {{ ip saddr ct count over {MAX_FLOWS} }} goto deny_flows\n    ct state new limit rate over {NEW_FLOWS_PER_SECOND}/second burst {NEW_FLOWS_PER_SECOND} packets goto deny_flows\n    ip daddr . meta l4proto . th dport @exact_allow {accept}\n    ip daddr 198.18.0.0/15 goto deny_pyro_link\n    ip daddr @host_addrs goto deny_host\n    ip daddr . meta l4proto . th dport @cidr_allow {accept}"
    );
    for d in DENIED {
        let _ = writeln!(
            o,
            "    ip daddr {{ {} }} goto deny_{}",
            d.nets.join(", "),
            d.rule.replace('-', "_")
        );
    }
    if policy.restricted() {
        let _ = writeln!(
            o,
            "    ip daddr . meta l4proto . th dport @dns_allow {accept}"
        );
        o.push_str("    goto deny_not_allowed\n");
    } else if policy.mode != Mode::Off {
        let _ = writeln!(o, "    {accept}");
    } else {
        o.push_str("    goto deny_not_allowed\n");
    }
    o.push_str("  }\n");
    // What the guest sends to the namespace itself: only DNS.
    let _ = writeln!(
        o,
        "  chain input {{\n    type filter hook input priority filter; policy drop;\n    ct state established,related accept\n    iifname \"lo\" accept\n    iifname \"{TAP_NAME}\" ip daddr {GATEWAY_IP} meta l4proto {{ tcp, udp }} th dport 53 accept\n    iifname \"{TAP_NAME}\" goto deny_gateway\n  }}"
    );
    // The namespace itself never sends anything out of its uplink (a reply
    // to a forged source, say); forwarded traffic does not pass here.
    let _ = writeln!(
        o,
        "  chain local_out {{\n    type filter hook output priority filter; policy accept;\n    oifname \"{UPLINK_NAME}\" drop\n  }}"
    );
    for rule in rule_names() {
        if rule != "dns" {
            deny_chain(&mut o, rule);
        }
    }
    o.push_str(
        "  chain refuse {\n    meta l4proto tcp reject with tcp reset\n    reject with icmpx admin-prohibited\n  }\n",
    );
    let _ = writeln!(
        o,
        "  chain nat_out {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{UPLINK_NAME}\" masquerade\n  }}"
    );
    o.push_str("}\n");
    o
}

/// The allowed CIDRs without the ones another already covers (nftables
/// refuses overlapping intervals in one set).
fn normalized(policy: &Policy) -> Vec<CidrRule> {
    let covers = |a: &CidrRule, b: &CidrRule| {
        a.cidr.prefix() <= b.cidr.prefix()
            && a.cidr.contains(b.cidr.addr())
            && (a.port.is_none() || a.port == b.port)
    };
    let rules = &policy.allow_cidrs;
    rules
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            !rules
                .iter()
                .enumerate()
                .any(|(j, o)| j != *i && covers(o, r) && (!covers(r, o) || j < *i))
        })
        .map(|(_, r)| *r)
        .collect()
}

fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("    elements = {{ {} }}\n", items.join(", "))
    }
}

/// `nft` input adding resolver-learned addresses for a name allowed on
/// `ports` (`None`: every port).
pub fn dns_allow_elements(addrs: &[Ipv4Addr], ports: Option<&[u16]>) -> Vec<String> {
    let mut v = Vec::new();
    for a in addrs {
        match ports {
            None => v.extend(port_elements(&a.to_string(), None)),
            Some(ps) => {
                for p in ps {
                    v.extend(port_elements(&a.to_string(), Some(*p)));
                }
            }
        }
    }
    v
}

/// The command adding `elements` to the `dns_allow` set.
pub fn add_dns_allow(elements: &[String]) -> String {
    format!(
        "add element inet pyro dns_allow {{ {} }}\n",
        elements.join(", ")
    )
}

/// The host's table for VM `id`: only the namespace's own address comes
/// in from the uplink, the host itself answers it only on ports a /32
/// CIDR of the policy names (the demo's server), and what leaves through
/// another interface is masqueraded.
pub fn host_ruleset(
    table: &str,
    ns_addr: Ipv4Addr,
    host_link: &str,
    host_addrs: &[Ipv4Addr],
    policy: &Policy,
) -> String {
    let exact: Vec<String> = normalized(policy)
        .iter()
        .filter(|r| r.cidr.prefix() == 32 && host_addrs.contains(&r.cidr.addr()))
        .flat_map(|r| port_elements(&r.cidr.to_string(), r.port))
        .collect();
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n  set host_allow {{\n    type ipv4_addr . inet_proto . inet_service\n    flags interval\n{}  }}\n  chain uplink_in {{\n    type filter hook prerouting priority raw; policy accept;\n    iifname \"{host_link}\" ip saddr != {ns_addr} drop\n  }}\n  chain host_in {{\n    type filter hook input priority filter; policy accept;\n    iifname \"{host_link}\" ct state established,related accept\n    iifname \"{host_link}\" ip daddr . meta l4proto . th dport @host_allow accept\n    iifname \"{host_link}\" drop\n  }}\n  chain nat_out {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {ns_addr} oifname != \"{host_link}\" masquerade\n  }}\n}}\n",
        elements(&exact)
    )
}

/// The uplink /30 of slot `n`: the host's end, the namespace's end.
pub fn uplink_addrs(pool: Cidr, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    (pool.nth(n * 4 + 1), pool.nth(n * 4 + 2))
}

#[cfg(test)]
mod tests;

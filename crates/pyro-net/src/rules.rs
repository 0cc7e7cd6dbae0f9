//! The nftables rules: one table in the VM's namespace that filters what
//! the guest sends, and one in the host's that masquerades its uplink.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::policy::{Mode, Policy};
use crate::{GATEWAY_IP, NFLOG_GROUP, TAP_NAME, UPLINK_NAME};

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
/// `gateway` (the namespace itself, other than its DNS server) and
/// `dns` (a name the resolver refused).
pub fn rule_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = DENIED.iter().map(|d| d.rule).collect();
    v.extend(["host", "not-allowed", "gateway", "dns"]);
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
/// one when fed to `nft -f`). `host_addrs` are the host's own addresses.
/// Addresses the resolver learns go into the `dns_allow` set later.
pub fn namespace_ruleset(policy: &Policy, host_addrs: &[Ipv4Addr]) -> String {
    let mut o = String::new();
    o.push_str("table inet pyro\ndelete table inet pyro\ntable inet pyro {\n");
    o.push_str("  counter unlogged {}\n");
    let allow: Vec<String> = policy
        .allow_cidrs
        .iter()
        .flat_map(|r| port_elements(&r.cidr.to_string(), r.port))
        .collect();
    let _ = writeln!(
        o,
        "  set cidr_allow {{\n    type ipv4_addr . inet_proto . inet_service\n    flags interval\n{}  }}",
        elements(&allow)
    );
    o.push_str(
        "  set dns_allow {\n    type ipv4_addr . inet_proto . inet_service\n    flags interval\n  }\n",
    );
    let hosts: Vec<String> = host_addrs.iter().map(|a| a.to_string()).collect();
    let _ = writeln!(
        o,
        "  set host_addrs {{\n    type ipv4_addr\n    flags interval\n{}  }}",
        elements(&hosts)
    );
    // What the guest sends through the namespace.
    let _ = writeln!(
        o,
        "  chain forward {{\n    type filter hook forward priority filter; policy drop;\n    ct state established,related accept\n    ct state invalid drop\n    iifname != \"{TAP_NAME}\" drop\n    oifname != \"{UPLINK_NAME}\" goto deny_gateway\n    ip daddr . meta l4proto . th dport @cidr_allow accept"
    );
    for d in DENIED {
        let _ = writeln!(
            o,
            "    ip daddr {{ {} }} goto deny_{}",
            d.nets.join(", "),
            d.rule.replace('-', "_")
        );
    }
    o.push_str("    ip daddr @host_addrs goto deny_host\n");
    if policy.restricted() {
        o.push_str("    ip daddr . meta l4proto . th dport @dns_allow accept\n");
        o.push_str("    goto deny_not_allowed\n");
    } else if policy.mode != Mode::Off {
        o.push_str("    accept\n");
    } else {
        o.push_str("    goto deny_not_allowed\n");
    }
    o.push_str("  }\n");
    // What the guest sends to the namespace itself: only DNS.
    let _ = writeln!(
        o,
        "  chain input {{\n    type filter hook input priority filter; policy drop;\n    ct state established,related accept\n    iifname \"lo\" accept\n    iifname \"{TAP_NAME}\" ip daddr {GATEWAY_IP} meta l4proto {{ tcp, udp }} th dport 53 accept\n    iifname \"{TAP_NAME}\" goto deny_gateway\n  }}"
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

/// The host's table for VM `id`: masquerades what leaves through the
/// uplink whose namespace end is `ns_addr`.
pub fn host_ruleset(table: &str, ns_addr: Ipv4Addr, host_link: &str) -> String {
    format!(
        "table ip {table} {{\n  chain nat_out {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {ns_addr} oifname != \"{host_link}\" masquerade\n  }}\n}}\n"
    )
}

/// The uplink /30 of slot `n`: the host's end, the namespace's end.
pub fn uplink_addrs(pool: Cidr, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    (pool.nth(n * 4 + 1), pool.nth(n * 4 + 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn policy(mode: Mode, hosts: &[&str], cidrs: &[&str]) -> Policy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Policy::parse(mode, &s(hosts), &s(cidrs)).unwrap()
    }

    #[test]
    fn open_egress_accepts_public_addresses_after_the_denied_ranges() {
        let r = namespace_ruleset(
            &policy(Mode::Egress, &[], &[]),
            &[Ipv4Addr::new(192, 0, 2, 9)],
        );
        let fwd = &r[r.find("chain forward").unwrap()..r.find("chain input").unwrap()];
        let deny = fwd.find("169.254.0.0/16").unwrap();
        let accept = fwd.rfind("    accept\n").unwrap();
        assert!(
            fwd.find("@cidr_allow").unwrap() < deny && deny < accept,
            "{fwd}"
        );
        assert!(r.contains("elements = { 192.0.2.9 }"), "{r}");
        assert!(!fwd.contains("@dns_allow"), "{fwd}");
        // The replacement is one transaction that works with or without
        // an earlier table.
        assert!(r.starts_with("table inet pyro\ndelete table inet pyro\n"));
    }

    #[test]
    fn an_allowlist_ends_in_a_logged_refusal() {
        let r = namespace_ruleset(
            &policy(Mode::Egress, &["github.com:22"], &["10.0.5.0/24:5432"]),
            &[],
        );
        assert!(
            r.contains("10.0.5.0/24 . tcp . 5432, 10.0.5.0/24 . udp . 5432"),
            "{r}"
        );
        assert!(
            r.contains("@dns_allow accept\n    goto deny_not_allowed\n"),
            "{r}"
        );
        assert!(r.contains("prefix \"pyro:not-allowed\""), "{r}");
        assert!(r.contains("meta l4proto tcp reject with tcp reset"), "{r}");
        for rule in rule_names().into_iter().filter(|r| *r != "dns") {
            assert!(r.contains(&format!("prefix \"pyro:{rule}\"")), "{rule}");
        }
    }

    #[test]
    fn learned_addresses_carry_their_ports() {
        let a = [Ipv4Addr::new(192, 0, 2, 1)];
        assert_eq!(
            dns_allow_elements(&a, Some(&[22])),
            ["192.0.2.1 . tcp . 22", "192.0.2.1 . udp . 22"]
        );
        assert_eq!(dns_allow_elements(&a, None)[0], "192.0.2.1 . tcp . 0-65535");
        let (h, n) = uplink_addrs(crate::UPLINK_POOL, 3);
        assert_eq!(
            (h.to_string(), n.to_string()),
            ("198.19.0.13".into(), "198.19.0.14".into())
        );
        assert!(
            host_ruleset("pyro_ab", n, "pvab")
                .contains("ip saddr 198.19.0.14 oifname != \"pvab\" masquerade")
        );
    }
}

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
        7,
    );
    let fwd = &r[r.find("chain forward").unwrap()..r.find("chain input").unwrap()];
    let deny = fwd.find("169.254.0.0/16").unwrap();
    let accept = fwd.rfind("    ct mark set 7 accept\n").unwrap();
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
        &policy(
            Mode::Egress,
            &["github.com:22"],
            &["10.0.5.0/24:5432", "10.0.0.0/8", "10.0.5.0/24"],
        ),
        &[],
        3,
    );
    // Covered entries go (nftables refuses overlapping intervals).
    assert!(!r.contains("10.0.5.0/24 . tcp . 5432"), "{r}");
    assert!(
        r.contains("10.0.0.0/8 . tcp . 0-65535, 10.0.0.0/8 . udp . 0-65535"),
        "{r}"
    );
    assert!(
        r.contains("@dns_allow ct mark set 3 accept\n    goto deny_not_allowed\n"),
        "{r}"
    );
    // Only the guest's address comes in from it; old connections need
    // this policy's mark.
    assert!(r.contains("ip saddr != 198.18.0.2 drop"), "{r}");
    assert!(
        r.contains("ct state established,related ct mark 3 accept"),
        "{r}"
    );
    // Host addresses and pyro's links are refused before wide CIDRs.
    let fwd = &r[r.find("chain forward").unwrap()..];
    assert!(fwd.find("deny_host").unwrap() < fwd.find("@cidr_allow").unwrap());
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
    let host = Ipv4Addr::new(198, 19, 0, 13);
    let p = policy(Mode::Egress, &[], &["198.19.0.13/32:8080", "0.0.0.0/0:443"]);
    let t = host_ruleset("pyro_ab", n, "pvab", &[host], &p);
    assert!(
        t.contains("ip saddr 198.19.0.14 oifname != \"pvab\" masquerade"),
        "{t}"
    );
    assert!(t.contains("ip saddr != 198.19.0.14 drop"), "{t}");
    assert!(
        t.contains("elements = { 198.19.0.13/32 . tcp . 8080"),
        "{t}"
    );
    assert!(!t.contains(". 443"), "a wide CIDR opens no host port: {t}");
}

#[test]
fn nft_accepts_the_rulesets() {
    // CI runs as root with nftables installed; elsewhere there is
    // nothing to check against.
    if !nix::unistd::geteuid().is_root() || crate::netns::which("nft").is_none() {
        return;
    }
    let host = [Ipv4Addr::new(192, 0, 2, 9)];
    for p in [
        policy(Mode::Egress, &[], &[]),
        policy(Mode::Off, &[], &[]),
        policy(
            Mode::EgressPublishedPorts,
            &["github.com:22", "pypi.org"],
            &["10.0.5.0/24:5432", "192.0.2.9/32:80", "0.0.0.0/0:443"],
        ),
    ] {
        for script in [
            namespace_ruleset(&p, &host, 42),
            host_ruleset(
                "pyro_check",
                Ipv4Addr::new(198, 19, 0, 2),
                "pvcheck",
                &host,
                &p,
            ),
            add_dns_allow(&dns_allow_elements(&host, Some(&[22, 443]))),
        ] {
            // `-c`: checked, never applied.
            let r = crate::netns::run("nft", &["-c", "-f", "-"], Some(&script));
            if script.starts_with("add element") {
                // Needs the set to exist: only its syntax is checked.
                if let Err(e) = &r {
                    assert!(e.to_string().contains("No such file"), "{e}\n{script}");
                }
            } else {
                r.unwrap_or_else(|e| panic!("{e}\n{script}"));
            }
        }
    }
}

use super::*;

#[test]
fn parses_networks_and_single_addresses() {
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(c.contains(Ipv4Addr::new(10, 200, 1, 1)));
    assert!(!c.contains(Ipv4Addr::new(11, 0, 0, 1)));
    let one: Cidr = "192.0.2.7".parse().unwrap();
    assert_eq!(one.to_string(), "192.0.2.7/32");
    assert!(
        "0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains(Ipv4Addr::BROADCAST)
    );
    assert_eq!(UPLINK.nth(5), Ipv4Addr::new(198, 19, 0, 5));
    assert!(UPLINK.overlaps(&"198.19.4.0/30".parse().unwrap()));
    assert!(!UPLINK.overlaps(&"198.18.0.0/30".parse().unwrap()));
}
const UPLINK: Cidr = crate::UPLINK_POOL;

#[test]
fn bad_networks_say_what_is_wrong() {
    for (s, want) in [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("10.0.0.0/33", "prefix over 32"),
        ("fd00::/8", "IPv6"),
        ("example.com", "not an IPv4"),
        ("10.0.0.0/", "not an IPv4"),
        ("10.0.0.0/+8", "not an IPv4"),
        ("10.0.0.0/008", "not an IPv4"),
    ] {
        let e = s.parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains(want), "{s}: {e}");
    }
}

#[test]
fn a_cidr_round_trips_through_json() {
    let c: Cidr = "10.1.2.0/24".parse().unwrap();
    let j = serde_json::to_string(&c).unwrap();
    assert_eq!(j, "\"10.1.2.0/24\"");
    assert_eq!(serde_json::from_str::<Cidr>(&j).unwrap(), c);
    assert!(serde_json::from_str::<Cidr>("\"10.1.2.0/33\"").is_err());
}

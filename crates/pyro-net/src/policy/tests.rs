use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn allowlists_parse_names_networks_and_ports() {
    let p = Policy::parse(
        Mode::Egress,
        &s(&[
            "GitHub.com:22",
            "github.com:22",
            "pypi.org",
            "db.internal:5432",
        ]),
        &s(&["10.0.5.0/24:5432", "192.0.2.1"]),
    )
    .unwrap();
    assert_eq!(p.allow_hosts.len(), 3, "duplicates fold: {p:?}");
    assert_eq!(p.ports_for("github.com"), Some(Some(vec![22])));
    assert_eq!(p.ports_for("pypi.org"), Some(None));
    assert_eq!(p.ports_for("example.com"), None);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["mode"], "egress");
    assert_eq!(json["allow_cidrs"][0], "10.0.5.0/24:5432");
    assert_eq!(serde_json::from_value::<Policy>(json).unwrap(), p);
    // Unrestricted egress answers every name; off none.
    assert_eq!(
        Policy {
            mode: Mode::Egress,
            ..Policy::off()
        }
        .ports_for("a.b"),
        Some(None)
    );
    assert_eq!(Policy::off().ports_for("a.b"), None);
}

#[test]
fn bad_entries_say_how_to_write_them() {
    for (h, want) in [
        ("*.example.com", "wildcards"),
        ("exa mple.com", "only letters"),
        ("a..b", "label"),
        ("github.com:0", "port"),
        ("github.com:70000", "port"),
        ("github.com:+22", "port"),
        ("10.1.2.3", "CIDR rule"),
        ("", "1 to 253"),
    ] {
        let e = Policy::parse(Mode::Egress, &s(&[h]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{h}: {e}");
    }
    for (c, want) in [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("fd00::/8", "IPv6"),
        ("10.0.0.0/8:http", "port"),
    ] {
        let e = Policy::parse(Mode::Egress, &[], &s(&[c]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{c}: {e}");
    }
    let e = Policy::parse(Mode::Off, &s(&["a.b"]), &[]).unwrap_err();
    assert_eq!(e, PolicyError::AllowlistWithoutNetwork);
    let many: Vec<String> = (0..65).map(|i| format!("h{i}.example")).collect();
    assert_eq!(
        Policy::parse(Mode::Egress, &many, &[]).unwrap_err(),
        PolicyError::TooMany
    );
    assert!(
        "on".parse::<Mode>()
            .unwrap_err()
            .to_string()
            .contains("egress+published-ports")
    );
}

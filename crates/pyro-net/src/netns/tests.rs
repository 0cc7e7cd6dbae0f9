use super::*;

#[test]
fn slots_skip_addresses_the_host_already_uses() {
    let taken = [
        Ipv4Addr::new(198, 19, 0, 1),
        Ipv4Addr::new(198, 19, 0, 6),
        Ipv4Addr::new(10, 0, 0, 1),
    ];
    assert_eq!(allocate_slot(&taken).unwrap(), 2);
    assert_eq!(allocate_slot(&[]).unwrap(), 0);
}

#[test]
fn a_command_that_fails_reports_its_error_output() {
    let e = run("sh", &["-c", "echo nope >&2; exit 3"], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    let e = run("pyro-no-such-tool", &[], None).unwrap_err().to_string();
    assert!(e.contains("cannot run"), "{e}");
    assert_eq!(run("cat", &[], Some("fed")).unwrap(), "fed");
}

/// Each missing piece is named with its fix, the first one first; all
/// there is fine.
#[test]
fn preflight_names_the_first_missing_piece_and_its_fix() {
    let all = HostFacts {
        root: true,
        tun: true,
        ip: true,
        nft: true,
        forwarding: true,
    };
    assert!(preflight_of(&all).is_ok());
    let cases = [
        (HostFacts { root: false, ..all }, "needs root"),
        (HostFacts { tun: false, ..all }, "modprobe tun"),
        (
            HostFacts { ip: false, ..all },
            "install the iproute2 package",
        ),
        (
            HostFacts { nft: false, ..all },
            "install the nftables package",
        ),
        (
            HostFacts {
                forwarding: false,
                ..all
            },
            "net.ipv4.ip_forward=1",
        ),
        (
            HostFacts {
                root: false,
                tun: false,
                ..all
            },
            "needs root",
        ),
    ];
    for (facts, says) in cases {
        let e = preflight_of(&facts).unwrap_err();
        assert!(
            matches!(&e, NetError::Unsupported(m) if m.contains(says)),
            "{facts:?}: {e}"
        );
    }
}

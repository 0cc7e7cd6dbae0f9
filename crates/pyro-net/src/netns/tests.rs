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

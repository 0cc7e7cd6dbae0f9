use super::*;

#[test]
fn machine_ids_differ_per_host_and_stay_per_host() {
    let a = machine_id("pyro-0123456789abcdef");
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a, machine_id("pyro-0123456789abcdef"));
    assert_ne!(a, machine_id("pyro-fedcba9876543210"));
}

#[test]
fn the_hosts_file_keeps_its_lines_and_names_this_machine_once() {
    let once = hosts_with_name("127.0.0.1 localhost\n10.0.0.9 db\n", "pyro-a");
    let twice = hosts_with_name(&once, "pyro-b");
    assert_eq!(
        twice,
        "127.0.0.1 localhost\n10.0.0.9 db\n127.0.1.1\tpyro-b\t# pyro: this machine's name\n"
    );
}

#[test]
fn kernel_params_defaults_and_overrides() {
    let p = KernelParams::parse("console=ttyS0 quiet init=/usr/sbin/pyro-agent").unwrap();
    assert_eq!(
        p,
        KernelParams {
            hostname: "pyro".into(),
            idle_seconds: 0,
            upper_device: "/dev/vdb".into(),
            dns: None,
            template: false,
        }
    );
    let p = KernelParams::parse(
        "pyro.hostname=ws1 pyro.idle=600 pyro.upper=/dev/vdc pyro.dns=198.18.0.1 pyro.template=1",
    )
    .unwrap();
    assert!(p.template);
    assert_eq!((p.hostname.as_str(), p.idle_seconds), ("ws1", 600));
    assert_eq!(p.upper_device, "/dev/vdc");
    assert_eq!(p.dns, Some(std::net::Ipv4Addr::new(198, 18, 0, 1)));
}

#[test]
fn kernel_params_that_cannot_be_used_are_errors() {
    for (cmdline, needle) in [
        ("pyro.idle=ten", "pyro.idle=ten is not a number"),
        ("pyro.idle=-5", "pyro.idle=-5 is not a number"),
        ("pyro.idle=", "pyro.idle= is not a number"),
        ("pyro.hostname=a_b", "not a valid hostname"),
        ("pyro.hostname=-x", "not a valid hostname"),
        ("pyro.hostname=", "not a valid hostname"),
        ("pyro.upper=vdb", "not a /dev path"),
        ("pyro.dns=example.com", "not an IPv4 address"),
        ("pyro.template=yes", "pyro.template=yes is not 0 or 1"),
        ("pyro.idel=5", "unknown kernel parameter pyro.idel=5"),
        ("pyro.idle", "pyro.idle has no value"),
        ("pyro.idle=5 pyro.idle=6", "pyro.idle is given twice"),
    ] {
        let e = KernelParams::parse(cmdline).unwrap_err();
        assert!(e.contains(needle), "{cmdline}: {e}");
    }
}

#[test]
fn unknown_paths_give_errors_not_panics() {
    let e = mount_fs(
        "none",
        "/nonexistent/pyro-test",
        "tmpfs",
        MsFlags::empty(),
        None,
    );
    assert!(e.unwrap_err().contains("/nonexistent/pyro-test"));
}

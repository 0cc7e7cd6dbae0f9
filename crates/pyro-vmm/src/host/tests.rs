use super::*;

#[test]
fn pvm_flags_only_on_pvm_hosts() {
    let plain = boot_args(false, &["pyro.idle=60".into()]);
    assert!(
        plain.ends_with("init=/usr/sbin/pyro-agent pyro.idle=60"),
        "{plain}"
    );
    assert!(!plain.contains("pvmsyscallfixup"));
    assert!(!plain.contains("lapic="), "{plain}");
    let pvm = boot_args(true, &[]);
    assert!(
        pvm.contains("noint3selftest") && pvm.contains("pvmsyscallfixup"),
        "{pvm}"
    );
    assert!(pvm.split(' ').any(|a| a == "lapic=notscdeadline"), "{pvm}");
}

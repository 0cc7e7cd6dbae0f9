use super::*;

#[test]
fn an_allowlist_alone_means_egress_and_errors_name_the_argument() {
    let p = policy_from(None, &["github.com:22".into()], &[]).unwrap();
    assert_eq!(p.mode, Mode::Egress);
    assert_eq!(policy_from(None, &[], &[]).unwrap().mode, Mode::Off);
    let e = policy_from(Some("off"), &["a.b".into()], &[]).unwrap_err();
    assert!(e.to_string().contains("⟨arg:network_policy=egress⟩"), "{e}");
    let e = policy_from(Some("on"), &[], &[]).unwrap_err();
    assert_eq!(e.kind(), "invalid_argument");
    let e = check_backend(&p, BackendKind::HostCompat, false).unwrap_err();
    assert!(e.to_string().contains("shares the host's network"), "{e}");
    check_backend(&Policy::off(), BackendKind::HostCompat, true).unwrap();
}

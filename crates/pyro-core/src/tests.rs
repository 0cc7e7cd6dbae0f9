use super::*;

#[test]
fn backend_names() {
    assert_eq!(
        BackendKind::parse("host-compat").unwrap(),
        BackendKind::HostCompat
    );
    let err = BackendKind::parse("qemu").unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown backend \"qemu\"; expected one of: firecracker, host-compat"
    );
    assert_eq!(
        BackendKind::resolve(Some(BackendKind::HostCompat)).unwrap(),
        BackendKind::HostCompat
    );
}

/// Every error that can quote the guest loses a secret's value from its
/// text, keeps its kind, and says the secret's name instead.
#[test]
fn errors_quoting_a_secret_are_redacted_and_keep_their_kind() {
    let secret = "s3cr3t-token-value";
    let red = redact::Redactor::new([("API_TOKEN", secret.as_bytes())]);
    let t = || format!("saw {secret} here");
    let errors = [
        CoreError::Invalid(t()),
        CoreError::NotFound(t()),
        CoreError::State(t()),
        CoreError::Quota(t()),
        CoreError::Conflict(t()),
        CoreError::Busy(t()),
        CoreError::TooLarge(t()),
        CoreError::Timeout(t()),
        CoreError::Transport(t()),
        CoreError::NetworkUnavailable(t()),
        CoreError::Agent(pyro_protocol::AgentError::new(
            pyro_protocol::ErrorKind::Io,
            t(),
        )),
        CoreError::HostCompat {
            reason: t(),
            log_tail: t(),
        },
        CoreError::io(t(), std::io::Error::other(t())),
        CoreError::GuestUnavailable(Box::new(CoreError::Transport(t()))),
    ];
    let mut kinds = std::collections::HashSet::new();
    for e in errors {
        let kind = e.kind();
        let text = format!("{e:?} {e}");
        assert!(text.contains(secret), "the test's error lacks the secret");
        let r = e.redact(&red);
        assert_eq!(r.kind(), kind);
        let text = format!("{r:?} {r}");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("API_TOKEN"), "{text}");
        kinds.insert(kind);
    }
    assert_eq!(kinds.len(), 14, "{kinds:?}");
    // Host-side errors pass through whole; with no secrets, nothing changes.
    let env = CoreError::Env(pyro_env::EnvError::Agent(t()));
    assert!(env.redact(&red).to_string().contains(secret));
    let none = redact::Redactor::new([]);
    assert!(
        CoreError::Busy(t())
            .redact(&none)
            .to_string()
            .contains(secret)
    );
}

#[test]
fn environment_and_image_errors_have_stable_kinds() {
    use pyro_env::EnvError;
    use pyro_oci::OciError;
    let oci = |e: OciError| CoreError::Env(EnvError::Oci(e)).kind();
    assert_eq!(
        oci(OciError::NotFound {
            reference: "r".into(),
            detail: "d".into()
        }),
        "not_found"
    );
    assert_eq!(
        oci(OciError::TooLarge {
            what: "w".into(),
            size: 2,
            limit: 1
        }),
        "too_large"
    );
    assert_eq!(
        oci(OciError::Platform {
            reference: "r".into(),
            offered: "none".into()
        }),
        "unsupported_platform"
    );
    assert_eq!(
        oci(OciError::Invalid {
            what: "w".into(),
            detail: "d".into()
        }),
        "invalid_image"
    );
    assert_eq!(oci(OciError::io("x", std::io::Error::other("y"))), "io");
    assert_eq!(
        CoreError::Env(EnvError::Agent("a".into())).kind(),
        "environment"
    );
    assert_eq!(
        CoreError::Env(EnvError::KernelConfig("k".into())).kind(),
        "environment"
    );
}

#[test]
fn random_ids_are_hex_and_distinct() {
    let a = random_hex(6);
    assert_eq!(a.len(), 12);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, random_hex(6));
}

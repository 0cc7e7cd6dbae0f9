use super::*;

/// Auth, not-found and bad-content errors end the pull; network
/// trouble, 5xx, 408 and 429 are worth another attempt.
#[test]
fn client_errors_are_sorted_into_final_and_transient() {
    use OciDistributionError as E;
    use oci_client::errors::{OciEnvelope, OciError as Wire, OciErrorCode};
    let r: Reference = "localhost:5000/team/tool:1".parse().unwrap();
    let server = |code: u16| E::ServerError {
        code,
        url: "http://localhost:5000/v2/x".into(),
        message: "m".into(),
    };
    let envelope = |code: OciErrorCode, message: &str| E::RegistryError {
        envelope: OciEnvelope {
            errors: vec![Wire {
                code,
                message: message.into(),
                detail: serde_json::Value::Null,
            }],
        },
        url: "http://localhost:5000/v2/x".into(),
    };
    let auth = |f: Failure| matches!(f, Failure::Final(OciError::Auth { .. }));
    let missing = |f: Failure| matches!(f, Failure::Final(OciError::NotFound { .. }));
    assert!(auth(classify(E::AuthenticationFailure("no".into()), &r)));
    assert!(auth(classify(E::UnauthorizedError { url: "u".into() }, &r)));
    assert!(auth(classify(server(401), &r)));
    assert!(auth(classify(server(403), &r)));
    assert!(auth(classify(envelope(OciErrorCode::Denied, "denied"), &r)));
    assert!(missing(classify(
        E::ImageManifestNotFoundError("x".into()),
        &r
    )));
    assert!(missing(classify(server(404), &r)));
    assert!(missing(classify(
        envelope(OciErrorCode::ManifestUnknown, "manifest unknown"),
        &r
    )));
    assert!(matches!(
        classify(
            E::DigestError(oci_client::errors::DigestError::MissingAlgorithm),
            &r
        ),
        Failure::Final(OciError::Digest { .. })
    ));
    assert!(matches!(
        classify(server(400), &r),
        Failure::Final(OciError::Invalid { .. })
    ));
    for transient in [
        server(500),
        server(503),
        server(408),
        server(429),
        envelope(OciErrorCode::Toomanyrequests, "slow down"),
        E::IoError(std::io::Error::other("reset")),
    ] {
        assert!(
            matches!(classify(transient, &r), Failure::Oci(_)),
            "a transient failure was taken as final"
        );
    }
}

#[test]
fn loopback_registries_are_recognised() {
    for r in [
        "localhost:5000",
        "127.0.0.1:5000",
        "127.1.2.3",
        "[::1]:5000",
    ] {
        assert!(is_loopback(r), "{r}");
    }
    for r in [
        "docker.io",
        "10.0.0.1:5000",
        "localhost.example:1",
        "[::2]:1",
    ] {
        assert!(!is_loopback(r), "{r}");
    }
}

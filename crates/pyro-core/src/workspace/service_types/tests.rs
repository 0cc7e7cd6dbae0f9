use super::*;

/// Readiness checks are refused before a service starts when they cannot
/// work: an empty file name, an HTTP URL with credentials or blanks in it;
/// a plain URL is taken.
#[test]
fn readiness_checks_are_checked_before_a_service_starts() {
    let http = |url: &str| check_readiness(&Readiness::Http { url: url.into() });
    assert!(http("http://127.0.0.1:8080/health").is_ok());
    assert!(http("http://localhost/").is_ok());
    for bad in [
        "http://user:pw@127.0.0.1/",
        "http://127.0.0.1/a b",
        "http://127.0.0.1/\u{7}",
        "http:///path",
    ] {
        let e = http(bad).unwrap_err().to_string();
        assert!(e.contains("takes an http:// URL"), "{bad}: {e}");
    }
    for path in ["", "  ", "a\0b"] {
        let e = check_readiness(&Readiness::File { path: path.into() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("must name a file"), "{path:?}: {e}");
    }
    assert!(
        check_readiness(&Readiness::File {
            path: ".ready".into()
        })
        .is_ok()
    );
}

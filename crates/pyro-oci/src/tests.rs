use super::*;

#[test]
fn digests_are_sha256_only() {
    let d = sha256_digest(b"x");
    assert_eq!(sha256_hex(&d).unwrap().len(), 64);
    assert!(sha256_hex("sha512:abcd").is_err());
    assert!(sha256_hex(&d.to_uppercase()).is_err());
    assert!(sha256_hex("sha256:../../etc").is_err());
}

#[cfg(feature = "registry")]
#[test]
fn references_parse_or_say_how_to_write_them() {
    let r = parse_reference("127.0.0.1:5000/pyro/debian:12").unwrap();
    assert_eq!(r.registry(), "127.0.0.1:5000");
    assert_eq!(r.repository(), "pyro/debian");
    assert_eq!(r.tag(), Some("12"));
    let err = parse_reference("UPPER/Case:x").unwrap_err().to_string();
    assert!(err.contains("REGISTRY/REPOSITORY:TAG"), "{err}");
}

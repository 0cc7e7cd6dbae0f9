use super::*;

#[test]
fn utc_formats_known_instants() {
    assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
    assert_eq!(utc(1_795_511_204.45), "2026-11-24T09:06:44Z");
    assert_eq!(utc(951_782_400.0), "2000-02-29T00:00:00Z");
}

#[test]
fn pairs_need_a_key() {
    assert_eq!(pairs("--label", &["a=b=c".into()]).unwrap()["a"], "b=c");
    assert!(pairs("--label", &["novalue".into()]).is_err());
    assert!(pairs("--env", &["=x".into()]).is_err());
}

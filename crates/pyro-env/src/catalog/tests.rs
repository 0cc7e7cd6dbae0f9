use super::*;

#[test]
fn lookup_lists_valid_names_on_error() {
    assert_eq!(lookup("debian:12").unwrap().slug(), "debian_12-4.0.0");
    let err = lookup("ubuntu:24.04").unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown environment \"ubuntu:24.04\"; expected one of: debian:12, debian:12-base, debian:12-build"
    );
}

use super::*;

#[test]
fn ids_are_strict() {
    assert!(valid_id("0123456789abcdef"));
    assert!(!valid_id("0123456789ABCDEF"));
    assert!(!valid_id("../../etc/passwd"));
    assert!(!valid_id("abc"));
}

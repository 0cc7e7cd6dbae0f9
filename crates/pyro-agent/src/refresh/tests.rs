use super::*;

#[test]
fn wrong_entropy_and_bad_hostnames_are_refused_before_anything_changes() {
    let mut idle_set = false;
    let r = apply(&[0u8; 8], 0, "pyro-x", || idle_set = true);
    assert!(
        matches!(&r, Response::Error(e) if e.message.contains("64 bytes")),
        "{r:?}"
    );
    let r = apply(&[0u8; REFRESH_ENTROPY_BYTES], 0, "a_b", || idle_set = true);
    assert!(
        matches!(&r, Response::Error(e) if e.message.contains("not a valid hostname")),
        "{r:?}"
    );
    assert!(!idle_set);
}

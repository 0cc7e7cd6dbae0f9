use super::*;

#[test]
fn tail_starts_at_a_line_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("log");
    std::fs::write(&p, "first line\nsecond line\nthird\n").unwrap();
    assert_eq!(file_tail(&p, 12), "third");
    assert_eq!(file_tail(&p, 1000), "first line\nsecond line\nthird");
    assert_eq!(file_tail(&dir.path().join("missing"), 10), "");
}

#[test]
fn sha256_of_known_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, "abc").unwrap();
    assert_eq!(
        sha256_file(&p).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

use super::*;

#[test]
fn snapshot_names_follow_the_rule() {
    for ok in ["cp1", "a", "A.b_c-d", &"x".repeat(64)] {
        assert!(valid_snapshot_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        ".hidden",
        "-x",
        "a/b",
        "a b",
        "é",
        &"x".repeat(65),
        "..",
    ] {
        assert!(valid_snapshot_name(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn disk_usage_counts_written_blocks_only() {
    let d = tempfile::tempdir().unwrap();
    let sparse = d.path().join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    std::fs::write(d.path().join("data"), vec![1u8; 1 << 20]).unwrap();
    let used = disk_usage(d.path());
    assert!((1 << 20..4 << 20).contains(&used), "{used}");
}

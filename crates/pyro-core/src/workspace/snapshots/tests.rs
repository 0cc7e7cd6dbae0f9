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

/// Work that would leave the filesystem without its reserve is refused
/// up front, saying how much it needs and has; a directory that cannot be
/// checked is an error too, never taken as room.
#[test]
fn work_without_room_is_refused_before_it_starts() {
    let dir = Path::new("/var/pyro");
    room_in(100 << 20, (100 << 20) + RESERVE, dir, "a snapshot").unwrap();
    let e = room_in(100 << 20, (100 << 20) + RESERVE - 1, dir, "a snapshot").unwrap_err();
    assert!(
        matches!(&e, CoreError::TooLarge(m) if m == "a snapshot needs about 356 MiB and /var/pyro \
            has 355 MiB free (pyro keeps 256 MiB of it free); free some space, or delete \
            snapshots or workspaces"),
        "{e}"
    );
    // A need near the top does not wrap round to a small one.
    assert!(room_in(u64::MAX - 1, u64::MAX - 1, dir, "a fork").is_err());
    let tmp = tempfile::tempdir().unwrap();
    assert!(ensure_room(u64::MAX / 2, tmp.path(), "a snapshot").is_err());
    let e = ensure_room(1, &tmp.path().join("missing"), "a snapshot").unwrap_err();
    assert!(matches!(&e, CoreError::Io { .. }), "{e:?}");
}

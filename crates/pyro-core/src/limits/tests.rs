use super::*;

#[test]
fn checks_name_the_argument_and_the_range() {
    assert!(VCPUS.check(8).is_ok());
    let e = VCPUS.check(9).unwrap_err();
    assert_eq!(e.kind(), "invalid_argument");
    assert_eq!(
        e.message(crate::hint::FrontEnd::Cli),
        "--vcpu-count must be between 1 and 8 (got 9)"
    );
    assert_eq!(
        e.message(crate::hint::FrontEnd::Mcp),
        "the vcpu_count argument must be between 1 and 8 (got 9)"
    );
}

#[test]
fn defaults_lie_in_their_ranges() {
    fn ok<T: PartialOrd + Copy>(b: Bound<T>) {
        assert!(b.min <= b.default && b.default <= b.max, "{}", b.arg);
    }
    for b in [
        TIMEOUT_SECONDS,
        WAIT_SECONDS,
        OUTPUT_BYTES,
        RUN_TTL_SECONDS,
        WORKSPACE_TTL_SECONDS,
        DISK_MIB,
        LOGS_OUTPUT_BYTES,
        DIFF_PATCH_BYTES,
        FILE_READ_BYTES,
        FILE_WRITE_BYTES,
    ] {
        ok(b);
    }
    for b in [LOGS_TAIL, LIST_ENTRIES, DIFF_ENTRIES] {
        ok(b);
    }
    ok(VCPUS);
    ok(FORK_COUNT);
    ok(MEM_MIB);
}

use super::*;

fn denial(i: u16) -> Denial {
    Denial {
        time: 1.5,
        protocol: "tcp".into(),
        destination: Some(Ipv4Addr::new(169, 254, 169, 254)),
        port: Some(i),
        name: None,
        rule: "link-local".into(),
        unlogged: None,
    }
}

#[test]
fn the_log_rotates_and_reads_back_the_newest() {
    let t = tempfile::tempdir().unwrap();
    let mut w = Writer::open(t.path()).unwrap();
    for i in 0..8000 {
        w.append(&denial(i)).unwrap();
    }
    let (recent, total) = read_recent(t.path(), 3);
    assert_eq!(
        recent.iter().map(|d| d.port.unwrap()).collect::<Vec<_>>(),
        [7997, 7998, 7999]
    );
    assert!(
        total < 8000 && total > 1000,
        "older generations go: {total}"
    );
    let size = |n| std::fs::metadata(t.path().join(n)).unwrap().len();
    assert!(size(LOG_FILE) <= ROTATE_BYTES && size(OLD_LOG_FILE) <= ROTATE_BYTES);
    // Garbage (a hostile writer) is skipped, not fatal.
    std::fs::write(t.path().join(OLD_LOG_FILE), b"{not json\n\xff\xfe\n").unwrap();
    let (_, total) = read_recent(t.path(), 10);
    assert!(total > 0);
}

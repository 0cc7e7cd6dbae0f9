use super::*;

/// The daemon's configuration round-trips through its file; a file it
/// cannot parse, or of another layout version, is refused with its path.
#[test]
fn a_config_round_trips_and_a_bad_one_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config {
        version: CONFIG_VERSION,
        netns: "pyro-test".into(),
        policy: Policy::off(),
        vm: None,
        log_dir: dir.path().to_owned(),
        generation: 3,
    };
    c.save(dir.path()).unwrap();
    let back = Config::load(dir.path()).unwrap();
    assert_eq!((back.netns.as_str(), back.generation), ("pyro-test", 3));
    let file = dir.path().join(CONFIG_FILE);
    std::fs::write(&file, b"{ not json").unwrap();
    let e = Config::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("parsing") && e.contains(CONFIG_FILE), "{e}");
    let other = Config { version: 99, ..c };
    other.save(dir.path()).unwrap();
    let e = Config::load(dir.path()).unwrap_err();
    assert!(
        matches!(&e, NetError::Unsupported(m) if m.contains("layout version 99")),
        "{e}"
    );
    let e = Config::load(&dir.path().join("missing")).unwrap_err();
    assert!(e.to_string().contains("reading"), "{e}");
}

use super::*;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// Every seed in the repository goes through its target, as the fuzzer
/// starts with them.
#[test]
fn every_seed_runs_through_its_target() {
    for (name, target) in TARGETS {
        let dir = corpus_root().join(name);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        seeds.sort();
        assert!(
            seeds.len() >= 2,
            "{name}: the corpus has {} seeds",
            seeds.len()
        );
        for seed in seeds {
            let data = std::fs::read(&seed).unwrap();
            target(&data);
        }
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(corpus_root().join(target).join(name)).unwrap()
}

/// The seeds are the valid inputs they claim to be, so the fuzzer
/// starts from inputs that reach deep into each parser.
#[test]
fn seeds_parse_as_what_they_are() {
    let (f, used) = pyro_protocol::decode_frame(&seed("frame", "hello"))
        .unwrap()
        .unwrap();
    assert_eq!(f.message::<Hello>().unwrap().uptime_ms, 12);
    assert_eq!(used, seed("frame", "hello").len());
    assert!(
        pyro_protocol::decode_frame(&seed("frame", "cut-short"))
            .unwrap()
            .is_none()
    );
    let q = pyro_net::dns::parse_query(&seed("dns", "a-query")).unwrap();
    assert_eq!(q.name, "git.test");
    let packets = pyro_net::nflog::packets_in(&seed("nflog", "two-packets"));
    assert_eq!(packets.len(), 2);
    assert_eq!(packets[0].prefix, "pyro:rfc1918");
    let flow = pyro_net::nflog::parse_ipv4(&packets[0].payload).unwrap();
    assert_eq!(flow.destination.to_string(), "10.77.0.5");
    let fs = ext4_view::Ext4::load(Box::new(seed("disk", "small-tree"))).unwrap();
    assert_eq!(fs.read("/data/dir/file.txt").unwrap(), b"hello\n");
    let changed = patch::check(
        std::str::from_utf8(&seed("patch", "modify")).unwrap(),
        |p| {
            Ok((p == Path::new("a.txt")).then(|| Base {
                content: b"one\ntwo\nthree\n".to_vec(),
                mode: 0o644,
                symlink: false,
            }))
        },
    )
    .unwrap();
    assert_eq!(changed[0].status, "modified");
    let t = tempfile::tempdir().unwrap();
    let (entries, _) = pyro_archive::extract(&seed("archive", "tree")[..], t.path()).unwrap();
    assert_eq!(entries, 4);
    assert!(pyro_archive::extract(&seed("archive", "escape")[..], t.path()).is_err());
    let root = tempfile::tempdir().unwrap();
    for (name, whiteouts) in [("tree.tar", 0), ("whiteouts.tar.gz", 2)] {
        let blob = corpus_root().join("layers").join(name);
        let mut done = pyro_oci::layers::Applied::default();
        pyro_oci::layers::apply_layer(root.path(), &blob, name, &Default::default(), &mut done)
            .unwrap();
        assert_eq!(done.whiteouts, whiteouts, "{name}");
    }
    assert!(root.path().join("opq/new").exists() && !root.path().join("dir/gone").exists());
}

/// The targets, the corpora and the fuzz binaries name the same set.
#[test]
fn targets_corpora_and_binaries_agree() {
    let mut names: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
    names.sort_unstable();
    let mut corpora: Vec<String> = std::fs::read_dir(corpus_root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    corpora.sort();
    assert_eq!(corpora, names);
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/Cargo.toml"),
    )
    .unwrap();
    let mut bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \"fuzz_"))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    bins.sort_unstable();
    assert_eq!(bins, names);
}

/// The oracles themselves: what they accept and refuse.
#[test]
fn the_oracles_tell_inside_from_outside() {
    assert!(lexically_inside(Path::new("a/b")));
    assert!(!lexically_inside(Path::new("a/../b")));
    assert!(!lexically_inside(Path::new("/a")));
    assert!(!lexically_inside(Path::new("")));
    assert!(resolves_inside(Path::new("a/../b")));
    assert!(!resolves_inside(Path::new("a/../../b")));
}

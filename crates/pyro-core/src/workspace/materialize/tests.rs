use super::*;

fn manifest(dir: &Path, lines: &[serde_json::Value]) -> PathBuf {
    let p = dir.join("manifest.jsonl");
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, body).unwrap();
    p
}

fn tar_of(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let p = dir.join("files.tar");
    let mut b = tar::Builder::new(File::create(&p).unwrap());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.finish().unwrap();
    p
}

fn sha(d: &[u8]) -> String {
    pyro_env::sha256_bytes(d)
}

#[test]
fn writes_what_the_manifest_lists_and_checks_it() {
    let t = tempfile::tempdir().unwrap();
    let m = manifest(
        t.path(),
        &[
            serde_json::json!({"path": "d", "kind": "directory", "mode": 493, "size": 0, "sha256": null, "link_target": null}),
            serde_json::json!({"path": "d/a", "kind": "file", "mode": 420, "size": 2, "sha256": sha(b"hi"), "link_target": null}),
            serde_json::json!({"path": "out", "kind": "symlink", "mode": 511, "size": 4, "sha256": null, "link_target": "/etc"}),
        ],
    );
    let tar = tar_of(t.path(), &[("d/a", b"hi")]);
    let files = t.path().join("files");
    assert_eq!(write_baseline_files(&m, &tar, &files).unwrap(), None);
    assert_eq!(std::fs::read(files.join("d/a")).unwrap(), b"hi");
    assert_eq!(
        std::fs::read_link(files.join("out")).unwrap(),
        Path::new("/etc")
    );
}

#[test]
fn damaged_missing_or_unlisted_files_and_paths_through_links_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let entry = |p: &str, d: &[u8]| serde_json::json!({"path": p, "kind": "file", "mode": 420, "size": d.len(), "sha256": sha(d), "link_target": null});
    for (i, (lines, tarred, says)) in [
        (vec![entry("a", b"hi")], vec![("a", &b"ho"[..])], "differs"),
        (vec![entry("a", b"hi")], vec![], "missing"),
        (
            vec![entry("a", b"hi")],
            vec![("a", &b"hi"[..]), ("b", &b"x"[..])],
            "not a file of the listing",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let d = t.path().join(format!("case{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let m = manifest(&d, &lines);
        let tar = tar_of(&d, &tarred);
        let got = write_baseline_files(&m, &tar, &d.join("files")).unwrap();
        assert!(
            got.as_deref().is_some_and(|g| g.contains(says)),
            "{i}: {got:?}"
        );
    }
    // A listing that puts a file below one of its own links: the write
    // never goes through the link.
    let d = t.path().join("link");
    std::fs::create_dir_all(&d).unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let link = serde_json::json!({"path": "l", "kind": "symlink", "mode": 511, "size": 4, "sha256": null, "link_target": outside.display().to_string()});
    let m = manifest(&d, &[link, entry("l/escaped", b"x")]);
    let tar = tar_of(&d, &[("l/escaped", b"x")]);
    let e = write_baseline_files(&m, &tar, &d.join("files")).unwrap_err();
    assert!(e.to_string().contains("writing the baseline files"), "{e}");
    assert!(!outside.join("escaped").exists());
    // Nor do the readers go through a link.
    assert!(open_regular_beneath(&d.join("files"), "l/escaped").is_none());
}

use super::*;
use pyro_protocol::EntryKind;
use std::io::Write;

fn spool(lines: &[&str]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        f.write_all(l.as_bytes()).unwrap();
    }
    f
}

fn entry(path: &str) -> String {
    format!(
        "{}\n",
        serde_json::to_string(&ManifestEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            size: 0,
            sha256: None,
            link_target: None,
        })
        .unwrap()
    )
}

fn read(f: &tempfile::NamedTempFile) -> Result<Vec<String>, CoreError> {
    Lines::<ManifestEntry>::open(f.path())
        .unwrap()
        .map(|e| e.map(|e| e.path))
        .collect()
}

#[test]
fn reads_entries_in_tree_order_and_skips_repeats() {
    let f = spool(&[&entry("a"), &entry("a/b"), &entry("a/b"), &entry("a.txt")]);
    assert_eq!(read(&f).unwrap(), ["a", "a/b", "a.txt"]);
}

#[test]
fn refuses_what_a_hostile_agent_could_send() {
    for (lines, why) in [
        (vec![entry("b"), entry("a")], "out of order"),
        (vec![entry("../etc/passwd")], "clean relative"),
        (vec![entry("/etc/passwd")], "clean relative"),
        (vec![entry("a//b")], "clean relative"),
        (vec!["{not json\n".to_owned()], "malformed"),
        (vec![entry("a").trim_end().to_owned()], "mid-line"),
        (
            vec![format!("{}\n", "x".repeat(MAX_LINE_BYTES + 10))],
            "length limit",
        ),
    ] {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let err = read(&spool(&refs)).unwrap_err().to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
}

#[test]
fn listed_paths_must_be_absolute_and_clean() {
    let ok = FileEntry {
        path: "/workspace/a".into(),
        kind: EntryKind::File,
        size: 0,
        mode: 0,
        link_target: None,
    };
    assert!(ok.bad_path().is_none());
    for p in ["workspace/a", "/workspace/../etc", "/"] {
        let e = FileEntry {
            path: p.into(),
            ..ok.clone()
        };
        assert!(e.bad_path().is_some(), "{p}");
    }
}

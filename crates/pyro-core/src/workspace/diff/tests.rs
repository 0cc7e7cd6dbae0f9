use super::*;

fn file(path: &str, sha: &str, mode: u32) -> ManifestEntry {
    ManifestEntry {
        path: path.into(),
        kind: EntryKind::File,
        mode,
        size: 1,
        sha256: Some(sha.into()),
        link_target: None,
    }
}

fn dir(path: &str) -> ManifestEntry {
    ManifestEntry {
        path: path.into(),
        kind: EntryKind::Directory,
        mode: 0o755,
        size: 0,
        sha256: None,
        link_target: None,
    }
}

#[test]
fn classifies_changes_and_ignores_directories() {
    let base = vec![
        dir("d"),
        file("d/same", "1", 0o644),
        file("edit", "1", 0o644),
        file("gone", "1", 0o644),
        file("x", "1", 0o644),
    ];
    let now = vec![
        dir("d"),
        dir("newdir"),
        file("d/same", "1", 0o644),
        file("edit", "2", 0o644),
        file("new", "3", 0o644),
        file("x", "1", 0o755),
    ];
    let got: Vec<(String, Status)> = changes(&base, &now)
        .into_iter()
        .map(|c| (c.path, c.status))
        .collect();
    assert_eq!(
        got,
        [
            ("edit".to_owned(), Status::Modified),
            ("gone".to_owned(), Status::Deleted),
            ("new".to_owned(), Status::Added),
            ("x".to_owned(), Status::ModeChanged),
        ]
    );
}

#[test]
fn renders_git_style_patches() {
    let c = Change {
        path: "message.txt".into(),
        status: Status::Modified,
        old: Some(file("message.txt", "1", 0o644)),
        new: Some(file("message.txt", "2", 0o644)),
    };
    let (text, binary) = render(&c, Some(b"broken\n"), Some(b"fixed\n"));
    assert!(!binary);
    assert_eq!(
        text,
        "diff --git a/message.txt b/message.txt\n--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n"
    );
    let add = Change {
        path: "run.sh".into(),
        status: Status::Added,
        old: None,
        new: Some(file("run.sh", "3", 0o755)),
    };
    let (text, _) = render(&add, None, Some(b"echo hi\n"));
    assert!(
        text.starts_with(
            "diff --git a/run.sh b/run.sh\nnew file mode 100755\n--- /dev/null\n+++ b/run.sh\n"
        ),
        "{text}"
    );
    let bin = Change {
        path: "img".into(),
        status: Status::Added,
        old: None,
        new: Some(file("img", "4", 0o644)),
    };
    let (text, binary) = render(&bin, None, Some(&[0, 1, 2]));
    assert!(
        binary && text.ends_with("Binary files /dev/null and b/img differ\n"),
        "{text}"
    );
}

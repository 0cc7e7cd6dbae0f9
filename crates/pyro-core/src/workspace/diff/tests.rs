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

/// A path whose type changed is a deletion plus an addition, as git shows
/// it; a directory's side renders nothing, and a mode change has no body.
#[test]
fn type_and_mode_changes_render_as_git_does() {
    let link = ManifestEntry {
        path: "cfg".into(),
        kind: EntryKind::Symlink,
        mode: 0o777,
        size: 6,
        sha256: None,
        link_target: Some("target".into()),
    };
    let base = vec![file("cfg", "1", 0o644), dir("was-dir")];
    let now = vec![link.clone(), file("was-dir", "2", 0o644)];
    let found = changes(&base, &now);
    let kinds: Vec<_> = found.iter().map(|c| (c.path.as_str(), c.status)).collect();
    assert_eq!(
        kinds,
        [
            ("cfg", Status::TypeChanged),
            ("was-dir", Status::TypeChanged)
        ]
    );
    let (text, binary) = render(&found[0], Some(b"a=1\n"), Some(b"target"));
    assert!(!binary);
    assert!(
        text.starts_with(
            "diff --git a/cfg b/cfg\ndeleted file mode 100644\n--- a/cfg\n+++ /dev/null\n"
        ) && text.contains("-a=1\n")
            && text.contains(
                "diff --git a/cfg b/cfg\nnew file mode 120000\n--- /dev/null\n+++ b/cfg\n"
            )
            && text.contains("+target\n"),
        "{text}"
    );
    // The directory that became a file: only the file's addition.
    let (text, binary) = render(&found[1], None, Some(&[0xff, 0]));
    assert!(binary);
    assert_eq!(
        text,
        "diff --git a/was-dir b/was-dir\nnew file mode 100644\nBinary files /dev/null and b/was-dir differ\n"
    );
    let chmod = Change {
        path: "x".into(),
        status: Status::ModeChanged,
        old: Some(file("x", "1", 0o644)),
        new: Some(file("x", "1", 0o755)),
    };
    let (text, _) = render(&chmod, None, None);
    assert_eq!(
        text,
        "diff --git a/x b/x\nold mode 100644\nnew mode 100755\n"
    );
}

use super::*;

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let f = d.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, c).unwrap();
    }
    d
}

/// Links, copies and the patches a workspace refuses, each with nothing
/// written.
#[test]
fn links_copies_and_refusals() {
    let d = tree(&[("a.txt", "one\n"), ("target.txt", "t\n"), ("dir/x", "x\n")]);
    let link = "diff --git a/link b/link\nnew file mode 120000\nindex 0000000..1111111\n\
                    --- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+target.txt\n\\ No newline at end of file\n";
    let out = apply(d.path(), link).unwrap();
    assert_eq!(out[0].status, "added");
    assert_eq!(
        std::fs::read_link(d.path().join("link")).unwrap(),
        Path::new("target.txt")
    );
    // Changing the link: its base is the link's target, not the file.
    let relink = "diff --git a/link b/link\nindex 1111111..2222222 120000\n--- a/link\n+++ b/link\n\
                      @@ -1 +1 @@\n-target.txt\n\\ No newline at end of file\n+a.txt\n\\ No newline at end of file\n";
    apply(d.path(), relink).unwrap();
    assert_eq!(
        std::fs::read_link(d.path().join("link")).unwrap(),
        Path::new("a.txt")
    );
    let copy =
        "diff --git a/a.txt b/c.txt\nsimilarity index 100%\ncopy from a.txt\ncopy to c.txt\n";
    let out = apply(d.path(), copy).unwrap();
    assert_eq!(out[0].status, "copied");
    assert_eq!(
        std::fs::read_to_string(d.path().join("c.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("a.txt")).unwrap(),
        "one\n"
    );

    let refused = |patch: &str, says: &str| {
        let before = listing(d.path());
        let e = apply(d.path(), patch).unwrap_err();
        assert!(e.message.contains(says), "{}", e.message);
        assert_eq!(
            listing(d.path()),
            before,
            "a refused patch changed the tree"
        );
    };
    refused(
        "diff --git a/out b/out\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n\
             +++ b/out\n@@ -0,0 +1 @@\n+../../etc/passwd\n\\ No newline at end of file\n",
        "outside the workspace",
    );
    refused(
        "diff --git a/sub b/sub\nnew file mode 160000\nindex 0000000..1234567\n--- /dev/null\n\
             +++ b/sub\n@@ -0,0 +1 @@\n+Subproject commit 1234567890123456789012345678901234567890\n",
        "submodule",
    );
    refused(
        "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+two\n\
             --- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+three\n",
        "more than once",
    );
    refused(
        "diff --git a/dir b/dir\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n\
             +++ b/dir\n@@ -0,0 +1 @@\n+x\n",
        "not a regular file",
    );
    let e = apply(d.path(), "just some words\n").unwrap_err();
    assert!(e.message.contains("does not parse"), "{}", e.message);
}

fn listing(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walk(root) {
        let rel = e.strip_prefix(root).unwrap().display().to_string();
        let m = std::fs::symlink_metadata(&e).unwrap();
        let body = if m.file_type().is_symlink() {
            std::fs::read_link(&e)
                .unwrap()
                .as_os_str()
                .as_encoded_bytes()
                .to_vec()
        } else if m.is_file() {
            std::fs::read(&e).unwrap()
        } else {
            Vec::new()
        };
        out.push((rel, body));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn plain_unified_diff_modifies_one_file() {
    let d = tree(&[("message.txt", "broken\n")]);
    let out = apply(
        d.path(),
        "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n",
    )
    .unwrap();
    assert_eq!(out[0].status, "modified");
    assert_eq!(
        std::fs::read_to_string(d.path().join("message.txt")).unwrap(),
        "fixed\n"
    );
}

#[test]
fn git_diff_with_add_delete_rename_and_mode() {
    let d = tree(&[
        ("old.txt", "one\ntwo\n"),
        ("gone.txt", "bye\n"),
        ("run.sh", "echo hi\n"),
    ]);
    let patch = "\
diff --git a/old.txt b/new.txt
similarity index 80%
rename from old.txt
rename to new.txt
index 1111111..2222222 100644
--- a/old.txt
+++ b/new.txt
@@ -1,2 +1,2 @@
 one
-two
+TWO
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 3333333..0000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/dir/added.txt b/dir/added.txt
new file mode 100644
index 0000000..4444444
--- /dev/null
+++ b/dir/added.txt
@@ -0,0 +1 @@
+hello
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
";
    let out = apply(d.path(), patch).unwrap();
    let statuses: Vec<_> = out
        .iter()
        .map(|f| (f.path.as_str(), f.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("new.txt", "renamed"),
            ("gone.txt", "deleted"),
            ("dir/added.txt", "added"),
            ("run.sh", "modified")
        ]
    );
    assert!(!d.path().join("old.txt").exists() && !d.path().join("gone.txt").exists());
    assert_eq!(
        std::fs::read_to_string(d.path().join("new.txt")).unwrap(),
        "one\nTWO\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("dir/added.txt")).unwrap(),
        "hello\n"
    );
    let m = std::fs::metadata(d.path().join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(m & 0o777, 0o755);
}

#[test]
fn one_bad_file_means_nothing_changes() {
    let d = tree(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    let patch = "\
--- a/a.txt
+++ b/a.txt
@@ -1 +1 @@
-a
+A
--- a/b.txt
+++ b/b.txt
@@ -1 +1 @@
-not what is there
+B
";
    let err = apply(d.path(), patch).unwrap_err();
    assert_eq!(err.kind, ErrorKind::PatchRejected);
    assert!(err.message.contains("does not apply to b.txt"), "{err:?}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("a.txt")).unwrap(),
        "a\n"
    );
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        2,
        "temp files left"
    );
}

#[test]
fn a_file_and_a_file_below_it_are_refused_before_anything_moves() {
    let d = tree(&[("keep.txt", "k\n")]);
    let patch = "\
--- a/keep.txt
+++ b/keep.txt
@@ -1 +1 @@
-k
+K
diff --git a/x b/x
new file mode 100644
--- /dev/null
+++ b/x
@@ -0,0 +1 @@
+file
diff --git a/x/y b/x/y
new file mode 100644
--- /dev/null
+++ b/x/y
@@ -0,0 +1 @@
+below
";
    let err = apply(d.path(), patch).unwrap_err();
    assert_eq!(err.kind, ErrorKind::PatchRejected, "{err:?}");
    assert!(err.message.contains("file and a directory"), "{err:?}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("keep.txt")).unwrap(),
        "k\n"
    );
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["keep.txt"]);
}

#[test]
fn unsafe_and_impossible_patches_are_refused() {
    let d = tree(&[("x", "x\n")]);
    let esc = "--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n";
    assert_eq!(
        apply(d.path(), esc).unwrap_err().kind,
        ErrorKind::InvalidPath
    );
    let missing = "--- a/nope\n+++ b/nope\n@@ -1 +1 @@\n-a\n+b\n";
    assert!(
        apply(d.path(), missing)
            .unwrap_err()
            .message
            .contains("does not exist")
    );
    let exists =
        "diff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+y\n";
    assert!(
        apply(d.path(), exists)
            .unwrap_err()
            .message
            .contains("already exists")
    );
    let marker = "diff --git a/img.png b/img.png\nindex 1..2 100644\nBinary files a/img.png and b/img.png differ\n";
    std::fs::write(d.path().join("img.png"), [0u8, 1, 2]).unwrap();
    assert!(
        apply(d.path(), marker)
            .unwrap_err()
            .message
            .contains("git diff --binary")
    );
    assert!(apply(d.path(), "not a patch at all\n").is_err());
}

/// A patch with headers and no change, one that would put a file where a
/// directory is, and one whose plain header names two files: refused, and
/// the tree is as it was.
#[test]
fn empty_patches_and_files_over_directories_are_refused() {
    let d = tree(&[("a.txt", "one\n"), ("dir/x", "x\n")]);
    // A file named with no change to it: nothing to do, and not reported
    // as modified.
    for nothing in [
        "diff --git a/a.txt b/a.txt\n",
        "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+one\n",
    ] {
        let e = apply(d.path(), nothing).unwrap_err();
        assert!(e.message.contains("no file changes"), "{}", e.message);
    }
    let before = listing(d.path());
    let e = apply(
        d.path(),
        "diff --git a/a.txt b/dir\nsimilarity index 100%\nrename from a.txt\nrename to dir\n",
    )
    .unwrap_err();
    assert!(e.message.contains("dir"), "{}", e.message);
    assert_eq!(listing(d.path()), before);
    // Two names for one file, with or without a change, and with mixed
    // prefixes: refused, nothing written.
    for two_names in [
        "--- a/a.txt\n+++ b/dir\n@@ -1 +1 @@\n-one\n+two\n",
        "--- a/a.txt\n+++ b/b.txt\n@@ -1 +1 @@\n-one\n+one\n",
        "--- a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+two\n",
    ] {
        let e = apply(d.path(), two_names).unwrap_err();
        assert!(
            e.message.contains("--- and +++ lines name different files"),
            "{}",
            e.message
        );
        assert_eq!(listing(d.path()), before);
    }
    assert_eq!(std::fs::read(d.path().join("a.txt")).unwrap(), b"one\n");
}

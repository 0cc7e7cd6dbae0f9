use super::*;

#[test]
fn base64_matches_the_standard() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(&[0xff, 0xfe]), "//4=");
}

#[test]
fn binary_content_goes_base64() {
    let read = |data: &[u8]| {
        let v = FileRead {
            workspace_id: "w".into(),
            path: "/workspace/f".into(),
            mode: 0o644,
            data: data.to_vec(),
            redactions: 0,
        }
        .into_view();
        (v.content, v.encoding, v.size_bytes, v.mode)
    };
    assert_eq!(read(b"hi"), ("hi".into(), "utf-8".into(), 2, "0644".into()));
    assert_eq!(
        read(&[0xff, 0, 1]),
        ("/wAB".into(), "base64".into(), 3, "0644".into())
    );
}

#[test]
fn guest_paths_stay_inside_the_workspace() {
    assert_eq!(guest_path("src/main.rs").unwrap(), "/workspace/src/main.rs");
    assert_eq!(guest_path("/workspace/a/").unwrap(), "/workspace/a");
    assert_eq!(guest_path("/workspace").unwrap(), "/workspace");
    assert!(
        guest_path("../etc/passwd")
            .unwrap_err()
            .to_string()
            .contains("`..`")
    );
    assert!(
        guest_path("/etc/passwd")
            .unwrap_err()
            .to_string()
            .contains("outside /workspace")
    );
    assert!(guest_path("/workspace2/x").is_err());
}

#[test]
fn names_and_labels_name_the_rule() {
    assert_eq!(valid_name("  demo  ").unwrap(), "demo");
    assert!(valid_name("").is_err());
    assert!(valid_name(&"x".repeat(65)).is_err());
    assert!(valid_name("bad\nname").is_err());
    assert_eq!(
        valid_label("issue", "123").unwrap(),
        ("issue".into(), "123".into())
    );
    assert!(
        valid_label("-bad", "x")
            .unwrap_err()
            .to_string()
            .contains("invalid label key")
    );
    assert!(
        valid_label("k", "")
            .unwrap_err()
            .to_string()
            .contains("1 to 120")
    );
}

#[test]
fn tree_swaps_survive_interruption() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("upper");
    std::fs::create_dir_all(target.join("a")).unwrap();
    let new = d.path().join("upper.new");
    std::fs::create_dir_all(new.join("b")).unwrap();
    swap_dir(&new, &target).unwrap();
    assert!(target.join("b").exists() && !target.join("a").exists());
    // Interrupted between the two renames: only `.new` is there.
    std::fs::rename(&target, d.path().join("upper.new")).unwrap();
    recover_swap(&target);
    assert!(target.join("b").exists());
}

/// An export may take half of what is free beyond the reserve, at most
/// its cap; with nothing to take it is refused; a directory that cannot be
/// checked is an error that names it.
#[test]
fn an_export_budget_is_bounded_by_free_space_and_the_cap() {
    use super::export::{EXPORT_MAX_BYTES, EXPORT_RESERVE_BYTES, budget_for};
    let dir = Path::new("/out");
    assert_eq!(budget_for(EXPORT_RESERVE_BYTES + 10, dir).unwrap(), 5);
    assert_eq!(budget_for(u64::MAX, dir).unwrap(), EXPORT_MAX_BYTES);
    for none in [0, EXPORT_RESERVE_BYTES, EXPORT_RESERVE_BYTES + 1] {
        let e = budget_for(none, dir).unwrap_err();
        assert!(
            matches!(&e, CoreError::TooLarge(m) if m.starts_with(&format!("/out has {none} bytes free"))),
            "{e}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    assert!(super::export::export_budget(tmp.path()).is_ok_and(|b| b <= EXPORT_MAX_BYTES));
    let missing = tmp.path().join("missing");
    let e = super::export::export_budget(&missing).unwrap_err();
    assert!(
        matches!(&e, CoreError::Io { context, .. } if context.contains("missing")),
        "{e:?}"
    );
}

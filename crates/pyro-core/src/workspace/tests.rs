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
/// its cap; a directory that cannot be checked is an error that names it.
#[test]
fn an_export_budget_is_bounded_by_free_space_and_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let st = nix::sys::statvfs::statvfs(dir.path()).unwrap();
    let free = st.blocks_available() * st.fragment_size();
    let budget = super::export::export_budget(dir.path()).unwrap();
    assert!(budget <= super::export::EXPORT_MAX_BYTES);
    assert!(budget <= free.saturating_sub(super::export::EXPORT_RESERVE_BYTES) / 2);
    let missing = dir.path().join("missing");
    let e = super::export::export_budget(&missing).unwrap_err();
    assert!(
        matches!(&e, CoreError::Io { context, .. } if context.contains("missing")),
        "{e:?}"
    );
}

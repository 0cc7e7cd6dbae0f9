use super::*;

#[test]
fn profiles() {
    assert_eq!(Profile::WorkspaceCore.as_str(), "workspace-core");
    assert!(!Profile::VmRun.instructions().contains("workspace_"));
    assert_eq!(Profile::WorkspaceCore.tools().len(), 18);
    assert!(Profile::WorkspaceFull.tools().len() <= 41);
    assert_eq!(Profile::VmRun.tools(), ["vm_run"]);
    for t in Profile::WorkspaceCore.tools() {
        assert!(Profile::WorkspaceFull.tools().contains(&t));
    }
}

#[test]
fn roots_and_project() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().to_path_buf();
    let paths = Paths::with_cache_dir(tmp.join("state"), tmp.join("cache"));
    let o = Options::new(
        Profile::WorkspaceCore,
        BackendKind::HostCompat,
        paths.clone(),
        &tmp,
        &[],
        None,
    )
    .unwrap();
    assert_eq!(o.roots, [tmp.canonicalize().unwrap()]);
    let err = Options::new(
        Profile::WorkspaceCore,
        BackendKind::HostCompat,
        paths,
        &tmp,
        &["nope".into()],
        None,
    )
    .unwrap_err();
    assert!(err.starts_with("--allow-root "), "{err}");
}

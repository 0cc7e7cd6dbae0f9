use super::*;

fn paths(tmp: &Path) -> Paths {
    Paths::new(tmp.join("state"), pyro_env::Cache::new(tmp.join("cache")))
}

#[test]
fn directories_and_archives_pack_and_bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let p = paths(tmp.path());
    let src = tmp.path().join("repo");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a.txt"), "hello").unwrap();
    let prep = prepare(&p, &src, SeedMode::All).unwrap();
    assert_eq!((prep.mode, prep.entries, prep.bytes), ("directory", 2, 5));

    let err = prepare(&p, &tmp.path().join("missing"), SeedMode::All)
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("missing does not exist"), "{err}");
    std::fs::write(tmp.path().join("notes.zip"), "x").unwrap();
    let err = prepare(&p, &tmp.path().join("notes.zip"), SeedMode::All)
        .unwrap_err()
        .to_string();
    assert!(err.contains("neither a directory nor a .tar"), "{err}");
    std::fs::write(tmp.path().join("broken.tar"), "not a tar").unwrap();
    assert!(prepare(&p, &tmp.path().join("broken.tar"), SeedMode::All).is_err());
    let err = prepare(&p, &src, SeedMode::GitTracked)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a Git checkout"), "{err}");
}

#[test]
fn git_tracked_takes_only_tracked_files() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("src/main.rs"), "fn main() {}").unwrap();
    std::fs::write(repo.join("scratch.log"), "untracked").unwrap();
    git(&["add", "src/main.rs"]);
    let tracked = git_tracked(&repo).unwrap();
    assert_eq!(tracked, [PathBuf::from("src/main.rs")].into());
    assert_eq!(
        git_tracked(&repo.join("src")).unwrap(),
        [PathBuf::from("main.rs")].into(),
        "names are relative to the seed directory"
    );
    let prep = prepare(&paths(tmp.path()), &repo, SeedMode::GitTracked).unwrap();
    assert_eq!(prep.entries, 2, "src and src/main.rs");
}

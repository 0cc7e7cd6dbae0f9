use super::*;
use pyro_archive::{relative_member, symlink_stays_inside};

#[test]
fn concurrent_temp_files_never_share_a_name() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let (p, mut f) = new_temp(&dir, "pyro-write").unwrap();
                        std::io::Write::write_all(&mut f, format!("{t}-{i}").as_bytes()).unwrap();
                        (p, format!("{t}-{i}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<_> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len(), 400);
    for (p, body) in &all {
        assert_eq!(
            &std::fs::read_to_string(p).unwrap(),
            body,
            "{p:?} clobbered"
        );
    }
}

#[test]
fn workspace_paths() {
    assert_eq!(
        workspace_path("/workspace/a/./b").unwrap(),
        Path::new("/workspace/a/b")
    );
    assert_eq!(
        workspace_path("/workspace").unwrap(),
        Path::new("/workspace")
    );
    for bad in [
        "relative",
        "/etc/passwd",
        "/workspace/../etc",
        "/workspacex/a",
    ] {
        let e = workspace_path(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidPath, "{bad}");
    }
}

#[test]
fn members_and_symlinks_follow_the_archive_rules() {
    assert_eq!(relative_member("./a/b").unwrap(), Path::new("a/b"));
    assert!(relative_member("../x").is_err());
    assert!(relative_member("/abs").is_err());
    assert!(relative_member(".").is_err());
    assert!(symlink_stays_inside(
        Path::new("node_modules/.bin/tsc"),
        Path::new("../typescript/bin/tsc")
    ));
    assert!(symlink_stays_inside(Path::new("a"), Path::new("b/c")));
    assert!(!symlink_stays_inside(
        Path::new("a"),
        Path::new("../outside")
    ));
    assert!(!symlink_stays_inside(
        Path::new("x/y"),
        Path::new("../../z")
    ));
    assert!(!symlink_stays_inside(
        Path::new("a"),
        Path::new("/etc/passwd")
    ));
}

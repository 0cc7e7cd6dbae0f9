use super::*;

#[test]
fn users_resolve_against_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path();
    std::fs::create_dir(tree.join("etc")).unwrap();
    std::fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
    assert_eq!(resolve_user(tree, "app"), Ok((1000, 1001)));
    assert_eq!(resolve_user(tree, "app:staff"), Ok((1000, 50)));
    assert_eq!(resolve_user(tree, "1000"), Ok((1000, 1001)));
    assert_eq!(resolve_user(tree, "4242:7"), Ok((4242, 7)));
    assert!(resolve_user(tree, "nobody").is_err());
    assert!(resolve_user(tree, "app:nogroup").is_err());
}

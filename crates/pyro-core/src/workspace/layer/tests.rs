use super::*;

/// The copy's hook ties the copy's life to pyro's, and refuses to start a
/// copy for a pyro that is gone.
#[test]
fn a_copy_dies_with_pyro_and_never_starts_without_it() {
    let tied = crate::tests::in_forked_child(|| {
        let mut sig: libc::c_int = 0;
        // SAFETY: reads this process's own parent-death signal.
        let read = |sig: &mut libc::c_int| unsafe {
            libc::prctl(libc::PR_GET_PDEATHSIG, sig as *mut libc::c_int, 0, 0, 0)
        };
        let parent = nix::unistd::getppid().as_raw() as u32;
        dies_with(parent).is_ok() && read(&mut sig) == 0 && sig == libc::SIGKILL
    });
    assert!(tied);
    let refused = crate::tests::in_forked_child(|| {
        dies_with(u32::MAX).is_err_and(|e| e.raw_os_error() == Some(libc::ESRCH))
    });
    assert!(refused);
    // And the copy itself: modes and links kept.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink("f", src.join("l")).unwrap();
    let dst = dir.path().join("dst");
    copy_tree(&src, &dst).unwrap();
    assert_eq!(std::fs::read_link(dst.join("l")).unwrap(), Path::new("f"));
    let e = copy_tree(&dir.path().join("missing"), &dir.path().join("x")).unwrap_err();
    assert!(e.to_string().contains("copying"), "{e}");
}

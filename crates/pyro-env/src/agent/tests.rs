use super::*;

#[test]
fn dynamic_binaries_are_not_static() {
    assert!(!is_static_elf(Path::new("/bin/sh")).unwrap());
    // Debian ships ldconfig statically linked.
    assert!(is_static_elf(Path::new("/sbin/ldconfig")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("not-elf");
    std::fs::write(&p, "#!/bin/sh\n").unwrap();
    assert!(is_static_elf(&p).is_err());
}

#[test]
fn the_first_static_candidate_is_taken_and_refusals_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-elf");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let missing = dir.path().join("missing");
    let err = locate_among(&[missing.clone(), "/bin/sh".into(), script.clone()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "looked at: {}, /bin/sh, {}",
            missing.display(),
            script.display()
        )) && err.contains("/bin/sh is dynamically linked")
            && err.contains(&format!("{}: ", script.display()))
            && err.contains("point PYRO_AGENT_BIN at it"),
        "{err}"
    );
    let found = locate_among(&[missing, "/sbin/ldconfig".into()]).unwrap();
    assert_eq!(found.path, PathBuf::from("/sbin/ldconfig"));
    assert_eq!(
        found.sha256,
        sha256_file(Path::new("/sbin/ldconfig")).unwrap()
    );
}

/// Without `PYRO_AGENT_BIN` (or with it empty) the agent is looked for
/// beside the running program, then in a source checkout's static build.
/// Run again as a child whose environment has it empty (this crate has no
/// unsafe code to change its own).
#[test]
fn without_the_variable_the_agent_is_looked_for_beside_the_program() {
    const NAME: &str =
        "agent::tests::without_the_variable_the_agent_is_looked_for_beside_the_program";
    if std::env::var_os(AGENT_ENV).is_some_and(|v| !v.is_empty()) {
        crate::tests::rerun_with_env(NAME, &[(AGENT_ENV, "".as_ref())]);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    assert_eq!(
        candidates(),
        [
            dir.join("pyro-agent"),
            dir.parent()
                .unwrap()
                .join("x86_64-unknown-linux-gnu/release/pyro-agent"),
        ]
    );
}

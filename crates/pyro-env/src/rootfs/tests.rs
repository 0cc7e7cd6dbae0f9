use super::*;

#[test]
fn customizing_a_hostile_tree_writes_inside_it_only() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, outside) = (dir.path().join("tree"), dir.path().join("outside"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::create_dir_all(outside.join("sbin")).unwrap();
    // An image whose /etc and /usr point at the host.
    std::os::unix::fs::symlink(&outside, tree.join("etc")).unwrap();
    // (a link for /tmp would loop here: the test's own paths are in /tmp)
    std::fs::write(tree.join("tmp"), b"a file where /tmp goes").unwrap();
    std::os::unix::fs::symlink(&outside, tree.join("usr")).unwrap();
    let agent_path = dir.path().join("agent");
    std::fs::write(&agent_path, b"agent").unwrap();
    let agent = AgentBinary {
        path: agent_path,
        sha256: "x".into(),
    };
    let image = ImageDefaults {
        env: vec!["A=1".into()],
        ..Default::default()
    };
    let bake = Bake {
        name: "img",
        version: "1",
        image: Some(&image),
    };
    customize_tree(&tree, &bake, &agent).unwrap();
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "customizing wrote outside the tree"
    );
    assert_eq!(std::fs::read_dir(outside.join("sbin")).unwrap().count(), 0);
    // The absolute links resolve inside the tree.
    let inner = tree.join(outside.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(inner.join("sbin/pyro-agent")).unwrap(),
        b"agent"
    );
    let about = std::fs::read_to_string(inner.join("pyro-environment")).unwrap();
    assert!(about.contains("\"A=1\""), "{about}");
    assert!(tree.join("tmp").symlink_metadata().unwrap().is_dir());
}

#[test]
fn customize_and_pack_a_small_tree() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/sbin")).unwrap();
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hosts"), "old").unwrap();
    let agent_path = dir.path().join("agent");
    std::fs::write(&agent_path, b"\x7fELF fake agent").unwrap();
    let agent = AgentBinary {
        path: agent_path,
        sha256: "x".into(),
    };
    let bake = Bake {
        name: "debian:12-base",
        version: "4.0.0",
        image: None,
    };
    customize_tree(&tree, &bake, &agent).unwrap();
    let baked = tree.join(GUEST_PATH);
    assert_eq!(std::fs::read(&baked).unwrap(), b"\x7fELF fake agent");
    assert_eq!(
        std::fs::metadata(&baked).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(tree.join("workspace").is_dir());
    assert!(
        std::fs::read_to_string(tree.join("etc/hosts"))
            .unwrap()
            .contains("localhost")
    );

    let image = dir.path().join("rootfs.ext4");
    let size = make_image(&tree, &image, &dir.path().join("log")).unwrap();
    assert!(size >= 64 << 20);
    let out = Command::new("debugfs")
        .arg("-R")
        .arg("cat /etc/pyro-environment")
        .arg(&image)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("debian:12-base"));
}

/// Records the progress a build reports.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<String>>);

impl Progress for Seen {
    fn step(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_owned());
    }
    fn tick(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_owned());
    }
}

#[test]
fn the_tree_comes_from_mmdebstrap_with_the_packages_and_excludes() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in: records its arguments, makes the tree, says a line.
    let fake = dir.path().join("mmdebstrap");
    std::fs::write(
        &fake,
        "#!/bin/sh\nfor a; do last=$a; done\nmkdir -p \"$last/etc\"\n\
             printf '%s\\n' \"$@\" > \"$last/etc/args\"\necho 'I: installing git'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = crate::catalog::lookup("debian:12").unwrap();
    let tree = dir.path().join("tree");
    let log = dir.path().join("build.log");
    let seen = Seen::default();
    build_tree_with(fake.to_str().unwrap(), spec, &tree, &log, &seen).unwrap();
    let args = std::fs::read_to_string(tree.join("etc/args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args[0], "--variant=minbase");
    assert!(
        args[1].starts_with("--include=") && args[1].contains("git"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--dpkgopt=path-exclude=/usr/share/man/*"),
        "{args:?}"
    );
    assert_eq!(args[args.len() - 2], spec.suite);
    let said = seen.0.lock().unwrap().clone();
    assert!(
        said[0].contains("installing Debian bookworm packages"),
        "{said:?}"
    );
    assert_eq!(said[1], "debian:12: I: installing git");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("I: installing git")
    );

    // A failure names the step and keeps the log.
    std::fs::write(&fake, "#!/bin/sh\necho 'E: no such package' >&2\nexit 1\n").unwrap();
    let err = build_tree_with(
        fake.to_str().unwrap(),
        spec,
        &dir.path().join("t2"),
        &log,
        &seen,
    )
    .unwrap_err();
    assert!(
        matches!(&err, EnvError::Build { step, tail, .. }
                if step == "mmdebstrap" && tail.contains("E: no such package")),
        "{err}"
    );
}

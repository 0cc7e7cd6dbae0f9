//! A container image built in the test (three layers: zstd, gzip and
//! plain tar; a file added in one layer and deleted in a later one; an
//! opaque directory), pushed to a local registry behind a multi-arch
//! index, imported, and booted: `run` sees the final filesystem with the
//! image's Env, WorkingDir and User, and a workspace on it runs the
//! repro-fix loop.

mod common;

use common::images::{Image, Layer, OwnCache, busybox_layer, gzip, zstd};
use common::{Home, json, ok, require_debian12, stderr, stdout};
use pyro_oci::testing::TestRegistry;

#[test]
fn real_vm_imported_image_runs_and_hosts_a_workspace() {
    let shared = require_debian12();
    let tr = TestRegistry::start(None)
        .expect("docker-registry is not installed; run scripts/setup-host.sh");
    let home = Home::new();
    let c = OwnCache::new(&shared);

    let base = busybox_layer()
        .dir("data")
        .file("data/keep", b"keep\n", 0o644)
        .file("data/gone", b"gone\n", 0o644)
        .dir("opq")
        .file("opq/old", b"old\n", 0o644)
        .tar();
    let middle = Layer::new()
        .file("data/.wh.gone", b"", 0o644)
        .file("data/added", b"added\n", 0o644)
        .dir("opq")
        .file("opq/.wh..wh..opq", b"", 0o644)
        .file("opq/new", b"new\n", 0o644)
        .tar();
    let top = Layer::new().file("data/.wh.added", b"", 0o644).tar();
    let image = Image {
        layers: vec![
            (zstd(&base), "application/vnd.oci.image.layer.v1.tar+zstd"),
            (gzip(&middle), "application/vnd.oci.image.layer.v1.tar+gzip"),
            (top.clone(), "application/vnd.oci.image.layer.v1.tar"),
        ],
        config: serde_json::json!({"os": "linux", "architecture": "amd64", "config": {
            "Env": ["FOO=from-image", "PATH=/custom/bin:/bin"], "WorkingDir": "/app", "User": "app"}}),
    };
    let reference = format!("{}/test/busybox:layers", tr.addr);
    let digest = image.push(&reference, &[base, middle, top]);

    let imported = json(ok(&c
        .cmd(&home)
        .args([
            "env",
            "import",
            &reference,
            "--name",
            "ocitest",
            "--no-template",
            "--json",
        ])
        .output()
        .unwrap()));
    // The index resolved to the linux/amd64 manifest.
    assert_eq!(
        imported["digest"].as_str(),
        Some(digest.as_str()),
        "{imported}"
    );
    assert_eq!(
        (imported["layers"].as_u64(), imported["whiteouts"].as_u64()),
        (Some(3), Some(3)),
        "{imported}"
    );
    assert_eq!(
        (
            imported["image"]["uid"].as_u64(),
            imported["image"]["gid"].as_u64()
        ),
        (Some(1000), Some(1000))
    );

    // `run`: the final filesystem, as the image's user, in its WorkingDir,
    // with its Env.
    let o = c
        .cmd(&home)
        .args([
            "run",
            "ocitest",
            "--",
            "pwd; id -u; echo $FOO $HOME; echo $PATH; ls /data; ls /opq",
        ])
        .output()
        .unwrap();
    assert_eq!(
        stdout(ok(&o)),
        "/app\n1000\nfrom-image /home/app\n/custom/bin:/bin\nkeep\nnew\n",
        "{}",
        stderr(&o)
    );
    // An argv command needs no shell.
    let o = c
        .cmd(&home)
        .args(["run", "ocitest", "--", "/bin/busybox", "echo", "argv ok"])
        .output()
        .unwrap();
    assert_eq!(stdout(ok(&o)), "argv ok\n");

    // A workspace on it: the repro-fix loop (as root, in /workspace, with
    // the image's Env).
    let seed = common::repro_seed(home.path());
    let ws = |args: &[&str]| c.cmd(&home).arg("workspace").args(args).output().unwrap();
    let created = json(ok(&ws(&[
        "create",
        "ocitest",
        "--seed-path",
        seed.to_str().unwrap(),
        "--json",
    ])));
    // The first `run` built the image's template (a busybox image has no
    // bash or git to warm up: that costs speed, never the template).
    assert_eq!(created["boot_mode"], "restored", "{created}");
    let id = created["workspace_id"].as_str().unwrap().to_owned();
    let o = ws(&["exec", &id, "--", "./check.sh"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("broken"), "{}", stderr(&o));
    assert_eq!(
        stdout(ok(&ws(&["exec", &id, "--", "pwd; id -u; echo $FOO"]))),
        "/workspace\n0\nfrom-image\n"
    );
    let p = json(ok(&ws(&[
        "patch",
        "apply",
        &id,
        "--json",
        "--patch",
        "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n",
    ])));
    assert_eq!(p["files"][0]["status"], "modified");
    assert_eq!(
        stdout(ok(&ws(&["exec", &id, "--", "./check.sh"]))),
        "fixed\n"
    );
    // An imported environment a workspace uses is not replaced under it.
    let o = c
        .cmd(&home)
        .args(["env", "import", &reference, "--name", "ocitest"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("used by workspace {id}")),
        "{}",
        stderr(&o)
    );
    ok(&ws(&["delete", &id]));
}

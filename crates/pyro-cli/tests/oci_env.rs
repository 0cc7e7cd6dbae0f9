//! Environments through a real registry on loopback (Debian's
//! `docker-registry`), end to end through the `pyro` binary: push of a
//! built environment, pull into an empty cache, a tampered blob, an
//! interrupted download, basic auth, and imports from a tarball (a good
//! one and a hostile one). No guest boots here (`real_vm_oci.rs` boots
//! imported images).

mod common;

use common::images::{Image, Layer, OwnCache, busybox_layer, gzip, zstd};
use common::{Home, json, ok, require_debian12, stderr, stdout};
use pyro_oci::testing::TestRegistry;

fn registry(auth: Option<(&str, &str)>) -> TestRegistry {
    TestRegistry::start(auth).expect("docker-registry is not installed; run scripts/setup-host.sh")
}

/// The digest of the layer of `media_type` in the artifact at `reference`.
fn layer_digest(reference: &str, media_type: &str) -> String {
    let r = pyro_oci::parse_reference(reference).unwrap();
    let reg = pyro_oci::registry::Registry::new(&r, pyro_oci::RegistryAuth::Anonymous);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = rt.block_on(reg.resolve(&r)).unwrap().manifest;
    m.layers
        .iter()
        .find(|l| l.media_type == media_type)
        .unwrap()
        .digest
        .clone()
}

fn leftovers(cache: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["environments", "blobs", "kernels"] {
        if let Ok(rd) = std::fs::read_dir(cache.join(sub)) {
            found.extend(
                rd.flatten()
                    .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
            );
        }
    }
    found
}

#[test]
fn push_then_pull_into_an_empty_cache_tamper_resume_and_auth() {
    let shared = require_debian12();
    let tr = registry(None);
    let home = Home::new();
    let reference = format!("{}/pyro/debian:12", tr.addr);

    // Push the shared cache's debian:12.
    let pushed = json(ok(&home
        .cmd()
        .args(["env", "push", "debian:12", &reference, "--json"])
        .output()
        .unwrap()));
    let digest = pushed["digest"].as_str().unwrap().to_owned();
    assert!(
        digest.starts_with("sha256:") && pushed["bytes"].as_u64().unwrap() > 1 << 20,
        "{pushed}"
    );

    // An interrupted download left half of the root tree behind: the
    // pull goes on from there, and installs into the empty cache.
    let tree = layer_digest(&reference, pyro_env::artifact::ROOTFS_TYPE);
    let c = OwnCache::new(&shared);
    std::fs::remove_dir_all(c.dir.path().join("kernels")).unwrap(); // the kernel comes from the artifact
    let blob = std::fs::read(tr.blob_path(&tree)).unwrap();
    let partial = c.dir.path().join("blobs").join(format!(
        "sha256-{}.partial",
        tree.trim_start_matches("sha256:")
    ));
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, &blob[..blob.len() / 2]).unwrap();
    let pull = |c: &OwnCache, extra: &[&str]| {
        let mut cmd = c.cmd(&home);
        cmd.args([
            "env",
            "pull",
            "debian:12",
            "--registry",
            &reference,
            "--no-template",
            "--json",
        ])
        .args(extra);
        cmd.output().unwrap()
    };
    let p = json(ok(&pull(&c, &[])));
    assert_eq!(p["installed"], true, "{p}");
    assert_eq!(p["origin"]["digest"].as_str(), Some(digest.as_str()), "{p}");
    assert_eq!(p["kind"], "catalog");
    assert!(!partial.exists(), "the partial download was left behind");
    assert!(
        leftovers(c.dir.path())
            .iter()
            .all(|l| !l.starts_with("blobs/") && !l.contains(".staging")),
        "{:?}",
        leftovers(c.dir.path())
    );
    // The same digest again: nothing to do.
    let again = json(ok(&pull(&c, &[])));
    assert_eq!(again["changed"], false, "{again}");
    let listed = json(ok(&c
        .cmd(&home)
        .args(["env", "list", "--json"])
        .output()
        .unwrap()));
    let d12 = &listed["environments"][0];
    assert_eq!(d12["name"], "debian:12");
    assert!(d12["source"].as_str().unwrap().contains(&digest), "{d12}");

    // Without --registry: the configured registry first (here from the
    // config file)...
    let cfg = home.path().join("config");
    std::fs::create_dir_all(cfg.join("pyro")).unwrap();
    std::fs::write(
        cfg.join("pyro/config.toml"),
        format!("env_registry = \"{}/pyro\"\n", tr.addr),
    )
    .unwrap();
    let c4 = OwnCache::new(&shared);
    let mut cmd = c4.cmd(&home);
    cmd.args(["env", "pull", "debian:12", "--no-template"])
        .env("XDG_CONFIG_HOME", &cfg);
    // (In human form: what it did, then the environment's state.)
    let p = stdout(ok(&cmd.output().unwrap()));
    assert!(
        p.contains("Pulled: debian:12 in ")
            && p.contains("\n  - ")
            && p.contains(&format!("Digest: {digest}"))
            && p.contains("Installed: yes")
            && p.contains("Template: skipped"),
        "{p}"
    );
    // ...and a local build when it fails there (a stale install here, so
    // the build is the quick rebake of its tree).
    let c5 = OwnCache::new(&shared);
    let dest = c5.dir.path().join("environments/debian_12-4.0.0");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    ok(&std::process::Command::new("cp")
        .arg("-a")
        .arg(&shared.dir)
        .arg(&dest)
        .output()
        .unwrap());
    let m = dest.join("environment.json");
    let stale = std::fs::read_to_string(&m)
        .unwrap()
        .replace(&shared.manifest.agent_sha256, "0000");
    std::fs::write(&m, stale).unwrap();
    let mut cmd = c5.cmd(&home);
    cmd.args(["env", "pull", "debian:12", "--no-template", "--json"])
        .env("PYRO_ENV_REGISTRY", format!("{}/elsewhere", tr.addr));
    let p = json(ok(&cmd.output().unwrap()));
    let actions = p["actions"].to_string();
    assert!(
        actions.contains("failed") && actions.contains("built locally instead"),
        "{p}"
    );
    assert_eq!(
        (p["installed"].as_bool(), p["origin"].is_null()),
        (Some(true), true),
        "{p}"
    );

    // A tampered blob: refused, and nothing installed.
    let mut bad = blob.clone();
    let mid = bad.len() / 3;
    bad[mid] ^= 0x5a;
    std::fs::write(tr.blob_path(&tree), &bad).unwrap();
    let c2 = OwnCache::new(&shared);
    let o = pull(&c2, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|_| serde_json::json!({}));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("digest_mismatch") || err["error"]["kind"] == "digest_mismatch",
        "{text}"
    );
    assert!(text.contains("does not match its digest"), "{text}");
    let left = leftovers(c2.dir.path());
    assert!(
        left.iter().all(|l| l.starts_with("kernels/")),
        "a refused pull left {left:?}"
    );
    std::fs::write(tr.blob_path(&tree), &blob).unwrap();

    // Basic auth: refused without credentials, honoured with them, from
    // the environment or from a Docker config file.
    let secure = registry(Some(("pyro", "pw-for-test")));
    let sref = format!("{}/pyro/debian:12", secure.addr);
    let o = home
        .cmd()
        .args(["env", "push", "debian:12", &sref, "--json"])
        .env("DOCKER_CONFIG", home.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("registry_auth"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // In human form this time: what went where, and its digest.
    let pushed = stdout(ok(&home
        .cmd()
        .args(["env", "push", "debian:12", &sref])
        .env("PYRO_REGISTRY_USERNAME", "pyro")
        .env("PYRO_REGISTRY_PASSWORD", "pw-for-test")
        .env("PYRO_REGISTRY_HOST", &secure.addr)
        .output()
        .unwrap()));
    assert!(
        pushed.starts_with(&format!("Pushed: debian:12 to {sref} in "))
            && pushed.contains("\nDigest: sha256:"),
        "{pushed}"
    );
    // Credentials for another registry are not sent to this one.
    let o = home
        .cmd()
        .args(["env", "push", "debian:12", &sref, "--json"])
        .env("PYRO_REGISTRY_USERNAME", "pyro")
        .env("PYRO_REGISTRY_PASSWORD", "pw-for-test")
        .env("PYRO_REGISTRY_HOST", "registry.invalid:5000")
        .env("DOCKER_CONFIG", home.path())
        .output()
        .unwrap();
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("registry_auth"),
        "{}",
        stderr(&o)
    );
    let docker = home.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"cHlybzpwdy1mb3ItdGVzdA=="}}}}}}"#,
            secure.addr
        ),
    )
    .unwrap();
    let c3 = OwnCache::new(&shared);
    let mut cmd = c3.cmd(&home);
    cmd.args([
        "env",
        "pull",
        "debian:12",
        "--registry",
        &sref,
        "--no-template",
        "--json",
    ])
    .env("DOCKER_CONFIG", &docker);
    assert_eq!(json(ok(&cmd.output().unwrap()))["installed"], true);

    // A container image is not a pyro environment: the pull says to import
    // it instead, and installs nothing.
    let (image, raw) = small_image(Layer::new());
    let container = format!("{}/pyro/container:1", tr.addr);
    image.push(&container, &raw);
    let c4 = OwnCache::new(&shared);
    let o = c4
        .cmd(&home)
        .args([
            "env",
            "pull",
            "debian:12",
            "--registry",
            &container,
            "--no-template",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("for a container image use `env import`"),
        "{}",
        stdout(&o)
    );
}

fn small_image(extra: Layer) -> (Image, Vec<Vec<u8>>) {
    let base = busybox_layer()
        .dir("data")
        .file("data/keep", b"keep\n", 0o644)
        .file("data/gone", b"gone\n", 0o644)
        .tar();
    let top = extra.tar();
    let image = Image {
        layers: vec![
            (zstd(&base), "application/vnd.oci.image.layer.v1.tar+zstd"),
            (gzip(&top), "application/vnd.oci.image.layer.v1.tar+gzip"),
        ],
        config: serde_json::json!({"os": "linux", "architecture": "amd64", "config": {"Env": ["FOO=bar"], "WorkingDir": "/data"}}),
    };
    (image, vec![base, top])
}

#[test]
fn imports_from_a_tarball_and_refuses_a_hostile_one() {
    let shared = require_debian12();
    let home = Home::new();
    let c = OwnCache::new(&shared);
    let (image, raw) = small_image(Layer::new().file("data/.wh.gone", b"", 0o644));
    let tarball = home.path().join("image.tar");
    let digest = image.write_oci_tar(&tarball, &raw);
    let out = json(ok(&c
        .cmd(&home)
        .args([
            "env",
            "import",
            tarball.to_str().unwrap(),
            "--name",
            "tarred",
            "--no-template",
            "--json",
        ])
        .output()
        .unwrap()));
    assert_eq!(out["digest"].as_str(), Some(digest.as_str()), "{out}");
    assert_eq!(
        (out["layers"].as_u64(), out["whiteouts"].as_u64()),
        (Some(2), Some(1)),
        "{out}"
    );
    // The same import again, in human form: it replaces the first.
    let human = stdout(ok(&c
        .cmd(&home)
        .args([
            "env",
            "import",
            tarball.to_str().unwrap(),
            "--name",
            "tarred",
            "--no-template",
        ])
        .output()
        .unwrap()));
    assert!(
        human.contains("Imported: tarred from ")
            && human.contains(&format!("Digest: {digest}"))
            && human.contains("Layers: 2 (")
            && human.contains("1 whiteouts honoured, 0 device nodes dropped)")
            && human.contains("Template: skipped"),
        "{human}"
    );
    assert_eq!(out["image"]["working_dir"], "/data");
    let tree = c.dir.path().join("environments/imported-tarred/rootfs");
    assert!(tree.join("data/keep").is_file() && !tree.join("data/gone").exists());
    assert!(
        tree.join("usr/sbin/pyro-agent").is_file(),
        "the agent was not baked in"
    );
    let listed = json(ok(&c
        .cmd(&home)
        .args(["env", "list", "--json"])
        .output()
        .unwrap()));
    let e = listed["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "tarred")
        .cloned()
        .unwrap();
    assert_eq!(
        (e["kind"].as_str(), e["installed"].as_bool()),
        (Some("imported"), Some(true)),
        "{e}"
    );
    assert!(e["source"].as_str().unwrap().contains(&digest), "{e}");
    let human = stdout(ok(&c
        .cmd(&home)
        .args(["env", "inspect", "tarred"])
        .output()
        .unwrap()));
    assert!(
        human.contains("Image env: FOO=bar") && human.contains(&format!("Digest: {digest}")),
        "{human}"
    );
    // Pulling an imported environment refreshes it in place (nothing to do
    // here; no template: that would boot a guest outside the real-VM group),
    // in human form; with its image gone it says to import again,
    // and the environment is still listed.
    let refreshed = stdout(ok(&c
        .cmd(&home)
        .args(["env", "pull", "tarred", "--no-template"])
        .output()
        .unwrap()));
    assert!(
        refreshed.contains("tarred") && refreshed.contains("Template: skipped"),
        "{refreshed}"
    );
    let image = c
        .dir
        .path()
        .join("environments/imported-tarred/rootfs.ext4");
    let kept = home.path().join("kept.ext4");
    std::fs::rename(&image, &kept).unwrap();
    let o = c
        .cmd(&home)
        .args(["env", "pull", "tarred", "--no-template", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("import it again"), "{}", stdout(&o));
    assert_eq!(json(&o)["error"]["kind"], "not_installed");
    std::fs::rename(&kept, &image).unwrap();
    // A catalog name cannot be taken.
    let o = c
        .cmd(&home)
        .args([
            "env",
            "import",
            tarball.to_str().unwrap(),
            "--name",
            "debian:12",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("catalog environment's name"),
        "{}",
        stderr(&o)
    );

    // A User the image does not have, and a WorkingDir under a file:
    // refused, saying which, nothing installed.
    for (config, says) in [
        (
            serde_json::json!({"User": "nosuchuser"}),
            "is not in its /etc/passwd",
        ),
        (
            serde_json::json!({"WorkingDir": "/data/keep/sub"}),
            "creating the image's WorkingDir /data/keep/sub",
        ),
    ] {
        let (mut odd, raw) = small_image(Layer::new());
        odd.config["config"] = config;
        let path = home.path().join("odd.tar");
        odd.write_oci_tar(&path, &raw);
        let o = c
            .cmd(&home)
            .args([
                "env",
                "import",
                path.to_str().unwrap(),
                "--name",
                "odd",
                "--json",
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stdout(&o).contains(says), "{}", stdout(&o));
        assert!(
            !c.dir.path().join("environments/imported-odd").exists(),
            "a refused import was installed"
        );
    }

    // A layer that climbs out of the image: refused, nothing installed,
    // nothing written outside.
    let (hostile, raw) = small_image(Layer::new().raw_file("../../escaped", b"x"));
    let bad = home.path().join("bad.tar");
    hostile.write_oci_tar(&bad, &raw);
    let o = c
        .cmd(&home)
        .args([
            "env",
            "import",
            bad.to_str().unwrap(),
            "--name",
            "hostile",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("refused_layer") && text.contains("climbs out"),
        "{text}"
    );
    let envs: Vec<String> = std::fs::read_dir(c.dir.path().join("environments"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        envs,
        ["imported-tarred"],
        "a refused import left something behind"
    );
    assert!(!c.dir.path().join("escaped").exists() && !home.path().join("escaped").exists());
}

/// Registry logins that cannot be used are refused before any request,
/// saying what to set.
#[test]
fn unusable_registry_logins_say_what_to_set() {
    let home = Home::new();
    let docker = home.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(docker.join("config.json"), "{nope").unwrap();
    for (vars, says) in [
        (
            vec![("PYRO_REGISTRY_USERNAME", "u")],
            "the registry login is not usable: set both PYRO_REGISTRY_USERNAME and PYRO_REGISTRY_PASSWORD, or neither",
        ),
        (
            vec![
                ("PYRO_REGISTRY_USERNAME", "u"),
                ("PYRO_REGISTRY_PASSWORD", "p"),
            ],
            "set PYRO_REGISTRY_HOST to the registry PYRO_REGISTRY_USERNAME and PYRO_REGISTRY_PASSWORD are for (e.g. 127.0.0.1:1)",
        ),
        (
            vec![("DOCKER_CONFIG", docker.to_str().unwrap())],
            "the Docker config file",
        ),
    ] {
        let mut cmd = home.cmd();
        cmd.env("PYRO_CACHE_DIR", home.path().join("cache"))
            .env_remove("PYRO_REGISTRY_USERNAME")
            .env_remove("PYRO_REGISTRY_PASSWORD")
            .env_remove("PYRO_REGISTRY_HOST")
            .env("DOCKER_CONFIG", home.path().join("no-docker-config"))
            .args(["env", "import", "127.0.0.1:1/pyro/x:1", "--name", "x"]);
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{vars:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{vars:?}: {}", stderr(&o));
    }
}

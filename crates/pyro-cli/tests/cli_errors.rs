//! Bad input gets a clear error, a non-zero exit, and leaves nothing behind.

mod common;

use std::path::Path;

use common::{Home, json, ok, require_debian12, stderr, stdout};

#[test]
fn unknown_environment_lists_the_valid_ones() {
    let home = Home::new();
    for args in [
        vec!["run", "ubuntu:24.04", "--", "true"],
        vec!["env", "pull", "ubuntu:24.04"],
        vec!["env", "inspect", "ubuntu:24.04"],
    ] {
        let o = home.cmd().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&o),
            "error: unknown environment \"ubuntu:24.04\"; expected one of: debian:12, debian:12-base, debian:12-build\n"
        );
        assert!(stdout(&o).is_empty());
    }
    home.assert_clean();
}

#[test]
fn bad_network_policies_say_how_to_write_them() {
    let home = Home::new();
    for (args, want) in [
        (
            vec![
                "workspace",
                "create",
                "debian:12",
                "--allow-host",
                "*.example.com",
            ],
            "wildcards are not supported; list each name",
        ),
        (
            vec![
                "workspace",
                "create",
                "debian:12",
                "--allow-cidr",
                "10.0.0.1/8",
            ],
            "did you mean 10.0.0.0/8",
        ),
        (
            vec![
                "workspace",
                "create",
                "debian:12",
                "--network-policy",
                "off",
                "--allow-host",
                "a.b",
            ],
            "pass --network-policy egress with them",
        ),
        (
            vec![
                "run",
                "debian:12",
                "--allow-host",
                "github.com:99999",
                "--",
                "true",
            ],
            "a port that is not a number from 1 to 65535",
        ),
        (
            vec![
                "run",
                "debian:12",
                "--network",
                "--backend",
                "host-compat",
                "--",
                "true",
            ],
            "shares the host's network",
        ),
    ] {
        let o = home.cmd().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = home
        .cmd()
        .args(["workspace", "create", "debian:12", "--network-policy", "on"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("egress+published-ports"),
        "{}",
        stderr(&o)
    );
    home.assert_clean();
}

#[test]
fn json_mode_errors_are_json_on_stdout() {
    let home = Home::new();
    let o = home
        .cmd()
        .args(["run", "nope", "--json", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "unknown_environment");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected one of")
    );
}

#[test]
fn nothing_after_the_double_dash() {
    let home = Home::new();
    for args in [vec!["run", "debian:12"], vec!["run", "debian:12", "--"]] {
        let o = home.cmd().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("no command given: give the command after `--`"),
            "{}",
            stderr(&o)
        );
    }
    home.assert_clean();
}

#[test]
fn resource_flags_out_of_range() {
    let home = Home::new();
    let cases = [
        (
            vec!["--mem-mib", "10"],
            "--mem-mib must be between 128 and 32768 (got 10)",
        ),
        (
            vec!["--vcpu-count", "0"],
            "--vcpu-count must be between 1 and 8 (got 0)",
        ),
        (
            vec!["--timeout-seconds", "0"],
            "--timeout-seconds must be between 1 and 86400 (got 0)",
        ),
        (
            vec!["--ttl-seconds", "5"],
            "--ttl-seconds must be between 60 and 86400 (got 5)",
        ),
        (
            vec!["--boot-timeout-seconds", "0"],
            "--boot-timeout-seconds must be between 1 and 3600 (got 0)",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["run", "debian:12"];
        args.extend(&flags);
        args.extend(["--", "true"]);
        let o = home.cmd().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{flags:?}");
        assert_eq!(stderr(&o), format!("error: {message}\n"));
    }
    // A PVM host never starts a guest's second vCPU: refused before a boot.
    if pyro_vmm::host::is_pvm() {
        let o = home
            .cmd()
            .args(["run", "debian:12", "--vcpu-count", "2", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("--vcpu-count 2 is not possible on this PVM host")
                && stderr(&o).contains("use --vcpu-count 1"),
            "{}",
            stderr(&o)
        );
    }
    let o = home
        .cmd()
        .args(["run", "debian:12", "--backend", "qemu", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid value 'qemu' for '--backend"));
    let o = home
        .cmd()
        .env("PYRO_BACKEND", "qemu")
        .args(["run", "debian:12", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("PYRO_BACKEND: unknown backend \"qemu\""),
        "{}",
        stderr(&o)
    );
    home.assert_clean();
}

#[test]
fn a_missing_firecracker_binary_is_named_with_the_fix() {
    require_debian12();
    let home = Home::new();
    let o = home
        .cmd()
        .env("PYRO_FIRECRACKER_BIN", "/nonexistent/firecracker")
        .args(["run", "debian:12", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains("the Firecracker binary was not found at /nonexistent/firecracker"),
        "{err}"
    );
    assert!(err.contains("PYRO_FIRECRACKER_BIN points there"), "{err}");
    assert!(err.contains("--allow-host-compat"), "{err}");
    home.assert_clean();
}

/// A hard link, or a copy across filesystems.
fn link(src: &Path, dst: &Path) {
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst).unwrap();
    }
}

/// Builds a cache that holds debian:12 (hard links to the real one) with a
/// kernel whose bytes no longer match its checksum.
fn cache_with_corrupt_kernel(dir: &Path) -> std::path::PathBuf {
    let real = require_debian12();
    let cache = dir.join("cache");
    let env_dir = cache
        .join("environments")
        .join(real.dir.file_name().unwrap());
    std::fs::create_dir_all(&env_dir).unwrap();
    link(&real.rootfs_image(), &env_dir.join("rootfs.ext4"));
    std::os::unix::fs::symlink(real.rootfs_tree(), env_dir.join("rootfs")).unwrap();
    std::fs::copy(
        real.dir.join("environment.json"),
        env_dir.join("environment.json"),
    )
    .unwrap();
    let kdir = cache.join("kernels").join(&real.manifest.kernel_key);
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::copy(
        real.kernel.dir.join("kernel.json"),
        kdir.join("kernel.json"),
    )
    .unwrap();
    let mut bytes = std::fs::read(real.kernel_image()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(kdir.join("vmlinux"), bytes).unwrap();
    let real_cache = pyro_env::Cache::from_env();
    let fc = cache
        .join("firecracker")
        .join(pyro_vmm::binaries::FIRECRACKER_VERSION);
    std::fs::create_dir_all(&fc).unwrap();
    for b in ["firecracker", "jailer"] {
        link(
            &pyro_vmm::binaries::install_dir(real_cache.root()).join(b),
            &fc.join(b),
        );
    }
    cache
}

#[test]
fn a_corrupt_cached_kernel_is_refused_by_checksum() {
    let home = Home::new();
    let cache = cache_with_corrupt_kernel(home.path());
    let o = home
        .cmd()
        .env("PYRO_CACHE_DIR", &cache)
        .args(["run", "debian:12", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("does not match its recorded checksum"),
        "{err}"
    );
    assert!(
        err.contains("run `pyro env pull debian:12` to rebuild it"),
        "{err}"
    );
    home.assert_clean();
    // Doctor sees it too.
    let o = home
        .cmd()
        .env("PYRO_CACHE_DIR", &cache)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kernel = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "guest kernel")
        .unwrap();
    assert_eq!(kernel["status"], "fail", "{kernel}");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn env_prune_deletes_only_debris() {
    let home = Home::new();
    let cache = home.path().join("cache");
    let envs = cache.join("environments");
    let debris = || {
        std::fs::create_dir_all(envs.join(".staging-debian_12-4.0.0-abc/rootfs")).unwrap();
        std::fs::create_dir_all(envs.join("ubuntu_24.04-1.0.0")).unwrap();
    };
    // For people: each deleted entry on a line of its own.
    debris();
    let o = home
        .cmd()
        .env("PYRO_CACHE_DIR", &cache)
        .args(["env", "prune"])
        .output()
        .unwrap();
    let said = stdout(&o);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert_eq!(lines[0], "Deleted 2 cached entries.");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with("- ") && l.contains("environments")),
        "{said}"
    );
    debris();
    let o = home
        .cmd()
        .env("PYRO_CACHE_DIR", &cache)
        .args(["env", "prune", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["count"], 2);
    assert!(!envs.join("ubuntu_24.04-1.0.0").exists());
    let o = home
        .cmd()
        .env("PYRO_CACHE_DIR", &cache)
        .args(["env", "prune"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "Deleted 0 cached entries.\n");
}

/// `env template list` and `prune` for people: an empty cache says how to
/// get a template; a template whose environment is gone is listed stale
/// with the reason, then pruned by name.
#[test]
fn env_templates_listed_and_pruned_for_people() {
    let home = Home::new();
    let cache = home.path().join("cache");
    let env = |args: &[&str]| {
        let o = home
            .cmd()
            .env("PYRO_CACHE_DIR", &cache)
            .arg("env")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(
        env(&["template", "list"]),
        "No templates yet (`pyro env pull` builds one).\n"
    );
    let name = "debian_12-4.0.0-1c-1024m-4096d";
    let dir = cache.join("templates").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let meta = serde_json::json!({
        "format_version": 2,
        "environment": "debian:12",
        "environment_version": "4.0.0",
        "shape": {"vcpu_count": 1, "mem_mib": 1024, "disk_mib": 4096},
        "sources": {
            "kernel_key": "0", "rootfs_sha256": "0", "agent_sha256": "0",
            "firecracker_sha256": "0", "boot_args": "", "host_kernel": ""
        },
        "vmstate_sha256": "0", "vmstate_bytes": 0, "mem_bytes": 0, "upper_bytes": 0,
        "handoff_vmstate_sha256": "0", "handoff_vmstate_bytes": 0, "handoff_mem_bytes": 0,
        "built_at": 0.0, "build_ms": 0
    });
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    assert_eq!(
        env(&["template", "list"]),
        format!("{name}  stale (debian:12 is not installed)  0 MiB on disk\n")
    );
    assert_eq!(
        env(&["template", "prune"]),
        format!("Deleted 1 template(s).\n- {name}\n")
    );
    assert!(!dir.exists());
    assert_eq!(env(&["template", "prune"]), "Deleted 0 template(s).\n");
    // What killed builds left (a staging and an old copy in the cache, a
    // work directory in the state directory) goes too; anything else
    // there stays.
    let templates = cache.join("templates");
    for d in [".build-x-1c", ".old-x-1c", "unrelated"] {
        std::fs::create_dir_all(templates.join(d)).unwrap();
    }
    let work = home.path().join("template-build").join("x-1c");
    std::fs::create_dir_all(&work).unwrap();
    let out = env(&["template", "prune"]);
    assert!(out.starts_with("Deleted 3 template(s).\n"), "{out}");
    for d in [".build-x-1c", ".old-x-1c"] {
        assert!(out.contains(d) && !templates.join(d).exists(), "{out}");
    }
    assert!(!work.exists(), "{out}");
    assert!(templates.join("unrelated").is_dir());
}

/// A Firecracker that cannot start (here a script, which the jail it is
/// copied into cannot run): the template build and then the cold boot fail
/// with that reason, and nothing is left behind. In a private cache (hard
/// links to the shared one), so its failed build holds no lock that a
/// real-VM test waits on.
#[test]
fn a_firecracker_that_dies_at_start_is_reported_and_cleaned_up() {
    require_debian12();
    let home = Home::new();
    let cache = home.private_cache(&["environments", "kernels", "firecracker"]);
    let fake = home.path().join("fake-firecracker");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'fake firecracker: refusing to start' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = home
        .cmd()
        .env("PYRO_CACHE_DIR", &cache)
        .env("PYRO_FIRECRACKER_BIN", &fake)
        .args(["run", "debian:12", "--", "true"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("Firecracker exited before its API socket came up"),
        "{err}"
    );
    // As root (CI) a template is built first, and fails the same way.
    // SAFETY: geteuid(2) only reads.
    if unsafe { libc::geteuid() } == 0 {
        assert!(err.contains("the template could not be built"), "{err}");
    }
    assert!(err.contains("--allow-host-compat"), "{err}");
    home.assert_clean();
    // Allowed, a workspace falls back to host-compat and records why.
    let o = home
        .cmd()
        .env("PYRO_CACHE_DIR", &cache)
        .env("PYRO_FIRECRACKER_BIN", &fake)
        .args([
            "workspace",
            "create",
            "debian:12",
            "--allow-host-compat",
            "--json",
        ])
        .output()
        .unwrap();
    let v = json(ok(&o));
    assert_eq!(v["backend"], "host-compat", "{v}");
    assert_eq!(
        v["fallback_reason"], "Firecracker exited before its API socket came up",
        "{v}"
    );
    let id = v["workspace_id"].as_str().unwrap().to_owned();
    ok(&home
        .cmd()
        .env("PYRO_CACHE_DIR", &cache)
        .args(["workspace", "delete", &id])
        .output()
        .unwrap());
    home.assert_clean();
    let templates = cache.join("templates");
    assert!(
        std::fs::read_dir(&templates).map_or(true, |mut rd| rd.next().is_none()),
        "a failed build left something in {}",
        templates.display()
    );
}

/// The network helpers pyro starts itself refuse a start without what they
/// need (a person never runs them; the message says what was missing).
#[test]
fn network_helpers_need_their_arguments() {
    let home = Home::new();
    for (args, says) in [
        (vec!["__pyro-network-daemon"], "--network-dir is missing"),
        (
            vec!["__pyro-relay", "--network-dir", "/nonexistent"],
            "--guest-port is missing",
        ),
    ] {
        let o = home.cmd().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&o).contains(&format!("pyro network helper: {says}")),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

/// A config file that does not parse (or has settings pyro does not know)
/// is an error that names the file and the one setting there is; nothing
/// is pulled.
#[test]
fn a_bad_config_file_names_itself_and_the_setting() {
    let home = Home::new();
    let cfg = home.path().join("cfg/pyro");
    std::fs::create_dir_all(&cfg).unwrap();
    for body in ["env_registry = [\n", "unknown_key = 1\n"] {
        std::fs::write(cfg.join("config.toml"), body).unwrap();
        let o = home
            .cmd()
            .env("XDG_CONFIG_HOME", home.path().join("cfg"))
            .env("PYRO_CACHE_DIR", home.path().join("cache"))
            .env_remove("PYRO_ENV_REGISTRY")
            .args(["env", "pull", "debian:12", "--no-template"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{body}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("reading {}", cfg.join("config.toml").display()))
                && err.contains("the only setting is env_registry = \"REGISTRY/NAMESPACE\""),
            "{err}"
        );
        assert!(!home.path().join("cache/environments").exists());
    }
}

//! Fast start on real Firecracker guests: workspaces restored from the
//! environment's template are machines of their own (hostname, machine id,
//! random numbers), keep their files, and a stale or damaged template is
//! never used. Everything in one test, to keep the boots few; the stale and
//! damaged templates are made in a private cache of hard links, so the
//! shared template stays current for the tests after this one.

mod common;

use std::process::Output;

use common::{Home, json, ok, require_debian12, stdout};

fn ws(home: &Home, args: &[&str]) -> Output {
    home.cmd().arg("workspace").args(args).output().unwrap()
}

fn create(home: &Home) -> serde_json::Value {
    json(ok(&ws(home, &["create", "debian:12", "--json"])))
}

fn sh(home: &Home, id: &str, script: &str) -> String {
    stdout(ok(&ws(home, &["exec", id, "--", script])))
        .trim()
        .to_owned()
}

/// Replaces a (possibly hard-linked) file with new content, leaving the
/// other links as they were.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `pyro ARGS` with the cache at `cache`.
fn in_cache(home: &Home, cache: &std::path::Path, args: &[&str]) -> Output {
    home.cmd()
        .env("PYRO_CACHE_DIR", cache)
        .args(args)
        .output()
        .unwrap()
}

/// The directory of the default shape's template of debian:12 in `cache`.
fn template_dir(home: &Home, cache: &std::path::Path) -> std::path::PathBuf {
    let list = json(ok(&in_cache(
        home,
        cache,
        &["env", "template", "list", "--json"],
    )));
    let name = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["name"].as_str().unwrap().starts_with("debian_12-") && t["shape"]["mem_mib"] == 1024
        })
        .unwrap_or_else(|| panic!("no default template: {list}"))["name"]
        .as_str()
        .unwrap()
        .to_owned();
    cache.join("templates").join(name)
}

#[test]
fn real_vm_templates_restore_fresh_machines_and_refuse_bad_templates() {
    require_debian12();
    let home = Home::new();
    // The pull made the default shape's template; building it again (in
    // human form) finds it current, or rebuilds it if it is not.
    let built = stdout(ok(&home
        .cmd()
        .args(["env", "template", "build", "debian:12"])
        .output()
        .unwrap()));
    let first = built.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Template: debian_12-")
            && (first.ends_with(" (already current)")
                || (first.contains(" in ") && first.ends_with(" s"))),
        "{built}"
    );
    assert!(
        built
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("Memory: ") && l.ends_with(" MiB")),
        "{built}"
    );
    // --force builds it again even when it is current.
    let forced = json(ok(&home
        .cmd()
        .args(["env", "template", "build", "debian:12", "--force", "--json"])
        .output()
        .unwrap()));
    assert_eq!(forced["outcome"], "built", "{forced}");
    assert!(forced["build_ms"].as_u64().unwrap() > 0, "{forced}");
    assert!(forced["mem_bytes"].as_u64().unwrap() > 0, "{forced}");
    // Two siblings from one template: restored, and each its own machine.
    let a = create(&home);
    let b = create(&home);
    for v in [&a, &b] {
        assert_eq!(v["boot_mode"], "restored", "{v}");
        assert!(
            v["boot_reason"]
                .as_str()
                .unwrap()
                .contains("template debian_12-"),
            "{v}"
        );
    }
    let (a, b) = (
        a["workspace_id"].as_str().unwrap().to_owned(),
        b["workspace_id"].as_str().unwrap().to_owned(),
    );
    let probe = "hostname; cat /etc/machine-id; head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s";
    let (pa, pb) = (sh(&home, &a, probe), sh(&home, &b, probe));
    let (la, lb): (Vec<&str>, Vec<&str>) = (pa.lines().collect(), pb.lines().collect());
    assert_eq!(la.len(), 4, "{pa}");
    assert_eq!(la[0], format!("pyro-{a}"));
    assert_eq!(lb[0], format!("pyro-{b}"));
    assert_ne!(la[1], lb[1], "siblings share a machine id");
    assert_eq!(la[2].len(), 32, "{pa}");
    assert_ne!(la[2], lb[2], "siblings share random numbers");
    // The clock was stepped to the host's, not left at the snapshot's.
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let guest_now: u64 = la[3].parse().unwrap();
    assert!(
        host_now.abs_diff(guest_now) < 120,
        "guest clock {guest_now}, host {host_now}"
    );

    // A restored workspace keeps its files across stop and start: its disk
    // changed, so the start resumes the template's handoff snapshot with
    // that disk (init mounts it only then), and says so.
    ok(&ws(
        &home,
        &["file", "write", &a, "kept.txt", "--text", "kept"],
    ));
    ok(&ws(&home, &["stop", &a]));
    let started = json(ok(&ws(&home, &["start", &a, "--json"])));
    assert_eq!(started["boot_mode"], "restored", "{started}");
    assert!(
        started["boot_reason"]
            .as_str()
            .unwrap()
            .contains("with its own disk"),
        "{started}"
    );
    assert_eq!(sh(&home, &a, "cat /workspace/kept.txt"), "kept");
    assert_eq!(sh(&home, &a, "hostname"), format!("pyro-{a}"));
    // Reset to the baseline: the template again, the file gone.
    let reset = json(ok(&ws(&home, &["reset", &a, "--json"])));
    assert_eq!(reset["boot_mode"], "restored", "{reset}");
    assert_eq!(
        sh(
            &home,
            &a,
            "test -e /workspace/kept.txt && echo there || echo gone"
        ),
        "gone"
    );
    ok(&ws(&home, &["delete", &a]));
    // A workspace nothing has reached since its baseline starts restored.
    let c = create(&home)["workspace_id"].as_str().unwrap().to_owned();
    ok(&ws(&home, &["stop", &c]));
    let started = json(ok(&ws(&home, &["start", &c, "--json"])));
    assert_eq!(started["boot_mode"], "restored", "{started}");
    assert_eq!(sh(&home, &c, "hostname"), format!("pyro-{c}"));
    for id in [&b, &c] {
        ok(&ws(&home, &["delete", id]));
    }

    // A private cache of hard links to the shared one's files, so the
    // shared template stays current for the tests after this one.
    let cache = home.private_cache(&["environments", "kernels", "firecracker", "templates"]);
    let create_in = |cache: &std::path::Path| {
        json(ok(&in_cache(
            &home,
            cache,
            &["workspace", "create", "debian:12", "--json"],
        )))
    };

    // A template made by another agent is stale: rebuilt, never used.
    let dir = template_dir(&home, &cache);
    let meta_path = dir.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["sources"]["agent_sha256"] = "0".repeat(64).into();
    replace(&meta_path, &serde_json::to_vec(&meta).unwrap());
    let rebuilt = create_in(&cache);
    assert_eq!(rebuilt["boot_mode"], "restored", "{rebuilt}");
    assert!(
        rebuilt["boot_reason"]
            .as_str()
            .unwrap()
            .contains("built just now"),
        "{rebuilt}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_ne!(meta["sources"]["agent_sha256"], "0".repeat(64));
    let id = rebuilt["workspace_id"].as_str().unwrap();
    ok(&in_cache(&home, &cache, &["workspace", "delete", id]));

    // A damaged template file: a cold boot that says why, and the template
    // is gone (rebuilt on next use).
    let state = dir.join("snap.vmstate");
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    replace(&state, &bytes);
    let fallback = create_in(&cache);
    assert_eq!(fallback["boot_mode"], "cold", "{fallback}");
    assert!(
        fallback["boot_reason"]
            .as_str()
            .unwrap()
            .contains("does not match its checksum"),
        "{fallback}"
    );
    assert!(!dir.exists(), "the damaged template was kept");
    let id = fallback["workspace_id"].as_str().unwrap();
    let o = in_cache(&home, &cache, &["workspace", "exec", id, "--", "hostname"]);
    assert_eq!(stdout(ok(&o)).trim(), format!("pyro-{id}"));
    ok(&in_cache(&home, &cache, &["workspace", "delete", id]));
    // The shared template was never touched.
    let shared_list = json(ok(&home
        .cmd()
        .args(["env", "template", "list", "--json"])
        .output()
        .unwrap()));
    assert!(
        shared_list
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["status"] == "ready"),
        "{shared_list}"
    );
    home.assert_clean();
}

//! `pyro run`, `demo` and friends end to end on the host-compat backend: the
//! same agent binary as in guests, in a chroot with private namespaces, so
//! these cover the CLI and the protocol without booting a VM.

mod common;

use common::{Home, require_debian12, stderr, stdout};

fn run(home: &Home, args: &[&str]) -> std::process::Output {
    require_debian12();
    let mut all = vec!["run", "debian:12", "--backend", "host-compat"];
    all.extend(args);
    home.cmd().args(&all).output().unwrap()
}

#[test]
fn argv_after_dashes_is_not_reparsed_by_a_shell() {
    let home = Home::new();
    let o = run(&home, &["--", "printf", "%s\\n", "a b", "$HOME"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a b\n$HOME\n");
    home.assert_clean();
}

#[test]
fn a_single_string_runs_through_sh_and_keeps_streams_apart() {
    let home = Home::new();
    let o = run(&home, &["--", "echo $((40+2)); echo oops >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "42\n");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0], "[run] starting a debian:12 host-compat sandbox",
        "{err}"
    );
    assert_eq!(lines[1], "oops", "{err}");
    assert!(
        err.contains("[run] environment=debian:12 execution_mode=host_compat exit_code=3"),
        "{err}"
    );
    home.assert_clean();
}

#[test]
fn pyro_backend_variable_selects_the_backend() {
    require_debian12();
    let home = Home::new();
    let o = home
        .cmd()
        .env("PYRO_BACKEND", "host-compat")
        .args([
            "run",
            "debian:12",
            "--json",
            "--",
            "cat",
            "/etc/pyro-environment",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["execution_mode"], "host_compat");
    assert!(
        v["stdout"]
            .as_str()
            .unwrap()
            .contains("\"name\":\"debian:12\""),
        "{v}"
    );
}

#[test]
fn json_result_shape() {
    let home = Home::new();
    let o = run(&home, &["--json", "--", "echo hi"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    insta::assert_json_snapshot!("run_json_host_compat", v, {
        ".vm_id" => "[id]",
        ".boot_ms" => "[ms]",
        ".exec_ms" => "[ms]",
        ".duration_ms" => "[ms]",
    });
    home.assert_clean();
}

#[test]
fn timeout_gives_124_and_keeps_partial_output() {
    let home = Home::new();
    let o = run(
        &home,
        &[
            "--timeout-seconds",
            "2",
            "--",
            "echo before; sleep 60 & sleep 60; echo after",
        ],
    );
    assert_eq!(o.status.code(), Some(124));
    assert_eq!(stdout(&o), "before\n");
    assert!(
        stderr(&o).contains("timed out: the command ran longer than 2 s"),
        "{}",
        stderr(&o)
    );
    home.assert_clean();
}

#[test]
fn output_is_capped_and_counted() {
    let home = Home::new();
    let o = run(
        &home,
        &[
            "--max-output-bytes",
            "1000",
            "--json",
            "--",
            "head -c 100000 /dev/zero | tr '\\0' x",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!(v["stdout_bytes"], 100_000);
    assert_eq!(v["truncated"], true);
    let o = run(
        &home,
        &[
            "--max-output-bytes",
            "1000",
            "--",
            "head -c 100000 /dev/zero",
        ],
    );
    // The cap is on what a result returns: a terminal gets the whole
    // stream...
    assert_eq!(o.stdout.len(), 100_000);
    assert!(!stderr(&o).contains("truncated"), "{}", stderr(&o));
    // ...up to the most a command may write per stream.
    let cap = pyro_core::limits::OUTPUT_BYTES.max;
    let o = run(&home, &["--", &format!("head -c {} /dev/zero", cap + 5000)]);
    assert_eq!(o.stdout.len() as u64, cap);
    assert!(
        stderr(&o).contains(&format!("truncated=yes stdout_bytes={}", cap + 5000)),
        "{}",
        stderr(&o)
    );
}

#[test]
fn non_utf8_output_passes_through_raw() {
    let home = Home::new();
    let o = run(&home, &["--", "printf '\\377\\376ok'"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, b"\xff\xfeok");
    let o = run(&home, &["--json", "--", "printf '\\377\\376ok'"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stdout"], "\u{fffd}\u{fffd}ok");
    assert_eq!(v["stdout_bytes"], 4);
}

#[test]
fn writes_never_reach_the_environment_or_the_next_run() {
    let env = require_debian12();
    let home = Home::new();
    let o = run(
        &home,
        &[
            "--",
            "echo pwned > /etc/pyro-probe && rm -f /etc/hostname && cat /etc/pyro-probe",
        ],
    );
    assert_eq!(stdout(&o), "pwned\n", "{}", stderr(&o));
    assert!(!env.rootfs_tree().join("etc/pyro-probe").exists());
    assert!(env.rootfs_tree().join("etc/hostname").exists());
    let o = run(&home, &["--", "test -e /etc/pyro-probe"]);
    assert_eq!(o.status.code(), Some(1));
    home.assert_clean();
}

#[test]
fn the_sandbox_has_its_own_pid_namespace_and_workspace() {
    let home = Home::new();
    let o = run(
        &home,
        &["--", "echo $$; pwd; hostname; ls /proc | grep -c '^[0-9]'"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "/workspace");
    assert_eq!(lines[2], "pyro");
    let procs: u32 = lines[3].parse().unwrap();
    assert!(
        procs < 10,
        "the sandbox sees {procs} processes: not a private PID namespace"
    );
}

#[test]
fn demo_walks_the_lifecycle() {
    require_debian12();
    let home = Home::new();
    let o = home
        .cmd()
        .args(["demo", "--backend", "host-compat", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["create", "start", "exec", "delete"]);
    assert!(
        v["stdout"].as_str().unwrap().starts_with("git version "),
        "{v}"
    );
    let o = home
        .cmd()
        .args(["demo", "--backend", "host-compat"])
        .output()
        .unwrap();
    let out = stdout(&o);
    for step in [
        "[demo] create",
        "[demo] start",
        "[demo] exec",
        "[demo] delete",
        "[demo] total",
    ] {
        assert!(out.contains(step), "{out}");
    }
    home.assert_clean();
}

#[test]
fn env_list_and_inspect() {
    require_debian12();
    let home = Home::new();
    let o = home.cmd().args(["env", "list", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["catalog_version"], "4.0.0");
    // The catalog first; environments other tests import may follow.
    let names: Vec<&str> = v["environments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "catalog")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["debian:12", "debian:12-base", "debian:12-build"]);
    assert_eq!(
        v["environments"][0]["source"],
        "local build: mmdebstrap bookworm (minbase)"
    );
    assert_eq!(v["environments"][0]["installed"], true);
    let o = home.cmd().args(["env", "list"]).output().unwrap();
    let out = stdout(&o);
    assert!(
        out.starts_with("Catalog version: 4.0.0\ndebian:12        installed"),
        "{out}"
    );
    let o = home
        .cmd()
        .args(["env", "inspect", "debian:12"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(
        out.contains("Installed: yes") && out.contains("Kernel image: "),
        "{out}"
    );
    // A pull of an installed environment is a no-op.
    let o = home
        .cmd()
        .args(["env", "pull", "debian:12"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("Already installed: debian:12 (nothing to do)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn doctor_reports_every_check() {
    require_debian12();
    let home = Home::new();
    let o = home.cmd().args(["doctor", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ok = v["ok"].as_bool().unwrap();
    assert_eq!(o.status.success(), ok);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in [
        "kvm",
        "pvm",
        "firecracker",
        "jailer",
        "privileges",
        "cgroups",
        "guest kernel",
        "environments",
    ] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }
    let human = stdout(&home.cmd().arg("doctor").output().unwrap());
    assert!(
        human.contains("PASS  kvm") || human.contains("FAIL  kvm"),
        "{human}"
    );
}

//! Limits that hold on real guests: a memory hog, a fork bomb and a full
//! disk each end with their typed result while a second workspace keeps
//! answering, and the CPU limit shows in the guest and in the host's
//! cgroup. The hogs use a command's own caps (`--max-memory-mib`,
//! `--max-tasks`): on a host whose KVM emulates the guest's page faults,
//! filling the guest's whole memory or 512 tasks takes many minutes; the
//! caps use the same per-command cgroup as the guest-wide defaults.

mod common;

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Home, json, ok, require_debian12, stderr, stdout};

fn ws(home: &Home, args: &[&str]) -> Output {
    home.cmd().arg("workspace").args(args).output().unwrap()
}

fn create(home: &Home) -> String {
    stdout(ok(&ws(home, &["create", "debian:12", "--id-only"])))
        .trim()
        .to_owned()
}

/// `workspace exec ID --json EXTRA -- CMD...` started in the background.
fn exec_bg(home: &Home, id: &str, extra: &[&str], cmd: &[&str]) -> Child {
    std::process::Command::new(common::pyro_bin())
        .env("PYRO_HOME", home.path())
        .env("NO_COLOR", "1")
        .args(["workspace", "exec", id, "--json"])
        .args(extra)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(c: Child) -> serde_json::Value {
    let o = c.wait_with_output().unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&o), stderr(&o)))
}

/// How long `exec -- true` takes on `id`.
fn exec_true(home: &Home, id: &str) -> Duration {
    let t = Instant::now();
    ok(&ws(home, &["exec", id, "--", "true"]));
    t.elapsed()
}

#[test]
fn real_vm_limits_hold_and_say_so() {
    require_debian12();
    let home = Home::new();
    let a = create(&home);
    let b = create(&home);
    let mut times: Vec<Duration> = (0..3).map(|_| exec_true(&home, &b)).collect();
    times.sort();
    let usual = times[1];
    // B keeps answering while A runs a hog: within four times its usual
    // exec plus 10 s of slack (a host with two cores runs two guests and,
    // in the suite, other tests beside them; a starved B takes its whole
    // 30 s exec timeout or more).
    let b_answers = |what: &str| {
        let d = exec_true(&home, &b);
        assert!(
            d <= usual * 4 + Duration::from_secs(10),
            "{what}: the other workspace took {d:?} to exec (usual {usual:?})"
        );
    };

    // CPU: one vCPU in the guest, and the host's quota of 1.25 CPU.
    let v = json(ok(&ws(&home, &["exec", &a, "--json", "--", "nproc"])));
    assert_eq!(v["stdout"], "1\n");
    let st = json(ok(&ws(&home, &["status", &a, "--json"])));
    let p = &st["protections"];
    assert_eq!(p["host"]["cpu_millicores"], 1250, "{p}");
    assert_eq!(p["host"]["memory_bytes"], (1024u64 + 256) << 20, "{p}");
    assert_eq!(p["guest"]["tasks_per_command"], 512, "{p}");
    assert_eq!(p["guest"]["cpus"], 1, "{p}");
    assert!(
        p["guest"]["memory_bytes"].as_u64().unwrap() < 1024 << 20,
        "{p}"
    );
    assert_eq!(p["disk"]["full"], false, "{p}");
    assert_eq!(p["missing"], serde_json::json!([]), "{p}");
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            home.path()
                .join("workspaces")
                .join(&a)
                .join("workspace.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let vm = rec["vm_id"].as_str().unwrap();
    let quota: Vec<String> = home
        .cgroups_left()
        .iter()
        .filter(|g| g.ends_with(vm))
        .filter_map(|g| {
            std::fs::read_to_string(g.join("cpu.cfs_quota_us"))
                .or_else(|_| std::fs::read_to_string(g.join("cpu.max")))
                .ok()
        })
        .map(|q| q.trim().to_owned())
        .collect();
    assert!(
        quota.iter().any(|q| q == "125000" || q == "125000 100000"),
        "the host cgroup of {vm} has CPU quota {quota:?}"
    );

    // A cap above the workspace's memory is refused before anything runs.
    let o = ws(
        &home,
        &["exec", &a, "--max-memory-mib", "2048", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("more than the workspace's 1024 MiB"),
        "{}",
        stderr(&o)
    );

    // A memory hog: the guest's OOM killer ends it, and the result says so.
    let hog = exec_bg(
        &home,
        &a,
        &["--max-memory-mib", "16", "--timeout-seconds", "600"],
        &["perl", "-e", "$x = 'a' x (64 << 20); print qq(survived\\n)"],
    );
    b_answers("memory hog");
    let v = finish(hog);
    assert_eq!(v["limit"]["kind"], "memory", "{v}");
    assert!(
        v["limit"]["message"]
            .as_str()
            .unwrap()
            .starts_with("out of memory"),
        "{v}"
    );
    assert_eq!(v["exit_code"], 137, "{v}");
    assert!(!v["stdout"].as_str().unwrap().contains("survived"), "{v}");

    // A fork bomb: its forks fail at the task limit; the result says so,
    // and none of its processes is left.
    let bomb = exec_bg(
        &home,
        &a,
        &["--max-tasks", "8", "--timeout-seconds", "40"],
        &["bash", "-c", "b() { b & b & wait; }; b"],
    );
    b_answers("fork bomb");
    let v = finish(bomb);
    assert_eq!(v["limit"]["kind"], "processes", "{v}");
    assert!(
        v["limit"]["message"]
            .as_str()
            .unwrap()
            .starts_with("process limit"),
        "{v}"
    );
    let left = json(ok(&ws(
        &home,
        &[
            "exec",
            &a,
            "--json",
            "--",
            "sh",
            "-c",
            "grep -lx bash /proc/[0-9]*/comm | wc -l",
        ],
    )));
    assert_eq!(left["stdout"], "0\n", "bash processes left: {left}");

    // A full disk: fallocate takes what it can at once (writing gigabytes
    // through an emulated guest's page cache takes far too long; this takes
    // about 50 s), then dd fills the rest and fails.
    ok(&ws(
        &home,
        &[
            "exec",
            &a,
            "--timeout-seconds",
            "300",
            "--",
            "sh",
            "-c",
            "fallocate -l $(( $(stat -f -c %f /) * $(stat -f -c %S /) )) /workspace/big || true",
        ],
    ));
    let dd = home
        .cmd()
        .args(["workspace", "exec", &a, "--timeout-seconds", "300", "--"])
        .args([
            "dd",
            "if=/dev/zero",
            "of=/workspace/fill",
            "bs=1M",
            "oflag=direct",
        ])
        .output()
        .unwrap();
    assert_eq!(dd.status.code(), Some(1), "{}", stderr(&dd));
    assert!(
        stderr(&dd).contains("No space left on device"),
        "{}",
        stderr(&dd)
    );
    assert!(
        stderr(&dd).contains("limit: workspace disk full"),
        "{}",
        stderr(&dd)
    );
    b_answers("full disk");
    let st = json(ok(&ws(&home, &["status", &a, "--json"])));
    assert_eq!(st["protections"]["disk"]["full"], true, "{st}");
    let human = stdout(ok(&ws(&home, &["status", &a])));
    assert!(human.contains("(workspace disk full)"), "{human}");
    // A command that succeeds on a full disk is not blamed on it.
    let v = json(ok(&ws(&home, &["exec", &a, "--json", "--", "true"])));
    assert!(v.get("limit").is_none(), "{v}");
    ok(&ws(
        &home,
        &["exec", &a, "--", "rm", "/workspace/big", "/workspace/fill"],
    ));
    let st = json(ok(&ws(&home, &["status", &a, "--json"])));
    assert_eq!(st["protections"]["disk"]["full"], false, "{st}");

    for id in [&a, &b] {
        ok(&ws(&home, &["delete", id]));
    }
    home.assert_clean();
}

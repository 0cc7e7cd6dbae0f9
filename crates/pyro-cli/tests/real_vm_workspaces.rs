//! Persistent workspaces on real Firecracker guests (the `real-vm` group runs
//! these one at a time, in the default shape, so they restore the template
//! `env pull` built).

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Home, json, ok, pyro_bin, require_debian12, stderr, stdout};

fn ws(home: &Home, args: &[&str]) -> Output {
    home.cmd().arg("workspace").args(args).output().unwrap()
}

fn create(home: &Home, extra: &[&str]) -> String {
    let mut args = vec!["create", "debian:12", "--id-only"];
    args.extend(extra);
    stdout(ok(&ws(home, &args))).trim().to_owned()
}

#[test]
fn real_vm_workspace_repro_fix_loop() {
    require_debian12();
    let home = Home::new();
    let seed = common::repro_seed(home.path());
    // A dependency tree of PYRO_TEST_SEED_FILES files (100 per package;
    // 100 by default): creating a file in this nested guest costs 0.15 to
    // 0.3 s of emulated kernel time, and the seed is extracted twice (at
    // create and again at the reset), so 50,000 would take hours here. Run
    // with PYRO_TEST_SEED_FILES=50000 on a host with hardware KVM. (The
    // 200,000-file tree is a host-compat test.)
    let files: usize = std::env::var("PYRO_TEST_SEED_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let packages = files.div_ceil(100).max(1);
    for d in 0..packages {
        let dir = seed.join(format!("node_modules/pkg{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}.js")), format!("{d}/{f}\n")).unwrap();
        }
    }

    let id = create(
        &home,
        &["--seed-path", seed.to_str().unwrap(), "--name", "repro"],
    );
    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    assert_eq!(
        (st["state"].as_str(), st["execution_mode"].as_str()),
        (Some("started"), Some("guest_vsock"))
    );
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &id, "message.txt"]))),
        "broken\n"
    );
    let l = json(ok(&ws(
        &home,
        &[
            "file",
            "list",
            &id,
            "node_modules",
            "--recursive",
            "--max-entries",
            "3",
            "--json",
        ],
    )));
    assert_eq!(
        (l["total"].as_u64(), l["truncated"].as_bool()),
        (Some(packages as u64 * 101), Some(true))
    );

    // The guest floods its serial console while it keeps working; the host
    // keeps at most the cap of it. (Serial output is emulated byte by byte,
    // a few KiB/s on a nested host, so the flood is short here; the keeper
    // itself is tested with 200 MiB in pyro-vmm.)
    // The flood runs in a session of its own; its process group is killed
    // by id (the image has no pkill).
    let flood = stdout(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "setsid sh -c 'yes pyro-console-flood > /dev/ttyS0' > /dev/null 2>&1 < /dev/null & \
             echo $!",
        ],
    )))
    .trim()
    .to_owned();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            home.path()
                .join("workspaces")
                .join(&id)
                .join("workspace.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let vm_dir = home.path().join("vms").join(rec["vm_id"].as_str().unwrap());
    // Serial output reaches the keeper slowly here: wait for it.
    let seen = |f: &str| {
        std::fs::read_to_string(vm_dir.join(f))
            .unwrap_or_default()
            .contains("pyro-console-flood")
    };
    let until = Instant::now() + Duration::from_secs(180);
    while !(seen("console.log") || seen("console.log.1")) && Instant::now() < until {
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        stdout(ok(&ws(&home, &["exec", &id, "--", "echo alive"]))),
        "alive\n"
    );
    ok(&ws(
        &home,
        &["exec", &id, "--", &format!("kill -9 -- -{flood}; true")],
    ));
    let console = std::fs::read_to_string(vm_dir.join("console.log")).unwrap_or_default();
    assert!(
        seen("console.log") || seen("console.log.1"),
        "the flood never reached the console log:\n{console}"
    );
    let kept: u64 = ["console.log", "console.log.1"]
        .iter()
        .filter_map(|f| std::fs::metadata(vm_dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    assert!(kept <= 16 << 20, "{kept} bytes of console kept");
    // The keeper is the pyro program in keeper mode, not a forked copy
    // holding the caller's heap.
    let vm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vm_dir.join("vm.json")).unwrap()).unwrap();
    common::assert_keeper_execs_pyro(&vm);

    let o = ws(&home, &["exec", &id, "--", "./check.sh"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("broken\n"));
    let p = json(ok(&ws(
        &home,
        &[
            "patch",
            "apply",
            &id,
            "--json",
            "--patch",
            "--- a/message.txt\n+++ b/message.txt\n@@ -1 +1 @@\n-broken\n+fixed\n",
        ],
    )));
    assert_eq!(p["files"][0]["status"], "modified");
    assert_eq!(
        stdout(ok(&ws(&home, &["exec", &id, "--", "./check.sh"]))),
        "fixed\n"
    );
    let d = json(ok(&ws(&home, &["diff", &id, "--json"])));
    assert_eq!(d["changed"], true);
    assert!(
        d["patch"].as_str().unwrap().contains("-broken\n+fixed\n"),
        "{d}"
    );
    let out = home.path().join("exported.txt");
    ok(&ws(
        &home,
        &[
            "export",
            &id,
            "message.txt",
            "--output",
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "fixed\n");
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "echo '#!/bin/sh' > /usr/local/bin/mytool && chmod +x /usr/local/bin/mytool",
        ],
    ));

    // A shell keeps its directory and variables; plain output is the
    // screen; a command outlives its call and is waited for.
    let sh = stdout(ok(&ws(&home, &["shell", "open", &id, "--id-only"])))
        .trim()
        .to_owned();
    for input in [
        "cd /tmp && export X=42",
        "echo \"[$PWD:$X]\"",
        "printf 'a\\rb\\n'",
    ] {
        ok(&ws(&home, &["shell", "write", &id, &sh, "--input", input]));
    }
    let mut seen = String::new();
    let mut cursor = 0u64;
    for _ in 0..60 {
        let c = cursor.to_string();
        let v = json(ok(&ws(
            &home,
            &[
                "shell",
                "read",
                &id,
                &sh,
                "--cursor",
                &c,
                "--plain",
                "--wait-for-idle-ms",
                "1000",
                "--json",
            ],
        )));
        seen.push_str(v["output"].as_str().unwrap());
        seen.push('\n');
        cursor = v["next_cursor"].as_u64().unwrap();
        if seen.contains("[/tmp:42]") && seen.contains("\nb\n") {
            break;
        }
    }
    assert!(seen.contains("[/tmp:42]"), "{seen:?}");
    assert!(
        seen.contains("\nb\n") && !seen.contains("\na\n"),
        "{seen:?}"
    );
    let v = json(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--detach",
            "--json",
            "--",
            "sleep 3; echo background-done",
        ],
    )));
    assert_eq!(v["state"], "running", "{v}");
    let seq = v["sequence"].to_string();
    let o = ws(&home, &["exec-wait", &id, &seq, "--wait-seconds", "120"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("background-done"), "{}", stdout(&o));

    real_vm_services(&home, &id);

    let r = json(ok(&ws(&home, &["reset", &id, "--json"])));
    assert_eq!(
        (
            r["state"].as_str(),
            r["reset_count"].as_u64(),
            r["name"].as_str()
        ),
        (Some("started"), Some(1), Some("repro"))
    );
    assert!(
        r["workspace_reset"]["cleared"]
            .to_string()
            .contains("1 shell(s)"),
        "the reset says it ended the shell: {r}"
    );
    assert_eq!(
        r["services_restarted"][0]["state"], "ready",
        "the reset starts the on-start service again: {r}"
    );
    let d = json(ok(&ws(&home, &["diff", &id, "--json"])));
    assert_eq!(d["changed"], false, "{d}");
    let o = ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "test -e /usr/local/bin/mytool && echo kept || echo gone; cat message.txt",
        ],
    );
    ok(&o);
    assert_eq!(stdout(&o), "gone\nbroken\n");
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

/// Services in a real guest: the cold-start validation recipe (validate,
/// a service with a ready file, check it, read its logs, export the
/// report, stop it), readiness by TCP on a port opened after 5 s, and a
/// restart on-start service across stop and start.
fn real_vm_services(home: &Home, id: &str) {
    let setup = "printf '# cold start\\n' > README.md; \
        printf 'echo validation=pass > validation-report.txt\\necho validated\\n' > validate.sh; \
        printf 'echo \"service started\"\\necho service=ready > service-state.txt\\ntouch .app-ready\\nwhile true; do sleep 60; done\\n' > serve.sh";
    // Spawning a process can take seconds in a nested guest: generous
    // timeouts, and no login shells.
    let exec = |cmd: &str| ws(home, &["exec", id, "--timeout-seconds", "120", "--", cmd]);
    ok(&exec(setup));
    let o = exec("sh validate.sh");
    assert_eq!(stdout(ok(&o)), "validated\n");
    let v = json(ok(&ws(
        home,
        &[
            "service",
            "start",
            id,
            "app",
            "--ready-file",
            ".app-ready",
            "--json",
            "--",
            "sh",
            "serve.sh",
        ],
    )));
    assert_eq!(v["state"], "ready", "{v}");
    let o = exec("test -f .app-ready && cat service-state.txt");
    assert_eq!(stdout(ok(&o)), "service=ready\n");
    let o = ws(home, &["service", "logs", id, "app", "--tail-lines", "20"]);
    assert!(stdout(ok(&o)).contains("service started"), "{}", stdout(&o));
    let report = home.path().join("validation-report.txt");
    ok(&ws(
        home,
        &[
            "export",
            id,
            "validation-report.txt",
            "--output",
            report.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        "validation=pass\n"
    );
    let v = json(ok(&ws(home, &["service", "stop", id, "app", "--json"])));
    assert_eq!(v["state"], "stopped", "{v}");
    // Two processes, not one per process: spawning is slow in some guests.
    // (The brackets keep grep from matching its own command line.)
    let count =
        "grep -a -l -e 'serv[e].sh' -e '^slee[p].60' /proc/[0-9]*/cmdline 2>/dev/null | wc -l";
    assert_eq!(stdout(ok(&exec(count))), "0\n");

    // Ready by TCP on a port the service opens after 5 s. Perl takes tens
    // of seconds to load in a nested guest with a cold page cache: it is
    // loaded once first, and the readiness time is generous (the exact
    // 5 s is checked on host-compat).
    ok(&ws(
        home,
        &[
            "exec",
            id,
            "--timeout-seconds",
            "300",
            "--",
            "perl -MIO::Socket::INET -e 1",
        ],
    ));
    let listen = "sleep 5; $s=IO::Socket::INET->new(LocalPort=>8080,Listen=>5,ReuseAddr=>1) or die \"listen: $!\"; while (my $c=$s->accept) { close $c }";
    let v = json(ok(&ws(
        home,
        &[
            "service",
            "start",
            id,
            "tcp",
            "--ready-tcp",
            "127.0.0.1:8080",
            "--ready-timeout-seconds",
            "300",
            "--json",
            "--",
            "perl",
            "-MIO::Socket::INET",
            "-e",
            listen,
        ],
    )));
    assert_eq!(v["state"], "ready", "{v}");
    let after = v["ready_at"].as_f64().unwrap() - v["started_at"].as_f64().unwrap();
    assert!((4.5..300.0).contains(&after), "ready after {after} s: {v}");

    // A restart on-start service is ready again after stop and start; the
    // others are reported ended.
    ok(&ws(
        home,
        &[
            "service",
            "start",
            id,
            "db",
            "--restart",
            "on-start",
            "--ready-file",
            "/tmp/db.up",
            "--",
            "sh",
            "-c",
            "sleep 1; touch /tmp/db.up; exec sleep 1000",
        ],
    ));
    ok(&ws(home, &["stop", id]));
    let v = json(ok(&ws(home, &["start", id, "--json"])));
    assert_eq!(v["services_restarted"][0]["service_name"], "db", "{v}");
    assert_eq!(v["services_restarted"][0]["state"], "ready", "{v}");
    let l = json(ok(&ws(home, &["service", "list", id, "--json"])));
    assert_eq!(l["running_count"], 1, "{l}");
    let tcp = l["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service_name"] == "tcp")
        .unwrap();
    assert_eq!(tcp["state"], "ended", "{l}");
}

#[test]
fn real_vm_parallel_workspaces() {
    require_debian12();
    let home = Home::new();
    let seed = home.path().join("shared");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("note.txt"), "shared\n").unwrap();
    let alpha = create(
        &home,
        &[
            "--seed-path",
            seed.to_str().unwrap(),
            "--label",
            "branch=alpha",
        ],
    );
    let beta = create(
        &home,
        &[
            "--seed-path",
            seed.to_str().unwrap(),
            "--label",
            "branch=beta",
        ],
    );
    ok(&ws(
        &home,
        &["file", "write", &alpha, "branch.txt", "--text", "alpha\n"],
    ));
    ok(&ws(
        &home,
        &["file", "write", &beta, "branch.txt", "--text", "beta\n"],
    ));
    let up = json(ok(&ws(
        &home,
        &["update", &alpha, "--label", "owner=alice", "--json"],
    )));
    assert_eq!(
        up["labels"],
        serde_json::json!({"branch": "alpha", "owner": "alice"})
    );
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &alpha, "branch.txt"]))),
        "alpha\n"
    );
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &beta, "branch.txt"]))),
        "beta\n"
    );
    assert_eq!(
        stdout(ok(&ws(
            &home,
            &["exec", &beta, "--", "cat note.txt branch.txt"]
        ))),
        "shared\nbeta\n"
    );
    ok(&ws(
        &home,
        &["exec", &alpha, "--", "echo busy > activity.txt"],
    ));
    let list = json(ok(&ws(&home, &["list", "--json"])));
    let ids: Vec<&str> = list["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [alpha.as_str(), beta.as_str()],
        "most recently active first"
    );
    for id in [&alpha, &beta] {
        ok(&ws(&home, &["delete", id]));
    }
    home.assert_clean();
}

#[test]
fn real_vm_workspace_killed_during_create_is_gone() {
    require_debian12();
    let home = Home::new();
    let mut child = std::process::Command::new(pyro_bin())
        .env("PYRO_HOME", home.path())
        .env_remove("PYRO_BACKEND")
        .args(["workspace", "create", "debian:12"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the guest is booting.
    let until = Instant::now() + Duration::from_secs(120);
    while home.jails_left().is_empty() {
        assert!(Instant::now() < until, "no VM started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = std::fs::read_dir(home.path().join("workspaces"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.len() == 16)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let o = ws(&home, &["status", &id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    home.assert_clean();
}

/// The idle deadline in a real guest: a restored agent gets it (and the
/// hostname) from the host's refresh, and the guest powers
/// itself off when the deadline passes with no pyro process alive, even
/// after the pyro process holding a command in it was SIGKILLed. Nothing
/// here may call pyro while waiting: every call counts as activity.
#[test]
fn real_vm_workspace_idle_deadline_and_hostname() {
    require_debian12();
    let home = Home::new();
    let id = create(&home, &["--ttl-seconds", "20"]);
    // Restored from the template: hostname and idle deadline came with the
    // refresh after the restore, not from the kernel command line.
    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    assert_eq!(st["boot_mode"], "restored", "{st}");
    let o = ws(&home, &["exec", &id, "--", "hostname"]);
    let out = stdout(ok(&o));
    assert_eq!(out.trim(), format!("pyro-{id}"), "{out}");
    ok(&ws(
        &home,
        &["file", "write", &id, "kept.txt", "--text", "still here"],
    ));

    // A pyro process in the middle of a command is SIGKILLed: the agent
    // kills the command, and the idle clock starts.
    let mut child = std::process::Command::new(pyro_bin())
        .env("PYRO_HOME", home.path())
        .env_remove("PYRO_BACKEND")
        .args([
            "workspace",
            "exec",
            &id,
            "--timeout-seconds",
            "600",
            "--",
            "sleep 600",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let commands = home.path().join("workspaces").join(&id).join("commands");
    let until = Instant::now() + Duration::from_secs(60);
    let stdout_logs = || {
        std::fs::read_dir(&commands).map_or(0, |rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "stdout"))
                .count()
        })
    };
    // The first exec above left one output log; this one makes the second.
    while stdout_logs() < 2 {
        assert!(Instant::now() < until, "the exec never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    assert!(
        !home.running_processes_left().is_empty(),
        "the VM is already gone"
    );

    // TTL plus 30 s, measured from the kill; not long before the TTL
    // either (an early death would be some other failure). The slack is
    // for a loaded emulated guest: the command may still be spawning when
    // the host goes, and the idle clock starts when the agent has ended it
    // (a full `.ci/run` once saw more than 10 s; alone it takes about 2 s).
    let limit = Duration::from_secs(20 + 30);
    while !home.running_processes_left().is_empty() {
        assert!(
            killed.elapsed() < limit,
            "the guest still runs {} s after its last call was killed, with a TTL of 20 s",
            killed.elapsed().as_secs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        killed.elapsed() >= Duration::from_secs(15),
        "the guest stopped only {} s after its last activity, before its TTL of 20 s",
        killed.elapsed().as_secs()
    );
    // The guest's own agent powered it off (its console says so); nothing
    // has swept the sandbox yet.
    let console: String = std::fs::read_dir(home.path().join("vms"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path().join("console.log")).unwrap_or_default())
        .collect();
    assert!(
        console.contains("idle deadline passed; powering off"),
        "{console}"
    );
    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    assert_eq!(st["state"], "stopped", "{st}");
    let reason = st["state_reason"].as_str().unwrap();
    assert!(reason.contains("idle for its TTL of 20 s"), "{reason}");
    assert!(home.sandboxes_left().is_empty(), "the VM's sandbox is gone");

    ok(&ws(&home, &["start", &id]));
    assert_eq!(
        stdout(ok(&ws(&home, &["file", "read", &id, "kept.txt"]))),
        "still here"
    );
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

//! Guest networking on real Firecracker guests, inside a lab of network
//! namespaces the test owns (see `common::netlab`): no interface under
//! `off`; under an allowlist, allowed names resolve and connect on any
//! port (git over its own protocol), everything else is refused at once
//! and logged; a published port reaches a service from the host's
//! loopback; a policy change applies without a reboot; deleting (or a
//! SIGKILL during create followed by a sweep) leaves no namespace, link,
//! table or helper process.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::netlab::{HOST_ADDR, Lab, METADATA, OTHER, PRIVATE, SERVER, elapsed_ms, run_ok};
use common::{Home, json, require_debian12, stdout};

fn pyro_json(lab: &Lab, home: &Home, args: &[&str]) -> serde_json::Value {
    json(&run_ok(lab.pyro(home).args(args)))
}

fn exec(lab: &Lab, home: &Home, id: &str, script: &str) -> String {
    stdout(&run_ok(&mut lab.bash(home, id, script)))
}

/// `git ls-remote` of the guest's repository through published `port`,
/// from the lab's host namespace.
fn ls_remote(lab: &Lab, port: u64) -> std::process::Output {
    Command::new("nsenter")
        .arg("-t")
        .arg(lab.anchor_pid().to_string())
        .args(["--net", "--", "git", "ls-remote"])
        .arg(format!("git://127.0.0.1:{port}/clone"))
        .output()
        .unwrap()
}

/// `probe ADDR/PORT rc START END` lines: one connect each, timed inside
/// the guest's shell (no fork between the two clock reads).
const PROBES: &str = r#"for t in "$@"; do
  s=$EPOCHREALTIME; : 3<>/dev/tcp/${t%/*}/${t#*/} 2>/dev/null; rc=$?; e=$EPOCHREALTIME
  echo "probe $t $rc $s $e"
done"#;

fn probes(lab: &Lab, home: &Home, id: &str, targets: &[&str]) -> Vec<(String, i32, f64)> {
    let script = format!("set -- {}\n{PROBES}", targets.join(" "));
    exec(lab, home, id, &script)
        .lines()
        .filter_map(|l| l.strip_prefix("probe "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                elapsed_ms(f[2], f[3]),
            )
        })
        .collect()
}

#[test]
fn real_vm_network_policy_allowlists_denials_published_ports_and_cleanup() {
    require_debian12();
    let mut lab = Lab::new("n");
    let home = Home::new();
    for a in [
        format!("{SERVER}:80"),
        format!("{OTHER}:22"),
        format!("{METADATA}:80"),
        format!("{PRIVATE}:5432"),
    ] {
        lab.greeter(&a);
    }
    lab.greeter_in(&lab.host_ns.clone(), &format!("{HOST_ADDR}:22"));
    lab.git_server();
    let _cleanup = Cleanup(&lab, &home);

    // off: no interface but lo.
    let off = pyro_json(&lab, &home, &["workspace", "create", "debian:12", "--json"]);
    let off_id = off["workspace_id"].as_str().unwrap().to_owned();
    assert_eq!(off["network"]["mode"], "off", "{off}");
    assert_eq!(exec(&lab, &home, &off_id, "ls /sys/class/net").trim(), "lo");
    run_ok(lab.pyro(&home).args(["workspace", "delete", &off_id]));

    // An allowlist: git.test on the Git port only.
    let v = pyro_json(
        &lab,
        &home,
        &[
            "workspace",
            "create",
            "debian:12",
            "--network-policy",
            "egress+published-ports",
            "--allow-host",
            "git.test:9418",
            "--json",
        ],
    );
    let id = v["workspace_id"].as_str().unwrap().to_owned();
    assert_eq!(v["network"]["allow_hosts"][0], "git.test:9418", "{v}");
    let names = exec(
        &lab,
        &home,
        &id,
        "ls /sys/class/net | tr '\\n' ' '; echo; cat /proc/sys/kernel/random/boot_id; \
         getent hosts git.test; getent hosts other.test || echo 'other.test unresolved'",
    );
    assert!(names.contains("eth0") && names.contains("lo"), "{names}");
    assert!(
        names.contains(&format!("{SERVER}       git.test"))
            || names.contains(&format!("{SERVER} ")),
        "{names}"
    );
    assert!(names.contains("other.test unresolved"), "{names}");
    let boot_id = names.lines().nth(1).unwrap().to_owned();

    // The same over DNS on TCP (length-prefixed, two queries on one
    // connection; resolvers fall back to it for long answers): git.test's
    // A record, and a refusal for other.test.
    let tcp = exec(
        &lab,
        &home,
        &id,
        "ns=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf); exec 3<>/dev/tcp/$ns/53; \
         printf '\\x00\\x1a\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x03git\\x04test\\x00\\x00\\x01\\x00\\x01' >&3; \
         printf '\\x00\\x1c\\x56\\x78\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x05other\\x04test\\x00\\x00\\x01\\x00\\x01' >&3; \
         timeout 3 cat <&3 | od -An -v -tx1 | tr -d ' \\n'",
    );
    let hex = tcp.trim();
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(bytes.len() > 2, "no answer over TCP: {tcp:?}");
    let first_len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    assert!(bytes.len() >= 2 + first_len, "a cut answer over TCP: {tcp}");
    let (first, rest) = bytes[2..].split_at(first_len);
    assert!(rest.len() > 6, "no second answer on the connection: {tcp}");
    let server: Vec<u8> = SERVER.split('.').map(|o| o.parse().unwrap()).collect();
    assert_eq!(&first[..2], [0x12, 0x34], "{tcp}");
    assert_eq!(first[3] & 0x0f, 0, "git.test over TCP: rcode {tcp}");
    assert!(first.ends_with(&server), "no A record for {SERVER}: {tcp}");
    assert_eq!(&rest[2..4], [0x56, 0x78], "{tcp}");
    assert_ne!(rest[5] & 0x0f, 0, "other.test over TCP resolved: {tcp}");

    // Git over its own protocol through the allowed path.
    let clone = exec(
        &lab,
        &home,
        &id,
        "git clone -q git://git.test:9418/repo /workspace/clone && cat /workspace/clone/README",
    );
    assert!(clone.contains("hello from the lab's git server"), "{clone}");

    // Everything else is refused at once (a reset, not a silent drop).
    let denied = [
        format!("{METADATA}/80"),
        format!("{PRIVATE}/5432"),
        format!("{HOST_ADDR}/22"),
        format!("{OTHER}/22"),
        format!("{SERVER}/80"),
    ];
    let refs: Vec<&str> = denied.iter().map(String::as_str).collect();
    let got = probes(&lab, &home, &id, &refs);
    assert_eq!(got.len(), denied.len(), "{got:?}");
    for (t, rc, ms) in &got {
        assert_ne!(*rc, 0, "{t} was reachable");
        assert!(*ms < 1000.0, "{t} took {ms} ms to be refused");
    }
    let trapped = lab.trapped();
    assert_eq!(trapped.len(), 3, "{trapped:?}");
    assert!(
        trapped.iter().all(|(_, n)| *n == 0),
        "packets reached forbidden addresses: {trapped:?}"
    );

    // Each denial is on record, with its rule.
    let log = pyro_json(&lab, &home, &["workspace", "network", "log", &id, "--json"]);
    let entries = log["denials"].as_array().unwrap();
    for (dest, port, rule) in [
        (METADATA, 80, "link-local"),
        (PRIVATE, 5432, "private"),
        (HOST_ADDR, 22, "host"),
        (OTHER, 22, "not-allowed"),
        (SERVER, 80, "not-allowed"),
    ] {
        assert!(
            entries
                .iter()
                .any(|d| d["destination"] == dest && d["port"] == port && d["rule"] == rule),
            "no {rule} denial for {dest}:{port}: {log}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|d| d["name"] == "other.test" && d["rule"] == "dns"),
        "{log}"
    );
    let status = pyro_json(&lab, &home, &["workspace", "status", &id, "--json"]);
    assert!(status["network_denials"].as_u64().unwrap() >= 6, "{status}");
    // The same log for people: one line per denial, and a cut one says so.
    let text = stdout(&run_ok(lab.pyro(&home).args([
        "workspace",
        "network",
        "log",
        &id,
    ])));
    for want in [
        format!("tcp to {METADATA}:80  refused by rule link-local"),
        "DNS query for other.test  refused by rule dns".to_owned(),
    ] {
        assert!(text.contains(&want), "{want}: {text}");
    }
    let text = stdout(&run_ok(lab.pyro(&home).args([
        "workspace",
        "network",
        "log",
        &id,
        "--limit",
        "1",
    ])));
    assert!(
        text.contains(&format!(
            "(1 of {} denials on record shown; pass --limit for more)",
            log["total"]
        )),
        "{text}"
    );

    // A published port reaches a service in the guest from 127.0.0.1.
    let svc = pyro_json(
        &lab,
        &home,
        &[
            "workspace",
            "service",
            "start",
            &id,
            "git",
            "--publish",
            "9418",
            "--ready-tcp",
            ":9418",
            "--ready-timeout-seconds",
            "240",
            "--json",
            "--",
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--base-path=/workspace",
            "--port=9418",
        ],
    );
    assert_eq!(svc["state"], "ready", "{svc}");
    let port = svc["published_ports"][0]["host_port"].as_u64().unwrap();
    assert_eq!(svc["published_ports"][0]["host_address"], "127.0.0.1");
    let listed = pyro_json(
        &lab,
        &home,
        &["workspace", "service", "list", &id, "--json"],
    );
    assert_eq!(
        listed["services"][0]["published_ports"][0]["host_port"], port,
        "{listed}"
    );
    let refs = ls_remote(&lab, port);
    assert!(stdout(&refs).contains("HEAD"), "{refs:?}");

    // A new policy applies to the running guest, which keeps its boot.
    let before = lab.trapped();
    let set = pyro_json(
        &lab,
        &home,
        &[
            "workspace",
            "network",
            "set",
            &id,
            "--network-policy",
            "egress+published-ports",
            "--allow-host",
            "other.test:22",
            "--json",
        ],
    );
    assert_eq!(set["applied"], "now", "{set}");
    let after = exec(
        &lab,
        &home,
        &id,
        "cat /proc/sys/kernel/random/boot_id; getent hosts other.test; \
         exec 3<>/dev/tcp/other.test/22; head -1 <&3; \
         getent hosts git.test || echo 'git.test unresolved'",
    );
    assert!(after.starts_with(&boot_id), "rebooted: {after}");
    assert!(after.contains(&format!("hello from {OTHER}:22")), "{after}");
    assert!(after.contains("git.test unresolved"), "{after}");
    let trapped = lab.trapped();
    assert_eq!(trapped.len(), before.len());
    for ((a, n0), (_, n1)) in before.iter().zip(&trapped) {
        if a != OTHER {
            assert_eq!(n0, n1, "packets reached {a}: {trapped:?}");
        }
    }
    // The address git.test resolved to before is refused now, by address
    // too, and logged.
    let got = probes(&lab, &home, &id, &[&format!("{SERVER}/9418")]);
    assert!(got[0].1 != 0 && got[0].2 < 1000.0, "{got:?}");
    let log = pyro_json(&lab, &home, &["workspace", "network", "log", &id, "--json"]);
    assert!(
        log["denials"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["destination"] == SERVER && d["port"] == 9418 && d["rule"] == "not-allowed"),
        "{log}"
    );
    // A policy without published ports closes them (said for people here).
    let set = stdout(&run_ok(lab.pyro(&home).args([
        "workspace",
        "network",
        "set",
        &id,
        "--allow-host",
        "other.test:22",
    ])));
    assert!(
        set.contains(&format!(
            "Network of {id}: egress (allow other.test:22) (in force now)"
        )),
        "{set}"
    );
    assert!(
        set.lines()
            .any(|l| l.starts_with("Note: ") && l.contains("published ports were closed")),
        "{set}"
    );
    assert!(
        !ls_remote(&lab, port).status.success(),
        "the published port still answers"
    );

    // Delete: nothing of the network is left.
    run_ok(lab.pyro(&home).args(["workspace", "delete", &id]));
    assert_eq!(lab.plumbing_left(), Vec::<String>::new());
    assert_eq!(Lab::helpers_left(home.path()), Vec::<u32>::new());
    home.assert_clean();

    // The demo: egress to its own server, a refused metadata connection.
    let demo = pyro_json(&lab, &home, &["demo", "--network", "--json"]);
    let net = &demo["network"];
    assert_eq!(
        net["egress_answer"], "hello from the pyro demo server",
        "{demo}"
    );
    assert_eq!(net["denied_refused"], true, "{demo}");
    assert_eq!(net["denied_rule"], "link-local", "{demo}");
    assert!(net["denied_ms"].as_f64().unwrap() < 1000.0, "{demo}");
    assert_eq!(lab.plumbing_left(), Vec::<String>::new());

    // A create killed once its network exists leaves nothing after the
    // next command's sweep.
    let mut create = lab
        .pyro(&home)
        .args([
            "workspace",
            "create",
            "debian:12",
            "--allow-host",
            "git.test",
            "--json",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while lab.plumbing_left().is_empty() {
        assert!(Instant::now() < until, "the network never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    create.kill().unwrap();
    create.wait().unwrap();
    run_ok(lab.pyro(&home).args(["workspace", "list"]));
    assert_eq!(lab.plumbing_left(), Vec::<String>::new());
    assert_eq!(Lab::helpers_left(home.path()), Vec::<u32>::new());
    home.assert_clean();
}

/// Deletes every workspace left when the test fails half way.
struct Cleanup<'a>(&'a Lab, &'a Home);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let Ok(o) = self
            .0
            .pyro(self.1)
            .args(["workspace", "list", "--json"])
            .output()
        else {
            return;
        };
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        for w in v["workspaces"].as_array().into_iter().flatten() {
            if let Some(id) = w["workspace_id"].as_str() {
                let _ = self
                    .0
                    .pyro(self.1)
                    .args(["workspace", "delete", id])
                    .output();
            }
        }
    }
}

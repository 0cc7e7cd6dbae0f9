//! Guest networking cost, printed as figures (run with `make bench`, as
//! root, with debian:12 pulled): TCP connect latency and throughput from a
//! guest to a test server, through pyro's policy (filter table, learned
//! sets, denial logging) against the same guest with its namespace's
//! rules replaced by a bare masquerade (a plain TAP without rules), in the
//! same run and the same VM. Everything runs in the lab of network
//! namespaces the tests use (`tests/common/netlab.rs`): no packet leaves
//! the machine.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::netlab::{Lab, SERVER, run_ok};

/// Connections timed per path.
const CONNECTS: usize = 20;
/// Bytes sent per throughput run.
const MEGABYTES: u64 = 4;

const SCRIPT: &str = r#"
getent hosts git.test > /dev/null
t=""
for i in $(seq 1 CONNECTS); do
  s=$EPOCHREALTIME; : 3<>/dev/tcp/SERVER/5002; e=$EPOCHREALTIME; t="$t $s:$e"
done
echo "connects$t"
head -c MEGABYTESM /dev/zero > /dev/tcp/SERVER/5001
echo sent
"#;

type Sink = std::sync::Arc<std::sync::Mutex<Vec<(u64, f64)>>>;

fn measure(lab: &Lab, home: &common::Home, id: &str, sink: &Sink) -> (Vec<f64>, f64) {
    let script = SCRIPT
        .replace("CONNECTS", &CONNECTS.to_string())
        .replace("SERVER", SERVER)
        .replace("MEGABYTES", &MEGABYTES.to_string());
    let o = run_ok(&mut lab.bash(home, id, &script));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut connects: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("connects "))
        .unwrap_or_else(|| panic!("no connect figures: {text}"))
        .split_whitespace()
        .map(|p| {
            let (s, e) = p.split_once(':').unwrap();
            (e.parse::<f64>().unwrap() - s.parse::<f64>().unwrap()) * 1000.0
        })
        .collect();
    connects.sort_by(f64::total_cmp);
    // Measured where the bytes arrive, from the first to the last.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (bytes, secs) = loop {
        if let Some(r) = sink.lock().unwrap().pop() {
            break r;
        }
        assert!(
            std::time::Instant::now() < until,
            "the sink saw no connection end"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(bytes, MEGABYTES << 20, "{text}");
    (connects, bytes as f64 / (1 << 20) as f64 / secs)
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("network: skipped (needs root to build its namespaces)");
        return;
    }
    common::require_debian12();
    let lab = Lab::new("b");
    let sink = lab.sink(&format!("{SERVER}:5001"));
    lab.greeter(&format!("{SERVER}:5002"));
    let home = common::Home::new();
    let v = common::json(&run_ok(lab.pyro(&home).args([
        "workspace",
        "create",
        "debian:12",
        "--allow-host",
        "git.test",
        "--json",
    ])));
    let id = v["workspace_id"].as_str().unwrap().to_owned();
    // Warm the guest's page cache (a cold guest's first commands are slow
    // under PVM), then measure the policy path.
    let _ = measure(&lab, &home, &id, &sink);
    let (policy_c, policy_tp) = measure(&lab, &home, &id, &sink);
    // The same VM with a bare masquerade in place of the policy table.
    let vm = std::fs::read_dir(home.path().join("vms"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let bare = "table inet pyro\ndelete table inet pyro\ntable ip bare {\n chain nat_out {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"uplink\" masquerade\n }\n}\n";
    let mut nft = std::process::Command::new("nsenter")
        .arg("-t")
        .arg(lab.anchor_pid().to_string())
        .args(["--net", "--mount", "--", "ip", "netns", "exec"])
        .arg(format!("pyro-{vm}"))
        .args(["nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut nft.stdin.take().unwrap(), bare.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success());
    let (bare_c, bare_tp) = measure(&lab, &home, &id, &sink);
    run_ok(lab.pyro(&home).args(["workspace", "delete", &id]));
    println!("network: guest -> test server, {CONNECTS} connects and {MEGABYTES} MiB per path");
    for (name, c, tp) in [
        ("policy (pyro rules)", &policy_c, policy_tp),
        ("plain TAP (no rules)", &bare_c, bare_tp),
    ] {
        println!(
            "  {name:<22} connect p50 {:>7.2} ms  p95 {:>7.2} ms  throughput {:>8.1} MiB/s",
            pct(c, 0.5),
            pct(c, 0.95),
            tp
        );
    }
    println!(
        "  policy / plain: connect p50 x{:.2}, throughput x{:.2}",
        pct(&policy_c, 0.5) / pct(&bare_c, 0.5),
        policy_tp / bare_tp
    );
}

//! Creating and removing a VM's namespace, TAP, uplink and tables with
//! `ip` and `nft`. Every command has a deadline; removal is idempotent, so
//! the same code cleans up a finished VM, a failed start and an orphan.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::policy::Policy;
use crate::{
    GATEWAY_IP, GUEST_PREFIX, NetError, TAP_NAME, UPLINK_NAME, UPLINK_POOL, host_link_name,
    host_table_name, netns_name, rules,
};

/// How long one `ip` or `nft` command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `program args` (feeding `input` on stdin) and returns its stdout.
pub(crate) fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
    let what = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Command {
            what: what.clone(),
            detail: format!("cannot run {program}: {e} (is it installed? see `pyro doctor`)"),
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    // Output is small (a ruleset, a link list); read it on threads so a
    // full pipe cannot stall the deadline.
    let out = child.stdout.take().map(read_on_thread);
    let err = child.stderr.take().map(read_on_thread);
    let until = Instant::now() + COMMAND_DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NetError::Command {
                    what,
                    detail: format!("no answer within {} s", COMMAND_DEADLINE.as_secs()),
                });
            }
        }
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        let mut detail = stderr.trim().to_owned();
        detail.truncate(2000);
        Err(NetError::Command { what, detail })
    }
}

fn read_on_thread(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(&mut r, 4 << 20), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `args` inside namespace `ns`.
pub(crate) fn run_in(ns: &str, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    run("ip", &all, input)
}

/// What a VM's network is made of, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plumbing {
    /// The VM id the names derive from.
    pub id: String,
    /// The namespace.
    pub netns: String,
    /// The host end of the uplink and its address.
    pub host_link: String,
    /// The host end's address.
    pub host_addr: Ipv4Addr,
    /// The namespace end's address.
    pub ns_addr: Ipv4Addr,
    /// The host-side table.
    pub host_table: String,
}

/// Whether the host can network guests (with traffic leaving the host:
/// `forwarding`); the reason and the fix when not.
pub fn preflight(forwarding: bool) -> Result<(), NetError> {
    preflight_of(&HostFacts {
        root: nix::unistd::geteuid().is_root(),
        tun: Path::new("/dev/net/tun").exists(),
        ip: which("ip").is_some(),
        nft: which("nft").is_some(),
        forwarding: !forwarding || forwarding_enabled(),
    })
}

/// What [`preflight`] looks at on the host.
#[derive(Debug, Clone, Copy)]
struct HostFacts {
    root: bool,
    tun: bool,
    ip: bool,
    nft: bool,
    /// IPv4 forwarding is on, or not needed.
    forwarding: bool,
}

/// [`preflight`]'s decision from what it found: the first thing missing.
fn preflight_of(f: &HostFacts) -> Result<(), NetError> {
    if !f.root {
        return Err(NetError::Unsupported(
            "guest networking needs root (it creates namespaces, links and nftables tables); \
             run pyro as root or use the network policy off"
                .into(),
        ));
    }
    if !f.tun {
        return Err(NetError::Unsupported(
            "/dev/net/tun is missing: load the tun module (`modprobe tun`)".into(),
        ));
    }
    for (tool, have) in [("ip", f.ip), ("nft", f.nft)] {
        if !have {
            return Err(NetError::Unsupported(format!(
                "`{tool}` is not installed: install the {} package",
                if tool == "ip" { "iproute2" } else { "nftables" }
            )));
        }
    }
    if !f.forwarding {
        return Err(NetError::Unsupported(
            "IPv4 forwarding is off on this host, so guest traffic cannot leave it: enable it \
             with `sysctl -w net.ipv4.ip_forward=1` (pyro never changes it itself)"
                .into(),
        ));
    }
    Ok(())
}

/// Whether this namespace forwards IPv4.
pub fn forwarding_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "1")
}

/// Where `tool` is on `PATH` (or the usual sbin directories).
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The host namespace's own IPv4 addresses.
pub fn host_addresses() -> Result<Vec<Ipv4Addr>, NetError> {
    let out = run("ip", &["-j", "-4", "addr", "show"], None)?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| NetError::Command {
        what: "ip -j -4 addr show".into(),
        detail: format!("unreadable output: {e}"),
    })?;
    let mut addrs: Vec<Ipv4Addr> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("addr_info")?.as_array())
        .flatten()
        .filter_map(|a| a.get("local")?.as_str()?.parse().ok())
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// Picks the lowest uplink slot no host address uses (call under a lock
/// that serialises set-ups). Refuses when a host network already overlaps
/// pyro's ranges.
pub fn allocate_slot(host_addrs: &[Ipv4Addr]) -> Result<u32, NetError> {
    let slots = 1u32 << (32 - u32::from(UPLINK_POOL.prefix()) - 2);
    let used: std::collections::HashSet<u32> = host_addrs
        .iter()
        .filter(|a| UPLINK_POOL.contains(**a))
        .map(|a| (u32::from(*a) - u32::from(UPLINK_POOL.addr())) / 4)
        .collect();
    (0..slots).find(|s| !used.contains(s)).ok_or_else(|| {
        NetError::Unsupported("every uplink address is taken: too many networked VMs".into())
    })
}

/// Creates VM `id`'s namespace, TAP (usable by `tap_uid`), uplink and
/// tables under `policy`. On failure everything made so far is removed.
pub fn setup(id: &str, tap_uid: Option<u32>, policy: &Policy) -> Result<Plumbing, NetError> {
    let host_addrs = host_addresses()?;
    let slot = allocate_slot(&host_addrs)?;
    let (host_addr, ns_addr) = rules::uplink_addrs(UPLINK_POOL, slot);
    let p = Plumbing {
        id: id.to_owned(),
        netns: netns_name(id),
        host_link: host_link_name(id),
        host_addr,
        ns_addr,
        host_table: host_table_name(id),
    };
    if let Err(e) = build(&p, tap_uid, policy, &host_addrs) {
        let _ = teardown(id);
        return Err(e);
    }
    Ok(p)
}

fn build(
    p: &Plumbing,
    tap_uid: Option<u32>,
    policy: &Policy,
    host_addrs: &[Ipv4Addr],
) -> Result<(), NetError> {
    let ns = p.netns.as_str();
    run("ip", &["netns", "add", ns], None)?;
    run_in(ns, &["ip", "link", "set", "lo", "up"], None)?;
    let uid = tap_uid.map(|u| u.to_string());
    let mut tap = vec!["ip", "tuntap", "add", "dev", TAP_NAME, "mode", "tap"];
    if let Some(u) = &uid {
        tap.extend(["user", u.as_str(), "group", u.as_str()]);
    }
    run_in(ns, &tap, None)?;
    let gw = format!("{GATEWAY_IP}/{GUEST_PREFIX}");
    run_in(ns, &["ip", "addr", "add", &gw, "dev", TAP_NAME], None)?;
    run_in(ns, &["ip", "link", "set", TAP_NAME, "up"], None)?;
    run(
        "ip",
        &[
            "link",
            "add",
            &p.host_link,
            "type",
            "veth",
            "peer",
            "name",
            UPLINK_NAME,
            "netns",
            ns,
        ],
        None,
    )?;
    run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{}/30", p.host_addr),
            "dev",
            &p.host_link,
        ],
        None,
    )?;
    run("ip", &["link", "set", &p.host_link, "up"], None)?;
    run_in(
        ns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/30", p.ns_addr),
            "dev",
            UPLINK_NAME,
        ],
        None,
    )?;
    run_in(ns, &["ip", "link", "set", UPLINK_NAME, "up"], None)?;
    run_in(
        ns,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &p.host_addr.to_string(),
        ],
        None,
    )?;
    // Rules before forwarding, so nothing passes unfiltered.
    apply_policy(p, policy, host_addrs)?;
    run_in(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"], None)?;
    Ok(())
}

/// Replaces the namespace's rules and the host's table with `policy`'s
/// (one transaction each). Connections of earlier policies are refused at
/// their next packet unless the new one allows them too.
pub fn apply_policy(
    p: &Plumbing,
    policy: &Policy,
    host_addrs: &[Ipv4Addr],
) -> Result<(), NetError> {
    let mut addrs = host_addrs.to_vec();
    addrs.retain(|a| !a.is_loopback());
    // A new mark per application (never 0, the mark of unmarked traffic).
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| (d.as_millis() as u32).max(1));
    run_in(
        &p.netns,
        &["nft", "-f", "-"],
        Some(&rules::namespace_ruleset(policy, &addrs, generation)),
    )?;
    let host = rules::host_ruleset(&p.host_table, p.ns_addr, &p.host_link, &addrs, policy);
    run("nft", &["-f", "-"], Some(&host)).map(|_| ())
}

/// How many denials were refused without a log entry (over the log rate).
pub fn unlogged_denials(netns: &str) -> Option<u64> {
    let out = run_in(
        netns,
        &["nft", "-j", "list", "counter", "inet", "pyro", "unlogged"],
        None,
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.get("nftables")?
        .as_array()?
        .iter()
        .find_map(|e| e.get("counter")?.get("packets")?.as_u64())
}

/// Removes VM `id`'s namespace (and with it the TAP, the uplink and the
/// namespace's table) and its host table. Missing parts are fine.
pub fn teardown(id: &str) -> Result<(), NetError> {
    let mut problems = Vec::new();
    let ns = netns_name(id);
    // Each part may be gone already (or go while we look: a veth pair
    // leaves with its namespace): only a failure to remove what is still
    // there counts.
    if netns_exists(&ns)
        && let Err(e) = run("ip", &["netns", "del", &ns], None)
        && netns_exists(&ns)
    {
        problems.push(e.to_string());
    }
    let link = host_link_name(id);
    if link_exists(&link)
        && let Err(e) = run("ip", &["link", "del", &link], None)
        && link_exists(&link)
    {
        problems.push(e.to_string());
    }
    let table = host_table_name(id);
    if host_tables()?.contains(&table)
        && let Err(e) = run("nft", &["delete", "table", "ip", &table], None)
        && host_tables()?.contains(&table)
    {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(NetError::Command {
            what: format!("removing the network of {id}"),
            detail: problems.join("; "),
        })
    }
}

fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name], None).is_ok()
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn host_tables() -> Result<Vec<String>, NetError> {
    if which("nft").is_none() {
        return Ok(Vec::new());
    }
    let out = run("nft", &["list", "tables", "ip"], None)?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("table ip "))
        .map(|t| t.trim().to_owned())
        .collect())
}

/// VM ids that have a namespace, a host link or a host table of pyro's.
pub fn existing_ids() -> Vec<String> {
    let mut ids = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            if let Some(id) = e.file_name().to_str().and_then(|n| n.strip_prefix("pyro-")) {
                ids.push(id.to_owned());
            }
        }
    }
    // Links as this namespace sees them (`/sys` may show another's).
    let links = run("ip", &["-j", "link", "show"], None).unwrap_or_default();
    if let Ok(serde_json::Value::Array(links)) = serde_json::from_str(&links) {
        for l in links {
            if let Some(id) = l.get("ifname").and_then(|n| n.as_str()?.strip_prefix("pv")) {
                ids.push(id.to_owned());
            }
        }
    }
    for t in host_tables().unwrap_or_default() {
        if let Some(id) = t.strip_prefix("pyro_") {
            ids.push(id.to_owned());
        }
    }
    ids.retain(|id| crate::valid_id(id));
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests;

//! The per-VM network daemon: the guest's only DNS server (on the gateway
//! address, answering names the policy allows and refusing the rest), and
//! the reader of the namespace's NFLOG group, which turns each logged
//! denial into a line of the denial log.
//!
//! It runs in the host's namespace (names resolve the way the host
//! resolves them) and holds sockets created in the VM's namespace. It ends
//! when its VM does, and re-reads its policy on `SIGHUP`.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyro_vmm::process::ProcessId;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::denials::{Denial, Writer};
use crate::dns::{self, Rcode};
use crate::nflog::{self, NflogSocket};
use crate::policy::Policy;
use crate::{GATEWAY_IP, NFLOG_GROUP, NetError, rules};

/// The daemon's configuration file in its directory.
pub const CONFIG_FILE: &str = "network.json";
/// Written once the daemon serves DNS (holds its pid).
pub const READY_FILE: &str = "daemon.ready";
/// Written once the daemon has taken a reloaded policy (holds its
/// generation).
pub const APPLIED_FILE: &str = "policy.applied";
/// Layout version of [`Config`].
pub const CONFIG_VERSION: u32 = 1;

/// Host name lookups in flight at most.
const MAX_LOOKUPS: usize = 8;
/// DNS-over-TCP connections at once at most.
const MAX_TCP: usize = 8;
/// How long a host lookup may take.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(4);
/// How long an answer stays cached (and its TTL to the guest).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Most addresses the resolver lets into the policy over the VM's life.
const MAX_LEARNED: usize = 4096;

/// What the daemon serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// [`CONFIG_VERSION`].
    pub version: u32,
    /// The VM's namespace.
    pub netns: String,
    /// The policy.
    pub policy: Policy,
    /// The VM's process: the daemon ends when it does.
    pub vm: Option<ProcessId>,
    /// Where denials are logged.
    pub log_dir: PathBuf,
    /// Which policy this is: the daemon writes it to [`APPLIED_FILE`] once
    /// it has taken it.
    #[serde(default)]
    pub generation: u64,
}

impl Config {
    /// Reads `dir`'s configuration.
    pub fn load(dir: &Path) -> Result<Self, NetError> {
        let path = dir.join(CONFIG_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|e| NetError::io(format!("reading {}", path.display()), e))?;
        let c: Config = serde_json::from_slice(&bytes).map_err(|e| {
            NetError::io(
                format!("parsing {}", path.display()),
                std::io::Error::other(e),
            )
        })?;
        if c.version != CONFIG_VERSION {
            return Err(NetError::Unsupported(format!(
                "{} has layout version {} but this pyro reads {CONFIG_VERSION}",
                path.display(),
                c.version
            )));
        }
        Ok(c)
    }

    /// Writes it atomically.
    pub fn save(&self, dir: &Path) -> Result<(), NetError> {
        let tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other);
        bytes
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, dir.join(CONFIG_FILE)))
            .map_err(|e| NetError::io(format!("writing {}", dir.join(CONFIG_FILE).display()), e))
    }
}

/// Sockets the daemon holds in the VM's namespace.
struct NsSockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    nflog: NflogSocket,
}

/// Creates the sockets on a thread that has entered namespace `netns` (the
/// sockets stay in it; the rest of the process does not move).
fn open_in_namespace(netns: &str) -> Result<NsSockets, NetError> {
    let path = PathBuf::from("/run/netns").join(netns);
    let ns = std::fs::File::open(&path)
        .map_err(|e| NetError::io(format!("opening {}", path.display()), e))?;
    let what = format!("opening the DNS and log sockets in {netns}");
    std::thread::spawn(move || -> std::io::Result<NsSockets> {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let addr = SocketAddr::from((GATEWAY_IP, 53));
        let udp = std::net::UdpSocket::bind(addr)?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind(addr)?;
        tcp.set_nonblocking(true)?;
        let nflog = NflogSocket::bind(NFLOG_GROUP, 128)?;
        Ok(NsSockets { udp, tcp, nflog })
    })
    .join()
    .map_err(|_| NetError::io(what.clone(), std::io::Error::other("the thread panicked")))?
    .map_err(|e| NetError::io(what, e))
}

impl std::os::fd::AsRawFd for NflogSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// A host lookup's outcome.
type Lookup = Result<Vec<Ipv4Addr>, Rcode>;

struct State {
    dir: PathBuf,
    config: Mutex<Config>,
    /// Names answered: their addresses and when the answer expires.
    cache: Mutex<HashMap<String, (Lookup, Instant)>>,
    /// Addresses let into the policy, per name.
    learned: Mutex<HashMap<String, Vec<Ipv4Addr>>>,
    /// What is in the `dns_allow` set: per address, its ports (`None`:
    /// every port). Held across each change of the set, so a change made
    /// for an older policy never lands after a reload.
    allowed: tokio::sync::Mutex<HashMap<Ipv4Addr, Option<BTreeSet<u16>>>>,
    /// Bumped by each reload.
    generation: std::sync::atomic::AtomicU64,
    log: Mutex<Option<Writer>>,
    /// Refused names not logged one by one (over the log rate) since the
    /// last summary entry, and the current second's count.
    dns_denials: Mutex<(u64, u64, u64)>,
    lookups: Arc<Semaphore>,
}

impl State {
    /// A daemon's state for `config`, with `dir` its directory: nothing
    /// answered, learned or let in yet.
    fn new(dir: &Path, config: Config) -> Self {
        Self {
            dir: dir.to_owned(),
            config: Mutex::new(config),
            cache: Mutex::new(HashMap::new()),
            learned: Mutex::new(HashMap::new()),
            allowed: tokio::sync::Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            log: Mutex::new(None),
            dns_denials: Mutex::new((0, 0, 0)),
            lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
        }
    }

    fn policy(&self) -> Policy {
        lock(&self.config).policy.clone()
    }

    fn deny(&self, d: Denial) {
        let mut log = lock(&self.log);
        if log.is_none() {
            let dir = lock(&self.config).log_dir.clone();
            *log = Writer::open(&dir).ok();
        }
        if let Some(w) = log.as_mut()
            && let Err(e) = w.append(&d)
        {
            tracing::warn!("writing the denial log: {e}");
            *log = None;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the daemon for the network directory `dir` until its VM ends.
pub fn run(dir: &Path) -> Result<(), NetError> {
    let config = Config::load(dir)?;
    let sockets = open_in_namespace(&config.netns)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NetError::io("starting a runtime", e))?;
    rt.block_on(serve(dir, config, sockets))
}

async fn serve(dir: &Path, config: Config, s: NsSockets) -> Result<(), NetError> {
    let vm = config.vm;
    let state = Arc::new(State::new(dir, config));
    let udp = Arc::new(
        tokio::net::UdpSocket::from_std(s.udp).map_err(|e| NetError::io("DNS socket", e))?,
    );
    let tcp =
        tokio::net::TcpListener::from_std(s.tcp).map_err(|e| NetError::io("DNS socket", e))?;
    // SAFETY: the descriptor is owned by the socket the AsyncFd holds, and
    // stays open (and is not handed elsewhere) until the AsyncFd drops it.
    let nflog = unsafe { tokio::io::unix::AsyncFd::register(s.nflog) }
        .map_err(|e| NetError::io("NFLOG socket", e.into()))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| NetError::io("SIGHUP handler", e))?;
    // pyro stops the daemon with SIGTERM: it ends here, after the denials
    // already read are in the log.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| NetError::io("SIGTERM handler", e))?;
    std::fs::write(dir.join(READY_FILE), std::process::id().to_string())
        .map_err(|e| NetError::io("writing the ready file", e))?;
    tokio::spawn(serve_udp(udp, state.clone()));
    tokio::spawn(serve_tcp(tcp, state.clone()));
    tokio::spawn(read_denials(nflog, state.clone()));
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&state).await,
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {
                if vm.is_some_and(|p| !p.is_alive()) {
                    return Ok(());
                }
            }
        }
    }
}

/// Takes a new policy: forgets answers, empties the `dns_allow` set
/// (dropping anything an answer for the old policy may have added since
/// the rules were replaced), lets the addresses of names still allowed
/// back in, and says so in [`APPLIED_FILE`].
async fn reload(state: &Arc<State>) {
    let config = match Config::load(&state.dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("reloading: {e}");
            return;
        }
    };
    let applied = config.generation;
    let mut allowed = state.allowed.lock().await;
    state
        .generation
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    *lock(&state.config) = config;
    lock(&state.cache).clear();
    let policy = state.policy();
    let netns = lock(&state.config).netns.clone();
    allowed.clear();
    let flush = "flush set inet pyro dns_allow\n".to_owned();
    let _ = nft_in(&netns, flush).await;
    let learned: Vec<(String, Vec<Ipv4Addr>)> = {
        let mut l = lock(&state.learned);
        l.retain(|name, _| policy.restricted() && policy.ports_for(name).is_some());
        l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    for (name, addrs) in learned {
        if let Some(ports) = policy.ports_for(&name) {
            let _ = add_allowed(&mut allowed, &netns, &addrs, ports.as_deref()).await;
        }
    }
    drop(allowed);
    let _ = std::fs::write(state.dir.join(APPLIED_FILE), applied.to_string());
}

async fn serve_udp(sock: Arc<tokio::net::UdpSocket>, state: Arc<State>) {
    let mut buf = vec![0u8; dns::MAX_MESSAGE + 1];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let msg = buf[..n].to_vec();
        let Ok(permit) = state.lookups.clone().try_acquire_owned() else {
            // Busy: say so at once rather than queue without bound.
            if let Ok(q) = dns::parse_query(&msg) {
                let _ = sock
                    .send_to(&dns::reply_with(&msg, &q, Rcode::ServFail), peer)
                    .await;
            }
            continue;
        };
        let (sock, state) = (sock.clone(), state.clone());
        tokio::spawn(async move {
            // Held for the task's life: bounds lookups in flight.
            let _permit = permit;
            if let Some(reply) = answer(&state, &msg).await {
                let _ = sock.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, state: Arc<State>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closes the connection
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            for _ in 0..16 {
                let one = async {
                    let len = conn.read_u16().await.ok()? as usize;
                    if len == 0 || len > dns::MAX_MESSAGE {
                        return None;
                    }
                    let mut msg = vec![0u8; len];
                    conn.read_exact(&mut msg).await.ok()?;
                    // Lookups in flight are bounded for both transports.
                    let _permit = state.lookups.clone().acquire_owned().await.ok()?;
                    let reply = answer(&state, &msg).await?;
                    let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&reply);
                    conn.write_all(&out).await.ok()
                };
                match tokio::time::timeout(Duration::from_secs(10), one).await {
                    Ok(Some(())) => {}
                    _ => return,
                }
            }
        });
    }
}

/// Refused names logged per second at most; beyond that they are counted
/// and the count is logged as one entry.
const DNS_LOG_PER_SECOND: u64 = 20;

impl State {
    fn deny_name(&self, name: &str) {
        self.deny_name_at(name, now() as u64);
    }

    /// [`State::deny_name`] for a refusal in `second` (of the epoch).
    fn deny_name_at(&self, name: &str, second: u64) {
        let summary = {
            let mut d = lock(&self.dns_denials);
            if d.2 != second {
                let suppressed = d.0;
                *d = (0, 0, second);
                Some(suppressed).filter(|n| *n > 0)
            } else {
                None
            }
        };
        if let Some(n) = summary {
            self.deny(Denial {
                time: now(),
                protocol: "dns".into(),
                destination: None,
                port: None,
                name: None,
                rule: "dns".into(),
                unlogged: Some(n),
            });
        }
        let log_it = {
            let mut d = lock(&self.dns_denials);
            d.1 += 1;
            if d.1 > DNS_LOG_PER_SECOND {
                d.0 += 1;
                false
            } else {
                true
            }
        };
        if log_it {
            self.deny(Denial {
                time: now(),
                protocol: "dns".into(),
                destination: None,
                port: None,
                name: Some(name.to_owned()),
                rule: "dns".into(),
                unlogged: None,
            });
        }
    }
}

/// The reply to one query (`None`: drop it).
async fn answer(state: &Arc<State>, msg: &[u8]) -> Option<Vec<u8>> {
    let q = match dns::parse_query(msg) {
        Ok(q) => q,
        Err(_) => return dns::format_error(msg),
    };
    if q.qclass != dns::CLASS_IN {
        return Some(dns::reply_with(msg, &q, Rcode::NotImp));
    }
    let generation = state.generation.load(std::sync::atomic::Ordering::SeqCst);
    let policy = state.policy();
    let Some(ports) = policy.ports_for(&q.name) else {
        state.deny_name(&q.name);
        return Some(dns::reply_with(msg, &q, Rcode::Refused));
    };
    if q.qtype != dns::TYPE_A {
        // Guests have IPv4 only; other types get an empty answer.
        return Some(dns::answer(msg, &q, &[], CACHE_TTL.as_secs() as u32));
    }
    let addrs = match lookup(state, &q.name).await {
        Ok(a) => a,
        Err(rcode) => return Some(dns::reply_with(msg, &q, rcode)),
    };
    if policy.restricted()
        && let_in(state, generation, &q.name, &addrs, ports.as_deref())
            .await
            .is_err()
    {
        return Some(dns::reply_with(msg, &q, Rcode::ServFail));
    }
    Some(dns::answer(msg, &q, &addrs, CACHE_TTL.as_secs() as u32))
}

/// Why an answer's addresses were not let into the `dns_allow` set (the
/// guest gets SERVFAIL).
#[derive(Debug, PartialEq, Eq)]
enum NotLetIn {
    /// The policy was reloaded since the answer was asked for.
    Stale,
    /// The set holds [`MAX_LEARNED`] addresses, or would with these.
    Full,
    /// `nft` could not change the set.
    Nft,
}

/// Lets `name`'s `addrs` into the `dns_allow` set on `ports` (`None`:
/// every port) for the policy of `generation`, and remembers them as
/// learned for `name`.
async fn let_in(
    state: &Arc<State>,
    generation: u64,
    name: &str,
    addrs: &[Ipv4Addr],
    ports: Option<&[u16]>,
) -> Result<(), NotLetIn> {
    let netns = lock(&state.config).netns.clone();
    let mut allowed = state.allowed.lock().await;
    // A reload since the policy was read: this answer is for a policy no
    // longer in force.
    if state.generation.load(std::sync::atomic::Ordering::SeqCst) != generation {
        return Err(NotLetIn::Stale);
    }
    if !room_for(&allowed, addrs) {
        tracing::warn!(
            "the resolved addresses let into the policy are at their cap ({MAX_LEARNED})"
        );
        return Err(NotLetIn::Full);
    }
    add_allowed(&mut allowed, &netns, addrs, ports)
        .await
        .map_err(|()| NotLetIn::Nft)?;
    drop(allowed);
    let mut l = lock(&state.learned);
    let e = l.entry(name.to_owned()).or_default();
    for a in addrs {
        if !e.contains(a) {
            e.push(*a);
        }
    }
    Ok(())
}

/// Whether the `dns_allow` set may take `addrs`: those not in it yet must
/// fit under [`MAX_LEARNED`] (addresses already there cost nothing).
fn room_for(allowed: &HashMap<Ipv4Addr, Option<BTreeSet<u16>>>, addrs: &[Ipv4Addr]) -> bool {
    let new = addrs.iter().filter(|a| !allowed.contains_key(a)).count();
    allowed.len() + new <= MAX_LEARNED
}

async fn lookup(state: &Arc<State>, name: &str) -> Result<Vec<Ipv4Addr>, Rcode> {
    if let Some((a, until)) = lock(&state.cache).get(name)
        && *until > Instant::now()
    {
        return a.clone();
    }
    let found = tokio::time::timeout(LOOKUP_DEADLINE, tokio::net::lookup_host((name, 0))).await;
    // Failures are remembered too, so a name that fails slowly is not asked
    // of the host again and again.
    let answer: Lookup = match found {
        Err(_) => Err(Rcode::ServFail),
        Ok(Err(_)) => Err(Rcode::NxDomain),
        Ok(Ok(it)) => {
            let mut v: Vec<Ipv4Addr> = it
                .filter_map(|a| match a.ip() {
                    std::net::IpAddr::V4(v4) => Some(v4),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect();
            v.sort();
            v.dedup();
            v.truncate(32);
            Ok(v)
        }
    };
    let mut cache = lock(&state.cache);
    if cache.len() > 1024 {
        cache.clear();
    }
    cache.insert(
        name.to_owned(),
        (answer.clone(), Instant::now() + CACHE_TTL),
    );
    answer
}

/// Lets `addrs` on `ports` (`None`: every port) into the `dns_allow` set,
/// adding only what is not there yet (a widened address replaces its
/// narrower entries: nftables refuses overlapping intervals).
async fn add_allowed(
    allowed: &mut HashMap<Ipv4Addr, Option<BTreeSet<u16>>>,
    netns: &str,
    addrs: &[Ipv4Addr],
    ports: Option<&[u16]>,
) -> Result<(), ()> {
    let mut script = String::new();
    let mut next = allowed.clone();
    for a in addrs {
        match (next.get(a).cloned(), ports) {
            (Some(None), _) => {}
            (Some(Some(have)), None) => {
                let old: Vec<u16> = have.into_iter().collect();
                script.push_str(&format!(
                    "delete element inet pyro dns_allow {{ {} }}\n",
                    rules::dns_allow_elements(&[*a], Some(&old)).join(", ")
                ));
                script.push_str(&rules::add_dns_allow(&rules::dns_allow_elements(
                    &[*a],
                    None,
                )));
                next.insert(*a, None);
            }
            (None, None) => {
                script.push_str(&rules::add_dns_allow(&rules::dns_allow_elements(
                    &[*a],
                    None,
                )));
                next.insert(*a, None);
            }
            (have, Some(ps)) => {
                let mut have = have.flatten().unwrap_or_default();
                let new: Vec<u16> = ps.iter().copied().filter(|p| !have.contains(p)).collect();
                if !new.is_empty() {
                    script.push_str(&rules::add_dns_allow(&rules::dns_allow_elements(
                        &[*a],
                        Some(&new),
                    )));
                    have.extend(new);
                }
                next.insert(*a, Some(have));
            }
        }
    }
    if script.is_empty() {
        return Ok(());
    }
    nft_in(netns, script).await?;
    *allowed = next;
    Ok(())
}

/// Runs an `nft` script in namespace `netns` (one transaction).
async fn nft_in(netns: &str, script: String) -> Result<(), ()> {
    let netns = netns.to_owned();
    match tokio::task::spawn_blocking(move || {
        crate::netns::run_in(&netns, &["nft", "-f", "-"], Some(&script))
    })
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!("changing the resolved addresses: {e}");
            Err(())
        }
        Err(_) => Err(()),
    }
}

async fn read_denials(sock: tokio::io::unix::AsyncFd<NflogSocket>, state: Arc<State>) {
    loop {
        let Ok(mut ready) = sock.readable().await else {
            return;
        };
        match ready.try_io(|s| s.get_ref().recv()) {
            Ok(Ok(batch)) => {
                if batch.dropped {
                    tracing::warn!("the kernel dropped denial log messages");
                }
                for p in batch.packets {
                    let Some(rule) = p.prefix.strip_prefix("pyro:") else {
                        continue;
                    };
                    let Some(flow) = nflog::parse_ipv4(&p.payload) else {
                        continue;
                    };
                    state.deny(Denial {
                        time: now(),
                        protocol: match flow.protocol {
                            6 => "tcp".into(),
                            17 => "udp".into(),
                            1 => "icmp".into(),
                            n => n.to_string(),
                        },
                        destination: Some(flow.destination),
                        port: flow.port,
                        name: None,
                        rule: rule.chars().take(32).collect(),
                        unlogged: None,
                    });
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("reading denials: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_would_block) => {}
        }
    }
}

#[cfg(test)]
mod tests;

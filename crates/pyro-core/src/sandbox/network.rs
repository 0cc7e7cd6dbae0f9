//! A sandbox's network: its namespace and rules (`pyro_net::netns`), the
//! daemon that serves its DNS and logs its denials, and published-port
//! relays. Set up before the VM starts, torn down with it.

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pyro_net::Policy;
use pyro_net::netns::Plumbing;
use pyro_vmm::process::ProcessId;
use serde::{Deserialize, Serialize};

use super::*;

/// Where a host-wide note of each network's owner lives: the state
/// directory that made it, so a sweep touches only its own.
const OWNERS_DIR: &str = "/run/pyro-net";
/// The daemon's directory inside the sandbox directory.
const NET_DIR: &str = "network";
/// Published-port relays, one file each, in the daemon's directory.
const RELAYS_DIR: &str = "relays";
/// How long the daemon may take to serve DNS.
const DAEMON_READY: Duration = Duration::from_secs(5);

/// The network a sandbox is started with.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    /// What the guest may reach.
    pub policy: Policy,
    /// Where its denials are logged (kept across boots of a workspace;
    /// `None`: in the sandbox's own directory, gone with it).
    pub log_dir: Option<PathBuf>,
    /// Only the host side of the guest's link is ever allowed (the demo):
    /// the host's IPv4 forwarding does not matter.
    pub local_only: bool,
}

/// What a sandbox's record keeps of its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRecord {
    /// The namespace and links, once made.
    pub plumbing: Option<Plumbing>,
    /// The DNS and denial-log daemon.
    pub daemon: Option<ProcessId>,
    /// Where denials are logged.
    pub log_dir: PathBuf,
}

/// A published port's relay, as its file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRecord {
    /// The service it belongs to.
    pub service: String,
    /// The guest's port.
    pub guest_port: u16,
    /// The port on 127.0.0.1.
    pub host_port: u16,
    /// The relay process.
    pub process: ProcessId,
}

/// The program the daemon and relays run as: this executable, whose
/// `main` starts with [`crate::helper_main`].
fn helper_program() -> Result<PathBuf, CoreError> {
    // This very program even if its file was replaced since it started.
    Ok(PathBuf::from("/proc/self/exe"))
}

fn net_error(e: pyro_net::NetError) -> CoreError {
    match e {
        pyro_net::NetError::Unsupported(m) => CoreError::NetworkUnavailable(m),
        other => CoreError::io("setting up the guest network", std::io::Error::other(other)),
    }
}

impl Sandbox {
    /// The daemon's directory.
    pub(crate) fn net_dir(&self) -> PathBuf {
        self.paths.vm_dir(&self.record.id).join(NET_DIR)
    }

    /// Creates the namespace, TAP, uplink and rules; the launch then puts
    /// Firecracker in the namespace.
    pub(super) async fn setup_network(
        &mut self,
        net: &NetworkSpec,
    ) -> Result<pyro_vmm::launch::NetAttach, CoreError> {
        pyro_net::netns::preflight(!net.local_only).map_err(net_error)?;
        let owners = Path::new(OWNERS_DIR);
        let state = std::fs::canonicalize(self.paths.state())
            .map_err(|e| CoreError::io("resolving the state directory", e))?;
        std::fs::create_dir_all(owners)
            .and_then(|()| {
                std::fs::write(
                    owners.join(&self.record.id),
                    state.as_os_str().as_encoded_bytes(),
                )
            })
            .map_err(|e| CoreError::io(format!("writing {OWNERS_DIR}"), e))?;
        // Recorded before anything exists, so a teardown (or a sweep after
        // a kill) removes whatever part was made.
        let log_dir = net.log_dir.clone().unwrap_or_else(|| self.net_dir());
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| CoreError::io(format!("creating {}", log_dir.display()), e))?;
        self.record.network = Some(NetRecord {
            plumbing: None,
            daemon: None,
            log_dir,
        });
        self.record.save(&self.paths)?;
        let (id, uid, policy) = (
            self.record.id.clone(),
            self.record.jail_uid,
            net.policy.clone(),
        );
        let dir = self.net_dir();
        let paths = self.paths.clone();
        let plumbing = crate::blocking(move || {
            // Set-ups are serialised host-wide (every state directory draws
            // from one pool): the uplink slot is chosen from the addresses
            // in use.
            let _ = &paths;
            let lock = std::fs::File::create(Path::new(OWNERS_DIR).join(".lock"))
                .map_err(|e| CoreError::io(format!("opening {OWNERS_DIR}/.lock"), e))?;
            lock.lock()
                .map_err(|e| CoreError::io(format!("locking {OWNERS_DIR}/.lock"), e))?;
            std::fs::create_dir_all(dir.join(RELAYS_DIR))
                .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
            pyro_net::netns::setup(&id, uid, &policy).map_err(net_error)
        })
        .await?;
        let netns = PathBuf::from("/run/netns").join(&plumbing.netns);
        if let Some(n) = self.record.network.as_mut() {
            n.plumbing = Some(plumbing);
        }
        self.record.save(&self.paths)?;
        Ok(pyro_vmm::launch::NetAttach {
            netns,
            tap: pyro_net::TAP_NAME.into(),
            mac: pyro_net::GUEST_MAC.into(),
        })
    }

    /// Starts the daemon once the VM's process exists (it ends with it) and
    /// waits until it serves DNS.
    pub(super) async fn start_network_daemon(&mut self, policy: &Policy) -> Result<(), CoreError> {
        let Some(net) = self.record.network.clone() else {
            return Ok(());
        };
        let Some(plumbing) = net.plumbing else {
            return Ok(());
        };
        let dir = self.net_dir();
        let config = pyro_net::daemon::Config {
            version: pyro_net::daemon::CONFIG_VERSION,
            netns: plumbing.netns.clone(),
            policy: policy.clone(),
            vm: self.record.process,
            log_dir: net.log_dir.clone(),
            generation: 0,
        };
        config.save(&dir).map_err(net_error)?;
        let ready = dir.join(pyro_net::daemon::READY_FILE);
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::File::create(dir.join("daemon.log"))
            .map_err(|e| CoreError::io("creating the network daemon's log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| CoreError::io("creating the network daemon's log", e))?;
        let child = std::process::Command::new(helper_program()?)
            .arg(pyro_net::DAEMON_ARG)
            .arg("--network-dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| CoreError::io("starting the network daemon", e))?;
        let process = ProcessId::of(child.id());
        drop(child);
        if let Some(n) = self.record.network.as_mut() {
            n.daemon = process;
        }
        self.record.save(&self.paths)?;
        let until = Instant::now() + DAEMON_READY;
        while !ready.exists() {
            if Instant::now() >= until || !process.is_some_and(|p| p.is_alive()) {
                let tail = pyro_vmm::console::console_tail(&dir.join("daemon.log"), 2000);
                return Err(CoreError::io(
                    "starting the network daemon",
                    std::io::Error::other(format!(
                        "it did not start serving DNS within {} s: {tail}",
                        DAEMON_READY.as_secs()
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Puts a new policy in force on the running sandbox: its rules in one
    /// transaction, then the daemon's resolver.
    pub async fn set_network_policy(&mut self, policy: &Policy) -> Result<(), CoreError> {
        let Some(net) = self.record.network.clone() else {
            return Err(CoreError::invalid("this sandbox has no network"));
        };
        let Some(plumbing) = net.plumbing else {
            return Err(CoreError::invalid(
                "this sandbox's network was never set up",
            ));
        };
        let dir = self.net_dir();
        let (policy, vm) = (policy.clone(), self.record.process);
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let config_dir = dir.clone();
        crate::blocking(move || {
            let config = config_dir.join(pyro_net::daemon::CONFIG_FILE);
            let before = std::fs::read(&config).ok();
            pyro_net::daemon::Config {
                version: pyro_net::daemon::CONFIG_VERSION,
                netns: plumbing.netns.clone(),
                policy: policy.clone(),
                vm,
                log_dir: net.log_dir.clone(),
                generation,
            }
            .save(&config_dir)
            .map_err(net_error)?;
            let applied = pyro_net::netns::host_addresses()
                .and_then(|hosts| pyro_net::netns::apply_policy(&plumbing, &policy, &hosts));
            if let Err(e) = applied {
                // The daemon keeps the policy in force: so does its file.
                if let Some(b) = before {
                    let _ = std::fs::write(&config, b);
                }
                return Err(net_error(e));
            }
            Ok(())
        })
        .await?;
        // The resolver takes the policy too; until it says so, the change
        // is not done.
        let Some(d) = net
            .daemon
            .filter(|d| d.signal(nix::sys::signal::Signal::SIGHUP))
        else {
            return Err(CoreError::io(
                "changing the network policy",
                std::io::Error::other(
                    "the sandbox's network daemon is gone; stop and start the workspace",
                ),
            ));
        };
        let ack = dir.join(pyro_net::daemon::APPLIED_FILE);
        let until = Instant::now() + DAEMON_READY;
        while std::fs::read_to_string(&ack).ok().as_deref() != Some(&generation.to_string()) {
            if Instant::now() >= until || !d.is_alive() {
                return Err(CoreError::io(
                    "changing the network policy",
                    std::io::Error::other(format!(
                        "the rules changed, but the sandbox's resolver did not take the policy \
                         within {} s; set it again, or stop and start the workspace",
                        DAEMON_READY.as_secs()
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Publishes the guest's `guest_port` on 127.0.0.1:`host_port` (0: any
    /// free port) for `service`. Returns the port.
    pub fn publish_port(
        &self,
        service: &str,
        host_port: u16,
        guest_port: u16,
    ) -> Result<u16, CoreError> {
        let Some(plumbing) = self
            .record
            .network
            .as_ref()
            .and_then(|n| n.plumbing.clone())
        else {
            return Err(CoreError::invalid("this sandbox has no network"));
        };
        let (listener, port) = pyro_net::relay::bind_host_side(host_port).map_err(net_error)?;
        let ns = std::fs::File::open(PathBuf::from("/run/netns").join(&plumbing.netns))
            .map_err(|e| CoreError::io("opening the sandbox's namespace", e))?;
        let dir = self.net_dir();
        let mut cmd = std::process::Command::new(helper_program()?);
        cmd.arg(pyro_net::RELAY_ARG)
            .arg("--network-dir")
            .arg(&dir)
            .arg("--guest-port")
            .arg(guest_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(p) = self.record.process {
            cmd.arg("--vm-pid").arg(p.pid.to_string());
        }
        let (lfd, nsfd) = (listener.as_raw_fd(), ns.as_raw_fd());
        // SAFETY: between fork and exec the hook only makes raw system calls
        // (setns, dup2, fcntl) on descriptors this process holds open until after
        // spawn returns; it allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || relay_hook(nsfd, lfd));
        }
        let child = cmd
            .spawn()
            .map_err(|e| CoreError::io("starting the published port's relay", e))?;
        let Some(process) = ProcessId::of(child.id()) else {
            return Err(CoreError::io(
                "starting the published port's relay",
                std::io::Error::other("it exited at once"),
            ));
        };
        drop(child);
        crate::save_json(
            &dir.join(RELAYS_DIR)
                .join(format!("{service}.{guest_port}.json")),
            &RelayRecord {
                service: service.to_owned(),
                guest_port,
                host_port: port,
                process,
            },
            "recording a published port",
        )?;
        Ok(port)
    }

    /// The newest `limit` denials on record, and how many there are.
    pub fn denials(&self, limit: usize) -> (Vec<pyro_net::denials::Denial>, u64) {
        match &self.record.network {
            Some(n) => pyro_net::denials::read_recent(&n.log_dir, limit),
            None => (Vec::new(), 0),
        }
    }

    /// Stops the relays of `service` (every service: `None`), off the
    /// async workers (each stop waits for its process).
    pub async fn unpublish(&self, service: Option<&str>) {
        let (dir, service) = (self.net_dir(), service.map(str::to_owned));
        let _ = crate::blocking(move || {
            stop_relays(&dir, service.as_deref());
            Ok(())
        })
        .await;
    }

    /// The published ports of `service`.
    pub fn published(&self, service: &str) -> Vec<RelayRecord> {
        relays(&self.net_dir())
            .into_iter()
            .filter(|(_, r)| r.service == service && r.process.is_alive())
            .map(|(_, r)| r)
            .collect()
    }
}

/// The relay's hook, between fork and exec: into the sandbox's network
/// namespace (`nsfd`), with the published port's listener (`lfd`) as
/// descriptor 3, open across exec.
///
/// # Safety
/// Only in a process about to exec (or to end): it changes its namespace.
/// Raw system calls only, no allocation.
unsafe fn relay_hook(nsfd: RawFd, lfd: RawFd) -> std::io::Result<()> {
    // SAFETY: system calls on descriptors the caller keeps open.
    unsafe {
        if libc::setns(nsfd, libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // dup2 onto itself keeps close-on-exec: clear it instead.
        let ok = if lfd == 3 {
            libc::fcntl(3, libc::F_SETFD, 0) == 0
        } else {
            libc::dup2(lfd, 3) >= 0
        };
        if !ok {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Stops `service`'s relays of `sandbox` now (blocking).
pub(crate) fn stop_relays_for(sandbox: &Sandbox, service: &str) {
    stop_relays(&sandbox.net_dir(), Some(service));
}

fn relays(dir: &Path) -> Vec<(PathBuf, RelayRecord)> {
    let Ok(rd) = std::fs::read_dir(dir.join(RELAYS_DIR)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let r = std::fs::read(e.path()).ok()?;
            Some((e.path(), serde_json::from_slice(&r).ok()?))
        })
        .collect()
}

fn stop_relays(dir: &Path, service: Option<&str>) {
    for (file, r) in relays(dir) {
        if service.is_none_or(|s| s == r.service) {
            r.process
                .terminate_and_wait(HELPER_GRACE, Duration::from_secs(5));
            let _ = std::fs::remove_file(file);
        }
    }
}

/// How long the daemon and the relays get to end on SIGTERM before SIGKILL.
const HELPER_GRACE: Duration = Duration::from_secs(1);

/// Removes a sandbox's network: relays, daemon, namespace, host table.
pub(super) fn stop_network(paths: &Paths, record: &VmRecord, problems: &mut Vec<String>) {
    let Some(net) = &record.network else {
        return;
    };
    stop_relays(&paths.vm_dir(&record.id).join(NET_DIR), None);
    if let Some(d) = net.daemon
        && !d.terminate_and_wait(HELPER_GRACE, Duration::from_secs(5))
    {
        problems.push(format!("network daemon {} did not exit", d.pid));
    }
    match pyro_net::netns::teardown(&record.id) {
        Ok(()) => {
            let _ = std::fs::remove_file(Path::new(OWNERS_DIR).join(&record.id));
        }
        Err(e) => problems.push(e.to_string()),
    }
}

/// Networks this state directory made whose sandbox is not in `live`, or
/// whose owner's state directory is gone.
pub(crate) fn sweep_networks(
    paths: &Paths,
    live: &std::collections::HashSet<String>,
) -> (Vec<String>, Vec<String>) {
    let (mut removed, mut problems) = (Vec::new(), Vec::new());
    for id in pyro_net::netns::existing_ids() {
        use std::os::unix::ffi::OsStrExt;
        let owner = std::fs::read(Path::new(OWNERS_DIR).join(&id))
            .ok()
            .map(|b| PathBuf::from(std::ffi::OsStr::from_bytes(&b)));
        let ours = owner.is_some() && owner == std::fs::canonicalize(paths.state()).ok();
        // Only a directory known to be gone makes an orphan (an error
        // looking counts as there).
        let orphaned = owner
            .as_deref()
            .is_some_and(|o| matches!(o.try_exists(), Ok(false)));
        if (ours && !live.contains(&id)) || orphaned {
            match pyro_net::netns::teardown(&id) {
                Ok(()) => {
                    let _ = std::fs::remove_file(Path::new(OWNERS_DIR).join(&id));
                    removed.push(format!(
                        "Removed the network (namespace, links, rules) of sandbox {id}, which no longer exists"
                    ));
                }
                Err(e) => problems.push(format!(
                    "Could not remove the network of sandbox {id}: {e}; remove it with `ip netns del pyro-{id}` and `nft delete table ip pyro_{id}`"
                )),
            }
        }
    }
    (removed, problems)
}

#[cfg(test)]
mod tests;

//! `pyro doctor`: can this host run pyro guests, and if not, what to do.
//! Every check is independent and cannot abort the report.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Paths;
use pyro_env::which;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, with a limitation.
    Warn,
    /// Guests cannot run until this is fixed.
    Fail,
}

/// One diagnostic.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it.
    pub fix: Option<String>,
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check {
        name: name.to_owned(),
        status,
        detail: detail.into(),
        fix,
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `linux-x86_64`.
    pub platform: String,
    /// Whether this host can run guests now.
    pub ok: bool,
    /// Whether `/dev/kvm` is PVM.
    pub pvm: bool,
    /// State directory.
    pub state_dir: PathBuf,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// The report with its details and fixes worded for `front` (see
    /// [`crate::hint`]).
    pub fn worded(mut self, front: crate::hint::FrontEnd) -> Self {
        for c in &mut self.checks {
            c.detail = crate::hint::render(&c.detail, front);
            c.fix = c.fix.as_deref().map(|f| crate::hint::render(f, front));
        }
        self
    }
}

/// Runs every check.
pub fn run(paths: &Paths) -> Report {
    let pvm = pyro_vmm::host::is_pvm();
    let root = nix::unistd::geteuid().is_root();
    // Found (and hashed) once for the two checks that need it.
    let agent_binary = pyro_env::agent::locate();
    type CheckFn<'a> = Box<dyn Fn() -> Check + 'a>;
    let checks: Vec<(&str, CheckFn<'_>)> = vec![
        ("platform", Box::new(platform)),
        ("kvm", Box::new(kvm)),
        ("pvm", Box::new(move || pvm_check(pvm))),
        (
            "firecracker",
            Box::new(|| binary(paths, pyro_vmm::binaries::FIRECRACKER, true)),
        ),
        (
            "jailer",
            Box::new(move || binary(paths, pyro_vmm::binaries::JAILER, root)),
        ),
        ("privileges", Box::new(move || privileges(root))),
        ("cgroups", Box::new(cgroups)),
        ("limits", Box::new(limits)),
        ("guest kernel", Box::new(|| kernel(paths))),
        (
            "environments",
            Box::new(|| environments(paths, agent_binary.as_ref().ok())),
        ),
        ("guest agent", Box::new(|| agent(&agent_binary))),
        ("network: /dev/net/tun", Box::new(tun)),
        (
            "network: ip",
            Box::new(|| tool_warn("network: ip", "ip", "iproute2", "guest networking")),
        ),
        ("network: nft", Box::new(firewall)),
        ("network: ip_forward", Box::new(ip_forward)),
        (
            "disk: cache",
            Box::new(|| disk("disk: cache", paths.cache().root())),
        ),
        (
            "disk: state",
            Box::new(|| disk("disk: state", paths.state())),
        ),
        ("build prerequisites", Box::new(build_tools)),
    ];
    let checks: Vec<Check> = checks
        .into_iter()
        .map(|(name, f)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
                check(
                    name,
                    Status::Warn,
                    "the check itself failed unexpectedly",
                    Some("report this as a pyro bug".into()),
                )
            })
        })
        .collect();
    Report {
        platform: pyro_env::PLATFORM.into(),
        ok: checks.iter().all(|c| c.status != Status::Fail),
        pvm,
        state_dir: paths.state().to_owned(),
        cache_dir: paths.cache().root().to_owned(),
        checks,
    }
}

fn platform() -> Check {
    platform_check(&format!(
        "{}-{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    ))
}

fn platform_check(here: &str) -> Check {
    if here == "linux-x86_64" {
        check("platform", Status::Pass, here, None)
    } else {
        check(
            "platform",
            Status::Fail,
            here,
            Some("pyro runs guests on Linux x86_64 hosts only".into()),
        )
    }
}

fn kvm() -> Check {
    let k = pyro_vmm::host::kvm_access();
    kvm_check(k.exists, k.read_write)
}

fn kvm_check(exists: bool, read_write: bool) -> Check {
    match (exists, read_write) {
        (true, true) => check("kvm", Status::Pass, "/dev/kvm is readable and writable", None),
        (true, false) => check(
            "kvm",
            Status::Fail,
            "/dev/kvm exists but this user cannot open it read-write",
            Some("run pyro as root, or add your user to the group owning /dev/kvm".into()),
        ),
        (false, _) => check(
            "kvm",
            Status::Fail,
            "/dev/kvm does not exist",
            Some(
                "enable virtualization (load kvm_intel or kvm_amd; on a cloud VM, pick one with nested \
                 virtualization), or use --backend host-compat"
                    .into(),
            ),
        ),
    }
}

fn pvm_check(pvm: bool) -> Check {
    if pvm {
        check(
            "pvm",
            Status::Pass,
            "PVM detected (kvm_pvm): guests boot pyro's kernel with its PVM flags; guest kernel code is \
             emulated, so boots take tens of seconds and syscalls are slow",
            None,
        )
    } else {
        check(
            "pvm",
            Status::Pass,
            "not a PVM host: guests boot without PVM workarounds",
            None,
        )
    }
}

fn binary(paths: &Paths, pin: pyro_vmm::binaries::Pinned, required: bool) -> Check {
    match pyro_vmm::binaries::locate_one(paths.cache().root(), pin) {
        Ok(b) => {
            let version = pyro_vmm::binaries::version(&b.path).unwrap_or_else(|_| "unknown".into());
            let how = match b.origin {
                pyro_vmm::binaries::Origin::Pinned => "sha256 verified".to_owned(),
                pyro_vmm::binaries::Origin::Override => {
                    format!("from {}, not checksummed", pin.env)
                }
            };
            check(
                pin.name,
                Status::Pass,
                format!("v{version} at {} ({how})", b.path.display()),
                None,
            )
        }
        Err(e) => check(
            pin.name,
            if required { Status::Fail } else { Status::Warn },
            e.to_string(),
            Some(format!("run `pyro env pull debian:12`, or set {}", pin.env)),
        ),
    }
}

fn privileges(root: bool) -> Check {
    if root {
        check(
            "privileges",
            Status::Pass,
            "root: every VM runs through the jailer (chroot, own uid/gid, cgroups)",
            None,
        )
    } else {
        check(
            "privileges",
            Status::Warn,
            "not root: Firecracker runs without the jailer (no chroot or uid isolation), and the \
             host-compat backend and environment builds are unavailable",
            Some("run pyro as root".into()),
        )
    }
}

fn cgroups() -> Check {
    cgroups_check(pyro_vmm::cgroup::detect(Path::new(
        pyro_vmm::cgroup::CGROUP_ROOT,
    )))
}

fn cgroups_check(found: Option<(pyro_vmm::cgroup::CgroupVersion, Vec<String>)>) -> Check {
    match found {
        Some((v, ctrls)) if ctrls.len() == pyro_vmm::cgroup::CONTROLLERS.len() => check(
            "cgroups",
            Status::Pass,
            format!("{v:?} with {}", ctrls.join(", ")),
            None,
        ),
        Some((v, ctrls)) => check(
            "cgroups",
            Status::Warn,
            format!(
                "{v:?} with only {}",
                if ctrls.is_empty() {
                    "no controllers".into()
                } else {
                    ctrls.join(", ")
                }
            ),
            Some("enable the memory, pids and cpu controllers to limit VMs".into()),
        ),
        None => check(
            "cgroups",
            Status::Warn,
            "no cgroup hierarchy found",
            Some("mount cgroups (v1 controllers or v2) under /sys/fs/cgroup".into()),
        ),
    }
}

/// What holds each VM in on this host, and which protection is missing.
fn limits() -> Check {
    let l = crate::limits::VCPUS.default;
    let m = crate::limits::MEM_MIB.default;
    let p = crate::protections::host_side(crate::BackendKind::Firecracker, l, m);
    let guest = format!(
        "in the guest, commands share its memory less a reserve and each may have {} tasks; a \
         workspace's writes stop at its disk size (⟨arg:disk_mib⟩, default {} MiB)",
        pyro_protocol::GUEST_TASKS_PER_COMMAND,
        crate::limits::DISK_MIB.default
    );
    let guest = crate::hint::render(&guest, crate::hint::FrontEnd::Neutral);
    match p.host {
        Some(h) if p.missing.is_empty() => check(
            "limits",
            Status::Pass,
            format!(
                "host cgroups cap each VM (a {l}-vCPU {m} MiB guest: {:.2} CPU, {} MiB, {} tasks); \
                 {guest}",
                h.cpu_millicores.unwrap_or_default() as f64 / 1000.0,
                h.memory_bytes.unwrap_or_default() >> 20,
                h.pids.unwrap_or_default()
            ),
            None,
        ),
        _ => check(
            "limits",
            Status::Warn,
            format!("missing: {}; {guest}", p.missing.join("; ")),
            Some(
                "run pyro as root on a host with the memory, cpu and pids cgroup controllers"
                    .into(),
            ),
        ),
    }
}

fn kernel(paths: &Paths) -> Check {
    let Some(version) = pyro_env::kernel::source_version() else {
        return check(
            "guest kernel",
            Status::Fail,
            format!(
                "{} is not installed, so no guest kernel can be built",
                pyro_env::kernel::SOURCE_PACKAGE
            ),
            Some(format!(
                "apt-get install {}, then `pyro env pull debian:12`",
                pyro_env::kernel::SOURCE_PACKAGE
            )),
        );
    };
    let key = pyro_env::kernel::key(&version);
    match pyro_env::kernel::cached(paths.cache(), &key) {
        Some(k) => match pyro_env::kernel::verify(&k, "debian:12") {
            Ok(()) => check(
                "guest kernel",
                Status::Pass,
                format!("built ({key}, from {version}) at {}", k.vmlinux().display()),
                None,
            ),
            Err(e) => check(
                "guest kernel",
                Status::Fail,
                e.to_string(),
                Some("run `pyro env pull debian:12`".into()),
            ),
        },
        None => check(
            "guest kernel",
            Status::Fail,
            format!(
                "not built yet for {} {version}",
                pyro_env::kernel::SOURCE_PACKAGE
            ),
            Some(
                "run `pyro env pull debian:12` (the first kernel build takes a few minutes)".into(),
            ),
        ),
    }
}

fn environments(paths: &Paths, agent: Option<&pyro_env::agent::AgentBinary>) -> Check {
    let installed: Vec<&str> = pyro_env::CATALOG
        .iter()
        .filter(|s| {
            pyro_env::install::installed(paths.cache(), &pyro_env::EnvRef::Catalog(s), agent)
                .is_ok()
        })
        .map(|s| s.name)
        .collect();
    if installed.is_empty() {
        check(
            "environments",
            Status::Warn,
            "no environment is installed",
            Some("run `pyro env pull debian:12`".into()),
        )
    } else {
        check(
            "environments",
            Status::Pass,
            format!("installed: {}", installed.join(", ")),
            None,
        )
    }
}

fn agent(found: &Result<pyro_env::agent::AgentBinary, pyro_env::EnvError>) -> Check {
    match found {
        Ok(a) => check(
            "guest agent",
            Status::Pass,
            format!("static agent at {}", a.path.display()),
            None,
        ),
        Err(e) => check(
            "guest agent",
            Status::Warn,
            e.to_string(),
            Some("build it with `make agent`".into()),
        ),
    }
}

fn tun() -> Check {
    tun_check(Path::new("/dev/net/tun").exists())
}

fn tun_check(present: bool) -> Check {
    if present {
        check("network: /dev/net/tun", Status::Pass, "present", None)
    } else {
        check(
            "network: /dev/net/tun",
            Status::Warn,
            "missing: guests cannot get network interfaces",
            Some("load the tun module (modprobe tun)".into()),
        )
    }
}

fn tool_warn(name: &str, tool: &str, package: &str, purpose: &str) -> Check {
    tool_check(name, tool, package, purpose, which(tool))
}

fn tool_check(
    name: &str,
    tool: &str,
    package: &str,
    purpose: &str,
    found: Option<PathBuf>,
) -> Check {
    match found {
        Some(p) => check(name, Status::Pass, p.display().to_string(), None),
        None => check(
            name,
            Status::Warn,
            format!("`{tool}` not found: needed for {purpose}"),
            Some(format!("apt-get install {package}")),
        ),
    }
}

fn firewall() -> Check {
    firewall_check(which("nft"))
}

fn firewall_check(found: Option<PathBuf>) -> Check {
    match found {
        Some(p) => check("network: nft", Status::Pass, p.display().to_string(), None),
        None => check(
            "network: nft",
            Status::Warn,
            "`nft` not found: guests with a network policy other than off need it (each \
             networked guest's rules are an nftables table in its own namespace)",
            Some("apt-get install nftables".into()),
        ),
    }
}

fn ip_forward() -> Check {
    ip_forward_check(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1"),
    )
}

fn ip_forward_check(on: bool) -> Check {
    if on {
        check("network: ip_forward", Status::Pass, "enabled", None)
    } else {
        check(
            "network: ip_forward",
            Status::Warn,
            "IPv4 forwarding is off: guests with egress networking would have no route out \
             (pyro turns it on only inside each guest's own namespace, never on the host)",
            Some("sysctl -w net.ipv4.ip_forward=1".into()),
        )
    }
}

fn disk(name: &str, dir: &Path) -> Check {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    let free = crate::free_bytes(&probe);
    disk_check(name, dir, &probe, free)
}

fn disk_check(name: &str, dir: &Path, probe: &Path, free: nix::Result<u64>) -> Check {
    match free {
        Ok(free) => {
            let gib = free as f64 / f64::from(1u32 << 30);
            let detail = format!("{gib:.1} GiB free for {}", dir.display());
            if free < (1 << 30) {
                check(
                    name,
                    Status::Fail,
                    detail,
                    Some("free disk space: environments need about 1 GiB each".into()),
                )
            } else if free < (5u64 << 30) {
                check(
                    name,
                    Status::Warn,
                    detail,
                    Some("keep at least 5 GiB free for environments and kernels".into()),
                )
            } else {
                check(name, Status::Pass, detail, None)
            }
        }
        Err(e) => check(
            name,
            Status::Warn,
            format!("cannot stat {}: {e}", probe.display()),
            Some("make sure the directory's parent exists and is readable".into()),
        ),
    }
}

fn build_tools() -> Check {
    let mut missing = pyro_env::missing_build_packages();
    // The Firecracker download runs `python3 -m pip`.
    if which("python3").is_none() {
        missing.push("python3");
    }
    build_tools_check(&missing)
}

fn build_tools_check(missing: &[&str]) -> Check {
    if missing.is_empty() {
        check(
            "build prerequisites",
            Status::Pass,
            "mmdebstrap, mkfs.ext4 and the kernel build tools are present",
            None,
        )
    } else {
        check(
            "build prerequisites",
            Status::Warn,
            format!(
                "missing: {} (needed by `pyro env pull`)",
                missing.join(", ")
            ),
            Some(format!("apt-get install {}", missing.join(" "))),
        )
    }
}

#[cfg(test)]
mod tests;

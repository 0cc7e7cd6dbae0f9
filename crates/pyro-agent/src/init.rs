//! PID 1 duties: assemble the root filesystem, start the protocol server in a
//! child process, and reap every orphan.

use std::fs;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, fork, pivot_root, sethostname};
use pyro_protocol::AgentMode;

use crate::{HostCompatArgs, ServerConfig, Transport, keep_fd, log};

/// Mount point of the per-VM writable disk during assembly (guest).
const STAGING: &str = "/mnt";

/// Entry point as the guest kernel's init.
pub fn guest() -> ExitCode {
    // The kernel command line is readable only once /proc is mounted.
    if let Err(e) = mount_fs("proc", "/proc", "proc", MsFlags::empty(), None) {
        log::error(&format!(
            "cannot mount /proc to read the kernel command line: {e}"
        ));
        power_off();
    }
    let mut params = match fs::read_to_string("/proc/cmdline")
        .map_err(|e| format!("cannot read /proc/cmdline: {e}"))
        .and_then(|c| KernelParams::parse(&c))
    {
        Ok(p) => p,
        Err(e) => {
            // A guest that ignored a setting (an idle deadline, say) would
            // run on as if all were well: refuse to start instead.
            log::error(&format!("{e}; powering off"));
            power_off();
        }
    };
    if let Err(e) = mount_early() {
        log::error(&format!("cannot mount the pseudo-filesystems: {e}"));
        power_off();
    }
    if params.template {
        // The snapshot is taken in this wait; a restored guest goes on
        // from here with its own disk.
        crate::template::warm_up(STAGING);
        let (id, conn) = match crate::template::await_identity() {
            Ok(handed) => handed,
            Err(e) => {
                log::error(&format!("template: {e}; powering off"));
                power_off();
            }
        };
        params.hostname = id.hostname.clone();
        params.idle_seconds = id.idle_seconds;
        let assembled = assemble_guest_root(&params.upper_device);
        crate::template::answer(
            conn,
            &id,
            assembled.as_ref().map(|_| ()).map_err(String::as_str),
        );
        if let Err(e) = assembled {
            log::error(&format!("cannot assemble the root filesystem: {e}"));
            power_off();
        }
    } else if let Err(e) = assemble_guest_root(&params.upper_device) {
        log::error(&format!("cannot assemble the root filesystem: {e}"));
        power_off();
    }
    #[cfg(pyro_coverage)]
    crate::coverage::into_guest_run();
    in_root(&params)
}

/// The rest of a guest's start, in the assembled root. A function of its
/// own, never inlined: an instrumented build (`pyro_coverage`) reads where
/// its counters live once per function, at entry, and [`guest`] switched
/// that place just before calling this.
#[inline(never)]
fn in_root(params: &KernelParams) -> ExitCode {
    if let Err(e) = sethostname(&params.hostname) {
        log::error(&format!(
            "cannot set the hostname {:?}: {e}; powering off",
            params.hostname
        ));
        power_off();
    }
    set_machine_id(&params.hostname);
    if let Err(e) = crate::limits::setup() {
        log::error(&format!(
            "commands run without guest limits (memory, tasks): {e}"
        ));
    }
    write_resolver(params.dns);
    if let Err(e) = loopback_up() {
        log::error(&format!("cannot bring up the loopback interface: {e}"));
    }
    let config = ServerConfig {
        transport: Transport::Vsock,
        mode: AgentMode::Guest,
        idle_seconds: params.idle_seconds,
    };
    supervise(config)
}

/// Entry point of `pyro-agent host-compat`.
pub fn host_compat(args: HostCompatArgs) -> ExitCode {
    match host_compat_inner(args) {
        Ok(code) => code,
        Err(e) => {
            log::error(&e);
            ExitCode::from(1)
        }
    }
}

fn host_compat_inner(args: HostCompatArgs) -> Result<ExitCode, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "the host-compat sandbox needs root (it builds a chroot with private \
                    mount and PID namespaces); run pyro as root"
                .into(),
        );
    }
    let _ = fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)
        .map_err(|e| format!("cannot listen on {}: {e}", args.socket.display()))?;
    let ready = UnixStream::connect(&args.ready)
        .map_err(|e| format!("cannot reach the host at {}: {e}", args.ready.display()))?;
    let (listener, ready) = (keep_fd(listener), keep_fd(ready));

    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(|e| format!("unshare: {e}"))?;
    make_mounts_private()?;

    // The launcher keeps the write end of this pipe open for as long as it
    // lives; the child sees end-of-file once it is gone.
    let (alive_r, alive_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: this process is single-threaded here (no runtime has started),
    // so the child may run arbitrary code after fork.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { child } => {
            drop(alive_r);
            let code = wait_for_namespace(child);
            drop(alive_w);
            Ok(code)
        }
        ForkResult::Child => {
            drop(alive_w);
            // PID 1 of the new namespace: dies with the launcher, and the
            // kernel then kills everything else in the namespace. (getppid()
            // is 0 across the namespace boundary, so the launcher's liveness
            // is read from the pipe: it may have died before the prctl.)
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if launcher_gone(&alive_r) {
                log::error("the launcher exited before the sandbox started");
                std::process::exit(1);
            }
            drop(alive_r);
            if let Err(e) = assemble_host_compat_root(&args) {
                log::error(&format!("cannot assemble the sandbox root: {e}"));
                std::process::exit(1);
            }
            if let Err(e) = sethostname(&args.hostname) {
                log::error(&format!("sethostname: {e}"));
            }
            set_machine_id(&args.hostname);
            let config = ServerConfig {
                transport: Transport::Unix { listener, ready },
                mode: AgentMode::HostCompat,
                idle_seconds: args.idle_seconds,
            };
            let code = supervise(config);
            std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
        }
    }
}

/// Whether the write end of the liveness pipe has been closed.
fn launcher_gone(fd: &std::os::fd::OwnedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Waits for the namespace's init and mirrors how it ended.
fn wait_for_namespace(child: Pid) -> ExitCode {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return ExitCode::from(code.clamp(0, 255) as u8),
            // A power-off from inside (deadline or shutdown request) kills
            // the namespace's init; that is a normal end.
            Ok(WaitStatus::Signaled(_, _, _)) => return ExitCode::SUCCESS,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return ExitCode::from(1),
        }
    }
}

/// Guest, before the root: sysfs, devtmpfs and the staging tmpfs.
fn mount_early() -> Result<(), String> {
    mount_fs("sysfs", "/sys", "sysfs", MsFlags::empty(), None)?;
    mount_fs("devtmpfs", "/dev", "devtmpfs", MsFlags::empty(), None)?;
    mount_fs(
        "tmpfs",
        STAGING,
        "tmpfs",
        MsFlags::empty(),
        Some("mode=0700"),
    )
}

/// Guest: lower layer = the read-only base image the kernel mounted as `/`,
/// upper layer = `/dev/vdb`; pivot into the overlay. The disk's cached
/// blocks are dropped first: a restored template guest read the template's
/// disk at boot (the partition scan), and this is another file now.
fn assemble_guest_root(upper_dev: &str) -> Result<(), String> {
    let upper = format!("{STAGING}/upper");
    let newroot = format!("{STAGING}/root");
    mkdir(&upper)?;
    mkdir(&newroot)?;
    flush_block_cache(upper_dev)?;
    // noinit_itable: no kernel thread zeroing inode tables of the fresh
    // sparse disk (they read as zeros already; under PVM that thread would
    // burn emulated kernel time).
    mount_fs(
        upper_dev,
        &upper,
        "ext4",
        MsFlags::MS_NOATIME,
        Some("noinit_itable"),
    )
    .map_err(|e| format!("{e} (the per-VM writable disk {upper_dev} is missing or not ext4)"))?;
    mkdir(&format!("{upper}/data"))?;
    mkdir(&format!("{upper}/work"))?;
    let opts = format!(
        "lowerdir=/,upperdir={upper}/data,workdir={upper}/work,{}",
        OVERLAY_PINNED
    );
    mount_fs(
        "overlay",
        &newroot,
        "overlay",
        MsFlags::empty(),
        Some(&opts),
    )?;
    enter_root(Path::new(&newroot))?;
    mount_runtime_fs(true)
}

/// Drops the kernel's cached blocks of `dev` (`BLKFLSBUF`).
fn flush_block_cache(dev: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    /// `BLKFLSBUF`: `_IO(0x12, 97)`.
    const BLKFLSBUF: libc::c_ulong = 0x1261;
    let f = fs::File::open(dev)
        .map_err(|e| format!("opening {dev}: {e} (the per-VM writable disk is missing)"))?;
    // SAFETY: BLKFLSBUF takes no argument; the descriptor is open.
    if unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF, 0) } != 0 {
        return Err(format!(
            "dropping the cached blocks of {dev}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Overlay features pinned off whatever the kernel's defaults: the host reads
/// a stopped workspace's upper layer itself (`pyro workspace disk`) and knows
/// whiteouts and opaque directories only. With these off, a renamed directory
/// is copied up whole and a chmod copies the data, so the upper layer alone
/// plus the image is the whole truth.
const OVERLAY_PINNED: &str = "redirect_dir=off,metacopy=off,index=off,xino=off";

/// Host-compat: lower layer = the environment's root tree, upper layer = a
/// host directory; pivot into the overlay inside the private namespaces.
fn assemble_host_compat_root(args: &HostCompatArgs) -> Result<(), String> {
    let data = args.upper.join("data");
    let work = args.upper.join("work");
    for d in [&data, &work, &args.mountpoint] {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},{}",
        args.lower.display(),
        data.display(),
        work.display(),
        OVERLAY_PINNED
    );
    let root = &args.mountpoint;
    mount_fs(
        "overlay",
        &root.to_string_lossy(),
        "overlay",
        MsFlags::empty(),
        Some(&opts),
    )?;
    // A private /dev with just the safe character devices of the host.
    let dev = root.join("dev");
    mkdir(&dev.to_string_lossy())?;
    mount_fs(
        "tmpfs",
        &dev.to_string_lossy(),
        "tmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        fs::write(&target, b"").map_err(|e| format!("create {}: {e}", target.display()))?;
        mount(
            Some(Path::new("/dev").join(node).as_path()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind /dev/{node}: {e}"))?;
    }
    enter_root(root)?;
    mount_runtime_fs(false)
}

/// The machine id of a machine called `hostname`: 32 hex digits, the same
/// at every boot of one workspace and different for each workspace (and
/// each fork, whose disk starts as a copy of another's).
fn machine_id(hostname: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("pyro machine-id\0{hostname}"));
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `/etc/machine-id` (in the assembled root) for this machine, and
/// its name into `/etc/hosts`, so looking it up never asks a DNS server.
pub(crate) fn set_machine_id(hostname: &str) {
    if let Err(e) = fs::write("/etc/machine-id", format!("{}\n", machine_id(hostname))) {
        log::error(&format!("cannot write /etc/machine-id: {e}"));
    }
    let hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
    if let Err(e) = fs::write("/etc/hosts", hosts_with_name(&hosts, hostname)) {
        log::error(&format!("cannot write /etc/hosts: {e}"));
    }
}

/// `/etc/hosts` with pyro's line for `hostname` in place of an earlier one
/// (every other line is kept as it was).
fn hosts_with_name(hosts: &str, hostname: &str) -> String {
    const MARK: &str = "# pyro: this machine's name";
    let mut out: String = hosts
        .lines()
        .filter(|l| !l.ends_with(MARK))
        .flat_map(|l| [l, "\n"])
        .collect();
    out.push_str(&format!("127.0.1.1\t{hostname}\t{MARK}\n"));
    out
}

/// Pivots into `newroot` and detaches the old root.
fn enter_root(newroot: &Path) -> Result<(), String> {
    chdir(newroot).map_err(|e| format!("chdir {}: {e}", newroot.display()))?;
    pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// The pseudo-filesystems every workspace has.
fn mount_runtime_fs(guest: bool) -> Result<(), String> {
    mount_fs(
        "proc",
        "/proc",
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None,
    )?;
    if guest {
        mount_fs(
            "sysfs",
            "/sys",
            "sysfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None,
        )?;
        mount_fs("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, None)?;
    } else {
        let ro = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
        mount_fs("sysfs", "/sys", "sysfs", ro, None)?;
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
        ] {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    mkdir("/dev/pts")?;
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let _ = fs::remove_file("/dev/ptmx");
    let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    mkdir("/dev/shm")?;
    mount_fs(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None,
    )?;
    mkdir("/run")?;
    mount_fs(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )?;
    mkdir("/tmp")?;
    let _ = fs::set_permissions("/tmp", std::os::unix::fs::PermissionsExt::from_mode(0o1777));
    mkdir("/workspace")
}

/// Stops mounts from here on propagating out of this mount namespace.
pub(crate) fn make_mounts_private() -> Result<(), String> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))
}

pub(crate) fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    match mount(Some(source), target, Some(fstype), flags, data) {
        Ok(()) => Ok(()),
        // devtmpfs may already be mounted by the kernel (DEVTMPFS_MOUNT).
        Err(Errno::EBUSY) if fstype == "devtmpfs" => Ok(()),
        Err(e) => Err(format!("mount {fstype} {source} on {target}: {e}")),
    }
}

fn mkdir(path: &str) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {path}: {e}"))
}

/// Settings the host passes on the kernel command line.
#[derive(Debug, PartialEq, Eq)]
struct KernelParams {
    hostname: String,
    idle_seconds: u64,
    upper_device: String,
    /// The guest's only DNS server (a networked guest).
    dns: Option<std::net::Ipv4Addr>,
    /// A template guest: warm up, then wait for the host's handoff before
    /// the root is assembled (see [`crate::template`]).
    template: bool,
}

impl KernelParams {
    /// Reads pyro's settings from the kernel command line. A setting that
    /// is present but cannot be used is an error, never a silent default.
    fn parse(cmdline: &str) -> Result<Self, String> {
        let mut p = Self {
            hostname: "pyro".into(),
            idle_seconds: 0,
            upper_device: "/dev/vdb".into(),
            dns: None,
            template: false,
        };
        let mut seen = std::collections::BTreeSet::new();
        for word in cmdline.split_whitespace() {
            if !word.starts_with("pyro.") {
                continue;
            }
            let Some((key, value)) = word.split_once('=') else {
                return Err(format!(
                    "the kernel parameter {word} has no value (expected {word}=VALUE)"
                ));
            };
            if !seen.insert(key) {
                return Err(format!(
                    "the kernel parameter {key} is given twice; pass it once"
                ));
            }
            match key {
                "pyro.hostname" => {
                    if !pyro_protocol::valid_hostname(value) {
                        return Err(format!(
                            "the kernel parameter pyro.hostname={value} is not a valid hostname \
                             (1-63 letters, digits and '-', not starting or ending with '-')"
                        ));
                    }
                    p.hostname = value.to_owned();
                }
                "pyro.idle" => {
                    p.idle_seconds = value.parse().map_err(|_| {
                        format!("the kernel parameter pyro.idle={value} is not a number of seconds")
                    })?;
                }
                "pyro.dns" => {
                    p.dns = Some(value.parse().map_err(|_| {
                        format!("the kernel parameter pyro.dns={value} is not an IPv4 address")
                    })?);
                }
                "pyro.template" => {
                    p.template = match value {
                        "1" => true,
                        "0" => false,
                        _ => {
                            return Err(format!(
                                "the kernel parameter pyro.template={value} is not 0 or 1"
                            ));
                        }
                    };
                }
                "pyro.upper" => {
                    if !value.starts_with("/dev/") || value.len() <= "/dev/".len() {
                        return Err(format!(
                            "the kernel parameter pyro.upper={value} is not a /dev path"
                        ));
                    }
                    p.upper_device = value.to_owned();
                }
                _ => {
                    return Err(format!(
                        "unknown kernel parameter {word}: this agent does not know it (is the \
                         environment older than pyro? re-pull it)"
                    ));
                }
            }
        }
        Ok(p)
    }
}

/// Points the guest's resolver at `dns`, pyro's policy resolver (a guest
/// without a network gets an empty resolver file, so nothing waits on a
/// server left from another boot).
fn write_resolver(dns: Option<std::net::Ipv4Addr>) {
    let text = match dns {
        Some(ip) => format!(
            "# Written by pyro at boot: the only DNS server is pyro's policy resolver.\n\
             nameserver {ip}\noptions timeout:2 attempts:2\n"
        ),
        None => "# Written by pyro at boot: this guest has no network.
"
        .to_owned(),
    };
    // /etc/resolv.conf may be a link into the image (systemd-resolved's
    // stub): replace it with a file of our own.
    let _ = fs::remove_file("/etc/resolv.conf");
    if let Err(e) = fs::write("/etc/resolv.conf", text) {
        log::error(&format!("cannot write /etc/resolv.conf: {e}"));
    }
}

/// Brings `lo` up so services can listen on 127.0.0.1.
fn loopback_up() -> Result<(), String> {
    // SAFETY: plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: fd is a valid socket and req a valid ifreq naming "lo".
    let mut rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) };
    if rc == 0 {
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: as above, with the updated flags.
        rc = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) };
    }
    let err = std::io::Error::last_os_error();
    // SAFETY: fd came from socket(2) above and is closed exactly once.
    unsafe { libc::close(fd) };
    if rc == 0 {
        Ok(())
    } else {
        Err(err.to_string())
    }
}

/// Runs the protocol server in a child process and reaps every process that
/// ends up parented to PID 1. Restarts a crashed server a few times.
fn supervise(config: ServerConfig) -> ExitCode {
    let mut restarts: Vec<Instant> = Vec::new();
    loop {
        // SAFETY: PID 1 stays single-threaded; the child builds its own
        // runtime after fork.
        let server = match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let code = crate::server::run(config.clone());
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => child,
            Err(e) => {
                log::error(&format!("fork: {e}"));
                power_off();
            }
        };
        reap_until(server);
        restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
        restarts.push(Instant::now());
        if restarts.len() > 5 {
            log::error("the agent server keeps crashing; powering off");
            power_off();
        }
        log::error("the agent server exited; restarting it");
    }
}

/// Reaps children until `server` has exited.
fn reap_until(server: Pid) {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) if pid == server => {
                return;
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => return,
            Err(e) => {
                log::error(&format!("waitpid: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Flushes filesystems and ends the guest (Firecracker exits on the reset),
/// or, inside a host-compat PID namespace, kills the namespace's init.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // Not allowed to reboot (should not happen as root): leave anyway.
    std::process::exit(1)
}

#[cfg(test)]
mod tests;

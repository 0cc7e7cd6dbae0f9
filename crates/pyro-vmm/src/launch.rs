//! Starting one microVM.
//!
//! As root, Firecracker is started through the jailer: a chroot per VM at
//! `<chroot_base>/firecracker/<id>/root` holding hard links (or copies) of the
//! kernel, the read-only base image and the VM's writable upper disk, its own
//! uid/gid, and its cgroups. Every path Firecracker sees is then the same
//! in-jail path (`/vmlinux`, `/v.sock`, ...). Without root, Firecracker runs
//! directly with host paths under the VM's run directory.
//!
//! The VM is configured over the API socket (not a config file), so the same
//! path serves snapshot loads later, and started with `InstanceStart`. The
//! process is detached (own process group, stdio to files) so that a
//! persistent workspace outlives the command that started it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pyro_protocol::{Hello, READY_PORT, read_message};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::UnixListener;
use tokio::time::Instant;

use crate::api::ApiClient;
use crate::cgroup::{self, CgroupVersion};
use crate::jail_prep::{GuestView, chown, prepare_jail, touch};
use crate::process::ProcessId;
use crate::vsock::{check_socket_path, listener_path};
use crate::{VmmError, file_tail};

/// Guest context id of every VM (each VM has its own vsock device).
pub const GUEST_CID: u32 = 3;

/// Jailer settings for one VM.
#[derive(Debug, Clone)]
pub struct JailSpec {
    /// The jailer binary.
    pub jailer: PathBuf,
    /// `--chroot-base-dir`.
    pub chroot_base: PathBuf,
    /// uid Firecracker runs as.
    pub uid: u32,
    /// gid Firecracker runs as.
    pub gid: u32,
    /// The host's cgroup version.
    pub cgroup_version: CgroupVersion,
    /// `--parent-cgroup`.
    pub parent_cgroup: String,
    /// `--cgroup file=value` settings.
    pub cgroup_settings: Vec<String>,
}

/// Everything needed to start one VM.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// VM id (jail id): `[A-Za-z0-9-]`, at most 64 characters.
    pub id: String,
    /// The Firecracker binary.
    pub firecracker: PathBuf,
    /// Uncompressed guest kernel.
    pub kernel: PathBuf,
    /// Read-only base root image (shared by every VM of the environment).
    pub base_image: PathBuf,
    /// This VM's writable ext4 disk (overlay upper layer).
    pub upper_disk: PathBuf,
    /// vCPUs.
    pub vcpu_count: u8,
    /// Guest memory.
    pub mem_mib: u32,
    /// Kernel command line.
    pub boot_args: String,
    /// Host directory for the VM's logs (and sockets when not jailed).
    pub run_dir: PathBuf,
    /// Jailer settings; `None` runs Firecracker directly.
    pub jail: Option<JailSpec>,
    /// Resume this snapshot instead of booting the kernel (jailed only:
    /// the snapshot names the in-jail paths of its disks and sockets).
    pub restore: Option<RestoreSpec>,
    /// A network interface on a TAP in a namespace (jailed only: the
    /// jailer moves Firecracker into the namespace).
    pub network: Option<NetAttach>,
}

/// The guest's network interface: a TAP that already exists in a network
/// namespace.
#[derive(Debug, Clone)]
pub struct NetAttach {
    /// The namespace (`/run/netns/NAME`).
    pub netns: PathBuf,
    /// The TAP's name in it.
    pub tap: String,
    /// The guest's MAC address.
    pub mac: String,
}

/// A full snapshot to resume: its VM state and memory files. Both are
/// linked into the jail read-only; the memory is mapped privately, so
/// every VM restored from them shares its pages until it writes them.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    /// Firecracker's VM state file.
    pub vmstate: PathBuf,
    /// The guest memory file.
    pub mem: PathBuf,
}

/// In-jail name of a snapshot's VM state file.
pub const SNAPSHOT_STATE: &str = "snap.vmstate";
/// In-jail name of a snapshot's memory file.
pub const SNAPSHOT_MEM: &str = "snap.mem";

/// Host-side paths of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPaths {
    /// Firecracker's API socket.
    pub api_sock: PathBuf,
    /// The hybrid vsock socket.
    pub vsock_uds: PathBuf,
    /// Guest serial console (Firecracker's stdout and stderr).
    pub console_log: PathBuf,
    /// Firecracker's own log.
    pub firecracker_log: PathBuf,
    /// `<chroot_base>/firecracker/<id>` when jailed.
    pub jail_dir: Option<PathBuf>,
}

/// The jail directory of VM `id`.
pub fn jail_dir(chroot_base: &Path, id: &str) -> PathBuf {
    chroot_base.join("firecracker").join(id)
}

impl VmPaths {
    /// The paths a VM launched from `spec` will use.
    pub fn for_spec(spec: &LaunchSpec) -> Self {
        let console_log = spec.run_dir.join("console.log");
        match &spec.jail {
            Some(j) => {
                let dir = jail_dir(&j.chroot_base, &spec.id);
                let root = dir.join("root");
                Self {
                    api_sock: root.join("api.sock"),
                    vsock_uds: root.join("v.sock"),
                    console_log,
                    firecracker_log: root.join("firecracker.log"),
                    jail_dir: Some(dir),
                }
            }
            None => Self {
                api_sock: spec.run_dir.join("api.sock"),
                vsock_uds: spec.run_dir.join("v.sock"),
                console_log,
                firecracker_log: spec.run_dir.join("firecracker.log"),
                jail_dir: None,
            },
        }
    }

    /// The end of the console and Firecracker log, for error reports.
    pub fn diagnostics(&self) -> String {
        let console = crate::console::console_tail(&self.console_log, 3000);
        let fc = match &self.jail_dir {
            // Inside the jail: resolved from the root-owned jail directory,
            // no link followed anywhere on the way.
            Some(dir) => match crate::jail::open_file(dir, "firecracker.log") {
                Ok(f) => {
                    let (bytes, cut) = crate::open_tail_bytes(f, 1500);
                    crate::tail_text(&bytes, cut)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => format!("(Firecracker's log was not read: {e})"),
            },
            None => file_tail(&self.firecracker_log, 1500),
        };
        let mut out = if console.is_empty() {
            "(the guest printed nothing)".to_owned()
        } else {
            console
        };
        if !fc.is_empty() {
            out.push_str("\n--- firecracker log (last lines) ---\n");
            out.push_str(&fc);
        }
        out
    }
}

/// A VM that has been started and is booting (or, restored from a
/// snapshot, already running).
#[derive(Debug)]
pub struct Booting {
    /// The Firecracker process.
    pub process: ProcessId,
    /// Its paths.
    pub paths: VmPaths,
    /// The readiness listener the agent greets on.
    ready: UnixListener,
}

/// Starts the VM. `on_spawn` learns the process identity as soon as it
/// exists, so the caller can record it before anything else can fail. On
/// error the process is gone; files stay for the caller's cleanup
/// ([`remove_vm_files`]).
pub async fn launch(
    spec: &LaunchSpec,
    on_spawn: &mut (dyn FnMut(ProcessId, Option<ProcessId>) + Send),
) -> Result<Booting, VmmError> {
    let paths = VmPaths::for_spec(spec);
    if spec.network.is_some() && spec.jail.is_none() {
        return Err(VmmError::io(
            "attaching a network interface",
            std::io::Error::other(
                "a networked VM runs in its own namespace, which only the jailer can enter; run as root",
            ),
        ));
    }
    if spec.restore.is_some() && spec.jail.is_none() {
        return Err(VmmError::io(
            "restoring a snapshot",
            std::io::Error::other(
                "a snapshot can only be restored in a jail (it names in-jail paths); run as root",
            ),
        ));
    }
    let ready_path = listener_path(&paths.vsock_uds, READY_PORT);
    for p in [&paths.api_sock, &ready_path] {
        check_socket_path(p)?;
    }
    std::fs::create_dir_all(&spec.run_dir)
        .map_err(|e| VmmError::io(format!("creating {}", spec.run_dir.display()), e))?;
    let view = match &spec.jail {
        Some(j) => {
            // Removing an old jail and linking (or copying) disks: off the
            // async workers.
            let (spec, j, paths) = (spec.clone(), j.clone(), paths.clone());
            tokio::task::spawn_blocking(move || prepare_jail(&spec, &j, &paths))
                .await
                .map_err(|e| VmmError::io("preparing the jail", std::io::Error::other(e)))??
        }
        None => GuestView {
            kernel: spec.kernel.clone(),
            base: spec.base_image.clone(),
            upper: spec.upper_disk.clone(),
            vsock: paths.vsock_uds.clone(),
            log: paths.firecracker_log.clone(),
        },
    };
    for stale in [&paths.api_sock, &paths.vsock_uds, &ready_path] {
        let _ = std::fs::remove_file(stale);
    }
    touch(&paths.firecracker_log, spec.jail.as_ref())?;
    // A cold boot's agent greets here; so does a restored template guest's,
    // once the host has handed it its disk.
    let ready = UnixListener::bind(&ready_path)
        .map_err(|e| VmmError::io(format!("listening on {}", ready_path.display()), e))?;
    if let Some(j) = &spec.jail {
        chown(&ready_path, j)?;
    }

    // The console goes through a keeper that caps what is kept on the host.
    let (pipe, keeper) =
        crate::console::spawn_keeper(&paths.console_log, crate::console::CONSOLE_CAP_BYTES)?;
    let (console, console_err) = crate::console::stdio_pair(pipe)?;
    let mut cmd = match &spec.jail {
        Some(j) => {
            let mut c = Command::new(&j.jailer);
            c.arg("--id")
                .arg(&spec.id)
                .arg("--exec-file")
                .arg(&spec.firecracker)
                .arg("--uid")
                .arg(j.uid.to_string())
                .arg("--gid")
                .arg(j.gid.to_string())
                .arg("--chroot-base-dir")
                .arg(&j.chroot_base)
                .arg("--cgroup-version")
                .arg(j.cgroup_version.as_arg())
                .arg("--parent-cgroup")
                .arg(&j.parent_cgroup);
            for s in &j.cgroup_settings {
                c.arg("--cgroup").arg(s);
            }
            if let Some(n) = &spec.network {
                c.arg("--netns").arg(&n.netns);
            }
            c.args(["--", "--api-sock", "/api.sock"]);
            c
        }
        None => {
            let mut c = Command::new(&spec.firecracker);
            c.arg("--api-sock").arg(&paths.api_sock);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err)
        .process_group(0);
    let child = cmd.spawn().map_err(|e| {
        VmmError::io(
            format!("starting {}", cmd.get_program().to_string_lossy()),
            e,
        )
    })?;
    let process = ProcessId::of(child.id()).ok_or_else(|| VmmError::Boot {
        reason: "Firecracker exited immediately".into(),
        console_tail: paths.diagnostics(),
    })?;
    drop(child);
    on_spawn(process, keeper);

    let booting = Booting {
        process,
        paths,
        ready,
    };
    if let Err(e) = configure_and_start(spec, &booting, &view).await {
        kill_off_workers(booting.process).await;
        return Err(match e {
            VmmError::Api { .. } | VmmError::ApiTransport { .. } => VmmError::Boot {
                reason: e.to_string(),
                console_tail: booting.paths.diagnostics(),
            },
            other => other,
        });
    }
    Ok(booting)
}

async fn configure_and_start(
    spec: &LaunchSpec,
    vm: &Booting,
    view: &GuestView,
) -> Result<(), VmmError> {
    // The API socket appears once Firecracker has started.
    let until = Instant::now() + Duration::from_secs(10);
    let api = ApiClient::new(&vm.paths.api_sock).expecting_peer(spec.jail.as_ref().map(|j| j.uid));
    loop {
        if vm.paths.api_sock.exists() && api.get("/").await.is_ok() {
            break;
        }
        if !vm.process.is_alive() {
            return Err(VmmError::Boot {
                reason: "Firecracker exited before its API socket came up".into(),
                console_tail: vm.paths.diagnostics(),
            });
        }
        if Instant::now() >= until {
            return Err(VmmError::Boot {
                reason: "Firecracker's API socket did not come up within 10 s".into(),
                console_tail: vm.paths.diagnostics(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.put(
        "/logger",
        &json!({"log_path": view.log, "level": "Warning", "show_level": true}),
    )
    .await?;
    if spec.restore.is_some() {
        // The snapshot brings the machine, its drives (at the same in-jail
        // paths) and its vsock; the memory file is mapped, not copied.
        api.put(
            "/snapshot/load",
            &json!({
                "snapshot_path": format!("/{SNAPSHOT_STATE}"),
                "mem_backend": {"backend_type": "File", "backend_path": format!("/{SNAPSHOT_MEM}")},
                "resume_vm": true,
            }),
        )
        .await?;
        return Ok(());
    }
    api.put(
        "/boot-source",
        &json!({"kernel_image_path": view.kernel, "boot_args": spec.boot_args}),
    )
    .await?;
    api.put(
        "/drives/rootfs",
        &json!({"drive_id": "rootfs", "path_on_host": view.base, "is_root_device": true, "is_read_only": true}),
    )
    .await?;
    api.put(
        "/drives/upper",
        &json!({"drive_id": "upper", "path_on_host": view.upper, "is_root_device": false, "is_read_only": false}),
    )
    .await?;
    api.put(
        "/machine-config",
        &json!({"vcpu_count": spec.vcpu_count, "mem_size_mib": spec.mem_mib, "smt": false}),
    )
    .await?;
    api.put(
        "/vsock",
        &json!({"guest_cid": GUEST_CID, "uds_path": view.vsock}),
    )
    .await?;
    if let Some(n) = &spec.network {
        api.put(
            "/network-interfaces/eth0",
            &json!({"iface_id": "eth0", "host_dev_name": n.tap, "guest_mac": n.mac}),
        )
        .await?;
    }
    api.put("/entropy", &json!({})).await?;
    api.put("/actions", &json!({"action_type": "InstanceStart"}))
        .await?;
    Ok(())
}

impl Booting {
    /// Lets go of a VM whose agent will not greet (it greeted before its
    /// snapshot was taken): the readiness socket goes.
    pub fn without_greeting(self) {
        let _ = std::fs::remove_file(listener_path(&self.paths.vsock_uds, READY_PORT));
    }

    /// Waits for the agent's readiness push. On failure the process is
    /// killed and the error carries the reason and the console tail.
    pub async fn wait_ready(self, timeout: Duration) -> Result<Hello, VmmError> {
        let ready = &self.ready;
        let reason = match await_greeting(ready, Some(self.process), timeout, POLL_VM).await {
            Ok(hello) => {
                let _ = std::fs::remove_file(listener_path(&self.paths.vsock_uds, READY_PORT));
                return Ok(hello);
            }
            Err(NoGreeting::Bad(e)) => format!("the guest agent sent a bad greeting: {e}"),
            Err(NoGreeting::Silent) => "the guest agent connected but sent no greeting".into(),
            Err(NoGreeting::Exited) => "the VM stopped before its agent was ready (guest kernel \
                                        panic or Firecracker error)"
                .into(),
            Err(NoGreeting::TimedOut) => format!(
                "the guest agent was not ready within {} s (⟨say:slow_boot⟩)",
                timeout.as_secs()
            ),
        };
        kill_off_workers(self.process).await;
        Err(VmmError::Boot {
            reason,
            console_tail: self.paths.diagnostics(),
        })
    }
}

/// Kills a process and waits for it (up to 5 s) on a blocking thread, so
/// the async workers keep serving other calls meanwhile.
async fn kill_off_workers(p: ProcessId) {
    let _ = tokio::task::spawn_blocking(move || p.kill_and_wait(Duration::from_secs(5))).await;
}

/// How often a VM's process is checked while waiting for its agent.
const POLL_VM: Duration = Duration::from_millis(100);

/// How long an agent that connected may take to send its greeting.
pub const GREETING_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no greeting came.
#[derive(Debug)]
pub enum NoGreeting {
    /// The agent connected and sent something that is not a greeting.
    Bad(String),
    /// The agent connected and sent nothing within [`GREETING_TIMEOUT`].
    Silent,
    /// The process exited first (and is reaped).
    Exited,
    /// Nothing within the timeout.
    TimedOut,
}

/// Waits on `ready` for an agent's readiness greeting, checking every
/// `poll` that `process` still lives, for up to `timeout`.
pub async fn await_greeting(
    ready: &UnixListener,
    process: Option<ProcessId>,
    timeout: Duration,
    poll: Duration,
) -> Result<Hello, NoGreeting> {
    let until = Instant::now() + timeout;
    loop {
        tokio::select! {
            accepted = ready.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                return match tokio::time::timeout(GREETING_TIMEOUT, read_message::<_, Hello>(&mut stream, "its greeting")).await {
                    Ok(Ok(hello)) => Ok(hello),
                    Ok(Err(e)) => Err(NoGreeting::Bad(e.to_string())),
                    Err(_) => Err(NoGreeting::Silent),
                };
            }
            () = tokio::time::sleep(poll) => {
                if !process.is_some_and(|p| p.is_alive()) {
                    if let Some(p) = process {
                        p.reap();
                    }
                    return Err(NoGreeting::Exited);
                }
                if Instant::now() >= until {
                    return Err(NoGreeting::TimedOut);
                }
            }
        }
    }
}

/// Removes what a VM left on the host: its jail (or sockets), and its
/// cgroups (`cgroups`: the cgroup mount point and the parent group). The
/// process must already be gone.
pub fn remove_vm_files(
    id: &str,
    paths: &VmPaths,
    cgroups: Option<(&Path, &str)>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(dir) = &paths.jail_dir
        && dir.exists()
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        problems.push(format!("{}: {e}", dir.display()));
    }
    for sock in [
        &paths.api_sock,
        &paths.vsock_uds,
        &listener_path(&paths.vsock_uds, READY_PORT),
    ] {
        let _ = std::fs::remove_file(sock);
    }
    if let Some((root, parent)) = cgroups
        && let Err(e) = cgroup::remove(root, parent, id)
    {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests;

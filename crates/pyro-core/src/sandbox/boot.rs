//! Booting a sandbox on either backend, and what a boot needs: a jail
//! uid, cgroup limits, a protocol check of the agent's greeting.

use super::*;

impl Sandbox {
    pub(super) async fn boot_firecracker(
        &mut self,
        spec: &SandboxSpec<'_>,
    ) -> Result<Hello, CoreError> {
        let booting = self.launch_firecracker(spec, None, false).await?;
        if let Some(net) = &spec.network {
            self.start_network_daemon(&net.policy).await?;
        }
        Ok(booting.wait_ready(spec.boot_timeout).await?)
    }

    /// Starts Firecracker (jailed when root) and configures it: a kernel to
    /// boot (a template guest's, with `template`), or a snapshot to resume.
    pub(super) async fn launch_firecracker(
        &mut self,
        spec: &SandboxSpec<'_>,
        restore: Option<pyro_vmm::launch::RestoreSpec>,
        template: bool,
    ) -> Result<pyro_vmm::launch::Booting, CoreError> {
        use pyro_vmm::binaries::{FIRECRACKER, JAILER, locate_one};
        let cache = self.paths.cache().clone();
        let firecracker = locate_one(cache.root(), FIRECRACKER)?;
        spec.env.verify_kernel()?;
        let dir = self.paths.vm_dir(&self.record.id);
        let upper = spec.upper.clone().unwrap_or_else(|| dir.join("upper.ext4"));
        let jail = match self.record.jail_uid {
            Some(uid) => {
                let limits =
                    crate::protections::HostLimits::for_guest(spec.vcpu_count, spec.mem_mib);
                let (version, settings) = cgroup_settings(self.paths.cgroup_root(), limits);
                let parent = self.paths.cgroup_parent();
                self.record.cgroup_parent = Some(parent.clone());
                Some(JailSpec {
                    // Only a jailed launch (as root) needs the jailer.
                    jailer: locate_one(cache.root(), JAILER)?.path,
                    chroot_base: self.paths.jail_base(),
                    uid,
                    gid: uid,
                    cgroup_version: version,
                    parent_cgroup: parent,
                    cgroup_settings: settings,
                })
            }
            None => None,
        };
        let mut extra = vec![
            format!("pyro.idle={}", spec.idle_seconds),
            format!("pyro.hostname={}", spec.hostname),
        ];
        if template {
            extra.push("pyro.template=1".into());
        }
        let network = match spec
            .network
            .as_ref()
            .filter(|n| n.policy.mode.has_network())
        {
            Some(net) => {
                extra.extend(pyro_net::guest_boot_args());
                Some(self.setup_network(net).await?)
            }
            None => None,
        };
        let launch = LaunchSpec {
            id: self.record.id.clone(),
            firecracker: firecracker.path,
            kernel: spec.env.kernel_image(),
            base_image: spec.env.rootfs_image(),
            upper_disk: upper,
            vcpu_count: spec.vcpu_count,
            mem_mib: spec.mem_mib,
            boot_args: pyro_vmm::host::boot_args(pyro_vmm::host::is_pvm(), &extra),
            run_dir: dir,
            jail,
            restore,
            network,
        };
        self.record.firecracker = Some(VmPaths::for_spec(&launch));
        self.record.save(&self.paths)?;
        let paths = self.paths.clone();
        let mut record = self.record.clone();
        let booting = pyro_vmm::launch::launch(&launch, &mut |process, keeper| {
            record.process = Some(process);
            record.console_keeper = keeper;
            let _ = record.save(&paths);
        })
        .await;
        self.record = record;
        // The callback could not report a failed save; a record without
        // its process would leave the VM unreachable for teardown.
        self.record.save(&self.paths)?;
        Ok(booting?)
    }

    pub(super) async fn boot_host_compat(
        &mut self,
        spec: &SandboxSpec<'_>,
    ) -> Result<Hello, CoreError> {
        let dir = self.paths.vm_dir(&self.record.id);
        let tree = spec.env.rootfs_tree();
        let agent = tree.join(pyro_env::agent::GUEST_PATH);
        let sock = dir.join("agent.sock");
        let ready_path = dir.join("ready.sock");
        let console = dir.join("console.log");
        for p in [&sock, &ready_path] {
            pyro_vmm::vsock::check_socket_path(p)?;
        }
        let ready = UnixListener::bind(&ready_path)
            .map_err(|e| CoreError::io(format!("listening on {}", ready_path.display()), e))?;
        self.record.agent_socket = Some(sock.clone());
        self.record.save(&self.paths)?;
        // The agent's log is capped on the host like a guest console.
        let (pipe, keeper) =
            pyro_vmm::console::spawn_keeper(&console, pyro_vmm::console::CONSOLE_CAP_BYTES)?;
        self.record.console_keeper = keeper;
        let (log, log2) = pyro_vmm::console::stdio_pair(pipe)?;
        let child = std::process::Command::new(&agent)
            .arg("host-compat")
            .arg("--lower")
            .arg(&tree)
            .arg("--upper")
            .arg(spec.upper.clone().unwrap_or_else(|| dir.join("upper")))
            .arg("--mountpoint")
            .arg(dir.join("root"))
            .arg("--socket")
            .arg(&sock)
            .arg("--ready")
            .arg(&ready_path)
            .arg("--idle-seconds")
            .arg(spec.idle_seconds.to_string())
            .arg("--hostname")
            .arg(&spec.hostname)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| CoreError::io(format!("starting {}", agent.display()), e))?;
        let process = ProcessId::of(child.id());
        drop(child);
        self.record.process = process;
        self.record.save(&self.paths)?;
        let fail = |reason: String| CoreError::HostCompat {
            reason,
            log_tail: pyro_vmm::console::console_tail(&console, 2000),
        };
        match await_greeting(
            &ready,
            process,
            spec.boot_timeout,
            Duration::from_millis(50),
        )
        .await
        {
            Ok(hello) => Ok(hello),
            Err(NoGreeting::Bad(e)) => Err(fail(format!("bad greeting: {e}"))),
            Err(NoGreeting::Silent) => Err(fail("the agent connected but sent no greeting".into())),
            Err(NoGreeting::Exited) => Err(fail("the sandbox process exited".into())),
            Err(NoGreeting::TimedOut) => Err(fail(format!(
                "no greeting within {} s",
                spec.boot_timeout.as_secs()
            ))),
        }
    }
}

pub(super) fn check_protocol(hello: &Hello, env: &str) -> Result<(), CoreError> {
    if hello.protocol_version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(CoreError::Transport(format!(
            "the agent in {env} speaks protocol {} but this pyro speaks {PROTOCOL_VERSION}; run \
             ⟨op:env pull {env}⟩ to rebuild it with the matching agent",
            hello.protocol_version
        )))
    }
}

/// Lowest jail uid not used by another sandbox (call with the vms lock).
pub(super) fn allocate_uid(paths: &Paths) -> Result<u32, CoreError> {
    // Read leniently: a record of another layout version is left running by
    // the sweep, so its uid is taken too.
    let used: HashSet<u32> = VmRecord::list_ids(paths)
        .iter()
        .filter_map(|id| std::fs::read(VmRecord::file(paths, id)).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|v| v.get("jail_uid")?.as_u64())
        .filter_map(|u| u32::try_from(u).ok())
        .collect();
    (JAIL_UID_BASE..JAIL_UID_BASE + 65_536)
        .find(|u| !used.contains(u))
        .ok_or_else(|| CoreError::invalid("no free jail uid: too many sandboxes"))
}

/// The cgroup version and the jailer's `--cgroup` settings for a VM (only
/// for the controllers the host has).
pub(super) fn cgroup_settings(
    root: &Path,
    limits: crate::protections::HostLimits,
) -> (CgroupVersion, Vec<String>) {
    let Some((version, ctrls)) = cgroup::detect(root) else {
        return (CgroupVersion::V1, Vec::new());
    };
    let limits = limits.only(&ctrls);
    let mut s = Vec::new();
    if let Some(m) = limits.memory_bytes {
        s.push(format!("{}={m}", version.memory_limit_file()));
    }
    if let Some(p) = limits.pids {
        s.push(format!("pids.max={p}"));
    }
    if let Some(c) = limits.cpu_millicores {
        s.extend(version.cpu_limit(c));
    }
    (version, s)
}

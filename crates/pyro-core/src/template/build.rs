//! Building a template: boot a guest cold as a template guest (its init
//! warms the page cache with the work agents do first, then waits for its
//! disk), snapshot it there, and keep the snapshot with the empty disk it
//! was booted with (the disk every new guest of the template starts from).

use std::time::Duration;

use pyro_env::{Installed, Progress};
use tokio::time::Instant;

use super::{
    FORMAT_VERSION, HANDOFF_MEM, HANDOFF_STATE, Meta, Shape, Template, lookup, name, root, sources,
};
use crate::records::Owner;
use crate::sandbox::{BootPref, Discard, ProgressRef, Sandbox, SandboxSpec};
use crate::{BackendKind, CoreError, Paths, now_unix};
use pyro_protocol::{Command, ExecRequest, Request};
use pyro_vmm::launch::{SNAPSHOT_MEM, SNAPSHOT_STATE};
use pyro_vmm::snapshot::{TAKEN_MEM, TAKEN_STATE};

/// How long one warm-up command may take.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a build may take beyond its boot (warm-up, refresh, flush,
/// snapshot); also how long a second builder waits for the first.
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Largest VM state file accepted from a template guest's jail.
const MAX_VMSTATE_BYTES: u64 = 16 << 20;

/// Returns the usable template for `env` and `shape`, building it when
/// there is none or it is stale. Builds of one template are serialized
/// across processes; a second caller waits and then uses the first's.
pub async fn build(
    paths: &Paths,
    env: &Installed,
    shape: Shape,
    boot_timeout: Duration,
    force: bool,
    progress: &dyn Progress,
) -> Result<Template, CoreError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(CoreError::invalid(
            "templates need the jailer, which needs root; run pyro as root (or boot cold)",
        ));
    }
    let (p, e) = (paths.clone(), env.clone());
    let wanted = crate::blocking(move || sources(&p, &e)).await?;
    let name = name(env, shape);
    let _building = super::lock(
        paths,
        &super::build_lock(&name),
        false,
        boot_timeout + BUILD_TIMEOUT,
    )
    .await?;
    if !force {
        let (p, e, w) = (paths.clone(), env.clone(), wanted.clone());
        if let Ok(t) = crate::blocking(move || Ok(lookup(&p, &e, shape, &w))).await? {
            return Ok(t);
        }
    }
    let started = Instant::now();
    let root = root(paths);
    std::fs::create_dir_all(&root)
        .map_err(|e| CoreError::io(format!("creating {}", root.display()), e))?;
    // Leftovers of a build that was killed (this lock was free, so no
    // build of this template runs).
    let staging = root.join(format!(".build-{name}"));
    let work = paths.state().join("template-build").join(&name);
    let (s2, w2) = (staging.clone(), work.clone());
    crate::blocking(move || {
        let _ = std::fs::remove_dir_all(&s2);
        let _ = std::fs::remove_dir_all(&w2);
        std::fs::create_dir_all(&s2)
            .and_then(|()| std::fs::create_dir_all(&w2))
            .map_err(|e| CoreError::io(format!("creating {}", s2.display()), e))
    })
    .await?;
    let built = build_in(paths, env, shape, boot_timeout, &staging, &work, progress).await;
    let (s2, w2) = (staging.clone(), work.clone());
    let clean = move |all: bool| {
        if all {
            let _ = std::fs::remove_dir_all(&s2);
        }
        let _ = std::fs::remove_dir_all(&w2);
    };
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            crate::blocking(move || {
                clean(true);
                Ok(())
            })
            .await?;
            return Err(e);
        }
    };
    let meta = Meta {
        format_version: FORMAT_VERSION,
        environment: env.name.to_owned(),
        environment_version: env.version.to_owned(),
        shape,
        sources: wanted,
        vmstate_sha256: built.fresh.state_sha256,
        vmstate_bytes: built.fresh.state_bytes,
        mem_bytes: built.fresh.mem_bytes,
        upper_bytes: built.upper_bytes,
        handoff_vmstate_sha256: built.handoff.state_sha256,
        handoff_vmstate_bytes: built.handoff.state_bytes,
        handoff_mem_bytes: built.handoff.mem_bytes,
        built_at: now_unix(),
        build_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| CoreError::io("encoding", e.into()))?;
    pyro_env::write_atomic(&staging.join("meta.json"), &json)?;
    // Replace the old one (stale or damaged) in two renames, with no
    // restore between its lookup and its links (the use lock): a reader
    // sees the old template, none, or the new one, never a mix.
    let _using = super::lock(
        paths,
        &super::use_lock(&name),
        false,
        Duration::from_secs(60),
    )
    .await?;
    let dir = root.join(&name);
    let (d2, n2) = (dir.clone(), name.clone());
    crate::blocking(move || {
        let old = root.join(format!(".old-{n2}"));
        let _ = std::fs::remove_dir_all(&old);
        if d2.exists() {
            std::fs::rename(&d2, &old)
                .map_err(|e| CoreError::io(format!("moving the old {n2} aside"), e))?;
        }
        std::fs::rename(&staging, &d2)
            .map_err(|e| CoreError::io(format!("installing the template {n2}"), e))?;
        if let Some(parent) = d2.parent() {
            let _ = std::fs::File::open(parent).and_then(|f| f.sync_all());
        }
        let _ = std::fs::remove_dir_all(&old);
        clean(false);
        Ok(())
    })
    .await?;
    Ok(Template { dir, name, meta })
}

/// What a build leaves in its staging directory.
struct Built {
    /// The fresh snapshot (taken with the template's disk mounted).
    fresh: Snapshot,
    /// The handoff snapshot (init waiting for its disk).
    handoff: Snapshot,
    /// Size of the disk.
    upper_bytes: u64,
}

/// One snapshot's files.
struct Snapshot {
    state_bytes: u64,
    mem_bytes: u64,
    state_sha256: String,
}

/// Boots a template guest into its handoff wait and snapshots it there;
/// resumes that snapshot with the template's empty disk (so every build
/// proves the handoff path), warms it up through the exec path and
/// snapshots it again. Both snapshots and the disk go into `staging`.
async fn build_in(
    paths: &Paths,
    env: &Installed,
    shape: Shape,
    boot_timeout: Duration,
    staging: &std::path::Path,
    work: &std::path::Path,
    progress: &dyn Progress,
) -> Result<Built, CoreError> {
    // The disk is made beside the jails (it is hard-linked into one) and
    // moved into the cache at the end.
    let upper = work.join("upper.ext4");
    let (u, mib) = (upper.clone(), shape.disk_mib);
    crate::blocking(move || pyro_vmm::disk::create_upper_disk(&u, mib).map_err(CoreError::from))
        .await?;
    let spec = SandboxSpec {
        env,
        backend: BackendKind::Firecracker,
        vcpu_count: shape.vcpu_count,
        mem_mib: shape.mem_mib,
        disk_mib: shape.disk_mib,
        idle_seconds: 0,
        boot_timeout,
        owner: Owner::this_process(),
        hostname: "pyro-template".into(),
        upper: Some(upper.clone()),
        boot: BootPref::Cold("building a template".into()),
        progress: ProgressRef(progress),
        network: None,
    };
    progress.step(&format!(
        "building the {} template ({} vCPU, {} MiB): a cold boot and a warm-up",
        env.name, shape.vcpu_count, shape.mem_mib
    ));
    let mut waiting = Sandbox::create(paths, &spec).await?;
    waiting.boot_template(&spec).await?;
    progress.step("taking the handoff snapshot");
    // Beside the jails (a restore hard-links its files into one); moved
    // into the cache with the disk at the end.
    let handoff = snapshot_into(&waiting, shape, work, HANDOFF_STATE, HANDOFF_MEM).await;
    waiting.close().await?;
    let handoff = handoff?;

    progress.step("resuming it with the template's disk");
    let mut sandbox = Sandbox::create(paths, &spec).await?;
    sandbox
        .resume_waiting(
            &spec,
            pyro_vmm::launch::RestoreSpec {
                vmstate: work.join(HANDOFF_STATE),
                mem: work.join(HANDOFF_MEM),
            },
        )
        .await?;
    progress.step("warming the template up");
    for script in pyro_protocol::WARM_UP_SCRIPTS {
        let req = ExecRequest {
            command: Command::Shell {
                script: (*script).into(),
            },
            cwd: None,
            env: Default::default(),
            timeout_ms: 120_000,
            output_limit_bytes: 4096,
            stdin: false,
            limits: Default::default(),
            run_as: None,
        };
        let out = tokio::time::timeout(WARM_UP_TIMEOUT, sandbox.exec(req, &mut Discard))
            .await
            .map_err(|_| CoreError::Transport("the template guest's warm-up hung".into()))??;
        // A tool the image lacks (an image without bash or git) only costs
        // speed, as in init's warm-up; a build that failed here would be
        // tried again, and fail again, on every boot of the environment.
        // But `true` failing means the shell itself does not work.
        if out.exit_code != 0 {
            if *script == "true" {
                return Err(CoreError::Transport(format!(
                    "the template guest cannot run commands: `true` exited with {}",
                    out.exit_code
                )));
            }
            tracing::info!(
                "template warm-up: `{script}` exited with {} (the image may lack it)",
                out.exit_code
            );
        }
    }
    // A refresh as every restore of the fresh snapshot will make (its code
    // paths resident), then a flush.
    sandbox
        .call(
            crate::sandbox::refresh_request("pyro-template", 0),
            Duration::from_secs(60),
        )
        .await?;
    sandbox
        .call(Request::Sync, Duration::from_secs(120))
        .await?;
    progress.step("taking the template snapshot");
    let fresh = snapshot_into(&sandbox, shape, staging, SNAPSHOT_STATE, SNAPSHOT_MEM).await;
    sandbox.close().await?;
    let fresh = fresh?;
    let (work, staged) = (work.to_owned(), staging.to_owned());
    let upper_bytes = crate::blocking(move || {
        use std::os::unix::fs::PermissionsExt;
        for f in [HANDOFF_STATE, HANDOFF_MEM, "upper.ext4"] {
            let (from, to) = (work.join(f), staged.join(f));
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    pyro_vmm::disk::sparse_copy(&from, &to)?;
                    std::fs::File::open(&to)
                        .and_then(|h| h.sync_all())
                        .map_err(|e| CoreError::io(format!("flushing {f}"), e))?;
                }
                Err(e) => return Err(CoreError::io(format!("moving the template's {f}"), e)),
            }
        }
        let u = staged.join("upper.ext4");
        std::os::unix::fs::chown(&u, Some(0), Some(0))
            .and_then(|()| std::fs::set_permissions(&u, std::fs::Permissions::from_mode(0o444)))
            .and_then(|()| std::fs::File::open(&u).and_then(|f| f.sync_all()))
            .and_then(|()| std::fs::symlink_metadata(&u))
            .map(|m| m.len())
            .map_err(|e| CoreError::io("making the template disk read-only", e))
    })
    .await?;
    Ok(Built {
        fresh,
        handoff,
        upper_bytes,
    })
}

/// Pauses the sandbox's guest, snapshots it, kills its Firecracker and
/// takes the two files out of the jail into `staging` as `state_name` and
/// `mem_name` (checked, flushed, the state hashed).
async fn snapshot_into(
    sandbox: &Sandbox,
    shape: Shape,
    staging: &std::path::Path,
    state_name: &'static str,
    mem_name: &'static str,
) -> Result<Snapshot, CoreError> {
    let rec = sandbox.record().clone();
    let (Some(fc), Some(uid)) = (rec.firecracker.clone(), rec.jail_uid) else {
        return Err(CoreError::invalid(
            "the template guest did not run in a jail; templates need root",
        ));
    };
    // Writing guest memory out: 30 s, and 30 s more per GiB.
    let api = pyro_vmm::api::ApiClient::new(&fc.api_sock)
        .expecting_peer(Some(uid))
        .with_timeout(Duration::from_secs(
            30 + 30 * u64::from(shape.mem_mib).div_ceil(1024),
        ));
    pyro_vmm::snapshot::create_full(&api).await?;
    let jail = fc
        .jail_dir
        .clone()
        .ok_or_else(|| CoreError::invalid("the template guest has no jail"))?;
    // Firecracker goes before its files are taken (a process still alive
    // could keep writing them through a handle it holds); the paused
    // guest's disk is already as the memory expects it.
    if let Some(p) = rec.process {
        crate::blocking(move || {
            p.kill_and_wait(Duration::from_secs(10));
            Ok(())
        })
        .await?;
    }
    let staged = staging.to_owned();
    let want_mem = u64::from(shape.mem_mib) << 20;
    crate::blocking(move || {
        let state = pyro_vmm::snapshot::collect(&jail, TAKEN_STATE, uid, &staged.join(state_name))?;
        if state > MAX_VMSTATE_BYTES {
            return Err(CoreError::TooLarge(format!(
                "the template guest's VM state is {state} bytes, over {MAX_VMSTATE_BYTES}"
            )));
        }
        let mem = pyro_vmm::snapshot::collect(&jail, TAKEN_MEM, uid, &staged.join(mem_name))?;
        if mem != want_mem {
            return Err(CoreError::Transport(format!(
                "the template guest's memory file is {mem} bytes, not the {want_mem} of its shape"
            )));
        }
        // On disk before the template is installed.
        for f in [state_name, mem_name] {
            std::fs::File::open(staged.join(f))
                .and_then(|h| h.sync_all())
                .map_err(|e| CoreError::io(format!("flushing {f}"), e))?;
        }
        let hash = pyro_vmm::sha256_file(&staged.join(state_name))
            .map_err(|e| CoreError::io("hashing the VM state", e))?;
        Ok(Snapshot {
            state_bytes: state,
            mem_bytes: mem,
            state_sha256: hash,
        })
    })
    .await
}

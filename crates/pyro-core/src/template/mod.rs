//! Templates: snapshots of a warmed-up guest that new guests resume from.
//!
//! ```text
//! <cache>/templates/<env-slug>-<vcpus>c-<mem>m-<disk>d/
//!   meta.json      format version, shape, the hashes it came from, file sizes
//!   snap.vmstate   Firecracker's VM state
//!   snap.mem       guest memory (mapped privately by every restore)
//!   upper.ext4     the writable disk exactly as the memory expects it
//! ```
//!
//! A template is built once per environment and machine shape (first use,
//! `env pull`, or `env template build`) and is only used while everything
//! it came from is the same: the format, the kernel, the base image, the
//! agent baked into it, Firecracker and the boot arguments. Anything else
//! makes it stale and it is rebuilt, never used. Its files are root's and
//! read-only; each restore gets its own copy of the disk (the memory
//! snapshot is only ever resumed with the disk it was taken with).
//! Templates hold no secrets, seeds, network settings or identity: the host
//! sends those after the restore (`Request::Refresh`).

mod build;

use std::path::{Path, PathBuf};

use pyro_env::Installed;
use serde::{Deserialize, Serialize};

use crate::{CoreError, Paths};

pub use build::build;

/// Version of the template layout; another version is stale.
pub const FORMAT_VERSION: u32 = 2;

/// Machine shape a template serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Shape {
    /// vCPUs.
    pub vcpu_count: u8,
    /// Memory, MiB.
    pub mem_mib: u32,
    /// Writable disk, MiB.
    pub disk_mib: u64,
}

impl Shape {
    /// The default shape (`run`, `workspace create` without size flags).
    pub fn default_shape() -> Self {
        Self {
            vcpu_count: crate::limits::VCPUS.default,
            mem_mib: crate::limits::MEM_MIB.default,
            disk_mib: crate::limits::DISK_MIB.default,
        }
    }
}

/// What a template came from; any difference makes it stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Sources {
    /// Cache key of the guest kernel.
    pub kernel_key: String,
    /// SHA-256 of the base image.
    pub rootfs_sha256: String,
    /// SHA-256 of the agent baked into it.
    pub agent_sha256: String,
    /// SHA-256 of the Firecracker binary.
    pub firecracker_sha256: String,
    /// The guest kernel's command line.
    pub boot_args: String,
    /// The host kernel's release (KVM or PVM restores what it saved).
    pub host_kernel: String,
}

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Meta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Environment name.
    pub environment: String,
    /// Environment version.
    pub environment_version: String,
    /// Machine shape.
    pub shape: Shape,
    /// What it came from.
    pub sources: Sources,
    /// SHA-256 of `snap.vmstate`.
    pub vmstate_sha256: String,
    /// Size of `snap.vmstate`.
    pub vmstate_bytes: u64,
    /// Size of `snap.mem`.
    pub mem_bytes: u64,
    /// Size of `upper.ext4`.
    pub upper_bytes: u64,
    /// SHA-256 of `handoff.vmstate`.
    pub handoff_vmstate_sha256: String,
    /// Size of `handoff.vmstate`.
    pub handoff_vmstate_bytes: u64,
    /// Size of `handoff.mem`.
    pub handoff_mem_bytes: u64,
    /// When it was built (Unix seconds).
    pub built_at: f64,
    /// How long the build took.
    pub build_ms: u64,
}

/// A usable template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Its directory.
    pub dir: PathBuf,
    /// Its name (the directory name).
    pub name: String,
    /// What it records.
    pub meta: Meta,
}

impl Template {
    /// The VM state file.
    pub fn vmstate(&self) -> PathBuf {
        self.dir.join(pyro_vmm::launch::SNAPSHOT_STATE)
    }
    /// The memory file.
    pub fn mem(&self) -> PathBuf {
        self.dir.join(pyro_vmm::launch::SNAPSHOT_MEM)
    }
    /// The writable disk the memory expects.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper.ext4")
    }
    /// The handoff snapshot's VM state (init waiting for its disk).
    pub fn handoff_vmstate(&self) -> PathBuf {
        self.dir.join(HANDOFF_STATE)
    }
    /// The handoff snapshot's memory.
    pub fn handoff_mem(&self) -> PathBuf {
        self.dir.join(HANDOFF_MEM)
    }
}

/// The handoff snapshot's VM state file: taken while the template guest's
/// init waits for its disk, resumed by every guest that brings its own.
pub const HANDOFF_STATE: &str = "handoff.vmstate";

/// The handoff snapshot's memory file.
pub const HANDOFF_MEM: &str = "handoff.mem";

/// Where templates live.
pub fn root(paths: &Paths) -> PathBuf {
    paths.cache().root().join("templates")
}

/// The template name for `env` and `shape`.
pub fn name(env: &Installed, shape: Shape) -> String {
    format!(
        "{}-{}c-{}m-{}d",
        env.slug(),
        shape.vcpu_count,
        shape.mem_mib,
        shape.disk_mib
    )
}

/// What a template for `env` must have come from now.
pub fn sources(paths: &Paths, env: &Installed) -> Result<Sources, CoreError> {
    let fc = pyro_vmm::binaries::locate_one(paths.cache().root(), pyro_vmm::binaries::FIRECRACKER)?;
    let firecracker_sha256 = match fc.sha256 {
        Some(s) => s,
        None => pyro_vmm::sha256_file(&fc.path)
            .map_err(|e| CoreError::io(format!("hashing {}", fc.path.display()), e))?,
    };
    Ok(Sources {
        kernel_key: env.manifest.kernel_key.clone(),
        rootfs_sha256: env.manifest.rootfs_sha256.clone(),
        agent_sha256: env.manifest.agent_sha256.clone(),
        firecracker_sha256,
        boot_args: boot_args(),
        host_kernel: host_kernel(),
    })
}

/// The running host kernel's release.
fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_default()
}

/// The kernel command line of a template guest. Identity and the idle
/// deadline are not in it: a restored guest gets its own from the host.
pub(crate) fn boot_args() -> String {
    pyro_vmm::host::boot_args(
        pyro_vmm::host::is_pvm(),
        &[
            "pyro.idle=0".to_owned(),
            "pyro.hostname=pyro-template".to_owned(),
        ],
    )
}

/// Why a template on disk cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// There is none (or it is unreadable): build it.
    Missing,
    /// It came from something else: rebuild it.
    Stale(String),
    /// Its files do not match its record: remove it and cold-boot.
    Damaged(String),
}

impl Unusable {
    /// The reason in words.
    pub fn reason(&self) -> String {
        match self {
            Self::Missing => "there is no template yet".into(),
            Self::Stale(why) | Self::Damaged(why) => why.clone(),
        }
    }
}

fn read_meta(dir: &Path) -> Option<Meta> {
    let bytes = std::fs::read(dir.join("meta.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The template for `env` and `shape`, checked against `wanted`: the
/// format, every source, and each file's size (the small VM state file by
/// its hash too). Never follows a link.
pub fn lookup(
    paths: &Paths,
    env: &Installed,
    shape: Shape,
    wanted: &Sources,
) -> Result<Template, Unusable> {
    let name = name(env, shape);
    let dir = root(paths).join(&name);
    check(dir, name, &env.name, shape, wanted)
}

/// [`lookup`] of the template in `dir`.
fn check(
    dir: PathBuf,
    name: String,
    environment: &str,
    shape: Shape,
    wanted: &Sources,
) -> Result<Template, Unusable> {
    let meta = read_meta(&dir).ok_or(Unusable::Missing)?;
    if meta.format_version != FORMAT_VERSION {
        return Err(Unusable::Stale(format!(
            "the template {name} has format {}, this pyro writes {FORMAT_VERSION}",
            meta.format_version
        )));
    }
    if meta.shape != shape || meta.environment != environment {
        return Err(Unusable::Stale(format!(
            "the template {name} was made for another environment or shape"
        )));
    }
    if let Some(what) = changed(&meta.sources, wanted) {
        return Err(Unusable::Stale(format!(
            "the template {name} is stale: {what} changed since it was built"
        )));
    }
    let t = Template { dir, name, meta };
    for (path, want) in [
        (t.vmstate(), t.meta.vmstate_bytes),
        (t.mem(), t.meta.mem_bytes),
        (t.upper(), t.meta.upper_bytes),
        (t.handoff_vmstate(), t.meta.handoff_vmstate_bytes),
        (t.handoff_mem(), t.meta.handoff_mem_bytes),
    ] {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.len() == want => {}
            Ok(m) if m.is_file() => {
                return Err(Unusable::Damaged(format!(
                    "the template file {file} of {} is {} bytes, its record says {want}",
                    t.name,
                    m.len()
                )));
            }
            _ => {
                return Err(Unusable::Damaged(format!(
                    "the template file {file} of {} is missing or not a regular file",
                    t.name
                )));
            }
        }
    }
    for (path, want) in [
        (t.vmstate(), &t.meta.vmstate_sha256),
        (t.handoff_vmstate(), &t.meta.handoff_vmstate_sha256),
    ] {
        match pyro_vmm::sha256_file(&path) {
            Ok(h) if &h == want => {}
            _ => {
                return Err(Unusable::Damaged(format!(
                    "the template file {} of {} does not match its checksum",
                    path.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    t.name
                )));
            }
        }
    }
    Ok(t)
}

/// Which source differs, in words.
fn changed(have: &Sources, want: &Sources) -> Option<&'static str> {
    if have.agent_sha256 != want.agent_sha256 {
        Some("the guest agent")
    } else if have.kernel_key != want.kernel_key {
        Some("the guest kernel")
    } else if have.rootfs_sha256 != want.rootfs_sha256 {
        Some("the base image")
    } else if have.firecracker_sha256 != want.firecracker_sha256 {
        Some("Firecracker")
    } else if have.boot_args != want.boot_args {
        Some("the kernel command line")
    } else if have.host_kernel != want.host_kernel {
        Some("the host kernel")
    } else {
        None
    }
}

/// Lock held while a template is in use: shared by restores from the
/// lookup until their jail holds links to its files, exclusive while the
/// template's directory is replaced or removed.
pub(crate) fn use_lock(name: &str) -> String {
    format!("template-{name}")
}

/// Lock held by the one build of a template in progress.
pub(crate) fn build_lock(name: &str) -> String {
    format!("template-build-{name}")
}

/// Waits (polling, at most `limit`) for the named cache lock, shared or
/// exclusive.
pub(crate) async fn lock(
    paths: &Paths,
    lock: &str,
    shared: bool,
    limit: std::time::Duration,
) -> Result<std::fs::File, CoreError> {
    let until = tokio::time::Instant::now() + limit;
    loop {
        let (p, l) = (paths.clone(), lock.to_owned());
        let got = crate::blocking(move || {
            let cache = p.cache();
            if shared {
                cache.try_lock_shared(&l)
            } else {
                cache.try_lock(&l)
            }
            .map_err(CoreError::from)
        })
        .await?;
        if let Some(f) = got {
            return Ok(f);
        }
        if tokio::time::Instant::now() >= until {
            return Err(CoreError::Busy(format!(
                "the template lock {lock} has been held for over {} s; try again later",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Removes a template directory (a damaged or stale one), if it is there
/// and nothing uses or builds it right now (`false`: left for later).
pub fn remove(paths: &Paths, name: &str) -> Result<bool, CoreError> {
    let Some(_building) = paths.cache().try_lock(&build_lock(name))? else {
        return Ok(false);
    };
    let Some(_using) = paths.cache().try_lock(&use_lock(name))? else {
        return Ok(false);
    };
    let dir = root(paths).join(name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(CoreError::io(format!("removing {}", dir.display()), e)),
    }
}

/// One template as `env template list` shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TemplateView {
    /// Its name.
    pub name: String,
    /// Environment name.
    pub environment: String,
    /// Machine shape.
    pub shape: Shape,
    /// Bytes on disk (memory, state and disk data).
    pub disk_usage_bytes: u64,
    /// When it was built.
    pub built_at: f64,
    /// How long the build took.
    pub build_ms: u64,
    /// `ready`, `stale` or `damaged`.
    pub status: String,
    /// Why it is not ready.
    pub status_reason: Option<String>,
    /// What it came from.
    pub sources: Sources,
}

/// Every template in the cache, checked against what `env_for` says each
/// environment is now (`None`: the environment is not installed).
pub fn list(
    paths: &Paths,
    env_for: &dyn Fn(&str) -> Option<Installed>,
) -> Result<Vec<TemplateView>, CoreError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(root(paths)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CoreError::io("listing templates", e)),
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let dir = entry.path();
        let Some(meta) = read_meta(&dir) else {
            continue;
        };
        let status = match env_for(&meta.environment) {
            None => Err(Unusable::Stale(format!(
                "{} is not installed",
                meta.environment
            ))),
            Some(env) => sources(paths, &env)
                .map_err(|e| Unusable::Stale(e.to_string()))
                .and_then(|s| lookup(paths, &env, meta.shape, &s).map(|_| ())),
        };
        let (status, status_reason) = match status {
            Ok(()) => ("ready", None),
            Err(u @ Unusable::Damaged(_)) => ("damaged", Some(u.reason())),
            Err(u) => ("stale", Some(u.reason())),
        };
        out.push(TemplateView {
            name,
            environment: meta.environment.clone(),
            shape: meta.shape,
            disk_usage_bytes: disk_usage(&dir),
            built_at: meta.built_at,
            build_ms: meta.build_ms,
            status: status.into(),
            status_reason,
            sources: meta.sources,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::symlink_metadata(e.path()).ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

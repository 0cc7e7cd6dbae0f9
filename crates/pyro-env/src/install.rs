//! Installing, inspecting and pruning environments.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::agent::AgentBinary;
use crate::kernel::{self, Kernel};
use crate::{
    CATALOG, CATALOG_VERSION, Cache, EnvError, EnvSpec, PLATFORM, Progress, now_unix,
    remove_matching, rootfs, sha256_file, write_atomic,
};

/// Version of the on-disk environment layout.
pub const LAYOUT_VERSION: u32 = 1;

/// What an installed environment records about itself (`environment.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvManifest {
    /// [`LAYOUT_VERSION`] of the writer.
    pub layout_version: u32,
    /// Environment name.
    pub name: String,
    /// Environment version.
    pub version: String,
    /// Catalog version of the writer.
    pub catalog_version: String,
    /// Platform.
    pub platform: String,
    /// Packages installed on top of minbase.
    pub packages: Vec<String>,
    /// How it was made.
    pub source: String,
    /// When it was installed (Unix seconds).
    pub installed_at: f64,
    /// SHA-256 of the baked agent.
    pub agent_sha256: String,
    /// SHA-256 of `rootfs.ext4`.
    pub rootfs_sha256: String,
    /// Size of `rootfs.ext4`.
    pub rootfs_size_bytes: u64,
    /// Cache key of the kernel it boots.
    pub kernel_key: String,
}

/// An installed, usable environment.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Catalog entry.
    pub spec: &'static EnvSpec,
    /// Install directory.
    pub dir: PathBuf,
    /// What it records.
    pub manifest: EnvManifest,
    /// The kernel it boots.
    pub kernel: Kernel,
}

impl Installed {
    /// The read-only base image.
    pub fn rootfs_image(&self) -> PathBuf {
        self.dir.join("rootfs.ext4")
    }

    /// The root tree (host-compat lower layer).
    pub fn rootfs_tree(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The guest kernel.
    pub fn kernel_image(&self) -> PathBuf {
        self.kernel.vmlinux()
    }

    /// Checks the kernel against its checksum (cheap enough per boot).
    pub fn verify_kernel(&self) -> Result<(), EnvError> {
        kernel::verify(&self.kernel, self.spec.name)
    }
}

/// The install directory of `spec`.
pub fn env_dir(cache: &Cache, spec: &EnvSpec) -> PathBuf {
    cache.environments_dir().join(spec.slug())
}

fn read_manifest(dir: &Path) -> Option<EnvManifest> {
    serde_json::from_slice(&std::fs::read(dir.join("environment.json")).ok()?).ok()
}

/// The installed environment, or why it does not count as installed.
/// With `agent`, an install whose baked agent differs is stale.
pub fn installed(
    cache: &Cache,
    spec: &'static EnvSpec,
    agent: Option<&AgentBinary>,
) -> Result<Installed, EnvError> {
    let dir = env_dir(cache, spec);
    let not = |reason: &str| EnvError::NotInstalled {
        name: spec.name.to_owned(),
        reason: reason.to_owned(),
    };
    let manifest = read_manifest(&dir).ok_or_else(|| not("it has not been pulled yet"))?;
    if manifest.layout_version != LAYOUT_VERSION
        || manifest.name != spec.name
        || manifest.version != spec.version
    {
        return Err(not("the cached copy was made by another pyro version"));
    }
    if !dir.join("rootfs.ext4").is_file() || !dir.join("rootfs").is_dir() {
        return Err(not("the cached copy is incomplete"));
    }
    if let Some(a) = agent
        && a.sha256 != manifest.agent_sha256
    {
        return Err(not("its baked agent differs from this pyro's agent"));
    }
    let kernel = kernel::cached(cache, &manifest.kernel_key)
        .ok_or_else(|| not("its guest kernel is missing"))?;
    Ok(Installed {
        spec,
        dir,
        manifest,
        kernel,
    })
}

/// Catalog entry plus cache state, as `env list` and `env inspect` show it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnvStatus {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Description.
    pub description: String,
    /// Notable packages.
    pub default_packages: Vec<String>,
    /// Distribution.
    pub distribution: String,
    /// Distribution version.
    pub distribution_version: String,
    /// Platform.
    pub platform: String,
    /// Catalog version.
    pub catalog_version: String,
    /// Whether it is installed and current.
    pub installed: bool,
    /// Why not, when it is not.
    pub status_reason: Option<String>,
    /// The cache directory.
    pub cache_dir: PathBuf,
    /// The install directory.
    pub install_dir: PathBuf,
    /// How it is made.
    pub source: String,
    /// Kernel image, when installed.
    pub kernel_image: Option<PathBuf>,
    /// Base image, when installed.
    pub rootfs_image: Option<PathBuf>,
    /// Base image size, when installed.
    pub rootfs_size_bytes: Option<u64>,
    /// Install time, when installed.
    pub installed_at: Option<f64>,
}

/// Describes `spec` and its cache state.
pub fn status(cache: &Cache, spec: &'static EnvSpec, agent: Option<&AgentBinary>) -> EnvStatus {
    let inst = installed(cache, spec, agent);
    let (reason, inst) = match inst {
        Ok(i) => (None, Some(i)),
        Err(EnvError::NotInstalled { reason, .. }) => (Some(reason), None),
        Err(e) => (Some(e.to_string()), None),
    };
    EnvStatus {
        name: spec.name.into(),
        version: spec.version.into(),
        description: spec.description.into(),
        default_packages: spec
            .default_packages
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        distribution: spec.distribution.into(),
        distribution_version: spec.distribution_version.into(),
        platform: PLATFORM.into(),
        catalog_version: CATALOG_VERSION.into(),
        installed: inst.is_some(),
        status_reason: reason,
        cache_dir: cache.root().to_owned(),
        install_dir: env_dir(cache, spec),
        source: source_label(spec),
        kernel_image: inst.as_ref().map(Installed::kernel_image),
        rootfs_image: inst.as_ref().map(Installed::rootfs_image),
        rootfs_size_bytes: inst.as_ref().map(|i| i.manifest.rootfs_size_bytes),
        installed_at: inst.as_ref().map(|i| i.manifest.installed_at),
    }
}

fn source_label(spec: &EnvSpec) -> String {
    format!("local build: mmdebstrap {} (minbase)", spec.suite)
}

/// What `pull` did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The environment, now installed.
    pub installed: Installed,
    /// Steps that changed the cache (empty: it was already installed).
    pub actions: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

/// The lock around installing or pruning Firecracker.
const FIRECRACKER_LOCK: &str = "firecracker";

/// Makes `spec` available: Firecracker, the kernel, and the base image with
/// `agent` baked in. A no-op when everything is installed and current.
pub fn pull(
    cache: &Cache,
    spec: &'static EnvSpec,
    agent: &AgentBinary,
    progress: &dyn Progress,
) -> Result<PullReport, EnvError> {
    let started = Instant::now();
    let mut actions = Vec::new();
    let _lock = cache.lock(&spec.slug())?;

    // Pulls of different environments share one Firecracker install.
    let fc_lock = cache.lock(FIRECRACKER_LOCK)?;
    let overridden = std::env::var_os(pyro_vmm::binaries::FIRECRACKER_ENV).is_some()
        && std::env::var_os(pyro_vmm::binaries::JAILER_ENV).is_some();
    if !overridden && pyro_vmm::binaries::locate(cache.root()).is_err() {
        progress.step("installing Firecracker");
        pyro_vmm::binaries::install(cache.root(), &|m| progress.tick(m))?;
        actions.push(format!(
            "installed Firecracker v{}",
            pyro_vmm::binaries::FIRECRACKER_VERSION
        ));
    }
    drop(fc_lock);

    let (kernel, built) = kernel::ensure(cache, spec.name, progress)?;
    if built {
        actions.push(format!("built the guest kernel {}", kernel.manifest.key));
    }

    let dir = env_dir(cache, spec);
    if let Ok(inst) = installed(cache, spec, Some(agent))
        && inst.manifest.kernel_key == kernel.manifest.key
        && std::fs::metadata(inst.rootfs_image())
            .is_ok_and(|m| m.len() == inst.manifest.rootfs_size_bytes)
    {
        return Ok(PullReport {
            installed: inst,
            actions,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    let reusable = read_manifest(&dir).filter(|m| {
        m.layout_version == LAYOUT_VERSION && m.name == spec.name && m.version == spec.version
    });
    let manifest = match reusable {
        Some(m) if dir.join("rootfs").is_dir() && dir.join("rootfs.ext4").is_file() => {
            rebake(&dir, spec, m, agent, &kernel, progress, &mut actions)?
        }
        _ => build_fresh(cache, &dir, spec, agent, &kernel, progress, &mut actions)?,
    };
    Ok(PullReport {
        installed: Installed {
            spec,
            dir,
            manifest,
            kernel,
        },
        actions,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Updates an existing install in place: a new agent means a new image
/// (written beside the old one, then renamed over it); a new kernel only
/// changes the manifest, which is written last.
fn rebake(
    dir: &Path,
    spec: &EnvSpec,
    mut manifest: EnvManifest,
    agent: &AgentBinary,
    kernel: &Kernel,
    progress: &dyn Progress,
    actions: &mut Vec<String>,
) -> Result<EnvManifest, EnvError> {
    let image = dir.join("rootfs.ext4");
    let image_ok = manifest.agent_sha256 == agent.sha256
        && std::fs::metadata(&image).is_ok_and(|m| m.len() == manifest.rootfs_size_bytes)
        && sha256_file(&image)? == manifest.rootfs_sha256;
    if !image_ok {
        progress.step(&format!(
            "{}: baking the agent into a new base image",
            spec.name
        ));
        rootfs::customize_tree(spec, &dir.join("rootfs"), agent)?;
        let new = dir.join("rootfs.ext4.new");
        manifest.rootfs_size_bytes =
            rootfs::make_image(&dir.join("rootfs"), &new, &dir.join("build.log"))?;
        manifest.rootfs_sha256 = sha256_file(&new)?;
        std::fs::rename(&new, &image)
            .map_err(|e| EnvError::io(format!("installing {}", image.display()), e))?;
        manifest.agent_sha256 = agent.sha256.clone();
        actions.push(format!(
            "rebuilt the {} base image with the current agent",
            spec.name
        ));
    }
    if manifest.kernel_key != kernel.manifest.key {
        manifest.kernel_key = kernel.manifest.key.clone();
        actions.push(format!(
            "switched {} to kernel {}",
            spec.name, kernel.manifest.key
        ));
    }
    manifest.installed_at = now_unix();
    write_atomic(
        &dir.join("environment.json"),
        &serde_json::to_vec_pretty(&manifest)
            .map_err(|e| EnvError::io("serializing a manifest", e.into()))?,
    )?;
    Ok(manifest)
}

fn build_fresh(
    cache: &Cache,
    dir: &Path,
    spec: &EnvSpec,
    agent: &AgentBinary,
    kernel: &Kernel,
    progress: &dyn Progress,
    actions: &mut Vec<String>,
) -> Result<EnvManifest, EnvError> {
    let envs = cache.environments_dir();
    std::fs::create_dir_all(&envs)
        .map_err(|e| EnvError::io(format!("creating {}", envs.display()), e))?;
    let slug = spec.slug();
    // We hold this environment's lock: its staging leftovers are stale.
    remove_matching(
        &envs,
        &[&format!(".staging-{slug}-"), &format!(".trash-{slug}-")],
    );
    let staging = tempfile::Builder::new()
        .prefix(&format!(".staging-{slug}-"))
        .tempdir_in(&envs)
        .map_err(|e| {
            EnvError::io(
                format!("creating a staging directory in {}", envs.display()),
                e,
            )
        })?;
    let log = staging.path().join("build.log");
    let tree = staging.path().join("rootfs");
    rootfs::build_tree(spec, &tree, &log, progress)?;
    progress.step(&format!(
        "{}: baking the agent and packing the base image",
        spec.name
    ));
    rootfs::customize_tree(spec, &tree, agent)?;
    let image = staging.path().join("rootfs.ext4");
    let size = rootfs::make_image(&tree, &image, &log)?;
    let manifest = EnvManifest {
        layout_version: LAYOUT_VERSION,
        name: spec.name.into(),
        version: spec.version.into(),
        catalog_version: CATALOG_VERSION.into(),
        platform: PLATFORM.into(),
        packages: spec.packages.iter().map(|s| (*s).to_owned()).collect(),
        source: source_label(spec),
        installed_at: now_unix(),
        agent_sha256: agent.sha256.clone(),
        rootfs_sha256: sha256_file(&image)?,
        rootfs_size_bytes: size,
        kernel_key: kernel.manifest.key.clone(),
    };
    write_atomic(
        &staging.path().join("environment.json"),
        &serde_json::to_vec_pretty(&manifest)
            .map_err(|e| EnvError::io("serializing a manifest", e.into()))?,
    )?;
    if dir.exists() {
        let trash = envs.join(format!(".trash-{slug}-{}", std::process::id()));
        std::fs::rename(dir, &trash)
            .map_err(|e| EnvError::io(format!("moving aside {}", dir.display()), e))?;
        let _ = std::fs::remove_dir_all(&trash);
    }
    std::fs::rename(staging.path(), dir)
        .map_err(|e| EnvError::io(format!("installing {}", dir.display()), e))?;
    actions.push(format!("built the {} root filesystem", spec.name));
    Ok(manifest)
}

/// Deletes what no valid install uses: partial builds, environments that
/// are not in this catalog or are incomplete, kernels no environment boots,
/// and other Firecracker versions. Never deletes a valid install.
pub fn prune(cache: &Cache) -> Result<Vec<PathBuf>, EnvError> {
    let mut deleted = Vec::new();
    let envs = cache.environments_dir();
    let mut kernels_in_use = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&envs) {
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let spec = CATALOG.iter().find(|s| s.slug() == name);
            // A pull's staging or trash directory belongs to that pull
            // while one runs: skip it then, never wait for a build.
            let pull_debris_of = CATALOG.iter().find(|s| {
                [".staging-", ".trash-"]
                    .iter()
                    .any(|p| name.starts_with(&format!("{p}{}-", s.slug())))
            });
            let _lock = match (spec, pull_debris_of) {
                (Some(s), _) => Some(cache.lock(&s.slug())?),
                (None, Some(s)) => match cache.try_lock(&s.slug())? {
                    Some(lock) => Some(lock),
                    None => continue,
                },
                (None, None) => None,
            };
            let valid = spec.is_some_and(|s| {
                read_manifest(&path).is_some_and(|m| {
                    let ok = m.layout_version == LAYOUT_VERSION
                        && m.name == s.name
                        && m.version == s.version
                        && path.join("rootfs.ext4").is_file()
                        && path.join("rootfs").is_dir();
                    if ok {
                        kernels_in_use.push(m.kernel_key);
                    }
                    ok
                })
            });
            if !valid {
                let ok = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                ok.map_err(|e| EnvError::io(format!("deleting {}", path.display()), e))?;
                deleted.push(path);
            }
        }
    }
    let kdir = cache.kernels_dir();
    if kdir.is_dir() {
        let _lock = cache.lock("kernel")?;
        deleted.extend(remove_matching(&kdir, &[".build-", ".staging-", "build-"]));
        if let Ok(rd) = std::fs::read_dir(&kdir) {
            for e in rd.flatten() {
                let key = e.file_name().to_string_lossy().into_owned();
                if !kernels_in_use.contains(&key) && std::fs::remove_dir_all(e.path()).is_ok() {
                    deleted.push(e.path());
                }
            }
        }
    }
    let fcdir = cache.root().join("firecracker");
    let _fc_lock = cache.lock(FIRECRACKER_LOCK)?;
    if let Ok(rd) = std::fs::read_dir(&fcdir) {
        for e in rd.flatten() {
            if e.file_name() != pyro_vmm::binaries::FIRECRACKER_VERSION
                && std::fs::remove_dir_all(e.path()).is_ok()
            {
                deleted.push(e.path());
            }
        }
    }
    deleted.sort();
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;

    fn fake_install(cache: &Cache, name: &str, agent_sha: &str, kernel_key: &str) -> PathBuf {
        let spec = lookup(name).unwrap();
        let dir = env_dir(cache, spec);
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("rootfs.ext4"), b"image").unwrap();
        let m = EnvManifest {
            layout_version: LAYOUT_VERSION,
            name: spec.name.into(),
            version: spec.version.into(),
            catalog_version: CATALOG_VERSION.into(),
            platform: PLATFORM.into(),
            packages: vec![],
            source: "test".into(),
            installed_at: 1.0,
            agent_sha256: agent_sha.into(),
            rootfs_sha256: crate::sha256_bytes(b"image"),
            rootfs_size_bytes: 5,
            kernel_key: kernel_key.into(),
        };
        std::fs::write(
            dir.join("environment.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        let kdir = cache.kernels_dir().join(kernel_key);
        std::fs::create_dir_all(&kdir).unwrap();
        std::fs::write(kdir.join("vmlinux"), b"k").unwrap();
        let km = kernel::KernelManifest {
            key: kernel_key.into(),
            sha256: crate::sha256_bytes(b"k"),
            size_bytes: 1,
            source_version: "x".into(),
            recipe_version: kernel::RECIPE_VERSION.into(),
            built_at: 0.0,
            build_seconds: 0.0,
        };
        std::fs::write(kdir.join("kernel.json"), serde_json::to_vec(&km).unwrap()).unwrap();
        dir
    }

    #[test]
    fn installed_requires_every_piece_and_the_same_agent() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let spec = lookup("debian:12").unwrap();
        let err = installed(&cache, spec, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "environment debian:12 is not installed (it has not been pulled yet); run ⟨op:env pull debian:12⟩"
        );
        let dir = fake_install(&cache, "debian:12", "agent-a", "k1");
        assert!(installed(&cache, spec, None).is_ok());
        let a = AgentBinary {
            path: "/x".into(),
            sha256: "agent-a".into(),
        };
        assert!(installed(&cache, spec, Some(&a)).is_ok());
        let b = AgentBinary {
            path: "/x".into(),
            sha256: "agent-b".into(),
        };
        let err = installed(&cache, spec, Some(&b)).unwrap_err().to_string();
        assert!(err.contains("agent differs"), "{err}");
        std::fs::remove_dir_all(cache.kernels_dir().join("k1")).unwrap();
        assert!(
            installed(&cache, spec, None)
                .unwrap_err()
                .to_string()
                .contains("kernel is missing")
        );
        std::fs::remove_file(dir.join("rootfs.ext4")).unwrap();
        assert!(
            installed(&cache, spec, None)
                .unwrap_err()
                .to_string()
                .contains("incomplete")
        );
        let st = status(&cache, spec, None);
        assert!(!st.installed && st.status_reason.is_some());
    }

    #[test]
    fn prune_keeps_valid_installs_and_their_kernel() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let keep = fake_install(&cache, "debian:12", "a", "k1");
        let envs = cache.environments_dir();
        std::fs::create_dir_all(envs.join(".staging-debian_12-4.0.0-xyz")).unwrap();
        std::fs::create_dir_all(envs.join("ubuntu_24-1.0.0")).unwrap();
        std::fs::create_dir_all(envs.join("debian_12-base-4.0.0")).unwrap(); // no manifest
        std::fs::create_dir_all(cache.kernels_dir().join("old-kernel")).unwrap();
        std::fs::create_dir_all(tmp.path().join("firecracker/1.0.0")).unwrap();
        let deleted = prune(&cache).unwrap();
        let names: Vec<String> = deleted
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        // Sorted by full path: environments/, firecracker/, kernels/.
        assert_eq!(
            names,
            [
                ".staging-debian_12-4.0.0-xyz",
                "debian_12-base-4.0.0",
                "ubuntu_24-1.0.0",
                "1.0.0",
                "old-kernel"
            ]
        );
        assert!(keep.join("environment.json").exists());
        assert!(cache.kernels_dir().join("k1/vmlinux").exists());
        assert!(prune(&cache).unwrap().is_empty());
    }

    #[test]
    fn prune_leaves_a_running_pull_its_staging_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let staging = cache
            .environments_dir()
            .join(".staging-debian_12-4.0.0-busy");
        std::fs::create_dir_all(&staging).unwrap();
        // A pull of debian:12 holds its lock (from another open file, as
        // another process would).
        let pulling = cache.lock("debian_12-4.0.0").unwrap();
        assert!(prune(&cache).unwrap().is_empty());
        assert!(staging.is_dir(), "a running build lost its staging tree");
        drop(pulling);
        assert_eq!(prune(&cache).unwrap(), std::slice::from_ref(&staging));
        assert!(!staging.exists());
    }
}

//! Installing, inspecting and pruning environments.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::agent::AgentBinary;
use crate::ident::{EnvRef, ImageDefaults, Origin};
use crate::kernel::{self, Kernel};
use crate::{
    CATALOG_VERSION, Cache, EnvError, EnvSpec, PLATFORM, Progress, now_unix, remove_matching,
    rootfs, sha256_file, write_atomic,
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
    /// Where its content came from, when not from a local build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// How its container image means commands to run (imported images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageDefaults>,
    /// A description (imported environments; the catalog has its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An installed, usable environment.
#[derive(Debug, Clone)]
pub struct Installed {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Catalog entry (`None`: imported).
    pub spec: Option<&'static EnvSpec>,
    /// Install directory.
    pub dir: PathBuf,
    /// What it records.
    pub manifest: EnvManifest,
    /// The kernel it boots.
    pub kernel: Kernel,
}

impl Installed {
    /// Its cache directory name (templates are keyed by it).
    pub fn slug(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

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
        kernel::verify(&self.kernel, &self.name)
    }
}

/// The install directory of `spec`.
pub fn env_dir(cache: &Cache, spec: &EnvSpec) -> PathBuf {
    cache.environments_dir().join(spec.slug())
}

pub(crate) fn read_manifest(dir: &Path) -> Option<EnvManifest> {
    serde_json::from_slice(&std::fs::read(dir.join("environment.json")).ok()?).ok()
}

/// The installed environment, or why it does not count as installed.
/// With `agent`, an install whose baked agent differs is stale.
pub fn installed(
    cache: &Cache,
    env: &EnvRef,
    agent: Option<&AgentBinary>,
) -> Result<Installed, EnvError> {
    let dir = env.dir(cache);
    let not = |reason: &str| EnvError::NotInstalled {
        name: env.name().to_owned(),
        reason: reason.to_owned(),
    };
    let manifest = read_manifest(&dir).ok_or_else(|| not("it has not been pulled yet"))?;
    let version_ok = match env {
        EnvRef::Catalog(s) => manifest.version == s.version,
        EnvRef::Imported(_) => true,
    };
    if manifest.layout_version != LAYOUT_VERSION || manifest.name != env.name() || !version_ok {
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
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        spec: match env {
            EnvRef::Catalog(s) => Some(*s),
            EnvRef::Imported(_) => None,
        },
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
    /// `catalog`, or `imported` (made on this host from a container
    /// image, or pulled under a name the catalog lacks).
    pub kind: String,
    /// Where the installed content came from (a registry artifact or an
    /// image, with its digest); absent for a local build.
    pub origin: Option<Origin>,
    /// How the image means commands to run (imported images).
    pub image: Option<ImageDefaults>,
}

/// Describes `env` and its cache state.
pub fn status(cache: &Cache, env: &EnvRef, agent: Option<&AgentBinary>) -> EnvStatus {
    let inst = installed(cache, env, agent);
    let (reason, inst) = match inst {
        Ok(i) => (None, Some(i)),
        Err(EnvError::NotInstalled { reason, .. }) => (Some(reason), None),
        Err(e) => (Some(e.to_string()), None),
    };
    // An imported environment describes itself; one whose agent is stale
    // still has a manifest to read.
    let recorded = read_manifest(&env.dir(cache));
    let m = inst.as_ref().map(|i| &i.manifest).or(recorded.as_ref());
    let (version, description, packages, dist, dist_version) = match env {
        EnvRef::Catalog(s) => (
            s.version.to_owned(),
            s.description.to_owned(),
            s.default_packages.iter().map(|p| (*p).to_owned()).collect(),
            s.distribution.to_owned(),
            s.distribution_version.to_owned(),
        ),
        EnvRef::Imported(_) => (
            m.map(|m| m.version.clone()).unwrap_or_default(),
            m.and_then(|m| m.description.clone()).unwrap_or_default(),
            Vec::new(),
            "container image".to_owned(),
            String::new(),
        ),
    };
    EnvStatus {
        name: env.name().to_owned(),
        version,
        description,
        default_packages: packages,
        distribution: dist,
        distribution_version: dist_version,
        platform: PLATFORM.into(),
        catalog_version: CATALOG_VERSION.into(),
        installed: inst.is_some(),
        status_reason: reason,
        cache_dir: cache.root().to_owned(),
        install_dir: env.dir(cache),
        source: match (env, m.and_then(|m| m.origin.as_ref())) {
            (_, Some(o)) => format!("{}: {}@{}", o.kind, o.reference, o.digest),
            (EnvRef::Catalog(s), None) => source_label(s),
            (EnvRef::Imported(_), None) => "unknown".into(),
        },
        kernel_image: inst.as_ref().map(Installed::kernel_image),
        rootfs_image: inst.as_ref().map(Installed::rootfs_image),
        rootfs_size_bytes: inst.as_ref().map(|i| i.manifest.rootfs_size_bytes),
        installed_at: inst.as_ref().map(|i| i.manifest.installed_at),
        kind: match env {
            EnvRef::Catalog(_) => "catalog".into(),
            EnvRef::Imported(_) => "imported".into(),
        },
        origin: m.and_then(|m| m.origin.clone()),
        image: m.and_then(|m| m.image.clone()),
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
pub(crate) const FIRECRACKER_LOCK: &str = "firecracker";

/// Installs Firecracker unless it is there (or overridden).
pub(crate) fn ensure_firecracker(
    cache: &Cache,
    progress: &dyn Progress,
    actions: &mut Vec<String>,
) -> Result<(), EnvError> {
    // Pulls of different environments share one Firecracker install.
    let _fc_lock = cache.lock(FIRECRACKER_LOCK)?;
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
    Ok(())
}

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
    ensure_firecracker(cache, progress, &mut actions)?;

    let (kernel, built) = kernel::ensure(cache, spec.name, progress)?;
    if built {
        actions.push(format!("built the guest kernel {}", kernel.manifest.key));
    }

    let dir = env_dir(cache, spec);
    let env = EnvRef::Catalog(spec);
    if let Ok(inst) = installed(cache, &env, Some(agent))
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
            rebake(&dir, m, agent, &kernel, progress, &mut actions)?
        }
        _ => build_fresh(cache, &dir, spec, agent, &kernel, progress, &mut actions)?,
    };
    Ok(PullReport {
        installed: Installed {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            spec: Some(spec),
            dir,
            manifest,
            kernel,
        },
        actions,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Brings an imported environment up to date with `agent` (and finds it
/// a kernel when its own is gone); a no-op when it is current.
pub fn refresh(
    cache: &Cache,
    name: &str,
    agent: &AgentBinary,
    progress: &dyn Progress,
) -> Result<PullReport, EnvError> {
    let started = Instant::now();
    let env = EnvRef::Imported(name.to_owned());
    let _lock = cache.lock(&env.slug())?;
    let mut actions = Vec::new();
    ensure_firecracker(cache, progress, &mut actions)?;
    let dir = env.dir(cache);
    let manifest = read_manifest(&dir)
        .filter(|m| m.layout_version == LAYOUT_VERSION && m.name == name)
        .filter(|_| dir.join("rootfs").is_dir() && dir.join("rootfs.ext4").is_file())
        .ok_or_else(|| EnvError::NotInstalled {
            name: name.to_owned(),
            reason: "its cached copy is gone or incomplete; import it again".into(),
        })?;
    let kernel = match kernel::cached(cache, &manifest.kernel_key) {
        Some(k) => k,
        None => {
            let (k, built) = kernel::ensure_any(cache, name, progress)?;
            if built {
                actions.push(format!("built the guest kernel {}", k.manifest.key));
            }
            k
        }
    };
    let manifest = rebake(&dir, manifest, agent, &kernel, progress, &mut actions)?;
    Ok(PullReport {
        installed: Installed {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            spec: None,
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
pub(crate) fn rebake(
    dir: &Path,
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
            manifest.name
        ));
        let bake = rootfs::Bake {
            name: &manifest.name,
            version: &manifest.version,
            image: manifest.image.as_ref(),
        };
        rootfs::customize_tree(&dir.join("rootfs"), &bake, agent)?;
        let new = dir.join("rootfs.ext4.new");
        manifest.rootfs_size_bytes =
            rootfs::make_image(&dir.join("rootfs"), &new, &dir.join("build.log"))?;
        manifest.rootfs_sha256 = sha256_file(&new)?;
        std::fs::rename(&new, &image)
            .map_err(|e| EnvError::io(format!("installing {}", image.display()), e))?;
        manifest.agent_sha256 = agent.sha256.clone();
        actions.push(format!(
            "rebuilt the {} base image with the current agent",
            manifest.name
        ));
    }
    if manifest.kernel_key != kernel.manifest.key {
        manifest.kernel_key = kernel.manifest.key.clone();
        actions.push(format!(
            "switched {} to kernel {}",
            manifest.name, kernel.manifest.key
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
    let env = EnvRef::Catalog(crate::catalog::lookup(spec.name)?);
    let staging = stage(cache, &env)?;
    let log = staging.path().join("build.log");
    rootfs::build_tree(spec, &staging.path().join("rootfs"), &log, progress)?;
    let recipe = Recipe {
        name: spec.name.into(),
        version: spec.version.into(),
        packages: spec.packages.iter().map(|s| (*s).to_owned()).collect(),
        source: source_label(spec),
        kernel_key: kernel.manifest.key.clone(),
        origin: None,
        image: None,
        description: None,
    };
    let manifest = complete(staging, dir, recipe, agent, progress)?;
    actions.push(format!("built the {} root filesystem", spec.name));
    Ok(manifest)
}

/// A fresh staging directory for installing `env` (with `rootfs/` to be
/// filled), after clearing what earlier attempts left. The caller holds
/// `env`'s lock.
pub(crate) fn stage(cache: &Cache, env: &EnvRef) -> Result<tempfile::TempDir, EnvError> {
    let envs = cache.environments_dir();
    std::fs::create_dir_all(&envs)
        .map_err(|e| EnvError::io(format!("creating {}", envs.display()), e))?;
    let slug = env.slug();
    remove_matching(
        &envs,
        &[&format!(".staging-{slug}-"), &format!(".trash-{slug}-")],
    );
    tempfile::Builder::new()
        .prefix(&format!(".staging-{slug}-"))
        .tempdir_in(&envs)
        .map_err(|e| {
            EnvError::io(
                format!("creating a staging directory in {}", envs.display()),
                e,
            )
        })
}

/// What an install's maker knows about it; [`complete`] adds the rest of
/// the manifest (the layout, the agent, the image and the time).
#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    pub name: String,
    pub version: String,
    pub packages: Vec<String>,
    pub source: String,
    pub kernel_key: String,
    pub origin: Option<Origin>,
    pub image: Option<ImageDefaults>,
    pub description: Option<String>,
}

/// Finishes an install from a staged `rootfs/` tree: bakes the agent,
/// packs the base image, writes the manifest and puts the staging
/// directory in place of `dir` in one rename.
pub(crate) fn complete(
    staging: tempfile::TempDir,
    dir: &Path,
    recipe: Recipe,
    agent: &AgentBinary,
    progress: &dyn Progress,
) -> Result<EnvManifest, EnvError> {
    let mut manifest = EnvManifest {
        layout_version: LAYOUT_VERSION,
        name: recipe.name,
        version: recipe.version,
        catalog_version: CATALOG_VERSION.into(),
        platform: PLATFORM.into(),
        packages: recipe.packages,
        source: recipe.source,
        installed_at: 0.0,
        agent_sha256: String::new(),
        rootfs_sha256: String::new(),
        rootfs_size_bytes: 0,
        kernel_key: recipe.kernel_key,
        origin: recipe.origin,
        image: recipe.image,
        description: recipe.description,
    };
    let tree = staging.path().join("rootfs");
    progress.step(&format!(
        "{}: baking the agent and packing the base image",
        manifest.name
    ));
    let bake = rootfs::Bake {
        name: &manifest.name,
        version: &manifest.version,
        image: manifest.image.as_ref(),
    };
    rootfs::customize_tree(&tree, &bake, agent)?;
    let image = staging.path().join("rootfs.ext4");
    manifest.rootfs_size_bytes =
        rootfs::make_image(&tree, &image, &staging.path().join("build.log"))?;
    manifest.rootfs_sha256 = sha256_file(&image)?;
    manifest.agent_sha256 = agent.sha256.clone();
    manifest.installed_at = now_unix();
    write_atomic(
        &staging.path().join("environment.json"),
        &serde_json::to_vec_pretty(&manifest)
            .map_err(|e| EnvError::io("serializing a manifest", e.into()))?,
    )?;
    // The old copy goes aside, the new one takes its place at once, and
    // only then is the old one deleted (which takes a while): a kill
    // leaves an installed environment, or, in the instant between the
    // renames, its complete staged copy and the trash (`env prune` clears
    // both; the next pull finds nothing installed and installs again).
    let envs = dir.parent().unwrap_or(Path::new("."));
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let trash = envs.join(format!(".trash-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &trash)
            .map_err(|e| EnvError::io(format!("moving aside {}", dir.display()), e))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        EnvError::io(format!("installing {}", dir.display()), e)
    })?;
    let _ = std::fs::remove_dir_all(&trash);
    Ok(manifest)
}

pub use crate::prune::prune;

#[cfg(test)]
mod tests;

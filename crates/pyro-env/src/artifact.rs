//! Environments as OCI artifacts: `env push` uploads an installed
//! environment, `env pull --registry` installs one.
//!
//! The artifact is an OCI image manifest with `artifactType`
//! [`ARTIFACT_TYPE`], a config of [`CONFIG_TYPE`] ([`ArtifactConfig`]),
//! and two zstd-compressed layers: the guest kernel ([`KERNEL_TYPE`]) and
//! the root tree as a tar ([`ROOTFS_TYPE`]). The tree, not the packed
//! image, travels: the puller bakes its own agent into it and packs the
//! base image itself (the agent must match the pulling pyro, and the
//! host-compat backend boots the tree). The tree is applied with the same
//! hostile-input rules as a container image's layers.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::agent::AgentBinary;
use crate::ident::{EnvRef, ImageDefaults, Origin, check_import_name};
use crate::install::{Recipe, complete, ensure_firecracker, installed, stage};
use crate::kernel::{self, KernelManifest};
use crate::{CATALOG_VERSION, Cache, EnvError, PLATFORM, Progress, fetch};

/// `artifactType` of a pyro environment.
pub const ARTIFACT_TYPE: &str = "application/vnd.pyro.environment.v1";
/// Media type of its config.
pub const CONFIG_TYPE: &str = "application/vnd.pyro.environment.config.v1+json";
/// Media type of the kernel layer.
pub const KERNEL_TYPE: &str = "application/vnd.pyro.kernel.v1+zstd";
/// Media type of the root tree layer.
pub const ROOTFS_TYPE: &str = "application/vnd.pyro.rootfs.tar.v1+zstd";
/// The artifact format this pyro writes and reads.
pub const FORMAT: u32 = 1;
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The config of an environment artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactConfig {
    /// [`FORMAT`].
    pub format: u32,
    /// Environment name.
    pub name: String,
    /// Environment version.
    pub version: String,
    /// Catalog version of the pusher.
    pub catalog_version: String,
    /// `linux-x86_64`.
    pub platform: String,
    /// Packages (catalog environments).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Description (imported environments).
    #[serde(default)]
    pub description: Option<String>,
    /// The image's defaults for commands (imported environments).
    #[serde(default)]
    pub image: Option<ImageDefaults>,
    /// The kernel in the kernel layer.
    pub kernel: KernelManifest,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pushed {
    /// The environment.
    pub name: String,
    /// Where it went.
    pub reference: String,
    /// The manifest's digest: pin pulls to `REFERENCE@DIGEST`.
    pub digest: String,
    /// Compressed bytes of the kernel and the root tree.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Uploads the installed environment `env` to `reference` (a tag).
pub fn push(
    cache: &Cache,
    env: &EnvRef,
    reference: &str,
    progress: &dyn Progress,
) -> Result<Pushed, EnvError> {
    let started = Instant::now();
    let r = pyro_oci::parse_reference(reference)?;
    let inst = installed(cache, env, None)?;
    let _lock = cache.lock(&env.slug())?;
    let _working = cache.lock_shared_blocking(fetch::DOWNLOADS_LOCK)?;
    let work = tempfile::Builder::new()
        .prefix(".push-")
        .tempdir_in(cache.root())
        .map_err(|e| {
            EnvError::io(
                format!("creating a temp directory in {}", cache.root().display()),
                e,
            )
        })?;
    progress.step(&format!(
        "{}: packing the kernel and the root tree (zstd)",
        inst.name
    ));
    let kernel_z = work.path().join("vmlinux.zst");
    compress_file(&inst.kernel_image(), &kernel_z)?;
    let tree_z = work.path().join("rootfs.tar.zst");
    pack_tree(&inst.rootfs_tree(), &tree_z)?;
    let config = ArtifactConfig {
        format: FORMAT,
        name: inst.name.clone(),
        version: inst.version.clone(),
        catalog_version: CATALOG_VERSION.into(),
        platform: PLATFORM.into(),
        packages: inst.manifest.packages.clone(),
        description: inst.manifest.description.clone(),
        image: inst.manifest.image.clone(),
        kernel: inst.kernel.manifest.clone(),
    };
    let config =
        serde_json::to_vec(&config).map_err(|e| EnvError::io("serializing a config", e.into()))?;
    let reg = pyro_oci::registry::Registry::for_reference(&r)?;
    let name = inst.name.clone();
    let (digest, bytes) = fetch::run(
        progress,
        &format!("{name}: uploading"),
        |on_bytes| async move {
            let k = reg.push_file(&r, &kernel_z, KERNEL_TYPE, &on_bytes).await?;
            let t = reg.push_file(&r, &tree_z, ROOTFS_TYPE, &on_bytes).await?;
            let c = reg.push_bytes(&r, config, CONFIG_TYPE).await?;
            let titled = |d: &pyro_oci::OciDescriptor, title: &str| {
                serde_json::json!({"mediaType": d.media_type, "digest": d.digest, "size": d.size,
                "annotations": {"org.opencontainers.image.title": title}})
            };
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": c.media_type, "digest": c.digest, "size": c.size},
                "layers": [titled(&k, "vmlinux.zst"), titled(&t, "rootfs.tar.zst")],
                "annotations": {"org.opencontainers.image.title": name},
            });
            let bytes = serde_json::to_vec(&manifest)
                .map_err(|e| EnvError::io("serializing a manifest", e.into()))?;
            let digest = reg.push_manifest(&r, &bytes, MANIFEST_TYPE).await?;
            Ok((digest, (k.size + t.size) as u64))
        },
    )?;
    Ok(Pushed {
        name: inst.name,
        reference: reference.to_owned(),
        digest,
        bytes,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}

fn compress_file(src: &Path, dest: &Path) -> Result<(), EnvError> {
    let io = |e| EnvError::io(format!("compressing {}", src.display()), e);
    let mut input = std::fs::File::open(src).map_err(io)?;
    let out = std::fs::File::create(dest).map_err(io)?;
    let mut enc = zstd::stream::write::Encoder::new(out, 3).map_err(io)?;
    std::io::copy(&mut input, &mut enc).map_err(io)?;
    enc.finish().map_err(io)?.sync_all().map_err(io)
}

/// Tars `tree` (owners, modes and links kept; the baked agent left out,
/// since every puller bakes its own), zstd-compressed, into `dest`.
fn pack_tree(tree: &Path, dest: &Path) -> Result<(), EnvError> {
    let io = |e| EnvError::io(format!("packing {}", tree.display()), e);
    let out = std::fs::File::create(dest).map_err(io)?;
    let enc = zstd::stream::write::Encoder::new(out, 3).map_err(io)?;
    let mut b = tar::Builder::new(enc);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(tree.join(&rel))
            .map_err(io)?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            if r == Path::new(crate::agent::GUEST_PATH) {
                continue;
            }
            let ft = e.file_type().map_err(io)?;
            if ft.is_dir() {
                b.append_dir(&r, e.path()).map_err(io)?;
                stack.push(r);
            } else if ft.is_file() || ft.is_symlink() {
                b.append_path_with_name(e.path(), &r).map_err(io)?;
            }
            // Device nodes and FIFOs stay behind: the guest's /dev is a
            // devtmpfs, and pulls drop them anyway.
        }
    }
    let mut enc = b.into_inner().map_err(io)?;
    enc.flush().map_err(io)?;
    enc.finish().map_err(io)?.sync_all().map_err(io)
}

/// What a registry pull did.
#[derive(Debug, Clone)]
pub struct RegistryPull {
    /// The environment.
    pub env: EnvRef,
    /// Steps that changed the cache.
    pub actions: Vec<String>,
}

/// An artifact's config, checked before anything is downloaded: its format,
/// platform, name (the one asked for; a catalog name at this pyro's
/// version, or a valid import name) and kernel.
fn vet_config(
    reference: &str,
    bytes: &[u8],
    expected: Option<&str>,
) -> Result<(ArtifactConfig, EnvRef), EnvError> {
    let bad = |reason: String| EnvError::Artifact {
        reference: reference.to_owned(),
        reason,
    };
    let config: ArtifactConfig = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("its config does not parse: {e}")))?;
    if config.format != FORMAT {
        return Err(bad(format!(
            "it is format {}, this pyro reads format {FORMAT}",
            config.format
        )));
    }
    if config.platform != PLATFORM {
        return Err(bad(format!("it is for {}", config.platform)));
    }
    if let Some(want) = expected
        && want != config.name
    {
        return Err(bad(format!("it holds {}, not {want}", config.name)));
    }
    let env = match crate::catalog::lookup(&config.name) {
        Ok(spec) if spec.version == config.version => EnvRef::Catalog(spec),
        Ok(spec) => {
            return Err(bad(format!(
                "it holds {} {}, and this pyro's catalog has {}",
                config.name, config.version, spec.version
            )));
        }
        Err(_) => {
            check_import_name(&config.name)?;
            EnvRef::Imported(config.name.clone())
        }
    };
    if !kernel::valid_key(&config.kernel.key) {
        return Err(bad(format!(
            "its kernel key {:?} cannot name a kernel",
            config.kernel.key
        )));
    }
    if config.kernel.size_bytes > kernel::MAX_PREBUILT_BYTES {
        return Err(bad(kernel_too_large()));
    }
    Ok((config, env))
}

/// Why an artifact's kernel is refused for its size (as its config or its
/// layer states it).
fn kernel_too_large() -> String {
    format!(
        "its kernel is larger than the {} MiB pyro installs",
        kernel::MAX_PREBUILT_BYTES >> 20
    )
}

/// Installs the environment artifact at `reference`; `expected`: the name
/// it must carry (`env pull NAME --registry REF`).
pub fn pull(
    cache: &Cache,
    reference: &str,
    expected: Option<&str>,
    agent: &AgentBinary,
    guard: crate::ReplaceGuard<'_>,
    progress: &dyn Progress,
) -> Result<RegistryPull, EnvError> {
    let r = pyro_oci::parse_reference(reference)?;
    let reg = pyro_oci::registry::Registry::for_reference(&r)?;
    let bad = |reason: String| EnvError::Artifact {
        reference: reference.to_owned(),
        reason,
    };
    progress.step(&format!("resolving {reference}"));
    let _downloading = cache.lock_shared_blocking(fetch::DOWNLOADS_LOCK)?;
    let (resolved, config) = fetch::run(progress, "resolving", |_| async {
        let resolved = reg.resolve(&r).await?;
        let c = &resolved.manifest.config;
        if c.media_type != CONFIG_TYPE {
            return Ok((resolved, None));
        }
        let bytes = reg.blob_bytes(&r, c).await?;
        Ok((resolved, Some(bytes)))
    })?;
    let config = config.ok_or_else(|| {
        bad(format!(
            "its config is not {CONFIG_TYPE}; for a container image use `env import`"
        ))
    })?;
    let (config, env) = vet_config(reference, &config, expected)?;
    let layer = |mt: &str| {
        resolved
            .manifest
            .layers
            .iter()
            .find(|l| l.media_type == mt)
            .cloned()
            .ok_or_else(|| bad(format!("it has no {mt} layer")))
    };
    let (kernel_layer, tree_layer) = (layer(KERNEL_TYPE)?, layer(ROOTFS_TYPE)?);
    if kernel_layer.size < 0 || kernel_layer.size as u64 > kernel::MAX_PREBUILT_BYTES {
        return Err(bad(kernel_too_large()));
    }
    let _lock = cache.lock(&env.slug())?;
    let mut actions = Vec::new();
    ensure_firecracker(cache, progress, &mut actions)?;
    // The tag is checked every time; the same digest, installed and
    // current, is not downloaded again.
    if installed(cache, &env, Some(agent)).is_ok_and(|i| {
        i.manifest
            .origin
            .as_ref()
            .is_some_and(|o| o.digest == resolved.digest)
    }) {
        return Ok(RegistryPull { env, actions });
    }
    if env.dir(cache).exists() {
        guard(env.name())?;
    }

    let have_kernel = kernel::cached(cache, &config.kernel.key).is_some_and(|k| {
        k.manifest.sha256 == config.kernel.sha256 && kernel::verify(&k, "").is_ok()
    });
    let name = config.name.clone();
    let work = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(cache.root())
        .map_err(|e| EnvError::io("creating a temp directory", e))?;
    let wp = work.path();
    let (kernel_blob, tree_blob) =
        fetch::run(progress, &format!("{name}: downloading"), |on_bytes| {
            let (reg, r, kernel_layer, tree_layer) = (&reg, &r, &kernel_layer, &tree_layer);
            async move {
                let k = if have_kernel {
                    None
                } else {
                    Some(fetch::download(cache, reg, r, kernel_layer, &on_bytes, wp).await?)
                };
                let t = fetch::download(cache, reg, r, tree_layer, &on_bytes, wp).await?;
                Ok((k, t))
            }
        })?;
    if let Some(blob) = &kernel_blob {
        let vmlinux = work.path().join("vmlinux");
        decompress_bounded(blob, &vmlinux, config.kernel.size_bytes)?;
        kernel::install_prebuilt(cache, &config.kernel, &vmlinux)?;
        actions.push(format!(
            "installed the guest kernel {} from {reference}",
            config.kernel.key
        ));
    }
    progress.step(&format!("{name}: unpacking the root tree"));
    let staging = stage(cache, &env)?;
    let tree = staging.path().join("rootfs");
    std::fs::create_dir(&tree)
        .map_err(|e| EnvError::io(format!("creating {}", tree.display()), e))?;
    let mut applied = pyro_oci::layers::Applied::default();
    pyro_oci::layers::apply_layer(
        &tree,
        &tree_blob,
        &tree_layer.digest,
        &Default::default(),
        &mut applied,
    )?;
    let recipe = Recipe {
        name: config.name.clone(),
        version: config.version.clone(),
        packages: config.packages.clone(),
        source: format!("registry: {reference}"),
        kernel_key: config.kernel.key.clone(),
        origin: Some(Origin {
            kind: "registry".into(),
            reference: reference.to_owned(),
            digest: resolved.digest.clone(),
        }),
        image: config.image.clone(),
        description: config.description.clone(),
    };
    complete(staging, &env.dir(cache), recipe, agent, progress)?;
    fetch::forget(cache, &tree_layer.digest);
    fetch::forget(cache, &kernel_layer.digest);
    drop(work);
    actions.push(format!(
        "installed {name} from {reference}@{}",
        resolved.digest
    ));
    Ok(RegistryPull { env, actions })
}

/// Decompresses a zstd blob, refusing more than `limit` bytes out.
fn decompress_bounded(src: &Path, dest: &Path, limit: u64) -> Result<(), EnvError> {
    use std::io::Read;
    let io = |e| EnvError::io(format!("decompressing {}", src.display()), e);
    let f = std::io::BufReader::new(std::fs::File::open(src).map_err(io)?);
    let mut dec = zstd::stream::read::Decoder::new(f)
        .map_err(io)?
        .take(limit + 1);
    let mut out = std::fs::File::create(dest).map_err(io)?;
    let n = std::io::copy(&mut dec, &mut out).map_err(io)?;
    if n > limit {
        return Err(EnvError::Oci(pyro_oci::OciError::TooLarge {
            what: "the kernel".into(),
            size: n,
            limit,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

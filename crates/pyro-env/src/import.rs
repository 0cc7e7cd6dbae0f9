//! Any container image as an environment (`env import`): from a registry
//! or from a `docker save` / OCI-layout tarball. The layers are applied in
//! order (whiteouts and opaque directories honoured, hostile content
//! refused: see `pyro_oci::layers`), pyro's agent is baked in, the base
//! image is packed, and the result is installed under the name given, for
//! `run`, workspaces and MCP alike. The image's `Env`, `WorkingDir` and
//! `User` are recorded and baked in for the agent (see [`ImageDefaults`]).

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::agent::AgentBinary;
use crate::ident::{EnvRef, ImageDefaults, Origin, check_import_name};
use crate::install::{Recipe, complete, ensure_firecracker, stage};
use crate::{Cache, EnvError, Progress, fetch, kernel};

/// What an import did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Imported {
    /// The new environment's name.
    pub name: String,
    /// Where the image came from.
    pub source: String,
    /// The image's digest.
    pub digest: String,
    /// Layers applied.
    pub layers: usize,
    /// Entries written.
    pub entries: u64,
    /// Bytes of regular files.
    pub bytes: u64,
    /// Whiteouts and opaque markers honoured.
    pub whiteouts: u64,
    /// Device nodes, FIFOs and sockets dropped from the layers.
    pub dropped_special: u64,
    /// The image's defaults for commands.
    pub image: ImageDefaults,
    /// Steps that changed the cache.
    pub actions: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

/// Imports `source` (an image reference, or the path of an image
/// tarball) as the environment `name`, replacing an earlier import of
/// that name.
pub fn import(
    cache: &Cache,
    source: &str,
    name: &str,
    agent: &AgentBinary,
    guard: crate::ReplaceGuard<'_>,
    progress: &dyn Progress,
) -> Result<Imported, EnvError> {
    let started = Instant::now();
    check_import_name(name)?;
    let env = EnvRef::Imported(name.to_owned());
    // Held while anything of this import sits in the cache root or the
    // download cache, which `env prune` then leaves alone.
    let _downloading = cache.lock_shared_blocking(fetch::DOWNLOADS_LOCK)?;
    let work = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(cache.root())
        .or_else(|_| {
            std::fs::create_dir_all(cache.root())?;
            tempfile::Builder::new()
                .prefix(".import-")
                .tempdir_in(cache.root())
        })
        .map_err(|e| {
            EnvError::io(
                format!("creating a temp directory in {}", cache.root().display()),
                e,
            )
        })?;
    let limits = pyro_oci::layers::Limits::default();
    let (config, digest, layers, origin_ref, downloaded) = if Path::new(source).is_file() {
        progress.step(&format!("reading the image archive {source}"));
        let abs = std::fs::canonicalize(source)
            .map_err(|e| EnvError::io(format!("reading {source}"), e))?;
        let img = pyro_oci::archive::open(&abs, work.path(), limits.max_bytes)?;
        (
            img.config,
            img.digest,
            img.layers,
            abs.display().to_string(),
            Vec::new(),
        )
    } else {
        let r = pyro_oci::parse_reference(source)?;
        let reg = pyro_oci::registry::Registry::for_reference(&r)?;
        progress.step(&format!("resolving {source}"));
        let (resolved, config) = fetch::run(progress, "resolving", |_| async {
            let resolved = reg.resolve(&r).await?;
            let bytes = reg.blob_bytes(&r, &resolved.manifest.config).await?;
            Ok((resolved, bytes))
        })?;
        let config = pyro_oci::parse_config(&config)?;
        let total: u64 = resolved
            .manifest
            .layers
            .iter()
            .map(|l| l.size.max(0) as u64)
            .sum();
        if total > limits.max_bytes {
            return Err(pyro_oci::OciError::TooLarge {
                what: format!("the layers of {source}"),
                size: total,
                limit: limits.max_bytes,
            }
            .into());
        }
        let layers = fetch::run(progress, &format!("{name}: downloading"), |on_bytes| {
            let (reg, r, layers, wp) = (&reg, &r, &resolved.manifest.layers, work.path());
            async move {
                let mut paths = Vec::new();
                for l in layers {
                    paths.push(fetch::download(cache, reg, r, l, &on_bytes, wp).await?);
                }
                Ok(paths)
            }
        })?;
        let digests: Vec<String> = resolved
            .manifest
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect();
        (config, resolved.digest, layers, r.whole(), digests)
    };

    let _lock = cache.lock(&env.slug())?;
    if env.dir(cache).exists() {
        guard(name)?;
    }
    let mut actions = Vec::new();
    ensure_firecracker(cache, progress, &mut actions)?;
    let (kernel, built) = kernel::ensure_any(cache, name, progress)?;
    if built {
        actions.push(format!("built the guest kernel {}", kernel.manifest.key));
    }
    let staging = stage(cache, &env)?;
    let tree = staging.path().join("rootfs");
    std::fs::create_dir(&tree)
        .map_err(|e| EnvError::io(format!("creating {}", tree.display()), e))?;
    let mut applied = pyro_oci::layers::Applied::default();
    for (i, layer) in layers.iter().enumerate() {
        progress.step(&format!(
            "{name}: applying layer {}/{}",
            i + 1,
            layers.len()
        ));
        pyro_oci::layers::apply_layer(&tree, layer, &format!("{}", i + 1), &limits, &mut applied)?;
    }
    let run = config.config.clone().unwrap_or_default();
    let user = run.user.filter(|u| !u.is_empty());
    let (uid, gid) = match &user {
        Some(u) => {
            let (uid, gid) = resolve_user(&tree, u).map_err(|detail| {
                EnvError::Oci(pyro_oci::OciError::Invalid {
                    what: format!("the image's User {u:?}"),
                    detail,
                })
            })?;
            (Some(uid), Some(gid))
        }
        None => (None, None),
    };
    let defaults = ImageDefaults {
        env: run.env.unwrap_or_default(),
        // Normalised (`.` and `..` resolved, never above `/`), so the
        // directory the agent is given is the one made here.
        working_dir: run.working_dir.filter(|w| !w.is_empty()).map(|w| {
            let mut parts: Vec<&str> = Vec::new();
            for c in w.split('/') {
                match c {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    c => parts.push(c),
                }
            }
            format!("/{}", parts.join("/"))
        }),
        user,
        uid,
        gid,
    };
    if let Some(w) = &defaults.working_dir {
        // As a container runtime does: the working directory exists.
        pyro_oci::layers::resolve_dir(&tree, Path::new(w.trim_start_matches('/')), true).map_err(
            |e| {
                EnvError::io(
                    format!("creating the image's WorkingDir {w}"),
                    std::io::Error::other(e),
                )
            },
        )?;
    }
    let hex = digest.trim_start_matches("sha256:");
    let recipe = Recipe {
        name: name.to_owned(),
        version: hex.chars().take(12).collect(),
        packages: Vec::new(),
        source: format!("image: {origin_ref}"),
        kernel_key: kernel.manifest.key.clone(),
        origin: Some(Origin {
            kind: "image".into(),
            reference: origin_ref.clone(),
            digest: digest.clone(),
        }),
        image: Some(defaults.clone()),
        description: Some(format!("Imported from the container image {origin_ref}.")),
    };
    complete(staging, &env.dir(cache), recipe, agent, progress)?;
    for d in &downloaded {
        fetch::forget(cache, d);
    }
    actions.push(format!("imported {origin_ref}@{digest} as {name}"));
    Ok(Imported {
        name: name.to_owned(),
        source: origin_ref,
        digest,
        layers: applied.layers,
        entries: applied.entries,
        bytes: applied.bytes,
        whiteouts: applied.whiteouts,
        dropped_special: applied.dropped_special,
        image: defaults,
        actions,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}

/// Reads a small file of the tree (resolved inside it), if it is there.
fn tree_file(tree: &Path, rel: &str) -> Option<String> {
    let rel = Path::new(rel);
    let dir = pyro_oci::layers::resolve_dir(tree, rel.parent()?, false).ok()??;
    let p = dir.join(rel.file_name()?);
    let m = p.symlink_metadata().ok()?;
    (m.is_file() && m.len() <= 1 << 20).then(|| std::fs::read_to_string(&p).ok())?
}

/// The uid and gid of the image's `User` (`name`, `uid`, `name:group`,
/// `uid:gid`), from the tree's `/etc/passwd` and `/etc/group`.
pub fn resolve_user(tree: &Path, user: &str) -> Result<(u32, u32), String> {
    let passwd = tree_file(tree, "etc/passwd").unwrap_or_default();
    let group = tree_file(tree, "etc/group").unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entry = |text: &str, name: &str, field: usize| -> Option<(u32, Option<u32>)> {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                Some((
                    f.get(2)?.parse().ok()?,
                    f.get(field).and_then(|g| g.parse().ok()),
                ))
            })?
        })
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2)?.parse::<u32>().ok()? == n).then(|| f.get(3)?.parse().ok())?
            }),
        ),
        Err(_) => entry(&passwd, u, 3)
            .ok_or_else(|| format!("the image's user {u:?} is not in its /etc/passwd"))?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => entry(&group, g, 2)
                .map(|(id, _)| id)
                .ok_or_else(|| format!("the image's group {g:?} is not in its /etc/group"))?,
        },
        None => primary.unwrap_or(0),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests;

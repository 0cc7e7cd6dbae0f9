//! `env prune`: deleting what no installed environment uses.

use std::path::PathBuf;

use crate::ident::EnvRef;
use crate::install::{FIRECRACKER_LOCK, LAYOUT_VERSION, read_manifest};
use crate::{CATALOG, Cache, EnvError, remove_matching};

/// Deletes what no valid install uses: partial builds, environments that
/// are not in this catalog or are incomplete, kernels no environment boots,
/// and other Firecracker versions. Never deletes a valid install.
pub fn prune(cache: &Cache) -> Result<Vec<PathBuf>, EnvError> {
    let mut deleted = Vec::new();
    let envs = cache.environments_dir();
    let mut kernels_in_use = Vec::new();
    let mut known: Vec<EnvRef> = CATALOG.iter().map(EnvRef::Catalog).collect();
    known.extend(
        crate::ident::imported_names(cache)
            .into_iter()
            .map(EnvRef::Imported),
    );
    if let Ok(rd) = std::fs::read_dir(&envs) {
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let env = known.iter().find(|e| e.slug() == name);
            // A pull's staging or trash directory belongs to that pull
            // while one runs: skip it then, never wait for a build.
            let pull_debris_of = [".staging-", ".trash-"].iter().find_map(|p| {
                let rest = name.strip_prefix(p)?;
                let slug = rest.rsplit_once('-')?.0;
                Some(slug.to_owned())
            });
            let _lock = match (env, pull_debris_of) {
                (Some(e), _) => Some(cache.lock(&e.slug())?),
                (None, Some(slug)) => match cache.try_lock(&slug)? {
                    Some(lock) => Some(lock),
                    None => continue,
                },
                (None, None) => None,
            };
            let valid = env.is_some_and(|e| {
                read_manifest(&path).is_some_and(|m| {
                    let version_ok = match e {
                        EnvRef::Catalog(s) => m.version == s.version,
                        EnvRef::Imported(_) => true,
                    };
                    let ok = m.layout_version == LAYOUT_VERSION
                        && m.name == e.name()
                        && version_ok
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
    // Downloads not yet installed (kept so that an interrupted one
    // resumes): unless one is under way.
    // The same goes for what a killed push, pull or import left in the
    // cache root.
    if let Some(_idle) = cache.try_lock(crate::fetch::DOWNLOADS_LOCK)? {
        deleted.extend(remove_matching(&cache.blobs_dir(), &[""]));
        deleted.extend(remove_matching(
            cache.root(),
            &[".push-", ".pull-", ".import-"],
        ));
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

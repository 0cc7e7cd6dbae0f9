//! The guest kernel: built from Debian's `linux-source-6.1` with the recipe
//! in `guest/kernel/` (tinyconfig + `microvm.fragment`, no modules, no
//! initramfs, plus the PVM patches that sit behind kernel command-line
//! flags). The build is cached under a key hashed from every input, so it
//! runs once per recipe and source version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::cmd::{require, run_logged};
use crate::{Cache, EnvError, Progress, now_unix, sha256_bytes, sha256_file, write_atomic};

/// Bump when the build steps change in a way the inputs below do not show.
pub const RECIPE_VERSION: &str = "1";

/// Debian package with the kernel source.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";

/// The source tarball that package installs.
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";

/// Config fragment merged over `make tinyconfig`.
pub const FRAGMENT: &str = include_str!("../../../guest/kernel/microvm.fragment");

/// Patches applied with `patch -p1`, in order.
pub const PATCHES: [(&str, &str); 3] = [
    (
        "0001-noint3selftest.patch",
        include_str!("../../../guest/kernel/patches/0001-noint3selftest.patch"),
    ),
    (
        "0002-pvmsyscallfixup.patch",
        include_str!("../../../guest/kernel/patches/0002-pvmsyscallfixup.patch"),
    ),
    (
        "0003-no-fwait-in-fpu-drop.patch",
        include_str!("../../../guest/kernel/patches/0003-no-fwait-in-fpu-drop.patch"),
    ),
];

/// What a built kernel records about itself (`kernel.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelManifest {
    /// Cache key.
    pub key: String,
    /// SHA-256 of `vmlinux`.
    pub sha256: String,
    /// Size of `vmlinux`.
    pub size_bytes: u64,
    /// Version of the source package.
    pub source_version: String,
    /// [`RECIPE_VERSION`].
    pub recipe_version: String,
    /// When it was built (Unix seconds).
    pub built_at: f64,
    /// How long the build took.
    pub build_seconds: f64,
}

/// A built kernel in the cache.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Its cache directory.
    pub dir: PathBuf,
    /// What it records about itself.
    pub manifest: KernelManifest,
}

impl Kernel {
    /// The kernel image.
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
}

/// Version of the installed source package, if any.
pub fn source_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", SOURCE_PACKAGE])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// The cache key for a source version: a hash of every build input.
pub fn key(source_version: &str) -> String {
    let mut input = format!("recipe={RECIPE_VERSION}\nsource={SOURCE_PACKAGE}={source_version}\n");
    input.push_str(FRAGMENT);
    for (name, body) in PATCHES {
        input.push_str(name);
        input.push_str(body);
    }
    sha256_bytes(input.as_bytes())[..16].to_owned()
}

/// The kernel built for `key`, if it is in the cache.
pub fn cached(cache: &Cache, key: &str) -> Option<Kernel> {
    let dir = cache.kernels_dir().join(key);
    let manifest: KernelManifest =
        serde_json::from_slice(&std::fs::read(dir.join("kernel.json")).ok()?).ok()?;
    (manifest.key == key && dir.join("vmlinux").is_file()).then_some(Kernel { dir, manifest })
}

/// Checks the kernel image against its recorded checksum.
pub fn verify(kernel: &Kernel, env_name: &str) -> Result<(), EnvError> {
    let path = kernel.vmlinux();
    let actual = sha256_file(&path)?;
    if actual != kernel.manifest.sha256 {
        return Err(EnvError::Corrupt {
            what: "kernel",
            path,
            expected: kernel.manifest.sha256.clone(),
            actual,
            env: env_name.to_owned(),
        });
    }
    Ok(())
}

/// Returns the kernel for the installed source, building it if needed (or
/// if the cached copy is corrupt). Returns whether a build ran.
pub fn ensure(
    cache: &Cache,
    env_name: &str,
    progress: &dyn Progress,
) -> Result<(Kernel, bool), EnvError> {
    require("dpkg-query", "dpkg", "find the kernel source version")?;
    let version = source_version().ok_or_else(|| EnvError::MissingTool {
        tool: SOURCE_TARBALL.into(),
        purpose: "build the guest kernel".into(),
        package: SOURCE_PACKAGE.into(),
    })?;
    let key = key(&version);
    let _lock = cache.lock("kernel")?;
    if let Some(k) = cached(cache, &key)
        && verify(&k, env_name).is_ok()
    {
        return Ok((k, false));
    }
    Ok((build(&DEBIAN, cache, &key, &version, progress)?, true))
}

/// The kernel a new environment (an import) boots: the one this host
/// builds, else (no kernel source here) the newest verified kernel in the
/// cache, e.g. one a registry pull brought; built when neither exists.
pub fn ensure_any(
    cache: &Cache,
    env_name: &str,
    progress: &dyn Progress,
) -> Result<(Kernel, bool), EnvError> {
    if source_version().is_none() {
        let mut found: Vec<Kernel> = std::fs::read_dir(cache.kernels_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| cached(cache, &e.file_name().to_string_lossy()))
            .collect();
        found.sort_by(|a, b| b.manifest.built_at.total_cmp(&a.manifest.built_at));
        if let Some(k) = found.into_iter().find(|k| verify(k, env_name).is_ok()) {
            return Ok((k, false));
        }
    }
    ensure(cache, env_name, progress)
}

/// The largest kernel pyro installs from a registry (compressed or not).
pub const MAX_PREBUILT_BYTES: u64 = 256 << 20;

/// Whether `key` can name a kernel directory (it may come from a registry).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 96
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Installs a kernel that was built elsewhere (from a registry artifact):
/// `vmlinux` must match `manifest`'s size and digest. A no-op when that
/// kernel is already here and intact.
pub fn install_prebuilt(
    cache: &Cache,
    manifest: &KernelManifest,
    vmlinux: &Path,
) -> Result<Kernel, EnvError> {
    if !valid_key(&manifest.key) {
        return Err(EnvError::io(
            "installing a kernel",
            std::io::Error::other(format!("{:?} cannot name a kernel", manifest.key)),
        ));
    }
    let _lock = cache.lock("kernel")?;
    if let Some(k) = cached(cache, &manifest.key) {
        if k.manifest.sha256 == manifest.sha256 && verify(&k, "").is_ok() {
            return Ok(k);
        }
        // Environments and templates are keyed by the kernel's key: a
        // different kernel under a key this cache has never replaces it.
        if verify(&k, "").is_ok() {
            return Err(EnvError::io(
                "installing a kernel",
                std::io::Error::other(format!(
                    "the artifact's kernel {} differs from the kernel of that key already in the cache (sha256 {} here, {} there); it was not installed. Push artifacts from a pyro whose kernel matches, or pull into another cache (PYRO_CACHE_DIR)",
                    manifest.key, k.manifest.sha256, manifest.sha256
                )),
            ));
        }
    }
    let actual = sha256_file(vmlinux)?;
    let size = std::fs::metadata(vmlinux).map(|m| m.len()).unwrap_or(0);
    if actual != manifest.sha256 || size != manifest.size_bytes {
        return Err(EnvError::Corrupt {
            what: "kernel",
            path: vmlinux.to_owned(),
            expected: manifest.sha256.clone(),
            actual,
            env: String::new(),
        });
    }
    let kernels = cache.kernels_dir();
    std::fs::create_dir_all(&kernels)
        .map_err(|e| EnvError::io(format!("creating {}", kernels.display()), e))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&kernels)
        .map_err(|e| {
            EnvError::io(
                format!("creating a staging directory in {}", kernels.display()),
                e,
            )
        })?;
    std::fs::copy(vmlinux, staging.path().join("vmlinux"))
        .map_err(|e| EnvError::io("copying a kernel", e))?;
    write_atomic(
        &staging.path().join("kernel.json"),
        &serde_json::to_vec_pretty(manifest)
            .map_err(|e| EnvError::io("serializing a manifest", e.into()))?,
    )?;
    let dir = kernels.join(&manifest.key);
    // A damaged copy of this kernel goes aside first, and only after the
    // new one is in place is it deleted.
    let old = kernels.join(format!(".staging-old-{}", manifest.key));
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&dir, &old)
            .map_err(|e| EnvError::io(format!("replacing {}", dir.display()), e))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, &dir)
        .map_err(|e| EnvError::io(format!("installing {}", dir.display()), e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(Kernel {
        dir,
        manifest: manifest.clone(),
    })
}

/// The programs the kernel build runs, with the Debian package of each.
pub const BUILD_TOOLS: &[(&str, &str)] = &[
    ("dpkg-query", "dpkg"),
    ("tar", "tar"),
    ("xz", "xz-utils"),
    ("make", "make"),
    ("gcc", "gcc"),
    ("bc", "bc"),
    ("bison", "bison"),
    ("flex", "flex"),
    ("patch", "patch"),
    ("perl", "perl"),
];
const LIBELF_HEADER: &str = "/usr/include/libelf.h";
const LIBELF_PACKAGE: &str = "libelf-dev";

/// The packages of the kernel build's non-program inputs (the source
/// tarball, the libelf header) that are missing.
pub fn missing_inputs() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !Path::new(SOURCE_TARBALL).is_file() {
        missing.push(SOURCE_PACKAGE);
    }
    if !Path::new(LIBELF_HEADER).exists() {
        missing.push(LIBELF_PACKAGE);
    }
    missing
}

/// What one kernel build reads: the source tarball and the directory it
/// unpacks to, the libelf header it needs, the config fragment and the
/// patches. [`DEBIAN`] is the one pyro builds; tests give their own.
#[derive(Debug, Clone, Copy)]
struct BuildInputs<'a> {
    tools: &'a [(&'a str, &'a str)],
    tarball: &'a str,
    tree: &'a str,
    libelf_header: &'a str,
    fragment: &'a str,
    patches: &'a [(&'a str, &'a str)],
}

const DEBIAN: BuildInputs<'static> = BuildInputs {
    tools: BUILD_TOOLS,
    tarball: SOURCE_TARBALL,
    tree: "linux-source-6.1",
    libelf_header: LIBELF_HEADER,
    fragment: FRAGMENT,
    patches: &PATCHES,
};

fn build(
    inputs: &BuildInputs<'_>,
    cache: &Cache,
    key: &str,
    version: &str,
    progress: &dyn Progress,
) -> Result<Kernel, EnvError> {
    for (tool, package) in inputs.tools {
        require(tool, package, "build the guest kernel")?;
    }
    if !Path::new(inputs.libelf_header).exists() {
        return Err(EnvError::MissingTool {
            tool: "libelf.h".into(),
            purpose: "build the guest kernel".into(),
            package: LIBELF_PACKAGE.into(),
        });
    }
    if !Path::new(inputs.tarball).is_file() {
        return Err(EnvError::MissingTool {
            tool: inputs.tarball.into(),
            purpose: "build the guest kernel".into(),
            package: SOURCE_PACKAGE.into(),
        });
    }
    let kernels = cache.kernels_dir();
    std::fs::create_dir_all(&kernels)
        .map_err(|e| EnvError::io(format!("creating {}", kernels.display()), e))?;
    // We hold the kernel lock: any other build directory is a leftover.
    crate::remove_matching(&kernels, &[".build-", ".staging-"]);
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix(&format!(".build-{key}-"))
        .tempdir_in(&kernels)
        .map_err(|e| {
            EnvError::io(
                format!("creating a build directory in {}", kernels.display()),
                e,
            )
        })?;
    let log = kernels.join(format!("build-{key}.log"));
    let _ = std::fs::remove_file(&log);

    progress.step(&format!(
        "guest kernel: unpacking {SOURCE_PACKAGE} {version}"
    ));
    run_logged(
        "unpacking the kernel source",
        Command::new("tar")
            .arg("-xf")
            .arg(inputs.tarball)
            .arg("-C")
            .arg(work.path()),
        &log,
        &mut |_| {},
    )?;
    let src = work.path().join(inputs.tree);

    progress.step("guest kernel: applying patches and configuring");
    for (name, body) in inputs.patches {
        let file = work.path().join(name);
        std::fs::write(&file, body)
            .map_err(|e| EnvError::io(format!("writing {}", file.display()), e))?;
        run_logged(
            &format!("applying {name}"),
            Command::new("patch")
                .args(["-p1", "--forward", "--batch", "-i"])
                .arg(&file)
                .current_dir(&src),
            &log,
            &mut |_| {},
        )?;
    }
    let fragment = work.path().join("microvm.fragment");
    std::fs::write(&fragment, inputs.fragment)
        .map_err(|e| EnvError::io(format!("writing {}", fragment.display()), e))?;
    run_logged(
        "make tinyconfig",
        Command::new("make").arg("tinyconfig").current_dir(&src),
        &log,
        &mut |_| {},
    )?;
    run_logged(
        "merging the config fragment",
        Command::new("scripts/kconfig/merge_config.sh")
            .args(["-m", ".config"])
            .arg(&fragment)
            .current_dir(&src),
        &log,
        &mut |_| {},
    )?;
    run_logged(
        "make olddefconfig",
        Command::new("make").arg("olddefconfig").current_dir(&src),
        &log,
        &mut |_| {},
    )?;
    let config = std::fs::read_to_string(src.join(".config"))
        .map_err(|e| EnvError::io("reading the kernel .config", e))?;
    let missing = config_violations(inputs.fragment, &config);
    if !missing.is_empty() {
        return Err(EnvError::KernelConfig(missing.join(", ")));
    }

    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    progress.step(&format!(
        "guest kernel: compiling with {jobs} jobs (a few minutes)"
    ));
    let mut objects = 0u32;
    run_logged(
        "compiling the kernel",
        Command::new("make")
            .arg(format!("-j{jobs}"))
            .arg("vmlinux")
            .current_dir(&src),
        &log,
        &mut |line| {
            let t = line.trim_start();
            if t.starts_with("CC ")
                || t.starts_with("AS ")
                || t.starts_with("LD ")
                || t.starts_with("AR ")
            {
                objects += 1;
                if objects.is_multiple_of(10) {
                    progress.tick(&format!("guest kernel: compiled {objects} objects"));
                }
            }
        },
    )?;

    let staging = kernels.join(format!(".staging-{key}"));
    std::fs::create_dir_all(&staging)
        .map_err(|e| EnvError::io(format!("creating {}", staging.display()), e))?;
    let vmlinux = staging.join("vmlinux");
    std::fs::copy(src.join("vmlinux"), &vmlinux).map_err(|e| EnvError::io("copying vmlinux", e))?;
    std::fs::write(staging.join("config"), &config)
        .map_err(|e| EnvError::io("saving the config", e))?;
    let manifest = KernelManifest {
        key: key.to_owned(),
        sha256: sha256_file(&vmlinux)?,
        size_bytes: std::fs::metadata(&vmlinux).map(|m| m.len()).unwrap_or(0),
        source_version: version.to_owned(),
        recipe_version: RECIPE_VERSION.to_owned(),
        built_at: now_unix(),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    let _ = std::fs::rename(&log, staging.join("build.log"));
    write_atomic(
        &staging.join("kernel.json"),
        &serde_json::to_vec_pretty(&manifest)
            .map_err(|e| EnvError::io("serializing a manifest", e.into()))?,
    )?;
    let dir = kernels.join(key);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| EnvError::io(format!("removing {}", dir.display()), e))?;
    }
    std::fs::rename(&staging, &dir)
        .map_err(|e| EnvError::io(format!("installing {}", dir.display()), e))?;
    drop(work);
    Ok(Kernel { dir, manifest })
}

/// Fragment lines the final config does not honour: `=y`/`=n`-style values
/// that are absent, and "is not set" options that ended up enabled. An
/// option that is absent altogether counts as "not set" (its dependencies
/// are off).
pub fn config_violations(fragment: &str, config: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if let Some(rest) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            if config
                .lines()
                .any(|c| c.starts_with(&format!("{rest}=")) && !c.ends_with("=n"))
            {
                out.push(format!("{rest} should be off"));
            }
        } else if line.starts_with("CONFIG_") && !config.lines().any(|c| c.trim() == line) {
            out.push(line.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! pyro environments.
//!
//! An environment is a shared, read-only base root image (ext4) with the pyro
//! agent baked in, the root tree it was made from (used by the host-compat
//! backend and for rebaking), and the shared guest kernel. Everything lives
//! in the cache directory and is installed by staging plus an atomic rename,
//! so a partial build never counts as installed.
//!
//! ```text
//! <cache>/firecracker/<version>/{firecracker,jailer}
//! <cache>/kernels/<key>/{vmlinux,config,kernel.json,build.log}
//! <cache>/environments/<name>-<version>/{rootfs.ext4,rootfs/,environment.json}
//! <cache>/locks/*.lock
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod artifact;
pub mod catalog;
pub mod config;
pub mod ident;
pub mod import;
pub mod install;
pub mod kernel;
mod prune;
pub mod rootfs;

mod cmd;
mod fetch;

use std::path::{Path, PathBuf};

pub use catalog::{CATALOG, CATALOG_VERSION, EnvSpec, PLATFORM};
pub use cmd::which;
pub use ident::{EnvRef, ImageDefaults, Origin};
pub use install::{EnvStatus, Installed};

/// The Debian packages `env pull` needs that this host lacks (for the
/// rootfs and kernel builds), empty when a build can run.
pub fn missing_build_packages() -> Vec<&'static str> {
    let mut missing: Vec<&'static str> = rootfs::BUILD_TOOLS
        .iter()
        .chain(kernel::BUILD_TOOLS)
        .filter(|(tool, _)| !cmd::have(tool))
        .map(|(_, package)| *package)
        .collect();
    missing.extend(kernel::missing_inputs());
    missing
}

/// Everything that can go wrong with environments.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The name is not in the catalog.
    #[error("unknown environment {name:?}; expected one of: {valid}")]
    Unknown {
        /// What was asked for.
        name: String,
        /// The catalog names, comma-separated.
        valid: String,
    },
    /// A name for a new environment is not usable.
    #[error("{name:?} cannot name an environment: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The environment is in use and cannot be replaced now.
    #[error(
        "the environment {name} is used by workspace {users}; delete it first, or install under another name"
    )]
    InUse {
        /// The environment.
        name: String,
        /// The workspaces using it, comma-separated.
        users: String,
    },
    /// A registry, image or artifact failed.
    #[error(transparent)]
    Oci(#[from] pyro_oci::OciError),
    /// A registry artifact is not a pyro environment this pyro can use.
    #[error("{reference} is not a pyro environment this pyro can install: {reason}")]
    Artifact {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The environment has not been pulled (or is stale).
    #[error("environment {name} is not installed ({reason}); run ⟨op:env pull {name}⟩")]
    NotInstalled {
        /// Environment name.
        name: String,
        /// Why it does not count as installed.
        reason: String,
    },
    /// A cached artifact does not match its recorded checksum.
    #[error(
        "the cached {what} {path} does not match its recorded checksum (expected sha256 \
         {expected}, got {actual}); run ⟨op:env pull {env}⟩ to rebuild it"
    )]
    Corrupt {
        /// "kernel", "base image".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Recorded digest.
        expected: String,
        /// Digest on disk.
        actual: String,
        /// Environment to re-pull.
        env: String,
    },
    /// A tool the build needs is missing.
    #[error("{tool} is required to {purpose}; install it with `apt-get install {package}`")]
    MissingTool {
        /// Program or file.
        tool: String,
        /// What it is needed for.
        purpose: String,
        /// Debian package providing it.
        package: String,
    },
    /// The agent binary cannot be used.
    #[error("{0}")]
    Agent(String),
    /// A build step failed.
    #[error("{step} failed; the build log is at {log}\n--- last lines ---\n{tail}")]
    Build {
        /// Which step.
        step: String,
        /// Where the full log is kept.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The kernel config did not take options the recipe needs.
    #[error("the kernel config is missing required options: {0}")]
    KernelConfig(String),
    /// Installing Firecracker failed.
    #[error(transparent)]
    Vmm(#[from] pyro_vmm::VmmError),
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl EnvError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Says whether an installed environment may be replaced now (an error
/// when something uses it): called under the environment's lock, just
/// before a replacement starts.
pub type ReplaceGuard<'a> = &'a (dyn Fn(&str) -> Result<(), EnvError> + Sync);

/// Receives progress from long operations.
pub trait Progress: Sync {
    /// A new step starts.
    fn step(&self, msg: &str);
    /// The current step made progress.
    fn tick(&self, msg: &str);
}

/// Discards progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&self, _: &str) {}
    fn tick(&self, _: &str) {}
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$PYRO_CACHE_DIR`, else `$XDG_CACHE_HOME/pyro`, else `~/.cache/pyro`.
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os("PYRO_CACHE_DIR").filter(|v| !v.is_empty()) {
            return Self::new(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return Self::new(PathBuf::from(dir).join("pyro"));
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        Self::new(home.join(".cache").join("pyro"))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where kernels are kept.
    pub fn kernels_dir(&self) -> PathBuf {
        self.root.join("kernels")
    }

    /// Where downloaded blobs are kept until they are installed (an
    /// interrupted download resumes from here).
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where environments are kept.
    pub fn environments_dir(&self) -> PathBuf {
        self.root.join("environments")
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
    }

    /// Takes the named exclusive lock (blocking), creating the lock file.
    pub fn lock(&self, name: &str) -> Result<std::fs::File, EnvError> {
        let path = self.lock_path(name);
        lock_file(&path).map_err(|e| EnvError::io(format!("locking {}", path.display()), e))
    }

    /// Takes the named lock if it is free (`None` when another process
    /// holds it).
    pub fn try_lock(&self, name: &str) -> Result<Option<std::fs::File>, EnvError> {
        let path = self.lock_path(name);
        try_lock_file(&path).map_err(|e| EnvError::io(format!("locking {}", path.display()), e))
    }

    /// Takes the named lock shared, waiting for an exclusive holder.
    pub fn lock_shared_blocking(&self, name: &str) -> Result<std::fs::File, EnvError> {
        let path = self.lock_path(name);
        let f = open_lock_file(&path)
            .map_err(|e| EnvError::io(format!("locking {}", path.display()), e))?;
        f.lock_shared()
            .map_err(|e| EnvError::io(format!("locking {}", path.display()), e))?;
        Ok(f)
    }

    /// Takes the named lock shared (many readers, no exclusive holder) if
    /// it can now (`None` while another process holds it exclusively).
    pub fn try_lock_shared(&self, name: &str) -> Result<Option<std::fs::File>, EnvError> {
        let path = self.lock_path(name);
        let f = open_lock_file(&path)
            .map_err(|e| EnvError::io(format!("locking {}", path.display()), e))?;
        match f.try_lock_shared() {
            Ok(()) => Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(EnvError::io(format!("locking {}", path.display()), e))
            }
        }
    }
}

fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Opens (creating it and its directory) and exclusively locks the lock file
/// at `path`, waiting for other holders. The lock goes with the handle.
pub fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    let f = open_lock_file(path)?;
    f.lock()?;
    Ok(f)
}

/// Like [`lock_file`], but `None` instead of waiting when it is held.
pub fn try_lock_file(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let f = open_lock_file(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same directory,
/// fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EnvError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| EnvError::io(format!("creating a temp file in {}", dir.display()), e))?;
    tmp.write_all(bytes)
        .map_err(|e| EnvError::io(format!("writing {}", path.display()), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| EnvError::io(format!("flushing {}", path.display()), e))?;
    tmp.persist(path)
        .map_err(|e| EnvError::io(format!("renaming into {}", path.display()), e.error))?;
    Ok(())
}

/// Deletes entries of `dir` whose names start with any of `prefixes`.
pub(crate) fn remove_matching(dir: &Path, prefixes: &[&str]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| name.starts_with(p)) {
                let p = e.path();
                let ok = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                if ok.is_ok() {
                    removed.push(p);
                }
            }
        }
    }
    removed
}

/// SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, EnvError> {
    pyro_vmm::sha256_file(path).map_err(|e| EnvError::io(format!("reading {}", path.display()), e))
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_bytes(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
pub(crate) mod tests;

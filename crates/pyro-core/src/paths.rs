//! Where pyro keeps state and cache.
//!
//! ```text
//! $PYRO_HOME (default $XDG_STATE_HOME/pyro, i.e. ~/.local/state/pyro)
//!   vms/<id>/vm.json        one record per running sandbox
//!   vms/<id>/...            its console log, disks, sockets
//!   jail/firecracker/<id>/  jailer chroots
//!   workspaces/<id>/        a workspace: record, writable disk, baseline,
//!                           command log
//!   tmp/<pid>.<start>/      one process's temp files (packed seeds, spools),
//!                           and notes of its temp files elsewhere
//!   locks/                  file locks
//! ```

use std::path::{Path, PathBuf};

use pyro_env::Cache;

use crate::CoreError;

/// How long a call waits for a lock another call holds before it fails
/// with a "busy, try again" error.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// State and cache locations.
#[derive(Debug, Clone)]
pub struct Paths {
    state: PathBuf,
    cache: Cache,
    cgroup_root: PathBuf,
}

impl Paths {
    /// Explicit locations.
    pub fn new(state: impl Into<PathBuf>, cache: Cache) -> Self {
        Self {
            state: state.into(),
            cache,
            cgroup_root: pyro_vmm::cgroup::CGROUP_ROOT.into(),
        }
    }

    /// Explicit state and cache directories.
    pub fn with_cache_dir(state: impl Into<PathBuf>, cache: impl Into<PathBuf>) -> Self {
        Self::new(state, Cache::new(cache))
    }

    /// Uses another cgroup mount point (tests).
    pub fn with_cgroup_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.cgroup_root = root.into();
        self
    }

    /// Where cgroup hierarchies are mounted.
    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }

    /// The cgroup parent of this state directory's VMs: `pyro-<hash>`, so
    /// that pyro homes never touch each other's groups.
    pub fn cgroup_parent(&self) -> String {
        format!(
            "pyro-{}",
            &pyro_env::sha256_bytes(self.state.as_os_str().as_encoded_bytes())[..8]
        )
    }

    /// `$PYRO_HOME` or `$XDG_STATE_HOME/pyro` or `~/.local/state/pyro`, and
    /// the cache from the environment.
    pub fn from_env() -> Self {
        let state = match std::env::var_os("PYRO_HOME").filter(|v| !v.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
                Some(p) => PathBuf::from(p).join("pyro"),
                None => std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "/root".into())
                    .join(".local/state/pyro"),
            },
        };
        Self::new(state, Cache::from_env())
    }

    /// The state root.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// One directory per running sandbox.
    pub fn vms_dir(&self) -> PathBuf {
        self.state.join("vms")
    }

    /// A sandbox's directory.
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.vms_dir().join(id)
    }

    /// The jailer's chroot base.
    pub fn jail_base(&self) -> PathBuf {
        self.state.join("jail")
    }

    /// Takes the named exclusive state lock (blocking).
    pub fn lock(&self, name: &str) -> Result<std::fs::File, CoreError> {
        let path = self.lock_path(name);
        pyro_env::lock_file(&path)
            .map_err(|e| CoreError::io(format!("locking {}", path.display()), e))
    }

    /// Takes the named exclusive state lock, waiting without blocking the
    /// async runtime's threads.
    pub async fn lock_async(&self, name: &str) -> Result<std::fs::File, CoreError> {
        self.lock_within(name, LOCK_WAIT).await
    }

    /// Takes the named lock, waiting at most `limit`; then fails with
    /// [`CoreError::Busy`] (another call holds it: a reset, a boot).
    pub async fn lock_within(
        &self,
        name: &str,
        limit: std::time::Duration,
    ) -> Result<std::fs::File, CoreError> {
        let path = self.lock_path(name);
        let until = std::time::Instant::now() + limit;
        loop {
            match pyro_env::try_lock_file(&path) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) if std::time::Instant::now() >= until => {
                    return Err(CoreError::Busy(format!(
                        "{name} is busy: another call has held it for over {} s (a create, \
                         reset or start boots a VM under it); try again when that call ends",
                        limit.as_secs()
                    )));
                }
                Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err(e) => return Err(CoreError::io(format!("locking {}", path.display()), e)),
            }
        }
    }

    /// Takes the named state lock if it is free.
    pub fn try_lock(&self, name: &str) -> Option<std::fs::File> {
        pyro_env::try_lock_file(&self.lock_path(name))
            .ok()
            .flatten()
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.state.join("locks").join(format!("{name}.lock"))
    }
}

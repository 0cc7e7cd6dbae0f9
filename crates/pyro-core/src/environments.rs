//! Environments as the front ends see them: the catalog with each entry's
//! install status, resolving a name for use (pulling it first when asked),
//! pulling and pruning. The CLI and the MCP server call these instead of
//! reaching into `pyro-env`.

use std::path::PathBuf;

pub use pyro_env::{EnvStatus, Installed, NoProgress, Progress};
use serde::Serialize;

use crate::{CoreError, Paths};

/// The environment used when none is named.
pub const DEFAULT_ENVIRONMENT: &str = "debian:12";

/// The catalog's version.
pub const CATALOG_VERSION: &str = pyro_env::CATALOG_VERSION;

/// Every environment in the catalog, with its install status.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Catalog {
    /// The catalog's version.
    pub catalog_version: String,
    /// Its environments, in catalog order.
    pub environments: Vec<EnvSummary>,
}

/// One catalog entry and whether it is ready: what to choose by. (Its
/// paths on the host are in [`status`], which the CLI's `env inspect`
/// shows; a listing for a model leaves them out.)
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EnvSummary {
    /// Name to pass as the environment.
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
    /// Whether it is ready on this host.
    pub installed: bool,
    /// Why not, when it is not.
    pub status_reason: Option<String>,
}

/// The catalog and what is installed.
pub fn catalog(paths: &Paths) -> Catalog {
    let agent = pyro_env::agent::locate().ok();
    Catalog {
        catalog_version: CATALOG_VERSION.to_owned(),
        environments: pyro_env::CATALOG
            .iter()
            .map(|s| {
                let st = pyro_env::install::status(paths.cache(), s, agent.as_ref());
                EnvSummary {
                    name: st.name,
                    version: st.version,
                    description: st.description,
                    default_packages: st.default_packages,
                    distribution: st.distribution,
                    distribution_version: st.distribution_version,
                    installed: st.installed,
                    status_reason: st.status_reason,
                }
            })
            .collect(),
    }
}

/// One environment's status.
pub fn status(paths: &Paths, name: &str) -> Result<EnvStatus, CoreError> {
    let spec = pyro_env::catalog::lookup(name)?;
    let agent = pyro_env::agent::locate().ok();
    Ok(pyro_env::install::status(
        paths.cache(),
        spec,
        agent.as_ref(),
    ))
}

/// The installed environment `name`, ready to boot; an error when it is
/// unknown or not installed (pulling builds the guest kernel and base
/// image, which takes minutes: see [`ensure`]).
pub fn resolve(paths: &Paths, name: &str) -> Result<Installed, CoreError> {
    let spec = pyro_env::catalog::lookup(name)?;
    let agent = pyro_env::agent::locate().ok();
    Ok(pyro_env::install::installed(
        paths.cache(),
        spec,
        agent.as_ref(),
    )?)
}

/// [`resolve`], pulling the environment first when it is missing or stale
/// (reporting each step to `progress`).
pub fn ensure(paths: &Paths, name: &str, progress: &dyn Progress) -> Result<Installed, CoreError> {
    let spec = pyro_env::catalog::lookup(name)?;
    let agent = pyro_env::agent::locate();
    match pyro_env::install::installed(paths.cache(), spec, agent.as_ref().ok()) {
        Ok(inst) => Ok(inst),
        Err(pyro_env::EnvError::NotInstalled { reason, .. }) => {
            let agent = agent?;
            progress.step(&format!("{name} is not ready ({reason}); pulling it"));
            Ok(pyro_env::install::pull(paths.cache(), spec, &agent, progress)?.installed)
        }
        Err(e) => Err(e.into()),
    }
}

/// [`ensure`] from async code: a pull (minutes, for the kernel build) runs
/// on a blocking thread while its steps are passed to `progress` here, so
/// the caller's task keeps running (progress notifications, cancellation).
/// Dropping the future leaves the pull to finish in the background; the
/// next call finds it installed. Both front ends use this, so a missing
/// environment is pulled the same way from either.
pub async fn ensure_ready(
    paths: &Paths,
    name: &str,
    progress: &dyn Progress,
) -> Result<Installed, CoreError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (p, n) = (paths.clone(), name.to_owned());
    let job = tokio::task::spawn_blocking(move || ensure(&p, &n, &Forward(tx)));
    tokio::pin!(job);
    loop {
        tokio::select! {
            Some((tick, msg)) = rx.recv() => {
                if tick { progress.tick(&msg) } else { progress.step(&msg) }
            }
            r = &mut job => {
                // Steps sent just before the end still show.
                while let Ok((tick, msg)) = rx.try_recv() {
                    if tick { progress.tick(&msg) } else { progress.step(&msg) }
                }
                return r.map_err(|e| {
                    CoreError::io("pulling an environment", std::io::Error::other(e.to_string()))
                })?;
            }
        }
    }
}

/// Progress sent from a blocking thread to the task that waits for it.
struct Forward(tokio::sync::mpsc::UnboundedSender<(bool, String)>);

impl Progress for Forward {
    fn step(&self, msg: &str) {
        let _ = self.0.send((false, msg.to_owned()));
    }
    fn tick(&self, msg: &str) {
        let _ = self.0.send((true, msg.to_owned()));
    }
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pulled {
    /// The environment's status afterwards.
    #[serde(flatten)]
    pub status: EnvStatus,
    /// Steps that changed the cache (empty: it was already installed).
    pub actions: Vec<String>,
    /// Whether anything changed.
    pub changed: bool,
    /// Wall time, to a tenth of a second.
    pub seconds: f64,
}

/// Makes `name` available (Firecracker, the kernel, the base image with
/// the agent baked in); a no-op when everything is current.
pub fn pull(paths: &Paths, name: &str, progress: &dyn Progress) -> Result<Pulled, CoreError> {
    let spec = pyro_env::catalog::lookup(name)?;
    let agent = pyro_env::agent::locate()?;
    let report = pyro_env::install::pull(paths.cache(), spec, &agent, progress)?;
    Ok(Pulled {
        status: pyro_env::install::status(paths.cache(), spec, Some(&agent)),
        changed: !report.actions.is_empty(),
        actions: report.actions,
        seconds: (report.seconds * 10.0).round() / 10.0,
    })
}

/// What a prune deleted.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pruned {
    /// The deleted cache entries.
    pub deleted: Vec<PathBuf>,
    /// How many.
    pub count: usize,
}

/// Deletes cache entries no current environment uses; what went.
pub fn prune(paths: &Paths) -> Result<Pruned, CoreError> {
    let deleted = pyro_env::install::prune(paths.cache())?;
    Ok(Pruned {
        count: deleted.len(),
        deleted,
    })
}

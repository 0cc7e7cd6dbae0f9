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
    /// `catalog`, or `imported` (made here from a container image).
    pub kind: String,
    /// Where the installed copy came from: a local build, a registry
    /// artifact or an image, with its digest.
    pub source: String,
    /// Bytes of its base image, when installed.
    pub size_bytes: Option<u64>,
}

/// The catalog, then the imported environments, and what is installed.
pub fn catalog(paths: &Paths) -> Catalog {
    let agent = pyro_env::agent::locate().ok();
    let mut envs: Vec<pyro_env::EnvRef> = pyro_env::CATALOG
        .iter()
        .map(pyro_env::EnvRef::Catalog)
        .collect();
    envs.extend(
        pyro_env::ident::imported_names(paths.cache())
            .into_iter()
            .map(pyro_env::EnvRef::Imported),
    );
    Catalog {
        catalog_version: CATALOG_VERSION.to_owned(),
        environments: envs
            .iter()
            .map(|e| {
                let st = pyro_env::install::status(paths.cache(), e, agent.as_ref());
                EnvSummary {
                    name: st.name,
                    version: st.version,
                    description: st.description,
                    default_packages: st.default_packages,
                    distribution: st.distribution,
                    distribution_version: st.distribution_version,
                    installed: st.installed,
                    status_reason: st.status_reason,
                    kind: st.kind,
                    source: st.source,
                    size_bytes: st.rootfs_size_bytes,
                }
            })
            .collect(),
    }
}

/// One environment's status.
pub fn status(paths: &Paths, name: &str) -> Result<EnvStatus, CoreError> {
    let env = pyro_env::ident::lookup(paths.cache(), name)?;
    let agent = pyro_env::agent::locate().ok();
    Ok(pyro_env::install::status(
        paths.cache(),
        &env,
        agent.as_ref(),
    ))
}

/// The installed environment `name`, ready to boot; an error when it is
/// unknown or not installed (pulling builds the guest kernel and base
/// image, which takes minutes: see [`ensure`]).
pub fn resolve(paths: &Paths, name: &str) -> Result<Installed, CoreError> {
    let env = pyro_env::ident::lookup(paths.cache(), name)?;
    let agent = pyro_env::agent::locate().ok();
    Ok(pyro_env::install::installed(
        paths.cache(),
        &env,
        agent.as_ref(),
    )?)
}

/// [`resolve`], pulling the environment first when it is missing or stale
/// (reporting each step to `progress`). An imported environment is only
/// refreshed (its agent rebaked): it cannot be pulled.
pub fn ensure(paths: &Paths, name: &str, progress: &dyn Progress) -> Result<Installed, CoreError> {
    let env = pyro_env::ident::lookup(paths.cache(), name)?;
    let agent = pyro_env::agent::locate();
    match pyro_env::install::installed(paths.cache(), &env, agent.as_ref().ok()) {
        Ok(inst) => Ok(inst),
        Err(pyro_env::EnvError::NotInstalled { reason, .. }) => {
            agent
                .as_ref()
                .map_err(|e| CoreError::from(pyro_env::EnvError::Agent(e.to_string())))?;
            progress.step(&format!("{name} is not ready ({reason}); pulling it"));
            pull(paths, name, None, progress)?;
            resolve(paths, name)
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
    let (p, n) = (paths.clone(), name.to_owned());
    forwarding(progress, move |fwd| ensure(&p, &n, fwd)).await
}

/// Runs `work` (which blocks: a pull) on a blocking thread, passing its
/// progress steps to `progress` here as they come.
async fn forwarding<T: Send + 'static>(
    progress: &dyn Progress,
    work: impl FnOnce(&dyn Progress) -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let job = tokio::task::spawn_blocking(move || work(&Forward(tx)));
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
    /// The default shape's template (`env pull`; absent from a pull made
    /// on first use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateStep>,
}

/// What a pull did about the default shape's template.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TemplateStep {
    /// `built`, `ready` (already current), `skipped` or `failed`.
    pub outcome: String,
    /// The template's name (built or ready).
    pub name: Option<String>,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
}

/// [`pull`], then the default shape's template where this host can make
/// one (`no_template`: not now; it is built on first use). A failed
/// template build fails nothing: the environment is installed, guests boot
/// cold until a template exists, and the result says why.
pub async fn pull_with_template(
    paths: &Paths,
    name: &str,
    registry: Option<&str>,
    no_template: bool,
    progress: &dyn Progress,
) -> Result<Pulled, CoreError> {
    let (p, n, r) = (paths.clone(), name.to_owned(), registry.map(str::to_owned));
    let mut pulled = forwarding(progress, move |fwd| pull(&p, &n, r.as_deref(), fwd)).await?;
    let step = template_step(paths, name, no_template, progress).await;
    pulled.template = Some(step);
    Ok(pulled)
}

/// The default shape's template of `name`, where this host can make one;
/// a failure fails nothing (guests boot cold), and the step says why.
async fn template_step(
    paths: &Paths,
    name: &str,
    no_template: bool,
    progress: &dyn Progress,
) -> TemplateStep {
    if let Some(why) = template_skip_reason(no_template) {
        return TemplateStep {
            outcome: "skipped".into(),
            name: None,
            reason: Some(why),
        };
    }
    let shape = crate::template::Shape::default_shape();
    match build_template(paths, name, shape, false, progress).await {
        Ok(t) => TemplateStep {
            outcome: t.outcome,
            name: Some(t.name),
            reason: None,
        },
        Err(e) => TemplateStep {
            outcome: "failed".into(),
            name: None,
            reason: Some(e.message(crate::hint::FrontEnd::Neutral)),
        },
    }
}

/// [`import`], then the default shape's template (see
/// [`pull_with_template`]).
pub async fn import_with_template(
    paths: &Paths,
    source: &str,
    name: &str,
    no_template: bool,
    progress: &dyn Progress,
) -> Result<(pyro_env::import::Imported, TemplateStep), CoreError> {
    let imported = import(paths, source, name, progress).await?;
    let step = template_step(paths, name, no_template, progress).await;
    Ok((imported, step))
}

/// Makes `name` available (Firecracker, the kernel, the base image with
/// the agent baked in); a no-op when everything is current.
///
/// With `registry` (a full image reference), the environment artifact
/// there is installed, and must hold `name`. Without, a catalog
/// environment comes from the configured registry (`PYRO_ENV_REGISTRY`
/// or `env_registry` in the config file) when one is set, with a local
/// build as the fallback, and from a local build otherwise; an imported
/// environment is refreshed.
pub fn pull(
    paths: &Paths,
    name: &str,
    registry: Option<&str>,
    progress: &dyn Progress,
) -> Result<Pulled, CoreError> {
    let started = std::time::Instant::now();
    let agent = pyro_env::agent::locate()?;
    let cache = paths.cache();
    let mut actions = Vec::new();
    let guard = in_use_guard(paths);
    if let Some(reference) = registry {
        let r = pyro_env::artifact::pull(cache, reference, Some(name), &agent, &guard, progress)?;
        actions.extend(r.actions);
        return pulled(paths, name, actions, started, &agent);
    }
    match pyro_env::ident::lookup(cache, name)? {
        pyro_env::EnvRef::Imported(n) => {
            actions.extend(pyro_env::install::refresh(cache, &n, &agent, progress)?.actions);
        }
        pyro_env::EnvRef::Catalog(spec) => {
            let from_registry = match pyro_env::config::env_registry()? {
                Some(reg)
                    if pyro_env::install::installed(
                        cache,
                        &pyro_env::EnvRef::Catalog(spec),
                        Some(&agent),
                    )
                    .is_err() =>
                {
                    let reference = pyro_env::config::catalog_reference(&reg, spec.name);
                    match pyro_env::artifact::pull(
                        cache,
                        &reference,
                        Some(spec.name),
                        &agent,
                        &guard,
                        progress,
                    ) {
                        Ok(r) => {
                            actions.extend(r.actions);
                            true
                        }
                        Err(e) => {
                            let why = e.to_string();
                            progress.step(&format!("the registry pull from {reference} failed ({why}); building locally"));
                            actions.push(format!("the registry pull from {reference} failed ({why}); built locally instead"));
                            false
                        }
                    }
                }
                _ => false,
            };
            if !from_registry {
                let report = pyro_env::install::pull(cache, spec, &agent, progress)?;
                actions.extend(report.actions);
            }
        }
    }
    pulled(paths, name, actions, started, &agent)
}

/// Refuses to replace an environment a workspace (started or stopped)
/// uses: its disk sits on that base image.
fn in_use_guard(paths: &Paths) -> impl Fn(&str) -> Result<(), pyro_env::EnvError> + Sync + use<> {
    let ws = crate::workspace::Workspaces::new(paths.clone());
    move |name: &str| {
        let users = ws.using_environment(name).unwrap_or_default();
        if users.is_empty() {
            Ok(())
        } else {
            Err(pyro_env::EnvError::InUse {
                name: name.to_owned(),
                users: users.join(", "),
            })
        }
    }
}

fn pulled(
    paths: &Paths,
    name: &str,
    actions: Vec<String>,
    started: std::time::Instant,
    agent: &pyro_env::agent::AgentBinary,
) -> Result<Pulled, CoreError> {
    let env = pyro_env::ident::lookup(paths.cache(), name)?;
    Ok(Pulled {
        status: pyro_env::install::status(paths.cache(), &env, Some(agent)),
        changed: !actions.is_empty(),
        actions,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        template: None,
    })
}

/// Uploads the installed environment `name` to `reference` as an OCI
/// artifact (see `docs/environments.md`).
pub async fn push(
    paths: &Paths,
    name: &str,
    reference: &str,
    progress: &dyn Progress,
) -> Result<pyro_env::artifact::Pushed, CoreError> {
    let (p, n, r) = (paths.clone(), name.to_owned(), reference.to_owned());
    forwarding(progress, move |fwd| {
        let env = pyro_env::ident::lookup(p.cache(), &n)?;
        Ok(pyro_env::artifact::push(p.cache(), &env, &r, fwd)?)
    })
    .await
}

/// Makes the container image `source` (a reference, or a `docker save` /
/// OCI-layout tarball) the environment `name`, replacing an earlier import
/// of that name unless a workspace uses it.
pub async fn import(
    paths: &Paths,
    source: &str,
    name: &str,
    progress: &dyn Progress,
) -> Result<pyro_env::import::Imported, CoreError> {
    let (p, s, n) = (paths.clone(), source.to_owned(), name.to_owned());
    forwarding(progress, move |fwd| {
        let agent = pyro_env::agent::locate()?;
        let guard = in_use_guard(&p);
        Ok(pyro_env::import::import(
            p.cache(),
            &s,
            &n,
            &agent,
            &guard,
            fwd,
        )?)
    })
    .await
}

/// What a prune deleted.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pruned {
    /// The deleted cache entries.
    pub deleted: Vec<PathBuf>,
    /// How many.
    pub count: usize,
    /// Templates deleted because they were stale or damaged.
    pub templates: Vec<String>,
}

/// Deletes cache entries no current environment uses, and stale or
/// damaged templates; what went.
pub fn prune(paths: &Paths) -> Result<Pruned, CoreError> {
    let deleted = pyro_env::install::prune(paths.cache())?;
    Ok(Pruned {
        count: deleted.len(),
        deleted,
        templates: prune_templates(paths, false)?,
    })
}

/// What `env template build` (or the template step of `env pull`) did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TemplateBuilt {
    /// The template's name.
    pub name: String,
    /// Machine shape.
    pub shape: crate::template::Shape,
    /// `built`, or `ready` (it was already current).
    pub outcome: String,
    /// Build time (0 when it was already current).
    pub build_ms: u64,
    /// Bytes of guest memory each of its two snapshots holds.
    pub mem_bytes: u64,
}

/// Builds the template of `name` for `shape` unless a current one exists
/// (`force`: rebuild anyway). The environment must be installed.
pub async fn build_template(
    paths: &Paths,
    name: &str,
    shape: crate::template::Shape,
    force: bool,
    progress: &dyn Progress,
) -> Result<TemplateBuilt, CoreError> {
    crate::run::check_machine(
        crate::BackendKind::Firecracker,
        shape.vcpu_count,
        shape.mem_mib,
    )?;
    crate::limits::DISK_MIB.check(shape.disk_mib)?;
    let env = resolve(paths, name)?;
    let wanted = crate::template::sources(paths, &env)?;
    let current = crate::template::lookup(paths, &env, shape, &wanted).ok();
    if let (Some(t), false) = (&current, force) {
        return Ok(TemplateBuilt {
            name: t.name.clone(),
            shape,
            outcome: "ready".into(),
            build_ms: 0,
            mem_bytes: t.meta.mem_bytes,
        });
    }
    let t = crate::template::build(
        paths,
        &env,
        shape,
        crate::sandbox::default_boot_timeout(),
        force,
        progress,
    )
    .await?;
    Ok(TemplateBuilt {
        name: t.name,
        shape,
        outcome: "built".into(),
        build_ms: t.meta.build_ms,
        mem_bytes: t.meta.mem_bytes,
    })
}

/// Every template in the cache and whether it is current.
pub fn list_templates(paths: &Paths) -> Result<Vec<crate::template::TemplateView>, CoreError> {
    crate::template::list(paths, &|name| resolve(paths, name).ok())
}

/// Deletes templates that are stale or damaged (`all`: every template),
/// and what interrupted builds left; the names of what went.
pub fn prune_templates(paths: &Paths, all: bool) -> Result<Vec<String>, CoreError> {
    let mut gone = Vec::new();
    for t in list_templates(paths)? {
        // One being used or rebuilt right now is left for later.
        if (all || t.status != "ready") && crate::template::remove(paths, &t.name)? {
            gone.push(t.name);
        }
    }
    // What interrupted builds left: staging and old directories in the
    // cache, disks in this state directory.
    let leftovers = [
        crate::template::root(paths),
        paths.state().join("template-build"),
    ];
    for dir in leftovers {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = match n
                .strip_prefix(".build-")
                .or_else(|| n.strip_prefix(".old-"))
            {
                Some(name) => name,
                None if dir.ends_with("template-build") => n.as_str(),
                None => continue,
            };
            let lock = crate::template::build_lock(name);
            if let Ok(Some(_building)) = paths.cache().try_lock(&lock) {
                let _ = std::fs::remove_dir_all(e.path());
                gone.push(n);
            }
        }
    }
    Ok(gone)
}

/// Why `env pull` does not build the default template here (`None`: it
/// does): `--no-template`, no root (no jailer), or no usable `/dev/kvm`.
pub fn template_skip_reason(no_template: bool) -> Option<String> {
    if no_template {
        return Some("--no-template was given; it is built on first use".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Some("templates need the jailer, which needs root; guests boot cold".into());
    }
    if !pyro_vmm::host::kvm_access().read_write {
        return Some("/dev/kvm is not usable here; `pyro doctor` says why".into());
    }
    None
}

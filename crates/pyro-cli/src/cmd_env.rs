//! `pyro env list|pull|inspect|prune`.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::environments::{self, EnvStatus};

use crate::output::{self, BOLD, DIM, Failure, GREEN, Progress};

pub fn list(paths: &Paths, json: bool) -> Result<ExitCode, Failure> {
    let catalog = environments::catalog(paths);
    if json {
        output::json(&catalog);
        return Ok(ExitCode::SUCCESS);
    }
    output::out(format!("Catalog version: {}", catalog.catalog_version));
    let envs = &catalog.environments;
    let width = envs.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in envs {
        let state = if e.installed {
            format!("{GREEN}installed{GREEN:#}    ")
        } else {
            format!("{DIM}not installed{DIM:#}")
        };
        output::out(format!("{:width$}  {state}  {}", e.name, e.description));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(e: &EnvStatus) {
    output::out(format!("Environment: {BOLD}{}{BOLD:#}", e.name));
    output::out(format!("Version: {}", e.version));
    output::out(format!("Description: {}", e.description));
    output::out(format!(
        "Distribution: {} {}",
        e.distribution, e.distribution_version
    ));
    output::out(format!(
        "Default packages: {}",
        e.default_packages.join(", ")
    ));
    output::out(format!("Platform: {}", e.platform));
    output::out(format!("Source: {}", e.source));
    match (&e.status_reason, e.installed) {
        (_, true) => output::out("Installed: yes"),
        (Some(r), false) => output::out(format!("Installed: no ({r})")),
        (None, false) => output::out("Installed: no"),
    }
    output::out(format!("Cache dir: {}", e.cache_dir.display()));
    output::out(format!("Install dir: {}", e.install_dir.display()));
    if let Some(k) = &e.kernel_image {
        output::out(format!("Kernel image: {}", k.display()));
    }
    if let Some(r) = &e.rootfs_image {
        let size = e
            .rootfs_size_bytes
            .map(|b| format!(" ({} MiB)", b >> 20))
            .unwrap_or_default();
        output::out(format!("Base image: {}{size}", r.display()));
    }
}

pub fn inspect(paths: &Paths, name: &str, json: bool) -> Result<ExitCode, Failure> {
    let st = environments::status(paths, name)?;
    if json {
        output::json(&st);
    } else {
        print_status(&st);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pull(paths: &Paths, name: &str, json: bool) -> Result<ExitCode, Failure> {
    let progress = Progress::new("pull", json);
    let pulled = environments::pull(paths, name, &progress)?;
    progress.finish();
    if json {
        output::json(&pulled);
        return Ok(ExitCode::SUCCESS);
    }
    if pulled.actions.is_empty() {
        output::out(format!("Already installed: {name} (nothing to do)"));
    } else {
        output::out(format!("Pulled: {name} in {:.1} s", pulled.seconds));
        for a in &pulled.actions {
            output::out(format!("  - {a}"));
        }
    }
    print_status(&pulled.status);
    Ok(ExitCode::SUCCESS)
}

pub fn prune(paths: &Paths, json: bool) -> Result<ExitCode, Failure> {
    let pruned = environments::prune(paths)?;
    if json {
        output::json(&pruned);
        return Ok(ExitCode::SUCCESS);
    }
    let (n, deleted) = (pruned.count, pruned.deleted);
    output::out(format!(
        "Deleted {n} cached {}.",
        if n == 1 { "entry" } else { "entries" }
    ));
    for d in deleted {
        output::out(format!("- {}", d.display()));
    }
    Ok(ExitCode::SUCCESS)
}

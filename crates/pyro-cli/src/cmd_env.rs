//! `pyro env list|pull|inspect|prune`.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::environments::{self, EnvStatus};

use crate::cli::{EnvImportArgs, EnvPullArgs, EnvPushArgs, TemplateCmd};
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
        let size = e
            .size_bytes
            .map(|b| format!("{:>6} MiB", b >> 20))
            .unwrap_or_else(|| format!("{:>10}", ""));
        let what = if e.kind == "imported" || e.source.starts_with("registry") {
            format!(
                "{}  {DIM}({}){DIM:#}",
                output::shown(&e.description, false),
                output::shown(&e.source, false)
            )
        } else {
            output::shown(&e.description, false).into_owned()
        };
        output::out(format!(
            "{:width$}  {state}  {size}  {what}",
            output::shown(&e.name, false)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(e: &EnvStatus) {
    output::out(format!("Environment: {BOLD}{}{BOLD:#}", e.name));
    output::out(format!("Version: {}", output::shown(&e.version, false)));
    output::out(format!(
        "Description: {}",
        output::shown(&e.description, false)
    ));
    output::out(format!(
        "Distribution: {} {}",
        e.distribution, e.distribution_version
    ));
    output::out(format!(
        "Default packages: {}",
        e.default_packages.join(", ")
    ));
    output::out(format!("Platform: {}", e.platform));
    output::out(format!("Kind: {}", e.kind));
    output::out(format!("Source: {}", output::shown(&e.source, false)));
    if let Some(o) = &e.origin {
        output::out(format!(
            "Origin: {} {}",
            o.kind,
            output::shown(&o.reference, false)
        ));
        output::out(format!("Digest: {}", o.digest));
    }
    if let Some(i) = &e.image {
        if !i.env.is_empty() {
            output::out(format!(
                "Image env: {}",
                output::shown(&i.env.join(" "), false)
            ));
        }
        if let Some(w) = &i.working_dir {
            output::out(format!("Image working dir: {}", output::shown(w, false)));
        }
        if let Some(u) = &i.user {
            output::out(format!(
                "Image user: {} (uid {}, gid {})",
                output::shown(u, false),
                i.uid.unwrap_or(0),
                i.gid.unwrap_or(0)
            ));
        }
    }
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

pub async fn pull(paths: &Paths, a: EnvPullArgs) -> Result<ExitCode, Failure> {
    let (name, json) = (a.environment.as_str(), a.json);
    let progress = Progress::new("pull", json);
    let pulled = environments::pull_with_template(
        paths,
        name,
        a.registry.as_deref(),
        a.no_template,
        &progress,
    )
    .await;
    progress.finish();
    let pulled = pulled?;
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
    if let Some(t) = &pulled.template {
        print_template_step(t, name);
    }
    Ok(ExitCode::SUCCESS)
}

/// The template line after a pull or an import.
fn print_template_step(t: &environments::TemplateStep, name: &str) {
    let what = t.name.as_deref().unwrap_or(name);
    match &t.reason {
        None => output::out(format!("Template: {what} ({})", t.outcome)),
        Some(why) => output::out(format!("Template: {} ({why})", t.outcome)),
    }
}

pub async fn push(paths: &Paths, a: EnvPushArgs) -> Result<ExitCode, Failure> {
    let progress = Progress::new("push", a.json);
    let pushed = environments::push(paths, &a.environment, &a.reference, &progress).await;
    progress.finish();
    let pushed = pushed?;
    if a.json {
        output::json(&pushed);
    } else {
        output::out(format!(
            "Pushed: {} to {} in {:.1} s ({} MiB compressed)",
            pushed.name,
            pushed.reference,
            pushed.seconds,
            pushed.bytes >> 20
        ));
        output::out(format!("Digest: {}", pushed.digest));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn import(paths: &Paths, a: EnvImportArgs) -> Result<ExitCode, Failure> {
    let progress = Progress::new("import", a.json);
    let r = environments::import_with_template(paths, &a.image, &a.name, a.no_template, &progress)
        .await;
    progress.finish();
    let (imported, template) = r?;
    if a.json {
        let mut v = serde_json::to_value(&imported).unwrap_or_default();
        v["template"] = serde_json::to_value(&template).unwrap_or_default();
        output::json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    output::out(format!(
        "Imported: {BOLD}{}{BOLD:#} from {} in {:.1} s",
        imported.name, imported.source, imported.seconds
    ));
    output::out(format!("Digest: {}", imported.digest));
    output::out(format!(
        "Layers: {} ({} entries, {} MiB; {} whiteouts honoured, {} device nodes dropped)",
        imported.layers,
        imported.entries,
        imported.bytes >> 20,
        imported.whiteouts,
        imported.dropped_special
    ));
    print_template_step(&template, &imported.name);
    Ok(ExitCode::SUCCESS)
}

pub async fn template(paths: &Paths, c: TemplateCmd) -> (bool, Result<ExitCode, Failure>) {
    match c {
        TemplateCmd::Build(a) => {
            let progress = Progress::new("template", a.json);
            let shape = pyro_core::template::Shape {
                vcpu_count: a.vcpu_count,
                mem_mib: a.mem_mib,
                disk_mib: a.disk_mib,
            };
            let r = environments::build_template(paths, &a.environment, shape, a.force, &progress)
                .await;
            progress.finish();
            let r = r.map_err(Failure::from).map(|t| {
                if a.json {
                    output::json(&t);
                } else {
                    let took = if t.outcome == "built" {
                        format!(" in {:.1} s", t.build_ms as f64 / 1000.0)
                    } else {
                        " (already current)".into()
                    };
                    output::out(format!("Template: {BOLD}{}{BOLD:#}{took}", t.name));
                    output::out(format!("Memory: {} MiB", t.mem_bytes >> 20));
                }
                ExitCode::SUCCESS
            });
            (a.json, r)
        }
        TemplateCmd::List(a) => {
            let r = environments::list_templates(paths)
                .map_err(Failure::from)
                .map(|list| {
                    if a.json {
                        output::json(&list);
                    } else if list.is_empty() {
                        output::out("No templates yet (`pyro env pull` builds one).");
                    } else {
                        for t in &list {
                            let why = t
                                .status_reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default();
                            output::out(format!(
                                "{}  {}{why}  {} MiB on disk",
                                t.name,
                                t.status,
                                t.disk_usage_bytes >> 20
                            ));
                        }
                    }
                    ExitCode::SUCCESS
                });
            (a.json, r)
        }
        TemplateCmd::Prune(a) => {
            let r = environments::prune_templates(paths, a.all)
                .map_err(Failure::from)
                .map(|gone| {
                    if a.json {
                        output::json(&serde_json::json!({"deleted": gone, "count": gone.len()}));
                    } else {
                        output::out(format!("Deleted {} template(s).", gone.len()));
                        for g in gone {
                            output::out(format!("- {g}"));
                        }
                    }
                    ExitCode::SUCCESS
                });
            (a.json, r)
        }
    }
}

pub fn prune(paths: &Paths, json: bool) -> Result<ExitCode, Failure> {
    let pruned = environments::prune(paths)?;
    if json {
        output::json(&pruned);
        return Ok(ExitCode::SUCCESS);
    }
    let (n, deleted, templates) = (pruned.count, pruned.deleted, pruned.templates);
    output::out(format!(
        "Deleted {n} cached {}.",
        if n == 1 { "entry" } else { "entries" }
    ));
    for d in deleted {
        output::out(format!("- {}", d.display()));
    }
    for t in templates {
        output::out(format!("- template {t}"));
    }
    Ok(ExitCode::SUCCESS)
}

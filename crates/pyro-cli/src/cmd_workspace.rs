//! `pyro workspace ...`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use pyro_core::workspace::{CreateRequest, ExecOptions, SeedMode, SeedSource, View, Workspaces};
use pyro_core::{BackendKind, Paths};

use crate::cli::{SeedModeArg, WorkspaceCmd, WsFileCmd, WsPatchCmd, WsSyncCmd};
use crate::output::{self, BOLD, DIM, EXIT_RUN_FAILURE, EXIT_USAGE, Failure, Progress, YELLOW};

pub use crate::output::utc;

/// Parses repeated `KEY=VALUE` flags.
pub fn pairs(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for it in items {
        let (k, v) = it
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| Failure::usage(format!("{flag} takes KEY=VALUE, got {it:?}")))?;
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

pub fn ws(paths: &Paths) -> Workspaces {
    Workspaces::new(paths.clone())
}

pub fn print_view(header: &str, v: &View) {
    output::out(format!("{header}: {BOLD}{}{BOLD:#}", v.workspace_id));
    if let Some(n) = &v.name {
        output::out(format!("Name: {n}"));
    }
    if !v.labels.is_empty() {
        let l: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        output::out(format!("Labels: {}", l.join(", ")));
    }
    output::out(format!(
        "Environment: {} ({})",
        v.environment, v.environment_version
    ));
    let reason = v
        .state_reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    output::out(format!("State: {}{reason}", v.state));
    output::out(format!(
        "Execution mode: {} ({})",
        v.execution_mode.as_str(),
        v.backend
    ));
    if let Some(f) = &v.fallback_reason {
        output::out(format!("Fallback reason: {f}"));
    }
    if let (Some(mode), Some(reason)) = (v.boot_mode, &v.boot_reason) {
        output::out(format!("Boot: {} ({reason})", mode.as_str()));
    }
    output::out(format!(
        "Network: {}{}",
        crate::cmd_network::describe(&v.network),
        match v.network_denials {
            0 => String::new(),
            n => format!(
                " ({n} refused; see `pyro workspace network log {}`)",
                v.workspace_id
            ),
        }
    ));
    output::out(format!("Workspace: {}", v.workspace_path));
    if !v.secrets.is_empty() {
        output::out(format!("Secrets: {}", v.secrets.join(", ")));
    }
    if let Some(f) = &v.forked_from {
        let at = f
            .snapshot_name
            .as_deref()
            .map(|s| format!(" (snapshot {s})"))
            .unwrap_or_default();
        output::out(format!("Forked from: {}{at}", f.workspace_id));
    }
    output::out(format!(
        "Resources: {} vCPU / {} MiB / {} MiB disk",
        v.vcpu_count, v.mem_mib, v.disk_mib
    ));
    crate::status_limits::print(&v.protections);
    match v.expires_at {
        Some(e) => output::out(format!(
            "Idle TTL: {} s (stops at {} unless used)",
            v.ttl_seconds,
            utc(e)
        )),
        None => output::out(format!("Idle TTL: {} s", v.ttl_seconds)),
    }
    if let Some(d) = v.delete_after {
        output::out(format!(
            "{YELLOW}Deleted after: {}{YELLOW:#} (unless started again)",
            utc(d)
        ));
    }
    let s = &v.workspace_seed;
    match &s.source_path {
        Some(p) => output::out(format!(
            "Seed: {} {} ({}, {} entries, {} bytes)",
            s.mode,
            p.display(),
            s.seed_mode,
            s.entry_count,
            s.bytes_written
        )),
        None => output::out("Seed: empty"),
    }
    match &v.last_command {
        Some(c) => output::out(format!(
            "Commands: {} (last #{}: {} -> exit {})",
            v.command_count, c.sequence, c.command, c.exit_code
        )),
        None => output::out(format!("Commands: {}", v.command_count)),
    }
    if v.reset_count > 0 {
        output::out(format!(
            "Resets: {} (last {})",
            v.reset_count,
            v.last_reset_at.map(utc).unwrap_or_default()
        ));
    }
    if let Some(n) = v.shell_count {
        output::out(format!("Shells: {n} open"));
    }
    if let Some(n) = v.service_count {
        let running = v
            .running_service_count
            .map_or_else(|| "?".to_owned(), |r| r.to_string());
        output::out(format!("Services: {running}/{n} running"));
    }
    for s in &v.services_restarted {
        let line = format!(
            "Service restarted: {} {}{}",
            s.service_name,
            s.state,
            s.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        output::out(output::shown(&line, false));
    }
    output::out(format!("Last activity: {}", utc(v.last_activity_at)));
    if let Some(e) = &v.last_error {
        output::out(format!(
            "Last error: {}",
            e.lines().next().unwrap_or_default()
        ));
    }
}

pub fn emit<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(),
) -> Result<ExitCode, Failure> {
    if json {
        output::json(value);
    } else {
        human();
    }
    Ok(ExitCode::SUCCESS)
}

fn read_text(path: &std::path::Path, flag: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::usage(format!("{flag}: cannot read {}: {e}", path.display())))
}

fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| Failure {
            code: 1,
            kind: "io",
            message: format!("reading standard input: {e}"),
        })?;
    Ok(buf)
}

/// Runs one `pyro workspace` command. Returns the `--json` flag with the
/// outcome (for error rendering).
pub async fn run(paths: &Paths, cmd: WorkspaceCmd) -> (bool, Result<ExitCode, Failure>) {
    match cmd {
        WorkspaceCmd::Create(a) => (a.json, create(paths, a).await),
        WorkspaceCmd::List(a) => (a.json, list(paths, a.json).await),
        WorkspaceCmd::Update(a) => (a.json, update(paths, a).await),
        WorkspaceCmd::Status(a) => {
            let r = ws(paths)
                .status(&a.workspace_id)
                .await
                .map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| emit(a.json, &v, || print_view("Workspace", &v))),
            )
        }
        WorkspaceCmd::Sync(WsSyncCmd::Push(a)) => {
            let r = ws(paths)
                .sync_push(&a.workspace_id, &a.source_path, Some(&a.dest))
                .await
                .map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| {
                    emit(a.json, &v, || {
                        output::out(format!(
                            "Pushed {} {} to {} ({} entries, {} bytes)",
                            v.mode,
                            v.source_path.display(),
                            v.destination,
                            v.entry_count,
                            v.bytes_written
                        ))
                    })
                }),
            )
        }
        WorkspaceCmd::Exec(a) => (a.json, exec(paths, a).await),
        WorkspaceCmd::ExecWait(a) => (a.json, exec_wait(paths, a).await),
        WorkspaceCmd::ExecCancel(a) => (a.json, exec_cancel(paths, a).await),
        WorkspaceCmd::Logs(a) => (a.json, logs(paths, a).await),
        WorkspaceCmd::File(WsFileCmd::List(a)) => (a.json, file_list(paths, a).await),
        WorkspaceCmd::File(WsFileCmd::Read(a)) => (a.json, file_read(paths, a).await),
        WorkspaceCmd::File(WsFileCmd::Write(a)) => (a.json, file_write(paths, a).await),
        WorkspaceCmd::Patch(WsPatchCmd::Apply(a)) => (a.json, patch(paths, a).await),
        WorkspaceCmd::Diff(a) => (a.json, diff(paths, a).await),
        WorkspaceCmd::Export(a) => {
            let r = ws(paths)
                .export(&a.workspace_id, &a.path, &a.output)
                .await
                .map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| {
                    emit(a.json, &v, || {
                        output::out(format!(
                            "Exported {} to {} ({:?}, {} entries, {} bytes)",
                            v.workspace_path,
                            v.output_path.display(),
                            v.kind,
                            v.entry_count,
                            v.bytes_written
                        ))
                    })
                }),
            )
        }
        WorkspaceCmd::Reset(a) => {
            let p = Progress::new("reset", a.json);
            let r = ws(paths)
                .reset(&a.workspace_id, &a.snapshot, a.cold_boot, &p)
                .await;
            p.finish();
            let r = r.map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| {
                    emit(a.json, &v, || {
                        print_view("Reset workspace", &v.workspace);
                        let r = &v.workspace_reset;
                        output::out(format!(
                            "Reset to: {} ({}); cleared: {}",
                            r.snapshot_name,
                            if r.kind == pyro_core::workspace::SnapshotKind::Baseline {
                                "baseline"
                            } else {
                                "named snapshot"
                            },
                            r.cleared.join(", ")
                        ));
                    })
                }),
            )
        }
        WorkspaceCmd::Snapshot(c) => crate::cmd_snapshot::snapshot(paths, c).await,
        WorkspaceCmd::Fork(a) => (a.json, crate::cmd_snapshot::fork(paths, a).await),
        WorkspaceCmd::Disk(c) => crate::cmd_snapshot::disk(paths, c).await,
        WorkspaceCmd::Shell(c) => crate::cmd_shell::shell(paths, c).await,
        WorkspaceCmd::Service(c) => crate::cmd_service::service(paths, c).await,
        WorkspaceCmd::Network(c) => crate::cmd_network::network(paths, c).await,
        WorkspaceCmd::Stop(a) => {
            let r = ws(paths).stop(&a.workspace_id).await.map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| emit(a.json, &v, || print_view("Stopped workspace", &v))),
            )
        }
        WorkspaceCmd::Start(a) => {
            let p = Progress::new("start", a.json);
            let r = ws(paths).start(&a.workspace_id, a.cold_boot, &p).await;
            p.finish();
            let r = r.map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| emit(a.json, &v, || print_view("Started workspace", &v))),
            )
        }
        WorkspaceCmd::Delete(a) => {
            let r = ws(paths)
                .delete(&a.workspace_id)
                .await
                .map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| {
                    emit(a.json, &v, || {
                        output::out(format!("Deleted workspace {}", v.workspace_id))
                    })
                }),
            )
        }
    }
}

async fn create(paths: &Paths, a: crate::cli::WsCreateArgs) -> Result<ExitCode, Failure> {
    let backend = BackendKind::resolve(a.backend.map(Into::into))?;
    let labels = pairs("--label", &a.labels)?;
    // Checked before anything is pulled.
    let network = pyro_core::network::policy_from(
        a.network_policy.as_deref(),
        &a.allow.allow_hosts,
        &a.allow.allow_cidrs,
    )?;
    let env = crate::ensure_env(paths, &a.environment, a.json || a.id_only).await?;
    let mut req = CreateRequest::new(backend);
    req.name = a.name;
    req.labels = labels;
    req.seed = a.seed_path.map(|p| SeedSource {
        path: p,
        mode: match a.seed_mode {
            SeedModeArg::All => SeedMode::All,
            SeedModeArg::GitTracked => SeedMode::GitTracked,
        },
        origin: "seed_path",
    });
    req.vcpu_count = a.vcpu_count;
    req.mem_mib = a.mem_mib;
    req.disk_mib = a.disk_mib;
    req.ttl_seconds = a.ttl_seconds;
    req.allow_host_compat = a.allow_host_compat;
    req.cold_boot = a.cold_boot;
    req.network = network;
    req.secrets = a.secrets.specs()?;

    req.boot_timeout = a.boot_timeout_seconds.map(std::time::Duration::from_secs);
    let progress = Progress::new("create", a.json || a.id_only);
    let engine = ws(paths);
    let work = engine.create(&env, req, &progress);
    let v = tokio::select! {
        r = work => r?,
        code = crate::cmd_run::interrupted() => {
            progress.finish();
            output::err("interrupted: nothing of the workspace was kept");
            return Ok(ExitCode::from(code));
        }
    };
    progress.finish();
    if a.id_only {
        output::out(&v.workspace_id);
        return Ok(ExitCode::SUCCESS);
    }
    emit(a.json, &v, || print_view("Created workspace", &v))
}

async fn list(paths: &Paths, json: bool) -> Result<ExitCode, Failure> {
    let list = ws(paths).list().await?;
    if json {
        output::json(&list);
        return Ok(ExitCode::SUCCESS);
    }
    let all = list.workspaces;
    if all.is_empty() {
        output::out("No workspaces.");
        return Ok(ExitCode::SUCCESS);
    }
    output::out(format!(
        "{BOLD}{:<16}  {:<9}  {:<15}  {:<20}  {:<20}  {:<6}  {:<8}  NAME / LABELS{BOLD:#}",
        "ID", "STATE", "ENVIRONMENT", "LAST ACTIVITY", "STOPS AT", "SHELLS", "SERVICES"
    ));
    for v in &all {
        let mut tags: Vec<String> = v.name.iter().cloned().collect();
        tags.extend(v.labels.iter().map(|(k, v)| format!("{k}={v}")));
        let stops = v.expires_at.map(utc).unwrap_or_else(|| "-".into());
        let shells = v.shell_count.map_or_else(|| "-".into(), |n| n.to_string());
        let services = match (v.running_service_count, v.service_count) {
            (Some(r), Some(n)) => format!("{r}/{n}"),
            (None, Some(n)) => format!("?/{n}"),
            _ => "-".into(),
        };
        output::out(format!(
            "{:<16}  {:<9}  {:<15}  {:<20}  {:<20}  {:<6}  {:<8}  {}",
            v.workspace_id,
            v.state,
            v.environment,
            utc(v.last_activity_at),
            stops,
            shells,
            services,
            tags.join(" ")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

async fn update(paths: &Paths, a: crate::cli::WsUpdateArgs) -> Result<ExitCode, Failure> {
    let labels = pairs("--label", &a.labels)?;
    let v = ws(paths)
        .update(
            &a.workspace_id,
            a.name,
            a.clear_name,
            labels,
            a.clear_labels,
        )
        .await?;
    emit(a.json, &v, || print_view("Updated workspace", &v))
}

async fn exec(paths: &Paths, a: crate::cli::WsExecArgs) -> Result<ExitCode, Failure> {
    let command = crate::cmd_run::command_from_words(a.command);
    let env = pairs("--env", &a.env)?;
    let opts = ExecOptions {
        command,
        cwd: a.cwd,
        env,
        timeout_seconds: a.timeout_seconds,
        max_output_bytes: a.max_output_bytes,
        wait_seconds: if a.detach { Some(0) } else { a.wait_seconds },
        max_memory_mib: a.max_memory_mib,
        max_tasks: a.max_tasks,
        secret_env: a.secret_env.secret_env,
    };
    let background = opts.wait_seconds.is_some();
    let stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>> = if a.stdin {
        Some(Box::new(tokio::io::stdin()))
    } else {
        None
    };
    let mut stream = output::StdStreams;
    // In JSON mode the output comes with the result.
    let sink: &mut dyn pyro_core::sandbox::OutputSink = if a.json {
        &mut pyro_core::sandbox::Discard
    } else {
        &mut stream
    };
    let engine = ws(paths);
    let v = tokio::select! {
        r = engine.exec(&a.workspace_id, opts, stdin, sink) => r.map_err(|e| {
            let mut f = Failure::from(e);
            if f.code != EXIT_USAGE { f.code = EXIT_RUN_FAILURE; }
            f
        })?,
        code = crate::cmd_run::interrupted() => {
            output::err(if background {
                "interrupted: a command already started in the background may still run; \
                 `pyro workspace logs` shows it and `pyro workspace exec-cancel` stops it"
            } else {
                "interrupted: the command was killed"
            });
            return Ok(ExitCode::from(code));
        }
    };
    render_exec(&v, a.json)
}

/// Prints an exec result (the output itself was streamed, or is in the
/// JSON) and gives the command's exit status (0 while it still runs).
fn render_exec(v: &pyro_core::workspace::ExecView, json: bool) -> Result<ExitCode, Failure> {
    use pyro_core::workspace::ExecState;
    if json {
        output::json(v);
    } else if v.state == ExecState::Running {
        output::err(format!(
            "{DIM}[exec] workspace={} sequence={} state=running execution_mode={}{DIM:#}",
            v.workspace_id,
            v.sequence,
            v.execution_mode.as_str()
        ));
        output::err(format!(
            "It runs on in the background: `pyro workspace exec-wait {} {}` waits for it, \
             `pyro workspace exec-cancel {} {}` stops it.",
            v.workspace_id, v.sequence, v.workspace_id, v.sequence
        ));
    } else {
        output::err(format!(
            "{DIM}[exec] workspace={} sequence={} exit_code={} duration_ms={} execution_mode={}{DIM:#}",
            v.workspace_id,
            v.sequence,
            v.exit_code.unwrap_or_default(),
            v.duration_ms,
            v.execution_mode.as_str()
        ));
        if v.timed_out {
            output::err(format!(
                "{YELLOW}timed out:{YELLOW:#} the command ran longer than {} s; its process group was killed",
                v.timeout_seconds
            ));
        }
    }
    if let Some(l) = &v.limit {
        output::err(format!("{YELLOW}limit:{YELLOW:#} {}", l.message));
    }
    if v.redactions > 0 {
        output::err(format!(
            "{YELLOW}redacted:{YELLOW:#} {} secret value(s) in the output show as [redacted:NAME]",
            v.redactions
        ));
    }
    if let Some(e) = &v.log_error {
        output::err(format!("{YELLOW}note:{YELLOW:#} {e}"));
    }
    Ok(match v.exit_code {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::SUCCESS,
    })
}

async fn exec_wait(paths: &Paths, a: crate::cli::WsExecWaitArgs) -> Result<ExitCode, Failure> {
    let mut stream = output::StdStreams;
    let sink: &mut dyn pyro_core::sandbox::OutputSink = if a.json {
        &mut pyro_core::sandbox::Discard
    } else {
        &mut stream
    };
    let v = ws(paths)
        .exec_wait(
            &a.workspace_id,
            a.sequence,
            a.wait_seconds,
            a.max_output_bytes,
            sink,
        )
        .await
        .map_err(run_failure)?;
    render_exec(&v, a.json)
}

async fn exec_cancel(paths: &Paths, a: crate::cli::WsExecCancelArgs) -> Result<ExitCode, Failure> {
    let v = ws(paths)
        .exec_cancel(&a.workspace_id, a.sequence, a.max_output_bytes)
        .await
        .map_err(run_failure)?;
    if !a.json {
        use std::io::Write;
        let _ = std::io::stdout().write_all(v.stdout.as_bytes());
        let _ = std::io::stderr().write_all(v.stderr.as_bytes());
    }
    render_exec(&v, a.json)
}

fn run_failure(e: pyro_core::CoreError) -> Failure {
    let mut f = Failure::from(e);
    if f.code != EXIT_USAGE {
        f.code = EXIT_RUN_FAILURE;
    }
    f
}

async fn logs(paths: &Paths, a: crate::cli::WsLogsArgs) -> Result<ExitCode, Failure> {
    let (id, json) = (a.workspace_id.as_str(), a.json);
    let query = pyro_core::workspace::LogsQuery {
        tail: a.tail,
        sequence: a.sequence,
        max_output_bytes: a.max_output_bytes,
    };
    let logs = ws(paths).logs(id, query).await?;
    if json {
        output::json(&logs);
        return Ok(ExitCode::SUCCESS);
    }
    let (count, entries) = (logs.count, logs.entries);
    if entries.is_empty() {
        output::out("No commands logged (since creation or the last reset).");
    }
    if entries.len() < count && a.sequence.is_none() {
        output::err(format!(
            "Showing the last {} of {count} commands; raise --tail or pick one with --sequence.",
            entries.len()
        ));
    }
    for e in &entries {
        let ended = match e.exit_code {
            Some(code) => format!("exit_code={code}"),
            None => format!("{:?}", e.state).to_lowercase(),
        };
        output::out(format!(
            "{BOLD}#{} {ended} duration_ms={} cwd={}{BOLD:#}",
            e.sequence, e.duration_ms, e.cwd
        ));
        output::out(format!("$ {}", e.command));
        for (what, n) in [
            ("stdout", e.stdout_omitted_bytes),
            ("stderr", e.stderr_omitted_bytes),
        ] {
            if n > 0 {
                output::err(format!(
                    "({n} earlier bytes of {what} not shown; raise --max-output-bytes)"
                ));
            }
        }
        let _ = std::io::stdout().write_all(e.stdout.as_bytes());
        let _ = std::io::stderr().write_all(e.stderr.as_bytes());
        if let Some(err) = e.error.as_deref().or(e.log_error.as_deref()) {
            output::err(format!("({err})"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn file_list(paths: &Paths, a: crate::cli::WsFileListArgs) -> Result<ExitCode, Failure> {
    let l = ws(paths)
        .file_list(&a.workspace_id, &a.path, a.recursive, a.max_entries)
        .await?;
    render_listing(l, a.json)
}

/// Prints a listing (`file list`, `disk list`).
pub fn render_listing(
    l: pyro_core::workspace::FileListView,
    json: bool,
) -> Result<ExitCode, Failure> {
    if json {
        output::json(&l);
        return Ok(ExitCode::SUCCESS);
    }
    if l.entries.is_empty() {
        output::out(format!("{} is empty.", l.path));
    }
    if l.truncated {
        output::err(format!(
            "Showing {} of {} entries; raise --max-entries or list a subdirectory.",
            l.entries.len(),
            l.total
        ));
    }
    for e in l.entries {
        let link = e
            .link_target
            .map(|t| format!(" -> {}", output::shown(&t, false)))
            .unwrap_or_default();
        let kind = format!("{:?}", e.kind).to_lowercase();
        output::out(format!(
            "{:04o} {:>9} {:<9} {}{link}",
            e.mode,
            e.size,
            kind,
            output::shown(&e.path, false)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

async fn file_read(paths: &Paths, a: crate::cli::WsFileReadArgs) -> Result<ExitCode, Failure> {
    let read = ws(paths)
        .file_read(&a.workspace_id, &a.path, a.max_bytes)
        .await?;
    render_read(read, a.json)
}

/// Prints a file read (`file read`, `disk read`): the bytes, or the JSON
/// document.
pub fn render_read(read: pyro_core::workspace::FileRead, json: bool) -> Result<ExitCode, Failure> {
    if json {
        output::json(&read.into_view());
    } else {
        let _ = std::io::stdout().write_all(&read.data);
    }
    Ok(ExitCode::SUCCESS)
}

async fn file_write(paths: &Paths, a: crate::cli::WsFileWriteArgs) -> Result<ExitCode, Failure> {
    let data = match (&a.text, &a.text_file) {
        (Some(t), _) => t.as_bytes().to_vec(),
        (None, Some(f)) => read_text(f, "--text-file")?,
        (None, None) => read_stdin()?,
    };
    let v = ws(paths)
        .file_write(&a.workspace_id, &a.path, &data, a.max_bytes)
        .await?;
    emit(a.json, &v, || {
        output::out(format!(
            "Wrote {} bytes to {} (mode {}, {})",
            v.bytes_written,
            v.path,
            v.mode,
            if v.created { "created" } else { "replaced" }
        ))
    })
}

async fn patch(paths: &Paths, a: crate::cli::WsPatchArgs) -> Result<ExitCode, Failure> {
    let data = match (&a.patch, &a.patch_file) {
        (Some(t), _) => t.as_bytes().to_vec(),
        (None, Some(f)) => read_text(f, "--patch-file")?,
        (None, None) => read_stdin()?,
    };
    let text =
        String::from_utf8(data).map_err(|_| Failure::usage("the patch is not UTF-8 text"))?;
    let v = ws(paths).patch_apply(&a.workspace_id, &text).await?;
    emit(a.json, &v, || {
        let files = &v.files;
        {
            for f in files {
                let from = f
                    .from
                    .as_ref()
                    .map(|p| format!(" (from {p})"))
                    .unwrap_or_default();
                output::out(format!("{:<9} {}{from}", f.status, f.path));
            }
            output::out(format!(
                "Applied the patch: {} file(s) changed.",
                files.len()
            ));
        }
    })
}

async fn diff(paths: &Paths, a: crate::cli::WsDiffArgs) -> Result<ExitCode, Failure> {
    let (id, json) = (a.workspace_id.as_str(), a.json);
    // JSON carries the patch and entries inline; on a terminal the whole
    // patch streams from the spool file, so keep little in memory.
    let limits = if json {
        pyro_core::workspace::DiffLimits {
            max_entries: a.max_entries,
            max_patch_bytes: a.max_patch_bytes,
        }
    } else {
        pyro_core::workspace::DiffLimits {
            max_entries: 1,
            max_patch_bytes: 1,
        }
    };
    let d = ws(paths).diff(id, limits).await?;
    if json {
        output::json(&d);
        return Ok(ExitCode::SUCCESS);
    }
    if !d.changed {
        output::err("No changes since the baseline.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut stdout = std::io::stdout().lock();
    match d.write_patch(&mut stdout).and_then(|()| stdout.flush()) {
        // A reader that stopped early (`| head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(pyro_core::CoreError::io("writing the patch", e).into());
        }
        _ => {}
    }
    let counts: Vec<String> = d.summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
    output::err(format!(
        "{DIM}[diff] workspace={id} {} bytes_fetched={}{DIM:#}",
        counts.join(" "),
        d.bytes_fetched
    ));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;

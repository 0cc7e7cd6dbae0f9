//! `pyro workspace service ...`: long-running processes in a workspace.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::workspace::{LogsRange, ReadinessChoice, ServiceOptions, ServiceView};

use crate::cli::WsServiceCmd;
use crate::cmd_run::command_from_words;
use crate::cmd_workspace::{emit, pairs, ws};
use crate::output::{self, DIM, Failure, Progress};

fn line(what: &str, v: &ServiceView) -> String {
    let mut s = format!(
        "{DIM}[service-{what}] workspace={} service={} state={} cwd={}",
        v.workspace_id, v.service_name, v.state, v.cwd
    );
    if let Some(p) = v.pid {
        s.push_str(&format!(" pid={p}"));
    }
    if let Some(c) = v.exit_code {
        s.push_str(&format!(" exit_code={c}"));
    }
    if let Some(r) = &v.reason {
        s.push_str(&format!(" reason={}", output::shown(r, false)));
    }
    for p in &v.published_ports {
        s.push_str(&format!(
            " published={}:{}->{}",
            p.host_address, p.host_port, p.guest_port
        ));
    }
    if let (Some(r), "starting" | "failed") = (&v.last_probe_error, v.state.as_str()) {
        s.push_str(&format!(" last_check={}", output::shown(r, false)));
    }
    s.push_str(&format!("{DIM:#}"));
    s
}

/// Exit 1 when a service the command meant to run is not running.
fn exit_for(v: &ServiceView) -> ExitCode {
    if v.running() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs one `pyro workspace service` command; returns the `--json` flag
/// with the outcome.
pub async fn service(paths: &Paths, cmd: WsServiceCmd) -> (bool, Result<ExitCode, Failure>) {
    let engine = ws(paths);
    match cmd {
        WsServiceCmd::Start(a) => {
            let r = async {
                let opts = ServiceOptions {
                    command: command_from_words(a.command),
                    cwd: a.cwd,
                    env: pairs("--env", &a.env)?,
                    readiness: ReadinessChoice {
                        ready_file: a.ready_file,
                        ready_tcp: a.ready_tcp,
                        ready_http: a.ready_http,
                        ready_command: a.ready_command,
                    },
                    ready_timeout_seconds: a.ready_timeout_seconds,
                    ready_interval_ms: a.ready_interval_ms,
                    restart: a.restart,
                    keep_alive: a.keep_alive,
                    publish: a
                        .publish
                        .iter()
                        .map(|p| p.parse())
                        .collect::<Result<_, _>>()?,
                    secret_env: a.secret_env,
                };
                let p = Progress::new("service-start", a.json);
                let v = engine
                    .service_start(&a.workspace_id, &a.service_name, opts, &p)
                    .await?;
                p.finish();
                emit(a.json, &v, || output::err(line("start", &v)))?;
                Ok(exit_for(&v))
            }
            .await;
            (a.json, r)
        }
        WsServiceCmd::Status(a) => {
            let r = engine
                .service_status(&a.workspace_id, &a.service_name)
                .await
                .map_err(Failure::from)
                .and_then(|v| emit(a.json, &v, || output::err(line("status", &v))));
            (a.json, r)
        }
        WsServiceCmd::Stop(a) => {
            let r = engine
                .service_stop(&a.workspace_id, &a.service_name, a.grace_seconds)
                .await
                .map_err(Failure::from)
                .and_then(|v| emit(a.json, &v, || output::err(line("stop", &v))));
            (a.json, r)
        }
        WsServiceCmd::List(a) => {
            let r = engine
                .service_list(&a.workspace_id)
                .await
                .map_err(Failure::from)
                .and_then(|v| {
                    emit(a.json, &v, || {
                        if v.services.is_empty() {
                            output::out(format!("Workspace {} has no services.", v.workspace_id));
                        }
                        for s in &v.services {
                            let mut l = format!("{}  {:<8} {}", s.service_name, s.state, s.command);
                            if let Some(c) = s.exit_code {
                                l.push_str(&format!("  exit {c}"));
                            }
                            if let Some(r) = &s.reason {
                                l.push_str(&format!("  ({r})"));
                            }
                            output::out(output::shown(&l, false));
                        }
                    })
                });
            (a.json, r)
        }
        WsServiceCmd::Logs(a) => {
            let range = LogsRange::new(a.tail_lines, a.stdout_from, a.stderr_from);
            let r = engine
                .service_logs(&a.workspace_id, &a.service_name, range, a.max_bytes)
                .await
                .map_err(Failure::from)
                .and_then(|v| {
                    emit(a.json, &v, || {
                        use std::io::Write;
                        let _ = std::io::stdout().write_all(v.stdout.as_bytes());
                        let _ = std::io::stderr().write_all(v.stderr.as_bytes());
                        for (name, p) in [
                            ("stdout", &v.stdout_position),
                            ("stderr", &v.stderr_position),
                        ] {
                            if p.dropped_bytes > 0 {
                                output::err(format!(
                                    "note: {} bytes of {name} before offset {} had rotated away \
                                     (the guest keeps its last 2 to 4 MiB)",
                                    p.dropped_bytes, p.from
                                ));
                            }
                            if p.unsaved_bytes > 0 {
                                output::err(format!(
                                    "note: {} bytes of {name} could not be saved (the guest's \
                                     disk was full)",
                                    p.unsaved_bytes
                                ));
                            }
                        }
                        output::err(format!(
                            "{} stdout_next={} stderr_next={} truncated={}{DIM:#}",
                            line("logs", &v.service).trim_end_matches(&format!("{DIM:#}")),
                            v.stdout_position.next,
                            v.stderr_position.next,
                            v.truncated
                        ));
                    })
                });
            (a.json, r)
        }
    }
}

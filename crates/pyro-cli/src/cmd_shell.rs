//! `pyro workspace shell ...`: interactive shells in a workspace.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::workspace::{ShellOptions, ShellView};

use crate::cli::WsShellCmd;
use crate::cmd_workspace::{emit, pairs, ws};
use crate::output::{self, DIM, Failure};

fn line(what: &str, v: &ShellView) -> String {
    let mut s = format!(
        "{DIM}[shell-{what}] workspace={} shell={} state={} cwd={} cols={} rows={}",
        v.workspace_id, v.shell_id, v.state, v.cwd, v.cols, v.rows
    );
    if let Some(c) = v.exit_code {
        s.push_str(&format!(" exit_code={c}"));
    }
    if let Some(r) = &v.ended_reason {
        s.push_str(&format!(" ended: {r}"));
    }
    s.push_str(&format!("{DIM:#}"));
    s
}

/// Runs one `pyro workspace shell` command; returns the `--json` flag with
/// the outcome.
pub async fn shell(paths: &Paths, cmd: WsShellCmd) -> (bool, Result<ExitCode, Failure>) {
    let engine = ws(paths);
    match cmd {
        WsShellCmd::Open(a) => {
            let r = async {
                let opts = ShellOptions {
                    cwd: a.cwd,
                    cols: a.cols,
                    rows: a.rows,
                    env: pairs("--env", &a.env)?,
                    keep_alive: a.keep_alive,
                    secret_env: a.secret_env.secret_env,
                };
                let v = engine.shell_open(&a.workspace_id, opts).await?;
                if a.id_only {
                    output::out(&v.shell_id);
                    return Ok(ExitCode::SUCCESS);
                }
                emit(a.json, &v, || {
                    output::out(&v.shell_id);
                    output::err(line("open", &v));
                })
            }
            .await;
            (a.json, r)
        }
        WsShellCmd::Read(a) => {
            let r = engine
                .shell_read(
                    &a.workspace_id,
                    &a.shell_id,
                    a.cursor,
                    a.max_chars,
                    a.plain,
                    a.wait_for_idle_ms,
                )
                .await
                .map_err(Failure::from)
                .and_then(|v| {
                    emit(a.json, &v, || {
                        use std::io::Write;
                        let _ = std::io::stdout().write_all(v.output.as_bytes());
                        if v.plain && !v.output.is_empty() {
                            output::out("");
                        }
                        if v.dropped_bytes > 0 {
                            output::err(format!(
                                "note: {} bytes before cursor {} were dropped (the guest keeps \
                                 the last 1 MiB of a shell's output)",
                                v.dropped_bytes, v.cursor
                            ));
                        }
                        output::err(format!(
                            "{} cursor={} next_cursor={} truncated={}{DIM:#}",
                            line("read", &v.shell).trim_end_matches(&format!("{DIM:#}")),
                            v.cursor,
                            v.next_cursor,
                            v.truncated
                        ));
                    })
                });
            (a.json, r)
        }
        WsShellCmd::Write(a) => {
            let r = engine
                .shell_write(&a.workspace_id, &a.shell_id, &a.input, !a.no_newline)
                .await
                .map_err(Failure::from)
                .and_then(|v| emit(a.json, &v, || output::err(line("write", &v))));
            (a.json, r)
        }
        WsShellCmd::Signal(a) => {
            let r = engine
                .shell_signal(&a.workspace_id, &a.shell_id, &a.signal)
                .await
                .map_err(Failure::from)
                .and_then(|v| emit(a.json, &v, || output::err(line("signal", &v))));
            (a.json, r)
        }
        WsShellCmd::Resize(a) => {
            let r = engine
                .shell_resize(&a.workspace_id, &a.shell_id, a.cols, a.rows)
                .await
                .map_err(Failure::from)
                .and_then(|v| emit(a.json, &v, || output::err(line("resize", &v))));
            (a.json, r)
        }
        WsShellCmd::Close(a) => {
            let r = engine
                .shell_close(&a.workspace_id, &a.shell_id)
                .await
                .map_err(Failure::from)
                .and_then(|v| emit(a.json, &v, || output::err(line("close", &v.shell))));
            (a.json, r)
        }
        WsShellCmd::List(a) => {
            let r = engine
                .shell_list(&a.workspace_id)
                .await
                .map_err(Failure::from)
                .and_then(|v| {
                    emit(a.json, &v, || {
                        if v.shells.is_empty() {
                            output::out(format!("Workspace {} has no shells.", v.workspace_id));
                        }
                        for s in &v.shells {
                            let mut l = format!("{}  {:<8} {}", s.shell_id, s.state, s.cwd);
                            if let Some(c) = s.exit_code {
                                l.push_str(&format!("  exit {c}"));
                            }
                            if let Some(r) = &s.ended_reason {
                                l.push_str(&format!("  ({r})"));
                            }
                            output::out(l);
                        }
                    })
                });
            (a.json, r)
        }
    }
}

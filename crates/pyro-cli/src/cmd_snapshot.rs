//! `pyro workspace snapshot ...` and `pyro workspace fork`.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::workspace::{ForkRequest, SnapshotKind};

use crate::cli::{WsForkArgs, WsSnapshotCmd};
use crate::cmd_workspace::{emit, print_view, utc, ws};
use crate::output::{self, BOLD, Failure, Progress};

/// `1.5 MiB` from bytes.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Runs one `pyro workspace snapshot` command; returns the `--json` flag
/// with the outcome.
pub async fn snapshot(paths: &Paths, cmd: WsSnapshotCmd) -> (bool, Result<ExitCode, Failure>) {
    match cmd {
        WsSnapshotCmd::Create(a) => {
            let r = ws(paths)
                .snapshot_create(&a.workspace_id, &a.snapshot_name)
                .await
                .map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| {
                    emit(a.json, &v, || {
                        output::out(format!(
                            "Snapshot {} of workspace {}: {} on disk",
                            v.snapshot_name,
                            v.workspace_id,
                            size(v.size_bytes)
                        ))
                    })
                }),
            )
        }
        WsSnapshotCmd::List(a) => {
            let r = ws(paths)
                .snapshot_list(&a.workspace_id)
                .await
                .map_err(Failure::from);
            (
                a.json,
                r.and_then(|l| {
                    emit(a.json, &l, || {
                        output::out(format!(
                            "{BOLD}{:<20}  {:<8}  {:<20}  {:>10}  DELETABLE{BOLD:#}",
                            "NAME", "KIND", "CREATED", "ON DISK"
                        ));
                        for s in &l.snapshots {
                            output::out(format!(
                                "{:<20}  {:<8}  {:<20}  {:>10}  {}",
                                s.snapshot_name,
                                if s.kind == SnapshotKind::Baseline {
                                    "baseline"
                                } else {
                                    "named"
                                },
                                utc(s.created_at),
                                size(s.size_bytes),
                                if s.deletable { "yes" } else { "no" }
                            ));
                        }
                        output::err(format!(
                            "{} named snapshot(s) of at most {}.",
                            l.count - 1,
                            l.limit
                        ));
                    })
                }),
            )
        }
        WsSnapshotCmd::Delete(a) => {
            let r = ws(paths)
                .snapshot_delete(&a.workspace_id, &a.snapshot_name)
                .await
                .map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| {
                    emit(a.json, &v, || {
                        output::out(format!(
                            "Deleted snapshot {} of workspace {}",
                            v.snapshot_name, v.workspace_id
                        ))
                    })
                }),
            )
        }
    }
}

/// `pyro workspace fork`.
pub async fn fork(paths: &Paths, a: WsForkArgs) -> Result<ExitCode, Failure> {
    let req = ForkRequest {
        snapshot: a.snapshot,
        name: a.name,
        count: a.count,
    };
    let progress = Progress::new("fork", a.json || a.id_only);
    let engine = ws(paths);
    let work = engine.fork(&a.workspace_id, req, &progress);
    let v = tokio::select! {
        r = work => r,
        code = crate::cmd_run::interrupted() => {
            progress.finish();
            output::err("interrupted: no fork was kept");
            return Ok(ExitCode::from(code));
        }
    };
    progress.finish();
    let v = v?;
    if a.id_only {
        for w in &v.workspaces {
            output::out(&w.workspace_id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    emit(a.json, &v, || {
        for w in &v.workspaces {
            print_view("Forked workspace", w);
        }
    })
}

//! `pyro workspace snapshot ...`, `pyro workspace fork` and `pyro
//! workspace disk ...`: the workspace's disk as a whole.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::workspace::{ForkRequest, SnapshotKind};

use crate::cli::{DiskFormatArg, WsDiskCmd, WsForkArgs, WsSnapshotCmd};
use crate::cmd_workspace::{emit, print_view, render_listing, render_read, utc, ws};
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
                        ));
                        if !v.secrets_left_out.is_empty() {
                            output::out(format!(
                                "Not in the snapshot (secrets stay with the workspace): {}",
                                v.secrets_left_out.join(", ")
                            ));
                        }
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
        with_secrets: a.with_secrets,
    };
    let progress = Progress::new("fork", a.json || a.id_only);
    let engine = ws(paths);
    let work = engine.fork(&a.workspace_id, req, &progress);
    let v = tokio::select! {
        r = work => r,
        code = crate::cmd_run::interrupted() => {
            progress.finish();
            output::err(
                "interrupted: the forks are kept only if every one was made before the \
                 interrupt, else none is (see `pyro workspace list`)",
            );
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
        if !v.secrets_left_out.is_empty() {
            output::out(format!(
                "Secrets left out of the forks (--with-secrets copies them): {}",
                v.secrets_left_out.join(", ")
            ));
        }
    })
}

/// Runs one `pyro workspace disk` command; returns the `--json` flag with
/// the outcome.
pub async fn disk(paths: &Paths, cmd: WsDiskCmd) -> (bool, Result<ExitCode, Failure>) {
    match cmd {
        WsDiskCmd::List(a) => {
            let r = ws(paths)
                .disk_list(&a.workspace_id, &a.path, a.recursive, a.max_entries)
                .await
                .map_err(Failure::from);
            (a.json, r.and_then(|l| render_listing(l, a.json)))
        }
        WsDiskCmd::Read(a) => {
            let r = ws(paths)
                .disk_read(&a.workspace_id, &a.path, a.max_bytes)
                .await
                .map_err(Failure::from);
            (a.json, r.and_then(|d| render_read(d, a.json)))
        }
        WsDiskCmd::Export(a) => {
            let format = match a.format {
                DiskFormatArg::Tar => pyro_core::workspace::DiskFormat::Tar,
                DiskFormatArg::Ext4 => pyro_core::workspace::DiskFormat::Ext4,
            };
            let r = ws(paths)
                .disk_export(&a.workspace_id, &a.path, &a.output, format)
                .await
                .map_err(Failure::from);
            (
                a.json,
                r.and_then(|v| {
                    emit(a.json, &v, || {
                        output::out(format!(
                            "Exported {} of workspace {} to {} ({}, {} entries, {} bytes{})",
                            v.path,
                            v.workspace_id,
                            v.output_path.display(),
                            v.disk_format.as_str(),
                            v.entry_count,
                            v.bytes_written,
                            if v.skipped > 0 {
                                format!("; {} devices, FIFOs or sockets left out", v.skipped)
                            } else {
                                String::new()
                            }
                        ))
                    })
                }),
            )
        }
    }
}

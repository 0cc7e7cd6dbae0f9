//! Removing what killed or crashed pyro processes left behind: sandboxes
//! whose owner is gone, sandbox directories without a record, jails and
//! cgroups without a sandbox, Firecracker or host-compat processes that
//! belong to none of the live sandboxes, and the temp files of processes
//! that are gone ([`crate::scratch`]).
//!
//! Runs at the start of every pyro command (for `pyro mcp serve`, once when
//! it starts). Workspaces are brought up to date first, each under its own
//! lock; the sandbox pass then runs under the lock that guards sandbox
//! creation, so it never races a sandbox being set up.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pyro_vmm::cgroup;
use pyro_vmm::process::ProcessId;

use crate::Paths;
use crate::records::VmRecord;
use crate::sandbox::teardown;

/// What a sweep did. Every line is a whole sentence (without the final
/// full stop) that says what happened and why, ready to show as it is.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Workspaces brought up to date (a VM that stopped itself at its idle
    /// deadline, say): news, not trouble.
    pub updated: Vec<String>,
    /// One line per thing cleaned up.
    pub removed: Vec<String>,
    /// Things that could not be cleaned up, with what to do.
    pub problems: Vec<String>,
}

/// Sweeps orphans under `paths`. Never fails; problems are reported.
pub fn sweep(paths: &Paths) -> SweepReport {
    let mut report = SweepReport::default();
    // Workspaces first: a dead VM turns its workspace stopped (keeping the
    // disk), half-created or long-expired workspaces go.
    let (updated, removed) = crate::workspace::Workspaces::new(paths.clone()).sweep();
    report.updated = updated;
    report.removed = removed;
    let (removed, problems) = crate::scratch::sweep(paths);
    report.removed.extend(removed);
    report.problems.extend(problems);
    if !paths.vms_dir().exists() && !paths.jail_base().exists() {
        return report;
    }
    let Ok(_lock) = paths.lock("vms") else {
        report.problems.push(
            "Could not take the sandbox lock, so leftover sandboxes were not cleaned up this time; \
             the next pyro command tries again"
                .into(),
        );
        return report;
    };
    let mut live = HashSet::new();
    for id in VmRecord::list_ids(paths) {
        match VmRecord::load(paths, &id) {
            Some(rec) if !rec.owner.is_gone(paths, &id) => {
                live.insert(id);
            }
            Some(rec) => match teardown(paths, &rec) {
                Ok(()) => report.removed.push(format!(
                    "Removed sandbox {id} ({}): the pyro process that started it is gone",
                    rec.environment
                )),
                Err(e) => report.problems.push(format!(
                    "Could not remove sandbox {id}, whose pyro process is gone: {e}; the next pyro \
                     command tries again (run it as the user who created the sandbox)"
                )),
            },
            // (`try_exists`: a record that cannot even be looked at counts
            // as there, never as debris.)
            None if VmRecord::file(paths, &id).try_exists().unwrap_or(true) => {
                // A record this pyro cannot read: another pyro version's
                // layout, or damage. It may describe a running VM and disks
                // someone wants: leave all of it alone, and say so.
                live.insert(id.clone());
                report.problems.push(format!(
                    "Left sandbox {id} alone: its record {} was written by another pyro version \
                     or cannot be read; clean it up with the pyro that made it, or delete {} \
                     by hand",
                    VmRecord::file(paths, &id).display(),
                    paths.vm_dir(&id).display()
                ));
            }
            None => {
                // No record at all (creation writes it under this lock, so
                // this is debris): delete it. What still runs from it is not
                // live, so the process pass below kills it.
                let dir = paths.vm_dir(&id);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => report.removed.push(format!(
                        "Removed the directory of sandbox {id}, which had no record (its \
                         creation was interrupted)"
                    )),
                    Err(e) => report.problems.push(format!(
                        "Could not remove {}, a sandbox directory without a record: {e}; \
                         remove it by hand",
                        dir.display()
                    )),
                }
            }
        }
    }
    // Processes started from our state directory that no live sandbox owns.
    for (pid, id) in our_processes(paths) {
        if !live.contains(&id)
            && let Some(p) = ProcessId::of(pid)
        {
            if p.kill_and_wait(Duration::from_secs(5)) {
                report.removed.push(format!(
                    "Killed process {pid}, which was still running for the removed sandbox {id}"
                ));
            } else {
                report.problems.push(format!(
                    "Process {pid} of the removed sandbox {id} did not exit when killed; check \
                     it with `ps {pid}` and kill it by hand"
                ));
            }
        }
    }
    let jails = paths.jail_base().join("firecracker");
    if let Ok(rd) = std::fs::read_dir(&jails) {
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !live.contains(&id) {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => report.removed.push(format!(
                        "Removed the jail of sandbox {id}, which no longer exists"
                    )),
                    Err(err) => report.problems.push(format!(
                        "Could not remove the jail of sandbox {id}: {err}; remove {} by hand",
                        e.path().display()
                    )),
                }
            }
        }
    }
    let (removed, problems) = crate::sandbox::sweep_networks(paths, &live);
    report.removed.extend(removed);
    report.problems.extend(problems);
    let (root, parent) = (paths.cgroup_root(), paths.cgroup_parent());
    for id in cgroup::list_ids(root, &parent) {
        if !live.contains(&id) {
            match cgroup::remove(root, &parent, &id) {
                Ok(()) => report.removed.push(format!(
                    "Removed cgroup {parent}/{id}, whose sandbox no longer exists"
                )),
                Err(e) => report.problems.push(format!(
                    "Could not remove cgroup {parent}/{id}: {e}; a process may still be in \
                         it (see its cgroup.procs)"
                )),
            }
        }
    }
    report
}

/// Processes that belong to this state directory's sandboxes: jailed
/// Firecracker (in one of our cgroups, or chrooted under the jail base when
/// that is visible from here: the jailer's mount namespace usually hides
/// it), unjailed Firecracker and host-compat launchers (the socket they
/// serve, `--api-sock` or `--socket`, is under a sandbox directory; any
/// other process that merely names a file there, such as a `tail -f` of a
/// console log, is not ours). Returns (pid, sandbox id).
fn our_processes(paths: &Paths) -> Vec<(u32, String)> {
    let jail_root = paths.jail_base().join("firecracker");
    let vms = paths.vms_dir();
    let parent = paths.cgroup_parent();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    let me = std::process::id();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Some(id) = cgroup::vm_of_process(pid, &parent) {
            out.push((pid, id));
            continue;
        }
        if let Ok(root) = std::fs::read_link(e.path().join("root"))
            && let Some(id) = id_under(&root, &jail_root)
        {
            out.push((pid, id));
            continue;
        }
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline"))
            && let Some(id) = served_socket_id(&cmdline, &vms)
        {
            out.push((pid, id));
        }
    }
    out
}

/// The sandbox whose directory under `vms` holds the socket a command line
/// serves (the value of `--api-sock` or `--socket`).
fn served_socket_id(cmdline: &[u8], vms: &Path) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2).find_map(|w| {
        matches!(w[0], b"--api-sock" | b"--socket" | b"--network-dir")
            .then(|| PathBuf::from(String::from_utf8_lossy(w[1]).into_owned()))
            .and_then(|p| id_under(&p, vms))
    })
}

/// The first component of `path` below `base`, if `path` is under `base`.
fn id_under(path: &Path, base: &Path) -> Option<String> {
    let rest = path.strip_prefix(base).ok()?;
    rest.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests;

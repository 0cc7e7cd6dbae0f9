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
mod tests {
    use super::*;
    use crate::BackendKind;
    use crate::records::{Owner, VM_LAYOUT_VERSION};

    fn paths() -> (tempfile::TempDir, Paths) {
        let tmp = tempfile::tempdir().unwrap();
        let p = Paths::new(
            tmp.path().join("state"),
            pyro_env::Cache::new(tmp.path().join("cache")),
        )
        .with_cgroup_root(tmp.path().join("cgroup"));
        (tmp, p)
    }

    fn record(id: &str, owner: Owner, process: Option<ProcessId>) -> VmRecord {
        VmRecord {
            layout_version: VM_LAYOUT_VERSION,
            id: id.into(),
            backend: BackendKind::HostCompat,
            environment: "debian:12".into(),
            owner,
            created_at: 0.0,
            process,
            firecracker: None,
            jail_uid: None,
            console_keeper: None,
            cgroup_parent: None,
            agent_socket: None,
            network: None,
        }
    }

    #[test]
    #[allow(
        clippy::zombie_processes,
        reason = "the sweep kills and reaps the child"
    )]
    fn orphans_are_removed_and_live_sandboxes_kept() {
        let (_t, p) = paths();
        // An orphan: its owner is a process that no longer exists.
        let dead_owner = ProcessId {
            pid: std::process::id(),
            start_ticks: 1,
        };
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let orphan_proc = ProcessId::of(child.id()).unwrap();
        std::fs::create_dir_all(p.vm_dir("orphan")).unwrap();
        record(
            "orphan",
            Owner::Process {
                process: dead_owner,
            },
            Some(orphan_proc),
        )
        .save(&p)
        .unwrap();
        // A live sandbox owned by this test process.
        std::fs::create_dir_all(p.vm_dir("live")).unwrap();
        record("live", Owner::this_process(), None)
            .save(&p)
            .unwrap();
        // Debris: a directory without a record, and a jail without a sandbox.
        std::fs::create_dir_all(p.vm_dir("debris")).unwrap();
        std::fs::create_dir_all(p.jail_base().join("firecracker/ghost/root")).unwrap();
        // Its cgroups, and a live sandbox's, in a fake v1 hierarchy.
        let parent = p.cgroup_parent();
        for c in ["memory", "pids"] {
            std::fs::create_dir_all(p.cgroup_root().join(c).join(&parent).join("ghost")).unwrap();
            std::fs::create_dir_all(p.cgroup_root().join(c).join(&parent).join("live")).unwrap();
        }

        let report = sweep(&p);
        assert!(report.problems.is_empty(), "{report:?}");
        assert!(!orphan_proc.is_alive());
        assert!(!p.vm_dir("orphan").exists());
        assert!(!p.vm_dir("debris").exists());
        assert!(!p.jail_base().join("firecracker/ghost").exists());
        assert!(p.vm_dir("live").exists());
        assert_eq!(cgroup::list_ids(p.cgroup_root(), &parent), ["live"]);
        assert_eq!(report.removed.len(), 4, "{report:?}");
        assert!(
            report
                .removed
                .iter()
                .any(|l| l.starts_with("Removed sandbox orphan (")
                    && l.ends_with("the pyro process that started it is gone")),
            "{report:?}"
        );
        assert_eq!(sweep(&p).removed.len(), 0);
    }

    #[test]
    fn a_record_of_another_layout_version_is_reported_never_deleted() {
        let (_t, p) = paths();
        std::fs::create_dir_all(p.vm_dir("future")).unwrap();
        let mut rec = serde_json::to_value(record("future", Owner::this_process(), None)).unwrap();
        rec["layout_version"] = serde_json::json!(VM_LAYOUT_VERSION_NEXT);
        std::fs::write(VmRecord::file(&p, "future"), rec.to_string()).unwrap();
        std::fs::write(p.vm_dir("future").join("upper.ext4"), b"someone's disk").unwrap();
        std::fs::create_dir_all(p.jail_base().join("firecracker/future/root")).unwrap();
        let report = sweep(&p);
        assert!(p.vm_dir("future").join("upper.ext4").exists());
        assert!(p.jail_base().join("firecracker/future").exists());
        assert!(report.removed.is_empty(), "{report:?}");
        assert!(
            report
                .problems
                .iter()
                .any(|l| l.starts_with("Left sandbox future alone")),
            "{report:?}"
        );
    }

    const VM_LAYOUT_VERSION_NEXT: u32 = crate::records::VM_LAYOUT_VERSION + 1;

    #[test]
    fn id_under_finds_the_sandbox() {
        let base = Path::new("/s/vms");
        assert_eq!(
            id_under(Path::new("/s/vms/abc/api.sock"), base).as_deref(),
            Some("abc")
        );
        assert_eq!(id_under(Path::new("/other/abc"), base), None);
    }

    #[test]
    fn only_the_served_socket_makes_a_process_ours() {
        let vms = Path::new("/s/vms");
        let fc = b"firecracker\0--api-sock\0/s/vms/abc/api.sock\0";
        assert_eq!(served_socket_id(fc, vms).as_deref(), Some("abc"));
        let agent =
            b"pyro-agent\0host-compat\0--lower\0/c/rootfs\0--socket\0/s/vms/def/agent.sock\0";
        assert_eq!(served_socket_id(agent, vms).as_deref(), Some("def"));
        // Someone reading a sandbox's log is not part of the sandbox.
        let tail = b"tail\0-f\0/s/vms/abc/console.log\0";
        assert_eq!(served_socket_id(tail, vms), None);
    }
}

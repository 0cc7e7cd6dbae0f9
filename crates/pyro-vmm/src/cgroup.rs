//! cgroups: which version the host runs, and removing the groups the jailer
//! creates (`<root>/<controller>/<parent>/<id>` on v1, `<root>/<parent>/<id>`
//! on v2), which it leaves behind when the VM exits.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The controllers pyro limits.
pub const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The CPU quota's period, microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CgroupVersion {
    /// Separate hierarchies per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

impl CgroupVersion {
    /// The jailer's `--cgroup-version` value.
    pub fn as_arg(self) -> &'static str {
        match self {
            Self::V1 => "1",
            Self::V2 => "2",
        }
    }

    /// The settings that cap a group's CPU time at `millicores` thousandths
    /// of one CPU per period of 100 ms (`cpu.max` on v2, the CFS quota and
    /// period on v1).
    pub fn cpu_limit(self, millicores: u64) -> Vec<String> {
        let quota = millicores * CPU_PERIOD_US / 1000;
        match self {
            Self::V1 => vec![
                format!("cpu.cfs_period_us={CPU_PERIOD_US}"),
                format!("cpu.cfs_quota_us={quota}"),
            ],
            Self::V2 => vec![format!("cpu.max={quota} {CPU_PERIOD_US}")],
        }
    }

    /// The file that caps a group's memory.
    pub fn memory_limit_file(self) -> &'static str {
        match self {
            Self::V1 => "memory.limit_in_bytes",
            Self::V2 => "memory.max",
        }
    }
}

/// Detects the version and the available controllers among [`CONTROLLERS`].
pub fn detect(root: &Path) -> Option<(CgroupVersion, Vec<String>)> {
    if let Ok(list) = std::fs::read_to_string(root.join("cgroup.controllers")) {
        let have: Vec<String> = CONTROLLERS
            .iter()
            .filter(|c| list.split_whitespace().any(|x| x == **c))
            .map(|c| (*c).to_owned())
            .collect();
        return Some((CgroupVersion::V2, have));
    }
    let have: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| root.join(c).join("cgroup.procs").exists())
        .map(|c| (*c).to_owned())
        .collect();
    (!have.is_empty()).then_some((CgroupVersion::V1, have))
}

/// The parent directories that hold one group per VM.
fn parent_dirs(root: &Path, parent: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.join(parent)];
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let p = e.path().join(parent);
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// Ids that have a group under `parent` in any hierarchy.
pub fn list_ids(root: &Path, parent: &str) -> Vec<String> {
    let mut ids: Vec<String> = parent_dirs(root, parent)
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Removes the VM's groups in every hierarchy. A group can stay busy for a
/// moment after its last member was reaped, so busy groups are retried for
/// up to 5 s; fails naming the directory, the error and the processes still
/// in it when a group stays busy or cannot be removed at all.
pub fn remove(root: &Path, parent: &str, id: &str) -> Result<(), String> {
    let mut failed = Vec::new();
    for dir in parent_dirs(root, parent) {
        let group = dir.join(id);
        let mut tries = 0u32;
        while group.is_dir() {
            match std::fs::remove_dir(&group) {
                Ok(()) => {
                    if tries > 0 {
                        tracing::debug!("{} was busy for {} ms", group.display(), tries * 20);
                    }
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 250 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    // `cgroup.procs` exists in v1 and v2 (`tasks` only in v1).
                    let procs =
                        std::fs::read_to_string(group.join("cgroup.procs")).unwrap_or_default();
                    let procs: Vec<&str> = procs.split_whitespace().collect();
                    failed.push(format!(
                        "{}: {e} (processes: {})",
                        group.display(),
                        procs.join(" ")
                    ));
                    break;
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// The pyro VM id whose group under `parent` holds process `pid`, from
/// `/proc/<pid>/cgroup`.
pub fn vm_of_process(pid: u32, parent: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let rest = path
            .strip_prefix('/')?
            .strip_prefix(parent)?
            .strip_prefix('/')?;
        Some(rest.split('/').next()?.to_owned()).filter(|id| !id.is_empty())
    })
}

#[cfg(test)]
mod tests;

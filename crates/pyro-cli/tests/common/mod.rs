//! Helpers for end-to-end tests against the built `pyro` binary.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};

pub mod host_compat;
pub mod images;
pub mod netlab;
pub mod secrets;
pub mod words;

use assert_cmd::Command;

/// The built binary.
pub fn pyro_bin() -> PathBuf {
    PathBuf::from(assert_cmd::cargo::cargo_bin!("pyro"))
}

/// A private state directory (`PYRO_HOME`) for one test.
pub struct Home {
    pub dir: tempfile::TempDir,
}

/// A failing test's evidence from the guests it ran: the end of every
/// console and Firecracker log under its home, printed to stderr (control
/// characters escaped) before the home goes, since CI keeps only what the
/// test printed; then the sandboxes' processes are killed, so a failed test
/// leaves no guest running on for the tests after it.
impl Drop for Home {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        fn walk(dir: &Path, depth: usize, out: &mut Vec<std::path::PathBuf>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                    continue;
                };
                let name = e.file_name().to_string_lossy().into_owned();
                if m.is_dir() && depth < 6 {
                    walk(&e.path(), depth + 1, out);
                } else if m.is_file()
                    && (name.starts_with("console.log") || name == "firecracker.log")
                {
                    out.push(e.path());
                }
            }
        }
        let mut logs = Vec::new();
        walk(self.path(), 0, &mut logs);
        for log in logs {
            use std::io::{Read, Seek, SeekFrom};
            let mut tail = Vec::new();
            if let Ok(mut f) = std::fs::File::open(&log) {
                let _ = f
                    .seek(SeekFrom::End(-6000))
                    .or_else(|_| f.rewind().map(|()| 0));
                let _ = f.take(6000).read_to_end(&mut tail);
            }
            let text: String = String::from_utf8_lossy(&tail)
                .chars()
                .flat_map(|c| {
                    if c == '\n' || !c.is_control() {
                        vec![c]
                    } else {
                        c.escape_default().collect()
                    }
                })
                .collect();
            let report = format!(
                "--- the end of {} ---\n{text}\n--- end ---\n",
                log.display()
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
        }
        for vm in self.sandboxes_left() {
            let rec = self.path().join("vms").join(vm).join("vm.json");
            let Ok(rec) = std::fs::read(rec) else {
                continue;
            };
            let rec: serde_json::Value = serde_json::from_slice(&rec).unwrap_or_default();
            if let Some(pid) = rec["process"]["pid"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                && pid > 1
            {
                // SAFETY: plain kill(2) of the test's own sandbox process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("pyro-e2e-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A private cache in this home (`<home>/cache`) holding `dirs` of the
    /// shared one: hard links, or copies where the two are on different
    /// filesystems. A test that breaks a file in it renames first, so the
    /// shared cache's file stays; a failed build there holds no lock that
    /// another test waits on.
    pub fn private_cache(&self, dirs: &[&str]) -> PathBuf {
        let cache = self.path().join("cache");
        let shared = pyro_env::Cache::from_env().root().to_owned();
        std::fs::create_dir_all(&cache).unwrap();
        for d in dirs {
            let cp = |flags: &str| {
                std::process::Command::new("cp")
                    .arg(flags)
                    .arg(shared.join(d))
                    .arg(cache.join(d))
                    .status()
                    .unwrap()
                    .success()
            };
            if !cp("-al") {
                let _ = std::fs::remove_dir_all(cache.join(d));
                assert!(cp("-a"), "cp -a {d}");
            }
        }
        cache
    }

    /// `pyro` with this home, no colour, and no backend from the caller.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(pyro_bin());
        c.env("PYRO_HOME", self.path())
            .env("NO_COLOR", "1")
            .env_remove("PYRO_BACKEND")
            .env_remove("PYRO_FIRECRACKER_BIN")
            .env_remove("PYRO_JAILER_BIN")
            .env_remove("PYRO_LOG");
        c
    }

    /// Sandbox directories left in this home.
    pub fn sandboxes_left(&self) -> Vec<String> {
        std::fs::read_dir(self.path().join("vms"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Jails left in this home.
    pub fn jails_left(&self) -> Vec<String> {
        std::fs::read_dir(self.path().join("jail/firecracker"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Processes whose command line mentions this home, or that sit in one
    /// of its VMs' cgroups (jailed Firecracker).
    pub fn processes_left(&self) -> Vec<u32> {
        let home = self.path().to_string_lossy().into_owned();
        let parent =
            pyro_core::Paths::new(self.path(), pyro_env::Cache::from_env()).cgroup_parent();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let root = std::fs::read_link(e.path().join("root")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&home)
                || root.starts_with(self.path())
                || pyro_vmm::cgroup::vm_of_process(pid, &parent).is_some()
            {
                out.push(pid);
            }
        }
        out
    }

    /// [`Home::processes_left`] that still run (not zombies waiting for a
    /// parent to reap them).
    pub fn running_processes_left(&self) -> Vec<u32> {
        self.processes_left()
            .into_iter()
            .filter(|pid| pyro_vmm::process::ProcessId::of(*pid).is_some_and(|p| p.is_alive()))
            .collect()
    }

    /// cgroups the jailer created for this home's VMs.
    pub fn cgroups_left(&self) -> Vec<PathBuf> {
        let paths = pyro_core::Paths::new(self.path(), pyro_env::Cache::from_env());
        let parent = paths.cgroup_parent();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(rd) = std::fs::read_dir(e.path().join(&parent)) {
                out.extend(rd.flatten().filter(|g| g.path().is_dir()).map(|g| g.path()));
            }
        }
        out
    }

    /// Asserts that nothing of any sandbox is left.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.sandboxes_left(),
            Vec::<String>::new(),
            "sandbox directories left behind"
        );
        assert_eq!(self.jails_left(), Vec::<String>::new(), "jails left behind");
        assert_eq!(
            self.processes_left(),
            Vec::<u32>::new(),
            "processes left behind"
        );
        assert_eq!(
            self.cgroups_left(),
            Vec::<PathBuf>::new(),
            "cgroups left behind"
        );
    }
}

/// Asserts that the sandbox record `vm` (its `vm.json`) names a console
/// keeper that runs the pyro program in keeper mode, not a forked copy of
/// the pyro that started it.
pub fn assert_keeper_execs_pyro(vm: &serde_json::Value) {
    let keeper = vm["console_keeper"]["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{keeper}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("__pyro-console-keeper"),
        "{cmdline:?}"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{keeper}/exe")).unwrap(),
        std::fs::canonicalize(pyro_bin()).unwrap()
    );
}

/// Panics with instructions unless debian:12 is installed in the cache the
/// tests share (`make test` pulls it first).
pub fn require_debian12() -> pyro_env::Installed {
    let cache = pyro_env::Cache::from_env();
    let spec = pyro_env::catalog::lookup("debian:12").unwrap();
    pyro_env::install::installed(&cache, &pyro_env::EnvRef::Catalog(spec), None).unwrap_or_else(
        |e| {
            panic!(
                "{e}\nthese tests need debian:12 in {}: run `make test`, which pulls it first",
                cache.root().display()
            )
        },
    )
}

/// The repro-fix loop's project in `dir/repo`: `message.txt` says
/// `broken`, and the executable `check.sh` fails until it says `fixed`.
pub fn repro_seed(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let seed = dir.join("repo");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("message.txt"), "broken\n").unwrap();
    std::fs::write(
        seed.join("check.sh"),
        "#!/bin/sh\nif grep -qx fixed message.txt; then echo fixed; else echo broken >&2; exit 1; fi\n",
    )
    .unwrap();
    std::fs::set_permissions(
        seed.join("check.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    seed
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that the command succeeded, showing both streams if not.
pub fn ok(o: &std::process::Output) -> &std::process::Output {
    assert!(
        o.status.success(),
        "failed ({:?}): {}\n{}",
        o.status.code(),
        stderr(o),
        stdout(o)
    );
    o
}

/// The command's stdout as JSON.
pub fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

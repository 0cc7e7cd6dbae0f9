//! Limits on the commands the agent runs, inside the guest: every exec,
//! job, shell and service runs in a cgroup of its own under
//! `/sys/fs/cgroup/pyro` (cgroup v2), which caps the memory of all commands
//! together below the guest's (so the guest's OOM killer ends a hog, never
//! the agent) and the tasks of each command (so a fork bomb fails its
//! forks). After a command ends, its group's event counters say which limit
//! it hit.
//!
//! A command must be in its group before its program runs, or a child it
//! forks at once could start outside. `posix_spawn` cannot place a child in
//! a cgroup (and the agent does not fork: see `spawn`), so the agent moves
//! itself into the command's group for the spawn, which the child inherits,
//! and back to the root group after ([`Placed`]; spawns are serialized).
//! Measured on a PVM host, where every process creation costs about a
//! second, the two moves cost about 80 ms each; a trampoline (the agent
//! executing itself to join the group, then the program) cost a whole
//! extra process creation. Groups are made ahead of use on a thread of
//! their own, and an emptied group is reset and used again rather than
//! removed: making one costs about 140 ms of the guest's CPU and removing
//! it 60 ms, against two small writes to reset it. A reused group's event
//! counters start from where its last command left them, so each command
//! counts from a baseline read when it takes the group.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, mpsc};

use pyro_protocol::{
    AgentError, CommandLimits, ErrorKind, GUEST_TASKS_PER_COMMAND, GuestLimit, GuestUsage,
};

/// The cgroup v2 mount point.
const CGROUP_FS: &str = "/sys/fs/cgroup";

/// The parent of every command's group.
const PARENT: &str = "/sys/fs/cgroup/pyro";

/// Memory kept out of the commands' reach for the agent and the kernel,
/// MiB (at most a quarter of the guest's).
const RESERVE_MIB: u64 = 96;

/// Groups kept made ahead of use.
const POOL_SIZE: usize = 2;

/// Emptied groups kept for reuse beyond those; more are removed.
const POOL_MAX: usize = 8;

/// Sets the hierarchy up at boot (PID 1, before the server starts): mounts
/// cgroup v2, enables the memory and pids controllers, and caps the parent
/// group's memory. An error leaves commands unlimited (the agent then
/// reports no guest limits).
pub fn setup() -> Result<(), String> {
    let mounted = Path::new(CGROUP_FS).join("cgroup.controllers").exists();
    if !mounted {
        nix::mount::mount(
            Some("cgroup2"),
            CGROUP_FS,
            Some("cgroup2"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(|e| format!("mounting cgroup2 on {CGROUP_FS}: {e}"))?;
    }
    let write =
        |p: &str, v: &str| std::fs::write(p, v).map_err(|e| format!("writing {v:?} to {p}: {e}"));
    write(
        &format!("{CGROUP_FS}/cgroup.subtree_control"),
        "+memory +pids",
    )?;
    match std::fs::create_dir(PARENT) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating {PARENT}: {e}")),
    }
    let total = mem_total_mib().ok_or("reading MemTotal from /proc/meminfo")?;
    let cap = total.saturating_sub(RESERVE_MIB.min(total / 4));
    write(&format!("{PARENT}/memory.max"), &format!("{}", cap << 20))?;
    // No swap in a guest; stated so a kernel with swap keeps the cap.
    let _ = std::fs::write(format!("{PARENT}/memory.swap.max"), "0");
    write(&format!("{PARENT}/cgroup.subtree_control"), "+memory +pids")?;
    // The agent itself is never the OOM killer's pick (the server
    // inherits it; its commands do not: see `Placed::started`).
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    Ok(())
}

/// Starts making groups ahead of use (when limits are on).
pub fn prepare() {
    if active() {
        keeper(Job::Refill);
    }
}

/// Whether commands run under limits (the hierarchy was set up at boot).
pub fn active() -> bool {
    !STUCK.load(Ordering::Relaxed)
        && read_trim(&Path::new(PARENT).join("cgroup.subtree_control")).is_some_and(|c| {
            let on: Vec<&str> = c.split_whitespace().collect();
            on.contains(&"memory") && on.contains(&"pids")
        })
}

/// The memory all commands together may use, bytes, when limits are on.
pub fn memory_max() -> Option<u64> {
    read_trim(&Path::new(PARENT).join("memory.max"))?
        .parse()
        .ok()
}

fn mem_total_mib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

/// One command's group. Dropping it removes the group once it is empty; a
/// group still holding processes (a daemon the command left running) stays
/// until a later [`Group::create`] finds it empty.
#[derive(Debug)]
pub struct Group {
    path: PathBuf,
    /// Its task limit, set once the command has started.
    tasks: u64,
    /// Its OOM kills and refused forks when this command took it.
    baseline: (u64, u64),
}

impl Group {
    /// A group for one command, or `None` when limits are off or no group
    /// can be made. Takes one made ahead; the keeper thread makes the next.
    pub fn create() -> Option<Self> {
        if !active() {
            return None;
        }
        let ready = pool().pop();
        keeper(Job::Refill);
        let path = match ready {
            Some(p) => p,
            None => make_group()?,
        };
        let baseline = counters(&path);
        Some(Self {
            path,
            tasks: GUEST_TASKS_PER_COMMAND,
            baseline,
        })
    }

    /// A group for a command asking for `limits`: `Ok(None)` when it asks
    /// for none and the guest has no limits; an error when it asks for
    /// limits the guest cannot set.
    pub fn for_command(limits: &CommandLimits) -> Result<Option<Self>, AgentError> {
        let asked = limits.memory_max_bytes.is_some() || limits.tasks_max.is_some();
        let Some(mut g) = Self::create() else {
            return if asked {
                Err(AgentError::new(
                    ErrorKind::BadRequest,
                    "this guest cannot limit a command (its cgroup v2 memory and pids \
                     controllers could not be set up or used)"
                        .to_owned(),
                ))
            } else {
                Ok(None)
            };
        };
        let set = |file: &str, v: u64| {
            std::fs::write(g.path.join(file), v.to_string()).map_err(|e| {
                AgentError::new(ErrorKind::Io, format!("setting the command's {file}: {e}"))
            })
        };
        if let Some(m) = limits.memory_max_bytes {
            set("memory.max", m)?;
        }
        if let Some(t) = limits.tasks_max {
            g.tasks = t;
        }
        Ok(Some(g))
    }

    /// The file a process writes `0` to in order to join.
    fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Which limit the group's commands hit, if any: an OOM kill in it wins
    /// over a refused fork.
    pub fn hit(&self) -> Option<GuestLimit> {
        let (oom, forks) = counters(&self.path);
        if oom > self.baseline.0 {
            Some(GuestLimit::Memory)
        } else if forks > self.baseline.1 {
            Some(GuestLimit::Processes)
        } else {
            None
        }
    }

    /// Lets the group outlive this handle (a later [`Group::create`]
    /// removes it once it is empty).
    pub fn detach(mut self) {
        held().remove(&self.path);
        self.path = PathBuf::new();
    }

    /// Kills every process in the group (a timed-out command's daemons
    /// and the children a fork bomb left, wherever their sessions are).
    pub fn kill(&self) {
        if agent_inside(&self.path) {
            return;
        }
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            keeper(Job::Recycle(std::mem::take(&mut self.path)));
        }
    }
}

/// A group's OOM kills and refused forks so far.
fn counters(group: &Path) -> (u64, u64) {
    let count = |file: &str, key: &str| -> u64 {
        read_trim(&group.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        count("memory.events", "oom_kill "),
        count("pids.events", "max "),
    )
}

/// Whether `group` holds no process.
fn empty(group: &Path) -> bool {
    read_trim(&group.join("cgroup.events")).is_some_and(|ev| ev.lines().any(|l| l == "populated 0"))
}

/// Puts an emptied group back in the pool with no limits of its own, or
/// removes it when the pool is full or a reset fails.
fn recycle(group: PathBuf) {
    let reset = ["memory.max", "pids.max"]
        .iter()
        .all(|f| std::fs::write(group.join(f), "max").is_ok());
    // Memory still charged to it that cannot be reclaimed (tmpfs files,
    // anonymous memory) would count against the next command's cap: such
    // a group goes. Page cache is reclaimed under pressure, so it stays.
    let charged = read_trim(&group.join("memory.stat")).is_none_or(|stat| {
        let kept: u64 = stat
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                matches!(k, "anon" | "shmem")
                    .then(|| v.trim().parse::<u64>().ok())
                    .flatten()
            })
            .sum();
        kept > 1 << 20
    });
    let mut pool = pool();
    if reset && !charged && pool.len() < POOL_MAX && empty(&group) {
        pool.push(group);
    } else {
        drop(pool);
        held().remove(&group);
        let _ = std::fs::remove_dir(&group);
    }
}

/// What the keeper thread does.
enum Job {
    /// Fill the pool of groups made ahead.
    Refill,
    /// Reuse or remove a command's group once empty (a group whose
    /// processes outlive its command is removed by a later sweep).
    Recycle(PathBuf),
}

fn pool() -> MutexGuard<'static, Vec<PathBuf>> {
    static POOL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands `job` to the keeper thread (started on first use).
fn keeper(job: Job) {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let tx = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let _ = std::thread::Builder::new()
            .name("cgroups".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Refill => {
                            sweep_empty();
                            while pool().len() < POOL_SIZE {
                                match make_group() {
                                    Some(p) => pool().push(p),
                                    None => break,
                                }
                            }
                        }
                        Job::Recycle(p) if empty(&p) => recycle(p),
                        Job::Recycle(p) => {
                            // Left to a later sweep: processes remain.
                            held().remove(&p);
                        }
                    }
                }
            });
        Mutex::new(tx)
    });
    let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(job);
}

/// Makes a new group with the per-command task limit.
fn make_group() -> Option<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = Path::new(PARENT).join(format!("cmd-{}-{n}", std::process::id()));
    std::fs::create_dir(&path).ok()?;
    held().insert(path.clone());
    Some(path)
}

/// The agent inside a command's group for the length of one spawn: the
/// spawned child starts in the group. Dropping it moves the agent back to
/// the root group and only then sets the group's task limit (the agent's
/// own threads count while it is inside, and must never make the spawn
/// fail). Spawns are serialized while one is placed. The agent keeps its
/// `oom_score_adj` of -1000 throughout; [`Placed::started`] gives the child
/// 0, so the OOM killer picks the command and never the agent.
pub struct Placed {
    _serial: MutexGuard<'static, ()>,
    group: PathBuf,
    tasks: u64,
}

impl Placed {
    /// Moves this process into `group`.
    pub fn enter(group: &Group) -> std::io::Result<Self> {
        static SERIAL: Mutex<()> = Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::write(group.procs_file(), "0")?;
        Ok(Self {
            _serial: serial,
            group: group.path.clone(),
            tasks: group.tasks,
        })
    }

    /// The child `pid` started: it does not keep the agent's OOM immunity.
    pub fn started(&self, pid: i32) {
        let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "0");
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        let root = Path::new(CGROUP_FS).join("cgroup.procs");
        let moved = (0..3).any(|_| std::fs::write(&root, "0").is_ok());
        if !moved {
            // Inside a command's group for good: commands run without
            // limits from now on (and `status` says so) rather than the
            // agent being killed with one.
            STUCK.store(true, Ordering::Relaxed);
            crate::log::error(
                "cannot move the agent back to the root cgroup; commands run without guest \
                 limits from now on",
            );
        }
        let _ = std::fs::write(self.group.join("pids.max"), self.tasks.to_string());
    }
}

/// Set when the agent could not leave a command's group.
static STUCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process is in `group` (it must never kill itself).
fn agent_inside(group: &Path) -> bool {
    let Ok(rel) = group.strip_prefix(CGROUP_FS) else {
        return false;
    };
    std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|c| {
        c.lines().any(|l| {
            l.strip_prefix("0::")
                .is_some_and(|p| Path::new(p).strip_prefix("/").ok() == Some(rel))
        })
    })
}

/// The groups made and not yet given up: those in the pool and those of
/// commands (empty until their spawn). The sweep never touches them.
fn held() -> MutexGuard<'static, std::collections::HashSet<PathBuf>> {
    static HELD: OnceLock<Mutex<std::collections::HashSet<PathBuf>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Removes the groups of ended commands whose processes have all gone
/// (groups no handle holds any more).
fn sweep_empty() {
    let Ok(rd) = std::fs::read_dir(PARENT) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && !held().contains(&p) && empty(&p) {
            let _ = std::fs::remove_dir(&p);
        }
    }
}

/// Kills `group`'s processes, if there is a group.
pub fn kill(group: Option<&Group>) {
    if let Some(g) = group {
        g.kill();
    }
}

/// What limit a command that ended with `exit_code` hit: its group's
/// events, or, for a failure while the disk is full, the disk. A command
/// that hit the task limit is a runaway (a fork bomb's children outlive
/// their parent): its remaining processes are killed.
pub fn ended(group: Option<&Group>, exit_code: i32) -> Option<GuestLimit> {
    let hit = group.and_then(Group::hit);
    if hit == Some(GuestLimit::Processes) {
        kill(group);
    }
    // Only in a guest: host-compat's root is a directory on the host's disk.
    hit.or_else(|| (exit_code != 0 && active() && disk_full()).then_some(GuestLimit::Disk))
}

/// The root filesystem's size and free bytes (the overlay reports its
/// upper layer: the workspace's disk).
pub fn disk_space() -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs("/").ok()?;
    let block = st.fragment_size();
    Some((
        st.blocks().saturating_mul(block),
        st.blocks_free().saturating_mul(block),
    ))
}

/// Whether the workspace's disk is full: less than 1 MiB or 0.5% free
/// (what root may still use, reserved blocks included).
pub fn disk_full() -> bool {
    disk_space().is_some_and(|(total, free)| free < (1u64 << 20).max(total / 200))
}

/// What [`pyro_protocol::Request::Usage`] answers.
pub fn usage() -> GuestUsage {
    let (total, free) = disk_space().unwrap_or((0, 0));
    let on = active();
    GuestUsage {
        disk_total_bytes: total,
        disk_free_bytes: free,
        disk_full: disk_full(),
        memory_max_bytes: if on { memory_max() } else { None },
        tasks_per_command: on.then_some(GUEST_TASKS_PER_COMMAND),
        cpus: std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(0),
    }
}

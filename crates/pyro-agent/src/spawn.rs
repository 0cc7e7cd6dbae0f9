//! Starting a command without forking the agent.
//!
//! `posix_spawn` (glibc implements it with `clone(CLONE_VM | CLONE_VFORK)`)
//! copies no page tables, and the agent takes no copy-on-write faults after
//! it. A `fork` of the agent does both, and in a guest whose kernel runs in
//! an instruction emulator (PVM hosts) every one of those faults costs
//! milliseconds. The child gets its own session (so the whole group can be
//! killed), default signal dispositions, and its three standard streams;
//! every other descriptor of the agent is close-on-exec.
//!
//! The exit is awaited on a pidfd, so there is no polling and no `SIGCHLD`
//! handler in the agent's server process.

use std::ffi::{CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// What to start.
#[derive(Debug)]
pub struct SpawnSpec {
    /// The program: a path (a bare name is looked up in `PATH` of `env`).
    pub program: String,
    /// The arguments after the program name.
    pub args: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The working directory (absolute).
    pub cwd: String,
    /// A pipe for standard input (otherwise `/dev/null`).
    pub stdin: bool,
    /// Run as this user (through `pyro-agent run-as`) instead of root.
    pub run_as: Option<pyro_protocol::RunAs>,
}

/// Why a command could not start.
#[derive(Debug)]
pub enum SpawnError {
    /// No such program (exit code 127, as a shell reports it).
    NotFound(String),
    /// The program exists but cannot be executed (exit code 126).
    NotExecutable(String, io::Error),
    /// The agent could not set the command up (pipes, descriptors).
    Setup(io::Error),
}

/// A running command.
///
/// Its exit is observed without reaping it (`waitid` with `WNOWAIT`): until
/// [`Child::reap`] (or drop), the exited leader stays a zombie, so its pid,
/// which is also its process group id, cannot be reused, and killing the
/// group can never hit an unrelated process.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    /// Becomes readable when the process exits.
    exit: Option<AsyncFd<OwnedFd>>,
    /// Without a pidfd: a blocking thread waiting for the exit (kept, so a
    /// cancelled `wait` resumes the same wait).
    fallback: Option<tokio::task::JoinHandle<io::Result<ExitStatus>>>,
    status: Option<ExitStatus>,
    reaped: bool,
    /// The command's standard input, when asked for.
    pub stdin: Option<pipe::Sender>,
    /// Its standard output.
    pub stdout: Option<pipe::Receiver>,
    /// Its standard error.
    pub stderr: Option<pipe::Receiver>,
}

/// Starts `spec` in a new session, inside the cgroup `group` when one is
/// given (the agent enters it for the spawn: see `limits`).
pub fn spawn_in(
    spec: &SpawnSpec,
    group: Option<&crate::limits::Group>,
) -> Result<Child, SpawnError> {
    let placed = group
        .map(crate::limits::Placed::enter)
        .transpose()
        .map_err(SpawnError::Setup)?;
    let child = spawn(spec);
    if let (Some(p), Ok(c)) = (&placed, &child) {
        p.started(c.pid());
    }
    child
}

/// Starts `spec` in a new session, in the agent's own cgroup. Must be
/// called inside a Tokio runtime.
fn spawn(spec: &SpawnSpec) -> Result<Child, SpawnError> {
    let program = resolve(&spec.program, &spec.env, &spec.cwd)?;
    let cstr = |s: &OsStr, what: &str| {
        CString::new(s.as_bytes()).map_err(|_| {
            SpawnError::Setup(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the {what} contains a NUL byte"),
            ))
        })
    };
    let mut path_c = cstr(program.as_os_str(), "program path")?;
    let mut argv_c = vec![cstr(OsStr::new(&spec.program), "program name")?];
    for a in &spec.args {
        argv_c.push(cstr(OsStr::new(a), "argument list")?);
    }
    if let Some(user) = spec.run_as {
        // The agent itself drops to the user, then executes the program.
        let mut tramp = vec![
            c"pyro-agent".to_owned(),
            c"run-as".to_owned(),
            cstr(OsStr::new(&user.uid.to_string()), "user")?,
            cstr(OsStr::new(&user.gid.to_string()), "group")?,
            path_c,
        ];
        tramp.append(&mut argv_c);
        argv_c = tramp;
        path_c = cstr(OsStr::new(crate::image::AGENT_PATH), "agent path")?;
    }
    let mut env_c = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        env_c.push(cstr(OsStr::new(&format!("{k}={v}")), "environment")?);
    }
    let cwd_c = cstr(OsStr::new(&spec.cwd), "working directory")?;
    let argv = null_terminated(&argv_c);
    let envp = null_terminated(&env_c);

    let setup = SpawnError::Setup;
    let (out_r, out_w) = pipe_cloexec().map_err(setup)?;
    let (err_r, err_w) = pipe_cloexec().map_err(setup)?;
    let (in_r, in_w) = if spec.stdin {
        let (r, w) = pipe_cloexec().map_err(setup)?;
        (r, Some(w))
    } else {
        (open_dev_null().map_err(setup)?, None)
    };

    let mut pid: libc::pid_t = 0;
    {
        let mut actions = FileActions::new().map_err(setup)?;
        actions.dup2(in_r.as_raw_fd(), 0).map_err(setup)?;
        actions.dup2(out_w.as_raw_fd(), 1).map_err(setup)?;
        actions.dup2(err_w.as_raw_fd(), 2).map_err(setup)?;
        actions.chdir(&cwd_c).map_err(setup)?;
        let mut attr = SpawnAttr::new().map_err(setup)?;
        attr.setup().map_err(setup)?;
        let call = |pid: &mut libc::pid_t, path: &CString, argv: &[*mut libc::c_char]| {
            // SAFETY: every pointer is valid for the call: the path and the
            // NUL-terminated argv/envp arrays point into CStrings that
            // outlive it, and the actions and attributes are initialised.
            unsafe {
                libc::posix_spawn(
                    pid,
                    path.as_ptr(),
                    actions.as_ptr(),
                    attr.as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                )
            }
        };
        let mut rc = call(&mut pid, &path_c, &argv);
        if rc == libc::ENOEXEC {
            // An executable script without `#!`: run it with the shell, as
            // execvp and every shell do.
            let sh = c"/bin/sh".to_owned();
            let mut sh_argv = vec![sh.as_ptr().cast_mut(), path_c.as_ptr().cast_mut()];
            sh_argv.extend_from_slice(&argv[1..]);
            rc = call(&mut pid, &sh, &sh_argv);
        }
        if rc != 0 {
            let e = io::Error::from_raw_os_error(rc);
            return Err(match e.kind() {
                io::ErrorKind::NotFound => SpawnError::NotFound(spec.program.clone()),
                _ if rc == libc::ENOTDIR => SpawnError::NotFound(spec.program.clone()),
                _ => SpawnError::NotExecutable(spec.program.clone(), e),
            });
        }
    }
    // The child holds its own copies now.
    drop((in_r, out_w, err_w));
    let exit = pidfd_open(pid).ok().and_then(|fd| {
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open, with
        // the same descriptor, for as long as the AsyncFd lives.
        unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
    });
    let mut child = Child {
        pid,
        exit,
        fallback: None,
        status: None,
        reaped: false,
        stdin: None,
        stdout: None,
        stderr: None,
    };
    child.stdout = Some(pipe::Receiver::from_owned_fd(out_r).map_err(setup)?);
    child.stderr = Some(pipe::Receiver::from_owned_fd(err_r).map_err(setup)?);
    if let Some(w) = in_w {
        child.stdin = Some(pipe::Sender::from_owned_fd(w).map_err(setup)?);
    }
    Ok(child)
}

impl Child {
    /// The process id, which is also its process group and session id.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the process to exit (without reaping it). Cancel-safe:
    /// calling it again resumes the wait.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        if let Some(fd) = &self.exit {
            loop {
                let mut ready = fd.readable().await?;
                if let Some(status) = exited(self.pid, false)? {
                    self.status = Some(status);
                    return Ok(status);
                }
                ready.clear_ready();
            }
        }
        // No pidfd (a kernel older than 5.3, host-compat only): a worker
        // thread blocks in waitid instead.
        let pid = self.pid;
        let handle = self.fallback.get_or_insert_with(|| {
            tokio::task::spawn_blocking(move || {
                exited(pid, true)?.ok_or_else(|| io::Error::other("waitid returned no status"))
            })
        });
        let status = handle.await.map_err(io::Error::other)??;
        self.fallback = None;
        self.status = Some(status);
        Ok(status)
    }

    /// The exit status if the process has exited (without waiting or
    /// reaping).
    pub fn try_status(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = exited(self.pid, false)?;
        }
        Ok(self.status)
    }

    /// Kills the whole process group: the command and everything it
    /// started in its session, also after the command itself has exited.
    pub fn kill_group(&self) {
        if !self.reaped {
            // SAFETY: plain kill(2) of our own process group, whose id is
            // pinned by the unreaped leader.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
    }

    /// Sends `sig` to the whole process group (while its leader is
    /// unreaped, so the group id cannot name another group).
    pub fn signal_group(&self, sig: libc::c_int) {
        if !self.reaped {
            // SAFETY: plain kill(2) of our own process group, pinned as above.
            unsafe { libc::kill(-self.pid, sig) };
        }
    }

    /// Reaps the exited leader (after which its group can no longer be
    /// killed by this handle).
    pub fn reap(&mut self) {
        if !self.reaped && self.status.is_some() {
            let mut st = 0;
            // SAFETY: waitpid on our own exited child.
            unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) };
            self.reaped = true;
        }
    }
}

/// Whether `pid` has exited, and how, leaving it unreaped.
fn exited(pid: libc::pid_t, block: bool) -> io::Result<Option<ExitStatus>> {
    loop {
        // SAFETY: siginfo_t is plain old data; all-zero is valid and tells
        // "no child changed state" apart (si_pid stays 0).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let mut flags = libc::WEXITED | libc::WNOWAIT;
        if !block {
            flags |= libc::WNOHANG;
        }
        // SAFETY: waitid on our own child with a valid siginfo pointer.
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled the SIGCHLD fields of the union.
        let (who, code, value) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if who == 0 {
            return Ok(None);
        }
        // The raw wait status that ExitStatus decodes.
        let raw = match code {
            libc::CLD_EXITED => (value & 0xff) << 8,
            libc::CLD_DUMPED => (value & 0x7f) | 0x80,
            _ => value & 0x7f,
        };
        return Ok(Some(ExitStatus::from_raw(raw)));
    }
}

impl Drop for Child {
    /// A command whose handle goes away is killed with its group and
    /// reaped, never left running or as a zombie.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if self.status.is_some() {
            self.reap();
            return;
        }
        self.kill_group();
        if let Some(h) = self.fallback.take() {
            h.abort();
        }
        let pid = self.pid;
        match (self.exit.take(), tokio::runtime::Handle::try_current()) {
            (Some(fd), Ok(rt)) => {
                rt.spawn(async move {
                    let _ = fd.readable().await;
                    let _ = wait_blocking(pid);
                });
            }
            _ => {
                let _ = std::thread::Builder::new().spawn(move || wait_blocking(pid));
            }
        }
    }
}

fn wait_blocking(pid: libc::pid_t) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Finds the program as `execvp` would, in the command's own `PATH`.
fn resolve(program: &str, env: &[(String, String)], cwd: &str) -> Result<PathBuf, SpawnError> {
    if program.is_empty() {
        return Err(SpawnError::NotFound(program.to_owned()));
    }
    if program.contains('/') {
        let p = Path::new(program);
        return Ok(if p.is_absolute() {
            p.to_owned()
        } else {
            Path::new(cwd).join(p)
        });
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    let mut denied = None;
    for dir in path.split(':') {
        // An empty or relative entry (`.`, `node_modules/.bin`) is relative
        // to the command's working directory, as for execvp run there.
        let candidate = Path::new(cwd).join(dir).join(program);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        denied.get_or_insert(candidate);
    }
    match denied {
        Some(p) => Err(SpawnError::NotExecutable(
            program.to_owned(),
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is not executable", p.display()),
            ),
        )),
        None => Err(SpawnError::NotFound(program.to_owned())),
    }
}

fn null_terminated(items: &[CString]) -> Vec<*mut libc::c_char> {
    items
        .iter()
        .map(|c| c.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn open_dev_null() -> io::Result<OwnedFd> {
    let f = std::fs::File::open("/dev/null")?;
    Ok(OwnedFd::from(f))
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is fresh (close-on-exec by default).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

struct FileActions(Box<MaybeUninit<libc::posix_spawn_file_actions_t>>);

impl FileActions {
    fn new() -> io::Result<Self> {
        let mut a = Box::new(MaybeUninit::uninit());
        // SAFETY: initialises the boxed value in place.
        check(unsafe { libc::posix_spawn_file_actions_init(a.as_mut_ptr()) })?;
        Ok(Self(a))
    }

    fn as_ptr(&self) -> *const libc::posix_spawn_file_actions_t {
        self.0.as_ptr()
    }

    fn dup2(&mut self, fd: RawFd, to: RawFd) -> io::Result<()> {
        // SAFETY: the actions were initialised in new(); the call copies
        // the descriptor numbers.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(self.0.as_mut_ptr(), fd, to) })
    }

    fn chdir(&mut self, dir: &CString) -> io::Result<()> {
        // SAFETY: as above; glibc copies the path string.
        check(unsafe {
            libc::posix_spawn_file_actions_addchdir_np(self.0.as_mut_ptr(), dir.as_ptr())
        })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in new(), destroyed exactly once.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0.as_mut_ptr()) };
    }
}

struct SpawnAttr(Box<MaybeUninit<libc::posix_spawnattr_t>>);

impl SpawnAttr {
    fn new() -> io::Result<Self> {
        let mut a = Box::new(MaybeUninit::uninit());
        // SAFETY: initialises the boxed value in place.
        check(unsafe { libc::posix_spawnattr_init(a.as_mut_ptr()) })?;
        Ok(Self(a))
    }

    fn as_ptr(&self) -> *const libc::posix_spawnattr_t {
        self.0.as_ptr()
    }

    /// A new session, an empty signal mask, and every signal back at its
    /// default action (the agent ignores `SIGPIPE`, which would otherwise
    /// be inherited).
    fn setup(&mut self) -> io::Result<()> {
        let attr = self.0.as_mut_ptr();
        let mut all = MaybeUninit::<libc::sigset_t>::uninit();
        let mut none = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: the sets are initialised by sigfillset/sigemptyset before
        // use, and the attribute object was initialised in new().
        unsafe {
            libc::sigfillset(all.as_mut_ptr());
            libc::sigemptyset(none.as_mut_ptr());
            check(libc::posix_spawnattr_setsigdefault(attr, all.as_ptr()))?;
            check(libc::posix_spawnattr_setsigmask(attr, none.as_ptr()))?;
            let flags = libc::c_int::from(libc::POSIX_SPAWN_SETSID)
                | libc::POSIX_SPAWN_SETSIGDEF
                | libc::POSIX_SPAWN_SETSIGMASK;
            let flags = libc::c_short::try_from(flags).map_err(io::Error::other)?;
            check(libc::posix_spawnattr_setflags(attr, flags))
        }
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in new(), destroyed exactly once.
        unsafe { libc::posix_spawnattr_destroy(self.0.as_mut_ptr()) };
    }
}

#[cfg(test)]
mod tests;

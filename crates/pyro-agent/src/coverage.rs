//! Line coverage of the agent itself (`make test` builds it with
//! `-C instrument-coverage --cfg pyro_coverage`; release builds leave this
//! module out).
//!
//! The agent's environment comes from whoever started it: in a host-compat
//! sandbox that is `pyro`, whose own `LLVM_PROFILE_FILE` names the host's
//! merge pools. The agent writes elsewhere: to `PYRO_AGENT_PROFILE` (one file
//! per process in continuous mode, `%p%c`, so counters survive the SIGKILL
//! that ends a sandbox), or, when that is unset (a guest), to `/dev/null`, so
//! no profile lands in a user's workspace.
//!
//! A guest's init switches to [`GUEST_PROFILE`] once its root filesystem
//! (and so its `/run` tmpfs) is assembled: from then on the counters of init,
//! of the server and of every forked child live in that file (continuous
//! mode maps it shared), and pyro copies it to the host before the VM ends
//! (pyro-core's `sandbox/coverage.rs`). Counters of init from before the
//! switch (restored into every guest of a template) are written into the
//! file when it is created. The template warm-up's forked children end with
//! `_exit` before it: in a guest their counters go to `/dev/null`; on the
//! host (the warm-up's unit test) each writes a file of its own beside the
//! others ([`own_file_for_fork`], [`write_now`]). The runtime keeps the file
//! open without close-on-exec: commands in a coverage build's guest inherit
//! a descriptor to it.
//!
//! The profiler reads where the counters live once per function, at its
//! entry (`-runtime-counter-relocation`): what runs after a switch must be
//! in functions entered after it (`dispatch`, `init::in_root`).

use std::ffi::{CString, c_char};
use std::os::unix::ffi::OsStringExt;

// Where a guest's counters live.
use pyro_protocol::COVERAGE_PROFILE as GUEST_PROFILE;

unsafe extern "C" {
    // The profiler runtime that `-C instrument-coverage` links in.
    fn __llvm_profile_set_filename(name: *const c_char);
    fn __llvm_profile_write_file() -> i32;
    fn __llvm_profile_set_file_object(file: *mut libc::FILE, merge: i32);
}

/// For a forked child that may leave the filesystem its profile is named in
/// (the warm-up chroots into an overlay whose writes vanish): opens a file
/// of its own now (close-on-exec), beside the profiles `LLVM_PROFILE_FILE`
/// or `PYRO_AGENT_PROFILE` name, and points the runtime at it;
/// [`write_now`] fills it. Where neither names a directory (a guest),
/// nothing changes. Not for a process whose profile is in continuous mode
/// (a host-compat agent's): the runtime refuses a file object there. Its
/// callers are the warm-up, which never runs in host-compat, and tests.
pub fn own_file_for_fork() {
    use std::os::unix::ffi::OsStringExt;
    let Some(named) =
        std::env::var_os("LLVM_PROFILE_FILE").or_else(|| std::env::var_os("PYRO_AGENT_PROFILE"))
    else {
        return;
    };
    let Some(dir) = std::path::Path::new(&named)
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && *d != std::path::Path::new("/dev"))
    else {
        return;
    };
    // Not by pid alone: the warm-up's child is PID 1 of its namespace.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = dir.join(format!("agent-fork-{}-{nanos}.profraw", std::process::id()));
    let Ok(name) = CString::new(name.into_os_string().into_vec()) else {
        return;
    };
    // SAFETY: fopen of a NUL-terminated path with a literal mode.
    let file = unsafe { libc::fopen(name.as_ptr(), c"wbe".as_ptr()) };
    if !file.is_null() {
        // SAFETY: an open stream the runtime keeps for this process's life.
        unsafe { __llvm_profile_set_file_object(file, 0) };
    }
}

/// Writes this process's counters now: for a forked child that ends with
/// `_exit` (which skips the runtime's exit handler). Only where no other
/// thread can hold a lock the runtime takes (a fork of a single-threaded
/// process, or of a test whose other thread only waits).
pub fn write_now() {
    // SAFETY: the runtime linked in by `-C instrument-coverage` (see
    // `set_filename`); it writes to the file or stream already set.
    unsafe { __llvm_profile_write_file() };
}

/// Points the profiler runtime at this process's profile file.
pub fn redirect() {
    let name = std::env::var_os("PYRO_AGENT_PROFILE")
        .map(OsStringExt::into_vec)
        .unwrap_or_else(|| b"/dev/null".to_vec());
    set_filename(name);
}

/// In a guest whose `/run` is mounted: counters go to [`GUEST_PROFILE`].
pub fn into_guest_run() {
    // `%c`: continuous mode (the name itself ends before it).
    set_filename(format!("{GUEST_PROFILE}%c").into_bytes());
}

/// `ReadFile` of [`GUEST_PROFILE`]: the file, its size and mode. Only a
/// regular file, never through a link, never waiting on a FIFO.
pub fn open_profile(path: &str) -> Option<std::io::Result<(std::fs::File, u64, u32)>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path != GUEST_PROFILE {
        return None;
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    Some(opened.and_then(|f| {
        let m = f.metadata()?;
        if !m.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        Ok((f, m.len(), m.permissions().mode() & 0o7777))
    }))
}

fn set_filename(name: Vec<u8>) {
    let Ok(name) = CString::new(name) else {
        return;
    };
    // The runtime may keep the pointer: the pattern must live as long as the
    // process.
    let name: &'static CString = Box::leak(Box::new(name));
    // SAFETY: `name` is a NUL-terminated string that is never freed; the
    // runtime is linked in by `-C instrument-coverage`, which `pyro_coverage`
    // builds always carry (Makefile).
    unsafe { __llvm_profile_set_filename(name.as_ptr()) };
}

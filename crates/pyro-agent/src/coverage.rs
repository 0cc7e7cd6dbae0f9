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

use std::ffi::{CString, c_char};
use std::os::unix::ffi::OsStringExt;

unsafe extern "C" {
    // The profiler runtime that `-C instrument-coverage` links in.
    fn __llvm_profile_set_filename(name: *const c_char);
}

/// Points the profiler runtime at this process's profile file.
pub fn redirect() {
    let name = std::env::var_os("PYRO_AGENT_PROFILE")
        .map(OsStringExt::into_vec)
        .unwrap_or_else(|| b"/dev/null".to_vec());
    let Ok(name) = CString::new(name) else {
        return;
    };
    // The runtime copies nothing: the pattern must live as long as the process.
    let name: &'static CString = Box::leak(Box::new(name));
    // SAFETY: `name` is a NUL-terminated string that is never freed; the
    // runtime is linked in by `-C instrument-coverage`, which `pyro_coverage`
    // builds always carry (Makefile).
    unsafe { __llvm_profile_set_filename(name.as_ptr()) };
}

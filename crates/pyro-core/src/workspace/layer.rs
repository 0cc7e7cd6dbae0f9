//! Host-compat layer copies and swaps that survive interruption.

use super::*;

/// Copies a directory tree exactly (modes, symlinks, xattrs, overlay
/// whiteouts), reflinking where the filesystem can.
pub(super) fn copy_tree(src: &Path, dst: &Path) -> Result<(), CoreError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("cp");
    cmd.args(["-a", "--reflink=auto"]).arg(src).arg(dst);
    let parent = std::process::id();
    // SAFETY: between fork and exec the hook only makes two
    // async-signal-safe calls (prctl, getppid) and touches no heap.
    unsafe {
        cmd.pre_exec(move || dies_with(parent));
    }
    let out = cmd.output().map_err(|e| CoreError::io("running cp", e))?;
    if !out.status.success() {
        return Err(CoreError::io(
            format!("copying {} to {}", src.display(), dst.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        ));
    }
    Ok(())
}

/// [`copy_tree`]'s hook: a killed pyro (`parent`) takes its copy with it,
/// so the next command's sweep never races a copy still writing. `ESRCH`
/// when `parent` is gone already (an error built without allocating: this
/// runs between fork and exec, and `spawn` passes on only its errno).
fn dies_with(parent: u32) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Puts `new` in place of `target` (both directories), leaving no state in
/// which neither exists for longer than two renames.
pub(super) fn swap_dir(new: &Path, target: &Path) -> Result<(), CoreError> {
    let old = target.with_extension("old");
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(target, &old)
            .map_err(|e| CoreError::io(format!("moving {} aside", target.display()), e))?;
    }
    std::fs::rename(new, target)
        .map_err(|e| CoreError::io(format!("installing {}", target.display()), e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Repairs a swap interrupted between its renames.
pub(super) fn recover_swap(target: &Path) {
    if !target.exists() {
        let (new, old) = (target.with_extension("new"), target.with_extension("old"));
        if new.exists() {
            let _ = std::fs::rename(&new, target);
        } else if old.exists() {
            let _ = std::fs::rename(&old, target);
        }
    }
}

/// Removes manifest spools a killed baseline left in `baseline`; how many.
pub(super) fn clear_spools(baseline: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(baseline) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(".pyro-manifest-")
            {
                n += usize::from(std::fs::remove_file(e.path()).is_ok());
            }
        }
    }
    n
}

#[cfg(test)]
mod tests;

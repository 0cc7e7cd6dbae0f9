//! Laying out a VM's jail before the jailer starts: the chroot with its
//! kernel and disks linked in, and files the jailed Firecracker may write.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::VmmError;
use crate::launch::{JailSpec, LaunchSpec, SNAPSHOT_MEM, SNAPSHOT_STATE, VmPaths};

/// Paths as Firecracker sees them.
#[derive(Debug)]
pub(crate) struct GuestView {
    pub(crate) kernel: PathBuf,
    pub(crate) base: PathBuf,
    pub(crate) upper: PathBuf,
    pub(crate) vsock: PathBuf,
    pub(crate) log: PathBuf,
}

pub(crate) fn prepare_jail(
    spec: &LaunchSpec,
    j: &JailSpec,
    paths: &VmPaths,
) -> Result<GuestView, VmmError> {
    let dir = paths.jail_dir.clone().unwrap_or_default();
    // A jail left by an earlier boot of this sandbox was the VM's to change:
    // anything in it may be a link. Start from nothing (removal never
    // follows links).
    match std::fs::symlink_metadata(&dir) {
        Ok(_) => std::fs::remove_dir_all(&dir)
            .map_err(|e| VmmError::io(format!("removing the old jail {}", dir.display()), e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(VmmError::io(format!("inspecting {}", dir.display()), e)),
    }
    // The jail directory is root's and writable by nobody else whatever
    // the umask: host reads into the jail start from it (`crate::jail`).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| VmmError::io(format!("creating {}", dir.display()), e))?;
    let root = dir.join("root");
    std::fs::create_dir_all(&root)
        .map_err(|e| VmmError::io(format!("creating {}", root.display()), e))?;
    link_or_copy(&spec.kernel, &root.join("vmlinux"))?;
    link_or_copy(&spec.base_image, &root.join("rootfs.ext4"))?;
    if let Some(r) = &spec.restore {
        // Links only: a copy of guest memory per VM would cost its size in
        // disk and time, and share no pages with its siblings.
        for (src, name) in [(&r.vmstate, SNAPSHOT_STATE), (&r.mem, SNAPSHOT_MEM)] {
            std::fs::hard_link(src, root.join(name)).map_err(|e| {
                let why = if e.raw_os_error() == Some(libc::EXDEV) {
                    "the template (in the cache) and the jails (in the state directory) are on \
                     different filesystems; put PYRO_CACHE_DIR and PYRO_HOME on one"
                        .to_owned()
                } else {
                    format!("linking {} into the jail", src.display())
                };
                VmmError::io(why, e)
            })?;
        }
    }
    // The writable disk must be the workspace's own file: a copy in the jail
    // would take the guest's writes with it when the jail is removed.
    let upper = root.join("upper.ext4");
    let _ = std::fs::remove_file(&upper);
    std::fs::hard_link(&spec.upper_disk, &upper).map_err(|e| {
        if e.raw_os_error() == Some(libc::EXDEV) {
            VmmError::io(
                format!(
                    "the writable disk {} and the jail {} are on different filesystems, so the \
                     disk cannot be linked into the jail (a copy would lose the guest's writes); \
                     put PYRO_HOME and the jail base on one filesystem",
                    spec.upper_disk.display(),
                    root.display()
                ),
                e,
            )
        } else {
            VmmError::io(
                format!("linking {} into the jail", spec.upper_disk.display()),
                e,
            )
        }
    })?;
    chown(&root.join("upper.ext4"), j)?;
    Ok(GuestView {
        kernel: "/vmlinux".into(),
        base: "/rootfs.ext4".into(),
        upper: "/upper.ext4".into(),
        vsock: "/v.sock".into(),
        log: "/firecracker.log".into(),
    })
}

pub(crate) fn link_or_copy(src: &Path, dst: &Path) -> Result<(), VmmError> {
    let _ = std::fs::remove_file(dst);
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            crate::disk::sparse_copy(src, dst).map(|_| ())
        }
        Err(e) => Err(VmmError::io(
            format!("linking {} into the jail", src.display()),
            e,
        )),
    }
}

pub(crate) fn chown(path: &Path, j: &JailSpec) -> Result<(), VmmError> {
    std::os::unix::fs::chown(path, Some(j.uid), Some(j.gid))
        .map_err(|e| VmmError::io(format!("chown {}", path.display()), e))
}

pub(crate) fn touch(path: &Path, jail: Option<&JailSpec>) -> Result<(), VmmError> {
    std::fs::File::create(path)
        .map_err(|e| VmmError::io(format!("creating {}", path.display()), e))?;
    match jail {
        Some(j) => chown(path, j),
        None => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| VmmError::io(format!("chmod {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests;

//! Full snapshots of a running VM (for templates), and taking their files
//! out of the jail.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::json;

use crate::VmmError;
use crate::api::ApiClient;
/// The VM state file a snapshot is written to in the jail (not the name a
/// restore links its snapshot under, which the jail may already hold).
pub const TAKEN_STATE: &str = "taken.vmstate";

/// The memory file a snapshot is written to in the jail.
pub const TAKEN_MEM: &str = "taken.mem";

/// Pauses the VM and writes a full snapshot (VM state and all of guest
/// memory) into its jail as [`TAKEN_STATE`] and [`TAKEN_MEM`]. The VM
/// stays paused: its disk is exactly what the memory expects until it is
/// resumed or killed.
pub async fn create_full(api: &ApiClient) -> Result<(), VmmError> {
    api.patch("/vm", &json!({"state": "Paused"})).await?;
    api.put(
        "/snapshot/create",
        &json!({
            "snapshot_type": "Full",
            "snapshot_path": format!("/{TAKEN_STATE}"),
            "mem_file_path": format!("/{TAKEN_MEM}"),
        }),
    )
    .await?;
    Ok(())
}

/// Moves `name`, a file the jailed Firecracker (running as `uid`) wrote in
/// its jail, to `dest`, and makes it root's and read-only. The jail is the
/// VM's to change, so the file is checked through a handle that followed
/// no link (a regular file, one link, owned by `uid`), and after the move
/// `dest` must be that same inode. Returns its size.
pub fn collect(jail_dir: &Path, name: &str, uid: u32, dest: &Path) -> Result<u64, VmmError> {
    let ctx = |what: &str| format!("{what} {name} from the jail {}", jail_dir.display());
    let handle =
        crate::jail::open_file(jail_dir, name).map_err(|e| VmmError::io(ctx("opening"), e))?;
    let meta = handle
        .metadata()
        .map_err(|e| VmmError::io(ctx("inspecting"), e))?;
    if meta.nlink() != 1 || meta.uid() != uid {
        return Err(VmmError::io(
            ctx("taking"),
            std::io::Error::other(format!(
                "it has {} links and belongs to uid {}, not one link of uid {uid}",
                meta.nlink(),
                meta.uid()
            )),
        ));
    }
    let src = jail_dir.join("root").join(name);
    match std::fs::rename(&src, dest) {
        Ok(()) => {
            let moved = std::fs::symlink_metadata(dest)
                .map_err(|e| VmmError::io(ctx("inspecting the moved"), e))?;
            if (moved.dev(), moved.ino()) != (meta.dev(), meta.ino()) {
                let _ = std::fs::remove_file(dest);
                return Err(VmmError::io(
                    ctx("taking"),
                    std::io::Error::other("the file changed while it was moved"),
                ));
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            // Another filesystem: copy from the checked handle.
            let mut out = std::fs::File::create(dest)
                .map_err(|e| VmmError::io(format!("creating {}", dest.display()), e))?;
            let mut input = handle
                .try_clone()
                .map_err(|e| VmmError::io(ctx("reading"), e))?;
            std::io::copy(&mut input, &mut out).map_err(|e| VmmError::io(ctx("copying"), e))?;
        }
        Err(e) => return Err(VmmError::io(ctx("moving"), e)),
    }
    std::os::unix::fs::chown(dest, Some(0), Some(0))
        .and_then(|()| std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o444)))
        .map_err(|e| VmmError::io(format!("making {} read-only", dest.display()), e))?;
    Ok(meta.len())
}

#[cfg(test)]
mod tests;

//! Root filesystems: a Debian tree from `mmdebstrap` (using the host's apt
//! sources), customized with the pyro agent, then packed into a read-only
//! ext4 image with `mkfs.ext4 -d`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::agent::{AgentBinary, GUEST_PATH};
use crate::cmd::{require, run_logged};
use crate::{EnvError, EnvSpec, Progress};

/// Documentation, manuals and translations are left out of images.
const DPKG_EXCLUDES: [&str; 5] = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
];

/// The programs the rootfs build runs, with the Debian package of each.
pub const BUILD_TOOLS: &[(&str, &str)] = &[MMDEBSTRAP, MKFS_EXT4];
const MMDEBSTRAP: (&str, &str) = ("mmdebstrap", "mmdebstrap");
const MKFS_EXT4: (&str, &str) = ("mkfs.ext4", "e2fsprogs");

/// Builds the Debian tree for `spec` at `tree` (which must not exist).
pub fn build_tree(
    spec: &EnvSpec,
    tree: &Path,
    log: &Path,
    progress: &dyn Progress,
) -> Result<(), EnvError> {
    require(
        MMDEBSTRAP.0,
        MMDEBSTRAP.1,
        "build environment root filesystems",
    )?;
    progress.step(&format!(
        "{}: installing Debian {} packages (mmdebstrap)",
        spec.name, spec.suite
    ));
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--variant=minbase");
    if !spec.packages.is_empty() {
        cmd.arg(format!("--include={}", spec.packages.join(",")));
    }
    for ex in DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt={ex}"));
    }
    cmd.arg(spec.suite).arg(tree);
    run_logged("mmdebstrap", &mut cmd, log, &mut |line| {
        progress.tick(&format!(
            "{}: {}",
            spec.name,
            line.chars().take(70).collect::<String>()
        ));
    })
}

/// Bakes the agent and pyro's files into `tree`.
pub fn customize_tree(spec: &EnvSpec, tree: &Path, agent: &AgentBinary) -> Result<(), EnvError> {
    let io = |what: String| move |e| EnvError::io(what, e);
    let target = tree.join(GUEST_PATH);
    let tmp = target.with_extension("new");
    std::fs::copy(&agent.path, &tmp)
        .map_err(io(format!("copying the agent into {}", tree.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod agent".into()))?;
    std::fs::rename(&tmp, &target).map_err(io(format!("installing {}", target.display())))?;
    for dir in ["workspace", "mnt", "run", "tmp"] {
        std::fs::create_dir_all(tree.join(dir)).map_err(io(format!("creating /{dir}")))?;
    }
    std::fs::set_permissions(tree.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .map_err(io("chmod /tmp".into()))?;
    let files = [
        ("etc/hostname", "pyro\n".to_owned()),
        (
            "etc/hosts",
            "127.0.0.1\tlocalhost\n127.0.1.1\tpyro\n".to_owned(),
        ),
        ("etc/resolv.conf", String::new()),
        (
            "etc/pyro-environment",
            serde_json::json!({"name": spec.name, "version": spec.version}).to_string() + "\n",
        ),
    ];
    for (path, body) in files {
        let p = tree.join(path);
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, body).map_err(io(format!("writing /{path}")))?;
    }
    Ok(())
}

/// Packs `tree` into a read-only ext4 image at `image`; returns its size.
pub fn make_image(tree: &Path, image: &Path, log: &Path) -> Result<u64, EnvError> {
    require(MKFS_EXT4.0, MKFS_EXT4.1, "build environment images")?;
    let (bytes, files) = tree_usage(tree);
    // ext4 metadata and block rounding need headroom; the base is read-only,
    // so no free space is needed beyond that.
    let size_mib = (bytes / (1 << 20)) * 115 / 100 + 64 + files / 256;
    let inodes = files + files / 5 + 1024;
    let _ = std::fs::remove_file(image);
    run_logged(
        "mkfs.ext4",
        Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-L",
                "pyro-base",
                "-m",
                "0",
                "-O",
                "^has_journal",
            ])
            .arg("-N")
            .arg(inodes.to_string())
            .arg("-d")
            .arg(tree)
            .arg(image)
            .arg(format!("{size_mib}M")),
        log,
        &mut |_| {},
    )?;
    std::fs::set_permissions(image, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| EnvError::io(format!("chmod {}", image.display()), e))?;
    Ok(std::fs::metadata(image).map(|m| m.len()).unwrap_or(0))
}

/// Bytes (rounded up to 4 KiB blocks) and entries under `root`.
fn tree_usage(root: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            files += 1;
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            bytes += m.len().div_ceil(4096) * 4096;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customize_and_pack_a_small_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hosts"), "old").unwrap();
        let agent_path = dir.path().join("agent");
        std::fs::write(&agent_path, b"\x7fELF fake agent").unwrap();
        let agent = AgentBinary {
            path: agent_path,
            sha256: "x".into(),
        };
        let spec = crate::catalog::lookup("debian:12-base").unwrap();
        customize_tree(spec, &tree, &agent).unwrap();
        let baked = tree.join(GUEST_PATH);
        assert_eq!(std::fs::read(&baked).unwrap(), b"\x7fELF fake agent");
        assert_eq!(
            std::fs::metadata(&baked).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(tree.join("workspace").is_dir());
        assert!(
            std::fs::read_to_string(tree.join("etc/hosts"))
                .unwrap()
                .contains("localhost")
        );

        let image = dir.path().join("rootfs.ext4");
        let size = make_image(&tree, &image, &dir.path().join("log")).unwrap();
        assert!(size >= 64 << 20);
        let out = Command::new("debugfs")
            .arg("-R")
            .arg("cat /etc/pyro-environment")
            .arg(&image)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("debian:12-base"));
    }
}

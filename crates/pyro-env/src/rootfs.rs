//! Root filesystems: a Debian tree from `mmdebstrap` (using the host's apt
//! sources), customized with the pyro agent, then packed into a read-only
//! ext4 image with `mkfs.ext4 -d`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::agent::{AgentBinary, GUEST_PATH};
use crate::cmd::{require, run_logged};
use crate::{EnvError, EnvSpec, ImageDefaults, Progress};

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
    build_tree_with(MMDEBSTRAP.0, spec, tree, log, progress)
}

/// [`build_tree`] with `program` as mmdebstrap (tests give a stand-in).
fn build_tree_with(
    program: &str,
    spec: &EnvSpec,
    tree: &Path,
    log: &Path,
    progress: &dyn Progress,
) -> Result<(), EnvError> {
    progress.step(&format!(
        "{}: installing Debian {} packages (mmdebstrap)",
        spec.name, spec.suite
    ));
    let mut cmd = Command::new(program);
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

/// What is baked into a tree besides the agent.
#[derive(Debug, Clone, Copy)]
pub struct Bake<'a> {
    /// Environment name.
    pub name: &'a str,
    /// Environment version.
    pub version: &'a str,
    /// The container image's defaults for commands, if any.
    pub image: Option<&'a ImageDefaults>,
}

/// Bakes the agent and pyro's files into `tree`. The tree may come from a
/// container image: every path is resolved inside it (a link such as
/// `etc -> /elsewhere` lands inside the tree), and what is replaced is
/// never followed.
pub fn customize_tree(tree: &Path, bake: &Bake<'_>, agent: &AgentBinary) -> Result<(), EnvError> {
    let io = |what: String| move |e| EnvError::io(what, e);
    let inside = |rel: &Path| -> Result<PathBuf, EnvError> {
        let parent =
            pyro_oci::layers::resolve_dir(tree, rel.parent().unwrap_or(Path::new("")), true)
                .map_err(|e| {
                    EnvError::io(
                        format!("preparing /{}", rel.display()),
                        std::io::Error::other(e),
                    )
                })?
                .unwrap_or_else(|| tree.to_path_buf());
        Ok(parent.join(rel.file_name().unwrap_or_default()))
    };
    // Written beside, then renamed over whatever was there (a rename
    // replaces a link, it does not follow it).
    let put = |rel: &str, bytes: &[u8], mode: u32| -> Result<(), EnvError> {
        let leaf = inside(Path::new(rel))?;
        if leaf.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&leaf).map_err(io(format!("replacing /{rel}")))?;
        }
        // One fixed name (this process holds the environment's lock): what
        // a killed bake left is replaced here, never baked in.
        let tmp = leaf.with_file_name(".pyro-new");
        let _ = std::fs::remove_file(&tmp);
        std::fs::write(&tmp, bytes).map_err(io(format!("writing /{rel}")))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("chmod /{rel}")))?;
        std::fs::rename(&tmp, &leaf).map_err(io(format!("installing /{rel}")))
    };
    for (dir, mode) in [
        ("workspace", 0o755),
        ("mnt", 0o755),
        ("run", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
    ] {
        let p = tree.join(dir);
        if !p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_file(&p);
            std::fs::create_dir(&p).map_err(io(format!("creating /{dir}")))?;
        }
        // A real directory now (checked above), so this follows nothing.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("chmod /{dir}")))?;
    }
    let agent_bytes = std::fs::read(&agent.path)
        .map_err(io(format!("reading the agent {}", agent.path.display())))?;
    put(GUEST_PATH, &agent_bytes, 0o755)?;
    let mut about = serde_json::json!({"name": bake.name, "version": bake.version});
    if let Some(image) = bake.image {
        about["image"] = serde_json::to_value(image).unwrap_or_default();
    }
    let files = [
        ("etc/hostname", "pyro\n".to_owned()),
        (
            "etc/hosts",
            "127.0.0.1\tlocalhost\n127.0.1.1\tpyro\n".to_owned(),
        ),
        ("etc/resolv.conf", String::new()),
        ("etc/pyro-environment", about.to_string() + "\n"),
    ];
    for (path, body) in files {
        put(path, body.as_bytes(), 0o644)?;
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
mod tests;

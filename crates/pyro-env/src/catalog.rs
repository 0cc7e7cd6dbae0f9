//! The environment catalog.

use serde::Serialize;

use crate::EnvError;

/// Version of the catalog (and of pyro 4.x).
pub const CATALOG_VERSION: &str = "4.0.0";

/// The only platform pyro supports.
pub const PLATFORM: &str = "linux-x86_64";

/// One catalog entry.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EnvSpec {
    /// `debian:12`.
    pub name: &'static str,
    /// Environment version.
    pub version: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Packages installed on top of Debian's minimal base (`minbase`).
    pub packages: &'static [&'static str],
    /// The notable packages, as shown to users.
    pub default_packages: &'static [&'static str],
    /// Distribution name.
    pub distribution: &'static str,
    /// Distribution version.
    pub distribution_version: &'static str,
    /// Debian suite.
    pub suite: &'static str,
}

impl EnvSpec {
    /// The cache directory name: `debian_12-4.0.0`.
    pub fn slug(&self) -> String {
        format!("{}-{}", self.name.replace(':', "_"), self.version)
    }
}

/// The environments pyro offers.
pub const CATALOG: [EnvSpec; 3] = [
    EnvSpec {
        name: "debian:12",
        version: "4.0.0",
        description: "Debian 12 environment with Git preinstalled for common agent workflows.",
        packages: &["git", "ca-certificates"],
        default_packages: &["bash", "coreutils", "git", "ca-certificates"],
        distribution: "debian",
        distribution_version: "12",
        suite: "bookworm",
    },
    EnvSpec {
        name: "debian:12-base",
        version: "4.0.0",
        description: "Minimal Debian 12 environment for shell and core Unix tooling.",
        packages: &[],
        default_packages: &["bash", "coreutils"],
        distribution: "debian",
        distribution_version: "12",
        suite: "bookworm",
    },
    EnvSpec {
        name: "debian:12-build",
        version: "4.0.0",
        description: "Debian 12 environment with Git and common build tools preinstalled.",
        packages: &[
            "git",
            "ca-certificates",
            "gcc",
            "libc6-dev",
            "make",
            "cmake",
            "python3",
        ],
        default_packages: &[
            "bash",
            "coreutils",
            "git",
            "gcc",
            "make",
            "cmake",
            "python3",
        ],
        distribution: "debian",
        distribution_version: "12",
        suite: "bookworm",
    },
];

/// Finds a catalog entry by name.
pub fn lookup(name: &str) -> Result<&'static EnvSpec, EnvError> {
    CATALOG
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| EnvError::Unknown {
            name: name.to_owned(),
            valid: CATALOG
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests;

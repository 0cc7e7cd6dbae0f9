//! Which environment a name means: a catalog entry, or an environment made
//! on this host from a container image (`env import`) or pulled under a
//! name the catalog does not have. Imported environments live beside the
//! catalog's in the cache, under `imported-<name>`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{CATALOG, Cache, EnvError, EnvSpec};

/// Prefix of an imported environment's cache directory.
pub const IMPORTED_PREFIX: &str = "imported-";

/// An environment, by where its definition comes from.
#[derive(Debug, Clone)]
pub enum EnvRef {
    /// A catalog entry.
    Catalog(&'static EnvSpec),
    /// An imported environment's name.
    Imported(String),
}

impl EnvRef {
    /// The environment's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Catalog(s) => s.name,
            Self::Imported(n) => n,
        }
    }

    /// Its cache directory name.
    pub fn slug(&self) -> String {
        match self {
            Self::Catalog(s) => s.slug(),
            Self::Imported(n) => format!("{IMPORTED_PREFIX}{}", n.replace(':', "_")),
        }
    }

    /// Its install directory.
    pub fn dir(&self, cache: &Cache) -> PathBuf {
        cache.environments_dir().join(self.slug())
    }
}

/// How an environment's image means commands to run (from the container
/// image's config): baked into the guest at `/etc/pyro-environment`, where
/// the agent reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ImageDefaults {
    /// `KEY=VALUE` pairs every command starts with (a request's own
    /// variables replace them).
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory of a command that names none (`run`;
    /// workspace commands run in `/workspace` unless told otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The image's `User`, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// That user's numeric id, resolved against the image's `/etc/passwd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Its group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// Where an installed environment's content came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Origin {
    /// `registry` (a pyro environment artifact) or `image` (a container
    /// image, imported).
    pub kind: String,
    /// The reference or archive it came from.
    pub reference: String,
    /// The digest of the manifest (or, for an older `docker save`
    /// archive, of the image config).
    pub digest: String,
}

/// Checks a name for an imported environment: 1-64 characters of
/// lowercase letters, digits, `.`, `-` and `:`, starting with a letter or
/// digit, and not a catalog name. (No `_`: the cache directory spells
/// `:` as `_`, and two names must never share one.)
pub fn check_import_name(name: &str) -> Result<(), EnvError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-:".contains(c));
    if !ok {
        return Err(EnvError::BadName {
            name: name.to_owned(),
            reason: "use 1-64 lowercase letters, digits, `.`, `-` and `:`, starting with a letter or digit".into(),
        });
    }
    if CATALOG.iter().any(|s| s.name == name) {
        return Err(EnvError::BadName {
            name: name.to_owned(),
            reason: "it is a catalog environment's name; choose another".into(),
        });
    }
    Ok(())
}

/// The environment `name` means: a catalog entry, else an imported
/// environment installed under that name.
pub fn lookup(cache: &Cache, name: &str) -> Result<EnvRef, EnvError> {
    if let Ok(spec) = crate::catalog::lookup(name) {
        return Ok(EnvRef::Catalog(spec));
    }
    let imported = imported_names(cache);
    if check_import_name(name).is_ok() && imported.iter().any(|n| n == name) {
        return Ok(EnvRef::Imported(name.to_owned()));
    }
    let mut valid: Vec<String> = CATALOG.iter().map(|s| s.name.to_owned()).collect();
    valid.extend(imported);
    Err(EnvError::Unknown {
        name: name.to_owned(),
        valid: valid.join(", "),
    })
}

/// The names of the imported environments in the cache, sorted.
pub fn imported_names(cache: &Cache) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(rd) = std::fs::read_dir(cache.environments_dir()) {
        for e in rd.flatten() {
            let dir = e.file_name().to_string_lossy().into_owned();
            if !dir.starts_with(IMPORTED_PREFIX) {
                continue;
            }
            if let Some(m) = crate::install::read_manifest(&e.path())
                && check_import_name(&m.name).is_ok()
                && EnvRef::Imported(m.name.clone()).slug() == dir
            {
                names.push(m.name);
            }
        }
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests;

//! pyro's user configuration: `$XDG_CONFIG_HOME/pyro/config.toml`
//! (`~/.config/pyro/config.toml`). It holds one setting today:
//!
//! ```toml
//! # Where `env pull` looks first for catalog environments
//! # (REGISTRY/NAMESPACE; an environment `debian:12` is then pulled from
//! # REGISTRY/NAMESPACE/debian:12). PYRO_ENV_REGISTRY overrides it.
//! env_registry = "registry.example.org/pyro"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use crate::EnvError;

/// Overrides `env_registry`.
pub const ENV_REGISTRY_VAR: &str = "PYRO_ENV_REGISTRY";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    env_registry: Option<String>,
}

/// The configuration file's path.
pub fn path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/root".into())
                .join(".config")
        });
    base.join("pyro/config.toml")
}

/// The registry (`REGISTRY/NAMESPACE`) `env pull` tries first for catalog
/// environments: `PYRO_ENV_REGISTRY`, else the configuration file's
/// `env_registry`, else none.
pub fn env_registry() -> Result<Option<String>, EnvError> {
    if let Some(v) = std::env::var(ENV_REGISTRY_VAR)
        .ok()
        .filter(|v| !v.is_empty())
    {
        return Ok(Some(v.trim_end_matches('/').to_owned()));
    }
    let p = path();
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EnvError::io(format!("reading {}", p.display()), e)),
    };
    parse(&text)
        .map(|c| c.env_registry.map(|r| r.trim_end_matches('/').to_owned()))
        .map_err(|e| {
            EnvError::io(
                format!("reading {}", p.display()),
                std::io::Error::other(format!(
                    "{e}; the only setting is env_registry = \"REGISTRY/NAMESPACE\""
                )),
            )
        })
}

fn parse(text: &str) -> Result<Config, toml::de::Error> {
    toml::from_str(text)
}

/// The reference of catalog environment `name` in `registry`.
pub fn catalog_reference(registry: &str, name: &str) -> String {
    format!("{registry}/{name}")
}

#[cfg(test)]
mod tests;

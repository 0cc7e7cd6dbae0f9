//! Registry credentials: `PYRO_REGISTRY_USERNAME` and
//! `PYRO_REGISTRY_PASSWORD` for the registry `PYRO_REGISTRY_HOST` names
//! (never sent to another), else the Docker config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), else
//! anonymous. The registry's challenge decides between Basic and the
//! bearer-token flow; both take these credentials.

use std::path::PathBuf;

use base64::Engine;
use oci_client::secrets::RegistryAuth;

use crate::OciError;

/// The environment variables read for credentials.
pub const USERNAME_ENV: &str = "PYRO_REGISTRY_USERNAME";
/// See [`USERNAME_ENV`].
pub const PASSWORD_ENV: &str = "PYRO_REGISTRY_PASSWORD";
/// The registry (host, with its port) those credentials are for.
pub const HOST_ENV: &str = "PYRO_REGISTRY_HOST";

/// The credentials to use for `registry` (a host, with its port).
pub fn credentials_for(registry: &str) -> Result<RegistryAuth, OciError> {
    let user = std::env::var(USERNAME_ENV).ok().filter(|v| !v.is_empty());
    let pass = std::env::var(PASSWORD_ENV).ok().filter(|v| !v.is_empty());
    let host = std::env::var(HOST_ENV).ok().filter(|v| !v.is_empty());
    match (user, pass, host) {
        (Some(u), Some(p), Some(h)) => {
            if aliases(registry)
                .iter()
                .any(|a| a == h.trim_end_matches('/'))
            {
                return Ok(RegistryAuth::Basic(u, p));
            }
        }
        (None, None, _) => {}
        (Some(_), Some(_), None) => {
            return Err(OciError::invalid(
                "the registry login",
                format!(
                    "set {HOST_ENV} to the registry {USERNAME_ENV} and {PASSWORD_ENV} are for (e.g. {registry}); they are never sent to another"
                ),
            ));
        }
        _ => {
            return Err(OciError::invalid(
                "the registry login",
                format!("set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither"),
            ));
        }
    }
    let Some(path) = docker_config_path() else {
        return Ok(RegistryAuth::Anonymous);
    };
    match std::fs::read(&path) {
        Ok(bytes) => from_docker_config(&bytes, registry).map_err(|detail| {
            OciError::invalid(format!("the Docker config file {}", path.display()), detail)
        }),
        Err(_) => Ok(RegistryAuth::Anonymous),
    }
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".docker/config.json"))
}

/// The names a registry is known by in a Docker config's `auths`.
fn aliases(registry: &str) -> Vec<String> {
    let mut names = vec![registry.to_owned()];
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        names.push("https://index.docker.io/v1/".into());
        names.push("index.docker.io".into());
        names.push("docker.io".into());
    }
    names
}

/// Credentials for `registry` in a Docker config file's bytes.
pub fn from_docker_config(bytes: &[u8], registry: &str) -> Result<RegistryAuth, String> {
    if bytes.len() > 1 << 20 {
        return Err("it is larger than 1 MiB".into());
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let wanted = aliases(registry);
    let entry = auths.iter().find(|(key, _)| {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        wanted.iter().any(|w| w == *key || w == host)
    });
    let Some((_, entry)) = entry else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| format!("the auth entry for {registry} is not base64"))?;
        let text = String::from_utf8(raw)
            .map_err(|_| format!("the auth entry for {registry} is not UTF-8"))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| format!("the auth entry for {registry} is not USER:PASSWORD"))?;
        return Ok(RegistryAuth::Basic(u.to_owned(), p.to_owned()));
    }
    match (
        entry.get("username").and_then(|u| u.as_str()),
        entry.get("password").and_then(|p| p.as_str()),
    ) {
        (Some(u), Some(p)) => Ok(RegistryAuth::Basic(u.to_owned(), p.to_owned())),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

#[cfg(test)]
mod tests;

//! Checks on what callers pass: names, labels, guest paths, quotas.

use super::*;

/// Reads the quota.
pub fn max_workspaces() -> Result<usize, CoreError> {
    match std::env::var("PYRO_MAX_WORKSPACES") {
        Ok(v) if !v.is_empty() => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            CoreError::invalid(format!(
                "PYRO_MAX_WORKSPACES must be a positive number, got {v:?}"
            ))
        }),
        _ => Ok(DEFAULT_MAX_WORKSPACES),
    }
}

pub(super) fn expiry_grace() -> u64 {
    std::env::var("PYRO_EXPIRY_GRACE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_EXPIRY_GRACE_SECONDS)
}

/// Checks a workspace name: 1-64 printable characters after trimming.
pub fn valid_name(name: &str) -> Result<String, CoreError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(CoreError::invalid(format!(
            "invalid workspace name {name:?}: use 1 to 64 printable characters"
        )));
    }
    Ok(n.to_owned())
}

/// Checks a label key and value.
pub fn valid_label(key: &str, value: &str) -> Result<(String, String), CoreError> {
    let k = key.trim();
    let ok_key = !k.is_empty()
        && k.len() <= 64
        && k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok_key {
        return Err(CoreError::invalid(format!(
            "invalid label key {key:?}: start with a letter or digit, then letters, digits, `.`, `_` or `-` (at most 64)"
        )));
    }
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 120 || v.chars().any(char::is_control) {
        return Err(CoreError::invalid(format!(
            "invalid value for label {k}: use 1 to 120 printable characters"
        )));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Resolves a guest path for file operations: relative paths are under
/// `/workspace`; absolute ones must be inside it.
pub fn guest_path(p: &str) -> Result<String, CoreError> {
    let p = p.trim();
    let full = if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("{WORKSPACE_ROOT}/{p}")
    };
    let path = Path::new(&full);
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(CoreError::invalid(format!(
            "{p:?} contains `..`; paths must stay inside {WORKSPACE_ROOT}"
        )));
    }
    if !path.starts_with(WORKSPACE_ROOT) {
        return Err(CoreError::invalid(format!(
            "{p:?} is outside {WORKSPACE_ROOT}; paths must stay inside it"
        )));
    }
    Ok(full.trim_end_matches('/').to_owned())
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

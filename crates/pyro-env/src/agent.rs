//! Finding the static guest agent binary that gets baked into environments.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{EnvError, sha256_file};

/// Environment variable naming the agent binary.
pub const AGENT_ENV: &str = "PYRO_AGENT_BIN";

/// Where the agent lives inside an environment.
pub const GUEST_PATH: &str = "usr/sbin/pyro-agent";

/// The agent binary to bake.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    /// Path on the host.
    pub path: PathBuf,
    /// Its SHA-256 (identifies the agent build).
    pub sha256: String,
}

/// Candidate locations, in order: `$PYRO_AGENT_BIN`, `pyro-agent` next to
/// the running executable, and the static build of a source checkout
/// (`target/x86_64-unknown-linux-gnu/release/pyro-agent` beside
/// `target/<profile>/pyro`).
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(AGENT_ENV).filter(|v| !v.is_empty()) {
        out.push(PathBuf::from(p));
        return out;
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        out.push(dir.join("pyro-agent"));
        if let Some(target) = dir.parent() {
            out.push(target.join("x86_64-unknown-linux-gnu/release/pyro-agent"));
        }
    }
    out
}

/// Finds a usable (static) agent binary.
pub fn locate() -> Result<AgentBinary, EnvError> {
    locate_among(&candidates())
}

/// The first static agent among `cands`; the error names each one looked
/// at and why any found was refused.
fn locate_among(cands: &[PathBuf]) -> Result<AgentBinary, EnvError> {
    let mut rejected = Vec::new();
    for path in cands {
        if !path.is_file() {
            continue;
        }
        match is_static_elf(path) {
            Ok(true) => {
                return Ok(AgentBinary {
                    sha256: sha256_file(path)?,
                    path: path.clone(),
                });
            }
            Ok(false) => rejected.push(format!("{} is dynamically linked", path.display())),
            Err(e) => rejected.push(format!("{}: {e}", path.display())),
        }
    }
    let looked = cands
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let why = if rejected.is_empty() {
        String::new()
    } else {
        format!(" ({})", rejected.join("; "))
    };
    Err(EnvError::Agent(format!(
        "cannot find a static pyro guest agent (looked at: {looked}){why}; build it with `make agent` \
         or point {AGENT_ENV} at it"
    )))
}

/// Whether `path` is an ELF executable without a program interpreter
/// (statically linked; a guest has none of the host's shared libraries).
pub fn is_static_elf(path: &Path) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut data = Vec::new();
    f.by_ref().take(1 << 20).read_to_end(&mut data)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 64-bit ELF file");
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Err(bad());
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let phoff = usize::try_from(u64_at(0x20).ok_or_else(bad)?).map_err(|_| bad())?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(bad)?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(bad)?);
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        let p_type = data.get(off..off + 4).ok_or_else(bad)?;
        if u32::from_le_bytes([p_type[0], p_type[1], p_type[2], p_type[3]]) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;

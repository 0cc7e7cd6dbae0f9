//! Secrets: values a workspace's commands can be given as environment
//! variables without the values ever reaching a record, a log, a disk
//! image or any output.
//!
//! ```text
//! workspaces/<id>/secrets.json    0600: {"layout_version":1,"secrets":{"NAME":"<base64>"},
//!                                        "redact_only":{"NAME":"<base64>"}}
//! ```
//!
//! The record keeps only the names. In the guest a value exists only in
//! the environment of the command, shell or service that asked for it
//! (`secret_env`; a service's logs then stay in memory), never
//! on the workspace's disk, so snapshots, forks, templates and exported
//! disks cannot carry it; a fork gets the origin's secrets only when asked.
//! Every output that leaves pyro for a workspace with secrets goes through
//! its [`Redactor`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::CoreError;
use crate::redact::{MIN_SECRET_BYTES, Redactor};

/// The store's file in a workspace's directory.
pub const SECRETS_FILE: &str = "secrets.json";

/// Version of `secrets.json`.
const SECRETS_LAYOUT_VERSION: u32 = 1;

/// Most secrets a workspace holds.
pub const MAX_SECRETS: usize = 32;

/// Largest secret value, bytes (a PEM private key fits).
pub const MAX_SECRET_BYTES: usize = 16 * 1024;

/// Most bytes of all a workspace's secrets together (each is matched in
/// about a dozen forms, up to three times its size).
pub const MAX_SECRETS_TOTAL_BYTES: usize = 64 * 1024;

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Given directly.
    Value(String),
    /// Read from a file on the host (one trailing newline dropped).
    File(PathBuf),
}

/// One secret asked for at create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// Its name (also the default variable name in a command).
    pub name: String,
    /// Its value's source.
    pub source: SecretSource,
}

/// A workspace's secrets: name to value.
pub type Secrets = BTreeMap<String, String>;

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    layout_version: u32,
    secrets: BTreeMap<String, String>,
    /// Values this workspace cannot hand out but still redacts: those of a
    /// fork's origin (its disk may hold what the origin's commands wrote).
    #[serde(default)]
    redact_only: BTreeMap<String, String>,
}

/// A workspace's store: the secrets it can give commands, and those it
/// only redacts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Store {
    /// Given to commands on request.
    pub usable: Secrets,
    /// Only redacted.
    pub redact_only: Secrets,
}

/// Checks a secret or variable name: a letter or `_`, then letters, digits
/// and `_`, at most 64 in all.
pub fn valid_name(what: &str, name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(format!(
            "{what} name {name:?} is not valid: use a letter or _, then letters, digits and _ \
             (at most 64), e.g. GITHUB_TOKEN"
        )))
    }
}

/// A secret given as `NAME=VALUE` (`file`: `NAME=PATH`), as the CLI
/// takes it.
pub fn parse_spec(given: &str, file: bool) -> Result<SecretSpec, CoreError> {
    let (arg, form) = if file {
        ("⟨arg:secret_file⟩", "NAME=PATH")
    } else {
        ("⟨arg:secret⟩", "NAME=VALUE")
    };
    let Some((name, value)) = given.split_once('=') else {
        return Err(CoreError::invalid(format!(
            "{arg} takes {form} (the value is never shown: a secret given without `=` is not \
             repeated here)"
        )));
    };
    let name = name.trim().to_owned();
    valid_name("secret", &name)?;
    Ok(SecretSpec {
        name,
        source: if file {
            SecretSource::File(PathBuf::from(value))
        } else {
            SecretSource::Value(value.to_owned())
        },
    })
}

/// Reads and checks the secrets asked for (nothing is stored yet).
pub fn resolve(specs: &[SecretSpec]) -> Result<Secrets, CoreError> {
    if specs.len() > MAX_SECRETS {
        return Err(CoreError::invalid(format!(
            "{} secrets were given; a workspace holds at most {MAX_SECRETS}",
            specs.len()
        )));
    }
    let mut out = Secrets::new();
    for s in specs {
        valid_name("secret", &s.name)?;
        let value = match &s.source {
            SecretSource::Value(v) => v.clone(),
            SecretSource::File(p) => read_file(&s.name, p)?,
        };
        check_value(&s.name, &value)?;
        if out.insert(s.name.clone(), value).is_some() {
            return Err(CoreError::invalid(format!(
                "secret {} is given twice: give each name once",
                s.name
            )));
        }
    }
    let total: usize = out.values().map(String::len).sum();
    if total > MAX_SECRETS_TOTAL_BYTES {
        return Err(CoreError::invalid(format!(
            "the secrets come to {total} bytes; a workspace holds at most {} KiB of them",
            MAX_SECRETS_TOTAL_BYTES >> 10
        )));
    }
    Ok(out)
}

fn read_file(name: &str, path: &Path) -> Result<String, CoreError> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| {
        CoreError::invalid(format!(
            "secret {name}: cannot read {}: {e}; give a readable file",
            path.display()
        ))
    })?;
    let mut buf = Vec::new();
    f.take(MAX_SECRET_BYTES as u64 + 2)
        .read_to_end(&mut buf)
        .map_err(|e| CoreError::io(format!("reading secret {name} from {}", path.display()), e))?;
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    String::from_utf8(buf).map_err(|_| {
        CoreError::invalid(format!(
            "secret {name}: {} is not UTF-8 text; a secret becomes an environment variable, so \
             it must be text (base64-encode binary values)",
            path.display()
        ))
    })
}

fn check_value(name: &str, value: &str) -> Result<(), CoreError> {
    if value.len() < MIN_SECRET_BYTES {
        return Err(CoreError::invalid(format!(
            "secret {name} is shorter than {MIN_SECRET_BYTES} bytes: a value that short cannot \
             be redacted without mangling other output"
        )));
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(CoreError::invalid(format!(
            "secret {name} is longer than {} KiB",
            MAX_SECRET_BYTES >> 10
        )));
    }
    if value.contains('\0') {
        return Err(CoreError::invalid(format!(
            "secret {name} holds a NUL byte, which no environment variable can"
        )));
    }
    Ok(())
}

/// Saves `store` in workspace directory `dir`: written 0600 beside the
/// file and renamed over it, so the store is whole or absent.
pub fn save(dir: &Path, store: &Store) -> Result<(), CoreError> {
    let path = dir.join(SECRETS_FILE);
    if store.usable.is_empty() && store.redact_only.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CoreError::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        };
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let enc = |m: &Secrets| -> BTreeMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), b64.encode(v))).collect()
    };
    let stored = Stored {
        layout_version: SECRETS_LAYOUT_VERSION,
        secrets: enc(&store.usable),
        redact_only: enc(&store.redact_only),
    };
    let tmp = dir.join(format!(".{SECRETS_FILE}.tmp"));
    let io = |e| CoreError::io(format!("writing {}", tmp.display()), e);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(&serde_json::to_vec(&stored).unwrap_or_default())
        .and_then(|()| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// The store in workspace directory `dir` (empty when there is none).
pub fn load(dir: &Path) -> Result<Store, CoreError> {
    let path = dir.join(SECRETS_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Store::default()),
        Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
    };
    let damaged = || {
        CoreError::State(format!(
            "{} is damaged; delete the workspace and create it again with its secrets",
            path.display()
        ))
    };
    let stored: Stored = serde_json::from_slice(&data).map_err(|_| damaged())?;
    if stored.layout_version != SECRETS_LAYOUT_VERSION {
        return Err(damaged());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let dec = |m: BTreeMap<String, String>| -> Result<Secrets, CoreError> {
        m.into_iter()
            .map(|(k, v)| {
                let v = b64.decode(v).map_err(|_| damaged())?;
                Ok((k, String::from_utf8(v).map_err(|_| damaged())?))
            })
            .collect()
    };
    Ok(Store {
        usable: dec(stored.secrets)?,
        redact_only: dec(stored.redact_only)?,
    })
}

/// The redactor of everything `store` redacts: the secrets it gives
/// commands and those it only redacts.
pub fn store_redactor(store: &Store) -> Redactor {
    Redactor::new(
        store
            .usable
            .iter()
            .chain(store.redact_only.iter())
            .map(|(k, v)| (k.as_str(), v.as_bytes())),
    )
}

/// The variables a command gets for `asks` (each `SECRET` or
/// `SECRET=VARIABLE`).
pub fn env_for(secrets: &Secrets, asks: &[String]) -> Result<BTreeMap<String, String>, CoreError> {
    let mut env = BTreeMap::new();
    for a in asks {
        let (name, var) = a.split_once('=').unwrap_or((a, a));
        let Some(value) = secrets.get(name) else {
            let known: Vec<&str> = secrets.keys().map(String::as_str).collect();
            return Err(CoreError::invalid(format!(
                "⟨arg:secret_env⟩ names secret {name:?}, which this workspace does not have{}",
                if known.is_empty() {
                    "; it has none (give them at create with ⟨arg:secret⟩)".to_owned()
                } else {
                    format!("; it has {}", known.join(", "))
                }
            )));
        };
        valid_name("variable", var)?;
        if env.insert(var.to_owned(), value.clone()).is_some() {
            return Err(CoreError::invalid(format!(
                "⟨arg:secret_env⟩ sets variable {var} twice"
            )));
        }
    }
    Ok(env)
}

/// A result that can quote the guest: redacted before it leaves core.
pub(super) trait Redact {
    /// Replaces every form of `r`'s secrets, counting them.
    fn redact(&mut self, r: &Redactor);
}

impl super::Workspaces {
    /// `work`'s result (or error) for workspace `id`, with its secrets
    /// redacted.
    pub(super) async fn redacted<T: Redact>(
        &self,
        id: &str,
        work: impl std::future::Future<Output = Result<T, CoreError>>,
    ) -> Result<T, CoreError> {
        let r = self.redactor(id)?;
        match work.await {
            Ok(mut v) => {
                v.redact(&r);
                Ok(v)
            }
            Err(e) => Err(e.redact(&r)),
        }
    }

    /// Workspace `id`'s store, checked against its record: a record
    /// naming secrets the store lacks is an error, never a workspace
    /// whose output goes out unredacted.
    pub(super) fn store_of(&self, id: &str) -> Result<Store, CoreError> {
        let names = super::record::load(&self.paths, id)
            .map(|r| r.secrets)
            .unwrap_or_default();
        let store = load(&self.dir(id))?;
        if let Some(n) = names.iter().find(|n| !store.usable.contains_key(*n)) {
            return Err(CoreError::State(format!(
                "workspace {id}'s secret {n} is missing from its store ({}); delete the \
                 workspace and create it again with its secrets",
                self.dir(id).join(SECRETS_FILE).display()
            )));
        }
        Ok(store)
    }

    /// Workspace `id`'s secrets it can give commands (none when it has
    /// none).
    pub(super) fn secrets_of(&self, id: &str) -> Result<Secrets, CoreError> {
        Ok(self.store_of(id)?.usable)
    }

    /// The redactor of everything workspace `id` redacts.
    pub fn redactor(&self, id: &str) -> Result<Redactor, CoreError> {
        Ok(store_redactor(&self.store_of(id)?))
    }
}

/// `env` with the variables of `asks` added (a variable set by both is
/// refused).
pub fn merge_env(
    secrets: &Secrets,
    env: &BTreeMap<String, String>,
    asks: &[String],
) -> Result<BTreeMap<String, String>, CoreError> {
    let mut env = env.clone();
    for (var, value) in env_for(secrets, asks)? {
        if env.insert(var.clone(), value).is_some() {
            return Err(CoreError::invalid(format!(
                "variable {var} is set by both ⟨arg:env⟩ and ⟨arg:secret_env⟩: set it once"
            )));
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests;

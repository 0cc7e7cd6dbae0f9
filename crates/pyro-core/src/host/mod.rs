//! Connecting chat hosts (Claude Code, Codex, OpenCode) to `pyro mcp
//! serve`: each host's own configuration file, in its own format, edited
//! in place.
//!
//! - `connect` merges one `pyro` server entry into the file. A second run
//!   with the same settings changes nothing. Before it changes a file that
//!   is not what an earlier `connect` left, it copies it to
//!   `<file>.pyro-backup` (replacing an older backup; one run over its own
//!   untouched entry, to switch profiles, keeps it). Nothing outside the
//!   entry is rewritten: JSON is edited by byte offsets ([`json_edit`]),
//!   TOML with `toml_edit`.
//! - `disconnect` removes only what `connect` added. When the file is
//!   byte for byte what `connect` left and the backup is the one it made
//!   (by hash), the backup comes back byte for byte (or the file is
//!   removed, when `connect` created it). Otherwise only the entry (and a
//!   container that `connect` created and that is now empty) is cut out,
//!   after the file is copied to the backup.
//!
//! What `connect` did is kept in `$PYRO_HOME/hosts/` (under the `hosts`
//! lock), keyed by the file's path.

pub mod json_edit;
mod toml_edit_member;

use crate::{CoreError, Paths};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The server's name in every host's configuration.
pub const SERVER_NAME: &str = "pyro";

/// Codex's per-call limit that `connect` writes: pyro's own calls are
/// bounded well below it, and long work continues behind handles.
pub const CODEX_TOOL_TIMEOUT_SECONDS: i64 = 300;

/// A chat host pyro can configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Host {
    /// Claude Code (`.mcp.json`, `~/.claude.json`).
    ClaudeCode,
    /// Codex (`config.toml`).
    Codex,
    /// OpenCode (`opencode.json`).
    #[serde(rename = "opencode")]
    OpenCode,
}

impl Host {
    /// Every host, in the order help and docs list them.
    pub const ALL: [Host; 3] = [Host::ClaudeCode, Host::Codex, Host::OpenCode];

    /// The name front ends show and accept.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude-code",
            Self::Codex => "codex",
            Self::OpenCode => "opencode",
        }
    }

    /// The host named `name`.
    pub fn from_name(name: &str) -> Result<Self, CoreError> {
        Self::ALL
            .into_iter()
            .find(|h| h.name() == name)
            .ok_or_else(|| {
                CoreError::invalid(format!(
                    "unknown chat host `{name}`: use one of claude-code, codex, opencode"
                ))
            })
    }
}

/// Whose configuration: the user's (every project), or this project's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The user's own file, for every project.
    User,
    /// A file in the current directory (for a repository).
    Project,
}

/// Where the hosts keep their files: from the environment, or set by a
/// test.
#[derive(Debug, Clone)]
pub struct HostDirs {
    /// `$HOME`.
    pub home: PathBuf,
    /// The project directory (project scope).
    pub project: PathBuf,
    /// `$CODEX_HOME` (Codex's own directory), when set.
    pub codex_home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, when set.
    pub xdg_config_home: Option<PathBuf>,
}

impl HostDirs {
    /// From `HOME`, `CODEX_HOME`, `XDG_CONFIG_HOME`; the project is the
    /// working directory.
    pub fn from_env() -> Result<Self, CoreError> {
        let project = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = var("HOME").ok_or_else(|| {
            CoreError::invalid("HOME is not set: set it to find the chat hosts' user files")
        })?;
        Ok(Self {
            home,
            project,
            codex_home: var("CODEX_HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
        })
    }

    /// The file `host` reads at `scope`.
    pub fn config_file(&self, host: Host, scope: Scope) -> PathBuf {
        match (host, scope) {
            (Host::ClaudeCode, Scope::User) => self.home.join(".claude.json"),
            (Host::ClaudeCode, Scope::Project) => self.project.join(".mcp.json"),
            (Host::Codex, Scope::User) => self
                .codex_home
                .clone()
                .unwrap_or_else(|| self.home.join(".codex"))
                .join("config.toml"),
            (Host::Codex, Scope::Project) => self.project.join(".codex/config.toml"),
            (Host::OpenCode, Scope::User) => self
                .xdg_config_home
                .clone()
                .unwrap_or_else(|| self.home.join(".config"))
                .join("opencode/opencode.json"),
            (Host::OpenCode, Scope::Project) => self.project.join("opencode.json"),
        }
    }
}

/// The command a host runs to start the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerCommand {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl ServerCommand {
    /// The command for the `pyro` at `exe` serving `profile`: that exact
    /// path, so the host needs no `PATH`; or, when `exe` lives in an
    /// ephemeral `uvx` environment (which uv may delete), `uvx --from
    /// pyro-mcp==VERSION pyro`, pinned to this version (older versions of
    /// the name are another implementation).
    pub fn for_exe(exe: &Path, profile: &str) -> Self {
        let serve = ["mcp", "serve", "--profile", profile].map(str::to_owned);
        let ephemeral = exe.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            c.strip_prefix("archive-v")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|d| d.is_ascii_digit()))
        });
        if ephemeral {
            let from = format!("pyro-mcp=={}", env!("CARGO_PKG_VERSION"));
            let mut args: Vec<String> = vec!["--from".to_owned(), from, "pyro".to_owned()];
            args.extend(serve);
            return Self {
                command: "uvx".to_owned(),
                args,
            };
        }
        Self {
            command: exe.to_string_lossy().into_owned(),
            args: serve.into(),
        }
    }

    /// For the running program.
    pub fn current(profile: &str) -> Result<Self, CoreError> {
        let exe = std::env::current_exe()
            .map_err(|e| CoreError::io("finding the running pyro program", e))?;
        Ok(Self::for_exe(&exe, profile))
    }
}

/// What `print-config` shows and `connect` writes.
#[derive(Debug, Clone, Serialize)]
pub struct HostConfig {
    /// The host.
    pub host: Host,
    /// The scope.
    pub scope: Scope,
    /// The file the entry belongs in.
    pub file: PathBuf,
    /// The server command.
    pub server: ServerCommand,
    /// The entry in the file's own format, as a whole document holding
    /// only it.
    pub snippet: String,
}

/// The entry for `host` at `scope`, without writing anything.
pub fn print_config(
    dirs: &HostDirs,
    host: Host,
    scope: Scope,
    server: ServerCommand,
) -> HostConfig {
    let snippet = match format_of(host) {
        Format::Json { container } => {
            json_edit::upsert("", container, SERVER_NAME, &json_entry(host, &server))
                .expect("an empty document takes an entry")
                .0
        }
        Format::Toml => {
            toml_edit_member::upsert("", "mcp_servers", SERVER_NAME, &toml_entry(&server))
                .expect("an empty document takes an entry")
                .0
        }
    };
    HostConfig {
        host,
        scope,
        file: dirs.config_file(host, scope),
        server,
        snippet,
    }
}

enum Format {
    Json { container: &'static str },
    Toml,
}

fn format_of(host: Host) -> Format {
    match host {
        Host::ClaudeCode => Format::Json {
            container: "mcpServers",
        },
        Host::OpenCode => Format::Json { container: "mcp" },
        Host::Codex => Format::Toml,
    }
}

fn json_entry(host: Host, s: &ServerCommand) -> serde_json::Value {
    match host {
        Host::OpenCode => {
            let mut command = vec![s.command.clone()];
            command.extend(s.args.iter().cloned());
            serde_json::json!({ "type": "local", "command": command, "enabled": true })
        }
        _ => serde_json::json!({
            "type": "stdio", "command": s.command, "args": s.args, "env": {}
        }),
    }
}

fn toml_entry(s: &ServerCommand) -> Vec<(&'static str, toml_edit::Value)> {
    let args: toml_edit::Array = s.args.iter().collect();
    vec![
        ("command", s.command.as_str().into()),
        ("args", args.into()),
        ("tool_timeout_sec", CODEX_TOOL_TIMEOUT_SECONDS.into()),
    ]
}

/// What `connect` or `disconnect` did.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The host.
    pub host: Host,
    /// The scope.
    pub scope: Scope,
    /// The file.
    pub file: PathBuf,
    /// Whether the file changed (false: it already was as asked).
    pub changed: bool,
    /// The copy of the file as it was before this change (or before the
    /// `connect` a disconnect would undo).
    pub backup: Option<PathBuf>,
    /// `disconnect` only: the file was put back byte for byte from the
    /// backup (or removed, as `connect` had created it).
    pub restored: bool,
    /// What happened, in a sentence.
    pub summary: String,
}

/// What `connect` did to a file, for `disconnect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    version: u32,
    file: PathBuf,
    /// The file did not exist before.
    created_file: bool,
    /// The container (`mcpServers`, `mcp`, `mcp_servers`) did not exist.
    created_container: bool,
    /// sha256 of the file as `connect` left it.
    after_sha256: String,
    /// sha256 of the backup `connect` made (the file before it): only a
    /// backup with this hash is ever restored.
    backup_sha256: Option<String>,
}

const RECORD_VERSION: u32 = 2;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn record_path(paths: &Paths, file: &Path) -> PathBuf {
    let key = sha256_hex(file.as_os_str().as_encoded_bytes());
    paths
        .state()
        .join("hosts")
        .join(format!("{}.json", &key[..32]))
}

fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".pyro-backup");
    file.with_file_name(name)
}

/// The file to edit. A user's own config that is a symbolic link
/// (dotfile managers) is edited where it points, so the link survives; a
/// project's may not lead outside the project (a checkout could point
/// `.mcp.json` at any file on the host).
fn resolve(file: &Path, scope: Scope, dirs: &HostDirs) -> Result<PathBuf, CoreError> {
    let mut existing = file.to_owned();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_owned();
            }
            _ => break,
        }
    }
    let mut real = std::fs::canonicalize(&existing).map_err(|e| {
        CoreError::invalid(format!(
            "{} cannot be followed ({e}): if it is a symbolic link to nothing, point it at a \
             file or remove it, then try again",
            existing.display()
        ))
    })?;
    real.extend(rest.iter().rev());
    if scope == Scope::Project {
        let root = std::fs::canonicalize(&dirs.project).map_err(|e| {
            CoreError::io(
                format!("reading the project directory {}", dirs.project.display()),
                e,
            )
        })?;
        if !real.starts_with(&root) {
            return Err(CoreError::invalid(format!(
                "{} leads outside the project (to {}) through a symbolic link; pyro edits \
                 project files only inside the project: replace the link with a file, or use \
                 ⟨arg:scope=user⟩",
                file.display(),
                real.display()
            )));
        }
    }
    Ok(real)
}

fn read(file: &Path) -> Result<Option<Vec<u8>>, CoreError> {
    match std::fs::read(file) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CoreError::io(format!("reading {}", file.display()), e)),
    }
}

fn text_of(file: &Path, bytes: &[u8]) -> Result<String, CoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        CoreError::invalid(format!(
            "{} is not UTF-8 text: fix or move it, then try again",
            file.display()
        ))
    })
}

fn broken(file: &Path, why: &str) -> CoreError {
    CoreError::invalid(format!(
        "{} cannot be read as its host's configuration ({why}); nothing was changed: fix the \
         file or move it aside, then try again",
        file.display()
    ))
}

/// The mode and owner a new version of `like` gets: its own, or for a new
/// file 0644 in a project and 0600 for a user's own.
fn attrs_of(like: &Path, scope: Scope) -> (u32, Option<(u32, u32)>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::fs::metadata(like) {
        Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(_) if scope == Scope::Project => (0o644, None),
        Err(_) => (0o600, None),
    }
}

/// Writes `bytes` to `file` atomically (a temp file beside it, renamed
/// over it) with `attrs` (mode, and owner when pyro may set it).
fn write(file: &Path, bytes: &[u8], attrs: (u32, Option<(u32, u32)>)) -> Result<(), CoreError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
    let ctx = |what: &str| format!("{what} {}", file.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".pyro-")
        .tempfile_in(dir)
        .map_err(|e| CoreError::io(ctx("creating a temp file beside"), e))?;
    tmp.write_all(bytes)
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(attrs.0))
        })
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| CoreError::io(ctx("writing"), e))?;
    if let Some((uid, gid)) = attrs.1 {
        // Only root may give a file away; anyone else keeps their own.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid));
    }
    tmp.persist(file)
        .map_err(|e| CoreError::io(ctx("replacing"), e.error))?;
    Ok(())
}

fn load_record(path: &Path) -> Option<Record> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<Record>(&bytes)
        .ok()
        .filter(|r| r.version == RECORD_VERSION)
}

fn save_record(path: &Path, r: &Record) -> Result<(), CoreError> {
    let dir = path.parent().expect("records live in a directory");
    std::fs::create_dir_all(dir)
        .map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
    let bytes = serde_json::to_vec_pretty(r).expect("a record serializes");
    pyro_env::write_atomic(path, &bytes).map_err(CoreError::from)
}

/// Adds (or updates) the `pyro` entry in `host`'s file at `scope`.
pub fn connect(
    paths: &Paths,
    dirs: &HostDirs,
    host: Host,
    scope: Scope,
    server: ServerCommand,
) -> Result<Change, CoreError> {
    let _lock = paths.lock("hosts")?;
    let file = resolve(&dirs.config_file(host, scope), scope, dirs)?;
    let before = read(&file)?;
    let text = match &before {
        Some(b) => text_of(&file, b)?,
        None => String::new(),
    };
    let (after, created_container) = match format_of(host) {
        Format::Json { container } => {
            let want = json_entry(host, &server);
            if json_edit::get(&text, container, SERVER_NAME).map_err(|e| broken(&file, &e))?
                == Some(want.clone())
            {
                (None, false)
            } else {
                let (t, c) = json_edit::upsert(&text, container, SERVER_NAME, &want)
                    .map_err(|e| broken(&file, &e))?;
                (Some(t), c)
            }
        }
        Format::Toml => {
            let want = toml_entry(&server);
            let have = toml_edit_member::get(&text, "mcp_servers", SERVER_NAME)
                .map_err(|e| broken(&file, &e))?;
            let same = have.is_some_and(|t| {
                want.iter().all(|(k, v)| {
                    let v = toml::from_str::<toml::Table>(&format!("x = {v}"))
                        .ok()
                        .and_then(|mut x| x.remove("x"));
                    v.is_some() && t.get(*k) == v.as_ref()
                })
            });
            if same {
                (None, false)
            } else {
                let (t, c) = toml_edit_member::upsert(&text, "mcp_servers", SERVER_NAME, &want)
                    .map_err(|e| broken(&file, &e))?;
                (Some(t), c)
            }
        }
    };
    let backup = backup_path(&file);
    let Some(after) = after else {
        return Ok(Change {
            host,
            scope,
            summary: format!("{} already runs this pyro; nothing changed", file.display()),
            backup: backup.exists().then_some(backup),
            file,
            changed: false,
            restored: false,
        });
    };
    let rec_path = record_path(paths, &file);
    // Connecting over pyro's own earlier connect (the file untouched since)
    // keeps that connect's account of what the file was, and its backup.
    let earlier = load_record(&rec_path).filter(|r| {
        before
            .as_ref()
            .is_some_and(|b| sha256_hex(b) == r.after_sha256)
    });
    let attrs = attrs_of(&file, scope);
    let backup_sha256 = match (&earlier, &before) {
        (Some(r), _) => r.backup_sha256.clone(),
        (None, Some(b)) => {
            // The file as it is now is what a disconnect gives back; an
            // older backup (of a connect since undone or edited over) is
            // replaced.
            write(&backup, b, attrs)?;
            Some(sha256_hex(b))
        }
        (None, None) => None,
    };
    let record = Record {
        version: RECORD_VERSION,
        file: file.clone(),
        created_file: earlier
            .as_ref()
            .map_or(before.is_none(), |r| r.created_file),
        created_container: earlier
            .as_ref()
            .map_or(created_container, |r| r.created_container),
        after_sha256: sha256_hex(after.as_bytes()),
        backup_sha256,
    };
    // The record first: killed between the two, the record names a file
    // that never was, and is ignored.
    save_record(&rec_path, &record)?;
    write(&file, after.as_bytes(), attrs)?;
    Ok(Change {
        host,
        scope,
        summary: format!(
            "{} now starts `{} {}`",
            file.display(),
            server.command,
            server.args.join(" ")
        ),
        backup: backup.exists().then_some(backup),
        file,
        changed: true,
        restored: false,
    })
}

/// Removes what [`connect`] added to `host`'s file at `scope`.
pub fn disconnect(
    paths: &Paths,
    dirs: &HostDirs,
    host: Host,
    scope: Scope,
) -> Result<Change, CoreError> {
    let _lock = paths.lock("hosts")?;
    let file = resolve(&dirs.config_file(host, scope), scope, dirs)?;
    let rec_path = record_path(paths, &file);
    let record = load_record(&rec_path);
    let backup = backup_path(&file);
    let unchanged = |summary: String, file: PathBuf| Change {
        host,
        scope,
        file,
        changed: false,
        backup: None,
        restored: false,
        summary,
    };
    let Some(bytes) = read(&file)? else {
        let _ = std::fs::remove_file(&rec_path);
        return Ok(unchanged(
            format!("{} does not exist; nothing to remove", file.display()),
            file,
        ));
    };
    let attrs = attrs_of(&file, scope);
    // Untouched since connect: put the original back exactly (when its
    // backup is the one that connect made).
    if let Some(r) = record
        .as_ref()
        .filter(|r| r.after_sha256 == sha256_hex(&bytes))
    {
        let original = match &r.backup_sha256 {
            Some(want) => read(&backup)?.filter(|b| sha256_hex(b) == *want),
            None => None,
        };
        let summary = if r.created_file {
            std::fs::remove_file(&file)
                .map_err(|e| CoreError::io(format!("removing {}", file.display()), e))?;
            Some(format!(
                "removed {}, which pyro had created",
                file.display()
            ))
        } else if let Some(original) = original {
            write(&file, &original, attrs)?;
            let _ = std::fs::remove_file(&backup);
            Some(format!("restored {} as it was before pyro", file.display()))
        } else {
            // The backup is gone or was changed: cut the entry out below.
            None
        };
        if let Some(summary) = summary {
            let _ = std::fs::remove_file(&rec_path);
            return Ok(Change {
                host,
                scope,
                file,
                changed: true,
                backup: None,
                restored: true,
                summary,
            });
        }
    }
    // Edited since: cut out only the entry.
    let text = text_of(&file, &bytes)?;
    let drop_container = record.as_ref().is_some_and(|r| r.created_container);
    let cut = match format_of(host) {
        Format::Json { container } => {
            json_edit::remove(&text, container, SERVER_NAME, drop_container)
        }
        Format::Toml => toml_edit_member::remove(&text, "mcp_servers", SERVER_NAME, drop_container),
    }
    .map_err(|e| broken(&file, &e))?;
    let Some(after) = cut else {
        let _ = std::fs::remove_file(&rec_path);
        return Ok(unchanged(
            format!(
                "{} has no `{SERVER_NAME}` entry; nothing to remove",
                file.display()
            ),
            file,
        ));
    };
    // Nothing changes without a copy of what it was: the backup now holds
    // the file before this disconnect (no record names it, so it is never
    // restored over anything).
    write(&backup, &bytes, attrs)?;
    let _ = std::fs::remove_file(&rec_path);
    write(&file, after.as_bytes(), attrs)?;
    Ok(Change {
        host,
        scope,
        summary: format!(
            "removed the `{SERVER_NAME}` entry from {} (it was edited since pyro connected, so \
             the rest stays as it is now; the file before this change is {})",
            file.display(),
            backup.display()
        ),
        file,
        changed: true,
        backup: Some(backup),
        restored: false,
    })
}

#[cfg(test)]
mod tests;

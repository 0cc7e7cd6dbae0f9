//! The per-VM denial log: one JSON line per refused connection or DNS
//! query, bounded on disk (the current file and one older generation).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The current log file's name in the network directory.
pub const LOG_FILE: &str = "denials.jsonl";
/// The previous generation's name.
pub const OLD_LOG_FILE: &str = "denials.old.jsonl";
/// Size at which the current file becomes the previous generation.
pub const ROTATE_BYTES: u64 = 256 << 10;

/// One denial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Denial {
    /// When (seconds since the epoch, with fractions).
    pub time: f64,
    /// What was refused: `tcp`, `udp`, `icmp`, another protocol number, or
    /// `dns` for a refused name.
    pub protocol: String,
    /// The destination address (absent for a refused name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Ipv4Addr>,
    /// The destination port (TCP and UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The name asked for (a refused DNS query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The rule that refused it (see `rules::rule_names`).
    pub rule: String,
    /// An entry standing for this many refused DNS queries that were not
    /// logged one by one (over the log rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlogged: Option<u64>,
}

/// Appends denials, rotating the file when it grows past [`ROTATE_BYTES`].
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    file: File,
    size: u64,
}

impl Writer {
    /// Opens (creating) the log in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_owned(),
            file,
            size,
        })
    }

    /// Appends one entry.
    pub fn append(&mut self, d: &Denial) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(d).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self.size + line.len() as u64 > ROTATE_BYTES {
            std::fs::rename(self.dir.join(LOG_FILE), self.dir.join(OLD_LOG_FILE))?;
            *self = Self::open(&self.dir)?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// The newest `limit` denials (oldest first) and how many are on record
/// in all. Lines that do not parse are skipped.
pub fn read_recent(dir: &Path, limit: usize) -> (Vec<Denial>, u64) {
    let mut all = std::collections::VecDeque::new();
    let mut total = 0u64;
    for name in [OLD_LOG_FILE, LOG_FILE] {
        let Ok(f) = File::open(dir.join(name)) else {
            continue;
        };
        // The files are bounded by rotation; lines beyond 4 KiB are not
        // ours and are skipped.
        for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
            if line.len() > 4096 {
                continue;
            }
            if let Ok(d) = serde_json::from_slice::<Denial>(&line) {
                total += 1;
                all.push_back(d);
                if all.len() > limit {
                    all.pop_front();
                }
            }
        }
    }
    (all.into_iter().collect(), total)
}

/// How many denials are on record.
pub fn count(dir: &Path) -> u64 {
    read_recent(dir, 0).1
}

#[cfg(test)]
mod tests;

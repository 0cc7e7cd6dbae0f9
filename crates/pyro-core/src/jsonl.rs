//! Reading the JSON-lines streams the agent sends for listings and
//! manifests, from a spool file on the host: one line at a time (each at
//! most [`MAX_LINE_BYTES`]), paths checked and in tree order, so memory
//! stays flat whatever the file count and a misbehaving guest cannot make
//! the host read outside a tree or merge two streams wrongly.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::Path;

use pyro_protocol::{FileEntry, MAX_LINE_BYTES, ManifestEntry, tree_order};
use serde::de::DeserializeOwned;

use crate::CoreError;

/// A streamed entry: its path and whether that path is acceptable.
pub trait Entry: DeserializeOwned {
    /// The entry's path.
    fn path(&self) -> &str;
    /// Why the path is not acceptable, if it is not.
    fn bad_path(&self) -> Option<&'static str>;
}

/// Whether `p` is a clean relative path: no empty, `.` or `..` components,
/// not absolute, no NUL.
pub fn clean_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Entry for ManifestEntry {
    fn path(&self) -> &str {
        &self.path
    }
    fn bad_path(&self) -> Option<&'static str> {
        (!clean_relative(&self.path)).then_some("a manifest path that is not a clean relative path")
    }
}

impl Entry for FileEntry {
    fn path(&self) -> &str {
        &self.path
    }
    fn bad_path(&self) -> Option<&'static str> {
        (!self.path.strip_prefix('/').is_some_and(clean_relative))
            .then_some("a listed path that is not a clean absolute path")
    }
}

fn hostile(what: &str) -> CoreError {
    CoreError::Transport(format!(
        "the guest agent sent {what}; the guest is misbehaving: reset or delete the workspace"
    ))
}

/// Entries from a spool file, in tree order; a repeated path (two names the
/// agent could only send the same way) is skipped.
#[derive(Debug)]
pub struct Lines<T> {
    rd: BufReader<File>,
    buf: Vec<u8>,
    last: Option<String>,
    _entry: PhantomData<T>,
}

impl<T: Entry> Lines<T> {
    /// Opens a spool file.
    pub fn open(path: &Path) -> Result<Self, CoreError> {
        let f = File::open(path)
            .map_err(|e| CoreError::io(format!("reading {}", path.display()), e))?;
        Ok(Self {
            rd: BufReader::with_capacity(64 << 10, f),
            buf: Vec::new(),
            last: None,
            _entry: PhantomData,
        })
    }

    fn next_line(&mut self) -> Result<bool, CoreError> {
        self.buf.clear();
        let n = (&mut self.rd)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| CoreError::io("reading a spooled listing", e))?;
        if n == 0 {
            return Ok(false);
        }
        if self.buf.last() != Some(&b'\n') {
            return Err(hostile(if n > MAX_LINE_BYTES {
                "a listing line over the length limit"
            } else {
                "a listing that ends mid-line"
            }));
        }
        Ok(true)
    }
}

impl<T: Entry> Iterator for Lines<T> {
    type Item = Result<T, CoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_line() {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => return Some(Err(e)),
            }
            let entry: T = match serde_json::from_slice(&self.buf) {
                Ok(e) => e,
                Err(e) => {
                    // The line itself (bounded, escaped) is the evidence a
                    // report needs; it is the guest's, so never shown raw.
                    let shown: String = String::from_utf8_lossy(&self.buf)
                        .chars()
                        .take(200)
                        .flat_map(char::escape_default)
                        .collect();
                    return Some(Err(hostile(&format!(
                        "a malformed listing line ({e}): {shown}"
                    ))));
                }
            };
            if let Some(why) = entry.bad_path() {
                return Some(Err(hostile(why)));
            }
            if let Some(last) = &self.last {
                match tree_order(last, entry.path()) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => continue,
                    std::cmp::Ordering::Greater => {
                        return Some(Err(hostile("a listing out of order")));
                    }
                }
            }
            self.last = Some(entry.path().to_owned());
            return Some(Ok(entry));
        }
    }
}

#[cfg(test)]
mod tests;

//! Service logs on the guest's disk, bounded by rotation.
//!
//! Each stream of a service is a file (`<dir>/<name>/stdout`) of at most
//! [`FILE_MAX`] bytes and the one before it (`stdout.1`); when the file is
//! full it becomes `stdout.1` and a new one starts. Offsets count from the
//! service's start, so a reader asks for "everything after offset N" and is
//! told how much of what it asked for was rotated away. The offset where
//! the current file starts is kept beside it (`stdout.base`), so the logs
//! of a service of an earlier boot read the same way.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use pyro_protocol::LogSpan;

/// Bytes of one log file (a stream keeps at most twice this).
pub const FILE_MAX: u64 = 2 << 20;
/// Most bytes of a stream one read sends.
pub const READ_MAX: usize = 1 << 20;
const DEFAULT_DIR: &str = "/var/lib/pyro/services";
/// Where the logs of a service with `memory_logs` go (a tmpfs).
const MEMORY_DIR: &str = "/run/pyro/services";

/// One of a service's two streams.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn file(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

fn root() -> &'static Path {
    ROOT.get_or_init(|| PathBuf::from(DEFAULT_DIR))
}

fn memory_root() -> &'static Path {
    MEMORY_ROOT.get_or_init(|| PathBuf::from(MEMORY_DIR))
}

static ROOT: OnceLock<PathBuf> = OnceLock::new();
static MEMORY_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// Service `name`'s log directory: in memory if its last start put it
/// there, else on the disk.
fn dir_of(name: &str) -> PathBuf {
    let m = memory_root().join(name);
    if m.is_dir() { m } else { root().join(name) }
}

struct Paths {
    current: PathBuf,
    rotated: PathBuf,
    base: PathBuf,
}

fn paths(name: &str, stream: Stream) -> Paths {
    paths_in(&dir_of(name), stream)
}

fn paths_in(dir: &Path, stream: Stream) -> Paths {
    let f = stream.file();
    Paths {
        current: dir.join(f),
        rotated: dir.join(format!("{f}.1")),
        base: dir.join(format!("{f}.base")),
    }
}

#[derive(Debug)]
struct State {
    file: Option<File>,
    /// Offset where the current file starts.
    base: u64,
    /// Bytes in the current file.
    size: u64,
    /// Bytes that could not be written.
    unsaved: u64,
}

/// Writes one stream of a running service.
#[derive(Debug)]
pub struct Writer {
    /// Its service's log directory, fixed when made (a later start of the
    /// name may log elsewhere).
    dir: PathBuf,
    stream: Stream,
    state: Mutex<State>,
}

impl Writer {
    /// Fresh, empty logs for service `name` (older ones of that name go),
    /// in memory (`memory`: never on the disk) or on the disk.
    pub fn create_pair(name: &str, memory: bool) -> io::Result<[Arc<Writer>; 2]> {
        let (dir, other) = if memory {
            (memory_root().join(name), root().join(name))
        } else {
            (root().join(name), memory_root().join(name))
        };
        match fs::remove_dir_all(&other) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir_all(&dir)?;
        let make = |stream: Stream| -> io::Result<Arc<Writer>> {
            let p = paths_in(&dir, stream);
            for f in [&p.rotated, &p.base] {
                match fs::remove_file(f) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            let file = File::create(&p.current)?;
            Ok(Arc::new(Writer {
                dir: dir.clone(),
                stream,
                state: Mutex::new(State {
                    file: Some(file),
                    base: 0,
                    size: 0,
                    unsaved: 0,
                }),
            }))
        };
        Ok([make(Stream::Stdout)?, make(Stream::Stderr)?])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `data`, rotating first when it would not fit. What cannot
    /// be written (a full disk) is counted, never waited on; the files stay
    /// consistent with the offsets whatever step fails.
    pub fn append(&self, data: &[u8]) {
        let mut g = self.lock();
        let n = data.len() as u64;
        let p = paths_in(&self.dir, self.stream);
        if g.file.is_some() && g.size > 0 && g.size + n > FILE_MAX {
            rotate(&p, &mut g);
        }
        if g.file.is_none() {
            // After a failed rotation: the current file goes on where it is.
            if let Ok(f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&p.current)
            {
                g.size = f.metadata().map_or(0, |m| m.len());
                g.file = Some(f);
            }
        }
        let mut done = 0;
        if let Some(f) = g.file.as_mut() {
            while done < data.len() {
                match f.write(&data[done..]) {
                    Ok(0) => break,
                    Ok(k) => done += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        g.size += done as u64;
        g.unsaved += n - done as u64;
    }
}

/// Makes the current file the rotated one and starts a new one. The new
/// base is written first: if anything fails, nothing moved, or the moved
/// file is the rotated one and the base says so.
fn rotate(p: &Paths, g: &mut State) {
    let next_base = g.base + g.size;
    let tmp = p.base.with_extension("base.tmp");
    if fs::write(&tmp, next_base.to_string()).is_err() {
        let _ = fs::remove_file(&tmp);
        return;
    }
    if fs::rename(&p.current, &p.rotated).is_err() {
        let _ = fs::remove_file(&tmp);
        return;
    }
    let _ = fs::rename(&tmp, &p.base);
    g.base = next_base;
    g.size = 0;
    g.file = File::create(&p.current).ok();
}

/// Copies a service's pipe into its log on a thread of its own, until the
/// last writer of the pipe closes it.
pub fn pump(fd: OwnedFd, log: Arc<Writer>) {
    let spawned = std::thread::Builder::new()
        .name("svclog".into())
        .spawn(move || {
            let mut src = File::from(fd);
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => log.append(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
    if spawned.is_err() {
        crate::log::error("could not start a service log thread; its output is discarded");
    }
}

/// Reads a stream from offset `at`, or its last `tail_lines` lines, at
/// most `max` bytes. `live` is the running service's writer (held still
/// while reading, so a rotation cannot move the files underneath).
pub fn read(
    name: &str,
    stream: Stream,
    live: Option<&Writer>,
    at: Option<u64>,
    tail_lines: u64,
    max: usize,
) -> io::Result<(Vec<u8>, LogSpan)> {
    let p = match live {
        Some(w) => paths_in(&w.dir, stream),
        None => paths(name, stream),
    };
    // The files are opened with the sizes under the writer's lock (a
    // rotation then cannot move them), and read after it: the service
    // never waits on a reader.
    let (base, size, unsaved, files) = {
        let guard = live.map(Writer::lock);
        let (base, size, unsaved) = match &guard {
            Some(g) => (g.base, g.size, g.unsaved),
            None => {
                let size = fs::symlink_metadata(&p.current)?.len();
                let base = fs::read_to_string(&p.base)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0)
                    .min(u64::MAX / 2);
                (base, size.min(u64::MAX / 4), 0)
            }
        };
        let rotated = File::open(&p.rotated).ok();
        let current = File::open(&p.current)?;
        (base, size, unsaved, (rotated, current))
    };
    let rotated_len = match &files.0 {
        Some(f) if base > 0 => f.metadata()?.len().min(base),
        _ => 0,
    };
    let start = base - rotated_len;
    let end = base + size;
    let max = max as u64;
    let (from, dropped, to) = match at {
        Some(at) => {
            let from = at.clamp(start, end.max(start));
            (from, from.saturating_sub(at), (from + max).min(end))
        }
        None => {
            let window_from = end.saturating_sub(max).max(start);
            let window = read_range(files, base, rotated_len, window_from, end)?;
            let cut = tail_start(&window, tail_lines);
            let from = window_from + cut as u64;
            let span = LogSpan {
                from,
                next: window_from + window.len() as u64,
                start,
                end,
                dropped: 0,
                unsaved,
            };
            return Ok((window[cut..].to_vec(), span));
        }
    };
    let data = read_range(files, base, rotated_len, from, to)?;
    let span = LogSpan {
        from,
        next: from + data.len() as u64,
        start,
        end,
        dropped,
        unsaved,
    };
    Ok((data, span))
}

/// Bytes `[from, to)` of a stream whose current file starts at `base` and
/// whose rotated file holds the `rotated_len` bytes before it.
fn read_range(
    (rotated, current): (Option<File>, File),
    base: u64,
    rotated_len: u64,
    from: u64,
    to: u64,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
    if from < base
        && let Some(mut f) = rotated
    {
        f.seek(SeekFrom::Start(from - (base - rotated_len)))?;
        f.take(base.min(to) - from).read_to_end(&mut out)?;
    }
    if to > base {
        let mut f = current;
        f.seek(SeekFrom::Start(from.max(base) - base))?;
        f.take(to - from.max(base)).read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Where the last `lines` lines of `window` start (a final newline ends
/// the last line, it does not start another).
fn tail_start(window: &[u8], lines: u64) -> usize {
    if lines == 0 {
        return window.len();
    }
    let body = window.strip_suffix(b"\n").unwrap_or(window);
    let mut seen = 0;
    for (i, c) in body.iter().enumerate().rev() {
        if *c == b'\n' {
            seen += 1;
            if seen == lines {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
pub(crate) mod tests;

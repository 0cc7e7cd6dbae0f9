//! Redaction of secret values from everything that leaves pyro.
//!
//! Each secret is matched as its exact text and in the encodings a command
//! is likely to print it in: base64 (standard and URL-safe alphabets, at
//! each of the three byte alignments a value can have inside a longer
//! encoded string), percent-encoding (upper and lower case) and hex (upper
//! and lower case). A match becomes `[redacted:NAME]`; callers report how
//! many were made, never what.
//!
//! [`Stream`] redacts output that arrives in pieces: it holds back the last
//! bytes of each piece that could begin a secret, so a value printed one
//! byte at a time is still caught. Where output is read in calls (a job's
//! output, a shell's), [`Redactor::settle`] redacts one call's bytes and
//! says how many at the end begin some secret's form: the caller leaves
//! those for the next call to read again, and nothing of a secret split
//! between two calls leaves.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;

/// Secrets shorter than this are refused: redacting a two-letter value
/// would mangle every output.
pub const MIN_SECRET_BYTES: usize = 6;

/// A set of secrets and every form of them that is redacted.
#[derive(Debug, Clone)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// For each pattern, the replacement.
    marks: Vec<Vec<u8>>,
    /// The longest pattern, bytes.
    longest: usize,
    /// Each pattern with its KMP failure table (which suffix of some bytes
    /// begins a pattern).
    prefixes: Arc<Vec<(Vec<u8>, Vec<usize>)>>,
}

/// KMP failure table: for each `i`, the length of the longest proper
/// prefix of `p[..=i]` that is also its suffix.
fn failure(p: &[u8]) -> Vec<usize> {
    let mut f = vec![0; p.len()];
    let mut k = 0;
    for i in 1..p.len() {
        while k > 0 && p[i] != p[k] {
            k = f[k - 1];
        }
        if p[i] == p[k] {
            k += 1;
        }
        f[i] = k;
    }
    f
}

/// The text a match of secret `name` becomes.
pub fn mark(name: &str) -> String {
    format!("[redacted:{name}]")
}

/// Every form of `value` that is redacted (exact, base64 at three
/// alignments in two alphabets, percent-encoding, hex), shortest forms
/// that are still specific to the value.
pub fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![value.to_vec()];
    for k in 0..3usize {
        // The value starting k bytes into a 3-byte group: the base64
        // characters whose six bits all come from the value.
        let mut padded = vec![0u8; k];
        padded.extend_from_slice(value);
        padded.extend_from_slice(&[0, 0]);
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&padded);
        let start = (8 * k).div_ceil(6);
        let end = (8 * (k + value.len())) / 6;
        if end > start {
            let core = enc.as_bytes()[start..end].to_vec();
            let url: Vec<u8> = core
                .iter()
                .map(|&c| match c {
                    b'+' => b'-',
                    b'/' => b'_',
                    c => c,
                })
                .collect();
            out.push(core);
            out.push(url);
        }
    }
    let pct = |upper: bool| -> Vec<u8> {
        let mut s = Vec::new();
        for &b in value {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                s.push(b);
            } else if upper {
                s.extend_from_slice(format!("%{b:02X}").as_bytes());
            } else {
                s.extend_from_slice(format!("%{b:02x}").as_bytes());
            }
        }
        s
    };
    out.push(pct(true));
    out.push(pct(false));
    out.push(hex::encode(value).into_bytes());
    out.push(hex::encode_upper(value).into_bytes());
    // Forms too short to be specific (a base64 core of a short value) are
    // dropped; the exact value is always kept.
    let exact = out[0].clone();
    out.retain(|f| *f == exact || f.len() >= MIN_SECRET_BYTES);
    out.sort();
    out.dedup();
    out
}

impl Redactor {
    /// A redactor for `secrets` (name, value).
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut marks = Vec::new();
        for (name, value) in secrets {
            if value.is_empty() {
                continue;
            }
            for f in forms(value) {
                patterns.push(f);
                marks.push(mark(name).into_bytes());
            }
        }
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let prefixes = Arc::new(
            patterns
                .iter()
                .map(|p| (p.clone(), failure(p)))
                .collect::<Vec<_>>(),
        );
        let matcher = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("a few hundred literal patterns always build")
        });
        Self {
            matcher,
            marks,
            longest,
            prefixes,
        }
    }

    /// How many bytes at the end of `data` are the start of some form of a
    /// secret (and not a whole one).
    pub fn pending(&self, data: &[u8]) -> usize {
        let tail = &data[data.len().saturating_sub(self.longest.saturating_sub(1))..];
        let mut best = 0;
        for (p, f) in self.prefixes.iter() {
            let mut q = 0;
            for &b in tail {
                if q == p.len() {
                    q = f[q - 1];
                }
                while q > 0 && p[q] != b {
                    q = f[q - 1];
                }
                if p[q] == b {
                    q += 1;
                }
            }
            if q == p.len() {
                q = f[q - 1];
            }
            best = best.max(q);
        }
        best
    }

    /// One call's worth of output: the redacted bytes to give out now,
    /// the count, and how many bytes at the end were left out because
    /// they may begin a secret (to be read again with what follows). At
    /// the output's end (`last`), nothing is left out.
    pub fn settle(&self, data: &[u8], last: bool) -> (Vec<u8>, u64, usize) {
        if self.is_empty() {
            return (data.to_vec(), 0, 0);
        }
        if last {
            let (out, n) = self.bytes(data);
            return (out, n, 0);
        }
        // Whole matches first: one that starts before the pending tail is
        // redacted even when its end is also the start of some form (a
        // value ending where another form, or itself, could begin again);
        // the cut then moves past it and the rest is settled again.
        let safe = data.len() - self.pending(data);
        let (mut out, n, cut) = self.redact_before(data, safe);
        if cut == safe {
            return (out, n, data.len() - cut);
        }
        let (rest, more, keep) = self.settle(&data[cut..], false);
        out.extend_from_slice(&rest);
        (out, n + more, keep)
    }

    /// Redacts the matches in `data` that start before `safe`: the
    /// redacted bytes up to the cut (`safe`, or the end of a match that
    /// runs past it), the count, and the cut.
    fn redact_before(&self, data: &[u8], safe: usize) -> (Vec<u8>, u64, usize) {
        let mut out = Vec::with_capacity(safe);
        let (mut last, mut n) = (0, 0u64);
        if let Some(m) = &self.matcher {
            for hit in m.find_iter(data) {
                if hit.start() >= safe {
                    break;
                }
                out.extend_from_slice(&data[last..hit.start()]);
                out.extend_from_slice(&self.marks[hit.pattern().as_usize()]);
                last = hit.end();
                n += 1;
            }
        }
        let cut = last.max(safe);
        out.extend_from_slice(&data[last..cut]);
        (out, n, cut)
    }

    /// A redactor that redacts nothing (and holds nothing back).
    pub fn none() -> Self {
        Self::new(std::iter::empty())
    }

    /// The longest form, bytes: a read of at least twice this always moves
    /// on past what it holds back.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `data` with every form of every secret replaced, and the count.
    pub fn bytes(&self, data: &[u8]) -> (Vec<u8>, u64) {
        let Some(m) = &self.matcher else {
            return (data.to_vec(), 0);
        };
        let mut out = Vec::with_capacity(data.len());
        let mut last = 0;
        let mut n = 0u64;
        for hit in m.find_iter(data) {
            out.extend_from_slice(&data[last..hit.start()]);
            out.extend_from_slice(&self.marks[hit.pattern().as_usize()]);
            last = hit.end();
            n += 1;
        }
        out.extend_from_slice(&data[last..]);
        (out, n)
    }

    /// `text` redacted, and the count.
    pub fn text(&self, text: &str) -> (String, u64) {
        if self.is_empty() {
            return (text.to_owned(), 0);
        }
        let (b, n) = self.bytes(text.as_bytes());
        (String::from_utf8_lossy(&b).into_owned(), n)
    }

    /// Redacts `text` in place, adding to `count`.
    pub fn scrub(&self, text: &mut String, count: &mut u64) {
        if self.is_empty() {
            return;
        }
        let (t, n) = self.text(text);
        if n > 0 {
            *text = t;
            *count += n;
        }
    }

    /// A redacting stream over this redactor.
    pub fn stream(&self) -> Stream {
        Stream {
            redactor: self.clone(),
            held: Vec::new(),
            count: 0,
        }
    }
}

/// Redacts output that arrives in pieces. Feed each piece to
/// [`Stream::push`], then call [`Stream::finish`] for what was held back.
#[derive(Debug)]
pub struct Stream {
    redactor: Redactor,
    held: Vec<u8>,
    count: u64,
}

impl Stream {
    /// The redacted output that is safe to emit after `piece`; up to the
    /// longest form's length less one byte is held back, since it may be
    /// the start of a secret the next piece completes.
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        if self.redactor.is_empty() {
            return piece.to_vec();
        }
        self.held.extend_from_slice(piece);
        let keep = self.redactor.longest.saturating_sub(1);
        if self.held.len() <= keep {
            return Vec::new();
        }
        // A match starting before `safe` is final: every form starting
        // there fits in the buffer. Later ones wait for more bytes.
        let safe = self.held.len() - keep;
        let (out, n, cut) = self.redactor.redact_before(&self.held, safe);
        self.count += n;
        self.held.drain(..cut);
        out
    }

    /// What was held back, redacted (the stream's end).
    pub fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        let (out, n) = self.redactor.bytes(&held);
        self.count += n;
        out
    }

    /// Bytes held back, waiting for the next piece.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Gives out all that was held back except bytes at the end that may
    /// begin a secret (a call's end: what stays held is read again by
    /// the next call, see [`Stream::held`]).
    pub fn settle(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        let (out, n, keep) = self.redactor.settle(&held, false);
        self.count += n;
        self.held = held[held.len() - keep..].to_vec();
        out
    }

    /// Matches redacted so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests;

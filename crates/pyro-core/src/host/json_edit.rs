//! Edits one member of a JSON (or JSONC: comments, trailing commas) file
//! in place: the bytes outside the member are never rewritten, so a
//! user's formatting, key order and comments survive.

use std::ops::Range;

/// One `"key": value` member of an object, by byte offsets.
#[derive(Debug, Clone)]
struct Member {
    key: String,
    /// From the key's opening quote.
    start: usize,
    /// The value's bytes.
    value: Range<usize>,
}

/// An object's members and the offsets of its braces.
#[derive(Debug)]
struct Object {
    open: usize,
    close: usize,
    members: Vec<Member>,
}

/// Why a file could not be edited.
pub type ParseError = String;

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn err(&self, what: &str) -> ParseError {
        let line = self.s[..self.i.min(self.s.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!("{what} at line {line}")
    }

    /// Skips whitespace and comments.
    fn skip(&mut self) -> Result<(), ParseError> {
        loop {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
            if self.s[self.i..].starts_with(b"//") {
                while self.i < self.s.len() && self.s[self.i] != b'\n' {
                    self.i += 1;
                }
            } else if self.s[self.i..].starts_with(b"/*") {
                let Some(end) = find(&self.s[self.i + 2..], b"*/") else {
                    return Err(self.err("an unterminated comment"));
                };
                self.i += 2 + end + 2;
            } else {
                return Ok(());
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        self.i += 1;
        while let Some(b) = self.peek() {
            match b {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    let raw = std::str::from_utf8(&self.s[start..self.i])
                        .map_err(|_| self.err("a string that is not UTF-8"))?;
                    return serde_json::from_str(raw).map_err(|_| self.err("a malformed string"));
                }
                b'\n' => return Err(self.err("a line break inside a string")),
                _ => self.i += 1,
            }
        }
        Err(self.err("an unterminated string"))
    }

    /// Skips one value of any kind; objects are walked member by member.
    fn value(&mut self, depth: usize) -> Result<(), ParseError> {
        if depth > 256 {
            return Err(self.err("nesting deeper than 256 levels"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth).map(|_| ()),
            Some(b'[') => {
                self.i += 1;
                let mut need_sep = false;
                loop {
                    self.skip()?;
                    match self.peek() {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        Some(b',') if need_sep => {
                            self.i += 1;
                            need_sep = false;
                        }
                        None => return Err(self.err("an unterminated array")),
                        Some(_) if need_sep => {
                            return Err(self.err("a missing `,` between array items"));
                        }
                        Some(_) => {
                            self.value(depth + 1)?;
                            need_sep = true;
                        }
                    }
                }
            }
            Some(b'"') => self.string().map(|_| ()),
            Some(b) if b == b'-' || b.is_ascii_alphanumeric() => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                {
                    self.i += 1;
                }
                // true, false, null or a number; nothing else is JSON.
                let word = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match serde_json::from_str::<serde_json::Value>(word) {
                    Ok(v) if !v.is_string() => Ok(()),
                    _ => Err(self.err("a word that is not true, false, null or a number")),
                }
            }
            _ => Err(self.err("an unexpected character")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Object, ParseError> {
        let open = self.i;
        self.i += 1;
        let mut members = Vec::new();
        let mut need_sep = false;
        loop {
            self.skip()?;
            match self.peek() {
                Some(b'}') => {
                    let close = self.i;
                    self.i += 1;
                    return Ok(Object {
                        open,
                        close,
                        members,
                    });
                }
                Some(b',') if need_sep => {
                    self.i += 1;
                    need_sep = false;
                }
                Some(_) if need_sep => return Err(self.err("a missing `,` between members")),
                Some(b'"') => {
                    let start = self.i;
                    let key = self.string()?;
                    self.skip()?;
                    if self.peek() != Some(b':') {
                        return Err(self.err("a missing `:` after a key"));
                    }
                    self.i += 1;
                    self.skip()?;
                    let v = self.i;
                    self.value(depth + 1)?;
                    members.push(Member {
                        key,
                        start,
                        value: v..self.i,
                    });
                    need_sep = true;
                }
                None => return Err(self.err("an unterminated object")),
                _ => return Err(self.err("an unexpected character in an object")),
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The top-level object of `text` (empty text reads as `{}`).
fn top(text: &str) -> Result<Object, ParseError> {
    let mut sc = Scanner {
        s: text.as_bytes(),
        // A byte-order mark stays where it is.
        i: if text.starts_with('\u{feff}') { 3 } else { 0 },
    };
    sc.skip()?;
    if sc.peek() != Some(b'{') {
        return Err(sc.err("no top-level object"));
    }
    let obj = sc.object(0)?;
    sc.skip()?;
    if sc.i != text.len() {
        return Err(sc.err("text after the top-level object"));
    }
    Ok(obj)
}

fn object_at(text: &str, at: usize) -> Result<Object, ParseError> {
    let mut sc = Scanner {
        s: text.as_bytes(),
        i: at,
    };
    sc.object(1)
}

fn member<'a>(obj: &'a Object, key: &str) -> Option<&'a Member> {
    // The last duplicate wins, as in most readers.
    obj.members.iter().rev().find(|m| m.key == key)
}

/// Checks `text` is an object-shaped JSON(C) document.
pub fn check(text: &str) -> Result<(), ParseError> {
    if text.trim().is_empty() {
        return Ok(());
    }
    top(text).map(|_| ())
}

/// The value at `container.key`, parsed (None when absent).
pub fn get(
    text: &str,
    container: &str,
    key: &str,
) -> Result<Option<serde_json::Value>, ParseError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let root = top(text)?;
    let Some(c) = member(&root, container) else {
        return Ok(None);
    };
    if !text[c.value.clone()].starts_with('{') {
        return Err(format!("`{container}` is not an object"));
    }
    let obj = object_at(text, c.value.start)?;
    let Some(m) = member(&obj, key) else {
        return Ok(None);
    };
    // A value with comments inside is not one pyro wrote: it reads as
    // different, and gets replaced.
    Ok(serde_json::from_str(&text[m.value.clone()]).ok())
}

/// The indentation unit a document uses (two spaces when it shows none).
fn indent_unit(text: &str) -> String {
    for line in text.lines().skip(1) {
        let ws: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        if !ws.is_empty() && line.trim_start().starts_with('"') {
            return ws;
        }
    }
    "  ".to_owned()
}

/// The line ending a document uses.
fn newline(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

fn pretty(value: &serde_json::Value, unit: &str, level: usize, nl: &str) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser).expect("a JSON value serializes");
    let text = String::from_utf8(out).expect("JSON is UTF-8");
    let pad = unit.repeat(level);
    text.replace('\n', &format!("{nl}{pad}"))
}

/// Sets `container.key` to `value`, creating `container` when absent.
/// Returns the new text and whether `container` was created.
pub fn upsert(
    text: &str,
    container: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<(String, bool), ParseError> {
    let unit = indent_unit(text);
    let nl = newline(text);
    let key_json = serde_json::to_string(key).expect("a string serializes");
    if text.trim().is_empty() {
        let doc = serde_json::json!({ container: { key: value } });
        return Ok((format!("{}\n", pretty(&doc, &unit, 0, "\n")), true));
    }
    let root = top(text)?;
    let (obj, level, created) = match member(&root, container) {
        Some(c) if text[c.value.clone()].starts_with('{') => {
            (object_at(text, c.value.start)?, 2, false)
        }
        Some(_) => return Err(format!("`{container}` is not an object")),
        None => {
            let inner = serde_json::json!({ key: value });
            let entry = format!(
                "{}: {}",
                serde_json::to_string(container).expect("a string serializes"),
                pretty(&inner, &unit, 1, nl)
            );
            return Ok((insert_member(text, &root, &entry, &unit, 1), true));
        }
    };
    let rendered = pretty(value, &unit, level, nl);
    if let Some(m) = member(&obj, key) {
        if serde_json::from_str::<serde_json::Value>(&text[m.value.clone()])
            .ok()
            .as_ref()
            == Some(value)
        {
            return Ok((text.to_owned(), created));
        }
        let mut out = text.to_owned();
        out.replace_range(m.value.clone(), &rendered);
        return Ok((out, created));
    }
    let entry = format!("{key_json}: {rendered}");
    Ok((insert_member(text, &obj, &entry, &unit, level), created))
}

/// Appends `entry` (a `"key": value` text) as the last member of `obj`.
fn insert_member(text: &str, obj: &Object, entry: &str, unit: &str, level: usize) -> String {
    let pad = unit.repeat(level);
    let nl = newline(text);
    let mut out = text.to_owned();
    match obj.members.last() {
        Some(last) => {
            out.insert_str(last.value.end, &format!(",{nl}{pad}{entry}"));
        }
        None => {
            let close_pad = unit.repeat(level - 1);
            out.replace_range(
                obj.open + 1..obj.close,
                &format!("{nl}{pad}{entry}{nl}{close_pad}"),
            );
        }
    }
    out
}

/// Removes `container.key`; removes `container` too when that leaves it
/// empty and `drop_empty_container`. None when there is nothing to remove.
pub fn remove(
    text: &str,
    container: &str,
    key: &str,
    drop_empty_container: bool,
) -> Result<Option<String>, ParseError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let root = top(text)?;
    let Some(c) = member(&root, container) else {
        return Ok(None);
    };
    if !text[c.value.clone()].starts_with('{') {
        return Ok(None);
    }
    let obj = object_at(text, c.value.start)?;
    let Some(pos) = obj.members.iter().rposition(|m| m.key == key) else {
        return Ok(None);
    };
    if obj.members.len() == 1 && drop_empty_container {
        let i = root
            .members
            .iter()
            .rposition(|m| m.key == container)
            .expect("the container is a member");
        return Ok(Some(cut(text, &root, i)));
    }
    Ok(Some(cut(text, &obj, pos)))
}

/// `text` without member `i` of `obj` (and the comma that joined it).
fn cut(text: &str, obj: &Object, i: usize) -> String {
    let m = &obj.members[i];
    let range = if i > 0 {
        obj.members[i - 1].value.end..m.value.end
    } else if let Some(next) = obj.members.get(1) {
        m.start..next.start
    } else {
        obj.open + 1..obj.close
    };
    let mut out = text.to_owned();
    out.replace_range(range, "");
    out
}

#[cfg(test)]
mod tests;

//! Edits one table of a TOML file (Codex's `config.toml`) in place with
//! `toml_edit`, which keeps the rest of the document's text as written.

use toml_edit::{DocumentMut, Item, Table};

/// Why a file could not be edited.
pub type ParseError = String;

fn parse(text: &str) -> Result<DocumentMut, ParseError> {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .parse::<DocumentMut>()
        .map_err(|e| e.to_string().trim().to_owned())
}

/// `out` with `text`'s byte-order mark and line endings.
fn like(text: &str, out: String) -> String {
    let out = if text.contains("\r\n") {
        out.replace("\r\n", "\n").replace('\n', "\r\n")
    } else {
        out
    };
    if text.starts_with('\u{feff}') {
        format!("\u{feff}{out}")
    } else {
        out
    }
}

/// `container.key` as plain data (None when absent).
pub fn get(text: &str, container: &str, key: &str) -> Result<Option<toml::Table>, ParseError> {
    let doc = parse(text)?;
    let Some(item) = doc.get(container).and_then(|c| c.get(key)) else {
        return Ok(None);
    };
    let Some(t) = item.as_table_like() else {
        return Ok(None);
    };
    let mut out = Table::new();
    for (k, v) in t.iter() {
        out.insert(k, v.clone());
    }
    Ok(toml::from_str::<toml::Table>(&out.to_string()).ok())
}

/// Sets `[container.key]` to `entries`, creating `container` (as an
/// implicit table, so only `[container.key]` shows) when absent. Returns
/// the new text and whether `container` was created.
pub fn upsert(
    text: &str,
    container: &str,
    key: &str,
    entries: &[(&str, toml_edit::Value)],
) -> Result<(String, bool), ParseError> {
    let mut doc = parse(text)?;
    let created = !doc.contains_key(container);
    if created {
        let mut t = Table::new();
        t.set_implicit(true);
        doc.insert(container, Item::Table(t));
    }
    let inline = doc.get(container).is_some_and(Item::is_inline_table);
    let Some(c) = doc.get_mut(container).and_then(Item::as_table_like_mut) else {
        return Err(format!("`{container}` is not a table"));
    };
    match c.get_mut(key).and_then(Item::as_table_like_mut) {
        Some(old) => {
            // Keep the entry's place, its form and any keys a user added
            // by hand.
            for (k, v) in entries {
                old.insert(k, Item::Value(v.clone()));
            }
        }
        None if inline => {
            let mut t = toml_edit::InlineTable::new();
            for (k, v) in entries {
                t.insert(*k, v.clone());
            }
            c.insert(key, Item::Value(toml_edit::Value::InlineTable(t)));
        }
        None => {
            let mut table = Table::new();
            for (k, v) in entries {
                table.insert(k, Item::Value(v.clone()));
            }
            c.insert(key, Item::Table(table));
        }
    }
    // toml_edit writes new lines with `\n`; a CRLF file stays CRLF.
    Ok((like(text, doc.to_string()), created))
}

/// Removes `[container.key]` (and `container` when that leaves it empty
/// and `drop_empty_container`). None when there is nothing to remove.
pub fn remove(
    text: &str,
    container: &str,
    key: &str,
    drop_empty_container: bool,
) -> Result<Option<String>, ParseError> {
    let mut doc = parse(text)?;
    let Some(c) = doc.get_mut(container).and_then(Item::as_table_like_mut) else {
        return Ok(None);
    };
    if c.remove(key).is_none() {
        return Ok(None);
    }
    if c.is_empty() && drop_empty_container {
        doc.remove(container);
    }
    Ok(Some(like(text, doc.to_string())))
}

#[cfg(test)]
mod tests;

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
mod inline_tests {
    use super::*;

    #[test]
    fn inline_tables_and_crlf_keep_their_form() {
        let args: toml_edit::Array = ["mcp"].into_iter().collect();
        let e = vec![
            ("command", toml_edit::Value::from("/p")),
            ("args", args.into()),
        ];
        let text = "mcp_servers = { docs = { command = \"d\" } }\n";
        let (out, _) = upsert(text, "mcp_servers", "pyro", &e).unwrap();
        assert!(
            out.starts_with("mcp_servers = { docs = { command = \"d\" }")
                && out.contains("pyro = { command = \"/p\", args = [\"mcp\"] }"),
            "{out}"
        );
        let kept = "[mcp_servers]\npyro = { command = \"x\", env = { A = \"1\" } }\n";
        let (out, _) = upsert(kept, "mcp_servers", "pyro", &e).unwrap();
        assert!(
            out.contains("env = { A = \"1\" }") && out.contains("\"/p\""),
            "{out}"
        );
        let crlf = "model = \"o\"\r\n";
        let (out, created) = upsert(crlf, "mcp_servers", "pyro", &e).unwrap();
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
        let back = remove(&out, "mcp_servers", "pyro", created)
            .unwrap()
            .unwrap();
        assert_eq!(back, crlf);
        let bom = "\u{feff}model = \"o\"\n";
        let (out, created) = upsert(bom, "mcp_servers", "pyro", &e).unwrap();
        assert!(out.starts_with('\u{feff}'));
        assert_eq!(
            remove(&out, "mcp_servers", "pyro", created)
                .unwrap()
                .unwrap(),
            bom
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<(&'static str, toml_edit::Value)> {
        let args: toml_edit::Array = ["mcp", "serve"].into_iter().collect();
        vec![("command", "/p/pyro".into()), ("args", args.into())]
    }

    #[test]
    fn upsert_then_remove_gives_the_bytes_back() {
        for text in [
            "",
            "model = \"o4\" # mine\n\n[profiles.x]\nmodel = \"y\"\n",
            "[mcp_servers.other]\ncommand = \"x\"\n",
        ] {
            let (once, created) = upsert(text, "mcp_servers", "pyro", &entries()).unwrap();
            assert!(
                once.contains(
                    "[mcp_servers.pyro]\ncommand = \"/p/pyro\"\nargs = [\"mcp\", \"serve\"]\n"
                ),
                "{once}"
            );
            assert!(!once.contains("[mcp_servers]\n"), "{once}");
            let (twice, _) = upsert(&once, "mcp_servers", "pyro", &entries()).unwrap();
            assert_eq!(once, twice);
            let got = get(&once, "mcp_servers", "pyro").unwrap().unwrap();
            assert_eq!(got["command"].as_str(), Some("/p/pyro"));
            let back = remove(&once, "mcp_servers", "pyro", created)
                .unwrap()
                .unwrap();
            assert_eq!(back, text);
        }
        assert!(upsert("x = ", "a", "b", &[]).is_err());
        assert!(
            upsert("mcp_servers = 1\n", "mcp_servers", "b", &[])
                .unwrap_err()
                .contains("not a table")
        );
        assert_eq!(
            remove("a = 1\n", "mcp_servers", "pyro", true).unwrap(),
            None
        );
    }
}

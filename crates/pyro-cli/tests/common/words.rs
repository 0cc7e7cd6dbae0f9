//! Command lines as written in docs and help: split into words the way a
//! POSIX shell would (quotes, backslashes), cut at the first operator.

/// The words of the first command on `line` (up to an unquoted `|`, `&&`,
/// `||`, `;` or redirection).
pub fn command_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        _ => cur.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.extend(chars.next());
            }
            '|' | ';' | '>' | '<' | '&' => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Whether `pyro` accepts `words` (after `pyro`): parsed by the real CLI,
/// which exits right after parsing when `PYRO_CHECK_ARGS` is set. The
/// error text when not.
pub fn parse_error(words: &[String]) -> Option<String> {
    let o = std::process::Command::new(super::pyro_bin())
        .args(words)
        .env("PYRO_CHECK_ARGS", "1")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (!o.status.success()).then(|| super::stderr(&o))
}

//! How the code is laid out. Core is the only door: the front ends (`pyro-cli`, `pyro-mcp`) depend on
//! `pyro-core` (the CLI also on `pyro-mcp`), never on the crates below it.
//! Read from `cargo metadata`, so a dependency added by any means fails it.

use std::collections::BTreeMap;

const BELOW_CORE: [&str; 5] = [
    "pyro-env",
    "pyro-vmm",
    "pyro-protocol",
    "pyro-agent",
    "pyro-archive",
];

/// Each workspace package's dependencies that are built into it (normal and
/// build dependencies; tests may look below core).
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null() || d["kind"] == "build")
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn front_ends_depend_on_nothing_below_core() {
    let deps = dependencies();
    for front in ["pyro-cli", "pyro-mcp"] {
        let own = &deps[front];
        assert!(own.iter().any(|d| d == "pyro-core"), "{front}: {own:?}");
        let below: Vec<&String> = own
            .iter()
            .filter(|d| BELOW_CORE.contains(&d.as_str()))
            .collect();
        assert!(
            below.is_empty(),
            "{front} depends on {below:?}; reach them through pyro-core instead"
        );
    }
    assert!(deps["pyro-cli"].iter().any(|d| d == "pyro-mcp"));
    // And the check itself sees what it checks: core does depend on them.
    assert!(deps["pyro-core"].iter().any(|d| d == "pyro-env"));
}

/// Small modules: no source file under `crates/` over 800 lines, unless
/// its opening comment says why it is one piece.
#[test]
fn no_source_file_is_over_800_lines() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stack = vec![crates];
    let mut long = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let opening: String = text
                    .lines()
                    .take_while(|l| l.starts_with("//"))
                    .collect::<Vec<_>>()
                    .join(" ");
                if text.lines().count() > 800 && !opening.contains("one piece") {
                    long.push(format!("{} ({} lines)", p.display(), text.lines().count()));
                }
            }
        }
    }
    assert!(long.is_empty(), "split these into modules: {long:?}");
}

/// Unit tests live in their own files (`foo.rs` declares
/// `#[cfg(test)] mod tests;`, the tests are in `foo/tests.rs`): the
/// coverage gate (`scripts/coverage.sh`) leaves files named `tests.rs` out,
/// so a test module written inline in a source file would count as covered
/// product code.
#[test]
fn no_source_file_holds_an_inline_test_module() {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stack = vec![crates];
    let mut inline = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "tests" && n != "target") {
                    stack.push(p);
                }
                continue;
            }
            let is_rs = p.extension().is_some_and(|x| x == "rs");
            let in_src = p.components().any(|c| c.as_os_str() == "src");
            if !is_rs || !in_src || p.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            for (i, l) in lines.iter().enumerate() {
                // `#[cfg(test)]`, `#[cfg(all(test, ...))]` and the like.
                let Some(at) = l.find("#[cfg(") else {
                    continue;
                };
                let attr_end = l[at..].find(")]").map_or(l.len(), |e| at + e + 2);
                if !l[at..attr_end].contains("test") {
                    continue;
                }
                // The item it applies to: the rest of the line, or the next
                // line that is not another attribute or a comment.
                let rest = l[attr_end..].trim();
                let item = if rest.is_empty() {
                    lines[i + 1..]
                        .iter()
                        .find(|n| !n.starts_with("#[") && !n.starts_with("//"))
                        .copied()
                        .unwrap_or_default()
                } else {
                    rest
                };
                let is_mod = item.starts_with("mod ") || item.contains(" mod ");
                if is_mod && item.ends_with('{') {
                    inline.push(format!("{}: {item}", p.display()));
                }
            }
        }
    }
    assert!(
        inline.is_empty(),
        "move these test modules to their own tests.rs files: {inline:?}"
    );
}

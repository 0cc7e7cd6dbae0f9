//! The docs describe what the code does: the README's commands exist, its
//! two commands are what CI runs, every environment variable the code reads
//! is documented, and the architecture doc names every crate.

mod common;
mod mcp_support;

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Lines of fenced `sh` blocks.
fn sh_lines(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            inside = !inside && line.trim() == "```sh";
            continue;
        }
        if inside {
            out.push(line.split(" #").next().unwrap_or("").trim().to_owned());
        }
    }
    out
}

#[test]
fn readme_names_the_two_commands_and_ci_runs_the_test_one() {
    let readme = read("README.md");
    assert!(readme.contains("make demo") && readme.contains("make test"));
    let ci = read(".ci/run");
    assert!(ci.lines().any(|l| l.trim() == "exec make test"), "{ci}");
    let makefile = read("Makefile");
    for target in ["demo:", "test:", "setup:", "agent:"] {
        assert!(
            makefile.lines().any(|l| l.starts_with(target)),
            "Makefile lacks {target}"
        );
    }
    // `make demo` ends with the zero-to-hero command inside a real guest.
    let demo: Vec<&str> = makefile
        .split("\ndemo:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .collect();
    assert_eq!(
        demo.last().unwrap().trim(),
        "$(PYRO_RELEASE) run $(ENV) -- git --version"
    );
}

#[test]
fn every_pyro_command_in_the_readme_exists() {
    let readme = read("README.md");
    let home = common::Home::new();
    let mut checked = 0;
    for line in sh_lines(&readme) {
        let Some(rest) = line.strip_prefix("pyro ") else {
            continue;
        };
        let path: Vec<&str> = rest
            .split_whitespace()
            .take_while(|w| {
                w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
            })
            .collect();
        let o = home.cmd().args(&path).arg("--help").output().unwrap();
        assert!(
            o.status.success(),
            "README shows `{line}` but `pyro {} --help` fails",
            path.join(" ")
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} commands found in the README");
}

#[test]
fn every_environment_variable_the_code_reads_is_documented() {
    let readme = read("README.md");
    let mut vars = std::collections::BTreeSet::new();
    let mut stack = vec![repo().join("crates")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "tests") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    if piece.starts_with("PYRO_")
                        && piece.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    {
                        vars.insert(piece.to_owned());
                    }
                }
            }
        }
    }
    assert!(vars.contains("PYRO_HOME"), "{vars:?}");
    for v in &vars {
        assert!(
            readme.contains(&format!("`{v}`")),
            "{v} is read by the code but not documented in the README"
        );
    }
}

#[test]
fn architecture_names_every_crate() {
    let doc = read("docs/architecture.md");
    let manifest = read("Cargo.toml");
    let members: Vec<&str> = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .unwrap()
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    assert!(members.len() >= 6);
    for m in members {
        let name = m.trim_start_matches("crates/");
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/architecture.md does not describe {name}"
        );
    }
}

/// README.md and every Markdown file under docs/, as (path, text).
fn all_docs() -> Vec<(PathBuf, String)> {
    let mut out = vec![(repo().join("README.md"), read("README.md"))];
    let mut stack = vec![repo().join("docs")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out.sort();
    out
}

/// The fenced blocks of `markdown` opened with exactly ```` ```lang ````.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in markdown.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None if t == format!("```{lang}") => cur = Some(String::new()),
                None => cur = Some(String::from("\u{0}")),
            }
            continue;
        }
        if let Some(b) = cur.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    out.retain(|b| !b.starts_with('\u{0}'));
    out
}

#[test]
fn words_split_like_a_shell() {
    use common::words::command_words;
    assert_eq!(
        command_words(r#"pyro run debian:12 -- sh -lc 'a && b' "x y" z\ w | head"#),
        [
            "pyro",
            "run",
            "debian:12",
            "--",
            "sh",
            "-lc",
            "a && b",
            "x y",
            "z w"
        ]
    );
    assert_eq!(command_words("pyro doctor > out.txt"), ["pyro", "doctor"]);
    assert_eq!(command_words("pyro x ''"), ["pyro", "x", ""]);
    // The check itself refuses what the CLI refuses.
    let bad = |w: &[&str]| {
        common::words::parse_error(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    assert!(bad(&["workspace", "exec"]).is_some());
    assert!(bad(&["run", "debian:12", "--vcpus", "0", "--", "true"]).is_some());
    assert!(bad(&["host", "connect", "cursor"]).is_some());
    assert_eq!(
        bad(&["host", "connect", "codex", "--scope", "project"]),
        None
    );
}

#[test]
fn every_pyro_command_line_in_the_docs_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (path, text) in all_docs() {
        for block in blocks(&text, "sh") {
            for line in block.lines() {
                let line = line.split(" # ").next().unwrap_or("").trim();
                let words = common::words::command_words(line);
                if words.first().map(String::as_str) != Some("pyro") {
                    continue;
                }
                checked += 1;
                if let Some(e) = common::words::parse_error(&words[1..]) {
                    failures.push(format!("{}: `{line}`:\n{e}", path.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 60,
        "only {checked} command lines found in the docs"
    );
}

#[test]
fn links_in_the_docs_resolve() {
    let mut checked = 0;
    for (path, text) in all_docs() {
        let dir = path.parent().unwrap();
        for piece in text.split("](").skip(1) {
            let Some(target) = piece.split(')').next() else {
                continue;
            };
            let target = target.split_whitespace().next().unwrap_or("");
            if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap();
            checked += 1;
            assert!(
                dir.join(file).exists(),
                "{} links to {target}, which does not exist",
                path.display()
            );
        }
    }
    assert!(checked >= 30, "only {checked} links found");
}

/// The tools `pyro mcp serve --profile profile` lists, from the real
/// server over stdio: names (sorted) and input schemas.
fn served_tools(profile: &str) -> (Vec<String>, serde_json::Value) {
    let home = common::Home::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tools = rt.block_on(async {
        let client =
            mcp_support::connect(&home, home.path(), &["--profile", profile], "host-compat").await;
        let tools = client.list_all_tools().await.unwrap();
        let _ = client.cancel().await;
        tools
    });
    let mut names = Vec::new();
    let mut schemas = serde_json::Map::new();
    for t in tools {
        schemas.insert(
            t.name.to_string(),
            serde_json::Value::Object((*t.input_schema).clone()),
        );
        names.push(t.name.to_string());
    }
    names.sort();
    (names, schemas.into())
}

/// The tools the public contract lists under `### Profile \`profile\``.
fn documented_tools(contract: &str, profile: &str) -> Vec<String> {
    let heading = format!("### Profile `{profile}`");
    let section = contract
        .split(&heading)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/public-contract.md lacks `{heading}`"));
    let section = section.split("\n#").next().unwrap();
    let mut names: Vec<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .map(|l| l.split('`').next().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn tool_lists_in_the_docs_match_the_server_and_recipes_use_their_profiles_tools() {
    let contract = read("docs/public-contract.md");
    let mut served = std::collections::BTreeMap::new();
    for profile in ["vm-run", "workspace-core", "workspace-full"] {
        let (tools, schemas) = served_tools(profile);
        assert!(!tools.is_empty());
        assert_eq!(
            documented_tools(&contract, profile),
            tools,
            "docs/public-contract.md lists other tools than `pyro mcp serve --profile {profile}`"
        );
        served.insert(profile, (tools, schemas));
    }
    let dir = repo().join("docs/use-cases");
    let mut recipes = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.file_name().unwrap() == "README.md" {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let profile = text
            .lines()
            .find_map(|l| l.strip_prefix("Profile: `"))
            .and_then(|l| l.split('`').next())
            .unwrap_or_else(|| panic!("{} names no `Profile: ` line", p.display()));
        let (tools, schemas) = &served[profile];
        let mut calls = 0;
        for block in blocks(&text, "json") {
            let v: serde_json::Value = serde_json::from_str(&block).unwrap_or_else(|e| {
                panic!(
                    "{}: a json block does not parse ({e}):\n{block}",
                    p.display()
                )
            });
            let Some(tool) = v["tool"].as_str() else {
                continue;
            };
            assert!(
                tools.iter().any(|t| t == tool),
                "{} calls {tool}, which profile {profile} lacks",
                p.display()
            );
            let args = v["arguments"]
                .as_object()
                .unwrap_or_else(|| panic!("{}: {block}", p.display()));
            let schema = &schemas[tool];
            for k in args.keys() {
                assert!(
                    schema["properties"].get(k).is_some(),
                    "{}: {tool} takes no argument `{k}`",
                    p.display()
                );
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                assert!(
                    args.contains_key(r.as_str().unwrap()),
                    "{}: {tool} needs `{r}`",
                    p.display()
                );
            }
            calls += 1;
        }
        assert!(calls >= 4, "{} shows only {calls} tool calls", p.display());
        recipes += 1;
    }
    assert_eq!(recipes, 5, "docs/use-cases/ holds five recipes");
}

//! The docs describe what the code does: the README's commands exist, its
//! two commands are what CI runs, every environment variable the code reads
//! is documented, and the architecture doc names every crate.

mod common;

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

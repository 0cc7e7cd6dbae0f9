//! The rmcp client side of the MCP tests: connecting to `pyro mcp serve`
//! and calling tools that must succeed or fail.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

use crate::common::{Home, pyro_bin};

pub type Client = RunningService<RoleClient, ()>;

pub async fn connect(home: &Home, cwd: &Path, args: &[&str], backend: &str) -> Client {
    let bin = pyro_bin();
    let home_path = home.path().to_path_buf();
    let cwd = cwd.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let backend = backend.to_owned();
    let t = TokioChildProcess::new(tokio::process::Command::new(bin).configure(move |c| {
        c.arg("mcp")
            .arg("serve")
            .args(&args)
            .env("PYRO_HOME", &home_path)
            .env("PYRO_BACKEND", &backend)
            .current_dir(&cwd);
    }))
    .unwrap();
    ().serve(t).await.unwrap()
}

pub async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let mut p = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    client.call_tool(p).await.unwrap()
}

/// Calls a tool that must succeed; returns its structured content.
pub async fn ok(client: &Client, tool: &str, args: Value) -> Value {
    let r = call(client, tool, args).await;
    assert_ne!(r.is_error, Some(true), "{tool} failed: {}", text(&r));
    let v = r
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool}: no structured content"));
    // The JSON text copy says the same.
    let copy: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(copy, v);
    v
}

/// Calls a tool that must fail; returns the error text, after checking it
/// is worded for a model (tool arguments and tool names, never CLI flags or
/// commands it cannot run) and carries its class in `_meta`.
pub async fn err(client: &Client, tool: &str, args: Value) -> String {
    fail(client, tool, args).await.0
}

/// [`err`], also requiring the error's class to be `kind`.
pub async fn err_kind(client: &Client, tool: &str, args: Value, kind: &str) -> String {
    let (t, got) = fail(client, tool, args).await;
    assert_eq!(got, kind, "{tool}: {t}");
    t
}

async fn fail(client: &Client, tool: &str, args: Value) -> (String, String) {
    let r = call(client, tool, args).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "{tool} should have failed: {}",
        text(&r)
    );
    let t = text(&r);
    let flag = t
        .match_indices("--")
        .any(|(i, _)| t[i + 2..].starts_with(|c: char| c.is_ascii_lowercase()));
    // (A command is named only as one for the user to run.)
    let cli_command = t
        .match_indices("`pyro ")
        .any(|(i, _)| !t[..i].ends_with("ask the user to run "));
    assert!(!flag && !cli_command, "{tool}'s error names the CLI: {t}");
    let kind = r
        .meta
        .as_ref()
        .and_then(|m| m.0.get("pyro/error_kind"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    assert!(!kind.is_empty(), "{tool}'s error has no kind: {:?}", r.meta);
    (t, kind)
}

pub fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

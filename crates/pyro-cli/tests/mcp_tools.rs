//! MCP tools of the `workspace-full` profile on a host-compat workspace
//! that the larger MCP tests do not reach: the network policy tools and
//! `workspace_sync_push`.

mod common;
mod mcp_support;

use common::{Home, require_debian12};
use mcp_support::{connect, err_kind, ok};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_and_sync_tools_on_host_compat() {
    require_debian12();
    let home = Home::new();
    let client = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let ws = ok(&client, "workspace_create", json!({})).await;
    let id = ws["workspace_id"].as_str().unwrap().to_owned();
    // A network policy a host-compat sandbox cannot keep is refused in the
    // tools' terms; off is taken, and there are no denials to read.
    let e = err_kind(
        &client,
        "workspace_network_set",
        json!({"workspace_id": id, "network_policy": "egress"}),
        "invalid_argument",
    )
    .await;
    assert!(
        e.contains("needs a Firecracker guest")
            && e.contains("network_policy")
            && !e.contains("--"),
        "{e}"
    );
    let n = ok(
        &client,
        "workspace_network_set",
        json!({"workspace_id": id, "network_policy": "off"}),
    )
    .await;
    assert_eq!(n["network"]["mode"], "off", "{n}");
    let log = ok(
        &client,
        "workspace_network_log",
        json!({"workspace_id": id, "limit": 5}),
    )
    .await;
    assert_eq!(log["total"], 0, "{log}");
    // A push from under the allowed root lands where asked.
    let src = home.path().join("push-src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/pushed.txt"), "pushed\n").unwrap();
    ok(
        &client,
        "workspace_sync_push",
        json!({"workspace_id": id, "source_path": src, "dest": "in"}),
    )
    .await;
    let r = ok(
        &client,
        "workspace_file_read",
        json!({"workspace_id": id, "path": "in/sub/pushed.txt"}),
    )
    .await;
    assert_eq!(r["content"], "pushed\n");
    ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
}

//! Services end to end on host-compat: the CLI in human and JSON form, and
//! the MCP tools.

mod common;
mod mcp_support;

use common::host_compat::{create, running, ws};
use common::{Home, json, ok, stderr, stdout};
use mcp_support::{connect, err_kind};
use serde_json::json;

#[test]
fn services_become_ready_log_fail_stop_and_come_back_on_start() {
    let home = Home::new();
    let id = create(&home, &[]);
    // Ready by a file; human output is a summary line on stderr.
    let o = ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "app",
            "--ready-file",
            ".ready",
            "--",
            "echo started; echo warn >&2; sleep 0.5; touch .ready; sleep 300 & sleep 301",
        ],
    );
    ok(&o);
    assert!(
        stderr(&o).contains(&format!(
            "[service-start] workspace={id} service=app state=ready cwd=/workspace pid="
        )),
        "{}",
        stderr(&o)
    );
    let v = json(ok(&ws(&home, &["service", "status", &id, "app", "--json"])));
    assert_eq!(v["state"], "ready", "{v}");
    assert_eq!(v["readiness"], json!({"type": "file", "target": ".ready"}));
    assert!(v["ready_at"].as_f64().unwrap() >= v["started_at"].as_f64().unwrap() + 0.4);
    // Starting it again while it runs is refused.
    let o = ws(
        &home,
        &["service", "start", &id, "app", "--json", "--", "true"],
    );
    assert_eq!(json(&o)["error"]["kind"], "wrong_state", "{}", stdout(&o));
    assert!(stdout(&o).contains("already running"), "{}", stdout(&o));
    // Logs: the tail of each stream, then a range from an offset.
    let o = ws(&home, &["service", "logs", &id, "app"]);
    assert_eq!(stdout(ok(&o)), "started\n");
    assert!(stderr(&o).starts_with("warn\n"), "{}", stderr(&o));
    let l = json(ok(&ws(
        &home,
        &[
            "service",
            "logs",
            &id,
            "app",
            "--stdout-from",
            "3",
            "--json",
        ],
    )));
    assert_eq!(l["stdout"], "rted\n", "{l}");
    assert_eq!(l["stderr"], "", "{l}");
    assert_eq!(l["stdout_position"]["next"], 8);
    let o = ws(
        &home,
        &[
            "service",
            "logs",
            &id,
            "app",
            "--stdout-from",
            "99",
            "--json",
        ],
    );
    assert_eq!(
        json(&o)["error"]["kind"],
        "invalid_argument",
        "{}",
        stdout(&o)
    );
    // Counts in status and list.
    let st = stdout(ok(&ws(&home, &["status", &id])));
    assert!(st.contains("Services: 1/1 running"), "{st}");
    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    assert_eq!(st["running_service_count"], 1, "{st}");
    let l = stdout(ok(&ws(&home, &["list"])));
    assert!(l.contains(" 1/1 "), "{l}");
    // Stop: TERM to the whole group; nothing of it is left.
    assert_eq!(running(&home, &id, "sleep 30"), "2\n");
    let v = json(ok(&ws(&home, &["service", "stop", &id, "app", "--json"])));
    assert_eq!(v["state"], "stopped", "{v}");
    assert_eq!(v["reason"], "sigterm", "{v}");
    assert_eq!(running(&home, &id, "sleep 30"), "0\n");
    // A process that ignores TERM is killed after the grace period.
    ok(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "stubborn",
            "--",
            "trap '' TERM; sleep 302",
        ],
    ));
    let v = json(ok(&ws(
        &home,
        &[
            "service",
            "stop",
            &id,
            "stubborn",
            "--grace-seconds",
            "1",
            "--json",
        ],
    )));
    assert_eq!(v["reason"], "sigkill", "{v}");
    // Readiness failures: a timeout (exit 1, the last check said why) and
    // an exit before readiness.
    let o = ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "web",
            "--ready-tcp",
            ":8099",
            "--ready-timeout-seconds",
            "2",
            "--",
            "sleep 303",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("state=failed")
            && stderr(&o).contains("reason=readiness_timeout")
            && stderr(&o).contains("last_check=connecting to :8099"),
        "{}",
        stderr(&o)
    );
    assert_eq!(running(&home, &id, "sleep 303"), "0\n");
    let v = json(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "early",
            "--ready-file",
            "never",
            "--json",
            "--",
            "exit 3",
        ],
    ));
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["reason"], "exited_before_ready");
    assert_eq!(v["exit_code"], 3);
    // Ready by TCP on a port opened after 5 s: about 5 s.
    let listen = "sleep 5; $s=IO::Socket::INET->new(LocalPort=>18080,Listen=>5,ReuseAddr=>1) or die \"listen: $!\"; while (my $c=$s->accept) { close $c }";
    let v = json(ok(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "tcp",
            "--ready-tcp",
            "127.0.0.1:18080",
            "--json",
            "--",
            "perl",
            "-MIO::Socket::INET",
            "-e",
            listen,
        ],
    )));
    let after = v["ready_at"].as_f64().unwrap() - v["started_at"].as_f64().unwrap();
    assert!((4.9..8.0).contains(&after), "ready after {after} s: {v}");
    ok(&ws(&home, &["service", "stop", &id, "tcp"]));
    // A service without a check is ready at once; its exit is `exited`.
    ok(&ws(
        &home,
        &["service", "start", &id, "brief", "--", "sleep 0.2; exit 5"],
    ));
    std::thread::sleep(std::time::Duration::from_millis(800));
    let v = json(ok(&ws(
        &home,
        &["service", "status", &id, "brief", "--json"],
    )));
    assert_eq!(
        (v["state"].as_str(), v["exit_code"].as_i64()),
        (Some("exited"), Some(5)),
        "{v}"
    );
    // More output than the guest keeps: a read from the start says what
    // rotated away.
    ok(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "noisy",
            "--",
            "head -c 6000000 /dev/zero | tr '\\0' x; sleep 300",
        ],
    ));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let o = ok(&ws(
        &home,
        &[
            "service",
            "logs",
            &id,
            "noisy",
            "--stdout-from",
            "0",
            "--max-bytes",
            "10",
        ],
    ))
    .clone();
    assert_eq!(stdout(&o), "xxxxxxxxxx");
    assert!(
        stderr(&o).contains("bytes of stdout before offset"),
        "{}",
        stderr(&o)
    );
    let l = json(ok(&ws(
        &home,
        &[
            "service",
            "logs",
            &id,
            "noisy",
            "--stdout-from",
            "0",
            "--max-bytes",
            "10",
            "--json",
        ],
    )));
    let p = &l["stdout_position"];
    assert_eq!(p["end"], 6_000_000, "{l}");
    assert!(
        p["dropped_bytes"].as_u64().unwrap() >= 6_000_000 - 4 * 1024 * 1024,
        "{l}"
    );
    assert_eq!(p["dropped_bytes"], p["start"]);
    assert_eq!(l["truncated"], true);
    // Restart on start: it comes back ready; the others are reported ended.
    ok(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "db",
            "--restart",
            "on-start",
            "--ready-command",
            "test -f /workspace/db.up",
            "--",
            "rm -f db.up; sleep 0.3; touch db.up; sleep 304",
        ],
    ));
    ok(&ws(&home, &["stop", &id]));
    let l = json(ok(&ws(&home, &["service", "list", &id, "--json"])));
    let state_of = |l: &serde_json::Value, n: &str| {
        l["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service_name"] == n)
            .map(|s| (s["state"].as_str().unwrap().to_owned(), s["reason"].clone()))
            .unwrap()
    };
    let (state, reason) = state_of(&l, "noisy");
    assert_eq!(state, "ended");
    assert!(reason.as_str().unwrap().contains("stopped"), "{reason}");
    assert_eq!(state_of(&l, "app").0, "stopped");
    let v = json(ok(&ws(&home, &["start", &id, "--json"])));
    assert_eq!(v["services_restarted"][0]["service_name"], "db", "{v}");
    assert_eq!(v["services_restarted"][0]["state"], "ready", "{v}");
    let l = json(ok(&ws(&home, &["service", "list", &id, "--json"])));
    assert_eq!(l["running_count"], 1, "{l}");
    assert_eq!(state_of(&l, "noisy").0, "ended");
    // The logs a service left on the disk stay readable after the stop.
    let o = ok(&ws(&home, &["service", "logs", &id, "app"])).clone();
    assert_eq!(stdout(&o), "started\n");
    // A reset forgets the ended services and starts db again.
    let r = json(ok(&ws(&home, &["reset", &id, "--json"])));
    let cleared = r["workspace_reset"]["cleared"].to_string();
    assert!(cleared.contains("service(s)"), "{r}");
    assert_eq!(r["services_restarted"][0]["state"], "ready", "{r}");
    let l = json(ok(&ws(&home, &["service", "list", &id, "--json"])));
    assert_eq!(l["count"], 1, "{l}");
    ok(&ws(&home, &["delete", &id]));
}

#[test]
fn bad_service_input_is_refused_with_the_rule() {
    let home = Home::new();
    let id = create(&home, &[]);
    let o = ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "app",
            "--ready-file",
            "a",
            "--ready-tcp",
            ":1",
            "--",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("give one readiness check, not 2: --ready-file and --ready-tcp"),
        "{}",
        stderr(&o)
    );
    for (args, msg) in [
        (vec!["bad/name", "--", "true"], "invalid service name"),
        (
            vec!["a", "--ready-tcp", "nohost", "--", "true"],
            "--ready-tcp takes HOST:PORT",
        ),
        (
            vec!["a", "--ready-http", "https://x", "--", "true"],
            "--ready-http takes an http:// URL",
        ),
        (
            vec!["a", "--ready-timeout-seconds", "0", "--", "true"],
            "--ready-timeout-seconds must be between 1",
        ),
        (
            vec!["a", "--restart", "always", "--", "true"],
            "takes no or on-start",
        ),
        (vec!["a", "--cwd", "../etc", "--", "true"], ".."),
        (
            vec!["a", "--publish", "80", "--publish", "8080:80", "--", "true"],
            "names guest port 80 or host port 8080 twice",
        ),
        (
            vec![
                "a",
                "--publish",
                "1",
                "--publish",
                "2",
                "--publish",
                "3",
                "--publish",
                "4",
                "--publish",
                "5",
                "--publish",
                "6",
                "--publish",
                "7",
                "--publish",
                "8",
                "--publish",
                "9",
                "--",
                "true",
            ],
            "publishes at most 8 ports",
        ),
    ] {
        let mut all = vec!["service", "start", &id];
        all.extend(args.iter().copied());
        let o = ws(&home, &all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    // Publishing needs the policy that allows it; nothing starts.
    let o = ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "a",
            "--publish",
            "80",
            "--json",
            "--",
            "true",
        ],
    );
    assert_eq!(json(&o)["error"]["kind"], "wrong_state", "{}", stdout(&o));
    assert!(
        stdout(&o).contains("publishes no ports") && stdout(&o).contains("network set"),
        "{}",
        stdout(&o)
    );
    let o = ws(&home, &["service", "status", &id, "nope", "--json"]);
    assert_eq!(json(&o)["error"]["kind"], "not_found");
    assert!(
        stdout(&o).contains("pyro workspace service list"),
        "{}",
        stdout(&o)
    );
    let o = ws(
        &home,
        &[
            "service", "start", &id, "a", "--cwd", "missing", "--", "true",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    // The example in `pyro --help` works as written.
    let v = json(ok(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "app",
            "--ready-file",
            ".ready",
            "--json",
            "--",
            "sh",
            "-lc",
            "touch .ready && while true; do sleep 60; done",
        ],
    )));
    assert_eq!(v["state"], "ready", "{v}");
    // A second start under a running service's name is refused, naming how
    // to stop the first.
    let o = ws(
        &home,
        &["service", "start", &id, "app", "--json", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["error"]["kind"], "wrong_state", "{v}");
    assert!(
        stdout(&o).contains("already running") && stdout(&o).contains("service stop"),
        "{}",
        stdout(&o)
    );
    ok(&ws(&home, &["stop", &id]));
    let o = ws(&home, &["service", "start", &id, "a", "--", "true"]);
    assert!(
        stderr(&o).contains("pyro workspace start"),
        "{}",
        stderr(&o)
    );
    let o = ws(&home, &["service", "list", &id]);
    assert!(stdout(ok(&o)).starts_with("app  ended"), "{}", stdout(&o));
    ok(&ws(&home, &["delete", &id]));
}

#[test]
fn keep_alive_holds_the_vm_past_its_ttl_and_plain_services_do_not() {
    let home = Home::new();
    let id = create(&home, &["--ttl-seconds", "10"]);
    ok(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "held",
            "--keep-alive",
            "--",
            "sleep 600",
        ],
    ));
    std::thread::sleep(std::time::Duration::from_secs(14));
    let v = json(ok(&ws(
        &home,
        &["service", "status", &id, "held", "--json"],
    )));
    assert_eq!(
        v["state"], "ready",
        "a keep-alive service holds the VM up: {v}"
    );
    assert_eq!(v["keep_alive"], true);
    ok(&ws(&home, &["service", "stop", &id, "held"]));
    ok(&ws(
        &home,
        &["service", "start", &id, "plain", "--", "sleep 600"],
    ));
    std::thread::sleep(std::time::Duration::from_secs(14));
    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    assert_eq!(st["state"], "stopped", "a plain service does not: {st}");
    ok(&ws(&home, &["delete", &id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_over_mcp() {
    let home = Home::new();
    let client = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let w = mcp_support::ok(
        &client,
        "workspace_create",
        json!({"environment": "debian:12"}),
    )
    .await;
    let id = w["workspace_id"].as_str().unwrap().to_owned();
    let v = mcp_support::ok(
        &client,
        "service_start",
        json!({"workspace_id": id, "service_name": "web", "command": "echo up; sleep 0.3; touch ok; sleep 305", "ready_file": "ok"}),
    )
    .await;
    assert_eq!(v["state"], "ready", "{v}");
    let l = mcp_support::ok(&client, "service_list", json!({"workspace_id": id})).await;
    assert_eq!(
        (l["count"].as_u64(), l["running_count"].as_u64()),
        (Some(1), Some(1)),
        "{l}"
    );
    let l = mcp_support::ok(
        &client,
        "service_logs",
        json!({"workspace_id": id, "service_name": "web", "tail_lines": 5}),
    )
    .await;
    assert_eq!(l["stdout"], "up\n", "{l}");
    let s = mcp_support::ok(
        &client,
        "service_status",
        json!({"workspace_id": id, "service_name": "web"}),
    )
    .await;
    assert_eq!(s["state"], "ready");
    let e = err_kind(
        &client,
        "service_start",
        json!({"workspace_id": id, "service_name": "x", "command": "true", "ready_file": "a", "ready_command": "true"}),
        "invalid_argument",
    )
    .await;
    assert!(
        e.contains("ready_file argument and the ready_command argument"),
        "{e}"
    );
    let v = mcp_support::ok(
        &client,
        "service_stop",
        json!({"workspace_id": id, "service_name": "web"}),
    )
    .await;
    assert_eq!(v["state"], "stopped", "{v}");
    err_kind(
        &client,
        "service_status",
        json!({"workspace_id": id, "service_name": "gone"}),
        "not_found",
    )
    .await;
    mcp_support::ok(&client, "workspace_delete", json!({"workspace_id": id})).await;
    client.cancel().await.unwrap();
}

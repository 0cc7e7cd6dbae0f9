//! Secrets end to end on host-compat: given at create, handed to commands
//! and shells as variables, and never seen again in any output, log,
//! record, snapshot or fork, in clear or encoded, however a command prints
//! them.

mod common;
mod mcp_support;

use std::path::Path;

use common::host_compat::{create, ws};
use common::{Home, json, ok, stderr, stdout};
use mcp_support::connect;
use serde_json::json;

const VALUE: &str = "s3cr3t-t0ken-4242";
const FILE_VALUE: &str = "file-held-secret-77";

fn leaks(root: &Path, value: &str) -> Vec<String> {
    // The store and the test's own token file hold it by design.
    common::secrets::leaks(root, value, &["secrets.json", "token.txt"])
}

fn assert_hidden(text: &str, what: &str) {
    for v in [VALUE, FILE_VALUE] {
        assert!(
            !common::secrets::shows(text.as_bytes(), v),
            "{what} shows {v}: {text}"
        );
    }
}

#[test]
fn secrets_reach_commands_and_never_leave() {
    let home = Home::new();
    let file = home.path().join("token.txt");
    std::fs::write(&file, format!("{FILE_VALUE}\n")).unwrap();
    let secret = format!("API_TOKEN={VALUE}");
    let secret_file = format!("FILE_TOKEN={}", file.display());
    let id = create(&home, &["--secret", &secret, "--secret-file", &secret_file]);
    let store = home
        .path()
        .join("workspaces")
        .join(&id)
        .join("secrets.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let st = json(ok(&ws(&home, &["status", &id, "--json"])));
    assert_eq!(st["secrets"], json!(["API_TOKEN", "FILE_TOKEN"]), "{st}");
    let human = stdout(ok(&ws(&home, &["status", &id])));
    assert!(human.contains("Secrets: API_TOKEN, FILE_TOKEN"), "{human}");

    // The command gets the values; what it prints of them does not come
    // back: in clear, in base64 at each alignment, in hex, byte by byte,
    // on either stream, in the human and the JSON form.
    let script = "test \"$API_TOKEN\" = \"$(cat /dev/null)s3cr3t-t0ken-4242\" && echo same; \
        echo \"clear $API_TOKEN\"; \
        for p in '' a ab; do printf '%s%s' \"$p\" \"$API_TOKEN\" | base64 -w0; echo; done; \
        printf %s \"$GH\" | od -An -tx1 | tr -d ' \\n'; echo; \
        printf '%s\\n' \"$API_TOKEN\" | fold -w1 | while read c; do printf %s \"$c\"; sleep 0.01; done; echo; \
        echo \"err $GH\" >&2";
    let o = ws(
        &home,
        &[
            "exec",
            &id,
            "--secret-env",
            "API_TOKEN",
            "--secret-env",
            "FILE_TOKEN=GH",
            "--",
            script,
        ],
    );
    let (out, err) = (stdout(ok(&o)), stderr(&o));
    assert!(
        out.starts_with("same\nclear [redacted:API_TOKEN]\n"),
        "{out}"
    );
    assert!(err.contains("err [redacted:FILE_TOKEN]"), "{err}");
    assert!(
        err.contains("redacted:"),
        "the result says it redacted: {err}"
    );
    assert_hidden(&out, "stdout");
    assert_hidden(&err, "stderr");
    let v = json(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--secret-env",
            "API_TOKEN",
            "--json",
            "--",
            script,
        ],
    )));
    assert!(v["redactions"].as_u64().unwrap() >= 5, "{v}");
    assert_hidden(&v.to_string(), "exec --json");

    // In the background: output read over several waits.
    let v = json(ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--secret-env",
            "API_TOKEN",
            "--detach",
            "--json",
            "--",
            "printf '%s\\n' \"$API_TOKEN\" | fold -w1 | while read c; do printf %s \"$c\"; sleep 0.05; done; echo",
        ],
    )));
    let seq = v["sequence"].to_string();
    let mut seen = String::new();
    for _ in 0..30 {
        let w = json(ok(&ws(
            &home,
            &["exec-wait", &id, &seq, "--wait-seconds", "1", "--json"],
        )));
        seen.push_str(w["stdout"].as_str().unwrap());
        if w["state"] == "finished" {
            break;
        }
    }
    assert_eq!(seen, "[redacted:API_TOKEN]\n");

    // A service gets it too; its logs read back redacted, and stay off
    // the disk the snapshot and forks below copy.
    let v = json(ok(&ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "svc",
            "--secret-env",
            "API_TOKEN=T",
            "--ready-file",
            "/tmp/svc.up",
            "--json",
            "--",
            "sh",
            "-c",
            "echo \"svc $T\"; touch /tmp/svc.up; exec sleep 1000",
        ],
    )));
    assert_eq!(v["state"], "ready", "{v}");
    let l = json(ok(&ws(&home, &["service", "logs", &id, "svc", "--json"])));
    assert_eq!(l["stdout"], "svc [redacted:API_TOKEN]\n", "{l}");
    assert_eq!(l["redactions"], 1);
    // Paged in tiny ranges, no page shows part of it.
    let (mut from, mut paged) = (0u64, String::new());
    for _ in 0..20 {
        let f = from.to_string();
        let p = json(ok(&ws(
            &home,
            &[
                "service",
                "logs",
                &id,
                "svc",
                "--stdout-from",
                &f,
                "--max-bytes",
                "5",
                "--json",
            ],
        )));
        paged.push_str(p["stdout"].as_str().unwrap());
        from = p["stdout_position"]["next"].as_u64().unwrap();
        if from >= p["stdout_position"]["end"].as_u64().unwrap() {
            break;
        }
    }
    assert_eq!(paged, "svc [redacted:API_TOKEN]\n");
    let o = ws(
        &home,
        &[
            "service",
            "start",
            &id,
            "bad",
            "--secret-env",
            "NOPE",
            "--",
            "true",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    ok(&ws(&home, &["service", "stop", &id, "svc"]));

    // A secret not asked for is not there; a variable set twice, an
    // unknown secret and a bad name are refused.
    assert_eq!(
        stdout(ok(&ws(
            &home,
            &["exec", &id, "--", "echo \"[$API_TOKEN]\""]
        ))),
        "[]\n"
    );
    for (args, says) in [
        (vec!["--secret-env", "NOPE"], "does not have"),
        (
            vec!["--secret-env", "API_TOKEN=X", "--env", "X=1"],
            "set by both",
        ),
        (vec!["--secret-env", "API_TOKEN=1X"], "not valid"),
    ] {
        let mut a = vec!["exec", &id];
        a.extend(args);
        a.extend(["--", "true"]);
        let o = ws(&home, &a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }

    // The history, the snapshot and the forks carry none of it.
    let logs = stdout(ok(&ws(&home, &["logs", &id, "--json"])));
    assert_hidden(&logs, "logs");
    let s = json(ok(&ws(
        &home,
        &["snapshot", "create", &id, "cp1", "--json"],
    )));
    assert_eq!(s["secrets_left_out"], json!(["API_TOKEN", "FILE_TOKEN"]));
    // The same, said to people.
    let human = stdout(ok(&ws(&home, &["snapshot", "create", &id, "cp-human"])));
    assert!(
        human.contains(
            "Not in the snapshot (secrets stay with the workspace): API_TOKEN, FILE_TOKEN"
        ),
        "{human}"
    );
    let human = stdout(ok(&ws(&home, &["fork", &id])));
    assert!(
        human.contains(
            "Secrets left out of the forks (--with-secrets copies them): API_TOKEN, FILE_TOKEN"
        ),
        "{human}"
    );
    let forked = human
        .lines()
        .find_map(|l| l.strip_prefix("Forked workspace: "))
        .unwrap_or_else(|| panic!("{human}"))
        .to_owned();
    ok(&ws(&home, &["delete", &forked]));
    let f = json(ok(&ws(&home, &["fork", &id, "--json"])));
    assert_eq!(f["secrets_left_out"], json!(["API_TOKEN", "FILE_TOKEN"]));
    let fork = f["workspaces"][0]["workspace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(f["workspaces"][0]["secrets"], json!([]));
    let o = ws(
        &home,
        &["exec", &fork, "--secret-env", "API_TOKEN", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let f = json(ok(&ws(
        &home,
        &["fork", &id, "--with-secrets", "--snapshot", "cp1", "--json"],
    )));
    assert_eq!(f["secrets_left_out"], json!([]));
    let with = f["workspaces"][0]["workspace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = ws(
        &home,
        &[
            "exec",
            &with,
            "--secret-env",
            "API_TOKEN",
            "--",
            "echo \"$API_TOKEN\"",
        ],
    );
    assert_eq!(stdout(ok(&o)), "[redacted:API_TOKEN]\n");
    let leaked = leaks(home.path(), VALUE);
    assert!(leaked.is_empty(), "the value is in {leaked:?}");
    assert!(leaks(home.path(), FILE_VALUE).is_empty());
    for w in [&id, &fork, &with] {
        ok(&ws(&home, &["delete", w]));
    }
    home.assert_clean();
}

#[test]
fn reads_diffs_and_exports_are_redacted() {
    let home = Home::new();
    let secret = format!("API_TOKEN={VALUE}");
    let id = create(&home, &["--secret", &secret]);
    // The command writes the value to a file (its own choice): what pyro
    // shows of the file hides it.
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--secret-env",
            "API_TOKEN",
            "--",
            "mkdir -p out && echo \"token=$API_TOKEN\" > out/conf.txt && printf 'a\\0b' > out/bin",
        ],
    ));
    let r = json(ok(&ws(
        &home,
        &["file", "read", &id, "out/conf.txt", "--json"],
    )));
    assert_eq!(r["content"], "token=[redacted:API_TOKEN]\n", "{r}");
    assert_eq!(r["redactions"], 1);
    let d = stdout(ok(&ws(&home, &["diff", &id])));
    assert!(d.contains("+token=[redacted:API_TOKEN]"), "{d}");
    assert_hidden(&d, "diff");
    let dj = json(ok(&ws(&home, &["diff", &id, "--json"])));
    assert!(dj["redactions"].as_u64().unwrap() >= 1, "{dj}");
    let dest = home.path().join("exported");
    let e = json(ok(&ws(
        &home,
        &[
            "export",
            &id,
            "out",
            "--output",
            dest.to_str().unwrap(),
            "--json",
        ],
    )));
    assert_eq!(
        (e["redactions"].as_u64(), e["redacted_files"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("conf.txt")).unwrap(),
        "token=[redacted:API_TOKEN]\n"
    );
    assert_eq!(std::fs::read(dest.join("bin")).unwrap(), b"a\0b");
    // An error quoting the guest is redacted too.
    let o = ws(&home, &["file", "read", &id, VALUE]);
    assert!(!stderr(&o).contains(VALUE), "{}", stderr(&o));
    // A fork cannot use the secret, but what the origin wrote stays
    // hidden in it.
    let f = json(ok(&ws(&home, &["fork", &id, "--json"])));
    let fork = f["workspaces"][0]["workspace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = json(ok(&ws(
        &home,
        &["file", "read", &fork, "out/conf.txt", "--json"],
    )));
    assert_eq!(r["content"], "token=[redacted:API_TOKEN]\n", "{r}");
    let o = ws(&home, &["exec", &fork, "--", "cat out/conf.txt"]);
    assert_eq!(stdout(ok(&o)), "token=[redacted:API_TOKEN]\n");
    let o = ws(
        &home,
        &["exec", &fork, "--secret-env", "API_TOKEN", "--", "true"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    ok(&ws(&home, &["delete", &fork]));
    ok(&ws(&home, &["delete", &id]));
    home.assert_clean();
}

#[test]
fn bad_secrets_are_refused_before_anything_exists() {
    let home = Home::new();
    let big = "x".repeat(15 << 10);
    let [big_a, big_b, big_c, big_d, big_e] =
        ["A", "B", "C", "D", "E"].map(|n| format!("{n}={big}"));
    let huge = format!("H={}", "x".repeat(17 << 10));
    let many: Vec<String> = (0..33).map(|i| format!("S{i}=value-{i}")).collect();
    let many: Vec<&str> = many.iter().flat_map(|s| ["--secret", s.as_str()]).collect();
    for (args, says) in [
        (vec!["--secret", &huge], "secret H is longer than 16 KiB"),
        (many, "33 secrets were given; a workspace holds at most 32"),
        (vec!["--secret", "NOVALUE"], "NAME=VALUE"),
        (vec!["--secret", "A=short"], "shorter than"),
        (vec!["--secret", "9A=long-enough-value"], "not valid"),
        (vec!["--secret-file", "A=/nonexistent/file"], "cannot read"),
        (
            vec![
                "--secret", &big_a, "--secret", &big_b, "--secret", &big_c, "--secret", &big_d,
                "--secret", &big_e,
            ],
            "at most 64 KiB",
        ),
    ] {
        let mut a = vec!["create", "debian:12"];
        a.extend(args);
        let o = ws(&home, &a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{a:?}: {}", stderr(&o));
    }
    assert!(
        std::fs::read_dir(home.path().join("workspaces"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_over_mcp_only_in_workspace_full() {
    common::require_debian12();
    let home = Home::new();
    let full = connect(
        &home,
        home.path(),
        &["--profile", "workspace-full"],
        "host-compat",
    )
    .await;
    let ok = mcp_support::ok;
    // One by value, one from a file under the server's allowed root.
    let token_file = home.path().join("token.txt");
    std::fs::write(&token_file, "from-a-file").unwrap();
    let w = ok(
        &full,
        "workspace_create",
        json!({"secrets": [
            {"name": "API_TOKEN", "value": VALUE},
            {"name": "FILE_TOKEN", "file_path": token_file},
        ]}),
    )
    .await;
    assert_eq!(w["secrets"], json!(["API_TOKEN", "FILE_TOKEN"]), "{w}");
    let id = w["workspace_id"].as_str().unwrap().to_owned();
    // Neither a value nor a file: refused, naming both.
    let e = mcp_support::err_kind(
        &full,
        "workspace_create",
        json!({"secrets": [{"name": "EMPTY"}]}),
        "invalid_argument",
    )
    .await;
    assert!(
        e.contains("needs exactly one of value and file_path"),
        "{e}"
    );
    let x = ok(
        &full,
        "workspace_exec",
        json!({"workspace_id": id, "command": "echo \"$T\"", "secret_env": {"API_TOKEN": "T"}}),
    )
    .await;
    assert_eq!(x["stdout"], "[redacted:API_TOKEN]\n", "{x}");
    assert_eq!(x["redactions"], 1);
    let sh = ok(
        &full,
        "shell_open",
        json!({"workspace_id": id, "secret_env": {"API_TOKEN": "T"}}),
    )
    .await;
    let shell = sh["shell_id"].as_str().unwrap().to_owned();
    ok(
        &full,
        "shell_write",
        json!({"workspace_id": id, "shell_id": shell, "input": "echo \"[$T]\""}),
    )
    .await;
    let mut seen = String::new();
    let mut cursor = 0;
    for _ in 0..20 {
        let r = ok(
            &full,
            "shell_read",
            json!({"workspace_id": id, "shell_id": shell, "cursor": cursor, "wait_for_idle_ms": 500}),
        )
        .await;
        seen.push_str(r["output"].as_str().unwrap());
        cursor = r["next_cursor"].as_u64().unwrap();
        if seen.contains("[[redacted:API_TOKEN]]") {
            break;
        }
    }
    assert!(seen.contains("[[redacted:API_TOKEN]]"), "{seen}");
    assert_hidden(&seen, "shell read");

    // The core profile neither offers nor takes them.
    let core = connect(&home, home.path(), &[], "host-compat").await;
    let tools = core.list_all_tools().await.unwrap();
    for (tool, arg) in [
        ("workspace_create", "secrets"),
        ("workspace_exec", "secret_env"),
    ] {
        let t = tools.iter().find(|t| t.name == tool).unwrap();
        assert!(
            !t.input_schema["properties"]
                .as_object()
                .unwrap()
                .contains_key(arg),
            "{tool} offers {arg} in workspace-core"
        );
    }
    let e = mcp_support::err_kind(
        &core,
        "workspace_exec",
        json!({"workspace_id": id, "command": "true", "secret_env": {"API_TOKEN": "T"}}),
        "invalid_argument",
    )
    .await;
    assert!(e.contains("workspace-full"), "{e}");
    ok(&full, "workspace_delete", json!({"workspace_id": id})).await;
    assert!(leaks(home.path(), VALUE).is_empty());
}

#[test]
fn the_leak_scan_finds_a_value_in_a_sparse_file_and_in_base64() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("disk.img")).unwrap();
    f.seek(SeekFrom::Start(100 << 20)).unwrap();
    f.write_all(format!("xx{VALUE}yy").as_bytes()).unwrap();
    f.set_len(200 << 20).unwrap();
    let b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("ab{VALUE}"),
    );
    std::fs::write(dir.path().join("b64.txt"), b64).unwrap();
    std::fs::write(dir.path().join("clean.txt"), "nothing").unwrap();
    let mut found = common::secrets::leaks(dir.path(), VALUE, &[]);
    found.sort();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].ends_with("b64.txt") && found[1].ends_with("disk.img"));
}

/// Metadata updates that contradict themselves or clear what is not there
/// are refused; a variable set twice from secrets is refused.
#[test]
fn contradictory_updates_and_doubled_secret_variables_are_refused() {
    let home = Home::new();
    let id = create(&home, &["--secret", "TOKEN=a-long-secret-value"]);
    for (args, says) in [
        (
            vec!["update", &id, "--name", "x", "--clear-name"],
            "--name and --clear-name cannot be used together",
        ),
        (
            vec!["update", &id, "--clear-label", "nope"],
            "has no label \"nope\" to clear",
        ),
        (
            vec![
                "exec",
                &id,
                "--secret-env",
                "TOKEN=V",
                "--secret-env",
                "TOKEN=V",
                "--",
                "true",
            ],
            "--secret-env sets variable V twice",
        ),
    ] {
        let o = ws(&home, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    // A name set, then cleared.
    let v = json(ok(&ws(
        &home,
        &["update", &id, "--name", "named", "--json"],
    )));
    assert_eq!(v["name"], "named", "{v}");
    let v = json(ok(&ws(&home, &["update", &id, "--clear-name", "--json"])));
    assert!(v["name"].is_null(), "{v}");
    ok(&ws(&home, &["delete", &id]));
}

//! The human forms of the workspace commands a person types, on
//! host-compat: content from standard input, empty and cut listings, and the
//! command log's empty and cut views.

mod common;

use std::process::Output;

use common::host_compat::{create, ws};
use common::{Home, ok, require_debian12, stderr, stdout};

/// `pyro workspace ARGS` with `input` on its standard input.
fn ws_stdin(home: &Home, args: &[&str], input: &[u8]) -> Output {
    home.cmd()
        .arg("workspace")
        .args(args)
        .env("PYRO_BACKEND", "host-compat")
        .write_stdin(input.to_vec())
        .output()
        .unwrap()
}

#[test]
fn stdin_content_empty_and_cut_listings_and_the_command_log() {
    let home = Home::new();
    let id = create(&home, &[]);

    // Nothing ran yet.
    let o = ok(&ws(&home, &["logs", &id])).clone();
    assert!(
        stdout(&o).contains("No commands logged (since creation or the last reset)."),
        "{}",
        stdout(&o)
    );

    // A file's content, then a patch, from standard input.
    ok(&ws_stdin(
        &home,
        &["file", "write", &id, "notes.txt", "--stdin"],
        b"one\ntwo\n",
    ));
    let patch = "--- a/notes.txt\n+++ b/notes.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+three\n";
    ok(&ws_stdin(
        &home,
        &["patch", "apply", &id, "--stdin"],
        patch.as_bytes(),
    ));
    let o = ok(&ws(&home, &["file", "read", &id, "notes.txt"])).clone();
    assert_eq!(stdout(&o), "one\nthree\n");

    // An empty directory, and a listing cut at --max-entries.
    ok(&ws(
        &home,
        &[
            "exec",
            &id,
            "--",
            "mkdir -p empty many && touch many/a many/b many/c",
        ],
    ));
    let o = ok(&ws(&home, &["file", "list", &id, "empty"])).clone();
    assert!(stdout(&o).contains("empty is empty."), "{}", stdout(&o));
    let o = ok(&ws(
        &home,
        &["file", "list", &id, "many", "--max-entries", "1"],
    ))
    .clone();
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("Showing 1 of 3 entries; raise --max-entries or list a subdirectory."),
        "{}",
        stderr(&o)
    );

    // An empty command is refused, in the CLI's words.
    let o = ws(&home, &["exec", &id, "--", " "]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the command is empty: give the command after `--`"),
        "{}",
        stderr(&o)
    );

    // The command log, cut at --tail.
    ok(&ws(&home, &["exec", &id, "--", "echo second"]));
    let o = ok(&ws(&home, &["logs", &id, "--tail", "1"])).clone();
    assert!(stdout(&o).contains("echo second"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("mkdir"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(
            "Showing the last 1 of 2 commands; raise --tail or pick one with --sequence."
        ),
        "{}",
        stderr(&o)
    );
    ok(&ws(&home, &["delete", &id]));
}

/// A start and a reset that fail (the environment's agent is broken, in a
/// private cache) leave the workspace stopped, saying why and what failed;
/// once the agent is back, it starts.
#[test]
fn failed_start_and_reset_leave_a_stopped_workspace_that_says_why() {
    require_debian12();
    let home = Home::new();
    let cache = home.private_cache(&["environments", "kernels"]);
    let run = |args: &[&str]| {
        home.cmd()
            .env("PYRO_CACHE_DIR", &cache)
            .env("PYRO_BACKEND", "host-compat")
            .arg("workspace")
            .args(args)
            .output()
            .unwrap()
    };
    let id = stdout(ok(&run(&["create", "debian:12", "--id-only"])))
        .trim()
        .to_owned();
    ok(&run(&["stop", &id]));
    let env_dir = std::fs::read_dir(cache.join("environments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("debian_12-")
        })
        .unwrap();
    let agent = env_dir.join("rootfs").join(pyro_env::agent::GUEST_PATH);
    let real = agent.with_extension("real");
    // A rename and a new file: the shared cache's hard-linked copy stays.
    std::fs::rename(&agent, &real).unwrap();
    std::fs::write(
        &agent,
        "#!/bin/sh\necho 'agent: broken on purpose' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    for (op, reason) in [
        ("start", "a start failed"),
        ("reset", "a reset to baseline failed"),
    ] {
        let o = run(&[op, &id]);
        assert_eq!(o.status.code(), Some(1), "{op}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("the sandbox process exited")
                && stderr(&o).contains("agent: broken on purpose"),
            "{op}: {}",
            stderr(&o)
        );
        let st = stdout(ok(&run(&["status", &id])));
        assert!(
            st.contains(&format!("State: stopped ({reason}"))
                && st.contains(
                    "Last error: the host-compat sandbox did not start: the sandbox process exited"
                ),
            "{op}: {st}"
        );
        home.assert_clean();
    }
    std::fs::rename(&real, &agent).unwrap();
    let st = stdout(ok(&run(&["start", &id])));
    assert!(st.contains("State: started"), "{st}");
    ok(&run(&["delete", &id]));
}

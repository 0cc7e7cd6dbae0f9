//! The human forms of the workspace commands a person types, on
//! host-compat: content from standard input, empty and cut listings, and the
//! command log's empty and cut views.

mod common;

use std::process::Output;

use common::host_compat::{create, ws};
use common::{Home, ok, stderr, stdout};

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

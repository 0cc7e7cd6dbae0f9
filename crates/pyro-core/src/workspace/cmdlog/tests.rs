//! Tests of the command log.

use super::*;

struct Null;
impl OutputSink for Null {
    fn stdout(&mut self, _: &[u8]) {}
    fn stderr(&mut self, _: &[u8]) {}
}

fn outcome() -> pyro_protocol::ExecOutcome {
    pyro_protocol::ExecOutcome {
        exit_code: 0,
        signal: None,
        timed_out: false,
        duration_ms: 5,
        stdout_bytes: 6,
        stderr_bytes: 0,
        stdout_truncated: false,
        stderr_truncated: false,
        limit: None,
    }
}

#[test]
fn a_job_waited_for_three_times_keeps_all_its_output_and_hides_a_split_secret() {
    let dir = tempfile::tempdir().unwrap();
    let r = crate::redact::Redactor::new([("T", &b"hunter2-token"[..])]);
    let job = JobRef {
        job_id: "x1".into(),
        vm_id: "vm".into(),
        stdout_next: 0,
        stderr_next: 0,
        timeout_seconds: 60,
        stdout_logged: 0,
        stderr_logged: 0,
    };
    let mut null = Null;
    let mut tee = LogSink::start(dir.path(), 1, "c".into(), "/".into(), 100, &mut null).unwrap();
    tee.redact(&r);
    tee.attach(job.clone());
    // Each wait reads from the saved offsets; the guest's stream is
    // `stream`, handed over in the pieces of `waits`.
    let stream = b"one hunter2-token two hunter2-";
    let rest = b"token three";
    let mut seen = Vec::new();
    let mut at = 0u64;
    for (i, upto) in [(0, 8usize), (1, stream.len())] {
        let piece = &stream[at as usize..upto];
        tee.stdout(piece);
        let mut j = tee.entry.job.clone().unwrap();
        j.stdout_next = upto as u64;
        tee.advance(j.stdout_next, 0);
        let (entry, out, _) = tee.detach(j);
        seen.extend_from_slice(out.as_bytes());
        at = entry.job.as_ref().unwrap().stdout_next;
        assert!(at <= upto as u64, "wait {i}");
        tee = LogSink::resume(dir.path(), entry, 100, &mut null).unwrap();
        tee.redact(&r);
    }
    let mut tail = stream[at as usize..].to_vec();
    tail.extend_from_slice(rest);
    tee.stdout(&tail);
    let (_, out, _) = tee.finish(Ok(&outcome())).unwrap();
    seen.extend_from_slice(out.as_bytes());
    let want = "one [redacted:T] two [redacted:T] three";
    assert_eq!(String::from_utf8(seen).unwrap(), want);
    let logged = std::fs::read_to_string(path(dir.path(), 1, "stdout")).unwrap();
    assert_eq!(logged, want);
}

#[test]
fn records_running_finished_cancelled_and_interrupted_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut null = Null;
    let mut s = LogSink::start(dir.path(), 1, "echo a".into(), "/w".into(), 3, &mut null).unwrap();
    s.stdout(b"hello\n");
    let (e, out, _) = s.finish(Ok(&outcome())).unwrap();
    assert_eq!(
        (e.state, e.exit_code, out.as_str()),
        (CommandState::Finished, Some(0), "hel")
    );
    // Cancelled: dropped before it finished.
    let mut null = Null;
    drop(LogSink::start(dir.path(), 2, "sleep 9".into(), "/w".into(), 3, &mut null).unwrap());
    // Interrupted: still "running", its runner gone.
    let mut null = Null;
    let s = LogSink::start(dir.path(), 3, "sleep 9".into(), "/w".into(), 3, &mut null).unwrap();
    let mut dead = s.entry.clone();
    std::mem::forget(s);
    dead.runner = Some(ProcessId {
        pid: u32::MAX - 1,
        start_ticks: 1,
    });
    save(dir.path(), &dead).unwrap();
    let (count, entries) = read(
        dir.path(),
        &LogsQuery {
            tail: 10,
            sequence: None,
            max_output_bytes: 4,
        },
        None,
    )
    .unwrap();
    assert_eq!(count, 3);
    assert!(entries.iter().all(|e| e.runner.is_none()));
    let states: Vec<_> = entries.iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            CommandState::Finished,
            CommandState::Cancelled,
            CommandState::Interrupted
        ]
    );
    // Only the end of the output, and how much was left out.
    assert_eq!(entries[0].stdout, "llo\n");
    assert_eq!(entries[0].stdout_omitted_bytes, 2);
    let one = read(
        dir.path(),
        &LogsQuery {
            tail: 1,
            sequence: Some(1),
            max_output_bytes: 100,
        },
        None,
    )
    .unwrap();
    assert_eq!(one.1[0].stdout, "hello\n");
    assert!(
        read(
            dir.path(),
            &LogsQuery {
                sequence: Some(9),
                ..LogsQuery::default()
            },
            None,
        )
        .is_err()
    );
}

#[test]
fn a_background_command_of_an_ended_vm_reads_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut null = Null;
    let mut s = LogSink::start(dir.path(), 1, "make".into(), "/w".into(), 3, &mut null).unwrap();
    let job = |vm: &str| JobRef {
        job_id: "x1".into(),
        vm_id: vm.into(),
        stdout_next: 0,
        stderr_next: 0,
        timeout_seconds: 30,
        stdout_logged: 0,
        stderr_logged: 0,
    };
    s.attach(job("vm-a"));
    s.detach(job("vm-a"));
    let q = LogsQuery::default();
    let on_a = read(dir.path(), &q, Some("vm-a")).unwrap().1;
    assert_eq!(on_a[0].state, CommandState::Running);
    for live in [Some("vm-b"), None] {
        let e = read(dir.path(), &q, live).unwrap().1;
        assert_eq!(e[0].state, CommandState::Interrupted, "{live:?}");
        assert!(e[0].error.as_deref().unwrap().contains("ended with"));
    }
}

#[test]
fn a_failing_log_write_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut null = Null;
    let mut s = LogSink::start(dir.path(), 1, "yes".into(), "/w".into(), 3, &mut null).unwrap();
    // /dev/full fails every write with ENOSPC.
    s.out = Some(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap(),
    );
    s.stdout(b"y\n");
    assert!(
        s.log_error().unwrap().contains("stdout log"),
        "{:?}",
        s.log_error()
    );
    let (e, out, _) = s.finish(Ok(&outcome())).unwrap();
    assert!(e.log_error.is_some());
    assert_eq!(out, "y\n");
}

/// A state's name in human output is its name in JSON.
#[test]
fn state_names_match_their_json() {
    for s in [
        CommandState::Running,
        CommandState::Finished,
        CommandState::Cancelled,
        CommandState::Interrupted,
        CommandState::Failed,
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
}

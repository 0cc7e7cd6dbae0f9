use super::*;

async fn read_all(id: &str, from: (u64, u64), wait_ms: u64) -> (Vec<u8>, JobState) {
    let mut wire = Vec::new();
    read(&mut wire, id, from, wait_ms, 1 << 20).await.unwrap();
    let mut rd = wire.as_slice();
    let mut out = Vec::new();
    loop {
        let f = pyro_protocol::read_frame(&mut rd).await.unwrap().unwrap();
        match f.kind {
            FrameKind::Stdout => out.extend(f.payload),
            FrameKind::Stderr => {}
            _ => {
                let r: Response = serde_json::from_slice(&f.payload).unwrap();
                let Response::Job(s) = r else { panic!("{r:?}") };
                return (out, s);
            }
        }
    }
}

fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        command: pyro_protocol::Command::Shell {
            script: script.into(),
        },
        cwd: Some("/".into()),
        env: Default::default(),
        timeout_ms: 60_000,
        output_limit_bytes: 1 << 20,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    }
}

#[tokio::test]
async fn a_job_runs_on_after_a_read_and_ends_with_its_status() {
    let Response::JobStarted { job_id } =
        start("t-one", &sh("echo one; sleep 1; echo two; exit 3")).unwrap()
    else {
        panic!()
    };
    let (out, s) = read_all(&job_id, (0, 0), 200).await;
    assert_eq!(out, b"one\n");
    assert!(s.outcome.is_none());
    let (out, s) = read_all(&job_id, (s.stdout_next, s.stderr_next), 10_000).await;
    assert_eq!(out, b"two\n");
    assert_eq!(s.outcome.unwrap().exit_code, 3);
}

/// A job with stdin is refused; one that cannot start ends at once with
/// the reason on its stderr; one past its timeout is killed with 124.
#[tokio::test]
async fn jobs_that_cannot_start_or_run_too_long() {
    let mut with_stdin = sh("true");
    with_stdin.stdin = true;
    let e = start("t-in", &with_stdin).unwrap_err();
    assert!(e.message.contains("cannot take stdin"), "{}", e.message);

    let mut missing = sh("true");
    missing.command = pyro_protocol::Command::Argv {
        argv: vec!["/no/such/program".into()],
    };
    let Response::JobStarted { job_id } = start("t-missing", &missing).unwrap() else {
        panic!()
    };
    let (_, s) = read_all(&job_id, (0, 0), 10_000).await;
    let outcome = s.outcome.unwrap();
    assert_eq!(outcome.exit_code, 127, "{outcome:?}");
    assert!(outcome.stderr_bytes > 0);

    let mut slow = sh("echo started; sleep 30");
    slow.timeout_ms = 2_000;
    let Response::JobStarted { job_id } = start("t-slow", &slow).unwrap() else {
        panic!()
    };
    let (out, s) = read_all(&job_id, (0, 0), 10_000).await;
    assert_eq!(out, b"started\n");
    let outcome = s.outcome.unwrap();
    assert!(outcome.timed_out, "{outcome:?}");
    assert_eq!(outcome.exit_code, 124);
}

#[tokio::test]
async fn a_cancelled_job_is_killed_with_its_group() {
    assert!(start("bad id", &sh("true")).is_err());
    let Response::JobStarted { job_id } = start("t-two", &sh("sleep 30 & sleep 30")).unwrap()
    else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel(&job_id).unwrap();
    let (_, s) = read_all(&job_id, (0, 0), 10_000).await;
    assert!(s.cancelled);
    assert_eq!(s.outcome.unwrap().exit_code, 137);
    assert!(cancel("j999999").is_err());
    assert!(start("t-two", &sh("true")).is_err(), "ids are never reused");
}

/// Fills the agent's one table: it needs a process of its own, as
/// nextest (`make test`) gives each test.
#[tokio::test]
async fn at_most_jobs_max_run_and_a_finished_one_makes_room() {
    for i in 0..JOBS_MAX {
        start(&format!("cap-{i}"), &sh("sleep 30")).unwrap();
    }
    let err = start("cap-over", &sh("true")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge, "{err:?}");
    assert!(
        err.message.contains("wait for or cancel one first"),
        "{err:?}"
    );
    // A cancelled (so finished) job is dropped for the new one.
    cancel("cap-0").unwrap();
    let mut started = false;
    for _ in 0..250 {
        if start("cap-over", &sh("true")).is_ok() {
            started = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(started, "a cancelled job still counted as running");
    assert!(lookup("cap-0").is_err(), "the finished job was kept");
    for i in 1..JOBS_MAX {
        cancel(&format!("cap-{i}")).unwrap();
    }
}

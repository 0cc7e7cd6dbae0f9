use super::*;
use pyro_protocol::Readiness;

fn spec(name: &str, script: &str, readiness: Option<Readiness>) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        command: pyro_protocol::Command::Shell {
            script: script.into(),
        },
        cwd: std::env::temp_dir().display().to_string(),
        env: Default::default(),
        readiness,
        ready_timeout_ms: 5_000,
        ready_interval_ms: 50,
        keep_alive: false,
        memory_logs: false,
    }
}

fn info(r: Response) -> ServiceInfo {
    match r {
        Response::Service(i) => i,
        other => panic!("{other:?}"),
    }
}

async fn settle(name: &str) -> ServiceInfo {
    info(wait(name, 10_000).await.unwrap())
}

#[test]
fn names_are_checked() {
    assert!(valid_name("app"));
    assert!(valid_name("db.1_x-y"));
    assert!(!valid_name(".app"));
    assert!(!valid_name("a/b"));
    assert!(!valid_name(&"a".repeat(65)));
}

/// A bad name or interval is refused before anything runs; a command
/// that cannot start makes a failed service that says why.
#[tokio::test]
async fn services_that_cannot_start_say_why() {
    svclog::tests::test_dir();
    let e = start(spec(".hidden", "true", None)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    assert!(e.message.contains("a letter or digit"), "{}", e.message);
    let mut zero = spec("t-zero", "true", None);
    zero.ready_interval_ms = 0;
    let e = start(zero).unwrap_err();
    assert!(e.message.contains("above 0 ms"), "{}", e.message);
    let mut missing = spec("t-missing", "true", None);
    missing.command = pyro_protocol::Command::Argv {
        argv: vec!["/no/such/program".into()],
    };
    let i = info(start(missing).unwrap());
    assert_eq!(i.state, "failed", "{i:?}");
    assert_eq!(i.reason.as_deref(), Some("start_failed"));
    assert_eq!(i.exit_code, Some(127), "{i:?}");
}

#[tokio::test]
async fn readiness_by_file_then_stop_ends_the_group() {
    svclog::tests::test_dir();
    let ready = std::env::temp_dir().join(format!("pyro-ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let script = format!(
        "sleep 0.3; echo started; touch {}; sleep 60 & sleep 60",
        ready.display()
    );
    let r = Readiness::File {
        path: ready.display().to_string(),
    };
    let i = info(start(spec("t-file", &script, Some(r))).unwrap());
    assert_eq!(i.state, "starting");
    let pid = i.pid.unwrap();
    let i = settle("t-file").await;
    assert_eq!(i.state, "ready", "{i:?}");
    assert!(i.ready_after_ms.unwrap() >= 250);
    assert!(matches!(
        start(spec("t-file", "true", None)),
        Err(AgentError {
            kind: ErrorKind::Conflict,
            ..
        })
    ));
    assert!(group_members(pid) >= 2);
    let i = info(stop("t-file", 2_000).await.unwrap());
    assert_eq!(i.state, "stopped");
    assert_eq!(i.reason.as_deref(), Some("sigterm"));
    assert_eq!(group_members(pid), 0);
    let _ = std::fs::remove_file(&ready);
}

#[tokio::test]
async fn a_service_that_ignores_term_is_killed_and_one_that_exits_early_failed() {
    svclog::tests::test_dir();
    start(spec("t-stubborn", "trap '' TERM; sleep 60", None)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let i = info(stop("t-stubborn", 300).await.unwrap());
    assert_eq!(i.reason.as_deref(), Some("sigkill"), "{i:?}");
    let never = Readiness::Command {
        command: "false".into(),
    };
    start(spec("t-early", "exit 4", Some(never))).unwrap();
    let i = settle("t-early").await;
    assert_eq!(i.state, "failed");
    assert_eq!(i.reason.as_deref(), Some("exited_before_ready"));
    assert_eq!(i.exit_code, Some(4));
}

#[tokio::test]
async fn readiness_by_tcp_and_http_and_a_timeout() {
    svclog::tests::test_dir();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in l.incoming().flatten().take(3) {
            let mut s = s;
            let mut b = [0u8; 512];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"HTTP/1.0 204 No Content\r\n\r\n");
        }
    });
    let tcp = Readiness::Tcp {
        address: format!("127.0.0.1:{port}"),
    };
    start(spec("t-tcp", "sleep 30", Some(tcp))).unwrap();
    assert_eq!(settle("t-tcp").await.state, "ready");
    let http = Readiness::Http {
        url: format!("http://127.0.0.1:{port}/"),
    };
    start(spec("t-http", "sleep 30", Some(http))).unwrap();
    assert_eq!(settle("t-http").await.state, "ready");
    let mut s = spec(
        "t-late",
        "sleep 30",
        Some(Readiness::Command {
            command: "exit 1".into(),
        }),
    );
    s.ready_timeout_ms = 300;
    start(s).unwrap();
    let i = settle("t-late").await;
    assert_eq!(i.state, "failed");
    assert_eq!(i.reason.as_deref(), Some("readiness_timeout"));
    assert!(i.last_probe_error.unwrap().contains("exited 1"));
    for n in ["t-tcp", "t-http"] {
        stop(n, 1000).await.unwrap();
    }
}

/// Fills the agent's one table: it needs a process of its own, as
/// nextest (`make test`) gives each test.
#[tokio::test]
async fn at_most_services_max_run_and_an_ended_one_makes_room() {
    svclog::tests::test_dir();
    for i in 0..SERVICES_MAX {
        start(spec(&format!("cap-{i}"), "sleep 30", None)).unwrap();
    }
    let err = start(spec("cap-over", "sleep 30", None)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge, "{err:?}");
    assert!(err.message.contains("stop one first"), "{err:?}");
    // A stopped one is dropped for the new one.
    stop("cap-0", 1_000).await.unwrap();
    start(spec("cap-over", "sleep 30", None)).unwrap();
    // Logs of a name that never ran here, and of a name that cannot be.
    for (name, kind, says) in [
        (
            "never-ran",
            ErrorKind::NotFound,
            "has no logs in this guest",
        ),
        ("../up", ErrorKind::BadRequest, "invalid service name"),
    ] {
        let mut out = Vec::new();
        logs(&mut out, name, None, 10, 1 << 10).await.unwrap();
        let mut rd = out.as_slice();
        let frame = pyro_protocol::read_frame(&mut rd).await.unwrap().unwrap();
        match frame.message::<Response>().unwrap() {
            Response::Error(e) => {
                assert_eq!(e.kind, kind, "{e:?}");
                assert!(e.message.contains(says), "{e:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    for i in 1..SERVICES_MAX {
        stop(&format!("cap-{i}"), 1_000).await.unwrap();
    }
    stop("cap-over", 1_000).await.unwrap();
}

use super::*;

async fn read_all(id: &str, cursor: u64, wait: Option<u64>) -> (String, u64, u64, ShellInfo) {
    let mut wire = Vec::new();
    read(&mut wire, id, cursor, 1 << 20, wait).await.unwrap();
    let mut rd = wire.as_slice();
    let mut out = Vec::new();
    loop {
        let f = pyro_protocol::read_frame(&mut rd).await.unwrap().unwrap();
        if f.kind == FrameKind::Stdout {
            out.extend(f.payload);
            continue;
        }
        let r: Response = serde_json::from_slice(&f.payload).unwrap();
        let Response::ShellOutput {
            shell,
            next_cursor,
            dropped,
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        return (
            String::from_utf8_lossy(&out).into_owned(),
            next_cursor,
            dropped,
            shell,
        );
    }
}

/// Every refusal of a shell request names what to change; an ended
/// shell refuses input, sizes and signals but can still be read.
#[tokio::test]
async fn shell_requests_that_cannot_run_say_why() {
    let none = BTreeMap::new();
    let kind = |r: Result<Response, AgentError>| r.unwrap_err().kind;
    assert_eq!(
        kind(open("t-e1", "/", (0, 24), &none, false)),
        ErrorKind::BadRequest
    );
    assert_eq!(
        kind(open("t-e1", "/no/such/dir", (80, 24), &none, false)),
        ErrorKind::NotFound
    );
    let bad_env = BTreeMap::from([("1BAD".to_owned(), "x".to_owned())]);
    assert_eq!(
        kind(open("t-e1", "/", (80, 24), &bad_env, false)),
        ErrorKind::BadRequest
    );
    let env = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
    open("t-e1", "/", (80, 24), &env, false).unwrap();
    assert_eq!(
        kind(open("t-e1", "/", (80, 24), &none, false)),
        ErrorKind::Conflict
    );
    assert_eq!(
        kind(write("t-e1", &"x".repeat(INPUT_MAX + 1)).await),
        ErrorKind::TooLarge
    );
    assert_eq!(kind(resize("t-e1", 0, 1).await), ErrorKind::BadRequest);
    let e = signal("t-e1", "USR1").unwrap_err();
    assert!(
        e.message.contains("HUP, INT, TERM or KILL"),
        "{}",
        e.message
    );
    assert_eq!(kind(write("t-none", "x").await), ErrorKind::NotFound);

    write("t-e1", "echo $GREETING; exit 7\n").await.unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let mut info = read_all("t-e1", 0, None).await;
    while info.3.exit_code.is_none() {
        assert!(Instant::now() < until, "the shell never exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
        info = read_all("t-e1", 0, None).await;
    }
    assert_eq!(info.3.exit_code, Some(7));
    assert!(info.0.contains("hi"), "{:?}", info.0);
    assert_eq!(kind(write("t-e1", "x\n").await), ErrorKind::Conflict);
    assert_eq!(kind(resize("t-e1", 10, 10).await), ErrorKind::Conflict);
    assert_eq!(kind(signal("t-e1", "INT")), ErrorKind::Conflict);
    close("t-e1").await.unwrap();
    assert_eq!(kind(close("t-e1").await), ErrorKind::NotFound);
}

#[tokio::test]
async fn a_shell_keeps_its_state_and_reports_its_exit() {
    assert!(open("bad id", "/", (80, 24), &BTreeMap::new(), false).is_err());
    let Response::Shell(info) = open("t-1", "/", (80, 24), &BTreeMap::new(), false).unwrap() else {
        panic!()
    };
    let id = info.shell_id;
    let Response::Shell(sized) = resize(&id, 100, 30).await.unwrap() else {
        panic!()
    };
    assert_eq!((sized.cols, sized.rows), (100, 30));
    assert!(resize(&id, 0, 30).await.is_err());
    write(&id, "cd /tmp && export X=42\n").await.unwrap();
    write(&id, "echo \"[$PWD:$X]\" \"[$(stty size)]\"\n")
        .await
        .unwrap();
    let mut seen = String::new();
    let mut cursor = 0;
    for _ in 0..50 {
        let (out, next, dropped, _) = read_all(&id, cursor, Some(200)).await;
        assert_eq!(dropped, 0);
        seen.push_str(&out);
        cursor = next;
        if seen.contains("[30 100]") {
            break;
        }
    }
    assert!(seen.contains("[/tmp:42] [30 100]"), "{seen:?}");
    assert!(signal(&id, "QUIT").is_err());
    write(&id, "exit 7\n").await.unwrap();
    let (_, _, _, info) = read_all(&id, cursor, Some(5_000)).await;
    let mut info = info;
    for _ in 0..100 {
        if info.exit_code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        info = read_all(&id, cursor, None).await.3;
    }
    assert_eq!(info.state, "exited");
    assert_eq!(info.exit_code, Some(7));
    assert!(write(&id, "true\n").await.is_err());
    let Response::Shell(closed) = close(&id).await.unwrap() else {
        panic!()
    };
    assert_eq!(closed.state, "closed");
    assert!(lookup(&id).is_err());
}

#[tokio::test]
async fn an_exit_is_told_after_the_last_output_and_ends_the_session() {
    let Response::Shell(info) = open("t-2", "/", (80, 24), &BTreeMap::new(), false).unwrap() else {
        panic!()
    };
    let id = info.shell_id;
    write(&id, "sleep 300 & seq 1 2000; exit 5\n")
        .await
        .unwrap();
    let mut info = read_all(&id, 0, Some(100)).await.3;
    for _ in 0..200 {
        if info.exit_code.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        info = read_all(&id, 0, None).await.3;
    }
    assert_eq!(info.exit_code, Some(5));
    // Everything it wrote is there once the exit is.
    let mut all = String::new();
    let mut cursor = 0;
    loop {
        let (out, next, _, _) = read_all(&id, cursor, None).await;
        if out.is_empty() {
            break;
        }
        all.push_str(&out);
        cursor = next;
    }
    assert!(all.contains("\n2000\r\n"), "{all:?}");
    // Nothing of its session is left (the background sleep included;
    // a killed process may take a moment to go).
    let pid = lookup(&id).unwrap().pid;
    let left = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            // SAFETY: getsid(2) only reads.
            .filter(|p| unsafe { libc::getsid(*p) } == pid)
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
            })
            .count()
    };
    for _ in 0..100 {
        if left() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left(), 0);
    close(&id).await.unwrap();
}

/// Fills the agent's one table: it needs a process of its own, as
/// nextest (`make test`) gives each test.
#[tokio::test]
async fn at_most_shells_max_run_at_once() {
    let none = BTreeMap::new();
    for i in 0..SHELLS_MAX {
        open(&format!("cap-{i}"), "/", (80, 24), &none, false).unwrap();
    }
    let err = open("cap-over", "/", (80, 24), &none, false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooLarge, "{err:?}");
    assert!(err.message.contains("close one first"), "{err:?}");
    // One ends by itself (kept, but not running): room for another.
    write("cap-0", "exit 3\n").await.unwrap();
    let mut ended = false;
    for _ in 0..250 {
        if let Ok(Response::Shell(s)) = open("cap-again", "/", (80, 24), &none, false) {
            assert_eq!(s.shell_id, "cap-again");
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ended, "an exited shell still counted as running");
    for i in 1..SHELLS_MAX {
        close(&format!("cap-{i}")).await.unwrap();
    }
    close("cap-again").await.unwrap();
    close("cap-0").await.unwrap();
}

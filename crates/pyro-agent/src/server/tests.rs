use super::*;
use pyro_protocol::{Envelope, Hello, read_message};

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        mode: AgentMode::HostCompat,
        started: std::time::Instant::now(),
        idle_seconds: Mutex::new(0),
        deadline: watch::channel(None).0,
        hashes: Arc::default(),
        active: Default::default(),
    })
}

/// Sends `frame` (raw bytes) on a fresh connection; the agent's answer.
async fn ask(shared: &Arc<Shared>, frame: Vec<u8>) -> Response {
    let (mut host, agent) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(handle(agent, shared.clone()));
    let hello: Hello = read_message(&mut host, "hello").await.unwrap();
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    tokio::io::AsyncWriteExt::write_all(&mut host, &frame)
        .await
        .unwrap();
    let answer = read_message(&mut host, "answer").await.unwrap();
    let _ = task.await;
    answer
}

fn envelope(protocol_version: u32, request: Request) -> Vec<u8> {
    let body = serde_json::to_vec(&Envelope {
        protocol_version,
        request,
    })
    .unwrap();
    pyro_protocol::encode_frame(pyro_protocol::FrameKind::Message, &body)
}

#[tokio::test]
async fn bad_requests_other_protocols_and_deadlines() {
    let shared = shared();
    // Not a request at all.
    let garbage = pyro_protocol::encode_frame(pyro_protocol::FrameKind::Message, b"{nope");
    match ask(&shared, garbage).await {
        Response::Error(e) => assert_eq!(e.kind, ErrorKind::BadRequest, "{e:?}"),
        other => panic!("{other:?}"),
    }
    // Another protocol version: refused, saying what to do.
    match ask(&shared, envelope(PROTOCOL_VERSION + 1, Request::Ping)).await {
        Response::Error(e) => {
            assert_eq!(e.kind, ErrorKind::ProtocolVersion);
            assert!(e.message.contains("re-pull the environment"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    // An idle deadline: set, and pushed out by the request itself.
    let rx = shared.deadline.subscribe();
    let before = Instant::now();
    let r = ask(
        &shared,
        envelope(
            PROTOCOL_VERSION,
            Request::SetDeadline {
                idle_seconds: Some(30),
            },
        ),
    )
    .await;
    assert_eq!(r, Response::Done);
    let at = rx.borrow().expect("a deadline");
    assert!(at >= before + Duration::from_secs(30), "{at:?}");
    // None clears it.
    let r = ask(
        &shared,
        envelope(
            PROTOCOL_VERSION,
            Request::SetDeadline { idle_seconds: None },
        ),
    )
    .await;
    assert_eq!(r, Response::Done);
    assert_eq!(*rx.borrow(), None);
    // Only a guest is refreshed.
    let refresh = Request::Refresh {
        entropy: vec![0; 32],
        unix_time_ns: 0,
        hostname: "h".into(),
        idle_seconds: 0,
    };
    match ask(&shared, envelope(PROTOCOL_VERSION, refresh)).await {
        Response::Error(e) => assert_eq!(e.kind, ErrorKind::Unsupported, "{e:?}"),
        other => panic!("{other:?}"),
    }
}

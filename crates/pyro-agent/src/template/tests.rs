use super::*;

#[test]
fn bad_handoffs_are_refused_before_anything_changes() {
    let env = |protocol_version, request| Envelope {
        protocol_version,
        request,
    };
    let e = identity(env(PROTOCOL_VERSION - 1, Request::Ping), Instant::now()).unwrap_err();
    assert!(e.contains("speaks protocol"), "{e}");
    let e = identity(env(PROTOCOL_VERSION, Request::Ping), Instant::now()).unwrap_err();
    assert!(e.contains("takes only a refresh"), "{e}");
    let bad = Request::Refresh {
        entropy: vec![1; 3],
        unix_time_ns: 1,
        hostname: "ok".into(),
        idle_seconds: 0,
    };
    let e = identity(env(PROTOCOL_VERSION, bad), Instant::now()).unwrap_err();
    assert!(e.contains("bytes of entropy"), "{e}");
}

#[test]
fn frames_round_trip_and_oversized_ones_are_refused() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (a, b) = (OwnedFd::from(a), OwnedFd::from(b));
    send(&a, &Response::Pong { uptime_ms: 1 }).unwrap();
    let mut f = std::fs::File::from(b.try_clone().unwrap());
    let mut head = [0u8; 5];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head[4], FrameKind::Message as u8);
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut body = vec![0u8; len - 1];
    f.read_exact(&mut body).unwrap();
    let pong: Response = serde_json::from_slice(&body).unwrap();
    assert!(matches!(pong, Response::Pong { uptime_ms: 1 }), "{pong:?}");
    let envelope = Envelope {
        protocol_version: PROTOCOL_VERSION,
        request: Request::Ping,
    };
    let bytes = encode_frame(FrameKind::Message, &serde_json::to_vec(&envelope).unwrap());
    std::fs::File::from(a.try_clone().unwrap())
        .write_all(&bytes)
        .unwrap();
    assert_eq!(receive(&b).unwrap(), envelope);
    // A frame header announcing more than the cap, then garbage.
    let mut big = ((MAX_HANDOFF_BYTES as u32) * 4).to_be_bytes().to_vec();
    big.extend(std::iter::repeat_n(0u8, MAX_HANDOFF_BYTES + 8192));
    let writer = std::thread::spawn(move || {
        let _ = std::fs::File::from(a).write_all(&big);
    });
    let e = receive(&b).unwrap_err();
    assert!(e.contains("handoff over"), "{e}");
    drop(b);
    writer.join().unwrap();
}

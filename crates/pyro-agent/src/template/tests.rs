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

/// The warm-up runs its scripts in its own namespaces over an overlay of
/// `/` and, at its time limit, ends with every process it started: none
/// outlives it (a template's snapshot would freeze it). The host's mounts
/// never change. Needs root (the suite runs as root).
#[test]
fn the_warm_up_runs_in_a_throwaway_namespace_and_ends_at_its_limit() {
    // Forked children of a process running other tests could find a lock
    // held forever (see `warm_up_with`).
    assert_eq!(
        std::env::var("NEXTEST").as_deref(),
        Ok("1"),
        "this test forks: run it with cargo nextest (make test), which gives each test a process"
    );
    let staging = tempfile::tempdir().unwrap();
    let dir = staging.path().to_str().unwrap().to_owned();
    // A sleep no other process runs, by its odd length.
    let marker = format!("sleep 40.{}", std::process::id());
    let sleeping = || {
        let want = format!("{}\0", marker.replace(' ', "\0"));
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
    };
    // Other tests may mount things meanwhile: only the staging directory's
    // mounts are this test's business.
    let mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(dir.as_str()))
            .count()
    };
    let started = Instant::now();
    let run = {
        let (dir, marker) = (dir.clone(), marker.clone());
        // A failing script first: the next one still runs.
        // SAFETY: this test process runs this test alone (nextest runs
        // each test in a process of its own), so its other threads take
        // no lock the children need (see `warm_up_with`).
        std::thread::spawn(move || unsafe {
            warm_up_with(&dir, &["false", marker.as_str()], Duration::from_secs(3))
        })
    };
    let mut seen = false;
    while !run.is_finished() && !seen {
        seen = sleeping();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stopped at its limit: not run to its end.
    assert!(!run.join().unwrap());
    assert!(seen, "the script after a failing one never ran");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "{took:?}"
    );
    assert!(!sleeping(), "a warm-up process outlived its namespace");
    assert_eq!(mounts(), 0, "a warm-up mount is on the host");
    // Its directories are there, and empty: the overlay and its tmpfs
    // lived only in the namespace.
    for d in ["warm", "warm-root"] {
        let p = staging.path().join(d);
        assert_eq!(std::fs::read_dir(&p).unwrap().count(), 0, "{}", p.display());
    }

    // Scripts that finish end it at once, failing or not (a failure is
    // only logged).
    let started = Instant::now();
    // SAFETY: as above.
    assert!(unsafe { warm_up_with(&dir, &["false", "true"], Duration::from_secs(60)) });
    assert!(started.elapsed() < Duration::from_secs(30));
    // A staging directory it cannot use: it fails, logged.
    // SAFETY: as above.
    assert!(!unsafe { warm_up_with("/proc/version", &["true"], Duration::from_secs(5)) });
}

use super::*;
use pyro_protocol::{AgentMode, Hello};

/// A sandbox record whose agent socket is served by the test (a hostile
/// fake agent).
pub(super) fn fake_sandbox(dir: &Path) -> (Sandbox, tokio::net::UnixListener) {
    let paths = Paths::new(dir, pyro_env::Cache::new(dir.join("cache")));
    let id = "fakeagent0001".to_owned();
    std::fs::create_dir_all(paths.vm_dir(&id)).unwrap();
    let sock = paths.vm_dir(&id).join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let rec = VmRecord {
        layout_version: VM_LAYOUT_VERSION,
        id: id.clone(),
        backend: BackendKind::HostCompat,
        environment: "debian:12".into(),
        owner: Owner::this_process(),
        created_at: now_unix(),
        process: None,
        firecracker: None,
        jail_uid: None,
        console_keeper: None,
        cgroup_parent: None,
        agent_socket: Some(sock),
        network: None,
    };
    rec.save(&paths).unwrap();
    (Sandbox::attach(&paths, &id).unwrap(), listener)
}

pub(super) async fn greet(s: &mut tokio::net::UnixStream) {
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: "fake".into(),
        mode: AgentMode::HostCompat,
        capabilities: vec![],
        uptime_ms: 0,
    };
    write_message(s, &hello).await.unwrap();
    let _: Envelope = read_message(s, "the request").await.unwrap();
}

#[tokio::test]
async fn endless_output_from_the_agent_is_cut_off_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (sb, listener) = fake_sandbox(dir.path());
    let agent = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        greet(&mut s).await;
        let chunk = vec![b'x'; 64 << 10];
        // Far more than asked for, as long as the host reads.
        while pyro_protocol::write_frame(&mut s, FrameKind::Stdout, &chunk)
            .await
            .is_ok()
        {}
    });
    let req = ExecRequest {
        command: pyro_protocol::Command::Shell {
            script: "true".into(),
        },
        cwd: None,
        env: Default::default(),
        timeout_ms: 5_000,
        output_limit_bytes: 1 << 20,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    };
    let mut cap = Capture::default();
    let err = tokio::time::timeout(Duration::from_secs(10), sb.exec(req, &mut cap))
        .await
        .expect("the host kept reading endless output")
        .unwrap_err();
    assert!(
        err.to_string().contains("more than the 1048576 bytes"),
        "{err}"
    );
    assert!(
        cap.stdout.len() <= 1 << 20,
        "{} bytes kept",
        cap.stdout.len()
    );
    drop(sb);
    agent.abort();
}

/// A fake agent answering `n` manifest requests, the first `damaged`
/// of them with a line that does not parse (its digest matches: the
/// damage happened before it was sent, as guest memory gone wrong).
fn manifest_agent(
    listener: tokio::net::UnixListener,
    n: usize,
    damaged: usize,
) -> tokio::task::JoinHandle<usize> {
    use sha2::Digest;
    tokio::spawn(async move {
        for i in 0..n {
            let (mut s, _) = listener.accept().await.unwrap();
            greet(&mut s).await;
            let good = "{\"path\":\"a\",\"kind\":\"file\",\"mode\":420,\"size\":1}\n";
            let line = if i < damaged {
                "{\"path\":\"a\",\"k\u{15}\u{0}PWD=/workspace\u{0}\n"
            } else {
                good
            };
            pyro_protocol::write_frame(&mut s, FrameKind::Data, line.as_bytes())
                .await
                .unwrap();
            let digest = hex::encode(sha2::Sha256::digest(line.as_bytes()));
            pyro_protocol::write_frame(&mut s, FrameKind::DataEnd, digest.as_bytes())
                .await
                .unwrap();
            write_message(&mut s, &Response::Manifest { entries: 1 })
                .await
                .unwrap();
        }
        n
    })
}

/// A manifest asked of a fake agent that answers `n` times, the first
/// `damaged` of them damaged: what `get_lines` returned, how many
/// requests the agent answered, and the spool (in `dir`).
async fn manifest_from(
    dir: &Path,
    n: usize,
    damaged: usize,
) -> (Result<Response, CoreError>, usize, PathBuf) {
    let (sb, listener) = fake_sandbox(dir);
    let agent = manifest_agent(listener, n, damaged);
    let out = dir.join("manifest.jsonl");
    let req = Request::Manifest {
        root: "/workspace".into(),
    };
    let got = sb
        .get_lines::<pyro_protocol::ManifestEntry>(req, &out, 1 << 20, Duration::from_secs(10))
        .await;
    (got, agent.await.unwrap(), out)
}

#[tokio::test]
async fn a_listing_damaged_in_the_guest_is_asked_for_again() {
    let dir = tempfile::tempdir().unwrap();
    let (got, asked, out) = manifest_from(dir.path(), 2, 1).await;
    let got = got.unwrap();
    assert!(matches!(got, Response::Manifest { entries: 1 }), "{got:?}");
    assert_eq!(asked, 2, "asked exactly twice");
    let kept: Vec<_> = crate::jsonl::Lines::<pyro_protocol::ManifestEntry>::open(&out)
        .unwrap()
        .map(|e| e.unwrap().path)
        .collect();
    assert_eq!(kept, ["a"]);
}

#[tokio::test]
async fn a_listing_damaged_every_time_is_an_error_that_quotes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (got, asked, _) = manifest_from(dir.path(), 3, 3).await;
    let err = got.unwrap_err();
    assert_eq!(asked, 3, "three attempts, then the error");
    let msg = err.to_string();
    assert!(matches!(err, CoreError::Transport(_)), "{err:?}");
    assert!(msg.contains("malformed listing line"), "{msg}");
    assert!(msg.contains("PWD=/workspace"), "the line is quoted: {msg}");
    assert!(msg.contains("reset or delete the workspace"), "{msg}");
}

#[test]
fn hostnames_are_labels_the_agent_accepts() {
    assert_eq!(hostname_for(None), "pyro");
    let id = crate::random_hex(8);
    assert_eq!(hostname_for(Some(&id)), format!("pyro-{id}"));
    for h in [hostname_for(None), hostname_for(Some(&id))] {
        assert!(pyro_protocol::valid_hostname(&h), "{h}");
    }
}

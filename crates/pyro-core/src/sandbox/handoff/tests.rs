use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the fake init does on one connection.
enum Init {
    /// Accepts and hangs up before its first word.
    HangsUp,
    /// Greets with something other than its first word.
    WrongWord,
    /// Greets, takes the handoff, answers this.
    Answer(Box<Response>),
    /// Greets, takes the handoff, closes without an answer.
    TakeAndClose,
}

/// A sandbox whose vsock socket is served by a fake init playing `script`,
/// one connection each, then closing its listener (connections refused);
/// the fake's task, whose checks fail the test when it is awaited.
async fn fake_init(dir: &Path, script: Vec<Init>) -> (Sandbox, tokio::task::JoinHandle<()>) {
    let (mut sandbox, _agent) = super::super::tests::fake_sandbox(dir);
    let vsock = dir.join("vsock.sock");
    sandbox.record.firecracker = Some(pyro_vmm::launch::VmPaths {
        api_sock: dir.join("api.sock"),
        vsock_uds: vsock.clone(),
        console_log: dir.join("console.log"),
        firecracker_log: dir.join("firecracker.log"),
        jail_dir: None,
    });
    let listener = tokio::net::UnixListener::bind(&vsock).unwrap();
    let fake = tokio::spawn(async move {
        for step in script {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            // The host side of Firecracker's hybrid vsock: CONNECT, OK.
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).await.is_ok() && b[0] != b'\n' {
                line.push(b[0]);
            }
            assert_eq!(
                line,
                format!("CONNECT {ROOT}", ROOT = pyro_protocol::ROOT_PORT).as_bytes()
            );
            if s.write_all(b"OK 1073741824\n").await.is_err() {
                continue;
            }
            let pong = Response::Pong { uptime_ms: 1 };
            match step {
                Init::HangsUp => {}
                Init::WrongWord => {
                    let word = Response::Refreshed {
                        reseeded: true,
                        clock_step_ms: 0,
                        refresh_us: 1,
                    };
                    let _ = write_message(&mut s, &word).await;
                }
                Init::Answer(answer) => {
                    let _ = write_message(&mut s, &pong).await;
                    let env: Envelope = read_message(&mut s, "the handoff").await.unwrap();
                    assert!(matches!(env.request, Request::Refresh { .. }));
                    let _ = write_message(&mut s, &*answer).await;
                }
                Init::TakeAndClose => {
                    let _ = write_message(&mut s, &pong).await;
                    let _: Envelope = read_message(&mut s, "the handoff").await.unwrap();
                }
            }
        }
    });
    (sandbox, fake)
}

fn refreshed(reseeded: bool, us: u64) -> Init {
    Init::Answer(Box::new(Response::Refreshed {
        reseeded,
        clock_step_ms: 5,
        refresh_us: us,
    }))
}

async fn hand_off(script: Vec<Init>, within: Duration) -> Result<Option<u64>, CoreError> {
    let dir = tempfile::tempdir().unwrap();
    let (sandbox, fake) = fake_init(dir.path(), script).await;
    let got = sandbox.handoff("pyro-test", 0, within).await;
    fake.await.expect("the fake init's checks");
    got
}

/// A handoff is answered, retried past an init that is not ready or says
/// the wrong thing, and refused when init's answer cannot be used.
#[tokio::test]
async fn a_handoff_is_retried_until_init_answers_and_a_bad_answer_fails_it() {
    let long = Duration::from_secs(20);
    assert_eq!(
        hand_off(vec![refreshed(true, 42)], long).await.unwrap(),
        Some(42)
    );
    // Hung up, then the wrong first word: both retried.
    let got = hand_off(
        vec![Init::HangsUp, Init::WrongWord, refreshed(true, 7)],
        long,
    )
    .await;
    assert_eq!(got.unwrap(), Some(7));
    // Taken, and the listener gone after: init has it, its answer was lost.
    assert_eq!(
        hand_off(vec![Init::TakeAndClose], long).await.unwrap(),
        None
    );
    let e = hand_off(vec![refreshed(false, 1)], long).await.unwrap_err();
    assert!(e.to_string().contains("could not reseed"), "{e}");
    let refused = Response::Error(pyro_protocol::AgentError::new(
        pyro_protocol::ErrorKind::BadRequest,
        "a bad clock",
    ));
    let e = hand_off(vec![Init::Answer(Box::new(refused))], long)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CoreError::Agent(a) if a.message == "a bad clock"),
        "{e}"
    );
    let e = hand_off(
        vec![Init::Answer(Box::new(Response::Pong { uptime_ms: 3 }))],
        long,
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("unexpected answer to the handoff: Pong"),
        "{e}"
    );
    // Nobody takes it: an error at the deadline.
    let e = hand_off(vec![], Duration::from_secs(1)).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("did not take its handoff within 1 s"),
        "{e}"
    );
}

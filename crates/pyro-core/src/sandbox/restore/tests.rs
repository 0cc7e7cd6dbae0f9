use super::super::tests::{fake_sandbox, greet};
use super::*;

/// What the fake agent answers to each refresh it is sent, one connection
/// each (`None`: it hangs up without an answer).
async fn refresh_against(answers: Vec<Option<Response>>) -> Result<Hello, CoreError> {
    let dir = tempfile::tempdir().unwrap();
    let (mut sandbox, listener) = fake_sandbox(dir.path());
    tokio::spawn(async move {
        for answer in answers {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            greet(&mut s).await;
            if let Some(a) = answer {
                let _ = write_message(&mut s, &a).await;
            }
        }
        // Then it keeps the socket but never answers again.
        std::future::pending::<()>().await;
    });
    sandbox.refresh("pyro-test", 60).await
}

/// A restored guest's refresh is sent again when its connection drops
/// (a resume resets the guest's vsock), and an answer that cannot be used
/// fails it: a refusal, an unseeded generator, a reply to another request.
#[tokio::test]
async fn a_refresh_is_sent_again_when_dropped_and_a_bad_answer_fails_it() {
    let ok = |reseeded| {
        Some(Response::Refreshed {
            reseeded,
            clock_step_ms: 0,
            refresh_us: 9,
        })
    };
    let hello = refresh_against(vec![None, ok(true)]).await.unwrap();
    assert_eq!(hello.agent_version, "fake");
    let e = refresh_against(vec![ok(false)]).await.unwrap_err();
    assert!(e.to_string().contains("could not reseed"), "{e}");
    let refused = Response::Error(pyro_protocol::AgentError::new(
        pyro_protocol::ErrorKind::BadRequest,
        "no clock",
    ));
    let e = refresh_against(vec![Some(refused)]).await.unwrap_err();
    assert!(
        matches!(&e, CoreError::Agent(a) if a.message == "no clock"),
        "{e}"
    );
    let e = refresh_against(vec![Some(Response::Pong { uptime_ms: 1 })])
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::Transport(_)), "{e}");
}

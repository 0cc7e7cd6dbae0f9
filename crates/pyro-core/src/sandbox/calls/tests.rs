//! The host's reads of streamed answers against a fake agent that
//! misbehaves: more output than asked for, offsets that do not add up,
//! frames of the wrong kind, answers to another request.

use super::*;
use crate::sandbox::tests::{fake_sandbox, greet};
use pyro_protocol::{JobState, LogSpan, write_frame};

#[test]
fn a_huge_unexpected_answer_is_quoted_in_part() {
    let huge = "x".repeat(1 << 20);
    let e = unexpected(&huge).to_string();
    assert!(e.len() < 400, "{} bytes", e.len());
    assert!(e.contains("…") && e.contains("reset or delete it"), "{e}");
    let small = unexpected(Response::Done).to_string();
    assert!(small.contains("Done") && !small.contains('…'), "{small}");
}

/// What the fake agent sends after its greeting: frames, then (if any) a
/// closing answer.
#[derive(Clone)]
struct Script {
    frames: Vec<(FrameKind, Vec<u8>)>,
    answer: Option<Response>,
}

/// A sandbox whose agent plays `script` once, then holds the connection.
async fn play(dir: &Path, script: Script) -> (Sandbox, tokio::task::JoinHandle<()>) {
    let (sb, listener) = fake_sandbox(dir);
    let agent = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        greet(&mut s).await;
        for (kind, data) in &script.frames {
            if write_frame(&mut s, *kind, data).await.is_err() {
                return;
            }
        }
        if let Some(a) = &script.answer {
            let _ = write_message(&mut s, a).await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    (sb, agent)
}

fn job(stdout_next: u64) -> Response {
    Response::Job(JobState {
        outcome: None,
        cancelled: false,
        stdout_next,
        stderr_next: 0,
        stdout_dropped: 0,
        stderr_dropped: 0,
        more: false,
    })
}

async fn job_read_against(script: Script) -> CoreError {
    let dir = tempfile::tempdir().unwrap();
    let (sb, agent) = play(dir.path(), script).await;
    let mut sink = Discard;
    let err = sb
        .job_read("j-1", (0, 0), Duration::ZERO, 1024, &mut sink)
        .await
        .unwrap_err();
    agent.abort();
    err
}

#[tokio::test]
async fn job_reads_check_sizes_offsets_and_kinds() {
    // More than asked for.
    let err = job_read_against(Script {
        frames: vec![(FrameKind::Stdout, vec![b'x'; 1000]); 2],
        answer: Some(job(2000)),
    })
    .await;
    assert!(
        err.to_string()
            .contains("more than the 1024 bytes of output"),
        "{err}"
    );
    // Offsets that do not add up to what was sent.
    let err = job_read_against(Script {
        frames: vec![(FrameKind::Stdout, b"abc".to_vec())],
        answer: Some(job(7)),
    })
    .await;
    assert!(
        err.to_string().contains("offsets that do not match"),
        "{err}"
    );
    // A frame that has no place in a job read, and an answer to another
    // request.
    let err = job_read_against(Script {
        frames: vec![(FrameKind::Data, b"abc".to_vec())],
        answer: None,
    })
    .await;
    assert!(matches!(err, CoreError::Transport(_)), "{err:?}");
    let err = job_read_against(Script {
        frames: vec![],
        answer: Some(Response::Done),
    })
    .await;
    assert!(err.to_string().contains("Done"), "{err}");
    // What adds up is taken.
    let dir = tempfile::tempdir().unwrap();
    let (sb, agent) = play(
        dir.path(),
        Script {
            frames: vec![(FrameKind::Stdout, b"abc".to_vec())],
            answer: Some(job(3)),
        },
    )
    .await;
    let mut sink = Discard;
    let st = sb
        .job_read("j-1", (0, 0), Duration::ZERO, 1024, &mut sink)
        .await
        .unwrap();
    assert_eq!(st.stdout_next, 3);
    agent.abort();
}

#[tokio::test]
async fn shell_reads_and_service_logs_check_sizes_and_kinds() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (frames, answer, says)) in [
        (
            vec![(FrameKind::Stdout, vec![b'x'; 600]); 2],
            None,
            "more than the 1024 bytes of shell output",
        ),
        (vec![(FrameKind::Stderr, b"e".to_vec())], None, "Stderr"),
        (vec![], Some(Response::Done), "Done"),
    ]
    .into_iter()
    .enumerate()
    {
        let d = dir.path().join(format!("s{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let (sb, agent) = play(&d, Script { frames, answer }).await;
        let err = sb.shell_read("s-1", 0, 1024, None).await.unwrap_err();
        assert!(err.to_string().contains(says), "{says}: {err}");
        agent.abort();
    }
    let span = LogSpan::default();
    for (i, (frames, answer, says)) in [
        (
            vec![(FrameKind::Stderr, vec![b'x'; 600]); 2],
            None,
            "more than the 1024 bytes of service logs",
        ),
        (vec![(FrameKind::Data, b"d".to_vec())], None, "Data"),
        (vec![], Some(Response::Done), "Done"),
    ]
    .into_iter()
    .enumerate()
    {
        let d = dir.path().join(format!("l{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let (sb, agent) = play(&d, Script { frames, answer }).await;
        let err = sb.service_logs("web", None, 10, 1024).await.unwrap_err();
        assert!(err.to_string().contains(says), "{says}: {err}");
        agent.abort();
    }
    // A well-formed one is taken whole.
    let d = dir.path().join("ok");
    std::fs::create_dir_all(&d).unwrap();
    let (sb, agent) = play(
        &d,
        Script {
            frames: vec![(FrameKind::Stdout, b"out".to_vec())],
            answer: Some(Response::ServiceLogs {
                service: None,
                stdout: span.clone(),
                stderr: span,
            }),
        },
    )
    .await;
    let (out, err, _) = sb.service_logs("web", None, 10, 1024).await.unwrap();
    assert_eq!((out.as_slice(), err.as_slice()), (&b"out"[..], &b""[..]));
    agent.abort();
}

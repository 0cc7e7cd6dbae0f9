use super::*;

#[test]
fn a_character_cut_at_the_end_is_held_back() {
    assert_eq!(incomplete_tail(b"abc"), 0);
    assert_eq!(incomplete_tail("é".as_bytes()), 0);
    assert_eq!(incomplete_tail(&"aé".as_bytes()[..2]), 1);
    assert_eq!(incomplete_tail(&"a€".as_bytes()[..3]), 2);
    assert_eq!(incomplete_tail(&"€€".as_bytes()[..5]), 2);
    assert_eq!(incomplete_tail(&"a😀".as_bytes()[..4]), 3);
    assert_eq!(incomplete_tail("😀".as_bytes()), 0);
    assert_eq!(incomplete_tail(b""), 0);
}

fn shell(state: &str) -> pyro_protocol::ShellInfo {
    pyro_protocol::ShellInfo {
        shell_id: "s1".into(),
        cwd: "/workspace".into(),
        cols: 80,
        rows: 24,
        state: state.into(),
        exit_code: None,
        output_end: 0,
    }
}

/// A shell the guest says is in a state no shell has, or an answer of
/// another kind, is the guest misbehaving; only the agent's "not found"
/// means the shell went with its agent.
#[test]
fn a_guest_describing_a_shell_it_cannot_have_is_refused() {
    for state in ["running", "exited", "closed"] {
        assert_eq!(
            shell_info(Response::Shell(shell(state))).unwrap(),
            shell(state)
        );
    }
    let e = shell_info(Response::Shell(shell("asleep"))).unwrap_err();
    assert!(
        matches!(&e, CoreError::Transport(m) if m.contains("unknown state")),
        "{e}"
    );
    let e = shell_info(Response::Pong { uptime_ms: 1 }).unwrap_err();
    assert!(
        matches!(&e, CoreError::Transport(m) if m.contains("unexpected answer")),
        "{e}"
    );
    let gone = pyro_protocol::AgentError::new(pyro_protocol::ErrorKind::NotFound, "no shell s1");
    assert!(agent_gone(&CoreError::Agent(gone)));
    let busy = pyro_protocol::AgentError::new(pyro_protocol::ErrorKind::Io, "disk full");
    assert!(!agent_gone(&CoreError::Agent(busy)));
    assert!(!agent_gone(&CoreError::Transport("reset".into())));
}

use super::*;

#[test]
fn requests_are_tagged_json() {
    let req = Request::Exec(ExecRequest {
        command: Command::Argv {
            argv: vec!["echo".into(), "a b".into()],
        },
        cwd: None,
        env: BTreeMap::new(),
        timeout_ms: 1000,
        output_limit_bytes: 10,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    });
    let json = serde_json::to_string(&req).unwrap();
    assert!(json.starts_with(r#"{"op":"exec","command":{"kind":"argv","argv":["echo","a b"]}"#));
    assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), req);
    let resp = Response::Error(AgentError::new(ErrorKind::NotFound, "x"));
    assert_eq!(
        serde_json::to_string(&resp).unwrap(),
        r#"{"result":"error","kind":"not_found","message":"x"}"#
    );
}

#[test]
fn command_display_quotes_only_when_needed() {
    let c = Command::Argv {
        argv: vec!["printf".into(), "%s\n".into(), "a b".into()],
    };
    assert_eq!(c.display(), "printf '%s\n' 'a b'");
    let c = Command::Argv {
        argv: vec!["git".into(), "--version".into()],
    };
    assert_eq!(c.display(), "git --version");
    assert_eq!(
        Command::Shell {
            script: "echo hi".into()
        }
        .display(),
        "echo hi"
    );
}

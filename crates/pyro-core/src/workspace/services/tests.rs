use super::*;

#[test]
fn one_readiness_check_at_most_and_each_is_checked() {
    let two = ReadinessChoice {
        ready_file: Some(".ready".into()),
        ready_tcp: Some(":80".into()),
        ..Default::default()
    };
    let e = two.pick().unwrap_err().message(crate::hint::FrontEnd::Cli);
    assert!(e.contains("--ready-file and --ready-tcp"), "{e}");
    assert!(ReadinessChoice::default().pick().unwrap().is_none());
    for bad in [
        ReadinessChoice {
            ready_tcp: Some("localhost".into()),
            ..Default::default()
        },
        ReadinessChoice {
            ready_http: Some("https://x".into()),
            ..Default::default()
        },
        ReadinessChoice {
            ready_command: Some(" ".into()),
            ..Default::default()
        },
    ] {
        assert!(bad.pick().is_err());
    }
    assert!(valid_service_name("web.1"));
    assert!(!valid_service_name("-web"));
    assert_eq!("on-start".parse::<Restart>().unwrap(), Restart::OnStart);
    assert!("always".parse::<Restart>().is_err());
}

fn info(name: &str, state: &str) -> ServiceInfo {
    ServiceInfo {
        name: name.into(),
        state: state.into(),
        pid: Some(7),
        exit_code: None,
        reason: None,
        ready_after_ms: Some(1),
        ended_after_ms: None,
        last_probe_error: None,
    }
}

/// What the guest says of a service is checked before it is shown: a
/// state, name, reason or duration no service can have, an error longer
/// than 4 KiB, an answer about another service or of another kind are each
/// the guest misbehaving.
#[test]
fn a_guest_describing_a_service_it_cannot_have_is_refused() {
    assert_eq!(checked(info("web", "ready")).unwrap(), info("web", "ready"));
    let year_and_a_day = 367 * 86_400_000;
    for bad in [
        info("web", "dancing"),
        info("-web", "ready"),
        ServiceInfo {
            reason: Some("bored".into()),
            ..info("web", "stopped")
        },
        ServiceInfo {
            last_probe_error: Some("x".repeat(4097)),
            ..info("web", "starting")
        },
        ServiceInfo {
            ready_after_ms: Some(year_and_a_day),
            ..info("web", "ready")
        },
        ServiceInfo {
            ended_after_ms: Some(year_and_a_day),
            ..info("web", "exited")
        },
    ] {
        let e = checked(bad.clone()).unwrap_err();
        assert!(
            matches!(&e, CoreError::Transport(m) if m.contains("cannot have")),
            "{bad:?}: {e}"
        );
    }
    assert!(service_info(Response::Service(info("web", "ready")), "web").is_ok());
    let e = service_info(Response::Service(info("db", "ready")), "web").unwrap_err();
    assert!(
        matches!(&e, CoreError::Transport(m) if m.contains("another service")),
        "{e}"
    );
    let e = service_info(Response::Pong { uptime_ms: 1 }, "web").unwrap_err();
    assert!(
        matches!(&e, CoreError::Transport(m) if m.contains("unexpected answer")),
        "{e}"
    );
}

/// Each readiness check is shown as its kind and target.
#[test]
fn readiness_checks_are_shown_by_kind_and_target() {
    let shown = [
        Readiness::File {
            path: ".ready".into(),
        },
        Readiness::Tcp {
            address: "127.0.0.1:80".into(),
        },
        Readiness::Http {
            url: "http://127.0.0.1/health".into(),
        },
        Readiness::Command {
            command: "true".into(),
        },
    ]
    .iter()
    .map(|r| {
        let v = readiness_view(r);
        (v.kind, v.target)
    })
    .collect::<Vec<_>>();
    let want = [
        ("file", ".ready"),
        ("tcp", "127.0.0.1:80"),
        ("http", "http://127.0.0.1/health"),
        ("command", "true"),
    ]
    .map(|(k, t)| (k.to_owned(), t.to_owned()));
    assert_eq!(shown, want);
}

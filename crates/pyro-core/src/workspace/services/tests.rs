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

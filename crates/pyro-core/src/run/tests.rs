use super::*;

fn argv(a: &[&str]) -> Command {
    Command::Argv {
        argv: a.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn bounds_name_the_flag() {
    let mut o = RunOptions::new(argv(&["true"]));
    o.backend = BackendKind::HostCompat;
    assert!(o.validate().is_ok());
    o.mem_mib = 10;
    assert_eq!(
        o.validate()
            .unwrap_err()
            .message(crate::hint::FrontEnd::Cli),
        "--mem-mib must be between 128 and 32768 (got 10)"
    );
    o.mem_mib = 256;
    o.vcpu_count = 0;
    assert_eq!(
        o.validate()
            .unwrap_err()
            .message(crate::hint::FrontEnd::Cli),
        "--vcpu-count must be between 1 and 8 (got 0)"
    );
    o.vcpu_count = 1;
    o.timeout_seconds = 700;
    assert!(
        o.validate()
            .unwrap_err()
            .message(crate::hint::FrontEnd::Cli)
            .contains("--ttl-seconds (600) must be at least")
    );
    o.timeout_seconds = 5;
    o.env.insert("1BAD".into(), "x".into());
    assert!(
        o.validate()
            .unwrap_err()
            .to_string()
            .starts_with("invalid environment variable name")
    );
}

#[test]
fn empty_commands_are_refused() {
    let err = RunOptions::new(argv(&[]))
        .validate()
        .unwrap_err()
        .message(crate::hint::FrontEnd::Cli);
    assert!(err.contains("after `--`"), "{err}");
    let err = RunOptions::new(Command::Shell {
        script: "  ".into(),
    })
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("empty"), "{err}");
}

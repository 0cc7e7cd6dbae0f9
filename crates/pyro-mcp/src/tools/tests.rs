use super::*;

#[test]
fn commands_are_shell_strings_or_argv() {
    let c: CommandArg = serde_json::from_value(serde_json::json!("echo hi")).unwrap();
    assert_eq!(
        Command::from(c),
        Command::Shell {
            script: "echo hi".into()
        }
    );
    let c: CommandArg = serde_json::from_value(serde_json::json!(["printf", "%s", "a b"])).unwrap();
    assert!(matches!(Command::from(c), Command::Argv { argv } if argv.len() == 3));
}

#[test]
fn unknown_arguments_are_refused() {
    let err = serde_json::from_value::<CreateArgs>(serde_json::json!({"no_such_option": "egress"}))
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `no_such_option`"),
        "{err}"
    );
}

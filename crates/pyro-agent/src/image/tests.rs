use super::*;

#[test]
fn a_user_gets_its_own_home_and_name() {
    let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    let env = user_env_from(passwd, 1000);
    assert_eq!(env[0], ("HOME".into(), "/home/app".into()));
    assert_eq!(env[1], ("USER".into(), "app".into()));
    assert_eq!(user_env_from(passwd, 42)[0], ("HOME".into(), "/".into()));
}

#[test]
fn image_variables_are_parsed_and_checked() {
    let v = serde_json::json!([
        "PATH=/opt/bin:/usr/bin",
        "EMPTY=",
        "BAD NAME=x",
        "NOEQ",
        "A=b=c"
    ]);
    assert_eq!(
        parse_env(&v),
        [
            ("PATH".to_owned(), "/opt/bin:/usr/bin".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("A".to_owned(), "b=c".to_owned()),
        ]
    );
}

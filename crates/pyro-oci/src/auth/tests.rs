use super::*;

fn basic(a: RegistryAuth) -> Option<(String, String)> {
    match a {
        RegistryAuth::Basic(u, p) => Some((u, p)),
        _ => None,
    }
}

#[test]
fn docker_config_entries_are_found_by_host() {
    let cfg = br#"{"auths":{"https://127.0.0.1:5000/v2/":{"auth":"dTpwOng="},
                       "https://index.docker.io/v1/":{"username":"hub","password":"pw"}}}"#;
    assert_eq!(
        basic(from_docker_config(cfg, "127.0.0.1:5000").unwrap()),
        Some(("u".into(), "p:x".into()))
    );
    assert_eq!(
        basic(from_docker_config(cfg, "docker.io").unwrap()),
        Some(("hub".into(), "pw".into()))
    );
    assert!(basic(from_docker_config(cfg, "other:1").unwrap()).is_none());
    assert!(from_docker_config(br#"{"auths":{"a":{"auth":"!!"}}}"#, "a").is_err());
    assert!(from_docker_config(b"not json", "a").is_err());
    // No `auths`, an entry with neither form of login, a file too big.
    assert!(basic(from_docker_config(br#"{"credsStore":"x"}"#, "a").unwrap()).is_none());
    assert!(basic(from_docker_config(br#"{"auths":{"a":{"email":"e"}}}"#, "a").unwrap()).is_none());
    let big = vec![b' '; (1 << 20) + 1];
    assert_eq!(
        from_docker_config(&big, "a").unwrap_err(),
        "it is larger than 1 MiB"
    );
}

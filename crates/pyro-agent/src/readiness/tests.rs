use super::*;

#[test]
fn addresses_and_urls_are_checked() {
    assert_eq!(
        split_host_port(":8080").unwrap(),
        ("127.0.0.1".into(), 8080)
    );
    assert!(split_host_port("localhost").is_err());
    assert!(split_host_port("h:0").is_err());
    assert_eq!(
        parse_url("http://127.0.0.1:3000/health").unwrap(),
        ("127.0.0.1".into(), 3000, "/health".into())
    );
    assert_eq!(parse_url("http://h").unwrap(), ("h".into(), 80, "/".into()));
    assert!(parse_url("https://h").is_err());
    assert!(parse_url("http:// /").is_err());
}

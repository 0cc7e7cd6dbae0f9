use super::*;

#[test]
fn the_config_file_parses_or_says_what_it_takes() {
    assert_eq!(
        parse("env_registry = \"r:5000/pyro\"\n")
            .unwrap()
            .env_registry
            .as_deref(),
        Some("r:5000/pyro")
    );
    assert!(parse("").unwrap().env_registry.is_none());
    assert!(parse("registry = 1").is_err());
    assert_eq!(
        catalog_reference("r:5000/pyro", "debian:12"),
        "r:5000/pyro/debian:12"
    );
}

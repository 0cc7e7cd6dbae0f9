use super::*;

#[test]
fn import_names_are_checked() {
    assert!(check_import_name("py312").is_ok());
    assert!(check_import_name("python:3.12-slim").is_ok());
    for bad in [
        "",
        "Py",
        "-x",
        "a/b",
        "debian:12",
        &"x".repeat(65),
        "a b",
        "a_b",
    ] {
        assert!(check_import_name(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        EnvRef::Imported("python:3.12".into()).slug(),
        "imported-python_3.12"
    );
}

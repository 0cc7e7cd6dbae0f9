use super::*;
use std::os::unix::fs::PermissionsExt as _;

fn spec(name: &str, v: &str) -> SecretSpec {
    SecretSpec {
        name: name.into(),
        source: SecretSource::Value(v.into()),
    }
}

#[test]
fn stored_0600_and_read_back() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("tok");
    std::fs::write(&f, "from-a-file\n").unwrap();
    let s = resolve(&[
        spec("API_TOKEN", "s3cret-value"),
        SecretSpec {
            name: "FILE_TOKEN".into(),
            source: SecretSource::File(f),
        },
    ])
    .unwrap();
    assert_eq!(s["FILE_TOKEN"], "from-a-file");
    let store = Store {
        usable: s.clone(),
        redact_only: resolve(&[spec("OLD", "from-the-origin")]).unwrap(),
    };
    save(d.path(), &store).unwrap();
    let meta = std::fs::metadata(d.path().join(SECRETS_FILE)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let raw = std::fs::read_to_string(d.path().join(SECRETS_FILE)).unwrap();
    assert!(!raw.contains("s3cret-value"), "{raw}");
    assert_eq!(load(d.path()).unwrap(), store);
    save(d.path(), &Store::default()).unwrap();
    assert_eq!(load(d.path()).unwrap(), Store::default());
    assert!(!d.path().join(SECRETS_FILE).exists());
}

#[test]
fn bad_secrets_are_refused_with_the_reason() {
    for (specs, says) in [
        (vec![spec("1BAD", "long-enough")], "not valid"),
        (vec![spec("A", "short")], "shorter than"),
        (vec![spec("A", "has\0nul-byte")], "NUL"),
        (
            vec![spec("A", "long-enough"), spec("A", "long-enough")],
            "twice",
        ),
    ] {
        let e = resolve(&specs).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn env_names_a_variable_per_secret() {
    let s = resolve(&[spec("TOKEN", "s3cret-value")]).unwrap();
    let env = env_for(&s, &["TOKEN".into(), "TOKEN=GH_TOKEN".into()]).unwrap();
    assert_eq!(env["TOKEN"], "s3cret-value");
    assert_eq!(env["GH_TOKEN"], "s3cret-value");
    let e = env_for(&s, &["OTHER".into()]).unwrap_err().to_string();
    assert!(e.contains("has TOKEN"), "{e}");
}

/// A store that does not parse, or of another layout, is damaged: the
/// error names the file and what to do; nothing is guessed from it.
#[test]
fn a_damaged_store_is_refused_with_its_path() {
    let d = tempfile::tempdir().unwrap();
    let store = Store {
        usable: resolve(&[spec("API_TOKEN", "a-long-value")]).unwrap(),
        redact_only: Secrets::default(),
    };
    save(d.path(), &store).unwrap();
    let file = d.path().join(SECRETS_FILE);
    let good = std::fs::read_to_string(&file).unwrap();
    for bad in [
        "not json".to_owned(),
        good.replacen(
            &format!("\"layout_version\":{SECRETS_LAYOUT_VERSION}"),
            "\"layout_version\":99",
            1,
        ),
    ] {
        assert_ne!(bad, good);
        std::fs::write(&file, &bad).unwrap();
        let e = load(d.path()).unwrap_err();
        assert!(
            matches!(&e, CoreError::State(m) if m.contains("is damaged") && m.contains(SECRETS_FILE)),
            "{e}"
        );
    }
}

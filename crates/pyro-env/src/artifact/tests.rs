use super::*;

fn config(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let spec = crate::catalog::lookup("debian:12").unwrap();
    let mut v = serde_json::json!({
        "format": FORMAT,
        "name": "debian:12",
        "version": spec.version,
        "catalog_version": CATALOG_VERSION,
        "platform": PLATFORM,
        "kernel": {
            "key": "0123456789abcdef",
            "sha256": "00",
            "size_bytes": 1 << 20,
            "source_version": "6.1",
            "recipe_version": "1",
            "built_at": 0.0,
            "build_seconds": 1.0
        }
    });
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// What an artifact's config must be before a byte of it is fetched;
/// each refusal says why.
#[test]
fn an_artifact_config_is_vetted_before_download() {
    let reference = "localhost:5000/envs/debian:12";
    let (c, env) = vet_config(reference, &config(|_| {}), Some("debian:12")).unwrap();
    assert_eq!(c.name, "debian:12");
    assert!(matches!(env, EnvRef::Catalog(_)));
    let (_, env) = vet_config(
        reference,
        &config(|v| v["name"] = "team-tools".into()),
        None,
    )
    .unwrap();
    assert!(matches!(env, EnvRef::Imported(ref n) if n == "team-tools"));

    let refused = |edit: &dyn Fn(&mut serde_json::Value), expected: Option<&str>| {
        let bytes = config(|v| edit(v));
        let e = vet_config(reference, &bytes, expected).unwrap_err();
        assert!(
            matches!(e, EnvError::Artifact { .. } | EnvError::BadName { .. }),
            "{e}"
        );
        e.to_string()
    };
    assert!(refused(&|v| v["format"] = 99.into(), None).contains("format 99"));
    assert!(refused(&|v| v["platform"] = "linux-aarch64".into(), None).contains("aarch64"));
    assert!(refused(&|_| {}, Some("alpine:3")).contains("not alpine:3"));
    assert!(refused(&|v| v["version"] = "0.0.1".into(), None).contains("catalog has"));
    assert!(refused(&|v| v["name"] = "../escape".into(), None).contains("escape"));
    assert!(refused(&|v| v["kernel"]["key"] = "../k".into(), None).contains("kernel key"));
    assert!(refused(&|v| v["kernel"]["size_bytes"] = u64::MAX.into(), None).contains("larger"));
    let e = vet_config(reference, b"{not json", None).unwrap_err();
    assert!(e.to_string().contains("does not parse"), "{e}");
}

use super::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn an_index_resolves_to_its_linux_amd64_entry() {
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D2}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
    );
    match parse(index.as_bytes(), "x").unwrap() {
        Doc::Index(d) => assert_eq!(d, D2),
        Doc::Image(_) => panic!("an index read as a manifest"),
    }
    let arm_only = index.replace("amd64", "s390x");
    let err = parse(arm_only.as_bytes(), "img").err().unwrap().to_string();
    assert!(err.contains("linux/arm64, linux/s390x"), "{err}");
}

#[test]
fn oversized_unknown_and_overlong_documents_are_refused() {
    let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
    assert!(matches!(parse(&huge, "x"), Err(OciError::TooLarge { .. })));
    assert!(matches!(
        parse_config(&huge),
        Err(OciError::TooLarge { .. })
    ));
    let odd = br#"{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}"#;
    let err = parse(odd, "x").err().unwrap().to_string();
    assert!(
        err.contains("neither an image manifest nor an index"),
        "{err}"
    );
    let layer = format!(r#"{{"mediaType":"b","digest":"{D1}","size":1}}"#);
    let layers = vec![layer; MAX_LAYERS + 1].join(",");
    let many = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"a","digest":"{D1}","size":2}},"layers":[{layers}]}}"#
    );
    let err = parse(many.as_bytes(), "x").err().unwrap().to_string();
    assert!(
        err.contains(&format!("pyro accepts at most {MAX_LAYERS}")),
        "{err}"
    );
}

#[test]
fn manifests_with_bad_digests_or_sizes_are_refused() {
    let m = |digest: &str, size: i64| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "config":{{"mediaType":"a","digest":"{D1}","size":2}},
                "layers":[{{"mediaType":"b","digest":"{digest}","size":{size}}}]}}"#
        )
    };
    assert!(matches!(
        parse(m(D2, 5).as_bytes(), "x").unwrap(),
        Doc::Image(_)
    ));
    assert!(parse(m("sha256:../x", 5).as_bytes(), "x").is_err());
    assert!(parse(m(D2, -1).as_bytes(), "x").is_err());
    assert!(parse(m(D2, 1 << 40).as_bytes(), "x").is_err());
}

#[test]
fn configs_for_other_platforms_are_refused() {
    let c = parse_config(
        br#"{"os":"linux","architecture":"amd64","config":{"Env":["A=1"],"WorkingDir":"/app"}}"#,
    )
    .unwrap();
    assert_eq!(c.config.unwrap().working_dir.as_deref(), Some("/app"));
    assert!(parse_config(br#"{"os":"linux","architecture":"arm64"}"#).is_err());
    assert!(parse_config(br#"{"config":{"Env":["NOEQUALS"]}}"#).is_err());
}

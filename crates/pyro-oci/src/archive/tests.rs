use super::*;

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    tar_with_links(members, &[])
}

/// A tar with regular members and symlinks (name, target).
fn tar_with_links(members: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    for (name, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, name, target).unwrap();
    }
    b.into_inner().unwrap()
}

fn blob_name(bytes: &[u8]) -> String {
    format!(
        "blobs/sha256/{}",
        sha256_digest(bytes).trim_start_matches("sha256:")
    )
}

/// The OCI layout `docker save` writes since Docker 25: an index
/// without a platform, blobs checked against their names, members
/// reached through the archive's own symlinks; and what is refused.
#[test]
fn an_oci_layout_archive_is_read_through_its_index() {
    let layer = tar_of(&[("etc/hello", b"hi\n")]);
    let diff_id = sha256_digest(&layer);
    let config = format!(
        r#"{{"os":"linux","architecture":"amd64","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        sha256_digest(config.as_bytes()),
        config.len(),
        diff_id,
        layer.len()
    );
    let inner = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        sha256_digest(manifest.as_bytes()),
        manifest.len()
    );
    // Docker's top index names its one entry without a platform.
    let top = |target: &str| {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","size":1}}]}}"#,
            sha256_digest(target.as_bytes())
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: Vec<u8>| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // An archive `name` of the config, manifest and inner index blobs,
    // plus `extra` members and `links`.
    let archive = |name: &str, extra: &[(&str, &[u8])], links: &[(&str, &str)]| {
        let blobs = [config.as_bytes(), manifest.as_bytes(), inner.as_bytes()];
        let names = blobs.map(blob_name);
        let mut members: Vec<(&str, &[u8])> = names.iter().map(String::as_str).zip(blobs).collect();
        members.extend_from_slice(extra);
        write(name, tar_with_links(&members, links))
    };
    let layer_blob = blob_name(&layer);
    let index = top(&inner);
    // The layer blob itself is a link to the old-style path.
    let good = archive(
        "good.tar",
        &[("index.json", index.as_bytes()), ("old/layer.tar", &layer)],
        &[(layer_blob.as_str(), "../../old/layer.tar")],
    );
    let work = tempfile::tempdir().unwrap();
    let img = open(&good, work.path(), 1 << 30).unwrap();
    assert_eq!(img.digest, sha256_digest(manifest.as_bytes()));
    assert_eq!(img.layers.len(), 1);
    assert_eq!(std::fs::read(&img.layers[0]).unwrap(), layer);

    // A blob whose content is not its name: refused.
    let changed = tar_of(&[("etc/hello", b"changed\n")]);
    let tampered = archive(
        "tampered.tar",
        &[
            ("index.json", index.as_bytes()),
            (layer_blob.as_str(), &changed),
        ],
        &[],
    );
    let work = tempfile::tempdir().unwrap();
    let err = open(&tampered, work.path(), 1 << 30).unwrap_err();
    assert!(matches!(err, OciError::Digest { .. }), "{err}");

    // A link that climbs out of the archive leads nowhere.
    let escaping = archive(
        "escaping.tar",
        &[("index.json", index.as_bytes())],
        &[(layer_blob.as_str(), "../../../../etc/passwd")],
    );
    let work = tempfile::tempdir().unwrap();
    let err = open(&escaping, work.path(), 1 << 30).unwrap_err();
    assert!(err.to_string().contains("has no member"), "{err}");

    // index.json that is a manifest, not an index.
    let flat = archive("flat.tar", &[("index.json", manifest.as_bytes())], &[]);
    let work = tempfile::tempdir().unwrap();
    let err = open(&flat, work.path(), 1 << 30).unwrap_err();
    assert!(err.to_string().contains("not an index"), "{err}");

    // Two images in an older manifest.json: one image per archive.
    let two = br#"[{"Config":"a.json","Layers":[]},{"Config":"b.json","Layers":[]}]"#;
    let many = write("many.tar", tar_of(&[("manifest.json", two)]));
    let work = tempfile::tempdir().unwrap();
    let err = open(&many, work.path(), 1 << 30).unwrap_err();
    assert!(err.to_string().contains("holds 2 images"), "{err}");
}

#[test]
fn an_older_docker_save_archive_is_checked_against_its_diff_ids() {
    let layer = tar_of(&[("etc/hello", b"hi\n")]);
    let diff_id = sha256_digest(&layer);
    let config = format!(
        r#"{{"os":"linux","architecture":"amd64","config":{{"Env":["A=1"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let manifest =
        br#"[{"Config":"cfg.json","RepoTags":["x:1"],"Layers":["abc/layer.tar","def/layer.tar"]}]"#;
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, members: &[(&str, &[u8])]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, tar_of(members)).unwrap();
        p
    };
    // Two layers named, one diff_id: refused.
    let bad = write(
        "bad.tar",
        &[
            ("manifest.json", manifest),
            ("cfg.json", config.as_bytes()),
            ("abc/layer.tar", &layer),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    assert!(open(&bad, work.path(), 1 << 30).is_err());
    // One layer, matching.
    let manifest = br#"[{"Config":"cfg.json","Layers":["abc/layer.tar"]}]"#;
    let good = write(
        "good.tar",
        &[
            ("manifest.json", manifest),
            ("cfg.json", config.as_bytes()),
            ("abc/layer.tar", &layer),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let img = open(&good, work.path(), 1 << 30).unwrap();
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.digest, sha256_digest(config.as_bytes()));
    assert_eq!(img.config.config.unwrap().env.unwrap(), ["A=1"]);
    // A layer that is not what the config says: refused.
    let other = tar_of(&[("etc/hello", b"changed\n")]);
    let tampered = write(
        "tampered.tar",
        &[
            ("manifest.json", manifest),
            ("cfg.json", config.as_bytes()),
            ("abc/layer.tar", &other),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let err = open(&tampered, work.path(), 1 << 30).unwrap_err();
    assert!(matches!(err, OciError::Digest { .. }), "{err}");
    // Too big for the limit.
    let work = tempfile::tempdir().unwrap();
    assert!(matches!(
        open(&good, work.path(), 10).unwrap_err(),
        OciError::TooLarge { .. }
    ));
}

#[test]
fn oversized_metadata_and_too_many_layers_are_refused() {
    let config =
        r#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let tmp = tempfile::tempdir().unwrap();
    let open_tar = |name: &str, members: &[(&str, &[u8])]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, tar_of(members)).unwrap();
        let work = tempfile::tempdir().unwrap();
        open(&p, work.path(), 1 << 30).unwrap_err().to_string()
    };
    // A manifest.json over the metadata limit.
    let huge = vec![b' '; crate::MAX_MANIFEST_BYTES + 1];
    let err = open_tar("huge.tar", &[("manifest.json", &huge)]);
    assert!(err.contains("a metadata member is"), "{err}");
    // More layers than pyro takes.
    let layers = vec!["\"l.tar\""; crate::MAX_LAYERS + 1].join(",");
    let manifest = format!(r#"[{{"Config":"cfg.json","Layers":[{layers}]}}]"#);
    let err = open_tar(
        "many.tar",
        &[
            ("manifest.json", manifest.as_bytes()),
            ("cfg.json", config.as_bytes()),
        ],
    );
    assert!(
        err.contains(&format!("it has {} layers", crate::MAX_LAYERS + 1)),
        "{err}"
    );
}

//! pyro-oci against a real registry on loopback (Debian's
//! `docker-registry`): push, resolve, digest-verified and resumable
//! downloads, basic auth, and a multi-arch index.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyro_oci::registry::{Registry, partial_path};
use pyro_oci::testing::TestRegistry;
use pyro_oci::{OciError, RegistryAuth, parse_reference, quiet};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn registry(auth: Option<(&str, &str)>) -> TestRegistry {
    TestRegistry::start(auth).expect("docker-registry is not installed; run scripts/setup-host.sh")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Pushes a one-layer image whose config says `arch`; its manifest digest.
async fn push_image(
    reg: &Registry,
    r: &pyro_oci::Reference,
    layer: &std::path::Path,
    arch: &str,
) -> (String, String) {
    let l = reg
        .push_file(r, layer, "application/vnd.oci.image.layer.v1.tar", &quiet())
        .await
        .unwrap();
    let config = format!(
        r#"{{"os":"linux","architecture":"{arch}","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let c = reg
        .push_bytes(
            r,
            config.into_bytes(),
            "application/vnd.oci.image.config.v1+json",
        )
        .await
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": c.media_type, "digest": c.digest, "size": c.size},
        "layers": [{"mediaType": l.media_type, "digest": l.digest, "size": l.size}],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    (
        reg.push_manifest(r, &bytes, MANIFEST).await.unwrap(),
        l.digest,
    )
}

#[test]
fn push_resolve_fetch_tamper_and_resume() {
    let tr = registry(None);
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("layer");
    // 3 MiB, so a download can be cut in the middle.
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&layer, &data).unwrap();
    let r = parse_reference(&format!("{}/pyro/test:one", tr.addr)).unwrap();
    let reg = Registry::new(&r, RegistryAuth::Anonymous).with_backoff(Duration::ZERO);
    rt().block_on(async {
        let (digest, layer_digest) = push_image(&reg, &r, &layer, "amd64").await;
        let resolved = reg.resolve(&r).await.unwrap();
        assert_eq!(resolved.digest, digest);
        assert_eq!(resolved.index_digest, None);
        let desc = resolved.manifest.layers[0].clone();
        assert_eq!(desc.digest, layer_digest);

        // A whole download.
        let dest = tmp.path().join("got");
        reg.fetch_blob(&r, &desc, &dest, &quiet()).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);

        // An interrupted one (a killed process leaves the partial file):
        // the next call asks for the rest only.
        let dest2 = tmp.path().join("resumed");
        std::fs::write(partial_path(&dest2), &data[..1 << 20]).unwrap();
        let first = Arc::new(Mutex::new(None));
        let seen = first.clone();
        let progress: pyro_oci::OnBytes = Arc::new(move |done, _| {
            seen.lock().unwrap().get_or_insert(done);
        });
        reg.fetch_blob(&r, &desc, &dest2, &progress).await.unwrap();
        assert_eq!(
            *first.lock().unwrap(),
            Some(1 << 20),
            "the download started over instead of resuming"
        );
        assert_eq!(std::fs::read(&dest2).unwrap(), data);
        assert!(!partial_path(&dest2).exists());

        // Pinning by digest works; a wrong pin is refused.
        let pinned = parse_reference(&format!("{}/pyro/test@{digest}", tr.addr)).unwrap();
        assert_eq!(reg.resolve(&pinned).await.unwrap().digest, digest);

        // A tampered blob: refused, and nothing is left behind.
        let stored = tr.blob_path(&desc.digest);
        let mut bad = data.clone();
        bad[12345] ^= 0xff;
        std::fs::write(&stored, &bad).unwrap();
        let dest3 = tmp.path().join("tampered");
        let err = reg
            .fetch_blob(&r, &desc, &dest3, &quiet())
            .await
            .unwrap_err();
        assert!(matches!(err, OciError::Digest { .. }), "{err}");
        assert!(
            err.to_string().contains("nothing from it was installed"),
            "{err}"
        );
        assert!(!dest3.exists() && !partial_path(&dest3).exists());

        // A name that is not there.
        let missing = parse_reference(&format!("{}/pyro/nothing:here", tr.addr)).unwrap();
        let err = reg.resolve(&missing).await.unwrap_err();
        assert!(matches!(err, OciError::NotFound { .. }), "{err}");
    });
}

#[test]
fn basic_auth_is_required_and_honoured() {
    let tr = registry(Some(("pyro", "s3cret-pass")));
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("layer");
    std::fs::write(&layer, b"layer bytes").unwrap();
    let r = parse_reference(&format!("{}/pyro/private:1", tr.addr)).unwrap();
    rt().block_on(async {
        let anon = Registry::new(&r, RegistryAuth::Anonymous).with_backoff(Duration::ZERO);
        let err = anon.push_file(&r, &layer, "x", &quiet()).await.unwrap_err();
        assert!(matches!(err, OciError::Auth { .. }), "{err}");
        assert!(err.to_string().contains("PYRO_REGISTRY_USERNAME"), "{err}");
        let wrong = Registry::new(&r, RegistryAuth::Basic("pyro".into(), "nope".into()))
            .with_backoff(Duration::ZERO);
        assert!(matches!(
            wrong.resolve(&r).await.unwrap_err(),
            OciError::Auth { .. }
        ));
        let good = Registry::new(&r, RegistryAuth::Basic("pyro".into(), "s3cret-pass".into()));
        let (digest, _) = push_image(&good, &r, &layer, "amd64").await;
        assert_eq!(good.resolve(&r).await.unwrap().digest, digest);
        let err = anon.resolve(&r).await.unwrap_err();
        assert!(matches!(err, OciError::Auth { .. }), "{err}");
    });
}

#[test]
fn a_multi_arch_index_resolves_to_linux_amd64() {
    let tr = registry(None);
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::write(&a, b"arm layer").unwrap();
    std::fs::write(&b, b"amd layer").unwrap();
    let r = parse_reference(&format!("{}/pyro/multi:latest", tr.addr)).unwrap();
    let reg = Registry::new(&r, RegistryAuth::Anonymous);
    rt().block_on(async {
        let arm = parse_reference(&format!("{}/pyro/multi:arm", tr.addr)).unwrap();
        let amd = parse_reference(&format!("{}/pyro/multi:amd", tr.addr)).unwrap();
        let (arm_digest, _) = push_image(&reg, &arm, &a, "arm64").await;
        let (amd_digest, amd_layer) = push_image(&reg, &amd, &b, "amd64").await;
        let entry = |d: &str, arch: &str| serde_json::json!({"mediaType": MANIFEST, "digest": d, "size": 1, "platform": {"os": "linux", "architecture": arch}});
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX,
            "manifests": [entry(&arm_digest, "arm64"), entry(&amd_digest, "amd64")],
        }))
        .unwrap();
        // Sizes in an index must match: push with the real sizes.
        let index = String::from_utf8(index).unwrap();
        let arm_len = reg.resolve(&arm).await.unwrap().manifest_bytes.len();
        let amd_len = reg.resolve(&amd).await.unwrap().manifest_bytes.len();
        let index = index
            .replacen("\"size\":1", &format!("\"size\":{arm_len}"), 1)
            .replacen("\"size\":1", &format!("\"size\":{amd_len}"), 1);
        let index_digest = reg.push_manifest(&r, index.as_bytes(), INDEX).await.unwrap();
        let resolved = reg.resolve(&r).await.unwrap();
        assert_eq!(resolved.digest, amd_digest);
        assert_eq!(resolved.index_digest.as_deref(), Some(index_digest.as_str()));
        assert_eq!(resolved.manifest.layers[0].digest, amd_layer);

        // An index whose linux/amd64 entry is itself an index.
        let nested = parse_reference(&format!("{}/pyro/multi:nested", tr.addr)).unwrap();
        let outer = serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX,
            "manifests": [{"mediaType": INDEX, "digest": index_digest, "size": index.len(),
                "platform": {"os": "linux", "architecture": "amd64"}}],
        });
        reg.push_manifest(&nested, outer.to_string().as_bytes(), INDEX)
            .await
            .unwrap();
        let err = reg.resolve(&nested).await.unwrap_err().to_string();
        assert!(
            err.contains("its linux/amd64 entry is application/vnd.oci.image.index.v1+json"),
            "{err}"
        );

        // The chosen manifest's stored bytes changed: refused by its digest.
        let stored = tr.blob_path(&amd_digest);
        let mut bytes = std::fs::read(&stored).unwrap();
        bytes.push(b'\n');
        std::fs::write(&stored, &bytes).unwrap();
        let err = reg.resolve(&r).await.unwrap_err();
        assert!(matches!(err, OciError::Digest { .. }), "{err}");
    });
}

#[test]
fn lying_registries_and_descriptors_are_refused() {
    let tmp = tempfile::tempdir().unwrap();

    // Nothing listens (port 1, which no test binds): retried ATTEMPTS
    // times, then one error that says so.
    let down = parse_reference("127.0.0.1:1/pyro/down:1").unwrap();
    let reg = Registry::new(&down, RegistryAuth::Anonymous).with_backoff(Duration::ZERO);
    let err = rt().block_on(reg.resolve(&down)).unwrap_err();
    assert!(
        matches!(
            err,
            OciError::Registry {
                attempts: pyro_oci::registry::ATTEMPTS,
                ..
            }
        ),
        "{err}"
    );

    let tr = registry(None);
    let layer = tmp.path().join("layer");
    std::fs::write(&layer, vec![7u8; 100_000]).unwrap();
    let r = parse_reference(&format!("{}/pyro/lies:1", tr.addr)).unwrap();
    let reg = Registry::new(&r, RegistryAuth::Anonymous).with_backoff(Duration::ZERO);
    rt().block_on(async {
        let (digest, _) = push_image(&reg, &r, &layer, "amd64").await;
        let desc = reg.resolve(&r).await.unwrap().manifest.layers[0].clone();

        // Sizes no download may have are refused before asking.
        let huge = pyro_oci::OciDescriptor {
            size: i64::try_from(pyro_oci::MAX_BLOB_BYTES).unwrap() + 1,
            ..desc.clone()
        };
        let err = reg
            .fetch_blob(&r, &huge, &tmp.path().join("huge"), &quiet())
            .await
            .unwrap_err();
        assert!(matches!(err, OciError::TooLarge { .. }), "{err}");
        let big_config = pyro_oci::OciDescriptor {
            size: i64::try_from(pyro_oci::MAX_MANIFEST_BYTES).unwrap() + 1,
            ..desc.clone()
        };
        let err = reg.blob_bytes(&r, &big_config).await.unwrap_err();
        assert!(matches!(err, OciError::TooLarge { .. }), "{err}");

        // The registry sends more than the manifest says: cut off, nothing kept.
        let short = pyro_oci::OciDescriptor {
            size: desc.size - 10,
            ..desc.clone()
        };
        let dest = tmp.path().join("short");
        let err = reg
            .fetch_blob(&r, &short, &dest, &quiet())
            .await
            .unwrap_err();
        assert!(
            matches!(err, OciError::TooLarge { .. })
                && err.to_string().contains("its manifest says"),
            "{err}"
        );
        assert!(!dest.exists());
        assert_eq!(
            std::fs::metadata(partial_path(&dest))
                .map(|m| m.len())
                .unwrap_or(0),
            0
        );

        // ... or fewer bytes than it says: retried, then an error; never
        // installed, and what came is kept for the next try to go on from.
        let long = pyro_oci::OciDescriptor {
            size: desc.size + 10,
            ..desc.clone()
        };
        let dest = tmp.path().join("long");
        let err = reg
            .fetch_blob(&r, &long, &dest, &quiet())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                OciError::Registry {
                    attempts: pyro_oci::registry::ATTEMPTS,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!dest.exists());
        assert_eq!(
            std::fs::metadata(partial_path(&dest)).unwrap().len(),
            u64::try_from(desc.size).unwrap()
        );

        // A manifest whose stored bytes changed: a digest pin refuses it.
        let stored = tr.blob_path(&digest);
        let mut bytes = std::fs::read(&stored).unwrap();
        bytes.push(b' ');
        std::fs::write(&stored, &bytes).unwrap();
        let pinned = parse_reference(&format!("{}/pyro/lies@{digest}", tr.addr)).unwrap();
        let err = reg.resolve(&pinned).await.unwrap_err();
        assert!(matches!(err, OciError::Digest { .. }), "{err}");
    });
}

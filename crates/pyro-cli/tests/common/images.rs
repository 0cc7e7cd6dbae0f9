//! Container images built in a test: layers made with the tar crate, an
//! image config, pushed to a local registry (behind an index) or written
//! as an OCI-layout tarball.

use std::path::Path;

use pyro_oci::registry::Registry;
use pyro_oci::{RegistryAuth, parse_reference, quiet};
use sha2::Digest;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One layer being built.
pub struct Layer(tar::Builder<Vec<u8>>);

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    }
    pub fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }
    /// A raw entry name, which the tar crate's checks would refuse.
    pub fn raw_file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    pub fn tar(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A layer of busybox: `/bin/busybox` and its applets as links, a
/// passwd with an unprivileged `app` user.
pub fn busybox_layer() -> Layer {
    let bb =
        std::fs::read("/bin/busybox").expect("busybox-static is needed (scripts/setup-host.sh)");
    let mut l = Layer::new().dir("bin").file("bin/busybox", &bb, 0o755);
    for applet in [
        "sh", "ls", "cat", "echo", "pwd", "id", "grep", "env", "test", "true", "false", "printf",
        "sleep", "mkdir", "rm", "kill",
    ] {
        l = l.symlink(&format!("bin/{applet}"), "busybox");
    }
    l.dir("etc")
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            0o644,
        )
        .file("etc/group", b"root:x:0:\napp:x:1000:\n", 0o644)
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, data).unwrap();
    e.finish().unwrap()
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// An image: compressed layers (with their media types) and a config.
pub struct Image {
    pub layers: Vec<(Vec<u8>, &'static str)>,
    pub config: serde_json::Value,
}

impl Image {
    /// The config blob, with the diff_ids of the uncompressed layers.
    fn config_bytes(&self, uncompressed: &[Vec<u8>]) -> Vec<u8> {
        let mut c = self.config.clone();
        c["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": uncompressed.iter().map(|u| digest(u)).collect::<Vec<_>>()});
        serde_json::to_vec(&c).unwrap()
    }

    fn manifest(&self, config: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": config.len()},
            "layers": self.layers.iter().map(|(b, mt)| serde_json::json!({"mediaType": mt, "digest": digest(b), "size": b.len()})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn index(manifest: &[u8]) -> Vec<u8> {
        let entry = |arch: &str| serde_json::json!({"mediaType": MANIFEST, "digest": digest(manifest), "size": manifest.len(), "platform": {"os": "linux", "architecture": arch}});
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry("arm64"), entry("amd64")]})).unwrap()
    }

    /// Pushes it to `reference` as an index over its manifest; the
    /// manifest's digest.
    pub fn push(&self, reference: &str, uncompressed: &[Vec<u8>]) -> String {
        let r = parse_reference(reference).unwrap();
        let reg = Registry::new(&r, RegistryAuth::Anonymous);
        let dir = tempfile::tempdir().unwrap();
        let config = self.config_bytes(uncompressed);
        let manifest = self.manifest(&config);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for (i, (bytes, mt)) in self.layers.iter().enumerate() {
                let p = dir.path().join(format!("l{i}"));
                std::fs::write(&p, bytes).unwrap();
                reg.push_file(&r, &p, mt, &quiet()).await.unwrap();
            }
            reg.push_bytes(&r, config, "application/vnd.oci.image.config.v1+json")
                .await
                .unwrap();
            let by_digest = parse_reference(&format!(
                "{}/{}@{}",
                r.registry(),
                r.repository(),
                digest(&manifest)
            ))
            .unwrap();
            reg.push_manifest(&by_digest, &manifest, MANIFEST)
                .await
                .unwrap();
            reg.push_manifest(&r, &Self::index(&manifest), INDEX)
                .await
                .unwrap();
        });
        digest(&manifest)
    }

    /// Writes it as an OCI-layout tarball at `path`; the manifest's digest.
    pub fn write_oci_tar(&self, path: &Path, uncompressed: &[Vec<u8>]) -> String {
        let config = self.config_bytes(uncompressed);
        let manifest = self.manifest(&config);
        let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": MANIFEST, "digest": digest(&manifest), "size": manifest.len()}]})).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json", &index);
        let blob = |d: String| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        add(&blob(digest(&manifest)), &manifest);
        add(&blob(digest(&config)), &config);
        for (bytes, _) in &self.layers {
            add(&blob(digest(bytes)), bytes);
        }
        std::fs::write(path, b.into_inner().unwrap()).unwrap();
        digest(&manifest)
    }
}

/// A cache directory of its own for a test, holding the shared cache's
/// kernel (so nothing is built), used with the shared Firecracker.
pub struct OwnCache {
    pub dir: tempfile::TempDir,
}

impl OwnCache {
    pub fn new(shared: &pyro_env::Installed) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pyro-cache-")
            .tempdir()
            .unwrap();
        let kdir = dir.path().join("kernels").join(&shared.kernel.manifest.key);
        std::fs::create_dir_all(&kdir).unwrap();
        for f in ["vmlinux", "kernel.json"] {
            std::fs::copy(shared.kernel.dir.join(f), kdir.join(f)).unwrap();
        }
        Self { dir }
    }

    /// `home`'s pyro with this cache and the shared Firecracker.
    pub fn cmd(&self, home: &super::Home) -> assert_cmd::Command {
        let shared = pyro_env::Cache::from_env();
        let bins =
            pyro_vmm::binaries::locate(shared.root()).expect("Firecracker in the shared cache");
        let mut c = home.cmd();
        c.env("PYRO_CACHE_DIR", self.dir.path())
            .env("PYRO_FIRECRACKER_BIN", &bins.firecracker.path)
            .env("PYRO_JAILER_BIN", &bins.jailer.path)
            .env_remove("PYRO_ENV_REGISTRY")
            .env_remove("PYRO_REGISTRY_USERNAME")
            .env_remove("PYRO_REGISTRY_PASSWORD")
            .env_remove("PYRO_REGISTRY_HOST")
            .env("DOCKER_CONFIG", home.path().join("no-docker-config"));
        c
    }
}

//! The kernel recipe, its cache, prebuilt installs, and the build steps
//! (against a stand-in source tree that builds in a moment).

use super::*;
use crate::NoProgress;

#[test]
fn key_depends_on_every_input() {
    let a = key("6.1.192-2");
    assert_eq!(a.len(), 16);
    assert_eq!(a, key("6.1.192-2"));
    assert_ne!(a, key("6.1.193-1"));
}

#[test]
fn config_check_reports_what_did_not_stick() {
    let fragment = "CONFIG_A=y\n# CONFIG_B is not set\n# CONFIG_C is not set\nCONFIG_N=8\n";
    let config = "CONFIG_A=y\nCONFIG_B=y\nCONFIG_N=4\n";
    assert_eq!(
        config_violations(fragment, config),
        ["CONFIG_B should be off", "CONFIG_N=8"]
    );
    assert!(config_violations(fragment, "CONFIG_A=y\nCONFIG_N=8\n").is_empty());
}

#[test]
fn recipe_carries_the_pvm_patches_behind_flags() {
    assert!(PATCHES[0].1.contains("early_param(\"noint3selftest\""));
    assert!(PATCHES[1].1.contains("early_param(\"pvmsyscallfixup\""));
    assert!(FRAGMENT.contains("# CONFIG_MODULES is not set"));
    assert!(
        FRAGMENT.contains("CONFIG_OVERLAY_FS=y") && FRAGMENT.contains("CONFIG_VIRTIO_VSOCKETS=y")
    );
}

#[test]
fn a_cached_kernel_with_a_wrong_checksum_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let kdir = cache.kernels_dir().join("k1");
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::write(kdir.join("vmlinux"), b"kernel bytes").unwrap();
    let manifest = KernelManifest {
        key: "k1".into(),
        sha256: sha256_bytes(b"kernel bytes"),
        size_bytes: 12,
        source_version: "x".into(),
        recipe_version: RECIPE_VERSION.into(),
        built_at: 0.0,
        build_seconds: 0.0,
    };
    std::fs::write(
        kdir.join("kernel.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let k = cached(&cache, "k1").unwrap();
    verify(&k, "debian:12").unwrap();
    std::fs::write(kdir.join("vmlinux"), b"kernel bytez").unwrap();
    let err = verify(&k, "debian:12").unwrap_err().to_string();
    assert!(
        err.contains("does not match its recorded checksum"),
        "{err}"
    );
    assert!(err.contains("⟨op:env pull debian:12⟩"), "{err}");
    assert!(cached(&cache, "other").is_none());
}

/// Records the progress a build reports.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<String>>);

impl Progress for Seen {
    fn step(&self, msg: &str) {
        self.0.lock().unwrap().push(format!("step {msg}"));
    }
    fn tick(&self, msg: &str) {
        self.0.lock().unwrap().push(format!("tick {msg}"));
    }
}

/// A stand-in source tree, packed as `dir/src.tar`: a Makefile whose
/// `tinyconfig`, `olddefconfig` and `vmlinux` targets do in a moment
/// what the real ones do in minutes (`vmlinux_recipe` is the
/// `vmlinux` target's shell line), the config merge script, and a file
/// the test patch changes.
fn fake_source(dir: &Path, vmlinux_recipe: &str) -> String {
    let tree = dir.join("tree/linux-fake");
    std::fs::create_dir_all(tree.join("scripts/kconfig")).unwrap();
    std::fs::write(
        tree.join("Makefile"),
        format!(
            "tinyconfig:\n\tprintf 'CONFIG_TINY=y\\n' > .config\n\
             olddefconfig:\n\tgrep -q PATCHED hello.c\n\
             vmlinux:\n\t{vmlinux_recipe}\n"
        ),
    )
    .unwrap();
    let merge = tree.join("scripts/kconfig/merge_config.sh");
    // `-m .config FRAGMENT`: the fragment's lines, less any DROPPED one.
    std::fs::write(&merge, "#!/bin/sh\ngrep -v DROPPED \"$3\" >> \"$2\"\n").unwrap();
    std::fs::set_permissions(&merge, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(tree.join("hello.c"), "int x;\n").unwrap();
    let tar = dir.join("src.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(dir.join("tree"))
        .arg("linux-fake")
        .status()
        .unwrap();
    assert!(st.success());
    tar.display().to_string()
}

const PATCH: (&str, &str) = (
    "0001-mark.patch",
    "--- a/hello.c\n+++ b/hello.c\n@@ -1 +1,2 @@\n int x;\n+/* PATCHED */\n",
);

fn inputs<'a>(tarball: &'a str, fragment: &'a str) -> BuildInputs<'a> {
    BuildInputs {
        // What the stand-in build runs (not the compiler the real one needs).
        tools: &[("tar", "tar"), ("make", "make"), ("patch", "patch")],
        tarball,
        tree: "linux-fake",
        // Any file that exists: the stand-in build links nothing.
        libelf_header: tarball,
        fragment,
        patches: std::slice::from_ref(&PATCH),
    }
}

const COMPILE: &str =
    "for i in $$(seq 1 25); do echo \"  CC      obj$$i.o\"; done; printf 'image' > vmlinux";

#[test]
fn a_build_unpacks_patches_configures_compiles_and_installs_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let tarball = fake_source(dir.path(), COMPILE);
    // An older build of the same key and a dead build's leftovers.
    let kernels = cache.kernels_dir();
    std::fs::create_dir_all(kernels.join("kfake")).unwrap();
    std::fs::write(kernels.join("kfake/vmlinux"), b"old").unwrap();
    std::fs::create_dir_all(kernels.join(".build-kfake-dead")).unwrap();
    let seen = Seen::default();
    let fragment = "CONFIG_SERIAL=y\n# CONFIG_MODULES is not set\n";
    let k = build(&inputs(&tarball, fragment), &cache, "kfake", "9.9", &seen).unwrap();
    assert_eq!(k.dir, kernels.join("kfake"));
    assert_eq!(std::fs::read(k.vmlinux()).unwrap(), b"image");
    assert_eq!(k.manifest.sha256, sha256_bytes(b"image"));
    assert_eq!(k.manifest.size_bytes, 5);
    assert_eq!(k.manifest.source_version, "9.9");
    assert_eq!(k.manifest.recipe_version, RECIPE_VERSION);
    // What it records is what the cache reads back, and it verifies.
    let back = cached(&cache, "kfake").unwrap();
    // (serde_json may round the build time's last digit.)
    assert_eq!(
        (&back.manifest.key, &back.manifest.sha256),
        (&k.manifest.key, &k.manifest.sha256)
    );
    verify(&back, "").unwrap();
    let config = std::fs::read_to_string(k.dir.join("config")).unwrap();
    assert_eq!(config, format!("CONFIG_TINY=y\n{fragment}"));
    let log = std::fs::read_to_string(k.dir.join("build.log")).unwrap();
    assert!(log.contains("CC      obj25.o"), "{log}");
    let seen = seen.0.into_inner().unwrap();
    assert_eq!(
        seen.iter()
            .filter(|l| l.starts_with("tick"))
            .collect::<Vec<_>>(),
        [
            "tick guest kernel: compiled 10 objects",
            "tick guest kernel: compiled 20 objects"
        ]
    );
    assert!(
        seen[0].contains("unpacking linux-source-6.1 9.9"),
        "{seen:?}"
    );
    // Nothing but the kernel is left in the cache's kernel directory.
    let names: Vec<String> = std::fs::read_dir(&kernels)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["kfake"]);
}

#[test]
fn a_failed_or_unfaithful_build_installs_nothing_and_keeps_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let kernels = cache.kernels_dir();
    // The fragment asks for an option the config merge drops.
    let tarball = fake_source(dir.path(), COMPILE);
    let fragment = "CONFIG_SERIAL=y\nCONFIG_DROPPED=y\n";
    let err = build(
        &inputs(&tarball, fragment),
        &cache,
        "kbad",
        "9.9",
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&err, EnvError::KernelConfig(m) if m == "CONFIG_DROPPED=y"),
        "{err}"
    );
    assert!(!kernels.join("kbad").exists());

    // A compile that fails: the error names the step and carries the
    // log's tail, and the log stays in the cache.
    let dir2 = tempfile::tempdir().unwrap();
    let tarball = fake_source(dir2.path(), "echo 'hello.c:1: error: broken' >&2; exit 2");
    let err = build(
        &inputs(&tarball, "CONFIG_SERIAL=y\n"),
        &cache,
        "kbad",
        "9.9",
        &NoProgress,
    )
    .unwrap_err();
    match &err {
        EnvError::Build { step, log, tail } => {
            assert_eq!(step, "compiling the kernel");
            assert!(tail.contains("error: broken"), "{tail}");
            assert_eq!(log, &kernels.join("build-kbad.log"));
            assert!(log.is_file());
        }
        other => panic!("{other}"),
    }
    assert!(!kernels.join("kbad").exists());
    // Neither the kernel nor the build's work tree is left.
    let left: Vec<String> = std::fs::read_dir(&kernels)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["build-kbad.log"]);

    // Missing inputs are named with the package that brings them.
    let mut missing = inputs("/nonexistent/src.tar.xz", "");
    missing.libelf_header = &tarball;
    let err = build(&missing, &cache, "k", "1", &NoProgress).unwrap_err();
    assert!(
        matches!(&err, EnvError::MissingTool { tool, package, .. }
            if tool == "/nonexistent/src.tar.xz" && package == SOURCE_PACKAGE),
        "{err}"
    );
    missing.libelf_header = "/nonexistent/libelf.h";
    let err = build(&missing, &cache, "k", "1", &NoProgress).unwrap_err();
    assert!(
        matches!(&err, EnvError::MissingTool { package, .. } if package == LIBELF_PACKAGE),
        "{err}"
    );
}

fn manifest_of(key: &str, bytes: &[u8]) -> KernelManifest {
    KernelManifest {
        key: key.into(),
        sha256: sha256_bytes(bytes),
        size_bytes: bytes.len() as u64,
        source_version: "x".into(),
        recipe_version: RECIPE_VERSION.into(),
        built_at: 0.0,
        build_seconds: 0.0,
    }
}

#[test]
fn a_prebuilt_kernel_installs_once_and_never_replaces_another_under_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().join("cache"));
    let image = dir.path().join("vmlinux");
    std::fs::write(&image, b"prebuilt").unwrap();
    let m = manifest_of("kpre", b"prebuilt");

    // Keys that cannot name a directory are refused before anything.
    for bad in ["", ".hidden", "a/b", "..", &"k".repeat(97)] {
        let err = install_prebuilt(&cache, &manifest_of(bad, b"prebuilt"), &image).unwrap_err();
        assert!(
            err.to_string().contains("cannot name a kernel"),
            "{bad:?}: {err}"
        );
    }
    // An image that is not what the manifest says is refused.
    let mut lying = m.clone();
    lying.size_bytes += 1;
    let err = install_prebuilt(&cache, &lying, &image).unwrap_err();
    assert!(matches!(err, EnvError::Corrupt { .. }), "{err}");
    assert!(cached(&cache, "kpre").is_none());

    let k = install_prebuilt(&cache, &m, &image).unwrap();
    assert_eq!(std::fs::read(k.vmlinux()).unwrap(), b"prebuilt");
    assert_eq!(cached(&cache, "kpre").unwrap().manifest.sha256, m.sha256);
    // Again: a no-op.
    install_prebuilt(&cache, &m, &image).unwrap();

    // Another kernel under the same key does not replace an intact one.
    let other = dir.path().join("other");
    std::fs::write(&other, b"another kernel").unwrap();
    let err = install_prebuilt(&cache, &manifest_of("kpre", b"another kernel"), &other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("differs from the kernel of that key"), "{err}");
    assert_eq!(std::fs::read(k.vmlinux()).unwrap(), b"prebuilt");

    // A damaged copy is replaced, and nothing is left aside.
    std::fs::write(k.vmlinux(), b"damaged!").unwrap();
    let k = install_prebuilt(&cache, &m, &image).unwrap();
    verify(&k, "").unwrap();
    let names: Vec<String> = std::fs::read_dir(cache.kernels_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["kpre"]);
}

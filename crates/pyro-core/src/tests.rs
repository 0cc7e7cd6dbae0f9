use super::*;

/// Runs `f` in a forked child of this test process and says whether it
/// returned true (a panic in it is a failure): for code that only ever runs
/// between a fork and an exec (`pre_exec` hooks), and may change the
/// process for good (drop its privileges, enter a namespace). A coverage
/// build opens a profile file of its own for the child (beside the
/// others) before `f` runs, so a child that gave up its privileges can
/// still write it, and writes its counters there before `_exit`.
///
/// Forking a test process is sound here: nextest runs each test in a
/// process of its own, whose other thread (libtest's) only waits on this
/// one, and glibc's allocator and stdio survive a fork.
pub(crate) fn in_forked_child(f: impl FnOnce() -> bool) -> bool {
    #[cfg(pyro_coverage)]
    let profile = std::env::var_os("LLVM_PROFILE_FILE").and_then(|p| {
        let dir = std::path::Path::new(&p).parent()?.to_owned();
        if dir.as_os_str().is_empty() || dir == std::path::Path::new("/dev") {
            return None;
        }
        let name = dir.join(format!(
            "forked-{}-{}.profraw",
            std::process::id(),
            random_hex(4)
        ));
        std::ffi::CString::new(name.into_os_string().into_encoded_bytes()).ok()
    });
    // SAFETY: see above; the child runs `f` and ends with `_exit`.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            #[cfg(pyro_coverage)]
            unsafe extern "C" {
                fn __llvm_profile_set_file_object(file: *mut libc::FILE, merge: i32);
                fn __llvm_profile_write_file() -> i32;
            }
            #[cfg(pyro_coverage)]
            if let Some(name) = &profile {
                // SAFETY: fopen of a NUL-terminated path, close-on-exec.
                let file = unsafe { libc::fopen(name.as_ptr(), c"wbe".as_ptr()) };
                if !file.is_null() {
                    // SAFETY: the runtime that `-C instrument-coverage`
                    // links in; the stream stays open for the child's life.
                    unsafe { __llvm_profile_set_file_object(file, 0) };
                }
            }
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
            #[cfg(pyro_coverage)]
            // SAFETY: as above; it writes to the stream set before `f`.
            unsafe {
                __llvm_profile_write_file();
            }
            // SAFETY: ends the child without the test harness's exit path.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => matches!(
            nix::sys::wait::waitpid(child, None),
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0))
        ),
    }
}

#[test]
fn backend_names() {
    assert_eq!(
        BackendKind::parse("host-compat").unwrap(),
        BackendKind::HostCompat
    );
    let err = BackendKind::parse("qemu").unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown backend \"qemu\"; expected one of: firecracker, host-compat"
    );
    assert_eq!(
        BackendKind::resolve(Some(BackendKind::HostCompat)).unwrap(),
        BackendKind::HostCompat
    );
}

/// Every error that can quote the guest loses a secret's value from its
/// text, keeps its kind, and says the secret's name instead.
#[test]
fn errors_quoting_a_secret_are_redacted_and_keep_their_kind() {
    let secret = "s3cr3t-token-value";
    let red = redact::Redactor::new([("API_TOKEN", secret.as_bytes())]);
    let t = || format!("saw {secret} here");
    let errors = [
        CoreError::Invalid(t()),
        CoreError::NotFound(t()),
        CoreError::State(t()),
        CoreError::Quota(t()),
        CoreError::Conflict(t()),
        CoreError::Busy(t()),
        CoreError::TooLarge(t()),
        CoreError::Timeout(t()),
        CoreError::Transport(t()),
        CoreError::NetworkUnavailable(t()),
        CoreError::Agent(pyro_protocol::AgentError::new(
            pyro_protocol::ErrorKind::Io,
            t(),
        )),
        CoreError::HostCompat {
            reason: t(),
            log_tail: t(),
        },
        CoreError::io(t(), std::io::Error::other(t())),
        CoreError::GuestUnavailable(Box::new(CoreError::Transport(t()))),
    ];
    let mut kinds = std::collections::HashSet::new();
    for e in errors {
        let kind = e.kind();
        let text = format!("{e:?} {e}");
        assert!(text.contains(secret), "the test's error lacks the secret");
        let r = e.redact(&red);
        assert_eq!(r.kind(), kind);
        let text = format!("{r:?} {r}");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("API_TOKEN"), "{text}");
        kinds.insert(kind);
    }
    assert_eq!(kinds.len(), 14, "{kinds:?}");
    // Host-side errors pass through whole; with no secrets, nothing changes.
    let env = CoreError::Env(pyro_env::EnvError::Agent(t()));
    assert!(env.redact(&red).to_string().contains(secret));
    let none = redact::Redactor::new([]);
    assert!(
        CoreError::Busy(t())
            .redact(&none)
            .to_string()
            .contains(secret)
    );
}

#[test]
fn environment_and_image_errors_have_stable_kinds() {
    use pyro_env::EnvError;
    use pyro_oci::OciError;
    let oci = |e: OciError| CoreError::Env(EnvError::Oci(e)).kind();
    assert_eq!(
        oci(OciError::NotFound {
            reference: "r".into(),
            detail: "d".into()
        }),
        "not_found"
    );
    assert_eq!(
        oci(OciError::TooLarge {
            what: "w".into(),
            size: 2,
            limit: 1
        }),
        "too_large"
    );
    assert_eq!(
        oci(OciError::Platform {
            reference: "r".into(),
            offered: "none".into()
        }),
        "unsupported_platform"
    );
    assert_eq!(
        oci(OciError::Invalid {
            what: "w".into(),
            detail: "d".into()
        }),
        "invalid_image"
    );
    assert_eq!(oci(OciError::io("x", std::io::Error::other("y"))), "io");
    assert_eq!(
        CoreError::Env(EnvError::Agent("a".into())).kind(),
        "environment"
    );
    assert_eq!(
        CoreError::Env(EnvError::KernelConfig("k".into())).kind(),
        "environment"
    );
}

#[test]
fn random_ids_are_hex_and_distinct() {
    let a = random_hex(6);
    assert_eq!(a.len(), 12);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, random_hex(6));
}

/// The kinds front ends report for errors that come from below core.
#[test]
fn errors_from_below_keep_their_kind() {
    use pyro_env::EnvError;
    let env = |e: EnvError| CoreError::Env(e).kind();
    assert_eq!(
        env(EnvError::Corrupt {
            what: "kernel",
            path: "/k".into(),
            expected: "a".into(),
            actual: "b".into(),
            env: "debian:12".into(),
        }),
        "corrupt_cache"
    );
    assert_eq!(
        env(EnvError::MissingTool {
            tool: "mmdebstrap".into(),
            purpose: "p".into(),
            package: "mmdebstrap".into(),
        }),
        "missing_tool"
    );
    let vsock = || pyro_vmm::VmmError::Vsock("x".into());
    assert_eq!(env(EnvError::Vmm(vsock())), "firecracker");
    assert_eq!(CoreError::Vmm(vsock()).kind(), "firecracker");
    assert_eq!(
        env(EnvError::Artifact {
            reference: "r".into(),
            reason: "x".into(),
        }),
        "not_an_environment"
    );
    assert_eq!(env(EnvError::Agent("x".into())), "environment");
    assert_eq!(
        env(EnvError::Oci(pyro_oci::OciError::Reference {
            reference: "r".into(),
            reason: "x".into(),
        })),
        "invalid_argument"
    );
    assert_eq!(
        env(EnvError::Oci(pyro_oci::OciError::Registry {
            doing: "d".into(),
            attempts: 3,
            detail: "x".into(),
        })),
        "registry"
    );
}

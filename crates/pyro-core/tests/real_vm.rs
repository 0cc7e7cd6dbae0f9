//! One real Firecracker guest, many checks inside it. Runs in the `real-vm`
//! nextest group (serially) and needs debian:12 in the cache (`make test`
//! pulls it first). Fails, never skips, when the guest cannot boot.

use std::collections::BTreeMap;
use std::time::Duration;

use pyro_core::records::Owner;
use pyro_core::sandbox::{Capture, Sandbox, SandboxSpec};
use pyro_core::{BackendKind, ExecutionMode, Paths};
use pyro_protocol::{Command, ExecOutcome, ExecRequest};

fn shell(script: &str, timeout_s: u64, limit: u64) -> ExecRequest {
    ExecRequest {
        command: Command::Shell {
            script: script.into(),
        },
        cwd: None,
        env: BTreeMap::new(),
        timeout_ms: timeout_s * 1000,
        output_limit_bytes: limit,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    }
}

async fn exec(sb: &Sandbox, req: ExecRequest) -> (ExecOutcome, Capture) {
    let mut cap = Capture::default();
    let what = format!("{:?}", req.command);
    match sb.exec(req, &mut cap).await {
        Ok(o) => (o, cap),
        Err(e) => panic!("{what} failed: {e}\n--- console ---\n{}", console(sb)),
    }
}

fn console(sb: &Sandbox) -> String {
    sb.record()
        .firecracker
        .as_ref()
        .map(|p| p.diagnostics())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_vm_one_guest_many_checks() {
    let cache = pyro_env::Cache::from_env();
    let spec = pyro_env::catalog::lookup("debian:12").unwrap();
    let env = pyro_env::install::installed(&cache, &pyro_env::EnvRef::Catalog(spec), None)
        .unwrap_or_else(|e| panic!("{e}\n(run `make test`: it pulls debian:12 before the tests)"));
    let base_before = pyro_env::sha256_file(&env.rootfs_image()).unwrap();
    assert_eq!(
        base_before, env.manifest.rootfs_sha256,
        "the cached base image is already modified"
    );

    let state = tempfile::Builder::new()
        .prefix("pyro-realvm-")
        .tempdir()
        .unwrap();
    let paths = Paths::new(state.path(), cache.clone());
    let spec = SandboxSpec {
        env: &env,
        backend: BackendKind::Firecracker,
        vcpu_count: 1,
        mem_mib: 256,
        disk_mib: 1024,
        idle_seconds: 900,
        boot_timeout: Duration::from_secs(300),
        owner: Owner::this_process(),
        hostname: pyro_core::sandbox::hostname_for(None),
        upper: None,
        boot: pyro_core::sandbox::BootPref::Cold(
            "this test checks a cold boot, console included".into(),
        ),
        progress: Default::default(),
        network: None,
    };
    let sb = Sandbox::start(&paths, &spec)
        .await
        .unwrap_or_else(|e| panic!("the guest did not boot: {e}"));
    assert_eq!(sb.mode(), ExecutionMode::GuestVsock);
    let hello = sb.hello().unwrap();
    assert_eq!(hello.protocol_version, pyro_protocol::PROTOCOL_VERSION);
    assert!(sb.boot_ms() > 0);

    // Exit codes, and stdout/stderr kept apart.
    let (o, cap) = exec(&sb, shell("echo out; echo err >&2; exit 7", 120, 4096)).await;
    assert_eq!(o.exit_code, 7);
    assert_eq!(
        (cap.stdout.as_slice(), cap.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );

    // The hostname pyro passed on the kernel command line took effect.
    let (_, cap) = exec(&sb, shell("hostname", 120, 4096)).await;
    assert_eq!(cap.stdout, b"pyro\n");

    // argv is passed as is, with the agent's PATH; programs come from the image.
    let argv = Command::Argv {
        argv: vec!["git".into(), "--version".into()],
    };
    let (o, cap) = exec(
        &sb,
        ExecRequest {
            command: argv,
            ..shell("", 120, 4096)
        },
    )
    .await;
    assert_eq!(o.exit_code, 0);
    assert!(
        cap.stdout.starts_with(b"git version 2."),
        "{:?}",
        String::from_utf8_lossy(&cap.stdout)
    );
    let argv = Command::Argv {
        argv: vec!["printf".into(), "%s\\n".into(), "a b".into()],
    };
    let (_, cap) = exec(
        &sb,
        ExecRequest {
            command: argv,
            ..shell("", 120, 4096)
        },
    )
    .await;
    assert_eq!(cap.stdout, b"a b\n");

    // Non-UTF-8 bytes arrive untouched.
    let (o, cap) = exec(&sb, shell("printf '\\377\\376\\375'", 120, 4096)).await;
    assert_eq!(
        (o.exit_code, cap.stdout.as_slice()),
        (0, &b"\xff\xfe\xfd"[..])
    );

    // 1 MiB of output against a 64 KiB cap: truncated, counted.
    let (o, cap) = exec(
        &sb,
        shell("head -c 1048576 /dev/zero | tr '\\0' x", 120, 65536),
    )
    .await;
    assert_eq!(o.exit_code, 0);
    assert_eq!(cap.stdout.len(), 65536);
    assert_eq!(o.stdout_bytes, 1 << 20);
    assert!(o.stdout_truncated && !o.stderr_truncated);

    // Writes to / land in the VM's own upper disk.
    let (o, cap) = exec(
        &sb,
        shell(
            "echo pwned > /etc/pyro-probe && rm /etc/hostname && sync && cat /etc/pyro-probe",
            120,
            4096,
        ),
    )
    .await;
    assert_eq!((o.exit_code, cap.stdout.as_slice()), (0, &b"pwned\n"[..]));

    // A timeout of 20 s: output before it is kept, the group is killed, 124.
    let (o, cap) = exec(
        &sb,
        shell("echo before; sleep 300 & sleep 300; echo after", 20, 4096),
    )
    .await;
    assert!(o.timed_out);
    assert_eq!(o.exit_code, 124);
    assert_eq!(cap.stdout, b"before\n");
    assert!(
        (20_000..90_000).contains(&o.duration_ms),
        "timeout took {} ms",
        o.duration_ms
    );
    // ...and the sandbox still answers afterwards.
    let (o, _) = exec(&sb, shell("true", 120, 64)).await;
    assert_eq!(o.exit_code, 0);

    let record = sb.record().clone();
    sb.destroy().unwrap();
    let fc = record.firecracker.unwrap();
    assert!(!fc.jail_dir.unwrap().exists(), "jail left behind");
    assert!(
        !paths.vm_dir(&record.id).exists(),
        "sandbox directory left behind"
    );
    assert!(
        !record.process.unwrap().is_alive(),
        "Firecracker still running"
    );
    let parent = paths.cgroup_parent();
    for c in ["memory", "pids", "cpu"] {
        assert!(
            !std::path::Path::new("/sys/fs/cgroup")
                .join(c)
                .join(&parent)
                .join(&record.id)
                .exists()
        );
    }
    let base_after = pyro_env::sha256_file(&env.rootfs_image()).unwrap();
    assert_eq!(
        base_before, base_after,
        "the guest changed the cached base image"
    );
}

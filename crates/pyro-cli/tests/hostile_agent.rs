//! A hostile agent: root in a guest can replace the agent and answer on its
//! socket with anything. Here a fake agent takes over a host-compat
//! workspace's socket (the real one is frozen) and misbehaves in each way a
//! guest could; every workspace command against it must fail with a typed
//! error within its deadline, and the pyro process must stay under a memory
//! bound whatever the fake sends.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::{Home, json, ok, pyro_bin, require_debian12, stdout};

/// The deadline given to every wait on the agent (`PYRO_AGENT_DEADLINE_SECONDS`).
const DEADLINE_S: u64 = 1;
/// How long a command may take past that deadline (boot of the CLI, a
/// second wait in the same command, a slow host).
const SLACK: Duration = Duration::from_secs(12);
/// The most memory a pyro process may use against the fake agent.
const MEMORY_BOUND_MIB: f64 = 96.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Greets, takes the request, never answers.
    Silent,
    /// Accepts and never greets.
    NeverGreets,
    /// Announces a frame far over the limit.
    Oversized,
    /// Streams output or data without end.
    Endless,
    /// Announces more bytes than it sends, then hangs up.
    WrongLength,
    /// Answers with a message that is not JSON.
    Garbage,
    /// Sends data whose digest (at its end) does not match it, then a
    /// well-formed answer: damaged data is never used, however it ends.
    /// Uploads it refuses as damaged, every time.
    Damaged,
    /// Answers every request with a well-formed answer to another one.
    Unexpected,
}

const MODES: [Mode; 8] = [
    Mode::Silent,
    Mode::NeverGreets,
    Mode::Oversized,
    Mode::Endless,
    Mode::WrongLength,
    Mode::Garbage,
    Mode::Damaged,
    Mode::Unexpected,
];

/// Uploads refused as damaged so far (each one the host sent).
static UPLOADS_REFUSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

fn read_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > 16 << 20 {
        return None;
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).ok()?;
    let kind = buf.remove(0);
    Some((kind, buf))
}

/// Holds a connection open, reading (and dropping) whatever comes, until the
/// host hangs up.
fn hold(mut s: UnixStream) {
    let mut sink = [0u8; 65536];
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

fn serve(mut s: UnixStream, mode: Mode) {
    if mode == Mode::NeverGreets {
        return hold(s);
    }
    let hello = serde_json::json!({
        "protocol_version": pyro_protocol::PROTOCOL_VERSION,
        "agent_version": "hostile",
        "mode": "host_compat",
        "capabilities": [],
        "uptime_ms": 1,
    });
    if s.write_all(&frame(0, hello.to_string().as_bytes()))
        .is_err()
    {
        return;
    }
    let Some((_, envelope)) = read_frame(&mut s) else {
        return;
    };
    let op = serde_json::from_slice::<serde_json::Value>(&envelope)
        .ok()
        .and_then(|v| v["request"]["op"].as_str().map(str::to_owned))
        .unwrap_or_default();
    // Requests that send data first: take it, then misbehave.
    let reader = s.try_clone().unwrap();
    std::thread::spawn(move || hold(reader));
    match mode {
        Mode::Silent => std::thread::sleep(Duration::from_secs(3600)),
        Mode::Oversized => {
            let _ = s.write_all(&0xFFFF_FFF0u32.to_be_bytes());
            std::thread::sleep(Duration::from_secs(3600));
        }
        Mode::Endless => {
            // Output where output is asked for, data elsewhere.
            let output = ["exec", "job_read", "shell_read", "service_logs"];
            let kind = if output.contains(&op.as_str()) { 1 } else { 5 };
            let chunk = frame(kind, &vec![b'x'; 64 << 10]);
            while s.write_all(&chunk).is_ok() {}
        }
        Mode::WrongLength => {
            let _ = s.write_all(&1000u32.to_be_bytes());
            let _ = s.write_all(&[0, b'{', b'"']);
        }
        Mode::Garbage => {
            let _ = s.write_all(&frame(0, b"\xff\xfenot json at all"));
            std::thread::sleep(Duration::from_secs(3600));
        }
        Mode::Damaged if ["write_file", "extract_archive"].contains(&op.as_str()) => {
            UPLOADS_REFUSED.fetch_add(1, Ordering::SeqCst);
            let answer = serde_json::json!({"result": "error", "kind": "damaged",
                "message": "the upload arrived damaged; send it again"});
            let _ = s.write_all(&frame(0, answer.to_string().as_bytes()));
            std::thread::sleep(Duration::from_secs(3600));
        }
        Mode::Damaged => {
            let answer = serde_json::json!({"result": "file_read", "size": 1, "truncated": false, "mode": 420});
            let _ = s.write_all(&frame(5, b"x"));
            let _ = s.write_all(&frame(6, "0".repeat(64).as_bytes()));
            let _ = s.write_all(&frame(0, answer.to_string().as_bytes()));
            std::thread::sleep(Duration::from_secs(3600));
        }
        Mode::Unexpected => {
            let answer = serde_json::json!({"result": "pong", "uptime_ms": 1});
            let _ = s.write_all(&frame(0, answer.to_string().as_bytes()));
            std::thread::sleep(Duration::from_secs(3600));
        }
        Mode::NeverGreets => {}
    }
}

/// Runs `cmd` to its end: (exit status success, wall time, peak RSS MiB).
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also reports its resource use"
)]
fn measure(cmd: &mut Command) -> (bool, Duration, f64) {
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn pyro");
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `pid` is our child, not yet waited for; both out-pointers are
    // valid for wait4 to fill.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(rc, pid);
    // SAFETY: wait4 succeeded, so `usage` is initialised.
    let usage = unsafe { usage.assume_init() };
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (success, start.elapsed(), usage.ru_maxrss as f64 / 1024.0)
}

fn vm_record(home: &Path, id: &str) -> serde_json::Value {
    let ws: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.join("workspaces").join(id).join("workspace.json")).unwrap(),
    )
    .unwrap();
    let vm = ws["vm_id"].as_str().unwrap();
    serde_json::from_slice(&std::fs::read(home.join("vms").join(vm).join("vm.json")).unwrap())
        .unwrap()
}

#[test]
fn every_command_fails_cleanly_against_a_hostile_agent() {
    require_debian12();
    let home = Home::new();
    let ws = |args: &[&str]| {
        home.cmd()
            .arg("workspace")
            .args(args)
            .env("PYRO_BACKEND", "host-compat")
            .output()
            .unwrap()
    };
    let id = stdout(ok(&ws(&["create", "debian:12", "--id-only"])))
        .trim()
        .to_owned();
    // A shell and a service the commands below ask about.
    let shell = json(ok(&ws(&["shell", "open", &id, "--json"])))["shell_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&ws(&[
        "service", "start", &id, "web", "--json", "--", "sleep", "600",
    ]));
    // Freeze the real agent (it stays alive, so the workspace stays
    // started) and take over its socket.
    let rec = vm_record(home.path(), &id);
    let pid = rec["process"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: plain kill(2) on the workspace's agent process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let sock = PathBuf::from(rec["agent_socket"].as_str().unwrap());
    std::fs::remove_file(&sock).unwrap();
    let listener = UnixListener::bind(&sock).unwrap();
    let mode = Arc::new(AtomicU8::new(Mode::Silent as u8));
    {
        let mode = mode.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let m = MODES[usize::from(mode.load(Ordering::SeqCst))];
                std::thread::spawn(move || serve(s, m));
            }
        });
    }
    let src = home.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), "a\n").unwrap();
    let patch = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+b\n";
    let commands: Vec<Vec<String>> = [
        vec!["exec", &id, "--", "true"],
        vec!["exec", &id, "--wait-seconds", "1", "--", "true"],
        vec!["file", "list", &id, "--recursive"],
        vec!["file", "read", &id, "a.txt"],
        vec!["file", "write", &id, "b.txt", "--text", "b"],
        vec!["diff", &id],
        vec!["sync", "push", &id, src.to_str().unwrap()],
        vec!["patch", "apply", &id, "--patch", patch],
        vec!["shell", "read", &id, &shell],
        vec!["shell", "write", &id, &shell, "--input", "ls"],
        vec!["shell", "signal", &id, &shell],
        vec!["shell", "close", &id, &shell],
        vec!["service", "list", &id],
        vec!["service", "status", &id, "web"],
        vec!["service", "logs", &id, "web"],
        vec!["service", "stop", &id, "web"],
        vec!["export", &id, "a.txt", "--output"],
    ]
    .iter()
    .map(|c| c.iter().map(|s| (*s).to_owned()).collect())
    .collect();
    let mut report = Vec::new();
    for (i, m) in MODES.iter().enumerate() {
        mode.store(*m as u8, Ordering::SeqCst);
        for (j, c) in commands.iter().enumerate() {
            let mut c = c.clone();
            if c[0] == "export" {
                c.push(
                    home.path()
                        .join(format!("out-{i}-{j}"))
                        .display()
                        .to_string(),
                );
            }
            match c.iter().position(|a| a == "--") {
                Some(at) => c.insert(at, "--json".into()),
                None => c.push("--json".into()),
            }
            let out = home.path().join("stdout");
            let refused_before = UPLOADS_REFUSED.load(Ordering::SeqCst);
            let (success, took, peak) = measure(
                Command::new(pyro_bin())
                    .env("PYRO_HOME", home.path())
                    .env("PYRO_BACKEND", "host-compat")
                    .env("PYRO_AGENT_DEADLINE_SECONDS", DEADLINE_S.to_string())
                    .env("NO_COLOR", "1")
                    .arg("workspace")
                    .args(&c)
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&out).unwrap())
                    .stderr(Stdio::null()),
            );
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            let kind = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["kind"].as_str().map(str::to_owned))
                .unwrap_or_default();
            report.push(format!(
                "{m:?} {}: success={success} {:.1} s {peak:.0} MiB kind={kind}",
                c[..2].join(" "),
                took.as_secs_f64()
            ));
            assert!(!success, "{m:?} {c:?} succeeded:\n{}", report.join("\n"));
            let upload = ["file write", "sync push"].contains(&c[..2].join(" ").as_str());
            if *m == Mode::Damaged && upload {
                // A refused upload is sent again, twice, then reported as
                // damaged (not as a lost connection).
                assert_eq!(
                    UPLOADS_REFUSED.load(Ordering::SeqCst) - refused_before,
                    3,
                    "{c:?}"
                );
                assert_eq!(kind, "agent", "{text}");
                assert!(text.contains("arrived damaged"), "{text}");
            } else {
                assert!(
                    ["agent_transport", "too_large"].contains(&kind.as_str()),
                    "{m:?} {c:?} gave no typed error: {text}\n{}",
                    report.join("\n")
                );
            }
            if *m == Mode::Damaged && c[..2] == ["file", "read"] {
                assert!(text.contains("arrived damaged 3 times"), "{text}");
            }
            assert!(
                took < Duration::from_secs(DEADLINE_S) + SLACK,
                "{m:?} {c:?} took {took:?}\n{}",
                report.join("\n")
            );
            assert!(
                peak < MEMORY_BOUND_MIB,
                "{m:?} {c:?} used {peak:.0} MiB\n{}",
                report.join("\n")
            );
        }
    }
    // Nothing was half-written on the host, and the workspace still says
    // what it is.
    for i in 0..MODES.len() {
        let out = home.path().join(format!("out-{i}-{}", commands.len() - 1));
        assert!(!out.exists(), "a failed export left {}", out.display());
    }
    let status = json(ok(&ws(&["status", &id, "--json"])));
    assert_eq!(status["workspace_id"], id.as_str());
    // SAFETY: plain kill(2); the frozen agent goes with the workspace.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    drop(std::fs::remove_file(&sock));
    ok(&ws(&["delete", &id]));
}

//! A private network for guest networking tests: pyro runs in a namespace
//! ("host") whose only uplink is a veth to the test's "internet" namespace.
//! The internet owns a public-looking test server (203.0.113.10, named
//! `git.test`), a second server (203.0.113.11, `other.test`), the metadata
//! address 169.254.169.254 and an RFC 1918 address (10.77.0.5,
//! `db.internal`). Every guest packet can only end up in namespaces the
//! test owns; packets that reach the forbidden addresses are counted there
//! ([`Lab::trapped`]), so a policy that let one through fails the test.
//!
//! Every pyro command runs through `nsenter` into one anchor process's
//! network and mount namespaces: the anchor was started by `ip netns exec`,
//! which bind-mounts the lab's `hosts` file (the test DNS zone the host
//! resolves names from) over `/etc/hosts`, and namespaces pyro creates are
//! visible to every later command.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The public test server.
pub const SERVER: &str = "203.0.113.10";
/// The second public address (not allowed unless a test allows it).
pub const OTHER: &str = "203.0.113.11";
/// The metadata address.
pub const METADATA: &str = "169.254.169.254";
/// An RFC 1918 address.
pub const PRIVATE: &str = "10.77.0.5";
/// The host namespace's own address.
pub const HOST_ADDR: &str = "192.0.2.1";

pub struct Lab {
    pub host_ns: String,
    pub inet_ns: String,
    anchor: Child,
    children: Vec<Child>,
    etc: PathBuf,
    pub git_root: tempfile::TempDir,
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn sh_in(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all);
}

impl Lab {
    /// Builds the lab (root only). `tag` keeps parallel labs apart.
    pub fn new(tag: &str) -> Self {
        let suffix = format!("{tag}{}", std::process::id() % 100_000);
        let (h, i) = (format!("plh-{suffix}"), format!("pli-{suffix}"));
        let (vh, vi) = (format!("vh{suffix}"), format!("vi{suffix}"));
        for ns in [&h, &i] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "link", "add", &vh, "type", "veth", "peer", "name", &vi,
        ]);
        sh(&["ip", "link", "set", &vh, "netns", &h]);
        sh(&["ip", "link", "set", &vi, "netns", &i]);
        sh(&["ip", "-n", &h, "addr", "add", "192.0.2.1/24", "dev", &vh]);
        sh(&["ip", "-n", &i, "addr", "add", "192.0.2.2/24", "dev", &vi]);
        sh(&["ip", "-n", &h, "link", "set", &vh, "up"]);
        sh(&["ip", "-n", &i, "link", "set", &vi, "up"]);
        sh(&[
            "ip",
            "-n",
            &h,
            "route",
            "add",
            "default",
            "via",
            "192.0.2.2",
        ]);
        for a in [SERVER, OTHER, METADATA, PRIVATE] {
            sh(&[
                "ip",
                "-n",
                &i,
                "addr",
                "add",
                &format!("{a}/32"),
                "dev",
                "lo",
            ]);
        }
        sh_in(&h, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // Anything reaching a forbidden address is counted.
        let trap = format!(
            "table inet trap {{\n chain trap_in {{\n  type filter hook input priority 0; policy accept;\n  ip daddr {METADATA} counter\n  ip daddr {PRIVATE} counter\n  ip daddr {OTHER} counter\n }}\n}}\n"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &i, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin
            .take()
            .unwrap()
            .write_all(trap.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success());
        // The host's view of names: the test zone, and a resolver that
        // answers nothing (so no query leaves the lab).
        let etc = PathBuf::from("/etc/netns").join(&h);
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("hosts"),
            format!(
                "127.0.0.1 localhost\n{SERVER} git.test\n{OTHER} other.test\n{PRIVATE} db.internal\n"
            ),
        )
        .unwrap();
        std::fs::write(etc.join("resolv.conf"), "nameserver 192.0.2.2\n").unwrap();
        let anchor = Command::new("ip")
            .args(["netns", "exec", &h, "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let lab = Lab {
            host_ns: h,
            inet_ns: i,
            anchor,
            children: Vec::new(),
            etc,
            git_root: tempfile::tempdir().unwrap(),
        };
        // `ip netns exec` has entered the namespace once /etc/hosts is ours.
        let until = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(format!("/proc/{}/root/etc/hosts", lab.anchor.id()))
            .is_ok_and(|h| h.contains("git.test"))
        {
            assert!(Instant::now() < until, "the anchor did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        lab
    }

    /// The process whose namespaces pyro runs in.
    pub fn anchor_pid(&self) -> u32 {
        self.anchor.id()
    }

    /// `pyro ARGS` inside the lab's host namespace.
    pub fn pyro(&self, home: &super::Home) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.anchor.id().to_string())
            .args(["--net", "--mount", "--"])
            .arg(super::pyro_bin())
            .env("PYRO_HOME", home.path())
            .env("NO_COLOR", "1")
            .env_remove("PYRO_BACKEND")
            .env_remove("PYRO_LOG");
        c
    }

    /// `pyro workspace exec ID -- bash -c SCRIPT` inside the lab (the
    /// guest's `sh` has no `/dev/tcp`).
    pub fn bash(&self, home: &super::Home, id: &str, script: &str) -> Command {
        let mut c = self.pyro(home);
        c.args([
            "workspace",
            "exec",
            id,
            "--timeout-seconds",
            "600",
            "--",
            "bash",
            "-c",
        ])
        .arg(script);
        c
    }

    /// Runs `f` on a thread inside the internet namespace.
    pub fn in_inet<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.in_ns(&self.inet_ns.clone(), f)
    }

    /// Runs `f` on a thread inside namespace `ns`.
    pub fn in_ns<T: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// A TCP server at `addr` in the internet that greets each connection
    /// with `hello from ADDR` and closes it.
    pub fn greeter(&self, addr: &str) {
        self.greeter_in(&self.inet_ns.clone(), addr);
    }

    /// [`Self::greeter`] in namespace `ns`.
    pub fn greeter_in(&self, ns: &str, addr: &str) {
        let a: SocketAddr = addr.parse().unwrap();
        let l = self.in_ns(ns, move || TcpListener::bind(a).unwrap());
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let mut c = c;
                let _ = c.write_all(format!("hello from {a}\n").as_bytes());
            }
        });
    }

    /// A TCP server at `addr` that reads everything sent; returns, per
    /// connection once it ends, the bytes and the seconds from the first
    /// byte to the last.
    pub fn sink(&self, addr: &str) -> std::sync::Arc<std::sync::Mutex<Vec<(u64, f64)>>> {
        let a: SocketAddr = addr.parse().unwrap();
        let l = self.in_inet(move || TcpListener::bind(a).unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut c = c;
                    let mut buf = vec![0u8; 1 << 16];
                    let (mut n, mut first, mut last) = (0u64, None, Instant::now());
                    while let Ok(k) = c.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        first.get_or_insert_with(Instant::now);
                        last = Instant::now();
                        n += k as u64;
                    }
                    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
                    seen.lock().unwrap().push((n, secs));
                });
            }
        });
        out
    }

    /// A Git server (git daemon) for `repo` at SERVER:9418.
    pub fn git_server(&mut self) -> PathBuf {
        let repo = self.git_root.path().join("repo");
        let git = |args: &[&str]| {
            let o = Command::new("git")
                .args(args)
                .current_dir(&repo)
                .output()
                .unwrap();
            assert!(o.status.success(), "git {args:?}: {o:?}");
        };
        std::fs::create_dir_all(&repo).unwrap();
        git(&["init", "-q"]);
        std::fs::write(repo.join("README"), "hello from the lab's git server\n").unwrap();
        git(&["add", "README"]);
        git(&[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "init",
        ]);
        let d = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.inet_ns,
                "git",
                "daemon",
                "--export-all",
                "--reuseaddr",
            ])
            .arg(format!("--base-path={}", self.git_root.path().display()))
            .args([&format!("--listen={SERVER}"), "--port=9418"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(d);
        let until = Instant::now() + Duration::from_secs(10);
        while !self.in_inet(|| std::net::TcpStream::connect((SERVER, 9418)).is_ok()) {
            assert!(Instant::now() < until, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        repo
    }

    /// Packets that reached each forbidden address: (address, packets).
    pub fn trapped(&self) -> Vec<(String, u64)> {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.inet_ns,
                "nft",
                "-j",
                "list",
                "table",
                "inet",
                "trap",
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut out = Vec::new();
        for e in v["nftables"].as_array().unwrap() {
            let Some(rule) = e.get("rule") else { continue };
            let expr = rule["expr"].as_array().unwrap();
            let addr = expr[0]["match"]["right"].as_str().unwrap_or("?").to_owned();
            let packets = expr[1]["counter"]["packets"].as_u64().unwrap_or(0);
            out.push((addr, packets));
        }
        out
    }

    /// What of pyro's network plumbing the host namespace (and the
    /// anchor's view of `/run/netns`) still holds.
    pub fn plumbing_left(&self) -> Vec<String> {
        let run = |args: &[&str]| {
            let o = Command::new("nsenter")
                .arg("-t")
                .arg(self.anchor.id().to_string())
                .args(["--net", "--mount", "--"])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let mut left = Vec::new();
        left.extend(
            run(&["ls", "/run/netns"])
                .split_whitespace()
                .filter(|n| n.starts_with("pyro-"))
                .map(|n| format!("namespace {n}")),
        );
        left.extend(
            run(&["ip", "-o", "link", "show"])
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .filter(|n| n.starts_with("pv"))
                .map(|n| format!("link {n}")),
        );
        left.extend(
            run(&["nft", "list", "tables"])
                .lines()
                .filter(|l| l.contains("pyro_"))
                .map(|l| l.to_owned()),
        );
        left
    }

    /// Network daemons and relays still running from `home`.
    pub fn helpers_left(home: &Path) -> Vec<u32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("__pyro-") && cmd.contains(&*home.to_string_lossy()) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self
            .children
            .iter_mut()
            .chain(std::iter::once(&mut self.anchor))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.host_ns, &self.inet_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// `cmd`'s output, asserting success.
pub fn run_ok(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "failed ({:?}): {}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    o
}

/// The milliseconds between two `$EPOCHREALTIME` values.
pub fn elapsed_ms(start: &str, end: &str) -> f64 {
    (end.trim().parse::<f64>().unwrap() - start.trim().parse::<f64>().unwrap()) * 1000.0
}

pub fn path_exists_in(lab: &Lab, p: &Path) -> bool {
    Command::new("nsenter")
        .arg("-t")
        .arg(lab.anchor.id().to_string())
        .args(["--mount", "--", "test", "-e"])
        .arg(p)
        .status()
        .unwrap()
        .success()
}

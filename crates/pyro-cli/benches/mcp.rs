//! MCP server overhead, printed as figures (run with `make bench`):
//!
//! - start: spawning `pyro mcp serve` until the first `tools/list` answer;
//! - dispatch: a `tools/call` of a cheap tool (`workspace_list` on an empty
//!   state directory) against the floor of a protocol `ping` on the same
//!   connection, p50/p95 and their ratio.
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: i64,
}

impl Server {
    fn start(home: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pyro"))
            .args(["mcp", "serve"])
            .env("PYRO_HOME", home)
            .env("PYRO_BACKEND", "host-compat")
            .current_dir(home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pyro mcp serve");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            next: 1,
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )
        .unwrap();
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "server closed"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    fn initialize(&mut self) {
        self.request("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}));
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.95))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let home = tempfile::tempdir().unwrap();

    let mut starts = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let mut s = Server::start(home.path());
        s.initialize();
        let tools = s.request("tools/list", json!({}));
        assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 16);
        starts.push(t.elapsed());
    }
    let (p50, p95) = summary(starts);
    println!(
        "mcp start -> first tools/list answer: p50 {:.1} ms, p95 {:.1} ms",
        us(p50) / 1e3,
        us(p95) / 1e3
    );

    let mut s = Server::start(home.path());
    s.initialize();
    for _ in 0..50 {
        s.request("ping", json!({}));
        s.request(
            "tools/call",
            json!({"name": "workspace_list", "arguments": {}}),
        );
    }
    let (mut ping, mut call) = (Vec::new(), Vec::new());
    for _ in 0..500 {
        let t = Instant::now();
        s.request("ping", json!({}));
        ping.push(t.elapsed());
        let t = Instant::now();
        let r = s.request(
            "tools/call",
            json!({"name": "workspace_list", "arguments": {}}),
        );
        call.push(t.elapsed());
        assert_eq!(r["result"]["structuredContent"]["count"], 0);
    }
    let (f50, f95) = summary(ping);
    let (c50, c95) = summary(call);
    println!(
        "floor: ping round trip: p50 {:.0} us, p95 {:.0} us",
        us(f50),
        us(f95)
    );
    println!(
        "tools/call workspace_list: p50 {:.0} us, p95 {:.0} us",
        us(c50),
        us(c95)
    );
    println!(
        "dispatch overhead over the floor: p50 {:.0} us ({:.1}x), p95 {:.0} us ({:.1}x)",
        us(c50) - us(f50),
        us(c50) / us(f50),
        us(c95) - us(f95),
        us(c95) / us(f95)
    );
}

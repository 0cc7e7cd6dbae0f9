//! `pyro demo --network`: egress to a server the demo runs on the host
//! side of the guest's link, allowed by the policy, and a connection to the
//! cloud metadata address, refused at once and logged.

use std::time::Duration;

use pyro_net::{Cidr, CidrRule, HostRule, Mode, Policy};
use pyro_protocol::{Command, ExecRequest};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::CoreError;
use crate::sandbox::{Capture, NetworkSpec, Sandbox};

/// The greeting of the demo's server.
pub const GREETING: &str = "hello from the pyro demo server";
/// The forbidden address the demo tries.
pub const FORBIDDEN: &str = "169.254.169.254:80";

/// What the network part of the demo saw.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkDemo {
    /// The policy the guest ran under at the end.
    pub policy: Policy,
    /// The demo server (on the host side of the guest's link).
    pub server: String,
    /// What the guest read from it.
    pub egress_answer: String,
    /// How long connecting and reading took in the guest.
    pub egress_ms: f64,
    /// The forbidden destination.
    pub denied: String,
    /// Whether the guest's connection to it failed.
    pub denied_refused: bool,
    /// How long the refusal took in the guest.
    pub denied_ms: f64,
    /// The rule the denial log gives.
    pub denied_rule: Option<String>,
}

/// The network the demo's guest starts with: egress allowed only to a
/// name that cannot exist (`.invalid`), so nothing is reachable until the
/// demo's server is allowed.
pub fn spec() -> NetworkSpec {
    NetworkSpec {
        policy: Policy {
            mode: Mode::Egress,
            allow_hosts: vec![HostRule {
                name: "nothing-yet.invalid".into(),
                port: None,
            }],
            allow_cidrs: Vec::new(),
        },
        log_dir: None,
        local_only: true,
    }
}

fn ms(start: &str, end: &str) -> Option<f64> {
    Some((end.parse::<f64>().ok()? - start.parse::<f64>().ok()?) * 1000.0)
}

/// Serves the greeting on the host side of the guest's link, allows just
/// that, and has the guest connect to it and to the forbidden address.
pub async fn run(sandbox: &mut Sandbox) -> Result<NetworkDemo, CoreError> {
    let host = sandbox
        .record()
        .network
        .as_ref()
        .and_then(|n| n.plumbing.as_ref())
        .map(|p| p.host_addr)
        .ok_or_else(|| CoreError::invalid("the demo's guest has no network"))?;
    // Bound to the link's host address only: nothing else can reach it.
    let listener = tokio::net::TcpListener::bind((host, 0))
        .await
        .map_err(|e| CoreError::io(format!("listening on {host}"), e))?;
    let port = listener
        .local_addr()
        .map_err(|e| CoreError::io("reading the demo server's port", e))?
        .port();
    let server = tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let _ = c.write_all(format!("{GREETING}\n").as_bytes()).await;
        }
    });
    let policy = Policy {
        mode: Mode::Egress,
        allow_hosts: Vec::new(),
        allow_cidrs: vec![CidrRule {
            cidr: Cidr::new_unchecked(host, 32),
            port: Some(port),
        }],
    };
    sandbox.set_network_policy(&policy).await?;
    let (fa, fp) = FORBIDDEN.split_once(':').unwrap_or((FORBIDDEN, "80"));
    let script = format!(
        "s=$EPOCHREALTIME; read -r line < /dev/tcp/{host}/{port}; e=$EPOCHREALTIME; \
         echo \"egress $s $e $line\"\n\
         s=$EPOCHREALTIME; : 3<>/dev/tcp/{fa}/{fp} 2>/dev/null; rc=$?; e=$EPOCHREALTIME; \
         echo \"denied $rc $s $e\""
    );
    let mut out = Capture::default();
    let req = ExecRequest {
        command: Command::Argv {
            argv: vec!["bash".into(), "-c".into(), script],
        },
        cwd: None,
        env: Default::default(),
        timeout_ms: 120_000,
        output_limit_bytes: 16 << 10,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    };
    let outcome = sandbox.exec(req, &mut out).await;
    server.abort();
    outcome?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |tag: &str| -> Vec<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let egress = line("egress ");
    let denied = line("denied ");
    // The daemon logs the denial as the kernel reports it.
    let mut rule = None;
    for _ in 0..20 {
        let (log, _) = sandbox.denials(20);
        rule = log
            .iter()
            .rev()
            .find(|d| d.destination.map(|a| a.to_string()).as_deref() == Some(fa))
            .map(|d| d.rule.clone());
        if rule.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(NetworkDemo {
        policy,
        server: format!("{host}:{port}"),
        egress_answer: egress.get(2..).map(|w| w.join(" ")).unwrap_or_default(),
        egress_ms: egress
            .first()
            .zip(egress.get(1))
            .and_then(|(s, e)| ms(s, e))
            .unwrap_or(f64::NAN),
        denied: FORBIDDEN.into(),
        denied_refused: denied.first().is_some_and(|rc| rc != "0"),
        denied_ms: denied
            .get(1)
            .zip(denied.get(2))
            .and_then(|(s, e)| ms(s, e))
            .unwrap_or(f64::NAN),
        denied_rule: rule,
    })
}

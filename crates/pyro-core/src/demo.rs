//! `pyro demo`: the one-shot lifecycle (create, start, exec, delete) on a
//! real guest, step by step with timings.

use std::time::Duration;

use pyro_env::Installed;
use pyro_protocol::{Command, ExecRequest};
use serde::Serialize;
use tokio::time::Instant;

use crate::records::Owner;
use crate::sandbox::{Capture, Sandbox, SandboxSpec, default_boot_timeout};
use crate::{BackendKind, CoreError, ExecutionMode, Paths};

/// The command the demo runs.
pub const DEMO_COMMAND: [&str; 2] = ["git", "--version"];

/// One finished step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `create`, `start`, `exec` or `delete`.
    pub step: String,
    /// How long it took.
    pub duration_ms: u64,
    /// What happened.
    pub detail: String,
}

/// The whole demo.
#[derive(Debug, Clone, Serialize)]
pub struct DemoResult {
    /// Environment.
    pub environment: String,
    /// Sandbox id.
    pub vm_id: String,
    /// How the command ran.
    pub execution_mode: ExecutionMode,
    /// The command.
    pub command: String,
    /// Its exit code.
    pub exit_code: i32,
    /// Its output.
    pub stdout: String,
    /// Its error output.
    pub stderr: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Total wall time.
    pub total_ms: u64,
    /// The network part (`--network`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::demo_network::NetworkDemo>,
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs the lifecycle, reporting each step to `on_step` as it finishes.
pub async fn run(
    paths: &Paths,
    env: &Installed,
    backend: BackendKind,
    boot_timeout: Option<Duration>,
    network: bool,
    on_step: &mut (dyn FnMut(&Step) + Send),
) -> Result<DemoResult, CoreError> {
    let total = Instant::now();
    let net_spec = network.then(crate::demo_network::spec);
    if let Some(n) = &net_spec {
        crate::network::check_backend(&n.policy, backend, false)?;
    }
    let spec = SandboxSpec {
        env,
        backend,
        vcpu_count: crate::limits::VCPUS.default,
        mem_mib: crate::limits::MEM_MIB.default,
        disk_mib: crate::limits::DISK_MIB.default,
        idle_seconds: 600,
        boot_timeout: boot_timeout.unwrap_or_else(default_boot_timeout),
        owner: Owner::this_process(),
        hostname: crate::sandbox::hostname_for(None),
        upper: None,
        boot: crate::sandbox::BootPref::Template,
        progress: crate::sandbox::ProgressRef::default(),
        network: net_spec,
    };
    let mut steps = Vec::new();
    let mut push = |steps: &mut Vec<Step>, name: &str, t: Instant, detail: String| {
        let s = Step {
            step: name.into(),
            duration_ms: ms(t),
            detail,
        };
        on_step(&s);
        steps.push(s);
    };

    let t = Instant::now();
    let mut sandbox = Sandbox::create(paths, &spec).await?;
    let id = sandbox.id().to_owned();
    push(
        &mut steps,
        "create",
        t,
        format!("sandbox {id} for {} ({})", env.name, backend.as_str()),
    );

    let t = Instant::now();
    sandbox.boot(&spec).await?;
    push(
        &mut steps,
        "start",
        t,
        format!(
            "agent ready ({}; {})",
            sandbox.mode().as_str(),
            sandbox
                .boot_info()
                .map(|b| b.boot_reason.as_str())
                .unwrap_or("")
        ),
    );

    let t = Instant::now();
    let command = Command::Argv {
        argv: DEMO_COMMAND.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut out = Capture::default();
    let req = ExecRequest {
        command: command.clone(),
        cwd: None,
        env: Default::default(),
        timeout_ms: 60_000,
        output_limit_bytes: 64 << 10,
        stdin: false,
        limits: Default::default(),
        run_as: None,
    };
    let outcome = sandbox.exec(req, &mut out).await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    push(
        &mut steps,
        "exec",
        t,
        format!(
            "{} -> exit {}: {}",
            command.display(),
            outcome.exit_code,
            stdout.trim()
        ),
    );

    let mut net = None;
    if network {
        let t = Instant::now();
        let n = crate::demo_network::run(&mut sandbox).await?;
        push(
            &mut steps,
            "egress",
            t,
            format!(
                "guest -> {} (the demo's server on the host side of the guest's link, the one \
                 address the policy allows): {} in {:.0} ms",
                n.server,
                if n.egress_answer.is_empty() {
                    "no answer".to_owned()
                } else {
                    format!("answered {:?}", n.egress_answer)
                },
                n.egress_ms
            ),
        );
        let t = Instant::now();
        push(
            &mut steps,
            "denial",
            t,
            format!(
                "guest -> {} (the cloud metadata address): {} in {:.0} ms{}",
                n.denied,
                if n.denied_refused {
                    "refused"
                } else {
                    "NOT refused"
                },
                n.denied_ms,
                n.denied_rule
                    .as_deref()
                    .map(|r| format!(", logged under rule {r}"))
                    .unwrap_or_else(|| ", but not logged".into())
            ),
        );
        net = Some(n);
    }

    let t = Instant::now();
    let mode = sandbox.mode();
    sandbox.close().await?;
    push(
        &mut steps,
        "delete",
        t,
        if network {
            "VM, jail, cgroups, disk, namespace and rules removed".into()
        } else {
            "VM, jail, cgroups and disk removed".into()
        },
    );

    Ok(DemoResult {
        environment: env.name.clone(),
        vm_id: id,
        execution_mode: mode,
        command: command.display(),
        exit_code: outcome.exit_code,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        steps,
        total_ms: ms(total),
        network: net,
    })
}

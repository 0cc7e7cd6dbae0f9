//! Long-running services in a workspace (`workspace-full`).

#[allow(unused_imports)]
use super::*;
use pyro_core::limits;

/// Arguments of `service_start`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStartArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The service's name: a letter or digit, then letters, digits, `.`, `_` or `-` (at most 64).
    pub service_name: String,
    /// What to run: a shell string (run by `sh -c`) or an argv array. It runs until stopped; do not background it with `&`.
    pub command: CommandArg,
    /// Working directory; relative paths are under /workspace (the default).
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: Option<BTreeMap<String, String>>,
    /// Ready once this file exists (relative to cwd). Give at most one ready_* check; none means ready once started.
    pub ready_file: Option<String>,
    /// Ready once HOST:PORT in the guest accepts a TCP connection (":8080" is localhost).
    pub ready_tcp: Option<String>,
    /// Ready once a GET of this http:// URL in the guest answers 2xx or 3xx.
    pub ready_http: Option<String>,
    /// Ready once this shell command exits 0 (run in cwd).
    pub ready_command: Option<String>,
    /// How long it may take to become ready; then its processes are killed and it is failed. The call waits this long (with progress notifications).
    #[serde(default = "default_ready_timeout")]
    #[schemars(range(min = limits::READY_TIMEOUT_SECONDS.min, max = limits::READY_TIMEOUT_SECONDS.max))]
    pub ready_timeout_seconds: u64,
    /// Time between readiness checks.
    #[serde(default = "default_ready_interval")]
    #[schemars(range(min = limits::READY_INTERVAL_MS.min, max = limits::READY_INTERVAL_MS.max))]
    pub ready_interval_ms: u64,
    /// "on-start": start it again, with its readiness check, whenever the workspace starts (after workspace_stop, its idle power-off, or workspace_reset).
    #[serde(default)]
    pub restart: workspace::Restart,
    /// Keep the VM from its idle power-off while the service runs (by default a running service does not).
    #[serde(default)]
    pub keep_alive: bool,
    /// Guest ports to publish on the host's 127.0.0.1 while the service runs, as GUEST_PORT or HOST_PORT:GUEST_PORT (the result gives each host port). Needs the network policy egress+published-ports.
    #[serde(default)]
    pub published_ports: Vec<String>,
    /// Secrets of the workspace to give the service as environment variables, as {"SECRET": "VARIABLE"}. Its logs then stay in the guest's memory (never on its disk), and every read holds [redacted:SECRET] instead of a value.
    pub secret_env: Option<BTreeMap<String, String>>,
}

fn default_ready_timeout() -> u64 {
    limits::READY_TIMEOUT_SECONDS.default
}

fn default_ready_interval() -> u64 {
    limits::READY_INTERVAL_MS.default
}

fn default_grace() -> u64 {
    limits::STOP_GRACE_SECONDS.default
}

fn default_tail() -> u64 {
    limits::TAIL_LINES.default
}

fn default_log_bytes() -> u64 {
    limits::LOG_BYTES.default
}

/// Arguments naming one service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceIdArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The service's name (as given to service_start).
    pub service_name: String,
}

/// Arguments of `service_stop`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStopArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The service's name (as given to service_start).
    pub service_name: String,
    /// Seconds between TERM and KILL.
    #[serde(default = "default_grace")]
    #[schemars(range(min = limits::STOP_GRACE_SECONDS.min, max = limits::STOP_GRACE_SECONDS.max))]
    pub grace_seconds: u64,
}

/// Arguments of `service_logs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogsArgs {
    /// The workspace_id returned by workspace_create.
    pub workspace_id: String,
    /// The service's name (as given to service_start).
    pub service_name: String,
    /// Lines of each stream from its end (unless stdout_from or stderr_from is given).
    #[serde(default = "default_tail")]
    #[schemars(range(min = limits::TAIL_LINES.min, max = limits::TAIL_LINES.max))]
    pub tail_lines: u64,
    /// Read stdout from this offset (a previous read's stdout_position.next) instead of the tail.
    pub stdout_from: Option<u64>,
    /// Read stderr from this offset (a previous read's stderr_position.next) instead of the tail.
    pub stderr_from: Option<u64>,
    /// Most bytes returned per stream.
    #[serde(default = "default_log_bytes")]
    #[schemars(range(min = limits::LOG_BYTES.min, max = limits::LOG_BYTES.max))]
    pub max_bytes: u64,
}

#[tool_router(router = services_router, vis = "pub(super)")]
impl PyroServer {
    /// Start a service.
    #[tool(
        description = "Start a named long-running process (dev server, database, watcher) in a started workspace, in its own process group, and wait until it is ready by at most one of ready_file, ready_tcp, ready_http or ready_command (state: ready; failed with reason exited_before_ready or readiness_timeout). Read its output with service_logs, end it with service_stop. A workspace stop or reset ends it unless restart is on-start.",
        annotations(
            title = "Start a service",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn service_start(
        &self,
        Parameters(a): Parameters<ServiceStartArgs>,
        rc: RequestContext<RoleServer>,
    ) -> Result<Json<workspace::ServiceView>, ToolError> {
        let opts = workspace::ServiceOptions {
            command: a.command.into(),
            cwd: a.cwd,
            env: a.env.unwrap_or_default(),
            readiness: workspace::ReadinessChoice {
                ready_file: a.ready_file,
                ready_tcp: a.ready_tcp,
                ready_http: a.ready_http,
                ready_command: a.ready_command,
            },
            ready_timeout_seconds: a.ready_timeout_seconds,
            ready_interval_ms: a.ready_interval_ms,
            restart: a.restart,
            keep_alive: a.keep_alive,
            publish: a
                .published_ports
                .iter()
                .map(|p| p.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| self.fail(e))?,
            secret_env: secret_env(a.secret_env),
        };
        let phase = Phase::new("starting the service");
        let work =
            self.ctx
                .workspaces
                .service_start(&a.workspace_id, &a.service_name, opts, &phase);
        with_progress(&rc, &phase, Box::pin(work))
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// List services.
    #[tool(
        description = "List a workspace's services with their states (starting, ready, exited, failed, stopped, or ended: its workspace stopped or was reset) and running_count.",
        annotations(
            title = "List services",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn service_list(
        &self,
        Parameters(a): Parameters<IdArgs>,
    ) -> Result<Json<workspace::ServiceListView>, ToolError> {
        self.ctx
            .workspaces
            .service_list(&a.workspace_id)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// One service.
    #[tool(
        description = "Show one service: its state, pid, exit_code, reason, when it became ready, and what its last failed readiness check said.",
        annotations(
            title = "Show a service",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn service_status(
        &self,
        Parameters(a): Parameters<ServiceIdArgs>,
    ) -> Result<Json<workspace::ServiceView>, ToolError> {
        self.ctx
            .workspaces
            .service_status(&a.workspace_id, &a.service_name)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// A service's logs.
    #[tool(
        description = "Read a service's stdout and stderr: the last tail_lines lines of each, or (to follow it) from stdout_from / stderr_from, the previous read's *_position.next. dropped_bytes says what had rotated away (the guest keeps 2 to 4 MiB per stream); truncated says more is kept than was returned.",
        annotations(
            title = "Read a service's logs",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn service_logs(
        &self,
        Parameters(a): Parameters<ServiceLogsArgs>,
    ) -> Result<Json<workspace::ServiceLogsView>, ToolError> {
        let range = workspace::LogsRange::new(a.tail_lines, a.stdout_from, a.stderr_from);
        self.ctx
            .workspaces
            .service_logs(&a.workspace_id, &a.service_name, range, a.max_bytes)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }

    /// Stop a service.
    #[tool(
        description = "Stop a service: TERM to its whole process group, KILL after grace_seconds; returns once none of its processes runs (state: stopped, reason sigterm or sigkill). A stopped service is not started again with the workspace.",
        annotations(
            title = "Stop a service",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn service_stop(
        &self,
        Parameters(a): Parameters<ServiceStopArgs>,
    ) -> Result<Json<workspace::ServiceView>, ToolError> {
        self.ctx
            .workspaces
            .service_stop(&a.workspace_id, &a.service_name, a.grace_seconds)
            .await
            .map(Json)
            .map_err(|e| self.fail(e))
    }
}

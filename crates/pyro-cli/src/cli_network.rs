//! Arguments of guest networking: the allowlist flags of `run` and
//! `workspace create`, and `pyro workspace network ...`.

use clap::{Args, Subcommand};
use pyro_core::limits as L;

/// The policies `--network-policy` takes (core checks the value; this
/// list only feeds the help).
pub const POLICIES: [&str; 3] = ["off", "egress", "egress+published-ports"];

#[derive(Debug, Args)]
pub struct AllowArgs {
    /// Let the guest reach NAME (resolved on the host) on PORT, or on every port; repeatable. Any allowlist entry narrows egress to the allowlists.
    #[arg(long = "allow-host", value_name = "NAME[:PORT]")]
    pub allow_hosts: Vec<String>,
    /// Let the guest reach CIDR on PORT, or on every port, even inside the ranges denied by default (private, link-local, CGNAT; a host address only as a /32); repeatable.
    #[arg(long = "allow-cidr", value_name = "CIDR[:PORT]")]
    pub allow_cidrs: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum WsNetworkCmd {
    /// Replace a workspace's network policy; a running guest's rules change at once, without a reboot.
    Set(WsNetworkSetArgs),
    /// Show the connections and DNS queries the policy refused, newest last.
    Log(WsNetworkLogArgs),
}

#[derive(Debug, Args)]
pub struct WsNetworkSetArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// off (no interface), egress, or egress+published-ports [default: egress with an allowlist, else off].
    #[arg(long, value_name = "POLICY", value_parser = POLICIES)]
    pub network_policy: Option<String>,
    #[command(flatten)]
    pub allow: AllowArgs,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsNetworkLogArgs {
    /// The workspace id.
    pub workspace_id: String,
    /// How many of the newest denials to show.
    #[arg(long, default_value_t = L::NETWORK_LOG_ENTRIES.default)]
    pub limit: usize,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

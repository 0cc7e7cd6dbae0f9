//! `pyro workspace network ...`.

use std::process::ExitCode;

use pyro_core::Paths;
use pyro_core::network::policy_from;
use pyro_core::workspace::{NetworkLogView, NetworkView};

use crate::cli_network::WsNetworkCmd;
use crate::cmd_workspace::ws;
use crate::output::{self, BOLD, Failure};

pub async fn network(paths: &Paths, c: WsNetworkCmd) -> (bool, Result<ExitCode, Failure>) {
    match c {
        WsNetworkCmd::Set(a) => {
            let r = async {
                let policy = policy_from(
                    a.network_policy.as_deref(),
                    &a.allow.allow_hosts,
                    &a.allow.allow_cidrs,
                )?;
                let v = ws(paths).network_set(&a.workspace_id, policy).await?;
                if a.json {
                    output::json(&v);
                } else {
                    print_set(&v);
                }
                Ok(ExitCode::SUCCESS)
            }
            .await;
            (a.json, r)
        }
        WsNetworkCmd::Log(a) => {
            let r = async {
                let v = ws(paths).network_log(&a.workspace_id, a.limit).await?;
                if a.json {
                    output::json(&v);
                } else {
                    print_log(&v);
                }
                Ok(ExitCode::SUCCESS)
            }
            .await;
            (a.json, r)
        }
    }
}

/// One line describing a policy: `egress (allow github.com:22, 10.0.0.0/8)`.
pub fn describe(p: &pyro_core::network::NetworkPolicy) -> String {
    let allow: Vec<String> = p
        .allow_hosts
        .iter()
        .map(ToString::to_string)
        .chain(p.allow_cidrs.iter().map(ToString::to_string))
        .collect();
    if allow.is_empty() {
        p.mode.to_string()
    } else {
        format!("{} (allow {})", p.mode, allow.join(", "))
    }
}

fn print_set(v: &NetworkView) {
    let when = match v.applied.as_str() {
        "now" => "in force now",
        "next_start" => "in force from the next start",
        _ => "in force when the workspace starts",
    };
    output::out(format!(
        "Network of {BOLD}{}{BOLD:#}: {} ({when})",
        v.workspace_id,
        describe(&v.network)
    ));
    if let Some(n) = &v.note {
        output::out(format!("Note: {n}"));
    }
}

fn print_log(v: &NetworkLogView) {
    output::out(format!(
        "Network of {BOLD}{}{BOLD:#}: {}",
        v.workspace_id,
        describe(&v.network)
    ));
    if v.denials.is_empty() {
        output::out("No denials on record.");
    }
    for d in &v.denials {
        let what = match (&d.name, d.destination, d.port) {
            (Some(n), _, _) => format!("DNS query for {n}"),
            (None, Some(a), Some(p)) => format!("{} to {a}:{p}", d.protocol),
            (None, Some(a), None) => format!("{} to {a}", d.protocol),
            (None, None, _) => d.protocol.clone(),
        };
        output::out(format!(
            "{}  {what}  refused by rule {}",
            crate::cmd_workspace::utc(d.time),
            d.rule
        ));
    }
    if v.truncated {
        output::out(format!(
            "({} of {} denials on record shown; pass --limit for more)",
            v.denials.len(),
            v.total
        ));
    }
    if let Some(u) = v.unlogged.filter(|u| *u > 0) {
        output::out(format!(
            "({u} more were refused beyond the log rate and not logged one by one)"
        ));
    }
}

//! A workspace's network policy: changing it (in force at once on a
//! running guest) and reading what it refused.

use pyro_net::Policy;
use serde::Serialize;

use super::*;
use crate::network::Denial;

/// The result of setting a policy.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NetworkView {
    /// Workspace.
    pub workspace_id: String,
    /// The policy now on record.
    pub network: Policy,
    /// When it takes effect: `now` (the running guest's rules changed
    /// without a reboot), `next_start` (the guest has no interface to put
    /// it on until it starts again) or `at_start` (the workspace is
    /// stopped).
    pub applied: String,
    /// What else the change did (published ports closed, an interface kept
    /// until the next start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Denials on record.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NetworkLogView {
    /// Workspace.
    pub workspace_id: String,
    /// The policy on record.
    pub network: Policy,
    /// The newest denials, oldest first.
    pub denials: Vec<Denial>,
    /// How many are on record (the log keeps about the last few thousand).
    pub total: u64,
    /// Denials beyond the log rate that were refused but not logged (the
    /// running guest's count; absent when it is not running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlogged: Option<u64>,
    /// Whether older denials exist than those returned.
    pub truncated: bool,
}

impl Workspaces {
    fn network_log_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join("network")
    }

    /// How many denials a workspace has on record.
    pub(super) fn denial_count(&self, id: &str) -> u64 {
        pyro_net::denials::count(&self.network_log_dir(id))
    }

    /// Sets the workspace's policy; on a running guest that has an
    /// interface, its rules and resolver change at once.
    pub async fn network_set(&self, id: &str, policy: Policy) -> Result<NetworkView, CoreError> {
        policy
            .check()
            .map_err(|e| CoreError::invalid(e.to_string()))?;
        let _lock = record::lock(&self.paths, id).await?;
        let mut rec = self.load_fresh(id).await?;
        crate::network::check_backend(&policy, rec.backend, false)?;
        let before = rec.network.clone();
        let mut note = None;
        let applied = match (&rec.state, &rec.vm_id) {
            (State::Started, Some(vm)) => {
                let mut s = Sandbox::attach(&self.paths, vm)?;
                if s.record().network.is_none() {
                    if policy.mode.has_network() {
                        note = Some(
                            "the running guest was started without a network interface, and \
                             one cannot be added to a running VM: stop and start the workspace \
                             to bring the network up"
                                .to_owned(),
                        );
                    }
                    "next_start"
                } else {
                    s.set_network_policy(&policy).await?;
                    if before.mode == pyro_net::Mode::EgressPublishedPorts
                        && policy.mode != pyro_net::Mode::EgressPublishedPorts
                    {
                        s.unpublish(None).await;
                        note = Some("published ports were closed".to_owned());
                    }
                    if !policy.mode.has_network() {
                        note = Some(
                            "the guest keeps its interface until its next start, but reaches \
                             nothing: every connection and DNS query is refused"
                                .to_owned(),
                        );
                    }
                    "now"
                }
            }
            (State::Started, None) => {
                return Err(CoreError::State(format!("workspace {id} has no VM")));
            }
            _ => "at_start",
        };
        rec.network = policy;
        record::save(&self.paths, &rec)?;
        self.touch(&mut rec).await?;
        Ok(NetworkView {
            workspace_id: id.to_owned(),
            network: rec.network.clone(),
            applied: applied.to_owned(),
            note,
        })
    }

    /// The newest `limit` denials of the workspace's network policy.
    pub async fn network_log(&self, id: &str, limit: usize) -> Result<NetworkLogView, CoreError> {
        limits::NETWORK_LOG_ENTRIES.check(limit)?;
        let rec = record::load(&self.paths, id).ok_or_else(|| not_found(id))?;
        let dir = self.network_log_dir(id);
        let netns = (rec.state == State::Started)
            .then(|| rec.vm_id.clone())
            .flatten()
            .and_then(|vm| Sandbox::attach(&self.paths, &vm).ok())
            .and_then(|s| s.record().network.clone())
            .and_then(|n| n.plumbing)
            .map(|p| p.netns);
        let (denials, total, unlogged) = crate::blocking(move || {
            let (d, t) = pyro_net::denials::read_recent(&dir, limit);
            let u = netns.and_then(|ns| pyro_net::netns::unlogged_denials(&ns));
            Ok((d, t, u))
        })
        .await?;
        Ok(NetworkLogView {
            workspace_id: id.to_owned(),
            network: rec.network,
            truncated: total > denials.len() as u64,
            denials,
            total,
            unlogged,
        })
    }
}

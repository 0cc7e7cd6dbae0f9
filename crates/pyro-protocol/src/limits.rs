//! The guest's limits on commands: what a command may ask for, what it
//! ran into, and what the guest reports of its disk and limits.

use serde::{Deserialize, Serialize};

/// Limits for one command, tighter than the guest's defaults (all its
/// commands' memory together; [`crate::GUEST_TASKS_PER_COMMAND`] tasks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandLimits {
    /// Memory the command may use, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max_bytes: Option<u64>,
    /// Tasks (processes and threads) it may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_max: Option<u64>,
}

/// The guest's disk space and the limits its commands run under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestUsage {
    /// Size of the workspace's disk (the root filesystem's upper layer).
    pub disk_total_bytes: u64,
    /// Of that, free (root's reserved blocks included).
    pub disk_free_bytes: u64,
    /// Whether it is full by the agent's measure (what makes a failed
    /// command's limit [`GuestLimit::Disk`]).
    pub disk_full: bool,
    /// Memory all commands together may use, when guest limits are on.
    pub memory_max_bytes: Option<u64>,
    /// Tasks one command may have at once, when guest limits are on.
    pub tasks_per_command: Option<u64>,
    /// CPUs the guest sees.
    pub cpus: u32,
}

/// A limit a command ran into inside the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum GuestLimit {
    /// The guest's OOM killer ended one of its processes.
    Memory,
    /// A fork failed at the per-command task limit.
    Processes,
    /// It failed while the workspace's disk was full.
    Disk,
}

//! Every default and bound a front end shows: one constant each, which the
//! CLI's flags and the MCP server's argument schemas both read, and which
//! core checks requests against. A test compares the CLI's help with the
//! MCP schemas, so the two cannot drift apart.
//!
//! Output caps are sized for a chat host (Claude Code cuts a tool result at
//! about 25k tokens): they bound what a result *returns*; the CLI streams a
//! command's output to the terminal whole (up to [`OUTPUT_BYTES`]'s
//! maximum), and the command log keeps it.

use std::fmt::Display;

use crate::{CoreError, check_range};

/// A setting's default and its inclusive range, with the name of the
/// argument that carries it (`--ttl-seconds` on the CLI, `ttl_seconds` in
/// MCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound<T> {
    /// The argument's name (snake_case).
    pub arg: &'static str,
    /// The value when none is given.
    pub default: T,
    /// The smallest value accepted.
    pub min: T,
    /// The largest value accepted.
    pub max: T,
}

impl<T: PartialOrd + Display + Copy> Bound<T> {
    /// Checks `v` against the range; the error names the argument and the
    /// range.
    pub fn check(&self, v: T) -> Result<(), CoreError> {
        check_range(&format!("⟨arg:{}⟩", self.arg), v, (self.min, self.max))
    }

    /// The range as `(min, max)`.
    pub fn range(&self) -> (T, T) {
        (self.min, self.max)
    }
}

/// vCPUs of a guest.
pub const VCPUS: Bound<u8> = Bound {
    arg: "vcpu_count",
    default: 1,
    min: 1,
    max: 8,
};

/// Guest memory, MiB.
pub const MEM_MIB: Bound<u32> = Bound {
    arg: "mem_mib",
    default: 1024,
    min: 128,
    max: 32_768,
};

/// A command's timeout, seconds (`run` and `exec`).
pub const TIMEOUT_SECONDS: Bound<u64> = Bound {
    arg: "timeout_seconds",
    default: 30,
    min: 1,
    max: 86_400,
};

/// How long a call waits for a command before returning with it still
/// running in the background, seconds (`exec`'s `wait_seconds` and
/// `exec_wait`). The default stays under chat hosts' tool-call limits
/// (Codex: 60 s).
pub const WAIT_SECONDS: Bound<u64> = Bound {
    arg: "wait_seconds",
    default: 40,
    min: 0,
    max: 600,
};

/// Output a command's result returns per stream, bytes (`run` and `exec`).
/// The maximum is also the most a command may stream per stream.
pub const OUTPUT_BYTES: Bound<u64> = Bound {
    arg: "max_output_bytes",
    default: 32 << 10,
    min: 1,
    max: crate::workspace::LOG_CAP_BYTES,
};

/// A one-shot run's hard lifetime, seconds: the guest powers off then.
pub const RUN_TTL_SECONDS: Bound<u64> = Bound {
    arg: "ttl_seconds",
    default: 600,
    min: 60,
    max: 86_400,
};

// A run's guest outlives its command's default timeout.
const _: () = assert!(RUN_TTL_SECONDS.default >= TIMEOUT_SECONDS.default);

/// Forks one call makes (all or none; each counts against the workspace
/// quota).
pub const FORK_COUNT: Bound<u32> = Bound {
    arg: "count",
    default: 1,
    min: 1,
    max: 8,
};

/// A command's own memory cap, MiB (`exec`'s `max_memory_mib`; at most
/// the workspace's memory). None by default: commands share the guest's
/// memory less a reserve for the agent.
pub const COMMAND_MEMORY_MIB: (u64, u64) = (8, MEM_MIB.max as u64);

/// A command's own task limit (`exec`'s `max_tasks`). By default a command
/// may have [`pyro_protocol::GUEST_TASKS_PER_COMMAND`].
pub const COMMAND_TASKS: (u64, u64) = (4, 4096);

/// Named snapshots a workspace keeps (the baseline aside).
pub const SNAPSHOTS_PER_WORKSPACE: usize = 16;

/// How long a guest may take to boot, seconds (the default depends on the
/// host: see `sandbox::default_boot_timeout`).
pub const BOOT_TIMEOUT_SECONDS: (u64, u64) = (1, 3_600);

/// A workspace's idle deadline, seconds.
pub const WORKSPACE_TTL_SECONDS: Bound<u64> = Bound {
    arg: "ttl_seconds",
    default: 600,
    min: 10,
    max: 7 * 86_400,
};

/// A workspace's writable disk, MiB (sparse: only what is written uses
/// space).
pub const DISK_MIB: Bound<u64> = Bound {
    arg: "disk_mib",
    default: 4096,
    min: 256,
    max: 256 * 1024,
};

/// A shell's terminal width, columns.
pub const SHELL_COLS: Bound<u16> = Bound {
    arg: "cols",
    default: 120,
    min: 20,
    max: 500,
};

/// A shell's terminal height, rows.
pub const SHELL_ROWS: Bound<u16> = Bound {
    arg: "rows",
    default: 30,
    min: 5,
    max: 200,
};

/// Output one shell read returns, bytes (so at most as many characters).
pub const SHELL_READ_CHARS: Bound<u64> = Bound {
    arg: "max_chars",
    default: 65_536,
    min: 1,
    max: 1 << 20,
};

/// Quiet time a shell read waits for, milliseconds (no wait when absent).
pub const SHELL_IDLE_MS: Bound<u64> = Bound {
    arg: "wait_for_idle_ms",
    default: 500,
    min: 1,
    max: 30_000,
};

/// How long a service may take to become ready, seconds. The caller's
/// choice: the host waits as long (with progress over MCP), no less.
pub const READY_TIMEOUT_SECONDS: Bound<u64> = Bound {
    arg: "ready_timeout_seconds",
    default: 30,
    min: 1,
    max: 3_600,
};

/// Time between a service's readiness checks, milliseconds.
pub const READY_INTERVAL_MS: Bound<u64> = Bound {
    arg: "ready_interval_ms",
    default: 500,
    min: 50,
    max: 60_000,
};

/// Time between `TERM` and `KILL` when a service stops, seconds.
pub const STOP_GRACE_SECONDS: Bound<u64> = Bound {
    arg: "grace_seconds",
    default: 5,
    min: 0,
    max: 60,
};

/// Lines of each stream a service's logs return from their end.
pub const TAIL_LINES: Bound<u64> = Bound {
    arg: "tail_lines",
    default: 200,
    min: 1,
    max: 100_000,
};

/// Bytes of each stream one read of a service's logs returns.
pub const LOG_BYTES: Bound<u64> = Bound {
    arg: "max_bytes",
    default: 32_768,
    min: 1,
    max: 1 << 20,
};

/// The signal `shell signal` sends when none is named.
pub const SHELL_SIGNAL: &str = "INT";

/// Shells open at once in one workspace (the agent's own limit).
pub const SHELLS_PER_WORKSPACE: usize = 8;

/// Commands `logs` returns.
pub const LOGS_TAIL: Bound<usize> = Bound {
    arg: "tail",
    default: 20,
    min: 1,
    max: 1000,
};

/// Output `logs` returns per stream and command (its end), bytes.
pub const LOGS_OUTPUT_BYTES: Bound<u64> = Bound {
    arg: "max_output_bytes",
    default: 8 << 10,
    min: 1,
    max: crate::workspace::LOG_CAP_BYTES,
};

/// Entries a file listing returns (all are counted).
pub const LIST_ENTRIES: Bound<usize> = Bound {
    arg: "max_entries",
    default: 1000,
    min: 1,
    max: 100_000,
};

/// Changed paths a diff lists (all are counted).
pub const DIFF_ENTRIES: Bound<usize> = Bound {
    arg: "max_entries",
    default: 1000,
    min: 1,
    max: 100_000,
};

/// Patch text a diff returns inline, bytes (the CLI prints the whole patch
/// on a terminal).
pub const DIFF_PATCH_BYTES: Bound<u64> = Bound {
    arg: "max_patch_bytes",
    default: 64 << 10,
    min: 1,
    max: 64 << 20,
};

/// The largest file a read returns, bytes (bigger files are an error).
pub const FILE_READ_BYTES: Bound<u64> = Bound {
    arg: "max_bytes",
    default: 64 << 10,
    min: 1,
    max: 64 << 20,
};

/// The largest content a file write takes, bytes.
pub const FILE_WRITE_BYTES: Bound<u64> = Bound {
    arg: "max_bytes",
    default: 1 << 20,
    min: 1,
    max: 64 << 20,
};

/// Denials a network log read returns.
pub const NETWORK_LOG_ENTRIES: Bound<usize> = Bound {
    arg: "limit",
    default: 50,
    min: 1,
    max: 1_000,
};

#[cfg(test)]
mod tests;

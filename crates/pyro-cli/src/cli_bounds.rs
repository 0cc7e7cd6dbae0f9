//! The bounded flags' ranges in the help: one list, read from
//! [`pyro_core::limits`].

use clap::CommandFactory;
use pyro_core::limits as L;

use crate::cli::Cli;

/// Which flags take a bound from [`pyro_core::limits`]: the command's path
/// under `pyro` and the bound (whose `arg` names the flag). Their help
/// gains the range; their default comes from the same bound in the
/// derive attributes above.
pub fn bounded_flags() -> Vec<(&'static [&'static str], &'static str, String, String)> {
    fn b<T: std::fmt::Display>(
        path: &'static [&'static str],
        bound: L::Bound<T>,
    ) -> (&'static [&'static str], &'static str, String, String) {
        (
            path,
            bound.arg,
            bound.min.to_string(),
            bound.max.to_string(),
        )
    }
    vec![
        b(&["run"], L::VCPUS),
        b(&["run"], L::MEM_MIB),
        b(&["run"], L::TIMEOUT_SECONDS),
        b(&["run"], L::RUN_TTL_SECONDS),
        b(&["run"], L::OUTPUT_BYTES),
        b(&["workspace", "create"], L::VCPUS),
        b(&["workspace", "create"], L::MEM_MIB),
        b(&["workspace", "create"], L::DISK_MIB),
        b(&["workspace", "create"], L::WORKSPACE_TTL_SECONDS),
        b(&["workspace", "exec"], L::TIMEOUT_SECONDS),
        b(&["workspace", "exec"], L::WAIT_SECONDS),
        b(&["workspace", "exec-wait"], L::WAIT_SECONDS),
        b(&["workspace", "exec-wait"], L::OUTPUT_BYTES),
        b(&["workspace", "exec-cancel"], L::OUTPUT_BYTES),
        b(&["workspace", "shell", "open"], L::SHELL_COLS),
        b(&["workspace", "shell", "open"], L::SHELL_ROWS),
        b(&["workspace", "shell", "read"], L::SHELL_READ_CHARS),
        b(&["workspace", "shell", "resize"], L::SHELL_COLS),
        b(&["workspace", "shell", "resize"], L::SHELL_ROWS),
        b(&["workspace", "service", "start"], L::READY_TIMEOUT_SECONDS),
        b(&["workspace", "service", "start"], L::READY_INTERVAL_MS),
        b(&["workspace", "service", "stop"], L::STOP_GRACE_SECONDS),
        b(&["workspace", "service", "logs"], L::TAIL_LINES),
        b(&["workspace", "service", "logs"], L::LOG_BYTES),
        b(&["workspace", "exec"], L::OUTPUT_BYTES),
        b(&["workspace", "logs"], L::LOGS_TAIL),
        b(&["workspace", "logs"], L::LOGS_OUTPUT_BYTES),
        b(&["workspace", "file", "list"], L::LIST_ENTRIES),
        b(&["workspace", "file", "read"], L::FILE_READ_BYTES),
        b(&["workspace", "file", "write"], L::FILE_WRITE_BYTES),
        b(&["workspace", "diff"], L::DIFF_ENTRIES),
        b(&["workspace", "diff"], L::DIFF_PATCH_BYTES),
        b(&["workspace", "fork"], L::FORK_COUNT),
        b(&["workspace", "network", "log"], L::NETWORK_LOG_ENTRIES),
        b(&["workspace", "disk", "list"], L::LIST_ENTRIES),
        b(&["workspace", "disk", "read"], L::FILE_READ_BYTES),
        r(
            &["workspace", "exec"],
            "max_memory_mib",
            L::COMMAND_MEMORY_MIB,
        ),
        r(&["workspace", "exec"], "max_tasks", L::COMMAND_TASKS),
    ]
}

/// A bounded flag without a default.
fn r(
    path: &'static [&'static str],
    arg: &'static str,
    (min, max): (u64, u64),
) -> (&'static [&'static str], &'static str, String, String) {
    (path, arg, min.to_string(), max.to_string())
}

/// The command tree, each bounded flag's help saying its range.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (path, arg, min, max) in bounded_flags() {
        cmd = with_range(cmd, path, arg, &format!("[range: {min} to {max}]"));
    }
    cmd
}

fn with_range(cmd: clap::Command, path: &[&str], arg: &str, range: &str) -> clap::Command {
    match path.split_first() {
        Some((sub, rest)) => cmd.mut_subcommand(*sub, |c| with_range(c, rest, arg, range)),
        None => cmd.mut_arg(arg, |a| {
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            a.help(format!("{} {range}", help.trim_end_matches('.')))
        }),
    }
}

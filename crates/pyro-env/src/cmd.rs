//! Running build commands with their output appended to a log file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::EnvError;

/// Where `program` is: itself if it names an existing path, else the first
/// executable file of that name on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).exists().then(|| PathBuf::from(program));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|p| {
            p.is_file()
                && std::fs::metadata(p).is_ok_and(|m| {
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
        })
}

/// Whether `program` is on `PATH` (or an existing path).
pub fn have(program: &str) -> bool {
    which(program).is_some()
}

/// Fails with an install hint when `program` is missing.
pub fn require(program: &str, package: &str, purpose: &str) -> Result<(), EnvError> {
    if have(program) {
        Ok(())
    } else {
        Err(EnvError::MissingTool {
            tool: program.to_owned(),
            purpose: purpose.to_owned(),
            package: package.to_owned(),
        })
    }
}

/// Runs `cmd` with stdout and stderr appended to `log`, calling `on_line`
/// for every output line. Fails with the log's tail on a non-zero exit.
pub fn run_logged(
    step: &str,
    cmd: &mut Command,
    log: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), EnvError> {
    use std::io::Write;
    let mut logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| EnvError::io(format!("opening {}", log.display()), e))?;
    let _ = writeln!(logf, "$ {cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            EnvError::io(
                format!("{step}: starting {}", cmd.get_program().to_string_lossy()),
                e,
            )
        })?;
    let stderr = child.stderr.take();
    let err_log = logf
        .try_clone()
        .map_err(|e| EnvError::io("duplicating the log handle", e))?;
    // stderr goes to the log from a helper thread; stdout is read here.
    let err_thread = std::thread::spawn(move || {
        let mut err_log = err_log;
        if let Some(s) = stderr {
            for line in BufReader::new(s).lines().map_while(Result::ok) {
                let _ = writeln!(err_log, "{line}");
            }
        }
    });
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = writeln!(logf, "{line}");
            on_line(&line);
        }
    }
    let _ = err_thread.join();
    let status = child
        .wait()
        .map_err(|e| EnvError::io(format!("{step}: waiting"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(EnvError::Build {
            step: step.to_owned(),
            log: log.to_owned(),
            tail: tail(log, 25),
        })
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = pyro_vmm::file_tail(path, 64 * 1024);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests;

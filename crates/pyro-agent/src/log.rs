//! Console logging. In a guest, standard error is the serial console, which
//! the host keeps and shows when a boot fails; in host-compat it is a log file.

use std::io::Write;

/// Writes one diagnostic line to standard error.
pub fn info(msg: &str) {
    let _ = writeln!(std::io::stderr(), "pyro-agent: {msg}");
}

/// Writes one error line to standard error.
pub fn error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "pyro-agent: error: {msg}");
}

/// Writes one line to standard output.
pub fn out(msg: &str) {
    let _ = writeln!(std::io::stdout(), "{msg}");
}

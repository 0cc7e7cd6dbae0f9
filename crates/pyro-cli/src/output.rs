//! Output conventions: data on stdout, diagnostics on stderr, JSON with
//! `--json`, colour only on a terminal (and never with `NO_COLOR`),
//! progress spinners on long work.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pyro_core::CoreError;
use serde::Serialize;

/// Exit status for invalid arguments.
pub const EXIT_USAGE: u8 = 2;
/// Exit status when an operation failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of `pyro run` when pyro itself failed.
pub const EXIT_RUN_FAILURE: u8 = 125;

/// Styles (stripped by anstream when colour is off).
pub const RED: Style = AnsiColor::Red.on_default().bold();
pub const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
pub const GREEN: Style = AnsiColor::Green.on_default().bold();
pub const DIM: Style = Style::new().dimmed();
pub const BOLD: Style = Style::new().bold();

/// `2026-11-25T16:40:00Z` from Unix seconds.
pub fn utc(ts: f64) -> String {
    let secs = ts.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Writes a line to stdout.
pub fn out(line: impl std::fmt::Display) {
    let _ = writeln!(anstream::stdout(), "{line}");
}

/// Writes a line to stderr.
pub fn err(line: impl std::fmt::Display) {
    let _ = writeln!(anstream::stderr(), "{line}");
}

/// `text` for a terminal: control characters (which a guest can put in a
/// file name, a link target or a message, to move the cursor or fake a
/// line) shown escaped, `\n` and `\t` kept when `keep_lines`.
pub fn shown(text: &str, keep_lines: bool) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && !(keep_lines && (c == '\n' || c == '\t'));
    if !text.chars().any(bad) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if bad(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) {
    let text =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    out(text);
}

/// Whether stderr is a terminal (spinners instead of plain step lines).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether colour may be used on stderr.
pub fn color_on_stderr() -> bool {
    stderr_is_tty() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: u8,
    /// Machine-readable class.
    pub kind: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl Failure {
    /// Invalid arguments.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            kind: "invalid_argument",
            message: message.into(),
        }
    }
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        Self {
            code: if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            },
            kind: e.kind(),
            message: e.message(pyro_core::hint::FrontEnd::Cli),
        }
    }
}

/// Reports a failure: the message on stderr, and with `--json` also an error
/// object on stdout.
pub fn report(f: &Failure, json_mode: bool) {
    // (Messages from anywhere below are worded for the CLI here.)
    let message = pyro_core::hint::render(&f.message, pyro_core::hint::FrontEnd::Cli);
    err(format!("{RED}error:{RED:#} {}", shown(&message, true)));
    if json_mode {
        json(&serde_json::json!({"ok": false, "error": {"kind": f.kind, "message": message}}));
    }
}

/// Progress on stderr: a spinner on a terminal, plain step lines otherwise
/// (unless `quiet`).
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    prefix: &'static str,
    quiet: bool,
}

impl Progress {
    /// Progress lines prefixed with `[prefix]`.
    pub fn new(prefix: &'static str, quiet: bool) -> Self {
        let bar = stderr_is_tty().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = if color_on_stderr() {
                "{spinner:.cyan} {msg} {elapsed:.dim}"
            } else {
                "{spinner} {msg} {elapsed}"
            };
            b.set_style(
                ProgressStyle::with_template(style)
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Self { bar, prefix, quiet }
    }

    /// Prints a stdout line without tearing the spinner.
    pub fn print_out(&self, line: impl std::fmt::Display) {
        match &self.bar {
            Some(b) => b.suspend(|| out(line)),
            None => out(line),
        }
    }

    /// Removes the spinner.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl pyro_core::environments::Progress for Progress {
    fn step(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_owned()),
            None if !self.quiet => err(format!("[{}] {msg}", self.prefix)),
            None => {}
        }
    }

    fn tick(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_owned());
        }
    }
}

/// Passes command output straight to our stdout and stderr, as it arrives.
#[derive(Debug)]
pub struct StdStreams;

impl pyro_core::sandbox::OutputSink for StdStreams {
    fn stdout(&mut self, data: &[u8]) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(data);
        let _ = o.flush();
    }
    fn stderr(&mut self, data: &[u8]) {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(data);
        let _ = e.flush();
    }
}

#[cfg(test)]
mod tests;

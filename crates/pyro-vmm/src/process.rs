//! Process identities that survive pid reuse: a pid plus the kernel's start
//! time of that process (field 22 of `/proc/<pid>/stat`).

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A process, identified so that a recycled pid never matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// The pid.
    pub pid: u32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    start_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses: fields resume after
    // the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

impl ProcessId {
    /// The identity of a running process.
    pub fn of(pid: u32) -> Option<Self> {
        read_stat(pid).map(|s| Self {
            pid,
            start_ticks: s.start_ticks,
        })
    }

    /// The identity of this process.
    pub fn current() -> Self {
        Self::of(std::process::id()).unwrap_or(Self {
            pid: std::process::id(),
            start_ticks: 0,
        })
    }

    /// Whether this very process still runs (zombies count as gone).
    pub fn is_alive(&self) -> bool {
        match read_stat(self.pid) {
            Some(s) => s.start_ticks == self.start_ticks && s.state != 'Z' && s.state != 'X',
            None => false,
        }
    }

    /// Sends `sig` if the process is still this one.
    pub fn signal(&self, sig: Signal) -> bool {
        self.is_alive() && kill(Pid::from_raw(self.pid as i32), sig).is_ok()
    }

    /// Kills the process and waits (up to `timeout`) until it is gone,
    /// reaping it if it is our child. Returns whether it is gone.
    pub fn kill_and_wait(&self, timeout: Duration) -> bool {
        self.signal(Signal::SIGKILL);
        let until = Instant::now() + timeout;
        loop {
            self.reap();
            if !self.is_alive() {
                // It may have turned zombie after the reap above: reap again,
                // or it keeps its cgroup busy.
                self.reap();
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks the process to end (SIGTERM), gives it `grace` to do so, then
    /// kills it and waits up to `timeout`. Returns whether it is gone. For
    /// pyro's own helpers, which finish their work and exit on SIGTERM (an
    /// exit that runs to the end also writes an instrumented build's
    /// coverage counters, which SIGKILL loses).
    pub fn terminate_and_wait(&self, grace: Duration, timeout: Duration) -> bool {
        if self.signal(Signal::SIGTERM) {
            let until = Instant::now() + grace;
            while Instant::now() < until {
                self.reap();
                if !self.is_alive() {
                    self.reap();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill_and_wait(timeout)
    }

    /// Reaps the process if it is a zombie child of ours.
    pub fn reap(&self) {
        if let Some(s) = read_stat(self.pid)
            && s.start_ticks == self.start_ticks
            && s.state == 'Z'
        {
            let _ = waitpid(Pid::from_raw(self.pid as i32), Some(WaitPidFlag::WNOHANG));
        }
    }
}

#[cfg(test)]
mod tests;

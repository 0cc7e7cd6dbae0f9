//! Making a restored guest a machine of its own.
//!
//! Every guest restored from one template snapshot resumes with the same
//! memory: the same kernel random state, the same clock reading, the same
//! hostname. Before the host sends anything else it sends a refresh, and
//! the agent mixes fresh host entropy into the kernel's pool and forces the
//! generator to reseed (so `/dev/urandom` and `getrandom` differ between
//! siblings from here on), steps the wall clock to the host's, and sets the
//! hostname and the machine id derived from it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Instant;

use pyro_protocol::{AgentError, ErrorKind, REFRESH_ENTROPY_BYTES, Response};

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Applies a refresh; `set_idle` takes the new idle deadline.
pub fn apply(
    entropy: &[u8],
    unix_time_ns: u64,
    hostname: &str,
    set_idle: impl FnOnce(),
) -> Response {
    let started = Instant::now();
    if let Err(e) = check(entropy, hostname) {
        return bad(e);
    }
    let reseeded = match reseed(entropy) {
        Ok(()) => true,
        Err(e) => {
            crate::log::error(&format!("reseeding the kernel's random generator: {e}"));
            false
        }
    };
    let clock_step_ms = match step_clock(unix_time_ns) {
        Ok(step) => step,
        Err(e) => {
            return Response::Error(AgentError::new(
                ErrorKind::Io,
                format!("setting the clock: {e}"),
            ));
        }
    };
    if let Err(e) = nix::unistd::sethostname(hostname) {
        return Response::Error(AgentError::new(
            ErrorKind::Io,
            format!("setting the hostname: {e}"),
        ));
    }
    crate::init::set_machine_id(hostname);
    set_idle();
    Response::Refreshed {
        reseeded,
        clock_step_ms,
        refresh_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

/// A refresh's entropy and hostname, checked before anything changes.
pub(crate) fn check(entropy: &[u8], hostname: &str) -> Result<(), String> {
    if entropy.len() != REFRESH_ENTROPY_BYTES {
        return Err(format!(
            "a refresh carries {REFRESH_ENTROPY_BYTES} bytes of entropy, not {}",
            entropy.len()
        ));
    }
    if !pyro_protocol::valid_hostname(hostname) {
        return Err(format!("{hostname:?} is not a valid hostname"));
    }
    Ok(())
}

fn bad(msg: String) -> Response {
    Response::Error(AgentError::new(ErrorKind::BadRequest, msg))
}

/// Adds `entropy` to the input pool (credited), then forces the CRNG to
/// reseed from it at once rather than at its next scheduled reseed.
pub(crate) fn reseed(entropy: &[u8]) -> std::io::Result<()> {
    let f = File::options().write(true).open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + entropy.len());
    let bits = i32::try_from(entropy.len() * 8).unwrap_or(i32::MAX);
    let len = i32::try_from(entropy.len()).unwrap_or(i32::MAX);
    info.extend_from_slice(&bits.to_ne_bytes());
    info.extend_from_slice(&len.to_ne_bytes());
    info.extend_from_slice(entropy);
    // SAFETY: `info` is a rand_pool_info header followed by `buf_size`
    // bytes, alive for the call; the descriptor is open.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the wall clock; returns how far it moved, in milliseconds.
pub(crate) fn step_clock(unix_time_ns: u64) -> nix::Result<i64> {
    use nix::sys::time::TimeSpec;
    use nix::time::{ClockId, clock_gettime, clock_settime};
    let before = clock_gettime(ClockId::CLOCK_REALTIME)?;
    let secs = i64::try_from(unix_time_ns / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = i64::try_from(unix_time_ns % 1_000_000_000).unwrap_or(0);
    let target = TimeSpec::new(secs, nanos);
    clock_settime(ClockId::CLOCK_REALTIME, target)?;
    let ms = |t: TimeSpec| t.tv_sec() * 1000 + t.tv_nsec() / 1_000_000;
    Ok(ms(target) - ms(before))
}

#[cfg(test)]
mod tests;

//! Line coverage of the guest agent (`make test` only: `--cfg pyro_coverage`;
//! release builds leave this module out).
//!
//! The instrumented agent of a guest keeps its counters in a file in the
//! guest's `/run` (pyro-agent's `coverage.rs`). Before a VM ends, pyro copies
//! that file beside the suite's other profiles, into the directory of
//! `PYRO_AGENT_PROFILE`, where `scripts/coverage.sh` merges them. It is best
//! effort and bounded: a guest that does not answer within [`DEADLINE`] (a
//! paused or wedged one, such as a template's VM after its snapshot, which
//! costs its build those seconds) only loses its counters. Failures are
//! logged at debug level, so the programs' output stays as in release.

use std::path::PathBuf;
use std::time::Duration;

use super::Sandbox;
use crate::Paths;
use crate::records::VmRecord;

// The instrumented guest agent's profile (continuous mode).
use pyro_protocol::COVERAGE_PROFILE as GUEST_PROFILE;
/// Far above an agent's profile (about a megabyte).
const MAX_BYTES: u64 = 256 << 20;
/// How long one copy may take.
const DEADLINE: Duration = Duration::from_secs(5);

impl Sandbox {
    /// Copies a running guest's agent counters to the host.
    pub(super) async fn collect_coverage(&self) {
        let Some(dir) = self.coverage_dir() else {
            return;
        };
        let read = tokio::time::timeout(DEADLINE, self.read_file_inner(GUEST_PROFILE, MAX_BYTES));
        let data = match read.await {
            Ok(Ok((data, _, false, _))) => data,
            Ok(Ok(_)) => {
                return tracing::debug!("coverage: {GUEST_PROFILE} is over {MAX_BYTES} bytes");
            }
            Ok(Err(e)) => return tracing::debug!("coverage: reading {GUEST_PROFILE}: {e}"),
            Err(_) => return tracing::debug!("coverage: no {GUEST_PROFILE} within {DEADLINE:?}"),
        };
        let name = format!(
            "agent-guest-{}-{}.profraw",
            self.record.id,
            crate::random_hex(4)
        );
        if let Err(e) = tokio::fs::write(dir.join(&name), data).await {
            tracing::debug!("coverage: writing {name}: {e}");
        }
    }
}

/// [`Sandbox::collect_coverage`] from blocking code (a teardown), on a thread
/// of its own: callers may hold an async worker or none.
pub(super) fn collect_blocking(paths: &Paths, record: &VmRecord) {
    let sandbox = Sandbox::handle(paths, record.clone());
    if sandbox.coverage_dir().is_none() {
        return;
    }
    std::thread::scope(|s| {
        // No thread (a host out of them): these counters are lost, no more.
        let _ = std::thread::Builder::new().spawn_scoped(s, || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(sandbox.collect_coverage());
            }
        });
    });
}

impl Sandbox {
    /// Where this sandbox's guest counters go: the host directory of
    /// `PYRO_AGENT_PROFILE`, for a running Firecracker guest (unset, or
    /// host-compat, or gone: nothing is collected).
    fn coverage_dir(&self) -> Option<PathBuf> {
        if self.record.firecracker.is_none() || !self.is_running() {
            return None;
        }
        let pattern = PathBuf::from(std::env::var_os("PYRO_AGENT_PROFILE")?);
        Some(pattern.parent()?.to_owned())
    }
}

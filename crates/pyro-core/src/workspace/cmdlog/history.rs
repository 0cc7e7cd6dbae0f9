//! Reading the command history back (`workspace logs`).

use super::*;

/// What `logs` returns.
#[derive(Debug, Clone, Copy)]
pub struct LogsQuery {
    /// The last this many commands.
    pub tail: usize,
    /// Only this command.
    pub sequence: Option<u64>,
    /// Bytes of each stream returned per command (its end).
    pub max_output_bytes: u64,
}

impl Default for LogsQuery {
    fn default() -> Self {
        Self {
            tail: crate::limits::LOGS_TAIL.default,
            sequence: None,
            max_output_bytes: crate::limits::LOGS_OUTPUT_BYTES.default,
        }
    }
}

/// Reads the history in `dir`: every command is counted, only the asked-for
/// ones are read, and of their output only the end (never a whole file).
///
/// `live_vm` is the workspace's running VM, if any: a command left running
/// in the background of another VM ended with it, and reads as
/// `interrupted`, saying so.
pub fn read(
    dir: &Path,
    q: &LogsQuery,
    live_vm: Option<&str>,
) -> Result<(usize, Vec<LogEntry>), CoreError> {
    crate::limits::LOGS_TAIL.check(q.tail)?;
    crate::limits::LOGS_OUTPUT_BYTES.check(q.max_output_bytes)?;
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    let stem = name.to_str()?.strip_suffix(".json")?;
                    (stem.len() >= 6 && stem.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| stem.parse().ok())
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default();
    seqs.sort_unstable();
    let count = seqs.len();
    let chosen: Vec<u64> = match q.sequence {
        Some(s) if seqs.binary_search(&s).is_ok() => vec![s],
        Some(s) => {
            return Err(CoreError::NotFound(format!(
                "no command #{s} in the history (it has {count} since creation or the last reset)"
            )));
        }
        None => seqs[count.saturating_sub(q.tail)..].to_vec(),
    };
    let mut out = Vec::with_capacity(chosen.len());
    for seq in chosen {
        let Some(mut e) = std::fs::read(path(dir, seq, "json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<LogEntry>(&b).ok())
        else {
            continue;
        };
        // The runner is only for this check, never part of the answer.
        let runner = e.runner.take();
        // A job runs on in the guest without a runner on the host.
        let job = e.job.take();
        if e.state == CommandState::Running
            && job.is_none()
            && !runner.is_some_and(|r| r.is_alive())
        {
            e.state = CommandState::Interrupted;
        }
        if e.state == CommandState::Running
            && let Some(j) = &job
            && Some(j.vm_id.as_str()) != live_vm
        {
            e.state = CommandState::Interrupted;
            e.error = Some(
                "it ran in the background and ended with the workspace's VM (a stop, reset or \
                 expiry); its output up to the last wait is logged"
                    .into(),
            );
        }
        for (ext, text, omitted) in [
            ("stdout", &mut e.stdout, &mut e.stdout_omitted_bytes),
            ("stderr", &mut e.stderr, &mut e.stderr_omitted_bytes),
        ] {
            let p = path(dir, seq, ext);
            let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let (bytes, _) = pyro_vmm::file_tail_bytes(&p, q.max_output_bytes);
            *omitted = size.saturating_sub(bytes.len() as u64);
            *text = String::from_utf8_lossy(&bytes).into_owned();
        }
        out.push(e);
    }
    Ok((count, out))
}

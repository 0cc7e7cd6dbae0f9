//! Reading a service's logs: a tail or a range, from the guest's disk,
//! every offset checked against what was sent.

use pyro_protocol::LogSpan;

use super::services::{checked, view};
use super::*;

fn position(s: &LogSpan, asked: Option<u64>, sent: usize) -> Result<LogPosition, CoreError> {
    let consistent = s.start <= s.from
        && s.from <= s.next
        && s.next <= s.end
        && s.next - s.from == sent as u64
        && asked.is_none_or(|a| {
            a.checked_add(s.dropped) == Some(s.from) || (a > s.end && s.from == s.end)
        });
    if !consistent {
        return Err(CoreError::Transport(
            "the guest agent reported log offsets that do not match what it sent; the guest is \
             misbehaving: reset or delete it"
                .into(),
        ));
    }
    Ok(LogPosition {
        from: s.from,
        next: s.next,
        start: s.start,
        end: s.end,
        dropped_bytes: s.dropped,
        unsaved_bytes: s.unsaved,
    })
}

impl Workspaces {
    /// Reads service `name`'s logs (from the guest's disk: also those of a
    /// service of an earlier boot, until the name is started again).
    pub async fn service_logs(
        &self,
        id: &str,
        name: &str,
        range: LogsRange,
        max_bytes: u64,
    ) -> Result<ServiceLogsView, CoreError> {
        let r = self.redactor(id)?;
        self.service_logs_raw(id, name, range, max_bytes, &r)
            .await
            .map_err(|e| e.redact(&r))
    }

    async fn service_logs_raw(
        &self,
        id: &str,
        name: &str,
        range: LogsRange,
        max_bytes: u64,
        redactor: &crate::redact::Redactor,
    ) -> Result<ServiceLogsView, CoreError> {
        limits::LOG_BYTES.check(max_bytes)?;
        // With secrets, a read covers at least two of the longest form, so
        // holding back the start of one never stops it moving on.
        let max_bytes = if redactor.is_empty() {
            max_bytes
        } else {
            max_bytes.max(2 * redactor.longest() as u64)
        };
        let (from, tail) = match range {
            LogsRange::Tail(n) => {
                limits::TAIL_LINES.check(n)?;
                (None, n)
            }
            LogsRange::From { stdout, stderr } => (
                Some((stdout.unwrap_or(u64::MAX), stderr.unwrap_or(u64::MAX))),
                0,
            ),
        };
        let mark = self.service_mark(id, name)?;
        let (rec, sandbox) = self.started_with(id, "service logs", |_| {}).await?;
        let (out, err, answer) = sandbox.service_logs(name, from, tail, max_bytes).await?;
        let Response::ServiceLogs {
            service,
            stdout,
            stderr,
        } = answer
        else {
            return Err(CoreError::Transport(
                "unexpected answer to a logs read".into(),
            ));
        };
        let service = service.map(checked).transpose()?;
        // The offset asked of each stream (`u64::MAX`: none of it).
        let asked = |i: usize| from.map(|f| [f.0, f.1][i]);
        for (i, span) in [&stdout, &stderr].into_iter().enumerate() {
            if let Some(a) = asked(i)
                && a != u64::MAX
                && a > span.end
            {
                return Err(CoreError::invalid(format!(
                    "offset {a} is past the end of the service's {} ({}); read from ⟨arg:{}_from={}⟩",
                    ["stdout", "stderr"][i],
                    span.end,
                    ["stdout", "stderr"][i],
                    span.end
                )));
            }
        }
        let mut stdout_position = position(&stdout, asked(0), out.len())?;
        let mut stderr_position = position(&stderr, asked(1), err.len())?;
        // A character cut by a range's end is left for the next read.
        let (mut out, mut err) = (out, err);
        if let LogsRange::From { .. } = range {
            for (data, p) in [
                (&mut out, &mut stdout_position),
                (&mut err, &mut stderr_position),
            ] {
                let held = super::shells::incomplete_tail(data);
                if held > 0 && held < data.len() {
                    data.truncate(data.len() - held);
                    p.next -= held as u64;
                }
            }
        }
        // Secrets go before the bytes become text; while more may follow
        // (the service runs, or the range stops short of the end), bytes
        // that may begin one are left for the next read (`next` stops
        // before them).
        let live = service
            .as_ref()
            .is_some_and(|s| matches!(s.state.as_str(), "starting" | "ready"));
        let mut redactions = 0;
        for (data, p) in [
            (&mut out, &mut stdout_position),
            (&mut err, &mut stderr_position),
        ] {
            let last = !live && p.next >= p.end;
            let (clean, n, keep) = redactor.settle(data, last);
            *data = clean;
            p.next -= keep as u64;
            redactions += n;
        }
        let truncated = match range {
            LogsRange::Tail(_) => [&stdout_position, &stderr_position].iter().any(|p| {
                p.from > p.start && out.len() + err.len() > 0 && p.next - p.from >= max_bytes
            }),
            LogsRange::From { .. } => [&stdout_position, &stderr_position]
                .iter()
                .any(|p| p.next < p.end),
        };
        let info = if rec.vm_id.as_deref() == Some(mark.vm_id.as_str()) {
            service
        } else {
            None
        };
        let ended = (info.is_none()).then_some(
            "its workspace stopped (or was reset); these are the logs it left on the disk",
        );
        Ok(ServiceLogsView {
            service: view(id, &mark, info.as_ref(), ended),
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
            stdout_position,
            stderr_position,
            truncated,
            redactions,
        })
    }
}

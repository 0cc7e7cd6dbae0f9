//! Bounded output buffers addressed by stream offsets (jobs and shells).

use std::collections::VecDeque;

/// A stream's bounded buffer of its last `CAP` bytes, addressed by offsets
/// from the start of the stream.
#[derive(Debug, Default)]
pub struct Ring<const CAP: usize> {
    buf: VecDeque<u8>,
    /// Offset of `buf[0]` in the stream.
    start: u64,
}

impl<const CAP: usize> Ring<CAP> {
    /// Appends `data`, dropping the oldest bytes past `CAP`.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        let over = self.buf.len().saturating_sub(CAP);
        if over > 0 {
            self.buf.drain(..over);
            self.start += over as u64;
        }
    }

    /// The offset just past the last byte.
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Up to `max` bytes from `from`: (data, the offset it starts at, bytes
    /// before it no longer held).
    pub fn read(&self, from: u64, max: usize) -> (Vec<u8>, u64, u64) {
        let at = from.clamp(self.start, self.end());
        let dropped = self.start.saturating_sub(from);
        let skip = usize::try_from(at - self.start).unwrap_or(self.buf.len());
        let n = max.min(self.buf.len() - skip);
        let data: Vec<u8> = self.buf.range(skip..skip + n).copied().collect();
        (data, at, dropped)
    }
}

#[cfg(test)]
mod tests;

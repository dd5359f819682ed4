//! Readahead of our own, for exports whose descriptor has the kernel's turned off.
//!
//! The kernel's readahead fills the page cache in large folios (up to 2 MiB), and on ext4 a
//! small write into a large folio walks every block of it, when written and again when written
//! back (see [`Export::open`](super::export::Export::open)). So exports that read through
//! system calls or io_uring set `POSIX_FADV_RANDOM` on their descriptor, which makes a read
//! bring in just the pages it asked for, in order-0 folios; and a sequential stream would then
//! wait for the disk at every page. This module finds the sequential streams among an
//! export's reads and says what to read ahead of them; the engine asks the kernel for it
//! with `POSIX_FADV_WILLNEED`, which reads in order-0 folios too, without the reader waiting.
//!
//! Pure bookkeeping, no I/O: a few streams per export, each the end of its last read and how
//! far ahead of it the data was asked for. A read near a stream's end (within
//! [`REORDER_BYTES`]: an initiator's requests in flight arrive and are served out of order)
//! continues it; the [`STREAM_READS`]th read of a stream, and every read after that which comes
//! within half a [`WINDOW_BYTES`] of what was read ahead, asks for the next window. A read near no
//! stream starts one in place of the least recently used: random reads ask for nothing.

use std::ops::Range;

/// How far ahead of a sequential stream the data is asked for (the kernel's default
/// `read_ahead_kb` is 128 KiB; disks often set more).
pub const WINDOW_BYTES: u64 = 1 << 20;

/// How far a read may start before or after its stream's end and still continue it: requests
/// in flight together (up to 64 of 8.5 KiB, 544 KiB) are served in any order.
pub const REORDER_BYTES: u64 = 1 << 20;

/// Reads a stream needs, the first included, before it is read ahead: two random reads
/// that happen to land near each other do not make a stream.
pub const STREAM_READS: u32 = 3;

/// Streams followed at once per export.
pub const STREAMS: usize = 4;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stream {
    /// End of the furthest read of the stream (0 with `reads == 0`: an unused slot).
    end: u64,
    /// End of what was asked for ahead of it.
    ahead: u64,
    /// Reads that continued the stream, itself included.
    reads: u32,
    /// When it was last used, for replacing the least recently used.
    used: u64,
}

/// An export's sequential streams; see the module documentation.
#[derive(Clone, Debug)]
pub struct Readahead {
    streams: [Stream; STREAMS],
    /// Where the export's window ends (nothing is asked for beyond it).
    limit: u64,
    clock: u64,
}

impl Readahead {
    /// For a window of the file that ends at byte `limit`.
    pub fn new(limit: u64) -> Self {
        Self {
            streams: [Stream::default(); STREAMS],
            limit,
            clock: 0,
        }
    }

    /// Records a read of `len` bytes at `offset`; returns the byte range to read ahead now,
    /// if any.
    pub fn on_read(&mut self, offset: u64, len: u64) -> Option<Range<u64>> {
        self.clock += 1;
        let end = offset.saturating_add(len);
        let near = |s: &Stream| {
            s.reads > 0
                && offset.saturating_add(REORDER_BYTES) >= s.end
                && offset <= s.end.saturating_add(REORDER_BYTES)
        };
        let Some(stream) = self.streams.iter_mut().find(|s| near(s)) else {
            let lru = self
                .streams
                .iter_mut()
                .min_by_key(|s| s.used)
                .expect("STREAMS > 0");
            *lru = Stream {
                end,
                ahead: end,
                reads: 1,
                used: self.clock,
            };
            return None;
        };
        stream.end = stream.end.max(end);
        stream.reads = stream.reads.saturating_add(1);
        stream.used = self.clock;
        if stream.reads < STREAM_READS
            || stream.ahead >= stream.end.saturating_add(WINDOW_BYTES / 2)
        {
            return None;
        }
        let from = stream.ahead.max(stream.end);
        let to = stream.end.saturating_add(WINDOW_BYTES).min(self.limit);
        stream.ahead = to.max(stream.ahead);
        (from < to).then_some(from..to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn test_random_reads_ask_for_nothing() {
        let mut ra = Readahead::new(1 << 40);
        for i in 0..1000u64 {
            // Far apart: 64 MiB plus a little, never near a stream.
            let offset = (i * 7919 % 1000) * (64 << 20) + i * KIB;
            assert_eq!(ra.on_read(offset, KIB), None, "read {i}");
        }
    }

    #[test]
    fn test_a_sequential_stream_is_read_ahead_a_window_at_a_time() {
        let mut ra = Readahead::new(1 << 40);
        assert_eq!(ra.on_read(0, KIB), None, "one read is no stream yet");
        assert_eq!(ra.on_read(KIB, KIB), None, "nor are two");
        assert_eq!(
            ra.on_read(2 * KIB, KIB),
            Some(3 * KIB..3 * KIB + WINDOW_BYTES),
            "the third read asks for a window past its end"
        );
        let mut asked = 3 * KIB + WINDOW_BYTES;
        let mut windows = 1;
        let mut offset = 3 * KIB;
        while offset < 16 << 20 {
            if let Some(range) = ra.on_read(offset, KIB) {
                assert_eq!(
                    range.start, asked,
                    "each window starts where the last ended"
                );
                assert!(
                    range.end - range.start >= WINDOW_BYTES / 2,
                    "windows of at least half the size: {range:?}"
                );
                assert!(
                    offset + KIB + WINDOW_BYTES / 2 > asked,
                    "asked only when near"
                );
                asked = range.end;
                windows += 1;
            }
            assert!(
                asked >= offset + KIB,
                "the stream never outruns what was asked for"
            );
            offset += KIB;
        }
        // 16 MiB read: about one window per half window.
        assert!((30..=34).contains(&windows), "{windows} windows");
    }

    #[test]
    fn test_reads_out_of_order_continue_their_stream() {
        let mut ra = Readahead::new(1 << 40);
        let base = 100 << 20;
        // 64 requests of 8.5 KiB in flight, served in reverse order, then the next batch.
        let size = 17 * 512;
        let mut asked = 0;
        for batch in 0..4u64 {
            for i in (0..64u64).rev() {
                if let Some(range) = ra.on_read(base + (batch * 64 + i) * size, size) {
                    assert!(range.start >= asked, "never asks twice for the same bytes");
                    asked = range.end;
                }
            }
        }
        assert!(
            asked >= base + 4 * 64 * size,
            "read ahead past the last request ({asked})"
        );
        assert_eq!(ra.streams.iter().filter(|s| s.reads > 0).count(), 1);
    }

    #[test]
    fn test_several_streams_at_once_and_the_least_recent_replaced() {
        let mut ra = Readahead::new(1 << 40);
        let starts: Vec<u64> = (0..STREAMS as u64).map(|i| i << 30).collect();
        for &start in &starts {
            assert_eq!(ra.on_read(start, KIB), None);
        }
        for &start in &starts {
            assert_eq!(ra.on_read(start + KIB, KIB), None);
            assert!(
                ra.on_read(start + 2 * KIB, KIB).is_some(),
                "stream at {start}"
            );
        }
        // A new stream replaces the least recently used (the first).
        assert_eq!(ra.on_read(9 << 30, KIB), None);
        assert_eq!(
            ra.on_read(3 * KIB, KIB),
            None,
            "a new stream (replacing the second)"
        );
        assert_eq!(ra.on_read(4 * KIB, KIB), None);
        assert_eq!(
            ra.on_read(5 * KIB, KIB),
            Some(6 * KIB..6 * KIB + WINDOW_BYTES),
            "asked for again: the first stream (read ahead to {}) was forgotten",
            3 * KIB + WINDOW_BYTES
        );
        for &start in &starts[2..] {
            assert!(
                ra.streams.iter().any(|s| s.end == start + 3 * KIB),
                "the stream at {start} is still followed"
            );
        }
    }

    #[test]
    fn test_nothing_is_asked_for_past_the_window() {
        let limit = 3 * WINDOW_BYTES / 2;
        let mut ra = Readahead::new(limit);
        ra.on_read(0, KIB);
        ra.on_read(KIB, KIB);
        assert_eq!(
            ra.on_read(2 * KIB, KIB),
            Some(3 * KIB..WINDOW_BYTES + 3 * KIB)
        );
        let mut offset = 3 * KIB;
        while offset < limit {
            if let Some(range) = ra.on_read(offset, KIB) {
                assert!(range.end <= limit, "{range:?} past {limit}");
            }
            offset += KIB;
        }
        assert_eq!(ra.on_read(limit - KIB, KIB), None);
    }
}

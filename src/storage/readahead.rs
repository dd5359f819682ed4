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
//! continues it; the [`STREAM_READS`]th read of a stream asks for a first window of
//! [`WINDOW_START`] bytes past its end, and every read after that which comes within half
//! the next window of what was asked for asks for the next one, twice as large, up to
//! [`WINDOW_MAX`] (as the kernel's readahead ramps up): a short sequential read asks for
//! little, a long fast one stays a window or two ahead. A read near no stream starts one in
//! place of the least recently used: random reads ask for nothing.

use std::ops::Range;

/// A stream's first window (the kernel's default `read_ahead_kb` is 128 KiB).
pub const WINDOW_START: u64 = 128 << 10;

/// The largest window: cold sequential reads at queue depth 16 from this VM's disk (whose
/// `read_ahead_kb` is 8192) ran at 0.85x the kernel's readahead with fixed 1 MiB windows.
pub const WINDOW_MAX: u64 = 4 << 20;

/// How far a read may start before or after its stream's end and still continue it: requests
/// in flight together (up to 64 of 8.5 KiB, 544 KiB) are served in any order.
pub const REORDER_BYTES: u64 = 1 << 20;

/// Reads a stream needs, the first included, before it is read ahead: random reads that
/// happen to land near each other do not make a stream. With 3, random 1 KiB reads at queue
/// depth 16 over a cached 256 MiB file asked for a window about every 400 reads, and ran at
/// 0.92x the rate of the build without readahead (`cargo xtask bench --system xdp-defaults`
/// against it, 14 rounds, 2026-12-07); with 8, none, at 1.00x.
pub const STREAM_READS: u32 = 8;

/// Streams followed at once per export.
pub const STREAMS: usize = 4;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Stream {
    /// End of the furthest read of the stream (0 with `reads == 0`: an unused slot).
    end: u64,
    /// End of what was asked for ahead of it.
    ahead: u64,
    /// Size of the next window.
    window: u64,
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
                window: WINDOW_START,
                reads: 1,
                used: self.clock,
            };
            return None;
        };
        stream.end = stream.end.max(end);
        stream.reads = stream.reads.saturating_add(1);
        stream.used = self.clock;
        if stream.reads < STREAM_READS
            || stream.ahead >= stream.end.saturating_add(stream.window / 2)
        {
            return None;
        }
        let from = stream.ahead.max(stream.end);
        let to = from.saturating_add(stream.window).min(self.limit);
        stream.ahead = to.max(stream.ahead);
        stream.window = (stream.window * 2).min(WINDOW_MAX);
        (from < to).then_some(from..to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    /// Reads 1 KiB at `from`, `from + 1 KiB`, ... until just before the read that makes a
    /// stream, asserting that none asks for anything; returns where the next read goes.
    fn reads_short_of_a_stream(ra: &mut Readahead, from: u64) -> u64 {
        let mut offset = from;
        for _ in 1..STREAM_READS {
            assert_eq!(ra.on_read(offset, KIB), None, "at {offset}: no stream yet");
            offset += KIB;
        }
        offset
    }

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
    fn test_random_reads_that_land_near_each_other_now_and_then_ask_for_nothing() {
        // Four at a time within 1 MiB of each other, as random reads of a small disk land
        // now and then: no stream (a commit of random reads at queue depth 16 over 256 MiB
        // asked for a window every few hundred reads when three reads made a stream, and
        // cost 8 % of the rate; see STREAM_READS).
        let mut ra = Readahead::new(1 << 40);
        for i in 0..1000u64 {
            let base = (i / 4 * 7919 % 1000) * (64 << 20);
            let near = [0, 300, 100, 700][(i % 4) as usize] * KIB;
            assert_eq!(ra.on_read(base + near, KIB), None, "read {i}");
        }
    }

    #[test]
    fn test_a_sequential_stream_is_read_ahead_in_windows_that_grow() {
        let mut ra = Readahead::new(1 << 40);
        let mut offset = reads_short_of_a_stream(&mut ra, 0);
        assert_eq!(
            ra.on_read(offset, KIB),
            Some(offset + KIB..offset + KIB + WINDOW_START),
            "the read that makes the stream asks for a first window past its end"
        );
        let mut asked = offset + KIB + WINDOW_START;
        let mut size = WINDOW_START;
        let mut windows = 1;
        offset += KIB;
        while offset < 64 << 20 {
            if let Some(range) = ra.on_read(offset, KIB) {
                assert_eq!(
                    range.start, asked,
                    "each window starts where the last ended"
                );
                assert_eq!(
                    range.end - range.start,
                    (2 * size).min(WINDOW_MAX),
                    "twice the last, up to the largest"
                );
                assert!(
                    asked < offset + KIB + range.end - range.start,
                    "asked only when within the next window of the end: {range:?} at {offset}"
                );
                size = range.end - range.start;
                asked = range.end;
                windows += 1;
            }
            assert!(
                asked >= offset + KIB,
                "the stream never outruns what was asked for"
            );
            offset += KIB;
        }
        assert_eq!(size, WINDOW_MAX);
        // 128 KiB ... 2 MiB (4 MiB together), then 4 MiB windows to past 64 MiB.
        assert!((20..=22).contains(&windows), "{windows} windows");
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
        // All of them read in turn, one read each time round.
        let mut next = starts.clone();
        for round in 1..=STREAM_READS {
            for (stream, offset) in next.iter_mut().enumerate() {
                let asked = ra.on_read(*offset, KIB);
                assert_eq!(asked.is_some(), round == STREAM_READS, "stream {stream}");
                *offset += KIB;
            }
        }
        // A new stream replaces the least recently used (the first).
        assert_eq!(ra.on_read(9 << 30, KIB), None);
        let first = next[0];
        let after = reads_short_of_a_stream(&mut ra, first);
        assert_eq!(
            ra.on_read(after, KIB),
            Some(after + KIB..after + KIB + WINDOW_START),
            "asked for again: the first stream (read ahead to {}) was forgotten",
            first + WINDOW_START
        );
        for (stream, &end) in next.iter().enumerate().skip(3) {
            assert!(
                ra.streams.iter().any(|s| s.end == end),
                "stream {stream} is still followed"
            );
        }
    }

    #[test]
    fn test_nothing_is_asked_for_past_the_window() {
        let limit = 3 << 20;
        let mut ra = Readahead::new(limit);
        let mut offset = reads_short_of_a_stream(&mut ra, 0);
        assert_eq!(
            ra.on_read(offset, KIB),
            Some(offset + KIB..offset + KIB + WINDOW_START)
        );
        let mut asked = offset + KIB + WINDOW_START;
        offset += KIB;
        while offset < limit {
            if let Some(range) = ra.on_read(offset, KIB) {
                assert!(range.end <= limit, "{range:?} past {limit}");
                asked = range.end;
            }
            offset += KIB;
        }
        assert_eq!(asked, limit, "up to the end");
        assert_eq!(ra.on_read(limit - KIB, KIB), None);
    }
}

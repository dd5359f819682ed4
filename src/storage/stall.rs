//! Inline writes the kernel held up: when an export's writes go through the ring instead.
//!
//! A buffered write carried out on the worker's thread (`pwritev2`, or a copy through a
//! shared mapping) is a copy into the page cache, a few microseconds, unless the kernel pauses
//! the writer: dirty-page throttling (`balance_dirty_pages`) does once the dirty data of the
//! export's disk passes its share of the dirty limit, for up to 200 ms a time, and it keeps
//! doing so for as long as writes come faster than the disk takes them. On the worker that
//! pause holds up every device and port the worker serves. Through io_uring the same write is
//! carried out, and paused, by one of the ring's io-wq threads instead.
//!
//! There is no cheap way to ask the kernel whether the next write will be paused (the limits
//! are per disk, per memory cgroup and move with the disk's measured speed), so the engine
//! times each inline write run: one that took [`STALL`] or more marks its export
//! [`WritePause::stalled`], and the export's buffered writes go through the ring for
//! [`PAUSE_MIN`]. A stall soon after a pause ended (within the pause's own length) doubles
//! the next one, up to [`PAUSE_MAX`]; a later one starts again from [`PAUSE_MIN`]. So a disk
//! that keeps falling behind costs the worker one held write run per [`PAUSE_MAX`], and one
//! that caught up gets its inline writes back within the pause.
//!
//! Pure: the engine passes the clock in; this module does no I/O.

use std::time::{Duration, Instant};

/// An inline write run that kept the worker this long or longer was paused by the kernel
/// (a copy of 32 requests into cached pages takes tens of microseconds).
pub const STALL: Duration = Duration::from_millis(2);

/// How long an export's writes first go through the ring after a stall.
pub const PAUSE_MIN: Duration = Duration::from_secs(1);

/// The longest pause: a disk that keeps falling behind holds the worker once this often.
pub const PAUSE_MAX: Duration = Duration::from_secs(16);

/// One export's pause of inline writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WritePause {
    /// When the current or last pause ends; `None` before the first stall.
    until: Option<Instant>,
    /// How long the current or last pause lasts.
    length: Duration,
}

impl WritePause {
    /// Whether the export's buffered writes go through the ring at `now`.
    pub fn active(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// Records an inline write run that held the worker and ended at `now`: pauses the
    /// export's inline writes (see the module docs for how long).
    pub fn stalled(&mut self, now: Instant) {
        self.length = match self.until {
            Some(until) if now.saturating_duration_since(until) < self.length => {
                (self.length * 2).min(PAUSE_MAX)
            }
            _ => PAUSE_MIN,
        };
        self.until = Some(now + self.length);
    }

    /// How long the current or last pause lasts (zero before the first stall).
    pub fn length(&self) -> Duration {
        self.length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_no_pause_before_a_stall() {
        let pause = WritePause::default();
        assert!(!pause.active(Instant::now()));
        assert_eq!(pause.length(), Duration::ZERO);
    }

    #[test]
    fn test_a_stall_pauses_for_the_shortest_pause_and_then_ends() {
        let start = Instant::now();
        let mut pause = WritePause::default();
        pause.stalled(start);
        assert!(pause.active(start));
        assert!(pause.active(start + PAUSE_MIN - Duration::from_millis(1)));
        assert!(!pause.active(start + PAUSE_MIN));
    }

    #[test]
    fn test_stalls_right_after_each_pause_double_it_up_to_the_longest() {
        let mut now = Instant::now();
        let mut pause = WritePause::default();
        let mut lengths = Vec::new();
        for _ in 0..7 {
            pause.stalled(now);
            lengths.push(pause.length());
            // The first inline write after the pause stalls again.
            now += pause.length() + Duration::from_millis(5);
            assert!(!pause.active(now));
        }
        let secs: Vec<u64> = lengths.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 16, 16]);
    }

    #[test]
    fn test_a_stall_long_after_a_pause_starts_again_from_the_shortest() {
        let start = Instant::now();
        let mut pause = WritePause::default();
        pause.stalled(start);
        pause.stalled(start + PAUSE_MIN + Duration::from_millis(10));
        assert_eq!(pause.length(), 2 * PAUSE_MIN);
        // Ended at 1 s + 10 ms + 2 s; a stall more than 2 s after that: a new start.
        let later = start + PAUSE_MIN * 5 + Duration::from_millis(20);
        pause.stalled(later);
        assert_eq!(pause.length(), PAUSE_MIN);
        assert!(pause.active(later + PAUSE_MIN / 2));
    }
}

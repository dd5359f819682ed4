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
//! times each inline write run. A run that took [`STALL`] or more was held up, but not always
//! by the kernel: a worker that shares its core with the NAPI thread, or runs on a virtual
//! CPU, is preempted for a few milliseconds now and then (2-13 ms, a few times a second, in
//! the bench here), and sending a device's writes through the ring for that would cost it
//! throughput for nothing. So [`StallWatch`] asks the kernel how often the worker blocked
//! (its voluntary context switches, `getrusage`, about 1 µs): not on every write, but once
//! per commit for [`SUSPECT_FOR`] after a first slow run. A slow run during which the worker
//! blocked marks its export [`WritePause::stalled`], and the export's buffered writes go
//! through the ring for [`PAUSE_MIN`]. A stall soon after a pause ended (within the pause's
//! own length) doubles the next one, up to [`PAUSE_MAX`]; a later one starts again from
//! [`PAUSE_MIN`]. So a disk that keeps falling behind costs the worker one held write run per
//! [`PAUSE_MAX`], and one that caught up gets its inline writes back within the pause. The worker stays watchful
//! for [`SUSPECT_FOR`] after the longest pause, so a stall after a pause is known at once;
//! the very first one is only a suspicion, so the worker is held up twice before its first
//! pause.
//!
//! Pure: the engine passes the clock in; this module does no I/O.

use std::time::{Duration, Instant};

/// An inline write run that kept the worker this long or longer was held up (a copy of 32
/// requests into cached pages takes tens of microseconds): by the kernel if the worker
/// blocked meanwhile (see [`StallWatch`]), otherwise by a preemption.
pub const STALL: Duration = Duration::from_millis(2);

/// How long an export's writes first go through the ring after a stall.
pub const PAUSE_MIN: Duration = Duration::from_secs(1);

/// The longest pause: a disk that keeps falling behind holds the worker once this often.
pub const PAUSE_MAX: Duration = Duration::from_secs(16);

/// How long after a slow inline write run the engine counts the worker's voluntary context
/// switches (once per commit), to tell a wait in the kernel from a preemption.
pub const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// One engine's watch over its inline write runs (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StallWatch {
    /// Until when slow runs are checked: the switches are counted.
    suspect_until: Option<Instant>,
    /// The worker's voluntary switches before this commit's first inline write, while
    /// suspect.
    baseline: Option<u64>,
}

impl StallWatch {
    /// A new commit: its first inline write takes a new baseline if suspect.
    pub fn start_commit(&mut self) {
        self.baseline = None;
    }

    /// Whether the caller must count the worker's voluntary switches (and pass them to
    /// [`Self::set_baseline`]) before an inline write at `now`.
    pub fn needs_baseline(&self, now: Instant) -> bool {
        self.baseline.is_none() && self.suspect_until.is_some_and(|until| now < until)
    }

    /// The worker's voluntary switches before this commit's inline writes.
    pub fn set_baseline(&mut self, switches: u64) {
        self.baseline = Some(switches);
    }

    /// Whether a slow run needs the switches counted again after it (a baseline was taken).
    pub fn counting(&self) -> bool {
        self.baseline.is_some()
    }

    /// An inline write run that took [`STALL`] or more ended at `ended`; `switches` is the
    /// worker's count now where [`Self::counting`]. Returns whether the worker waited in the
    /// kernel (it blocked since the baseline): the caller pauses the export's inline writes.
    pub fn held(&mut self, ended: Instant, switches: Option<u64>) -> bool {
        match (self.baseline, switches) {
            (Some(before), Some(now)) if now > before => {
                self.baseline = Some(now);
                self.suspect_until = Some(ended + PAUSE_MAX + SUSPECT_FOR);
                true
            }
            // Preempted, not blocked.
            (Some(_), _) => false,
            (None, _) => {
                self.suspect_until = Some(ended + SUSPECT_FOR);
                false
            }
        }
    }
}

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
    fn test_a_first_slow_run_only_makes_the_watch_count() {
        let start = Instant::now();
        let mut watch = StallWatch::default();
        assert!(!watch.needs_baseline(start));
        assert!(!watch.held(start, None));
        // From now on, each commit's first inline write counts, for SUSPECT_FOR.
        watch.start_commit();
        assert!(watch.needs_baseline(start));
        assert!(!watch.needs_baseline(start + SUSPECT_FOR));
        watch.set_baseline(7);
        assert!(watch.counting());
        assert!(!watch.needs_baseline(start), "once per commit");
        watch.start_commit();
        assert!(watch.needs_baseline(start));
    }

    #[test]
    fn test_a_slow_run_that_blocked_is_held_and_one_preempted_is_not() {
        let start = Instant::now();
        let mut watch = StallWatch::default();
        watch.held(start, None);
        watch.start_commit();
        watch.set_baseline(7);
        assert!(!watch.held(start, Some(7)), "preempted: no switch");
        assert!(watch.held(start, Some(8)), "blocked");
        // The new count is the baseline for the rest of the commit.
        assert!(!watch.held(start, Some(8)));
        // Watchful through the longest pause and after it.
        watch.start_commit();
        assert!(watch.needs_baseline(start + PAUSE_MAX + SUSPECT_FOR / 2));
        assert!(!watch.needs_baseline(start + PAUSE_MAX + SUSPECT_FOR));
    }

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

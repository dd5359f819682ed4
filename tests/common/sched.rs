//! How long a thread that shares a core with a busy poller waits to run after it wakes.

use std::time::{Duration, Instant};

/// Wake-ups, of `rounds`, that ran more than 1 ms late for a thread pinned to `core` that
/// sleeps 200 µs and then works 500 µs, over and over: it wants most of the core, as a NAPI
/// thread under load does. A poller on that core that never gives it up keeps such a thread
/// waiting until the scheduler's tick (4 ms) ends the poller's slice; one that yields when it
/// finds nothing to do does not.
pub fn late_wake_ups(core: usize, rounds: u32) -> u32 {
    std::thread::spawn(move || {
        assert!(
            core_affinity::set_for_current(core_affinity::CoreId { id: core }),
            "pin the test thread to core {core}"
        );
        let mut late = 0;
        for _ in 0..rounds {
            let asleep = Instant::now();
            std::thread::sleep(Duration::from_micros(200));
            let woke = Instant::now();
            if woke - asleep > Duration::from_micros(1200) {
                late += 1;
            }
            while woke.elapsed() < Duration::from_micros(500) {
                std::hint::spin_loop();
            }
        }
        late
    })
    .join()
    .expect("the test thread")
}

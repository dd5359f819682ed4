//! What a worker counts, beside the worker: [`UnitStats`] for each of its ports, [`WorkerStats`]
//! for its device side. Plain integers, written only by the worker's own thread; the worker
//! copies them to the statistics board (`stats.rs`), which is all that readers see.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::port::KernelCounters;
use crate::storage::engine::EngineStats;
use crate::sys::frame::JumboStats;

/// Counters of one unit (one port). Plain integers: only its worker writes them.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct UnitStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames transmitted.
    pub tx_frames: u64,
    /// Frames not addressed to any device (or dropped by ACL, mask or test).
    pub ignored: u64,
    /// AoE requests refused before the target saw them because their destination MAC was
    /// another host's (neither the interface's nor broadcast); read from the port when
    /// published (see `Port::foreign_dst`).
    #[serde(default)]
    pub foreign_dst: u64,
    /// Storage requests queued for their device.
    pub io_submitted: u64,
    /// Replies sent although the state could not be saved.
    pub persist_errors: u64,
    /// Broadcast copies that found no free frame.
    pub no_frame: u64,
    /// The port's jumbo path (multi-buffer bounces, slab upgrades, drops).
    pub jumbo: JumboStats,
    /// The kernel's receive-side figures for the socket, read when published.
    #[serde(default)]
    pub kernel: KernelCounters,
    /// Frames the port's worker holds or has queued to send, when published (a level, not a
    /// count; 0 after the worker drained at shutdown).
    #[serde(default)]
    pub frames_held: u32,
}

/// Counters of one worker's device side.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct WorkerStats {
    /// Jobs taken from the owned devices' queues.
    pub jobs: u64,
    /// Jobs that came from another worker's port.
    pub remote_jobs: u64,
    /// Jobs the engine handed back because its queue was full (retried, not dropped).
    pub io_backlogged: u64,
    /// Major page faults of the worker's thread: copies through a mapping (`mapped-reads`,
    /// `mapped-writes`) that waited for a page to be read from the disk, holding up the
    /// worker meanwhile. Sampled when statistics are published.
    pub major_faults: u64,
    /// The engine's counters.
    pub engine: EngineStats,
}

/// Longest service time recorded exactly (longer ones count as this): 60 s.
const SERVICE_MAX_NS: u64 = 60_000_000_000;

/// Per device, the service times (request received to reply sent) of the reads, writes and
/// FLUSHes one worker's ports answered, in nanoseconds, two significant digits. Allocated
/// once; recording never allocates.
#[derive(Debug, Clone)]
pub struct ServiceTimes {
    devices: Vec<Histogram<u64>>,
}

impl ServiceTimes {
    /// Empty histograms for `devices` devices.
    pub fn new(devices: usize) -> ServiceTimes {
        ServiceTimes {
            devices: (0..devices).map(|_| new_histogram()).collect(),
        }
    }

    /// Counts one request of `device` that took `took`.
    pub fn record(&mut self, device: u16, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        if let Some(histogram) = self.devices.get_mut(usize::from(device)) {
            histogram.saturating_record(nanos);
        }
    }

    /// Per device.
    pub fn devices(&self) -> &[Histogram<u64>] {
        &self.devices
    }

    /// Makes `self` a copy of `other` (same devices): no allocation once sized.
    pub fn copy_from(&mut self, other: &ServiceTimes) {
        self.devices.resize_with(other.devices.len(), new_histogram);
        for (mine, theirs) in self.devices.iter_mut().zip(&other.devices) {
            mine.reset();
            mine.add(theirs).expect("histograms of the same bounds");
        }
    }
}

impl Default for ServiceTimes {
    fn default() -> Self {
        ServiceTimes::new(0)
    }
}

/// One device's histogram: 1 ns to [`SERVICE_MAX_NS`], two significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, SERVICE_MAX_NS, 2).expect("valid histogram bounds")
}

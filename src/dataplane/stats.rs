//! Statistics: the counters every worker keeps, published for the control socket
//! (`super::ctl`, configured as `control-socket`) and the metrics endpoint.
//!
//! Workers never block on statistics: every [`PUBLISH_INTERVAL`] a worker copies its counters
//! into its slot of the [`StatsBoard`] with `try_lock` (skipped if a reader holds the slot
//! right then, retried next time) and without allocating (slots are sized at start). A reader
//! (the statistics socket's thread) locks each slot briefly and sums. Figures are therefore up to
//! one interval old.
//!
//! The board also carries requests from the control socket to the workers: an announcement
//! ([`StatsBoard::request_announce`]) is counted, and each worker sends its advertisements when
//! it sees the count change (at its next publication).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::aoe::DeviceCounters;
use crate::storage::engine::EngineStats;

use super::counters::{UnitStats, WorkerStats};

/// How often a worker publishes its counters.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// One worker's published counters.
#[derive(Debug, Clone, Default)]
pub struct WorkerSlot {
    /// Per unit of the worker: (global unit index, counters).
    pub units: Vec<(u16, UnitStats)>,
    /// The device side.
    pub worker: WorkerStats,
    /// Per device (every device; the worker counts what its ports answered).
    pub devices: Vec<DeviceCounters>,
}

/// Where the workers publish; shared with the statistics socket.
#[derive(Debug)]
pub struct StatsBoard {
    started: Instant,
    /// `interface:queue:transport` per unit, by global index.
    ports: Vec<String>,
    /// `eSHELF.SLOT` per device.
    devices: Vec<String>,
    /// The owner worker per device.
    owners: Vec<usize>,
    slots: Box<[Mutex<WorkerSlot>]>,
    /// Announcements asked for so far (see [`StatsBoard::request_announce`]).
    announce: AtomicU64,
}

impl StatsBoard {
    /// A board for `workers` workers, with the names of every port and device.
    pub fn new(
        workers: usize,
        ports: Vec<String>,
        devices: Vec<String>,
        owners: Vec<usize>,
    ) -> StatsBoard {
        StatsBoard {
            started: Instant::now(),
            ports,
            devices,
            owners,
            slots: (0..workers)
                .map(|_| Mutex::new(WorkerSlot::default()))
                .collect(),
            announce: AtomicU64::new(0),
        }
    }

    /// Asks every worker to send its advertisements (at its next publication, within
    /// [`PUBLISH_INTERVAL`]).
    pub fn request_announce(&self) {
        // Release: a worker that sees the new count acts on this request.
        self.announce.fetch_add(1, Ordering::Release);
    }

    /// Announcements asked for so far; a worker advertises when this changes.
    pub fn announce_requests(&self) -> u64 {
        // Acquire: pairs with `request_announce`.
        self.announce.load(Ordering::Acquire)
    }

    /// The names of the devices, in device order.
    pub fn device_names(&self) -> &[String] {
        &self.devices
    }

    /// Number of devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Lets `worker` update its slot unless a reader holds it; `update` must not allocate
    /// once the slot has its size.
    pub fn publish(&self, worker: usize, update: impl FnOnce(&mut WorkerSlot)) -> bool {
        match self.slots[worker].try_lock() {
            Ok(mut slot) => {
                update(&mut slot);
                true
            }
            Err(_) => false,
        }
    }

    /// Sums the slots into a report.
    pub fn report(&self) -> Report {
        let mut ports: Vec<PortReport> = self
            .ports
            .iter()
            .map(|name| PortReport {
                name: name.clone(),
                ..PortReport::default()
            })
            .collect();
        let mut devices: Vec<DeviceReport> = self
            .devices
            .iter()
            .zip(&self.owners)
            .map(|(name, &owner)| DeviceReport {
                name: name.clone(),
                owner,
                ..DeviceReport::default()
            })
            .collect();
        let mut workers = Vec::with_capacity(self.slots.len());
        for slot in self.slots.iter() {
            // A worker that panicked while publishing left plain counters: still readable.
            let slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (unit, stats) in &slot.units {
                if let Some(port) = ports.get_mut(usize::from(*unit)) {
                    port.counters = *stats;
                }
            }
            for (report, counters) in devices.iter_mut().zip(&slot.devices) {
                report.counters.add(counters);
            }
            workers.push(WorkerReport::from(slot.worker));
        }
        Report {
            uptime_s: self.started.elapsed().as_secs_f64(),
            ports,
            devices,
            workers,
        }
    }
}

/// What `stats` answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Seconds since the dataplane started.
    pub uptime_s: f64,
    /// Per port (interface queue).
    pub ports: Vec<PortReport>,
    /// Per device, summed over workers.
    pub devices: Vec<DeviceReport>,
    /// Per worker: its device side.
    pub workers: Vec<WorkerReport>,
}

/// One port's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortReport {
    /// `interface:queue:transport`.
    pub name: String,
    /// Counters.
    #[serde(flatten)]
    pub counters: UnitStats,
}

/// One device's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceReport {
    /// `eSHELF.SLOT`.
    pub name: String,
    /// The worker that submits its I/O.
    pub owner: usize,
    /// Counters.
    #[serde(flatten)]
    pub counters: DeviceCounters,
}

/// One worker's device side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Jobs taken from the owned devices' queues.
    pub jobs: u64,
    /// Jobs that came from another worker's port.
    pub remote_jobs: u64,
    /// Jobs the engine handed back for a while (queue full).
    pub io_backlogged: u64,
    /// Major page faults of the worker's thread (copies through a mapping that waited for
    /// the disk).
    #[serde(default)]
    pub major_faults: u64,
    /// The storage engine's counters.
    pub engine: EngineStats,
}

impl From<WorkerStats> for WorkerReport {
    fn from(stats: WorkerStats) -> Self {
        WorkerReport {
            jobs: stats.jobs,
            remote_jobs: stats.remote_jobs,
            io_backlogged: stats.io_backlogged,
            major_faults: stats.major_faults,
            engine: stats.engine,
        }
    }
}

impl DeviceCounters {
    /// Adds `other` to `self`, field by field.
    fn add(&mut self, other: &DeviceCounters) {
        self.read_cmds += other.read_cmds;
        self.read_bytes += other.read_bytes;
        self.write_cmds += other.write_cmds;
        self.write_bytes += other.write_bytes;
        self.other_cmds += other.other_cmds;
        self.ata_errors += other.ata_errors;
        self.proto_errors += other.proto_errors;
        self.dropped += other.dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> StatsBoard {
        StatsBoard::new(
            2,
            vec!["vt0:0:af_xdp".into(), "vt1:0:af_packet".into()],
            vec!["e1.0".into()],
            vec![1],
        )
    }

    #[test]
    fn test_report_sums_devices_and_places_ports() {
        let board = board();
        for worker in 0..2u16 {
            assert!(board.publish(usize::from(worker), |slot| {
                slot.units = vec![(
                    worker,
                    UnitStats {
                        rx_frames: 10 + u64::from(worker),
                        ..UnitStats::default()
                    },
                )];
                slot.devices = vec![DeviceCounters {
                    read_cmds: 3,
                    write_bytes: 1024,
                    ..DeviceCounters::default()
                }];
                slot.worker.jobs = 5;
            }));
        }
        let report = board.report();
        assert_eq!(report.ports[0].name, "vt0:0:af_xdp");
        assert_eq!(report.ports[0].counters.rx_frames, 10);
        assert_eq!(report.ports[1].counters.rx_frames, 11);
        assert_eq!(report.devices[0].counters.read_cmds, 6);
        assert_eq!(report.devices[0].counters.write_bytes, 2048);
        assert_eq!(report.devices[0].owner, 1);
        assert_eq!(report.workers.len(), 2);
        assert_eq!(report.workers[1].jobs, 5);
    }

    #[test]
    fn test_publish_skips_a_slot_a_reader_holds() {
        let board = board();
        let held = board.slots[0].lock().expect("lock");
        assert!(!board.publish(0, |slot| slot.worker.jobs = 1));
        drop(held);
        assert!(board.publish(0, |slot| slot.worker.jobs = 1));
    }
}

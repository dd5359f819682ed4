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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::aoe::DeviceCounters;
use crate::storage::engine::EngineStats;

use hdrhistogram::Histogram;

use super::counters::{new_histogram, ServiceTimes, UnitStats, WorkerStats};

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
    /// Per device: service times of what the worker's ports answered.
    pub service: ServiceTimes,
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
        let mut service: Vec<Histogram<u64>> = devices.iter().map(|_| new_histogram()).collect();
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
            for (sum, histogram) in service.iter_mut().zip(slot.service.devices()) {
                sum.add(histogram).expect("histograms of the same bounds");
            }
            workers.push(WorkerReport::from(slot.worker));
        }
        for (report, histogram) in devices.iter_mut().zip(&service) {
            report.service_ns = ServiceTimeReport::from(histogram);
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
    /// Service times of its reads, writes and FLUSHes (request received to reply sent).
    #[serde(default)]
    pub service_ns: ServiceTimeReport,
}

/// A histogram of service times in nanoseconds, as `{"upper bound of a bucket": requests}`
/// (the buckets of two significant digits that hold any request). Subtracting two reports'
/// buckets gives the interval between them ([`ServiceTimeReport::since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTimeReport {
    /// Requests per bucket, by the bucket's highest value (ns).
    pub buckets: BTreeMap<u64, u64>,
}

impl From<&Histogram<u64>> for ServiceTimeReport {
    fn from(histogram: &Histogram<u64>) -> Self {
        ServiceTimeReport {
            buckets: histogram
                .iter_recorded()
                .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
                .collect(),
        }
    }
}

impl ServiceTimeReport {
    /// Requests counted.
    pub fn count(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The service time (ns, a bucket's upper bound) under which `quantile` (0..=1) of the
    /// requests finished; `None` without requests.
    pub fn quantile(&self, quantile: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the request at `quantile`, 1-based, as hdrhistogram counts it.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a rank between 0 and count, which fits"
        )]
        let rank = ((quantile.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.buckets.iter().find_map(|(&value, &requests)| {
            seen += requests;
            (seen >= rank).then_some(value)
        })
    }

    /// The requests counted since `before` (an earlier report of the same device).
    pub fn since(&self, before: &ServiceTimeReport) -> ServiceTimeReport {
        ServiceTimeReport {
            buckets: self
                .buckets
                .iter()
                .map(|(&value, &count)| {
                    let old = before.buckets.get(&value).copied().unwrap_or(0);
                    (value, count.saturating_sub(old))
                })
                .filter(|&(_, count)| count > 0)
                .collect(),
        }
    }
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

    #[test]
    fn test_service_times_give_quantiles_over_an_interval() {
        let mut histogram = new_histogram();
        for micros in [10, 10, 20, 30, 1000] {
            histogram.record(micros).unwrap();
        }
        let before = ServiceTimeReport::from(&histogram);
        assert_eq!(before.count(), 5);
        assert_eq!(before.quantile(0.5), Some(20));
        assert_eq!(
            before.quantile(0.99),
            Some(histogram.highest_equivalent(1000))
        );
        for _ in 0..10 {
            histogram.record(500).unwrap();
        }
        let after = ServiceTimeReport::from(&histogram);
        let interval = after.since(&before);
        assert_eq!(interval.count(), 10);
        assert_eq!(
            interval.quantile(0.5),
            Some(histogram.highest_equivalent(500))
        );
        assert_eq!(ServiceTimeReport::default().quantile(0.5), None);
    }

    #[test]
    fn test_report_merges_the_workers_service_times() {
        let board = board();
        for worker in 0..2 {
            board.publish(worker, |slot| {
                let mut times = ServiceTimes::new(1);
                times.record(0, Duration::from_nanos(40 + 100 * worker as u64));
                slot.service.copy_from(&times);
            });
        }
        let service = &board.report().devices[0].service_ns;
        assert_eq!(service.count(), 2);
        assert_eq!(service.quantile(0.5), Some(40));
        assert_eq!(service.quantile(1.0), Some(140));
    }
}

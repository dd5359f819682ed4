//! Statistics: the counters every worker keeps, published for the statistics socket
//! ([`StatsSocket`], configured as `control-socket`).
//!
//! Workers never block on statistics: every [`PUBLISH_INTERVAL`] a worker copies its counters
//! into its slot of the [`StatsBoard`] with `try_lock` (skipped if a reader holds the slot
//! right then, retried next time) and without allocating (slots are sized at start). A reader
//! (the statistics socket's thread) locks each slot briefly and sums. Figures are therefore up to
//! one interval old.
//!
//! The statistics socket (`target.control-socket`, a Unix stream socket, mode 0600) answers one
//! command per connection: a line `stats` gets the [`Report`] as one line of JSON. `aoe-xdp
//! --stats` is its client. A socket file whose server is gone (a crash) is replaced; one
//! that a live process answers on is left alone and this instance runs without one (with a
//! warning): statistics are not worth refusing to serve storage.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::aoe::DeviceCounters;
use crate::storage::engine::EngineStats;

use super::counters::{UnitStats, WorkerStats};

/// How often a worker publishes its counters.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// How long the statistics socket waits for a client's command.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the statistics socket's thread looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

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
        }
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

/// Why the statistics socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StatsSocketError {
    /// Another live process answers on the path.
    #[error("{0} is in use by a running process; set target.control-socket to another path")]
    InUse(PathBuf),
    /// Socket or file system error.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The server's answer was not a report.
    #[error("{path}: unexpected answer: {answer}")]
    Answer {
        /// The socket path.
        path: PathBuf,
        /// What came back.
        answer: String,
    },
}

/// The statistics socket's server thread; stops and removes the socket file on drop.
#[derive(Debug)]
pub struct StatsSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatsSocket {
    /// Binds `path` (replacing a stale socket file) and serves `board` from a thread.
    pub fn start(path: &Path, board: Arc<StatsBoard>) -> Result<StatsSocket, StatsSocketError> {
        let io = |source| StatsSocketError::Io {
            path: path.to_owned(),
            source,
        };
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(StatsSocketError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("aoe-control".into())
                .spawn(move || serve(&listener, &board, &stop))
                .map_err(io)?
        };
        Ok(StatsSocket {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StatsSocket {
    fn drop(&mut self) {
        // Release: pairs with the server thread's Acquire load.
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a client running as `peer` may use the socket of a target running as `own`: root,
/// or the target's own user (in addition to the socket file's mode, `0600`).
fn peer_allowed(peer: rustix::process::Uid, own: rustix::process::Uid) -> bool {
    peer.is_root() || peer == own
}

fn serve(listener: &UnixListener, board: &StatsBoard, stop: &AtomicBool) {
    let own = rustix::process::geteuid();
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => match rustix::net::sockopt::socket_peercred(&stream) {
                Ok(peer) if peer_allowed(peer.uid, own) => {
                    if let Err(error) = answer(stream, board) {
                        tracing::debug!(%error, "control socket client");
                    }
                }
                Ok(peer) => {
                    tracing::warn!(
                        uid = peer.uid.as_raw(),
                        pid = peer.pid.as_raw_nonzero().get(),
                        "control socket: refused a client that is neither root nor this \
                         target's user"
                    );
                    let _ = refuse(&stream);
                }
                Err(error) => tracing::warn!(%error, "control socket: no peer credentials"),
            },
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
            }
            Err(error) => {
                tracing::warn!(%error, "control socket accept failed");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Tells a refused client why, without reading what it sent.
fn refuse(stream: &UnixStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut writer = stream;
    writeln!(
        writer,
        "{{\"error\":\"permission denied: only root or the target's own user may ask\"}}"
    )
}

fn answer(stream: UnixStream, board: &StatsBoard) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(256)).read_line(&mut line)?;
    let mut writer = &stream;
    match line.trim() {
        "stats" => {
            let json = serde_json::to_string(&board.report()).map_err(std::io::Error::other)?;
            writeln!(writer, "{json}")
        }
        other => writeln!(
            writer,
            "{{\"error\":{}}}",
            serde_json::Value::String(format!("unknown command {other:?}; try \"stats\""))
        ),
    }
}

/// Asks the aoe-xdp serving `path` for its statistics.
pub fn query(path: &Path) -> Result<Report, StatsSocketError> {
    let io = |source| StatsSocketError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT * 2))
        .map_err(io)?;
    stream.write_all(b"stats\n").map_err(io)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|_| StatsSocketError::Answer {
        path: path.to_owned(),
        answer: line.trim().to_owned(),
    })
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
    use rustix::process::Uid;

    #[test]
    fn test_only_root_and_the_targets_own_user_may_ask() {
        let (user, other) = (Uid::from_raw(1000), Uid::from_raw(1001));
        assert!(peer_allowed(Uid::ROOT, user));
        assert!(peer_allowed(user, user));
        assert!(!peer_allowed(other, user));
        assert!(peer_allowed(Uid::ROOT, Uid::ROOT));
        assert!(!peer_allowed(user, Uid::ROOT));
    }

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
    fn test_stats_socket_serves_stats_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run").join("ctl.sock");
        let board = Arc::new(board());
        board.publish(0, |slot| slot.worker.remote_jobs = 9);
        let socket = StatsSocket::start(&path, Arc::clone(&board)).expect("start");
        let report = query(&path).expect("query");
        assert_eq!(report.workers[0].remote_jobs, 9);
        assert_eq!(report.devices[0].name, "e1.0");

        // A second server on a live socket is refused; an unknown command gets an error.
        assert!(matches!(
            StatsSocket::start(&path, Arc::clone(&board)),
            Err(StatsSocketError::InUse(_))
        ));
        let mut stream = UnixStream::connect(&path).expect("connect");
        stream.write_all(b"reboot\n").expect("write");
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).expect("read");
        assert!(line.contains("unknown command"), "{line}");

        drop(socket);
        assert!(!path.exists(), "socket file removed");
        // A stale file (no server) is replaced.
        std::fs::write(&path, b"").expect("stale file");
        let socket = StatsSocket::start(&path, board).expect("restart over a stale file");
        assert!(query(socket.path()).is_ok());
    }
}

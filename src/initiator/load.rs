//! The load generator: many tagged AoE requests in flight on every path to one or more
//! devices, from one busy-polling thread.
//!
//! Contract: [`run`] drives the devices over the given paths (one path = one local interface
//! and one target MAC answering for one device; each device has its own request stream, all
//! inside `0..range_sectors`) until a duration or a byte count is reached, then
//! drains the requests in flight and returns a [`Report`]. Each path keeps a [`Window`] of at
//! most `min(depth, buffer count)` requests in flight; a request is retransmitted with a new
//! tag after `timeout` and fails after `tries` transmissions (counted as an error). Replies with
//! a stale tag, or from another device or target, are ignored. With `verify` (one device), the
//! whole range is first written sequentially with
//! self-describing sectors ([`verify::stamp`]); then every write stamps a new generation and
//! every read is compared byte for byte with what the [`Ledger`] says the sectors hold.
//!
//! Lean by construction: one [`BurstSocket`] per interface (replies read from its receive ring
//! without a syscall, one `sendmmsg` per loop round for all paths on it), every buffer, slot and
//! the latency histogram allocated before the first request, one clock read per round, no
//! sleeping (the loop busy-polls; pin it to a core). Nothing allocates per request (only the
//! progress line, once a second). The progress line's "busy" is the share of time spent in
//! rounds that moved a request; the rest is polling.
//!
//! Hazards:
//! - Latency is measured from a request's first transmission to its reply's reception in the
//!   round that received it, so it includes up to one round of batching delay.
//! - A timeout on a path cuts its window to one request and slow-starts it again (see
//!   [`Window`]), as the Linux driver does; the timeout itself is fixed (`--timeout-ms`), not
//!   adapted to the measured round trip as the driver's is.
//! - With `verify`, requests never overlap while in flight (sectors are locked); a generated
//!   request that overlaps one in flight is replaced by another, or issuing waits a round.

pub mod discover;
pub mod reflect;
pub mod verify;
pub mod window;
pub mod workload;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

pub use self::discover::{discover, Discovered};
use self::verify::{Ledger, UNKNOWN};
use self::window::{Window, SLOTS_MAX};
use self::workload::{Io, Op, Pattern, Workload};
use super::frames::{self, AtaCmd, Reply, Route};
use crate::sys::packet::burst::{BurstConfig, BurstSocket};
use crate::wire::ata::status;
use crate::wire::{AoeCommand, MacAddr, SECTOR_SIZE};

/// Most sectors `verify` can track (4 bytes each: a 512 MiB ledger for 64 GiB).
pub const VERIFY_SECTORS_MAX: u64 = 1 << 27;
/// Bytes of Ethernet, AoE and ATA headers before the data of an untagged ATA frame.
const ATA_DATA_OFFSET: usize = 36;
/// Replies taken from the receive ring per round, requests sent per `sendmmsg`.
const BATCH: usize = 64;
/// How often expired requests are looked for.
const TIMEOUT_SCAN_NS: u64 = 1_000_000;
/// Tries to find a request that overlaps none in flight (`verify` only) before waiting a round.
const PICK_TRIES: u32 = 8;

/// One path to a device: a local interface and a target MAC that answered on it for the
/// device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathSpec {
    /// The device (an index into [`LoadConfig::devices`]).
    pub device: usize,
    /// Local interface.
    pub interface: String,
    /// Its MAC (requests come from it).
    pub local_mac: MacAddr,
    /// Its MTU (bounds the frame size).
    pub mtu: usize,
    /// The target's MAC on this path.
    pub target_mac: MacAddr,
    /// The target's advertised buffer count on this path.
    pub buffer_count: u16,
    /// Sectors per request on this path (≥ 1, within what the target and the MTU allow).
    pub sectors: u8,
}

/// When the measured phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this long (after the warmup).
    Duration(Duration),
    /// Once this many bytes were requested (after the warmup).
    Bytes(u64),
}

/// A device the load goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// Shelf.
    pub shelf: u16,
    /// Slot.
    pub slot: u8,
    /// Use LBA48 commands.
    pub lba48: bool,
}

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// The devices (at least one). Each has its own request stream over its paths (its own
    /// sequential position, its own random sequence); `--verify` takes one device.
    pub devices: Vec<Device>,
    /// Reads, writes or both.
    pub op: Op,
    /// Sequential or random.
    pub pattern: Pattern,
    /// Requests in flight per path (also capped by the path's buffer count).
    pub depth: usize,
    /// New requests per second over all paths (`None`: as fast as the windows allow). A fixed
    /// offered load, for measuring what a request costs a target that is not saturated.
    pub rate: Option<u64>,
    /// When to stop.
    pub stop: Stop,
    /// Requests stay in sectors `0..range_sectors` (of every device).
    pub range_sectors: u64,
    /// Pre-write the range and verify every read.
    pub verify: bool,
    /// Run this long before measuring.
    pub warmup: Duration,
    /// Retransmit a request not answered within this long.
    pub timeout: Duration,
    /// Transmissions before a request fails.
    pub tries: u32,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
    /// Seed of the random pattern.
    pub seed: u64,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// Requests completed on one path.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathReport {
    /// Local interface.
    pub interface: String,
    /// Target MAC, `aa:bb:..`.
    pub target_mac: String,
    /// The device, `SHELF.SLOT`.
    pub device: String,
    /// Requests completed successfully in the measured phase.
    pub requests: u64,
}

/// The result of a run (the measured phase only). Serialized as `aoe-bench load --json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Requests completed successfully.
    pub requests: u64,
    /// Bytes they moved.
    pub bytes: u64,
    /// Seconds from the end of the warmup to the last reply.
    pub duration_s: f64,
    /// `requests / duration_s`.
    pub iops: f64,
    /// `bytes / duration_s / 10^6`.
    pub mb_per_s: f64,
    /// Latency of successful requests, first transmission to reply.
    pub lat_us: Latency,
    /// Retransmissions (each with a new tag).
    pub retransmits: u64,
    /// Requests that failed: AoE or ATA error, malformed or short reply, no reply after every
    /// try.
    pub errors: u64,
    /// Sectors read back that differ from what was last written (with `verify`).
    pub verify_failures: u64,
    /// Per path.
    pub paths: Vec<PathReport>,
}

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration is unusable.
    #[error("invalid load: {0}")]
    Config(String),
    /// A socket failed.
    #[error("packet socket on {interface}")]
    Socket {
        /// Interface.
        interface: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// What a slot remembers about its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Request {
    io: Io,
    /// Generation stamped into a write's sectors (`verify`), else 0.
    stamp: u32,
}

#[derive(Debug)]
struct Path {
    route: Route,
    /// Index into [`LoadConfig::devices`] (and the workloads).
    device: usize,
    lba48: bool,
    port: usize,
    sectors: u8,
    window: Window<Request>,
    requests: u64,
}

#[derive(Debug)]
struct Port {
    interface: String,
    socket: BurstSocket,
    /// Paths on this interface (indexes into `State::paths`).
    paths: Vec<usize>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    requests: u64,
    bytes: u64,
    retransmits: u64,
    errors: u64,
    verify_failures: u64,
    latency_sum_ns: u64,
    /// Time spent in rounds that received or sent something (the rest is polling).
    busy_ns: u64,
}

/// Everything but the sockets, so replies (borrowed from a socket) can update it.
#[derive(Debug)]
struct State {
    tries: u32,
    paths: Vec<Path>,
    ledger: Option<Ledger>,
    write_generation: u32,
    histogram: Histogram<u64>,
    counters: Counters,
    /// Bytes requested in the current phase (for `Stop::Bytes`).
    issued_bytes: u64,
    /// Expired slots of one path (capacity SLOTS_MAX, never grows).
    expired: Vec<usize>,
    /// Error messages printed so far (the first few of each run are shown).
    errors_shown: u32,
}

/// Runs the load described by `config` over `paths`; `stop` (e.g. set by SIGINT) ends the
/// measured phase early.
pub fn run(
    paths: &[PathSpec],
    config: &LoadConfig,
    stop: &AtomicBool,
) -> Result<Report, LoadError> {
    validate(paths, config)?;
    let (mut ports, path_states) = open(paths, config)?;
    let histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|error| LoadError::Config(format!("histogram: {error}")))?;
    let ledger = config.verify.then(|| {
        Ledger::new(usize::try_from(config.range_sectors).expect("bounded by VERIFY_SECTORS_MAX"))
    });
    let mut state = State {
        tries: config.tries.max(1),
        paths: path_states,
        ledger,
        write_generation: 0,
        histogram,
        counters: Counters::default(),
        issued_bytes: 0,
        expired: Vec::with_capacity(SLOTS_MAX),
        errors_shown: 0,
    };
    let origin = Instant::now();
    if config.verify {
        let started = Instant::now();
        // One device (see `validate`).
        let mut prefill = [Workload::new(
            Op::Write,
            Pattern::Sequential,
            config.range_sectors,
            0,
        )];
        let bytes = config.range_sectors * SECTOR_SIZE as u64;
        let phase = Phase {
            stop: Stop::Bytes(bytes),
            warmup: Duration::ZERO,
            progress: false,
        };
        run_phase(
            &mut ports,
            &mut state,
            &mut prefill,
            &phase,
            config,
            origin,
            stop,
        )?;
        if config.progress {
            eprintln!(
                "verify: wrote {} sectors in {:.2} s ({} errors)",
                config.range_sectors,
                started.elapsed().as_secs_f64(),
                state.counters.errors
            );
        }
    }
    // Each device its own stream: its own sequential position, its own random sequence.
    let mut workloads: Vec<Workload> = (0..config.devices.len())
        .map(|index| {
            let seed = config.seed.wrapping_add(index as u64);
            Workload::new(config.op, config.pattern, config.range_sectors, seed)
        })
        .collect();
    let phase = Phase {
        stop: config.stop,
        warmup: config.warmup,
        progress: config.progress,
    };
    let measured_ns = run_phase(
        &mut ports,
        &mut state,
        &mut workloads,
        &phase,
        config,
        origin,
        stop,
    )?;
    Ok(report(&state, &ports, measured_ns))
}

fn validate(paths: &[PathSpec], config: &LoadConfig) -> Result<(), LoadError> {
    let fail = |what: String| Err(LoadError::Config(what));
    if paths.is_empty() {
        return fail("no path to the device".into());
    }
    if config.verify && config.devices.len() != 1 {
        return fail("--verify checks one device at a time: give one --target".into());
    }
    if let Some(path) = paths.iter().find(|p| p.device >= config.devices.len()) {
        return fail(format!(
            "a path on {} names device {} of {}",
            path.interface,
            path.device,
            config.devices.len()
        ));
    }
    if let Some(device) = (0..config.devices.len())
        .find(|&index| !paths.iter().any(|p| p.device == index))
        .map(|index| config.devices[index])
    {
        return fail(format!("no path to e{}.{}", device.shelf, device.slot));
    }
    if config.range_sectors == 0 {
        return fail("the range is empty".into());
    }
    if config.verify && config.range_sectors > VERIFY_SECTORS_MAX {
        return fail(format!(
            "--verify tracks at most {VERIFY_SECTORS_MAX} sectors: give a smaller --range-sectors"
        ));
    }
    for path in paths {
        let frame_sectors = path.mtu.saturating_sub(ATA_DATA_OFFSET) / SECTOR_SIZE;
        if path.sectors == 0 || usize::from(path.sectors) > frame_sectors {
            return fail(format!(
                "{} sectors per request do not fit the MTU {} of {}",
                path.sectors, path.mtu, path.interface
            ));
        }
    }
    Ok(())
}

fn open(paths: &[PathSpec], config: &LoadConfig) -> Result<(Vec<Port>, Vec<Path>), LoadError> {
    let mut ports: Vec<Port> = Vec::new();
    let mut states = Vec::with_capacity(paths.len());
    for (index, spec) in paths.iter().enumerate() {
        let port = match ports.iter().position(|p| p.interface == spec.interface) {
            Some(port) => port,
            None => {
                let frame_size = (spec.mtu + 18).next_multiple_of(64);
                let socket = BurstSocket::open(
                    &spec.interface,
                    BurstConfig {
                        batch: BATCH,
                        frame_size,
                    },
                )
                .map_err(|source| LoadError::Socket {
                    interface: spec.interface.clone(),
                    source,
                })?;
                ports.push(Port {
                    interface: spec.interface.clone(),
                    socket,
                    paths: Vec::new(),
                });
                ports.len() - 1
            }
        };
        ports[port].paths.push(index);
        let limit = config
            .depth
            .min(usize::from(spec.buffer_count.max(1)))
            .clamp(1, SLOTS_MAX);
        let device = config.devices[spec.device];
        states.push(Path {
            route: Route {
                dst: spec.target_mac,
                src: spec.local_mac,
                vlan_tci: None,
                shelf: device.shelf,
                slot: device.slot,
            },
            device: spec.device,
            lba48: device.lba48,
            port,
            sectors: spec.sectors,
            window: Window::new(limit),
            requests: 0,
        });
    }
    Ok((ports, states))
}

/// How one phase (the verify pre-write, or the measured run) ends.
struct Phase {
    stop: Stop,
    warmup: Duration,
    progress: bool,
}

fn elapsed_ns(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs one phase to its end and drains it; returns the measured nanoseconds.
fn run_phase(
    ports: &mut [Port],
    state: &mut State,
    workloads: &mut [Workload],
    phase: &Phase,
    config: &LoadConfig,
    origin: Instant,
    stop: &AtomicBool,
) -> Result<u64, LoadError> {
    let timeout_ns = duration_ns(config.timeout);
    let started = elapsed_ns(origin);
    let measure_from = started + duration_ns(phase.warmup);
    let mut measuring = false;
    let mut issuing = true;
    let mut drain_deadline = u64::MAX;
    let mut next_scan = started + TIMEOUT_SCAN_NS;
    let mut next_progress = measure_from + 1_000_000_000;
    let mut last = state.counters;
    state.issued_bytes = 0;
    let mut round_start = started;
    let mut round_busy = false;
    // New requests issued in this phase, for `config.rate`.
    let mut issued_requests = 0u64;
    loop {
        let now = elapsed_ns(origin);
        if round_busy {
            state.counters.busy_ns += now - round_start;
        }
        round_start = now;
        let progress_before = (
            state.counters.requests + state.counters.errors,
            state.issued_bytes,
        );
        if !measuring && now >= measure_from {
            measuring = true;
            state.reset_measurement();
            last = state.counters;
        }
        for port in ports.iter_mut() {
            receive(port, state, now)?;
        }
        if issuing {
            // Relaxed: the flag carries no data; a late observation only delays the stop.
            let ended = stop.load(Ordering::Relaxed)
                || match phase.stop {
                    Stop::Duration(limit) => measuring && now >= measure_from + duration_ns(limit),
                    Stop::Bytes(limit) => measuring && state.issued_bytes >= limit,
                };
            if ended {
                issuing = false;
                drain_deadline =
                    now + timeout_ns.saturating_mul(u64::from(state.tries)) + 100_000_000;
            }
        }
        if now >= next_scan {
            state.retransmit_expired(ports, now, timeout_ns)?;
            next_scan = now + TIMEOUT_SCAN_NS;
        }
        if issuing {
            let budget = match phase.stop {
                Stop::Bytes(limit) if measuring => Some(limit),
                _ => None,
            };
            // With a rate: only as many new requests as the elapsed time allows.
            let allowed = config.rate.map(|rate| {
                let elapsed = u128::from(now - started);
                let due =
                    u64::try_from(elapsed * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX);
                due.saturating_add(1).saturating_sub(issued_requests)
            });
            issued_requests += state.issue(ports, workloads, now, budget, allowed)?;
        }
        round_busy = progress_before
            != (
                state.counters.requests + state.counters.errors,
                state.issued_bytes,
            );
        for port in ports.iter_mut() {
            flush(port)?;
        }
        if !issuing {
            if state.outstanding() == 0 {
                return Ok(now.saturating_sub(measure_from));
            }
            if now >= drain_deadline {
                state.abandon_all();
                return Ok(now.saturating_sub(measure_from));
            }
        }
        if phase.progress && measuring && now >= next_progress {
            progress(state, &last, now - measure_from);
            last = state.counters;
            next_progress += 1_000_000_000;
        }
    }
}

fn receive(port: &mut Port, state: &mut State, now: u64) -> Result<(), LoadError> {
    let count = port
        .socket
        .recv_batch()
        .map_err(|source| LoadError::Socket {
            interface: port.interface.clone(),
            source,
        })?;
    for index in 0..count {
        state.on_frame(&port.paths, port.socket.rx_frame(index), now);
    }
    Ok(())
}

fn flush(port: &mut Port) -> Result<(), LoadError> {
    port.socket
        .flush()
        .map(drop)
        .map_err(|source| LoadError::Socket {
            interface: port.interface.clone(),
            source,
        })
}

/// Writes the request frame for `request` with `tag` into `buf`; returns its length.
fn encode(buf: &mut [u8], route: &Route, tag: u32, request: &Request, lba48: bool) -> usize {
    let io = request.io;
    if !io.write {
        return frames::ata(buf, route, tag, &AtaCmd::read(io.lba, io.count, lba48), &[]);
    }
    debug_assert!(
        route.vlan_tci.is_none(),
        "data offset assumes untagged frames"
    );
    frames::ata(
        buf,
        route,
        tag,
        &AtaCmd::write(io.lba, io.count, lba48),
        &[],
    );
    let end = ATA_DATA_OFFSET + usize::from(io.count) * SECTOR_SIZE;
    if request.stamp != 0 {
        let sectors = buf[ATA_DATA_OFFSET..end].chunks_exact_mut(SECTOR_SIZE);
        for (lba, sector) in (io.lba..).zip(sectors) {
            verify::stamp(sector, lba, request.stamp);
        }
    }
    end
}

/// Why a reply fails its request.
#[derive(Debug)]
enum Failure {
    Aoe(crate::wire::AoeError),
    Ata { status: u8, error: u8 },
    Malformed,
    Short { got: usize, want: usize },
    Timeout { tries: u32 },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Aoe(error) => write!(f, "AoE error {error:?}"),
            Failure::Ata { status, error } => {
                write!(f, "ATA status {status:#04x} error {error:#04x}")
            }
            Failure::Malformed => f.write_str("malformed reply"),
            Failure::Short { got, want } => write!(f, "short read reply ({got} of {want} bytes)"),
            Failure::Timeout { tries } => write!(f, "no reply after {tries} tries"),
        }
    }
}

impl State {
    fn outstanding(&self) -> usize {
        self.paths.iter().map(|p| p.window.outstanding()).sum()
    }

    fn reset_measurement(&mut self) {
        self.counters = Counters::default();
        self.histogram.reset();
        self.issued_bytes = 0;
        for path in &mut self.paths {
            path.requests = 0;
        }
    }

    /// Handles one received frame (anything that is not a current reply is ignored).
    fn on_frame(&mut self, port_paths: &[usize], frame: &[u8], now: u64) {
        let Some(reply) = Reply::parse(frame) else {
            return;
        };
        if reply.aoe.command != AoeCommand::Ata {
            return; // e.g. a config advertisement
        }
        let Some(&path_index) = port_paths.iter().find(|&&index| {
            let route = &self.paths[index].route;
            route.dst == reply.src
                && route.shelf == reply.aoe.major
                && route.slot == reply.aoe.minor
        }) else {
            return; // another device, or another target
        };
        let path = &mut self.paths[path_index];
        let Some(done) = path.window.complete(reply.aoe.tag) else {
            return; // stale: answers a transmission that was retransmitted, or a duplicate
        };
        let request = done.request;
        let want = usize::try_from(request.io.bytes()).expect("at most 255 sectors");
        let outcome = match (reply.error(), reply.ata()) {
            (Some(error), _) => Err(Failure::Aoe(error)),
            (None, None) => Err(Failure::Malformed),
            (None, Some((ata, _)))
                if ata.cmd_status & (status::BSY | status::DF | status::DRQ | status::ERR) != 0 =>
            {
                Err(Failure::Ata {
                    status: ata.cmd_status,
                    error: ata.err_feature,
                })
            }
            (None, Some((_, data))) if !request.io.write && data.len() < want => {
                Err(Failure::Short {
                    got: data.len(),
                    want,
                })
            }
            (None, Some((_, data))) => Ok(data),
        };
        match outcome {
            Ok(data) => {
                path.requests += 1;
                self.verify_completion(&request, &data[..if request.io.write { 0 } else { want }]);
                self.counters.requests += 1;
                self.counters.bytes += request.io.bytes();
                let latency = now.saturating_sub(done.first_sent_ns);
                self.counters.latency_sum_ns += latency;
                self.histogram.saturating_record(latency.max(1));
            }
            Err(failure) => self.fail(&request, &failure),
        }
    }

    fn verify_completion(&mut self, request: &Request, data: &[u8]) {
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        let io = request.io;
        if io.write {
            ledger.unlock(io.lba, io.count, Some(request.stamp));
            return;
        }
        let (failures, first) = ledger.check(io.lba, data);
        ledger.unlock(io.lba, io.count, None);
        self.counters.verify_failures += u64::from(failures);
        if let Some(mismatch) = first {
            if self.errors_shown < 10 {
                self.errors_shown += 1;
                eprintln!(
                    "verify: sector {} should hold generation {} but claims to be sector {} \
                     generation {} ({failures} bad sectors in this read)",
                    mismatch.lba, mismatch.expected_generation, mismatch.found.0, mismatch.found.1
                );
            }
        }
    }

    fn fail(&mut self, request: &Request, failure: &Failure) {
        self.counters.errors += 1;
        if let Some(ledger) = self.ledger.as_mut() {
            // A failed write leaves its sectors in an unknown state.
            let after = request.io.write.then_some(UNKNOWN);
            ledger.unlock(request.io.lba, request.io.count, after);
        }
        if self.errors_shown < 10 {
            self.errors_shown += 1;
            eprintln!(
                "error: {} of {} sectors at {}: {failure}",
                if request.io.write { "write" } else { "read" },
                request.io.count,
                request.io.lba
            );
        }
    }

    /// A request for `path` that overlaps none in flight, or `None` to wait a round.
    fn pick(&mut self, workload: &mut Workload, sectors: u8) -> Option<Io> {
        let Some(ledger) = self.ledger.as_mut() else {
            return Some(workload.next_io(sectors));
        };
        (0..PICK_TRIES)
            .map(|_| workload.next_io(sectors))
            .find(|io| ledger.try_lock(io.lba, io.count))
    }

    fn next_stamp(&mut self, io: &Io) -> u32 {
        if self.ledger.is_none() || !io.write {
            return 0;
        }
        // Generations live in 1..2^31 (0 means unknown, the top bit is the ledger's lock).
        self.write_generation = self.write_generation % ((1 << 31) - 1) + 1;
        self.write_generation
    }

    /// Fills every path's window (until `budget` bytes were requested, if given), each with
    /// requests from its device's workload.
    fn issue(
        &mut self,
        ports: &mut [Port],
        workloads: &mut [Workload],
        now: u64,
        budget: Option<u64>,
        allowed: Option<u64>,
    ) -> Result<u64, LoadError> {
        let mut issued = 0u64;
        for index in 0..self.paths.len() {
            let port = &mut ports[self.paths[index].port];
            while self.paths[index].window.has_space()
                && budget.is_none_or(|limit| self.issued_bytes < limit)
                && allowed.is_none_or(|allowed| issued < allowed)
            {
                if port.socket.tx_buffer().is_none() {
                    flush(port)?;
                    if port.socket.tx_buffer().is_none() {
                        break;
                    }
                }
                let workload = &mut workloads[self.paths[index].device];
                let Some(io) = self.pick(workload, self.paths[index].sectors) else {
                    break;
                };
                let request = Request {
                    io,
                    stamp: self.next_stamp(&io),
                };
                let path = &mut self.paths[index];
                let (_, tag) = path.window.issue(request, now).expect("window has space");
                let buf = port.socket.tx_buffer().expect("checked above");
                let len = encode(buf, &path.route, tag, &request, path.lba48);
                port.socket.tx_commit(len);
                self.issued_bytes += io.bytes();
                issued += 1;
            }
        }
        Ok(issued)
    }

    /// Retransmits (with new tags) requests unanswered for `timeout_ns`; fails those that
    /// used up their tries.
    fn retransmit_expired(
        &mut self,
        ports: &mut [Port],
        now: u64,
        timeout_ns: u64,
    ) -> Result<(), LoadError> {
        for index in 0..self.paths.len() {
            self.expired.clear();
            let path = &self.paths[index];
            self.expired.extend(path.window.expired(now, timeout_ns));
            if !self.expired.is_empty() {
                // Loss (or a target too slow for the window): offer it less for a while.
                self.paths[index].window.on_timeout();
            }
            let path = &self.paths[index];
            let port = &mut ports[path.port];
            for position in 0..self.expired.len() {
                let slot = self.expired[position];
                let path = &mut self.paths[index];
                let tries = path.window.get(slot).expect("expired slot in flight").tries;
                if tries >= self.tries {
                    let inflight = path.window.release(slot);
                    self.fail(&inflight.request, &Failure::Timeout { tries });
                    continue;
                }
                if port.socket.tx_buffer().is_none() {
                    flush(port)?;
                    if port.socket.tx_buffer().is_none() {
                        break; // retried at the next scan
                    }
                }
                let tag = path.window.retag(slot, now);
                let request = path.window.get(slot).expect("in flight").request;
                let buf = port.socket.tx_buffer().expect("checked above");
                let len = encode(buf, &path.route, tag, &request, path.lba48);
                port.socket.tx_commit(len);
                self.counters.retransmits += 1;
            }
        }
        Ok(())
    }

    /// Fails every request still in flight (the drain deadline passed).
    fn abandon_all(&mut self) {
        for index in 0..self.paths.len() {
            self.expired.clear();
            self.expired
                .extend(self.paths[index].window.expired(u64::MAX, 0));
            for position in 0..self.expired.len() {
                let slot = self.expired[position];
                let inflight = self.paths[index].window.release(slot);
                let tries = inflight.tries;
                self.fail(&inflight.request, &Failure::Timeout { tries });
            }
        }
    }
}

fn progress(state: &State, last: &Counters, measured_ns: u64) {
    let now = state.counters;
    let requests = now.requests - last.requests;
    let bytes = now.bytes - last.bytes;
    let busy_pct = (now.busy_ns - last.busy_ns) as f64 / 1e7;
    let latency_avg_us = if requests == 0 {
        0.0
    } else {
        (now.latency_sum_ns - last.latency_sum_ns) as f64 / requests as f64 / 1e3
    };
    eprintln!(
        "{:>5.0}s {:>10.0} IOPS {:>9.1} MB/s  avg {:>8.1} us  in flight {:>4}  busy {:>3.0}%  \
         retransmits {}  errors {}{}",
        measured_ns as f64 / 1e9,
        requests as f64,
        bytes as f64 / 1e6,
        latency_avg_us,
        state.outstanding(),
        busy_pct,
        now.retransmits,
        now.errors,
        if state.ledger.is_some() {
            format!("  verify failures {}", now.verify_failures)
        } else {
            String::new()
        }
    );
}

fn report(state: &State, ports: &[Port], measured_ns: u64) -> Report {
    let counters = state.counters;
    let seconds = (measured_ns as f64 / 1e9).max(1e-9);
    let us = |ns: u64| ns as f64 / 1e3;
    let histogram = &state.histogram;
    Report {
        requests: counters.requests,
        bytes: counters.bytes,
        duration_s: seconds,
        iops: counters.requests as f64 / seconds,
        mb_per_s: counters.bytes as f64 / seconds / 1e6,
        lat_us: Latency {
            p50: us(histogram.value_at_quantile(0.5)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
        },
        retransmits: counters.retransmits,
        errors: counters.errors,
        verify_failures: counters.verify_failures,
        paths: state
            .paths
            .iter()
            .map(|path| PathReport {
                interface: ports[path.port].interface.clone(),
                target_mac: path.route.dst.to_string(),
                device: format!("{}.{}", path.route.shelf, path.route.slot),
                requests: path.requests,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route {
            dst: MacAddr([2, 0, 0, 0, 0, 1]),
            src: MacAddr([2, 0, 0, 0, 0, 2]),
            vlan_tci: None,
            shelf: 3,
            slot: 4,
        }
    }

    #[test]
    fn test_encode_write_stamps_every_sector() {
        let mut buf = vec![0u8; 9216];
        let request = Request {
            io: Io {
                write: true,
                lba: 10,
                count: 3,
            },
            stamp: 9,
        };
        let len = encode(&mut buf, &route(), 0x1234, &request, true);
        assert_eq!(len, 36 + 3 * 512);
        let mut expected = vec![0u8; 512];
        for (i, sector) in buf[36..len].chunks_exact(512).enumerate() {
            verify::stamp(&mut expected, 10 + i as u64, 9);
            assert_eq!(sector, expected.as_slice());
        }
        assert_eq!(&buf[20..24], &0x1234u32.to_be_bytes(), "tag");
        assert_eq!(buf[36 - 12 + 3], 0x34, "WRITE SECTORS EXT");
    }

    #[test]
    fn test_encode_read_is_header_only() {
        let mut buf = vec![0u8; 9216];
        let request = Request {
            io: Io {
                write: false,
                lba: 1,
                count: 2,
            },
            stamp: 0,
        };
        assert_eq!(encode(&mut buf, &route(), 1, &request, true), 60);
        assert_eq!(buf[36 - 12 + 2], 2, "sector count");
    }

    fn spec(device: usize, sectors: u8) -> PathSpec {
        PathSpec {
            device,
            interface: "x".into(),
            local_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            mtu: 1500,
            target_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            buffer_count: 16,
            sectors,
        }
    }

    fn config(devices: u8) -> LoadConfig {
        LoadConfig {
            devices: (0..devices)
                .map(|slot| Device {
                    shelf: 1,
                    slot,
                    lba48: true,
                })
                .collect(),
            op: Op::Read,
            pattern: Pattern::Random,
            depth: 16,
            stop: Stop::Bytes(1),
            range_sectors: 100,
            verify: false,
            warmup: Duration::ZERO,
            timeout: Duration::from_millis(200),
            tries: 8,
            progress: false,
            seed: 1,
            rate: None,
        }
    }

    #[test]
    fn test_validate_rejects_oversized_requests() {
        let config = config(1);
        assert!(validate(&[spec(0, 3)], &config).is_err());
        assert!(validate(&[spec(0, 2)], &config).is_ok());
        let big = LoadConfig {
            verify: true,
            range_sectors: VERIFY_SECTORS_MAX + 1,
            ..config
        };
        assert!(validate(&[spec(0, 2)], &big).is_err());
    }

    #[test]
    fn test_validate_wants_a_path_to_every_device_and_verify_of_one() {
        let two = config(2);
        assert!(validate(&[spec(0, 2), spec(1, 2)], &two).is_ok());
        let error = validate(&[spec(0, 2), spec(0, 2)], &two).unwrap_err();
        assert!(error.to_string().contains("no path to e1.1"), "{error}");
        assert!(validate(&[spec(0, 2), spec(2, 2)], &two).is_err());
        let verify = LoadConfig {
            verify: true,
            ..two
        };
        let error = validate(&[spec(0, 2), spec(1, 2)], &verify).unwrap_err();
        assert!(error.to_string().contains("one device"), "{error}");
    }
}

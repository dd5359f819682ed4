//! The load loop: opens a socket per interface, then runs the verify pre-write (if asked)
//! and the measured phase, each to its end, and builds the report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::config::{validate, LoadConfig, PathSpec, Stop};
use super::napi::NapiPoll;
use super::port::Port;
use super::report::{Latency, PathReport, Report};
use super::state::{Counters, Path, State};
use super::verify::Ledger;
use super::window::{Window, SLOTS_MAX};
use super::workload::{Op, Pattern, Workload};
use super::LoadError;
use crate::initiator::frames::Route;
use crate::sys::packet::burst::{BurstConfig, BurstSocket};
use crate::wire::SECTOR_SIZE;

/// Replies taken from the receive ring per round, requests sent per `sendmmsg`.
const BATCH: usize = 64;
/// How often expired requests are looked for.
const TIMEOUT_SCAN_NS: u64 = 1_000_000;

/// Runs the load described by `config` over `paths`; `stop` (e.g. set by SIGINT) ends the
/// measured phase early.
pub fn run(
    paths: &[PathSpec],
    config: &LoadConfig,
    stop: &AtomicBool,
) -> Result<Report, LoadError> {
    validate(paths, config)?;
    let (mut ports, path_states) = open(paths, config)?;
    let mut napi = NapiPoll::open(&ports, config.napi_poll)?;
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
            (&mut ports, &mut napi),
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
        (&mut ports, &mut napi),
        &mut state,
        &mut workloads,
        &phase,
        config,
        origin,
        stop,
    )?;
    Ok(report(&state, &ports, measured_ns))
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
    (ports, napi): (&mut [Port], &mut Option<NapiPoll>),
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
            port.flush()?;
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
        if !round_busy {
            // A round that moved nothing busy-polls this initiator's own receive path, where
            // asked to (`napi`): replies then come in this thread, without a wake-up of the
            // NAPI thread paid in the target's send. If that finds nothing, or without it,
            // the round gives the core to whatever else is runnable on it: with threaded
            // NAPI (the two-machine bench rig) that is this initiator's own receive path,
            // which a machine with a NIC runs in softirq context at once, but which the
            // scheduler left waiting up to a tick (4 ms) behind this loop.
            let received = match napi.as_mut() {
                Some(napi) => napi.poll(ports)?,
                None => false,
            };
            if !received {
                std::thread::yield_now();
            }
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

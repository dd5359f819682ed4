//! Everything a load run tracks but its sockets: the paths and their windows, the ledger of
//! `verify`, the counters and the latency histogram; and what happens to a request from its
//! issue to its reply, retransmission or failure.

use hdrhistogram::Histogram;

use super::port::Port;
use super::request::{encode, Failure, Request};
use super::verify::{Ledger, UNKNOWN};
use super::window::Window;
use super::workload::{Io, Workload};
use super::LoadError;
use crate::initiator::frames::{Reply, Route};
use crate::wire::ata::status;
use crate::wire::AoeCommand;

/// Tries to find a request that overlaps none in flight (`verify` only) before waiting a round.
const PICK_TRIES: u32 = 8;

/// One path of the run: where its requests go, its window and what it completed.
#[derive(Debug)]
pub(super) struct Path {
    pub route: Route,
    /// Index into [`LoadConfig::devices`](super::LoadConfig::devices) (and the workloads).
    pub device: usize,
    pub lba48: bool,
    pub port: usize,
    pub sectors: u8,
    pub window: Window<Request>,
    pub requests: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counters {
    pub requests: u64,
    pub bytes: u64,
    pub retransmits: u64,
    pub errors: u64,
    pub verify_failures: u64,
    pub latency_sum_ns: u64,
    /// Time spent in rounds that received or sent something (the rest is polling).
    pub busy_ns: u64,
}

/// Everything but the sockets, so replies (borrowed from a socket) can update it.
#[derive(Debug)]
pub(super) struct State {
    pub tries: u32,
    pub paths: Vec<Path>,
    pub ledger: Option<Ledger>,
    pub write_generation: u32,
    pub histogram: Histogram<u64>,
    pub counters: Counters,
    /// Bytes requested in the current phase (for `Stop::Bytes`).
    pub issued_bytes: u64,
    /// Expired slots of one path (capacity SLOTS_MAX, never grows).
    pub expired: Vec<usize>,
    /// Error messages printed so far (the first few of each run are shown).
    pub errors_shown: u32,
}

impl State {
    pub(super) fn outstanding(&self) -> usize {
        self.paths.iter().map(|p| p.window.outstanding()).sum()
    }

    pub(super) fn reset_measurement(&mut self) {
        self.counters = Counters::default();
        self.histogram.reset();
        self.issued_bytes = 0;
        for path in &mut self.paths {
            path.requests = 0;
        }
    }

    /// Handles one received frame (anything that is not a current reply is ignored).
    pub(super) fn on_frame(&mut self, port_paths: &[usize], frame: &[u8], now: u64) {
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

    pub(super) fn verify_completion(&mut self, request: &Request, data: &[u8]) {
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

    pub(super) fn fail(&mut self, request: &Request, failure: &Failure) {
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
    pub(super) fn pick(&mut self, workload: &mut Workload, sectors: u8) -> Option<Io> {
        let Some(ledger) = self.ledger.as_mut() else {
            return Some(workload.next_io(sectors));
        };
        (0..PICK_TRIES)
            .map(|_| workload.next_io(sectors))
            .find(|io| ledger.try_lock(io.lba, io.count))
    }

    pub(super) fn next_stamp(&mut self, io: &Io) -> u32 {
        if self.ledger.is_none() || !io.write {
            return 0;
        }
        // Generations live in 1..2^31 (0 means unknown, the top bit is the ledger's lock).
        self.write_generation = self.write_generation % ((1 << 31) - 1) + 1;
        self.write_generation
    }

    /// Fills every path's window (until `budget` bytes were requested, if given), each with
    /// requests from its device's workload.
    pub(super) fn issue(
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
                    port.flush()?;
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
    pub(super) fn retransmit_expired(
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
                    port.flush()?;
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
    pub(super) fn abandon_all(&mut self) {
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

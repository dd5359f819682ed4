//! One worker: a thread pinned to one core that owns its ports, their io_uring engines, its
//! request slots and counters. Nothing mutable is shared on the I/O path (the only shared
//! thing a request touches is the device state's generation counter, read-mostly).
//!
//! One [`Unit::poll`] does bounded work: reap at most the completions that are ready, receive
//! at most [`RX_BATCH_MAX`] frames (and never more than there are free request slots, so a
//! request is never refused for lack of a slot), submit the batch to io_uring once, flush TX
//! once. A bad request fails that request only.
//!
//! The frame of a request is the frame of its reply: a read lands in it at the ATA data offset
//! (chunk + 512 for an untagged frame), a write goes to disk from it, and the reply header is
//! rewritten in place before it is transmitted on the port it came from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::state_dir::StateDir;
use crate::storage::engine::{Engine, IoCompletion, IoOp, IoRequest};
use crate::target::{DeviceIndex, IoFailure, IoKind, IoPlan, Outcome, PortInfo, Target};
use crate::xdp::frame::Frame;

use super::port::{Port, PortError};

/// Most frames received per port per iteration (DPDK l2fwd's `MAX_PKT_BURST`).
pub const RX_BATCH_MAX: usize = 32;
/// Idle iterations before a worker in poll mode sleeps in `poll()`.
const IDLE_SPINS_BEFORE_SLEEP: u32 = 1000;
/// Longest sleep of an idle worker in poll mode (bounds shutdown latency too).
const IDLE_SLEEP: Duration = Duration::from_millis(10);
/// Sleep of an idle worker in poll mode while disk I/O is in flight.
const IO_WAIT_SLEEP: Duration = Duration::from_micros(20);

/// Counters of one unit (one port). Plain integers: only its worker writes them.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames transmitted.
    pub tx_frames: u64,
    /// Frames not addressed to any device (or dropped by ACL, mask or test).
    pub ignored: u64,
    /// Storage requests submitted.
    pub io_submitted: u64,
    /// Requests the engine handed back because its queue was full (retried, not dropped).
    pub io_backlogged: u64,
    /// Replies sent although the state could not be saved.
    pub persist_errors: u64,
    /// Broadcast copies that found no free frame.
    pub no_frame: u64,
}

/// Fixed request slots: `user_data` of an I/O is its slot index.
struct Slots {
    plans: Vec<Option<IoPlan>>,
    free: Vec<u32>,
}

impl Slots {
    fn new(count: usize) -> Slots {
        let free = (0..u32::try_from(count).expect("slot count fits u32"))
            .rev()
            .collect();
        Slots {
            plans: vec![None; count],
            free,
        }
    }

    fn free_count(&self) -> usize {
        self.free.len()
    }

    fn put(&mut self, plan: IoPlan) -> u32 {
        let slot = self.free.pop().expect("RX is bounded by free slots");
        assert!(
            self.plans[slot as usize].replace(plan).is_none(),
            "slot {slot} in use"
        );
        slot
    }

    fn take(&mut self, slot: u64) -> IoPlan {
        let index = usize::try_from(slot).expect("slot index");
        let plan = self.plans[index]
            .take()
            .expect("completion for an idle slot");
        self.free
            .push(u32::try_from(index).expect("slot index fits u32"));
        plan
    }
}

/// One port with its storage engine and request slots.
pub struct Unit {
    // Field order is drop order: the engine first (it waits for in-flight I/O and unregisters
    // the frame memory), then the port that owns that memory.
    engine: Engine,
    slots: Slots,
    /// Requests the engine refused for now (queue full): retried before taking more RX.
    backlog: Vec<(Frame, IoPlan)>,
    /// Scratch for completions reaped in one iteration (capacity = slots; never grows).
    reaped: Vec<IoCompletion>,
    port: Port,
    info: PortInfo,
    state_dir: Arc<StateDir>,
    stats: UnitStats,
}

impl Unit {
    /// Assembles a unit; `slots` bounds the requests in flight on this port.
    pub fn new(
        port: Port,
        engine: Engine,
        info: PortInfo,
        slots: usize,
        state_dir: Arc<StateDir>,
    ) -> Unit {
        Unit {
            engine,
            slots: Slots::new(slots),
            backlog: Vec::with_capacity(slots),
            reaped: Vec::with_capacity(slots),
            port,
            info,
            state_dir,
            stats: UnitStats::default(),
        }
    }

    /// The port's identity as the target sees it.
    pub fn info(&self) -> &PortInfo {
        &self.info
    }

    /// The counters.
    pub fn stats(&self) -> &UnitStats {
        &self.stats
    }

    /// The storage engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The transport.
    pub fn port(&self) -> &Port {
        &self.port
    }

    /// Sends one advertisement per device exported on this port and destination.
    pub fn advertise(&mut self, target: &mut Target, destinations: &[Vec<crate::wire::MacAddr>]) {
        for (device, list) in destinations.iter().enumerate() {
            let Ok(device) = DeviceIndex::try_from(device) else {
                break;
            };
            if target.params(device).port_mask & (1u64 << (self.info.index & 63)) == 0 {
                continue;
            }
            for dst in list {
                let Some(mut frame) = self.port.alloc() else {
                    return;
                };
                let len =
                    target.advertisement(device, &self.info, *dst, self.port.data_mut(&mut frame));
                self.port.transmit(frame, len);
                self.stats.tx_frames += 1;
            }
        }
    }

    /// One bounded iteration; returns whether there was any work.
    pub fn poll(&mut self, target: &mut Target, now: Instant) -> Result<bool, PortError> {
        let mut work = self.reap_io(target);
        work += self.retry_backlog(target);
        let room = self
            .slots
            .free_count()
            .saturating_sub(self.backlog.len())
            .min(RX_BATCH_MAX);
        if room > 0 {
            for frame in self.port.rx_burst(room) {
                work += 1;
                self.stats.rx_frames += 1;
                self.handle_frame(target, frame);
            }
        }
        // Always commit: with DEFER_TASKRUN this is also what lets completions be posted.
        if let Err(error) = self.engine.commit(now) {
            tracing::error!(%error, "io_uring commit failed");
        }
        self.port.flush_tx()?;
        self.port.reap_completions();
        self.port.refill()?;
        Ok(work > 0)
    }

    /// Sleeps until a frame arrives or `timeout` passes (poll idle mode); while disk I/O is in
    /// flight, only for [`IO_WAIT_SLEEP`].
    pub fn wait(&mut self, timeout: Duration) -> Result<(), PortError> {
        if self.engine.in_flight() == 0 {
            self.port.wait_rx(timeout)?;
        } else {
            // Disk I/O in flight: yield the core for a moment rather than spin. io_uring's
            // io-wq threads, which carry out the I/O that blocks (every `RWF_DSYNC` write),
            // inherit this thread's pinning, so spinning here delays the very completion it
            // waits for (a sync write took ~6.5 ms instead of ~2 ms).
            std::thread::sleep(IO_WAIT_SLEEP);
        }
        Ok(())
    }

    /// Finishes every request still in flight (at shutdown), sending the replies.
    pub fn drain(&mut self, target: &mut Target) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while (self.engine.in_flight() > 0 || !self.backlog.is_empty()) && Instant::now() < deadline
        {
            self.retry_backlog(target);
            let _ = self.engine.commit(Instant::now());
            let _ = self.engine.wait(1);
            self.reap_io(target);
        }
        let _ = self.port.flush_tx();
        self.port.reap_completions();
    }

    fn handle_frame(&mut self, target: &mut Target, frame: Frame) {
        let len = frame.len();
        let mut addressed = target.addressed(self.port.data(&frame), &self.info);
        let Some(first) = target.next_addressed(&mut addressed) else {
            self.stats.ignored += 1;
            self.port.release(frame);
            return;
        };
        // A broadcast Query Config: every further device answers from a copy of the request.
        while let Some(device) = target.next_addressed(&mut addressed) {
            let Some(mut copy) = self.port.alloc() else {
                self.stats.no_frame += 1;
                break;
            };
            self.port.data_mut(&mut copy)[..len].copy_from_slice(self.port.data(&frame));
            self.dispatch(target, device, copy, len);
        }
        self.dispatch(target, first, frame, len);
    }

    fn dispatch(&mut self, target: &mut Target, device: DeviceIndex, mut frame: Frame, len: usize) {
        let buf = self.port.data_mut(&mut frame);
        match target.handle(device, buf, len, &self.info) {
            Outcome::Drop => {
                self.stats.ignored += 1;
                self.port.release(frame);
            }
            Outcome::Reply { len, persist } => {
                if persist {
                    self.persist(target, device);
                }
                self.send(frame, len);
            }
            Outcome::Io(plan) => self.submit(target, frame, plan),
        }
    }

    fn persist(&mut self, target: &Target, device: DeviceIndex) {
        let params = target.params(device);
        let (state, _) = target.shared_state(device).snapshot();
        if let Err(error) = self.state_dir.save(params.shelf, params.slot, &state) {
            self.stats.persist_errors += 1;
            tracing::error!(device = %params.name, %error, "could not save AoE state");
        }
    }

    fn send(&mut self, frame: Frame, len: usize) {
        self.port.transmit(frame, len);
        self.stats.tx_frames += 1;
    }

    fn submit(&mut self, target: &mut Target, frame: Frame, plan: IoPlan) {
        let buf_offset = self.port.offset_in_chunk(&frame) + plan.data_offset;
        let slot = self.slots.put(plan);
        let request = IoRequest {
            export: plan.export,
            op: match plan.kind {
                IoKind::Read => IoOp::Read,
                IoKind::Write => IoOp::Write,
                IoKind::Flush => IoOp::Flush,
            },
            sector: plan.sector,
            len: u32::try_from(plan.byte_len()).expect("a frame's data fits u32"),
            chunk: self.port.lend(frame),
            buf_offset: u32::try_from(buf_offset).expect("offset inside a chunk"),
            user_data: u64::from(slot),
        };
        self.stats.io_submitted += 1;
        if let Err(refused) = self.engine.submit(request) {
            let plan = self.slots.take(u64::from(slot));
            let throttled = refused.is_throttling_err();
            let error = refused.error;
            let mut frame = self.port.reclaim(refused.req.chunk);
            if throttled {
                self.stats.io_backlogged += 1;
                self.backlog.push((frame, plan));
            } else {
                // A request the engine cannot take at all (the target already checked the
                // range, so this is defence in depth): fail it, do not drop it.
                tracing::warn!(%error, "storage refused a request");
                let len = target.complete(
                    self.port.data_mut(&mut frame),
                    &plan,
                    Err(IoFailure::Aborted),
                );
                self.send(frame, len);
            }
        }
    }

    fn retry_backlog(&mut self, target: &mut Target) -> usize {
        let count = self.backlog.len();
        for _ in 0..count {
            let (frame, plan) = self.backlog.remove(0);
            self.submit(target, frame, plan);
        }
        count
    }

    fn reap_io(&mut self, target: &mut Target) -> usize {
        // Taken out and put back so its capacity is reused: no allocation per iteration.
        let mut reaped = std::mem::take(&mut self.reaped);
        self.engine.reap(&mut |completion| reaped.push(completion));
        let count = reaped.len();
        for completion in reaped.drain(..) {
            let plan = self.slots.take(completion.user_data);
            let mut frame = self.port.reclaim(completion.chunk);
            let result = completion.result.map_err(|e| {
                if e.is_media_error() {
                    IoFailure::Media
                } else {
                    IoFailure::Aborted
                }
            });
            let len = target.complete(self.port.data_mut(&mut frame), &plan, result);
            self.send(frame, len);
        }
        self.reaped = reaped;
        count
    }
}

/// How an idle worker waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Spin (lowest latency, one core at 100%).
    Spin,
    /// Sleep in `poll()` after a while without work.
    Poll,
}

/// Runs `units` on the current thread until `stop` is set; returns the units' counters.
pub fn run(
    mut target: Target,
    mut units: Vec<Unit>,
    idle: Idle,
    stop: &AtomicBool,
) -> Result<Vec<UnitStats>, PortError> {
    let mut idle_spins = 0u32;
    // Acquire: pairs with the Release store of the thread that asks for shutdown.
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let mut busy = false;
        for unit in &mut units {
            busy |= unit.poll(&mut target, now)?;
        }
        if busy {
            idle_spins = 0;
            continue;
        }
        idle_spins = idle_spins.saturating_add(1);
        match idle {
            Idle::Spin => std::hint::spin_loop(),
            Idle::Poll if idle_spins >= IDLE_SPINS_BEFORE_SLEEP && units.len() == 1 => {
                units[0].wait(IDLE_SLEEP)?;
            }
            Idle::Poll if idle_spins >= IDLE_SPINS_BEFORE_SLEEP => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Idle::Poll => std::hint::spin_loop(),
        }
    }
    for unit in &mut units {
        unit.drain(&mut target);
    }
    Ok(units.iter().map(|u| *u.stats()).collect())
}

//! One worker: a thread pinned to one core that owns its ports (units), one io_uring engine,
//! the devices it was made owner of, and its counters. Requests move between workers only
//! through the lock-free per-device queues of [`super::queues`].
//!
//! One [`Worker::poll`] does bounded work, in this order:
//! 1. reap the engine's completions and hand each to its unit's done queue;
//! 2. per unit: finish the done requests (`Target::complete`, TX on the port they came in on);
//! 3. unit by unit, steps 3 to 5: receive at most [`NetPort::rx_batch_max`] frames (never
//!    more than the unit's free request slots, so a request is never refused for lack of one)
//!    and answer them, or push a [`Job`] into the queue of the request's device (into the
//!    unit's own list when this worker owns the device; its completion comes back the same way);
//! 4. per owned device, round-robin: pop jobs into the engine while it has room, then the
//!    units' own lists;
//! 5. commit to the kernel, reap and finish again (page-cached reads complete inside the
//!    commit), flush the unit's TX: a port's replies are sent before the next port is read,
//!    so that over two NICs one path's replies do not wait for the other path's burst;
//! 6. with more than one unit, flush each one's TX once more (replies a later unit's pass
//!    completed).
//!
//! A bad request fails that request only. The frame of a request is the frame of its reply: a
//! read lands in it at the ATA data offset (chunk + 512 for an untagged frame), a write goes to
//! disk from it, and the reply header is rewritten in place before it is transmitted on the
//! port it came from.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aoe::{
    DeviceCounters, DeviceIndex, IoFailure, IoPlan, Outcome, PortInfo, Request, Target,
};
use crate::state_dir::StateDir;
use crate::storage::engine::{Engine, IoCompletion};
use crate::sys::frame::{Frame, RxBurst, RX_BURST_MAX};

use super::counters::{ServiceTimes, UnitStats, WorkerStats};
use super::io::{io_request, to_failure};
use super::port::{NetPort, Port, PortError};
use super::queues::{Done, Job, Queues};
use super::stats::{StatsBoard, PUBLISH_INTERVAL};
use crate::sys::napi::{NapiWait, POLL_RINGS_FIRST};
use crate::sys::wake::{poll_fds, pollin, Alarm, Wakeup};

/// Most jobs taken from one device's queue per iteration (fairness between devices).
const DEVICE_BATCH_MAX: usize = 64;
/// Longest sleep of an idle worker in poll mode: it publishes what it did before it sleeps
/// (within [`IDLE_PUBLISH_AFTER`]), and at each wake-up the kernel's figures of its ports
/// (drops, frames for other hosts) and acts on `ctl announce`, so both stay within about
/// [`PUBLISH_INTERVAL`] of the truth. A stop wakes it at once ([`Queues::wake_all`]).
const IDLE_SLEEP: Duration = PUBLISH_INTERVAL;
/// An idle worker about to sleep publishes first unless it published less than this long
/// ago; then it sleeps no longer than until this long after that publication, and publishes
/// when it wakes. A publication costs three system calls (its ports' kernel figures, the
/// `bpf` count of frames for other hosts, its page-fault count): a worker that sleeps between
/// bursts, thousands of times a second under a moderate load, made them at every sleep (3 %
/// of its core at random 1 KiB reads at queue depth 16 on a 2-vCPU VM, 2026-12-07).
const IDLE_PUBLISH_AFTER: Duration = Duration::from_millis(5);
/// Sleep of an idle worker whose publication before sleeping found a reader holding its slot:
/// it tries again soon rather than leave the board stale for a whole [`IDLE_SLEEP`].
const UNPUBLISHED_SLEEP: Duration = Duration::from_millis(10);
/// Sleep of an idle worker in poll mode while requests are in flight.
const IO_WAIT_SLEEP: Duration = Duration::from_micros(20);
/// Sleep of an idle worker in poll mode that must also watch other ports or device queues.
const SHARED_IDLE_SLEEP: Duration = Duration::from_micros(50);
/// Iterations between clock reads of a worker whose engine does not need a precise clock.
const COARSE_CLOCK_ITERATIONS: u32 = 256;
/// While a data sync is in flight, a busy worker yields its core every this many
/// iterations (see [`run`]).
const SYNC_YIELD_ITERATIONS: u32 = 8;
/// Longest a stopping dataplane waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The worker's in-flight table: `user_data` of an I/O is its slot index.
struct Slots {
    entries: Vec<Option<(u16, IoPlan, Instant)>>,
    free: Vec<u32>,
}

impl Slots {
    fn new(count: usize) -> Slots {
        let free = (0..u32::try_from(count).expect("slot count fits u32"))
            .rev()
            .collect();
        Slots {
            entries: vec![None; count],
            free,
        }
    }

    fn free_count(&self) -> usize {
        self.free.len()
    }

    fn put(&mut self, unit: u16, plan: IoPlan, started: Instant) -> u32 {
        let slot = self
            .free
            .pop()
            .expect("jobs are taken only into free slots");
        assert!(
            self.entries[slot as usize]
                .replace((unit, plan, started))
                .is_none(),
            "slot {slot} in use"
        );
        slot
    }

    fn take(&mut self, slot: u64) -> (u16, IoPlan, Instant) {
        let index = usize::try_from(slot).expect("slot index");
        let entry = self.entries[index]
            .take()
            .expect("completion for an idle slot");
        self.free
            .push(u32::try_from(index).expect("slot index fits u32"));
        entry
    }
}

/// One port: its receive and reply side.
pub struct Unit<P: NetPort = Port> {
    /// Global index: the unit's done queue.
    id: u16,
    port: P,
    info: PortInfo,
    /// Most requests of this port in flight (queued, in I/O or done and not yet sent).
    capacity: usize,
    in_flight: usize,
    /// Jobs a device queue refused (only on a broken capacity invariant): retried first.
    backlog: Vec<Job>,
    /// The worker this unit belongs to (set by [`Worker::new`]).
    worker: usize,
    /// Jobs for devices that this unit's own worker owns: they skip the device queue (no
    /// atomic operation per request; each one would also drain the store buffer).
    local_jobs: VecDeque<Job>,
    /// Finished requests handed back by this unit's own worker, likewise.
    local_done: VecDeque<Done>,
    /// Jumbo read requests waiting for a free slab to hold their reply, each with its
    /// classification: retried first.
    waiting: Vec<(Frame, Request, Instant)>,
    /// The RX burst, reused every iteration (nothing zeroed or moved per receive).
    burst: RxBurst,
    state_dir: Arc<StateDir>,
    stats: UnitStats,
    /// Its port failed (its interface deleted under traffic, say): the worker neither receives
    /// nor transmits on it any more, and does not hand it back.
    failed: bool,
}

impl<P: NetPort> Unit<P> {
    /// Assembles a unit; `id` is its index in the dataplane's [`Queues`], `capacity` bounds
    /// the requests in flight on this port.
    pub fn new(
        id: u16,
        port: P,
        info: PortInfo,
        capacity: usize,
        state_dir: Arc<StateDir>,
    ) -> Unit<P> {
        Unit {
            id,
            burst: port.new_burst(),
            port,
            info,
            capacity,
            in_flight: 0,
            backlog: Vec::with_capacity(capacity),
            worker: usize::MAX,
            local_jobs: VecDeque::with_capacity(capacity),
            local_done: VecDeque::with_capacity(capacity),
            waiting: Vec::with_capacity(RX_BURST_MAX),
            state_dir,
            stats: UnitStats::default(),
            failed: false,
        }
    }

    /// The unit's index among all the dataplane's units.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The port's identity as the target sees it.
    pub fn info(&self) -> &PortInfo {
        &self.info
    }

    /// The counters.
    pub fn stats(&self) -> &UnitStats {
        &self.stats
    }

    /// The counters with the port's own figures read now (jumbo path, kernel drops: one
    /// `getsockopt`; requests for other hosts: on AF_XDP one `bpf` call); `previous` (the
    /// last snapshot) stands in for a figure whose read fails.
    fn snapshot(&self, previous: &UnitStats) -> UnitStats {
        UnitStats {
            jumbo: self.port.jumbo_stats(),
            kernel: self.port.kernel_counters().unwrap_or(previous.kernel),
            foreign_dst: self.port.foreign_dst().unwrap_or(previous.foreign_dst),
            frames_held: self.port.frames_held(),
            ..self.stats
        }
    }

    /// The transport.
    pub fn port(&self) -> &P {
        &self.port
    }

    /// The transport, e.g. to put frames on a loopback port's wire.
    pub fn port_mut(&mut self) -> &mut P {
        &mut self.port
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

    /// Sends the replies of this unit's finished requests; returns how many.
    fn finish(
        &mut self,
        target: &mut Target,
        queues: &Queues,
        service: &mut ServiceTimes,
    ) -> usize {
        let mut count = 0;
        // One clock read for every reply of this call.
        let mut now = None;
        while let Some(done) = self
            .local_done
            .pop_front()
            .or_else(|| queues.pop_done(self.id))
        {
            self.in_flight -= 1;
            let now = *now.get_or_insert_with(Instant::now);
            service.record(
                done.plan.device,
                now.saturating_duration_since(done.started),
            );
            let mut frame = self.port.reclaim(done.chunk);
            let len = target.complete(self.port.data_mut(&mut frame), &done.plan, done.result);
            self.send(frame, len);
            count += 1;
        }
        count
    }

    /// Receives and answers or queues a bounded burst; returns the frames taken.
    fn receive(&mut self, target: &mut Target, queues: &Queues, stopping: bool) -> usize {
        let mut work = self.retry_backlog(queues);
        // Oldest first; a request that still finds no slab goes back to the end of the list.
        for _ in 0..self.waiting.len() {
            let (frame, request, received) = self.waiting.remove(0);
            work += 1;
            self.handle_request(target, queues, frame, request, received);
        }
        let room = self
            .capacity
            .saturating_sub(self.in_flight + self.waiting.len())
            .min(self.port.rx_batch_max());
        if room == 0 || stopping {
            return work;
        }
        self.port.rx_burst_into(&mut self.burst, room);
        if self.burst.len() == 0 {
            return work;
        }
        // One clock read per burst: the start of each request's service time.
        let received = Instant::now();
        while let Some(frame) = self.burst.next() {
            work += 1;
            self.stats.rx_frames += 1;
            self.handle_frame(target, queues, frame, received);
        }
        work
    }

    /// Flushes TX, recycles TX completions, refills RX.
    fn flush(&mut self) -> Result<(), PortError> {
        self.send_queued()?;
        self.port.reap_completions();
        self.port.refill()?;
        Ok(())
    }

    /// Flushes TX only.
    fn send_queued(&mut self) -> Result<(), PortError> {
        self.port.flush_tx()?;
        Ok(())
    }

    fn handle_frame(
        &mut self,
        target: &mut Target,
        queues: &Queues,
        frame: Frame,
        received: Instant,
    ) {
        // The one parse of the frame's headers; everything below works from `request`.
        let Some(request) = Request::parse(self.port.data(&frame)) else {
            self.stats.ignored += 1;
            self.port.release(frame);
            return;
        };
        self.handle_request(target, queues, frame, request, received);
    }

    fn handle_request(
        &mut self,
        target: &mut Target,
        queues: &Queues,
        frame: Frame,
        request: Request,
        received: Instant,
    ) {
        // A read whose reply is larger than its request's frame moves into a slab first (jumbo
        // ports only); without a free slab it waits, it is not dropped.
        let frame = match self.port.fit_reply(frame, request.reply_room()) {
            Ok(frame) => frame,
            Err(frame) => {
                self.waiting.push((frame, request, received));
                return;
            }
        };
        let len = request.len();
        let mut addressed = target.addressed(&request, &self.info);
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
            self.dispatch(target, queues, device, (&request, received), copy);
        }
        self.dispatch(target, queues, first, (&request, received), frame);
    }

    fn dispatch(
        &mut self,
        target: &mut Target,
        queues: &Queues,
        device: DeviceIndex,
        (request, received): (&Request, Instant),
        mut frame: Frame,
    ) {
        let buf = self.port.data_mut(&mut frame);
        match target.handle(device, request, buf, &self.info) {
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
            Outcome::Io(plan) => {
                let buf_offset = self.port.offset_in_chunk(&frame) + plan.data_offset;
                let job = Job {
                    unit: self.id,
                    chunk: self.port.lend(frame),
                    buf_offset: u32::try_from(buf_offset).expect("offset inside a chunk"),
                    plan,
                    started: received,
                };
                self.in_flight += 1;
                self.stats.io_submitted += 1;
                if queues.owner(plan.device) == self.worker {
                    // At most `capacity` requests are in flight: never grows.
                    debug_assert!(self.local_jobs.len() < self.capacity);
                    self.local_jobs.push_back(job);
                } else if let Err(job) = queues.push_job(job) {
                    self.backlog.push(job);
                }
            }
        }
    }

    fn retry_backlog(&mut self, queues: &Queues) -> usize {
        let count = self.backlog.len();
        for _ in 0..count {
            let job = self.backlog.remove(0);
            if let Err(job) = queues.push_job(job) {
                self.backlog.insert(0, job);
                break;
            }
        }
        count
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
}

/// One worker thread's state: its units and the device side (engine, owned devices).
pub struct Worker<P: NetPort = Port> {
    // Field order is drop order: the engine first (it waits for in-flight I/O and unregisters
    // the frame memories), then the units that own that memory. Other workers' frame memory
    // stays alive through the engine's own `Arc`s.
    engine: Engine,
    units: Vec<Unit<P>>,
    /// The unit whose port returned the error `poll` reported last.
    failing: Option<usize>,
    queues: Arc<Queues>,
    /// Devices this worker submits for.
    devices: Vec<DeviceIndex>,
    /// Whether other workers may queue jobs for this worker's devices (then an idle worker
    /// must not sleep long in `poll()` on its own ports).
    shared: bool,
    /// Owned device to look at first next time (round-robin).
    next_device: usize,
    slots: Slots,
    /// Jobs taken from a device queue that the engine refused for now: submitted first.
    held: VecDeque<Job>,
    /// Finished requests whose done queue was full (only on a broken invariant).
    undelivered: VecDeque<(u16, Done)>,
    /// Scratch for completions reaped in one iteration (capacity = slots; never grows).
    reaped: Vec<IoCompletion>,
    stats: WorkerStats,
    index: usize,
    board: Option<Arc<StatsBoard>>,
    last_publish: Instant,
    /// Where this worker's units advertise when the control socket asks (`announce`).
    announcer: Option<Announcer>,
    /// Per device: the service time of the requests this worker's ports answered.
    service: ServiceTimes,
    /// Scratch for the `poll` of a sleeping worker: its wake-up, its ports and its engine's
    /// completion eventfd (capacity = ports + 2; never grows).
    pollfds: Vec<libc::pollfd>,
    /// Whether the engine could not give a completion eventfd to sleep on (logged once; the
    /// worker then yields while its I/O is in flight).
    no_completion_fd: bool,
    /// The wait that busy-polls its ports' NAPIs (every working port names one, see
    /// [`NetPort::wait_napi`]), set up at the first idle moment ([`Worker::napi_wait_ready`]).
    napi_wait: NapiWaitState,
    /// Whether the worker worked since its counters last reached the board.
    unpublished: bool,
}

/// Where a worker's NAPI-polling wait stands.
#[derive(Debug)]
enum NapiWaitState {
    /// Not looked at yet (or the ports changed).
    Unknown,
    /// Some working port names no NAPI, or the wait could not be set up.
    Unavailable,
    /// In use (boxed: the ring's handles are large and most workers have none).
    Ready(Box<NapiWait>),
}

/// What a worker needs to advertise its devices on request.
struct Announcer {
    /// Per device: where its advertisement goes (empty: nowhere).
    destinations: Vec<Vec<crate::wire::MacAddr>>,
    /// Per unit (global index): whether it speaks for its interface (its queue 0).
    announcing: Arc<[bool]>,
    /// The board's announcement count last acted on.
    seen: u64,
}

impl<P: NetPort> Worker<P> {
    /// A worker over `units` that submits the jobs of `queues`' devices owned by `index` to
    /// `engine` (which must serve the frame memory of every unit of the dataplane).
    pub fn new(
        index: usize,
        engine: Engine,
        mut units: Vec<Unit<P>>,
        queues: Arc<Queues>,
    ) -> Worker<P> {
        let capacity = engine.capacity();
        for unit in &mut units {
            unit.worker = index;
        }
        let service = ServiceTimes::new(queues.device_count());
        let units_len = units.len();
        Worker {
            shared: false,
            devices: queues.owned_by(index),
            engine,
            units,
            failing: None,
            queues,
            next_device: 0,
            slots: Slots::new(capacity),
            held: VecDeque::with_capacity(capacity),
            undelivered: VecDeque::new(),
            reaped: Vec::with_capacity(capacity),
            stats: WorkerStats::default(),
            index,
            board: None,
            last_publish: Instant::now(),
            announcer: None,
            service,
            pollfds: Vec::with_capacity(units_len + 2),
            no_completion_fd: false,
            napi_wait: NapiWaitState::Unknown,
            unpublished: false,
        }
    }

    /// Lets the control socket's `announce` reach this worker: on each request its units that
    /// speak for their interface (`announcing`, by global unit index) advertise every device
    /// to its `destinations` (requests made before this call are not acted on).
    pub fn set_announcer(
        &mut self,
        destinations: Vec<Vec<crate::wire::MacAddr>>,
        announcing: Arc<[bool]>,
    ) {
        let seen = self.board.as_ref().map_or(0, |b| b.announce_requests());
        self.announcer = Some(Announcer {
            destinations,
            announcing,
            seen,
        });
    }

    /// Sends the advertisements the control socket asked for since the last look.
    fn announce_if_asked(&mut self, target: &mut Target) {
        let (Some(board), Some(announcer)) = (&self.board, &mut self.announcer) else {
            return;
        };
        let requests = board.announce_requests();
        if requests == announcer.seen {
            return;
        }
        announcer.seen = requests;
        for unit in &mut self.units {
            if announcer.announcing[usize::from(unit.id)] {
                unit.advertise(target, &announcer.destinations);
            }
        }
    }

    /// Publishes the counters on `board` every [`PUBLISH_INTERVAL`].
    pub fn set_board(&mut self, board: Arc<StatsBoard>) {
        self.board = Some(board);
    }

    /// Copies the counters to the board if the interval passed (never blocks, allocates
    /// only the first time).
    fn publish(&mut self, target: &mut Target, now: Instant) {
        if now.duration_since(self.last_publish) >= PUBLISH_INTERVAL {
            self.publish_now(target, now);
        }
    }

    /// Acts on `ctl announce` and copies the counters to the board unless a reader holds
    /// the worker's slot.
    fn publish_now(&mut self, target: &mut Target, now: Instant) {
        self.announce_if_asked(target);
        let Some(board) = &self.board else {
            return;
        };
        // On the worker's own thread: the count is this thread's.
        self.stats.major_faults = crate::sys::filemap::thread_major_faults();
        let stats = self.stats();
        let published = board.publish(self.index, |slot| {
            slot.units
                .resize(self.units.len(), (0, UnitStats::default()));
            for (entry, unit) in slot.units.iter_mut().zip(&self.units) {
                *entry = (unit.id, unit.snapshot(&entry.1));
            }
            slot.devices
                .resize(target.device_count(), DeviceCounters::default());
            for (device, counters) in slot.devices.iter_mut().enumerate() {
                if let Ok(device) = DeviceIndex::try_from(device) {
                    *counters = *target.counters(device);
                }
            }
            slot.worker = stats;
            slot.service.copy_from(&self.service);
        });
        if published {
            self.last_publish = now;
            self.unpublished = false;
        }
    }

    /// Before an idle sleep: publishes if the worker worked since its last publication (a
    /// sleeping worker's counters do not change, so the board then stays current through the
    /// sleep), or, if that publication is less than [`IDLE_PUBLISH_AFTER`] old, returns the
    /// rest of that time as the longest sleep (the worker publishes when it wakes); otherwise
    /// returns how long the worker may sleep.
    fn publish_before_sleep(&mut self, target: &mut Target, now: Instant) -> Duration {
        if self.unpublished && self.board.is_some() {
            let since = now.duration_since(self.last_publish);
            if since < IDLE_PUBLISH_AFTER {
                // Published moments ago: sleep until the next publication is due at most.
                return IDLE_PUBLISH_AFTER - since;
            }
            self.publish_now(target, now);
            if self.unpublished {
                return UNPUBLISHED_SLEEP;
            }
        }
        IDLE_SLEEP
    }

    /// Declares that other workers may queue jobs for this worker's devices.
    pub fn set_shared(&mut self, shared: bool) {
        self.shared = shared;
    }

    /// The storage engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The storage engine, for set-up from the worker's own thread.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The units.
    pub fn units_mut(&mut self) -> &mut [Unit<P>] {
        &mut self.units
    }

    /// The devices this worker submits for.
    pub fn devices(&self) -> &[DeviceIndex] {
        &self.devices
    }

    /// The device side's counters.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            engine: self.engine.stats(),
            ..self.stats
        }
    }

    /// One bounded iteration; returns whether there was any work.
    pub fn poll(&mut self, target: &mut Target, now: Instant) -> Result<bool, PortError> {
        self.step(target, now, false)
    }

    fn step(
        &mut self,
        target: &mut Target,
        now: Instant,
        stopping: bool,
    ) -> Result<bool, PortError> {
        let mut work = self.reap_io();
        work += self.finish(target);
        // Port by port: a port's requests are answered and its replies sent before the next
        // port's are read, so that over two NICs one path's replies do not wait for the other
        // path's burst to be served.
        for index in 0..self.units.len() {
            let unit = &mut self.units[index];
            work += unit.receive(target, &self.queues, stopping || unit.failed);
            work += self.serve(target, now);
            self.flush_unit(index, Unit::flush)?;
        }
        match self.units.len() {
            // A worker that only owns devices serves the other workers' jobs.
            0 => work += self.serve(target, now),
            1 => {}
            // Replies that a later port's pass completed for an earlier port (a no-op, without
            // a system call, for a port with nothing queued).
            _ => {
                for index in 0..self.units.len() {
                    self.flush_unit(index, Unit::send_queued)?;
                }
            }
        }
        Ok(work > 0)
    }

    /// Takes jobs into the engine, commits, and finishes what completed.
    fn serve(&mut self, target: &mut Target, now: Instant) -> usize {
        let mut work = self.take_jobs();
        // Always commit: with DEFER_TASKRUN this is also what lets completions be posted.
        if let Err(error) = self.engine.commit(now) {
            tracing::error!(%error, "io_uring commit failed");
        }
        work += self.reap_io();
        work + self.finish(target)
    }

    /// Runs `flush` on unit `index` unless it was given up; its error marks the unit failing.
    fn flush_unit(
        &mut self,
        index: usize,
        flush: fn(&mut Unit<P>) -> Result<(), PortError>,
    ) -> Result<(), PortError> {
        let unit = &mut self.units[index];
        if unit.failed {
            return Ok(());
        }
        flush(unit).inspect_err(|_| self.failing = Some(index))
    }

    /// After `poll` reported `error`: with other ports still working, the failed one is given
    /// up (logged; its requests in flight finish, their replies are not sent) and the worker
    /// serves on; with none left, the error is returned.
    pub fn give_up_port(&mut self, error: PortError) -> Result<(), PortError> {
        let Some(index) = self.failing.take() else {
            return Err(error);
        };
        let working = self.units.iter().filter(|unit| !unit.failed).count();
        if working <= 1 {
            return Err(error);
        }
        // The NAPI wait is set up again for the ports that remain.
        self.napi_wait = NapiWaitState::Unknown;
        let unit = &mut self.units[index];
        unit.failed = true;
        tracing::error!(
            worker = self.index,
            unit = unit.id,
            %error,
            "a port failed: given up; the worker serves its other ports"
        );
        Ok(())
    }

    /// Whether any of this worker's ports was given up.
    pub fn gave_up_a_port(&self) -> bool {
        self.units.iter().any(|unit| unit.failed)
    }

    /// True while any request of this worker's devices or units is unfinished.
    pub fn busy(&self) -> bool {
        self.engine.in_flight() > 0
            || self.retries_pending()
            || self.units.iter().any(|u| u.in_flight > 0)
            || self.devices.iter().any(|&d| self.queues.queued(d) > 0)
    }

    /// True while requests wait for the worker to retry them (held for engine room,
    /// undelivered, or waiting in a working unit): nothing wakes a sleeper for those.
    fn retries_pending(&self) -> bool {
        !self.held.is_empty()
            || !self.undelivered.is_empty()
            || self
                .units
                .iter()
                .any(|u| !u.waiting.is_empty() && !u.failed)
    }

    /// Sleeps until a frame arrives on one of the worker's ports, another worker hands it
    /// work (a job for a device it owns, a finished request of one of its ports), one of its
    /// engine's I/Os completes, or `timeout` passes (poll idle mode). A data sync of
    /// `durability = "sync"` writes lasts milliseconds: the worker sleeps through it instead
    /// of holding its core (a sleep on the ring's completion eventfd, see
    /// [`Engine::arm_completion_fd`]). While requests wait for it to retry them (held for
    /// engine room, undelivered, waiting in a unit), or where the engine gives no eventfd,
    /// it does not sleep but yields its core (to io_uring's blocking-I/O thread, which may
    /// share it) and polls on.
    /// Without the queues' wake-ups, or with a port that cannot be waited on, it sleeps for
    /// [`SHARED_IDLE_SLEEP`] whenever another worker may hand it work or it has several ports
    /// ([`IO_WAIT_SLEEP`] while requests of its ports are with another worker; it yields
    /// while its own I/O is in flight).
    /// A sleep also ends when `stop` is set and the dataplane calls [`Queues::wake_all`].
    pub fn wait(&mut self, timeout: Duration, stop: &AtomicBool) -> Result<(), PortError> {
        self.wait_busy_polling(timeout, stop, false)
    }

    /// As [`Self::wait`]; with `napi` and a [`NapiWait`] ready ([`Self::napi_wait_ready`]),
    /// the sleep busy-polls the ports' NAPIs first.
    pub fn wait_busy_polling(
        &mut self,
        timeout: Duration,
        stop: &AtomicBool,
        napi: bool,
    ) -> Result<(), PortError> {
        let own_io = self.engine.in_flight() > 0;
        if self.retries_pending() || (own_io && self.no_completion_fd) {
            std::thread::yield_now();
            return Ok(());
        }
        let waitable = self
            .units
            .iter()
            .all(|u| u.failed || u.port.poll_fd().is_some());
        let queues = Arc::clone(&self.queues);
        match queues.wakeup(self.index) {
            Some(wakeup) if waitable => self.wait_for_any(wakeup, timeout, stop, own_io, napi),
            _ if own_io => {
                std::thread::yield_now();
                Ok(())
            }
            _ if self.busy() => {
                std::thread::sleep(IO_WAIT_SLEEP);
                Ok(())
            }
            _ if self.units.len() == 1 && !self.shared => {
                self.units[0].port.wait_rx(timeout).map(drop)
            }
            _ => {
                std::thread::sleep(SHARED_IDLE_SLEEP);
                Ok(())
            }
        }
    }

    /// [`Self::wait`] on every working port's fd and on `wakeup`, this worker's; with
    /// `own_io`, on the engine's completion eventfd too.
    fn wait_for_any(
        &mut self,
        wakeup: &Wakeup,
        timeout: Duration,
        stop: &AtomicBool,
        own_io: bool,
        napi: bool,
    ) -> Result<(), PortError> {
        for unit in self.units.iter_mut().filter(|u| !u.failed) {
            unit.port.prepare_nap()?;
        }
        wakeup.arm();
        // The last look, after arming: work pushed (or a stop asked for) before it is seen
        // here, after it writes the eventfd.
        let handed = self.devices.iter().any(|&d| self.queues.queued(d) > 0)
            || self.units.iter().any(|u| self.queues.done_ready(u.id))
            || stop.load(Ordering::Acquire);
        if handed {
            wakeup.disarm();
            return Ok(());
        }
        // The engine's last look comes after its notifications are on (see `sys::uring`).
        let completion = match own_io.then(|| self.engine.arm_completion_fd()) {
            None => None,
            Some(Ok(Some(fd))) => Some(pollin(fd)),
            Some(Ok(None)) => {
                // A completion is ready: reap it rather than sleep.
                wakeup.disarm();
                return Ok(());
            }
            Some(Err(error)) => {
                tracing::warn!(
                    worker = self.index,
                    %error,
                    "no completion eventfd: the worker polls while its I/O is in flight"
                );
                self.no_completion_fd = true;
                wakeup.disarm();
                return Ok(());
            }
        };
        self.pollfds.clear();
        self.pollfds.push(pollin(wakeup.fd()));
        for unit in self.units.iter().filter(|u| !u.failed) {
            if let Some(fd) = unit.port.poll_fd() {
                self.pollfds.push(pollin(fd));
            }
        }
        self.pollfds.extend(completion);
        let polled = match &mut self.napi_wait {
            NapiWaitState::Ready(wait) if napi => wait.poll(&mut self.pollfds, timeout),
            _ => poll_fds(&mut self.pollfds, timeout),
        };
        // The eventfd is read (a system call) only when the poll saw it written; a wake-up
        // written after the poll returned ends the next sleep early, once.
        match polled {
            Ok(_) if self.pollfds[0].revents == 0 => wakeup.disarm_unread(),
            _ => wakeup.disarm(),
        }
        if completion.is_some() {
            self.engine.disarm_completion_fd();
        }
        if let Err(source) = polled {
            tracing::warn!(worker = self.index, %source, "poll failed; the worker polls on");
            return Ok(());
        }
        // A port whose fd reported an error (e.g. ENETDOWN): its own wait names it.
        let mut ports = self.pollfds[1..].iter().map(|p| p.revents);
        for (index, unit) in self.units.iter_mut().enumerate() {
            if unit.failed {
                continue;
            }
            let revents = ports.next().unwrap_or(0);
            if revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                if let Err(error) = unit.port.wait_rx(Duration::ZERO) {
                    self.failing = Some(index);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Whether this worker's idle polling is a [`NapiWait`] that busy-polls its ports' NAPIs
    /// for up to `spin` before it sleeps (set up at the first call, or after its ports
    /// changed): where every working port names a NAPI ([`NetPort::wait_napi`]), the wait
    /// replaces the poll loop of `idle-spin-us`, so that the receive path runs in this thread
    /// instead of a kernel thread woken per burst.
    /// Not for a spin of zero (sleep at once) or longer than io_uring busy-polls in one wait
    /// ([`crate::sys::napi::BUSY_MAX`]): the worker then polls its rings as without.
    pub fn napi_wait_ready(&mut self, spin: Duration) -> bool {
        if spin.is_zero() || spin > crate::sys::napi::BUSY_MAX {
            return false;
        }
        if let NapiWaitState::Unknown = self.napi_wait {
            self.napi_wait = self.napi_wait_for_ports(spin);
        }
        match &mut self.napi_wait {
            NapiWaitState::Ready(napi) => {
                if let Err(error) = napi.set_busy(spin) {
                    tracing::warn!(worker = self.index, %error, "busy polling: the NAPI wait's poll time cannot change; the worker polls its rings instead");
                    self.napi_wait = NapiWaitState::Unavailable;
                    return false;
                }
                true
            }
            _ => false,
        }
    }

    fn napi_wait_for_ports(&self, spin: Duration) -> NapiWaitState {
        let mut ids = Vec::new();
        for unit in self.units.iter().filter(|u| !u.failed) {
            match unit.port.wait_napi() {
                Some(id) => ids.push(id),
                None => return NapiWaitState::Unavailable,
            }
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return NapiWaitState::Unavailable;
        }
        match NapiWait::new(&ids, spin) {
            Ok(napi) => {
                let napi = Box::new(napi);
                tracing::info!(worker = self.index, napis = ?ids, spin_us = spin.as_micros(), "busy polling: an idle worker busy-polls its interfaces' NAPIs in its wait (io_uring) before it sleeps");
                NapiWaitState::Ready(napi)
            }
            Err(error) => {
                tracing::info!(worker = self.index, %error, "busy polling: no io_uring NAPI busy polling (Linux 6.13+); receiving stays in the kernel's NAPI context");
                NapiWaitState::Unavailable
            }
        }
    }

    /// Naps for `nap` without polling: frames that arrive meanwhile wait in the rings, which
    /// first get every free frame, as before a sleep.
    pub fn nap(&mut self, nap: Duration) -> Result<(), PortError> {
        for unit in &mut self.units {
            unit.port.prepare_nap()?;
        }
        std::thread::sleep(nap);
        Ok(())
    }

    /// At shutdown: stops taking RX and finishes every request still in flight anywhere in
    /// the dataplane (other workers may wait for this one's devices), sending the replies.
    pub fn drain(&mut self, target: &mut Target) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while (self.busy() || self.queues.outstanding() > 0) && Instant::now() < deadline {
            let now = Instant::now();
            match self.step(target, now, true) {
                Ok(true) => {}
                Ok(false) if self.engine.in_flight() > 0 => {
                    let _ = self.engine.wait(1);
                }
                Ok(false) => std::thread::sleep(IO_WAIT_SLEEP),
                Err(error) => {
                    if let Err(error) = self.give_up_port(error) {
                        tracing::error!(%error, "port failed while draining");
                        break;
                    }
                }
            }
        }
        if self.busy() {
            tracing::error!(
                in_flight = self.engine.in_flight(),
                "requests still in flight at shutdown"
            );
        }
    }

    /// Finishes every unit's done requests.
    fn finish(&mut self, target: &mut Target) -> usize {
        let mut work = self.deliver();
        for unit in &mut self.units {
            work += unit.finish(target, &self.queues, &mut self.service);
        }
        work
    }

    /// Takes jobs from the owned devices' queues into the engine while it has room.
    fn take_jobs(&mut self) -> usize {
        let mut taken = 0;
        while let Some(job) = self.held.pop_front() {
            match self.submit(job) {
                Ok(()) => taken += 1,
                Err(job) => {
                    self.held.push_front(job);
                    return taken;
                }
            }
        }
        let count = self.devices.len();
        for step in 0..count {
            let device = self.devices[(self.next_device + step) % count];
            for _ in 0..DEVICE_BATCH_MAX {
                if self.slots.free_count() == 0 {
                    self.next_device = (self.next_device + step) % count;
                    return taken;
                }
                let Some(job) = self.queues.pop_job(device) else {
                    break;
                };
                if let Err(job) = self.submit(job) {
                    self.held.push_back(job);
                    self.next_device = (self.next_device + step + 1) % count;
                    return taken;
                }
                taken += 1;
            }
        }
        if count > 0 {
            self.next_device = (self.next_device + 1) % count;
        }
        // Then the jobs of this worker's own ports (after the queues, so that a stream of
        // local requests cannot keep other workers' jobs waiting).
        for index in 0..self.units.len() {
            while self.slots.free_count() > 0 {
                let Some(job) = self.units[index].local_jobs.pop_front() else {
                    break;
                };
                if let Err(job) = self.submit(job) {
                    self.held.push_back(job);
                    return taken;
                }
                taken += 1;
            }
        }
        taken
    }

    /// Submits `job` to the engine; hands it back when the engine is full for now.
    fn submit(&mut self, job: Job) -> Result<(), Job> {
        let Job {
            unit,
            chunk,
            buf_offset,
            plan,
            started,
        } = job;
        let remote = !self.units.iter().any(|u| u.id == unit);
        let slot = self.slots.put(unit, plan, started);
        let request = io_request(&plan, chunk, buf_offset, u64::from(slot));
        let submitted = self.engine.submit(request);
        if !matches!(&submitted, Err(refused) if refused.is_throttling_err()) {
            self.stats.jobs += 1;
            self.stats.remote_jobs += u64::from(remote);
        }
        let Err(refused) = submitted else {
            return Ok(());
        };
        self.slots.take(u64::from(slot));
        let throttled = refused.is_throttling_err();
        let error = refused.error;
        let chunk = refused.req.chunk;
        if throttled {
            self.stats.io_backlogged += 1;
            return Err(Job {
                unit,
                chunk,
                buf_offset,
                plan,
                started,
            });
        }
        // A request the engine cannot take at all (the target already checked the range, so
        // this is defence in depth): fail it, do not drop it.
        tracing::warn!(%error, "storage refused a request");
        self.hand_back(
            unit,
            Done {
                chunk,
                plan,
                result: Err(IoFailure::Aborted),
                started,
            },
        );
        Ok(())
    }

    fn reap_io(&mut self) -> usize {
        // Taken out and put back so its capacity is reused: no allocation per iteration.
        let mut reaped = std::mem::take(&mut self.reaped);
        self.engine.reap(&mut |completion| reaped.push(completion));
        let count = reaped.len();
        for completion in reaped.drain(..) {
            let (unit, plan, started) = self.slots.take(completion.user_data);
            let result = completion.result.map_err(to_failure);
            let done = Done {
                chunk: completion.chunk,
                plan,
                result,
                started,
            };
            self.hand_back(unit, done);
        }
        self.reaped = reaped;
        count
    }

    fn hand_back(&mut self, unit: u16, done: Done) {
        if let Some(own) = self.units.iter_mut().find(|u| u.id == unit) {
            // At most `capacity` requests of a unit are in flight: never grows.
            debug_assert!(own.local_done.len() < own.capacity);
            own.local_done.push_back(done);
            return;
        }
        if let Err(done) = self.queues.push_done(unit, done) {
            self.undelivered.push_back((unit, done));
        }
    }

    fn deliver(&mut self) -> usize {
        let count = self.undelivered.len();
        for _ in 0..count {
            let Some((unit, done)) = self.undelivered.pop_front() else {
                break;
            };
            self.hand_back(unit, done);
        }
        count
    }
}

/// How an idle worker waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Spin (lowest latency, one core at 100%).
    Spin,
    /// Poll for `spin` after the last work, then nap for `nap` (if not zero) and look again,
    /// then sleep in `poll()` until a frame arrives.
    Poll {
        /// How long to keep polling without work before sleeping.
        spin: SpinBeforeSleep,
        /// How long to nap before the sleep until a frame: under a steady load the worker
        /// then wakes once per nap for every request that arrived meanwhile, rather than once
        /// per request, and each such request waits up to `nap` longer.
        nap: Duration,
    },
}

/// The spin before a sleep in poll mode: fixed (`idle-spin-us`), or adaptive
/// (`idle-spin-adaptive`), adjusted after every idle period that ended in a sleep by the rule
/// of the kernel's haltpoll cpuidle governor: if the whole period (spin and sleep) was no
/// longer than the longest spin, a longer spin would have found the work without a wake-up,
/// so the spin doubles (to at least [`SPIN_GROW_START`], at most the longest); if it was
/// longer, the spin found nothing and would not have, so it halves. Under a load that leaves
/// the worker idle longer than the longest spin between bursts (a fixed moderate rate) the
/// spin shrinks towards nothing and the worker sleeps at once; where the next burst comes
/// within the longest spin it stays long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpinBeforeSleep {
    longest: Duration,
    current: Duration,
    adapts: bool,
}

/// The shortest spin an adaptive [`SpinBeforeSleep`] grows to from below.
pub const SPIN_GROW_START: Duration = Duration::from_micros(10);

impl SpinBeforeSleep {
    /// Always `spin`.
    pub fn fixed(spin: Duration) -> Self {
        Self {
            longest: spin,
            current: spin,
            adapts: false,
        }
    }

    /// Starts at the longest spin and adapts.
    pub fn adaptive(longest: Duration) -> Self {
        Self {
            adapts: true,
            ..Self::fixed(longest)
        }
    }

    /// How long to spin now.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// After an idle period of `idle_for` in which the worker slept and which ended with work
    /// (sleeps that time out without work only lengthen the period). A fixed spin stays.
    pub fn after_sleep(&mut self, idle_for: Duration) {
        if !self.adapts {
            return;
        }
        self.current = if idle_for <= self.longest {
            (self.current * 2).clamp(SPIN_GROW_START.min(self.longest), self.longest)
        } else {
            self.current / 2
        };
    }
}

/// Lets the kernel end this thread's sleeps up to a tenth of `nap` late (at least 1 µs)
/// instead of its default 50 µs, so that a nap lasts about what it was asked to. Without a
/// nap the slack stays as it is (the sleeps in `poll()` then wait for a frame, not a timer).
fn set_timer_slack(nap: Duration) {
    if nap.is_zero() {
        return;
    }
    let slack_ns = u64::try_from(nap.as_nanos() / 10)
        .unwrap_or(u64::MAX)
        .max(1_000);
    if let Err(error) = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(slack_ns))
    {
        tracing::warn!(%error, "could not set the timer slack: naps may last up to 50 us longer");
    }
}

/// What a worker hands back when it stops: its units' counters, its own, and its ports (each
/// with its unit's global index), drained, for a dataplane that serves on with them.
pub struct WorkerExit<P: NetPort> {
    /// Per unit, its counters.
    pub units: Vec<UnitStats>,
    /// The worker's own counters.
    pub stats: WorkerStats,
    /// Per unit: its global index and its port.
    pub ports: Vec<(u16, P)>,
}

/// Runs `worker` on the current thread until `stop` is set, then drains it; returns its
/// units' counters, its own and its working ports. A port that fails while others work is
/// given up and `port_lost` set; when the last one fails, the error is returned. With
/// `yield_core` (`idle-yield`), a poll that found nothing yields the core.
pub fn run<P: NetPort>(
    mut target: Target,
    mut worker: Worker<P>,
    (idle, yield_core): (Idle, bool),
    (stop, port_lost): (&AtomicBool, &Alarm),
) -> Result<WorkerExit<P>, PortError> {
    // Since when the worker found nothing to do (`None` while busy).
    let mut idle_since: Option<Instant> = None;
    // The clock is read every iteration only when the engine holds requests back for
    // `merge_delay`; otherwise every `COARSE_CLOCK_ITERATIONS` (for publishing statistics):
    // reading it cost ~2 % of a busy worker.
    let precise = !worker.engine.merge_delay().is_zero();
    let mut now = Instant::now();
    let mut iterations = 0u32;
    // Whether the worker napped since its last work (the next idle wait is then a sleep).
    let mut napped = false;
    // Whether the worker slept since its last work (the spin then adapts).
    let mut slept = false;
    let mut idle = idle;
    if let Idle::Poll { nap, .. } = idle {
        set_timer_slack(nap);
    }
    // Acquire: pairs with the Release store of the thread that asks for shutdown.
    while !stop.load(Ordering::Acquire) {
        iterations = iterations.wrapping_add(1);
        if precise || iterations % COARSE_CLOCK_ITERATIONS == 0 || idle_since.is_some() {
            now = Instant::now();
        }
        worker.publish(&mut target, now);
        if worker.engine.syncs_in_flight() > 0 && iterations % SYNC_YIELD_ITERATIONS == 0 {
            // A data sync runs in an io_uring blocking-I/O thread, which may share this core
            // (it must when the process has only this one) or another busy worker's: a
            // spinning worker that never yields delays it by a scheduler slice at each of its
            // two wake-ups (the sync's start and its end), milliseconds per group commit.
            std::thread::yield_now();
        }
        let worked = match worker.poll(&mut target, now) {
            Ok(worked) => worked,
            Err(error) => {
                worker.give_up_port(error)?;
                port_lost.raise();
                true
            }
        };
        if worked {
            if let (Some(since), true, Idle::Poll { spin, .. }) = (idle_since, slept, &mut idle) {
                spin.after_sleep(now.duration_since(since));
            }
            (idle_since, napped, slept, worker.unpublished) = (None, false, false, true);
            continue;
        }
        let since = *idle_since.get_or_insert(now);
        match idle {
            // After a short poll of the rings: a gap shorter than that is cheaper to poll out
            // here than to enter the wait for. The rest of the spin happens in the wait, in
            // the kernel, polling the NAPIs.
            Idle::Poll { spin, nap }
                if nap.is_zero()
                    && now.duration_since(since) >= POLL_RINGS_FIRST
                    && spin.current() > POLL_RINGS_FIRST
                    && worker.napi_wait_ready(spin.current() - POLL_RINGS_FIRST) =>
            {
                // Only the first wait of an idle spell busy-polls: after one that ended with
                // nothing to do the worker sleeps at once, as without the NAPI wait.
                let busy_poll = !slept;
                slept = true;
                let sleep = worker.publish_before_sleep(&mut target, now);
                if let Err(error) = worker.wait_busy_polling(sleep, stop, busy_poll) {
                    worker.give_up_port(error)?;
                    port_lost.raise();
                }
            }
            Idle::Poll { spin, nap } if now.duration_since(since) >= spin.current() => {
                // `idle_since` stays: after a sleep that ends without work (a timeout), the
                // worker sleeps again at once instead of polling for `spin` once more, which
                // with a long spin would keep an idle worker busy.
                if nap.is_zero() || napped {
                    slept = true;
                    let sleep = worker.publish_before_sleep(&mut target, now);
                    if let Err(error) = worker.wait(sleep, stop) {
                        // As after a failed poll: the port is given up if others work.
                        worker.give_up_port(error)?;
                        port_lost.raise();
                    }
                } else {
                    // Frames that arrive meanwhile are taken in one go at its end.
                    napped = true;
                    worker.nap(nap)?;
                }
            }
            Idle::Spin | Idle::Poll { .. } if yield_core => {
                // A poll that found nothing gives the core to whatever else is runnable on
                // it (a NAPI thread carrying the next frames, an io_uring thread) at once:
                // the scheduler does not preempt a spinning thread for a woken one before its
                // slice ends, which kept those threads waiting up to a scheduler tick (4 ms
                // here). With nothing else runnable the call returns at once.
                std::thread::yield_now();
            }
            Idle::Spin | Idle::Poll { .. } => std::hint::spin_loop(),
        }
    }
    worker.drain(&mut target);
    worker.stats.major_faults = crate::sys::filemap::thread_major_faults();
    // The final figures, for a reader that asks while the dataplane is stopping.
    worker.publish_now(&mut target, Instant::now());
    let units = worker
        .units
        .iter()
        .map(|u| u.snapshot(&UnitStats::default()))
        .collect();
    let stats = worker.stats();
    let ports = worker
        .units
        .into_iter()
        .filter(|u| !u.failed)
        .map(|u| (u.id, u.port))
        .collect();
    Ok(WorkerExit {
        units,
        stats,
        ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGEST: Duration = Duration::from_micros(50);

    #[test]
    fn test_adaptive_spin_starts_at_the_longest_and_halves_after_long_sleeps() {
        let mut spin = SpinBeforeSleep::adaptive(LONGEST);
        assert_eq!(spin.current(), LONGEST);
        spin.after_sleep(Duration::from_micros(51));
        assert_eq!(spin.current(), Duration::from_micros(25));
        spin.after_sleep(Duration::from_millis(100));
        assert_eq!(spin.current(), Duration::from_nanos(12_500));
        for _ in 0..40 {
            spin.after_sleep(Duration::from_millis(1));
        }
        assert_eq!(spin.current(), Duration::ZERO);
    }

    #[test]
    fn test_adaptive_spin_grows_from_the_start_value_to_the_longest_after_short_sleeps() {
        let mut spin = SpinBeforeSleep::adaptive(LONGEST);
        for _ in 0..40 {
            spin.after_sleep(Duration::from_millis(1));
        }
        // A sleep that a full spin would have spared (the work came within 50 µs).
        spin.after_sleep(Duration::from_micros(30));
        assert_eq!(spin.current(), SPIN_GROW_START);
        spin.after_sleep(LONGEST);
        assert_eq!(spin.current(), 2 * SPIN_GROW_START);
        spin.after_sleep(Duration::from_micros(45));
        assert_eq!(spin.current(), 4 * SPIN_GROW_START);
        spin.after_sleep(Duration::from_micros(45));
        assert_eq!(spin.current(), LONGEST, "never past the longest");
    }

    #[test]
    fn test_fixed_spin_stays_after_any_sleep() {
        let mut spin = SpinBeforeSleep::fixed(LONGEST);
        for idle_for in [
            Duration::from_micros(1),
            Duration::from_millis(100),
            LONGEST,
        ] {
            spin.after_sleep(idle_for);
            assert_eq!(spin.current(), LONGEST);
        }
    }

    #[test]
    fn test_adaptive_spin_below_the_start_value_and_of_zero() {
        let short = Duration::from_micros(4);
        let mut spin = SpinBeforeSleep::adaptive(short);
        spin.after_sleep(Duration::from_micros(9));
        assert_eq!(spin.current(), Duration::from_micros(2));
        spin.after_sleep(Duration::from_micros(3));
        assert_eq!(
            spin.current(),
            short,
            "grows to the longest when it is below the start"
        );
        let mut none = SpinBeforeSleep::adaptive(Duration::ZERO);
        none.after_sleep(Duration::ZERO);
        assert_eq!(none.current(), Duration::ZERO);
        none.after_sleep(Duration::from_micros(1));
        assert_eq!(none.current(), Duration::ZERO);
    }
}

//! Lock-free per-device request queues between the workers (`crossbeam::queue::ArrayQueue`).
//!
//! A worker that receives a request needing storage does not submit it itself: it pushes a
//! [`Job`] (the lent frame chunk and the plan) into the queue of the request's device. Each
//! device has one *owner* worker, which drains that queue into its own io_uring engine, so
//! every request for a device is submitted, merged and ordered by one engine, whatever port it
//! arrived on: a sequential stream that the initiator spreads over two NICs (the Linux driver
//! round-robins its frames over every path) arrives at one engine and is merged there. When the
//! I/O completes, the owner pushes a [`Done`] into the queue of the request's *unit* (its port),
//! and that port's worker completes the reply and transmits it from the same frame on the port
//! it came in on (an AF_XDP TX ring has one producer).
//!
//! Capacities make a push fail only on a broken invariant: a unit never has more requests in
//! flight than its slots (it stops taking RX first), so its done queue (capacity = its slots)
//! and every device queue (capacity = all units' slots together) always have room. A push that
//! fails anyway hands the item back; the caller keeps it and retries, nothing is dropped.
//!
//! A request whose device is owned by the worker of the port it arrived on (every request,
//! with one worker) does not use these queues: the unit keeps the job, and the worker its
//! completion, in plain per-unit lists (`dataplane::worker`), because each atomic operation
//! here also drains the core's store buffer (measured: 2-5 % of the rate at 850k requests/s).
//! Requests in flight are not ordered by AoE, so the two paths may interleave freely.
//!
//! Hazard: a request for a device whose owner is another worker costs two cache-line handoffs
//! (job there, done back). The owner is chosen so that a device served by one worker's ports
//! only is owned by that worker (see [`owners`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam::queue::ArrayQueue;

use crate::aoe::{DeviceIndex, IoFailure, IoPlan};
use crate::sys::mem::Chunk;
use crate::sys::wake::Wakeup;

/// A storage request on its way to its device's owner.
#[derive(Debug)]
pub struct Job {
    /// Global index of the unit (port) the request came in on; its reply leaves there.
    pub unit: u16,
    /// The request frame, lent as a chunk of that port's frame memory.
    pub chunk: Chunk,
    /// Offset of the data in the chunk.
    pub buf_offset: u32,
    /// What to do.
    pub plan: IoPlan,
    /// When the request was received (for its service time).
    pub started: Instant,
}

/// A finished storage request on its way back to its unit.
#[derive(Debug)]
pub struct Done {
    /// The request frame's chunk, returned.
    pub chunk: Chunk,
    /// The plan, for `Target::complete`.
    pub plan: IoPlan,
    /// Outcome.
    pub result: Result<(), IoFailure>,
    /// When the request was received.
    pub started: Instant,
}

/// The queues of one dataplane, shared by its workers.
#[derive(Debug)]
pub struct Queues {
    devices: Box<[ArrayQueue<Job>]>,
    owners: Box<[usize]>,
    done: Box<[ArrayQueue<Done>]>,
    /// Jobs pushed and not yet completed by their unit (shutdown waits for 0).
    outstanding: AtomicUsize,
    /// Per unit, the worker whose port it is (empty without wake-ups).
    unit_workers: Box<[usize]>,
    /// Per worker, its wake-up: a push for a sleeping worker wakes it (empty: no wake-ups;
    /// its workers then sleep in short steps while they may get work).
    wakeups: Box<[Wakeup]>,
}

impl Queues {
    /// Queues for `owners.len()` devices (device `d` owned by worker `owners[d]`) and
    /// `unit_slots.len()` units, unit `u` holding at most `unit_slots[u]` requests in flight.
    pub fn new(owners: Vec<usize>, unit_slots: &[usize]) -> Queues {
        let total: usize = unit_slots.iter().sum::<usize>().max(1);
        Queues {
            devices: owners.iter().map(|_| ArrayQueue::new(total)).collect(),
            owners: owners.into(),
            done: unit_slots
                .iter()
                .map(|&slots| ArrayQueue::new(slots.max(1)))
                .collect(),
            outstanding: AtomicUsize::new(0),
            unit_workers: Box::new([]),
            wakeups: Box::new([]),
        }
    }

    /// The queues with a wake-up per worker (an eventfd each), unit `u` being a port of
    /// worker `unit_workers[u]`: a job or a finished request pushed for a worker that sleeps
    /// wakes it at once.
    pub fn with_wakeups(mut self, unit_workers: Vec<usize>) -> std::io::Result<Queues> {
        let workers = self
            .owners
            .iter()
            .chain(&unit_workers)
            .max()
            .map_or(0, |&w| w + 1);
        self.wakeups = (0..workers)
            .map(|_| Wakeup::new())
            .collect::<std::io::Result<_>>()?;
        self.unit_workers = unit_workers.into();
        Ok(self)
    }

    /// `worker`'s wake-up, if the queues have them.
    pub fn wakeup(&self, worker: usize) -> Option<&Wakeup> {
        self.wakeups.get(worker)
    }

    /// Wakes every sleeping worker (after the dataplane set its stop flag, which a worker
    /// about to sleep looks at after it armed its wake-up).
    pub fn wake_all(&self) {
        for wakeup in &self.wakeups {
            wakeup.wake();
        }
    }

    fn wake(&self, worker: Option<usize>) {
        if let Some(wakeup) = worker.and_then(|w| self.wakeups.get(w)) {
            wakeup.wake();
        }
    }

    /// Number of devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// The worker that owns `device`.
    pub fn owner(&self, device: DeviceIndex) -> usize {
        self.owners[usize::from(device)]
    }

    /// The devices owned by `worker`.
    pub fn owned_by(&self, worker: usize) -> Vec<DeviceIndex> {
        (0..self.owners.len())
            .filter(|&d| self.owners[d] == worker)
            .filter_map(|d| DeviceIndex::try_from(d).ok())
            .collect()
    }

    /// Queues `job` for its device's owner, or hands it back.
    pub fn push_job(&self, job: Job) -> Result<(), Job> {
        let device = usize::from(job.plan.device);
        self.devices[device].push(job)?;
        // Relaxed: a counter only read to decide when shutdown may stop; the queues
        // themselves carry the happens-before for the job's contents.
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.wake(Some(self.owners[device]));
        Ok(())
    }

    /// The next job of `device`, if any.
    pub fn pop_job(&self, device: DeviceIndex) -> Option<Job> {
        let queue = &self.devices[usize::from(device)];
        // `is_empty` is two loads; a `pop` of an empty queue also runs a full fence, which
        // drains the store buffer (the busy worker asks every iteration).
        if queue.is_empty() {
            return None;
        }
        queue.pop()
    }

    /// Jobs waiting in `device`'s queue.
    pub fn queued(&self, device: DeviceIndex) -> usize {
        self.devices[usize::from(device)].len()
    }

    /// Hands a finished request back to `unit`, or hands it back to the caller.
    pub fn push_done(&self, unit: u16, done: Done) -> Result<(), Done> {
        self.done[usize::from(unit)].push(done)?;
        self.wake(self.unit_workers.get(usize::from(unit)).copied());
        Ok(())
    }

    /// Whether finished requests of `unit` wait to be taken back.
    pub fn done_ready(&self, unit: u16) -> bool {
        !self.done[usize::from(unit)].is_empty()
    }

    /// The next finished request of `unit`, if any. Counts it as no longer outstanding.
    pub fn pop_done(&self, unit: u16) -> Option<Done> {
        let queue = &self.done[usize::from(unit)];
        if queue.is_empty() {
            return None;
        }
        let done = queue.pop()?;
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        Some(done)
    }

    /// Jobs pushed whose unit has not yet taken them back.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// Chooses an owner worker per device: among the workers whose ports may serve the device
/// (`serves[worker][device]`), the one with the fewest devices so far; a device no worker
/// serves goes to worker 0. A device exported on one worker's ports only is thus never
/// handed across cores; a device on every port is spread round-robin.
pub fn owners(serves: &[Vec<bool>], devices: usize) -> Vec<usize> {
    let mut load = vec![0usize; serves.len().max(1)];
    (0..devices)
        .map(|device| {
            let owner = (0..serves.len())
                .filter(|&w| serves[w].get(device).copied().unwrap_or(false))
                .min_by_key(|&w| (load[w], w))
                .unwrap_or(0);
            load[owner] += 1;
            owner
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aoe::IoKind;
    use crate::sys::mem::{Arena, ChunkPool};
    use std::sync::Arc;

    fn plan(device: DeviceIndex) -> IoPlan {
        IoPlan {
            device,
            export: device,
            kind: IoKind::Read,
            sector: 7,
            count: 2,
            data_offset: 36,
        }
    }

    /// `job` finished with `result`.
    fn done(job: Job, result: Result<(), IoFailure>) -> Done {
        Done {
            chunk: job.chunk,
            plan: job.plan,
            result,
            started: job.started,
        }
    }

    /// A job from `unit` for `device`, in a fresh chunk of `pool`, its data at `buf_offset`.
    fn job(pool: &mut ChunkPool, unit: u16, device: DeviceIndex, buf_offset: u32) -> Job {
        Job {
            unit,
            chunk: pool.alloc().expect("chunk"),
            buf_offset,
            plan: plan(device),
            started: Instant::now(),
        }
    }

    #[test]
    fn test_owners_keep_single_worker_devices_local_and_spread_shared_ones() {
        // Device 0: only worker 1's ports; 1..=3: every port; 4: nobody.
        let serves = vec![
            vec![false, true, true, true, false],
            vec![true, true, true, true, false],
        ];
        assert_eq!(owners(&serves, 5), vec![1, 0, 0, 1, 0]);
        assert_eq!(owners(&[vec![true, true]], 2), vec![0, 0]);
        assert_eq!(owners(&[], 2), vec![0, 0]);
    }

    #[test]
    fn test_job_and_done_round_trip_counts_outstanding() {
        let arena = Arc::new(Arena::new(4096, 4).expect("arena"));
        let mut pool = ChunkPool::new(arena).expect("pool");
        let queues = Queues::new(vec![0, 1], &[2, 1]);
        assert_eq!(queues.owned_by(1), vec![1]);
        queues.push_job(job(&mut pool, 1, 1, 512)).expect("room");
        assert_eq!((queues.queued(1), queues.queued(0)), (1, 0));
        assert_eq!(queues.outstanding(), 1);
        let job = queues.pop_job(1).expect("the job");
        assert_eq!((job.unit, job.buf_offset, job.plan), (1, 512, plan(1)));
        assert!(queues.pop_job(1).is_none());
        let done = done(job, Err(IoFailure::Media));
        queues.push_done(1, done).expect("room");
        assert_eq!(
            queues.outstanding(),
            1,
            "outstanding until its unit takes it"
        );
        let done = queues.pop_done(1).expect("done");
        assert_eq!(done.result, Err(IoFailure::Media));
        assert_eq!(queues.outstanding(), 0);
        pool.free(done.chunk);
    }

    /// Whether `worker`'s wake-up eventfd has been written.
    fn woken(queues: &Queues, worker: usize) -> bool {
        let wakeup = queues.wakeup(worker).expect("wake-ups");
        let mut fds = [crate::sys::wake::pollin(wakeup.fd())];
        crate::sys::wake::poll_fds(&mut fds, std::time::Duration::ZERO).expect("poll") == 1
    }

    #[test]
    fn test_pushes_wake_the_sleeping_worker_they_are_for() {
        let arena = Arc::new(Arena::new(4096, 4).expect("arena"));
        let mut pool = ChunkPool::new(arena).expect("pool");
        // Device 0 owned by worker 1; unit 0 is worker 0's port.
        let queues = Queues::new(vec![1], &[2])
            .with_wakeups(vec![0])
            .expect("eventfds");
        for worker in 0..2 {
            queues.wakeup(worker).expect("one per worker").arm();
        }
        queues.push_job(job(&mut pool, 0, 0, 0)).expect("room");
        assert!(woken(&queues, 1), "the device's owner is woken");
        assert!(!woken(&queues, 0), "nobody else");
        let job = queues.pop_job(0).expect("the job");
        let done = done(job, Ok(()));
        queues.push_done(0, done).expect("room");
        assert!(woken(&queues, 0), "the unit's worker is woken");
        pool.free(queues.pop_done(0).expect("done").chunk);
    }

    #[test]
    fn test_full_queue_hands_the_item_back() {
        let arena = Arc::new(Arena::new(4096, 4).expect("arena"));
        let mut pool = ChunkPool::new(arena).expect("pool");
        let queues = Queues::new(vec![0], &[1]);
        queues
            .push_job(job(&mut pool, 0, 0, 0))
            .expect("room for one");
        let refused = queues.push_job(job(&mut pool, 0, 0, 0)).expect_err("full");
        assert_eq!(refused.unit, 0);
        assert_eq!(queues.outstanding(), 1, "a refused job is not counted");
    }

    #[test]
    fn test_jobs_cross_threads_in_order_per_device() {
        let arena = Arc::new(Arena::new(4096, 256).expect("arena"));
        let mut pool = ChunkPool::new(arena).expect("pool");
        let queues = Arc::new(Queues::new(vec![1], &[256]));
        let chunks: Vec<Chunk> = (0..256).map(|_| pool.alloc().expect("chunk")).collect();
        let consumer = {
            let queues = Arc::clone(&queues);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while seen.len() < 256 {
                    if let Some(job) = queues.pop_job(0) {
                        seen.push(job.plan.sector);
                        let done = done(job, Ok(()));
                        queues.push_done(0, done).expect("room");
                    }
                }
                seen
            })
        };
        for (sector, chunk) in chunks.into_iter().enumerate() {
            let mut plan = plan(0);
            plan.sector = u64::try_from(sector).expect("sector");
            let mut job = Job {
                unit: 0,
                chunk,
                buf_offset: 0,
                plan,
                started: Instant::now(),
            };
            while let Err(back) = queues.push_job(job) {
                job = back;
            }
        }
        let seen = consumer.join().expect("consumer");
        assert_eq!(seen, (0..256).collect::<Vec<u64>>(), "FIFO per device");
        let mut returned = 0;
        while let Some(done) = queues.pop_done(0) {
            pool.free(done.chunk);
            returned += 1;
        }
        assert_eq!(returned, 256);
        assert_eq!(queues.outstanding(), 0);
    }
}

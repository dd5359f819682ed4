//! The io_uring engine: fixed buffers, registered files, request merging, batched submission.
//!
//! Contract:
//! - The request arenas (fixed buffers 0..n, one per port) and an engine-owned bounce arena
//!   (fixed buffer n) are
//!   registered once; each export registers two files: `2 * export` (direct, or the buffered
//!   descriptor again when there is none) and `2 * export + 1` (buffered).
//! - A single request goes out as `READ_FIXED`/`WRITE_FIXED`; adjacent same-direction requests
//!   of one export (see [`crate::storage::merge`]) go out as one `READV`/`WRITEV` of at most
//!   `merge_max_segments` iovecs, and its one result is split back: requests fully covered by
//!   the byte count succeed; the others of a merged I/O that failed or came back short, and a
//!   lone request that came back short, are issued again on their own (never merged again),
//!   so each gets its own errno; a retried request that is short again fails with `EIO`
//!   (never silently accepted).
//! - Runs on the buffered descriptor that cannot wait for the disk are carried out inline
//!   during `commit` (one `preadv2`/`pwritev2` per run of at most 32 requests) and complete
//!   into the ready queue, with the same per-request results as the ring: `Writeback` writes
//!   (page-cache copies; through io_uring ext4 would punt each to an io-wq thread), and reads
//!   with `RWF_NOWAIT` (page-cache copies, half the CPU of a ring round trip for a lone 1 KiB
//!   read). When a commit holds [`RING_READS_MIN`] or more such reads, the single-request ones
//!   go through the ring instead: one `io_uring_enter` for all of them costs less than a
//!   `preadv2` each. A read that misses the cache (`EAGAIN` or a short count) goes through the ring;
//!   `EOPNOTSUPP` turns inline reads off for that export. Where the export has a shared
//!   mapping ([`Export::write_map`]: write-back writes of a `mapped-writes` export;
//!   [`Export::read_map`]: reads of a resident or `mapped-reads` one) these are copies through
//!   it, one per request, no syscall. Buffered reads of an export without a read mapping also
//!   feed its readahead ([`crate::storage::readahead`]: an `IORING_OP_FADVISE(WILLNEED)` per
//!   window ahead of a sequential stream; the kernel's own readahead is off for its file).
//! - An inline write first makes sure it cannot wait for the disk: a page it covers in part
//!   (through a mapping: any page it touches) that is not in the page cache would be read in
//!   on this thread. Pages not seen cached before are asked about (a one-byte
//!   `preadv2(RWF_NOWAIT)`, see [`crate::storage::cached`]); a run with a missing page goes
//!   through the ring (`uncached_writes`), where ext4 punts it to an io-wq thread. The pages
//!   of a write sent to the disk directly are forgotten (`O_DIRECT` drops them from the page
//!   cache); every page once the kernel counted an eviction ([`cached::eviction_epoch`]), or
//!   once a sample of a table's pages, asked about again at most once a second, found one
//!   gone (`seen_resets`).
//! - An inline write run that held the worker for [`stall::STALL`] or more while it waited in
//!   the kernel (dirty-page throttling, most likely; told from a preemption by the worker's
//!   voluntary context switches, counted once per commit for a while after a first slow run:
//!   [`stall::StallWatch`]) sends its export's buffered writes through the ring for a while
//!   ([`stall::WritePause`]; `inline_stalls`, and `paused_writes` for the writes that went
//!   through the ring meanwhile), where an io-wq thread waits in the throttling instead.
//! - **Group commit.** Writes never carry `RWF_DSYNC`. A write of a `Durability::Sync`
//!   export whose I/O completed waits in its export's [`GroupCommit`]; one
//!   `IORING_OP_FSYNC` with `DATASYNC` (on the buffered descriptor, also for `direct-io`
//!   exports, where it flushes the device's cache) acknowledges every write that completed
//!   before it was issued. One sync per export is in flight at a time; writes that complete
//!   meanwhile gather for the next one, which is issued by the first `commit` (or `wait`)
//!   after the previous one finished. A FLUSH (of any export) joins the same group when it
//!   arrives, so FLUSHes and sync writes share syncs. A failed sync fails every request
//!   waiting in the group, those gathered for the next sync too (logged, counted in
//!   `sync_failures`); the export keeps serving. Waiting requests count as in flight and
//!   against the queue depth. Buffered writes of `sync` exports are therefore `pwritev2`
//!   calls on the worker's thread, as write-back ones are.
//! - Request slots, iovecs, the pending list and the completion queue are allocated in `new`:
//!   `submit`, `commit` and `reap` never allocate. Slots are the queue depth (`entries`), so
//!   the ring can never run out of submission entries for them.
//!
//! Hazards:
//! - Inline writes can block in dirty-page throttling, as any buffered writer does: twice
//!   at first (the first slow run only makes the engine count), then once per pause while the
//!   export's disk keeps falling behind (see [`crate::storage::stall`]); and on the disk when a page seen cached was evicted in a way
//!   the kernel does not count, or less than a second ago (see [`crate::storage::cached`]).
//! - With `merge_delay > 0`, `commit` may hold a run back hoping for a neighbour; the caller
//!   must keep calling `commit` (once per loop iteration) or `wait`, which flushes everything.
//! - The ring is single-issuer: after the first `commit`, use the engine from that thread only.
//! - Dropping the engine blocks until in-flight I/O finishes (see [`crate::sys::uring`]), but
//!   the kernel drops its references to the registered files a little later, asynchronously:
//!   re-opening a block device export with `O_EXCL` right after dropping an engine may see
//!   `EBUSY` for a moment.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::storage::cached::{self, SeenPages};
use crate::storage::export::{Durability, Export, Lane, Route};
use crate::storage::group::GroupCommit;
use crate::storage::io::{
    assert_in_window, check, Arenas, Checked, EngineError, EngineStats, IoCompletion, IoError,
    IoOp, IoRequest, RequestError, SubmitError, READ_ONLY,
};
use crate::storage::merge::{self, Pending, Run};
use crate::storage::readahead::Readahead;
use crate::storage::stall::{self, StallWatch, WritePause};
use crate::storage::sync_engine::write_all;
use crate::sys::cpu::prefetch_range;
use crate::sys::filemap::{self, FileMap};
use crate::sys::mem::{Arena, Chunk, ChunkPool};
use crate::sys::uring::{Ring, RingOptions, Seg, Segs, SEGMENTS_MAX};
use rustix::io::{Errno, ReadWriteFlags};

/// Most bounce chunks an engine keeps (bouncing is the slow path).
pub const BOUNCE_CHUNKS_MAX: usize = 64;

/// Most slices one inline `preadv2`/`pwritev2` carries (longer runs take several calls).
const INLINE_IOVECS_MAX: usize = 32;

/// From this many single-request buffered reads in one commit on, they go through the ring
/// (one `io_uring_enter` for all of them) rather than one `preadv2` each.
const RING_READS_MIN: usize = 4;

/// Marks the end of a slot chain.
const NONE: u32 = u32::MAX;

/// Ring `user_data` of an export's group sync: this bit plus the export index (request
/// I/Os carry their head slot index, below 2^31).
const SYNC_TAG: u64 = 1 << 32;

/// Ring `user_data` of a readahead (`POSIX_FADV_WILLNEED`) of an export whose kernel
/// readahead is off (see [`crate::storage::readahead`]); its completion says nothing.
const READAHEAD_TAG: u64 = 1 << 33;

/// io_uring engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UringConfig {
    /// Queue depth: requests queued or in flight at once (and submission queue size).
    pub entries: u32,
    /// Most requests merged into one vectored I/O (ggaoed uses 32).
    pub merge_max_segments: usize,
    /// 0 = merge only what is queued in the same batch; > 0 = hold a request at most this
    /// long hoping for a neighbour.
    pub merge_delay: Duration,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            entries: 256,
            merge_max_segments: 32,
            merge_delay: Duration::ZERO,
        }
    }
}

/// One accepted request.
#[derive(Debug)]
struct Slot {
    /// The request as the merge planner saw it (for a retry on its own).
    /// Its export, direction and length are the slot's.
    request: Pending,
    user_data: u64,
    /// Acknowledged only through the export's group sync (a write of a `sync` export).
    grouped: bool,
    buf_offset: u32,
    file_offset: u64,
    route: Route,
    /// The caller's chunk; `None` while lent to the ring.
    chunk: Option<Chunk>,
    /// The bounce chunk when `route.bounce`; `None` while lent to the ring.
    bounce: Option<Chunk>,
    /// Next slot in the same kernel I/O, or `NONE`.
    next: u32,
    /// When a `commit` first saw the request (for `merge_delay`).
    first_commit: Option<Instant>,
}

/// io_uring engine.
pub struct UringEngine {
    // Dropped first: waits for in-flight I/O while the arenas are still alive.
    ring: Ring,
    exports: Arc<[Export]>,
    arena: Arenas,
    bounce: ChunkPool,
    slots: Box<[Option<Slot>]>,
    free_slots: Vec<u32>,
    pending: Vec<Pending>,
    /// Completions decided at submit time (writes to read-only exports) and of inline runs.
    ready: VecDeque<IoCompletion>,
    /// Per export: requests waiting for a data sync (see the module docs).
    groups: Box<[GroupCommit<IoCompletion>]>,
    /// Requests waiting in `groups`, all exports together.
    grouped: usize,
    /// Groups with a sync in flight.
    syncing: usize,
    /// Per export: buffered reads are tried inline with `RWF_NOWAIT` first.
    nowait_reads: Box<[bool]>,
    /// Per export whose kernel readahead is off: its sequential streams.
    readahead: Box<[Option<Readahead>]>,
    /// Per export whose buffered writes may find a page missing: the pages they found cached
    /// (`None` where asking is not possible: the file system has no `RWF_NOWAIT` reads).
    seen: Box<[Option<SeenPages>]>,
    /// [`cached::eviction_epoch`] when `seen` was last cleared (or made).
    seen_epoch: u64,
    /// Per export: whether its buffered writes go through the ring for now (see
    /// [`crate::storage::stall`]).
    write_pauses: Box<[WritePause]>,
    /// Tells inline write runs the kernel held up from preempted ones.
    stalls: StallWatch,
    /// The clock of the last `commit` (for [`cached::SAMPLE_EVERY`]).
    clock: Option<Instant>,
    /// When `seen` was last sampled, and the next sample's seed.
    sampled_at: Option<Instant>,
    sample_seed: u64,
    /// Scratch of [`Self::inline`]: the run's buffers, and per-request results of writes.
    inline_segs: Vec<Seg>,
    inline_results: Vec<Result<(), IoError>>,
    /// Buffered reads in this commit that [`Self::inline`] may try with `RWF_NOWAIT`.
    nowait_batch: usize,
    cfg: UringConfig,
    seq: u64,
    stats: EngineStats,
}

impl UringEngine {
    /// Builds the ring, registers `arena`, a bounce arena and the exports' files.
    pub fn new(
        exports: Arc<[Export]>,
        arena: Arc<Arena>,
        cfg: UringConfig,
    ) -> Result<UringEngine, EngineError> {
        UringEngine::with_arenas(exports, &[arena], cfg)
    }

    /// As [`UringEngine::new`], for requests whose chunks come from any of `arenas` (each is
    /// registered as its own fixed buffer, the bounce arena after them).
    pub fn with_arenas(
        exports: Arc<[Export]>,
        arenas: &[Arc<Arena>],
        cfg: UringConfig,
    ) -> Result<UringEngine, EngineError> {
        let arena = Arenas::new(arenas)?;
        let capacity = cfg.entries as usize;
        if capacity == 0 || capacity > u32::MAX as usize / 2 {
            return Err(EngineError::Config("entries must be in 1..2^31"));
        }
        if !(1..=SEGMENTS_MAX).contains(&cfg.merge_max_segments) {
            return Err(EngineError::Config(
                "merge_max_segments must be in 1..=1024",
            ));
        }
        if exports.len() > usize::from(u16::MAX) + 1 {
            return Err(EngineError::Config("at most 65536 exports"));
        }
        let opts = RingOptions {
            max_segments: cfg.merge_max_segments,
            ..RingOptions::default()
        };
        // Room for every request slot's I/O, a group sync per export and a readahead per
        // export (each up to as many again; a sync that finds no room goes out with a later
        // commit, a readahead that finds none is skipped).
        let per_export = u32::try_from(exports.len())
            .unwrap_or(u32::MAX)
            .min(cfg.entries);
        let mut ring = Ring::new(cfg.entries + 2 * per_export, opts)?;
        // Bounce chunks are at least a page so their addresses meet any `dio_mem_align` we use.
        let bounce_size = arena.max_chunk_size().max(4096);
        let bounce_arena = Arc::new(Arena::new(bounce_size, capacity.min(BOUNCE_CHUNKS_MAX))?);
        let registered: Vec<Arc<Arena>> =
            arena.all().iter().chain([&bounce_arena]).cloned().collect();
        ring.register_arenas(&registered)?;
        let fds: Vec<RawFd> = exports
            .iter()
            .flat_map(|e| {
                [
                    e.fd(Lane::Direct).as_raw_fd(),
                    e.fd(Lane::Buffered).as_raw_fd(),
                ]
            })
            .collect();
        if !fds.is_empty() {
            ring.register_files(&fds)?;
        }
        let count = u32::try_from(capacity).expect("checked above");
        let nowait_reads = exports.iter().map(|_| true).collect();
        let readahead = exports.iter().map(Export::readahead).collect();
        let seen = exports.iter().map(Export::seen_pages).collect();
        let write_pauses = exports.iter().map(|_| WritePause::default()).collect();
        let groups = exports
            .iter()
            .map(|_| GroupCommit::with_capacity(capacity))
            .collect();
        Ok(UringEngine {
            ring,
            exports,
            arena,
            bounce: ChunkPool::new(bounce_arena)?,
            slots: (0..capacity).map(|_| None).collect(),
            free_slots: (0..count).rev().collect(),
            pending: Vec::with_capacity(capacity),
            ready: VecDeque::with_capacity(capacity),
            groups,
            grouped: 0,
            syncing: 0,
            nowait_reads,
            readahead,
            seen,
            seen_epoch: cached::eviction_epoch(),
            write_pauses,
            stalls: StallWatch::default(),
            clock: None,
            sampled_at: None,
            sample_seed: 0x2545_F491_4F6C_DD1D,
            inline_segs: Vec::with_capacity(cfg.merge_max_segments),
            inline_results: Vec::with_capacity(cfg.merge_max_segments),
            nowait_batch: 0,
            cfg,
            seq: 0,
            stats: EngineStats::default(),
        })
    }

    /// Queues `req` for the next `commit`, or hands it back.
    pub fn submit(&mut self, req: IoRequest) -> Result<(), RequestError> {
        if self.free_slots.len() <= self.ready.len() + self.grouped {
            return Err(self.reject(req, SubmitError::QueueFull));
        }
        let checked = match check(&self.exports, &self.arena, &req) {
            Ok(checked) => checked,
            Err(error) => return Err(self.reject(req, error)),
        };
        let export = &self.exports[usize::from(req.export)];
        if req.op == IoOp::Write && export.read_only() {
            self.stats.submitted += 1;
            self.stats.errors += 1;
            let IoRequest {
                user_data, chunk, ..
            } = req;
            self.ready.push_back(IoCompletion {
                user_data,
                chunk,
                result: Err(READ_ONLY),
            });
            return Ok(());
        }
        let bounce = match checked.route.bounce {
            false => None,
            true => match self.bounce.alloc() {
                Some(chunk) => Some(chunk),
                None => return Err(self.reject(req, SubmitError::BounceFull)),
            },
        };
        self.accept(req, checked, bounce);
        Ok(())
    }

    /// Plans merges and pushes queued requests to the kernel with one `io_uring_enter`.
    pub fn commit(&mut self, now: Instant) -> Result<(), EngineError> {
        self.clock = Some(now);
        self.dispatch(Some(now));
        self.ring.submit()?;
        Ok(())
    }

    /// Hands every ready completion to `out`, without blocking. Returns how many.
    pub fn reap(&mut self, out: &mut impl FnMut(IoCompletion)) -> usize {
        let mut count = self.ready.len();
        self.stats.completed += count as u64;
        self.ready.drain(..).for_each(&mut *out);
        let UringEngine {
            ring,
            exports,
            slots,
            free_slots,
            bounce,
            arena,
            stats,
            groups,
            grouped,
            syncing,
            pending,
            seq,
            ..
        } = self;
        ring.reap(|user_data, res, segs| {
            if user_data & READAHEAD_TAG != 0 {
                return;
            }
            if user_data & SYNC_TAG != 0 {
                *syncing -= 1;
                let export = usize::from(u16::try_from(user_data & !SYNC_TAG).expect("export"));
                let settled = settle(&mut groups[export], res, &exports[export], stats, out);
                *grouped -= settled;
                count += settled;
                return;
            }
            let head = u32::try_from(user_data).expect("ring user_data is a slot index");
            let mut done = Done {
                slots,
                retry: pending,
                seq,
                free_slots,
                bounce,
                arena,
                stats,
                groups,
                grouped,
            };
            count += done.complete(head, res, segs, out);
        });
        count
    }

    /// Submits everything held, then blocks until at least `min` completions are ready (each
    /// kernel I/O counts once, so a merged I/O may satisfy more) or nothing is in flight.
    pub fn wait(&mut self, min: usize) -> Result<(), EngineError> {
        self.dispatch(None);
        let want = min.saturating_sub(self.ready.len());
        if want > 0 && self.ring.in_flight() > 0 {
            self.ring.submit_and_wait(want)?;
        } else {
            self.ring.submit()?;
        }
        Ok(())
    }

    /// Before the calling thread sleeps with requests in flight: pushes everything queued or
    /// held back to the kernel and, if every request the engine holds now waits for the
    /// kernel (none ready to reap), switches the ring's completion notifications on and
    /// returns the eventfd that becomes readable when one completes. `None`: do not sleep
    /// on the engine (a completion is ready, or nothing is in the kernel). Call
    /// [`Self::disarm_completion_fd`] after the sleep.
    pub fn arm_completion_fd(&mut self) -> Result<Option<BorrowedFd<'_>>, EngineError> {
        self.dispatch(None);
        if !self.ready.is_empty() || !self.pending.is_empty() || self.ring.in_flight() == 0 {
            self.ring.submit()?;
            return Ok(None);
        }
        Ok(self.ring.arm_completion_fd()?)
    }

    /// After a sleep armed by [`Self::arm_completion_fd`]: notifications off again.
    pub fn disarm_completion_fd(&mut self) {
        self.ring.disarm_completion_fd();
    }

    /// How many requests the engine holds before `submit` throttles.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How long `commit` may hold a request back for a neighbour (zero: never, and then
    /// `commit` ignores its clock argument).
    pub fn merge_delay(&self) -> Duration {
        self.cfg.merge_delay
    }

    /// Whether buffered reads are first tried inline with `RWF_NOWAIT` (the default), or
    /// always go through the ring (for comparisons and tests of the ring path).
    pub fn set_inline_reads(&mut self, on: bool) {
        self.nowait_reads.fill(on);
    }

    /// Whether buffered reads of `export` are tried inline (false once its file system
    /// answered `EOPNOTSUPP`, or after `set_inline_reads(false)`).
    pub fn inline_reads(&self, export: u16) -> bool {
        self.nowait_reads
            .get(usize::from(export))
            .copied()
            .unwrap_or(false)
    }

    /// Requests accepted and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free_slots.len() + self.ready.len() + self.grouped
    }

    /// Requests waiting for a group sync (their own I/O done), all exports together.
    pub fn waiting_for_sync(&self) -> usize {
        self.grouped
    }

    /// Group syncs in flight (at most one per export).
    pub fn syncs_in_flight(&self) -> usize {
        self.syncing
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The exports, by index.
    pub fn exports(&self) -> &Arc<[Export]> {
        &self.exports
    }

    /// Restricts io_uring's async worker threads to `cpus` (see `Ring::set_io_worker_cpus`).
    pub fn set_io_worker_cpus(&mut self, cpus: &[usize]) -> Result<(), EngineError> {
        Ok(self.ring.set_io_worker_cpus(cpus)?)
    }

    /// The ring's set-up mode (for logs).
    pub fn ring_mode(&self) -> crate::sys::uring::SetupMode {
        self.ring.mode()
    }

    fn reject(&mut self, req: IoRequest, error: SubmitError) -> RequestError {
        self.stats.rejected += 1;
        RequestError { req, error }
    }

    /// Stores a validated request in a slot and queues it.
    fn accept(&mut self, req: IoRequest, checked: Checked, mut bounce: Option<Chunk>) {
        let export = &self.exports[usize::from(req.export)];
        if let Some(b) = bounce.as_mut().filter(|_| req.op == IoOp::Write) {
            let (offset, len) = (req.buf_offset as usize, req.len as usize);
            let data = &self.arena.bytes(&req.chunk)[offset..offset + len];
            self.bounce.bytes_mut(b)[..len].copy_from_slice(data);
        }
        self.stats.submitted += 1;
        self.stats.bounced += u64::from(bounce.is_some());
        let to_buffered = checked.route.lane == Lane::Buffered && export.dio_align().is_some();
        self.stats.buffered += u64::from(to_buffered && req.op != IoOp::Flush);
        let index = self
            .free_slots
            .pop()
            .expect("submit checked for a free slot");
        let pending = Pending {
            export: req.export,
            op: req.op,
            lane: checked.route.lane,
            sector: req.sector,
            len: req.len,
            seq: self.seq,
            slot: index,
            alone: false,
        };
        self.seq += 1;
        self.pending.push(pending);
        let slot = &mut self.slots[index as usize];
        assert!(slot.is_none(), "slot {index} taken twice");
        *slot = Some(Slot {
            request: pending,
            user_data: req.user_data,
            grouped: req.op == IoOp::Write && export.durability() == Durability::Sync,
            buf_offset: req.buf_offset,
            file_offset: checked.file_offset,
            route: checked.route,
            chunk: Some(req.chunk),
            bounce,
            next: NONE,
            first_commit: None,
        });
    }

    /// Pushes every runnable run to the ring; `now == None` forces held runs out too.
    fn dispatch(&mut self, now: Option<Instant>) {
        let max = self.cfg.merge_max_segments;
        self.stalls.start_commit();
        self.prefetch_mapped();
        merge::sort(&mut self.pending);
        self.nowait_batch = self
            .pending
            .iter()
            .filter(|p| p.op == IoOp::Read && self.nowait_read(p))
            .count();
        let (mut start, mut kept) = (0, 0);
        while start < self.pending.len() {
            let run = Run {
                start,
                end: merge::run_end(&self.pending, start, max),
            };
            let read = self.buffered_read(run);
            if self.hold(run, now) || !self.issue(run) {
                self.pending.copy_within(run.start..run.end, kept);
                kept += run.len();
            } else if let Some((export, offset, len)) = read {
                self.read_ahead(export, offset, len);
            }
            start = run.end;
        }
        self.pending.truncate(kept);
        if self.grouped > 0 {
            self.issue_syncs();
        }
    }

    /// The export, file offset and length of `run` if it is a buffered read of an export
    /// that reads ahead itself.
    fn buffered_read(&self, run: Run) -> Option<(u16, u64, u64)> {
        let first = self.pending[run.start];
        if first.op != IoOp::Read
            || first.lane != Lane::Buffered
            || self.readahead[usize::from(first.export)].is_none()
        {
            return None;
        }
        let slot = self.slots[first.slot as usize].as_ref()?;
        let len = self.pending[run.start..run.end]
            .iter()
            .map(|p| u64::from(p.len))
            .sum();
        Some((first.export, slot.file_offset, len))
    }

    /// Records a buffered read of `export` and, if it continues a sequential stream that
    /// needs it, asks the kernel to read the next window (skipped when the ring is full).
    fn read_ahead(&mut self, export: u16, offset: u64, len: u64) {
        if !self.ring.has_room(1) {
            return;
        }
        let Some(streams) = self.readahead[usize::from(export)].as_mut() else {
            return;
        };
        let Some(window) = streams.on_read(offset, len) else {
            return;
        };
        let buffered = u32::from(export) * 2 + 1;
        let len = u32::try_from(window.end - window.start).expect("a window is 4 MiB at most");
        let user_data = READAHEAD_TAG | u64::from(export);
        let pushed = self
            .ring
            .push_willneed(buffered, window.start, len, user_data);
        assert!(pushed.is_ok(), "has_room promised space");
        self.stats.readaheads += 1;
    }

    /// Issues a data sync for every export whose group has requests waiting and no sync in
    /// flight. A sync that finds the ring full goes out with a later commit.
    fn issue_syncs(&mut self) {
        let UringEngine {
            ring,
            groups,
            stats,
            syncing,
            ..
        } = self;
        for (index, group) in groups.iter_mut().enumerate() {
            if !group.wants_sync() {
                continue;
            }
            if !ring.has_room(1) {
                return;
            }
            let export = u32::try_from(index).expect("at most 65536 exports");
            let buffered = export * 2 + 1;
            let pushed = ring.push_fsync(buffered, true, SYNC_TAG | u64::from(export));
            assert!(pushed.is_ok(), "has_room promised space");
            group.start_sync();
            *syncing += 1;
            stats.syncs += 1;
            stats.ios += 1;
        }
    }

    /// Starts loading the memory that this commit's copies through a mapping will touch: the
    /// file's lines and, for writes, the request's data in its frame (written by the kernel on
    /// another core). Random 1 KiB copies otherwise stall on each miss in turn.
    fn prefetch_mapped(&self) {
        for p in &self.pending {
            let export = &self.exports[usize::from(p.export)];
            // Reads of an export that is not resident still go through `preadv2`, but where
            // the page is mapped (written through the mapping before) the kernel's copy then
            // finds its lines in the cache; a prefetch of a page that is not mapped does
            // nothing (it never faults, so it never waits for the disk either).
            let map = match p.op {
                IoOp::Read => export.read_map().or(export.write_map()),
                _ => mapping(export, p.op),
            };
            let Some(map) = map.filter(|_| p.lane == Lane::Buffered) else {
                continue;
            };
            let slot = self.slots[p.slot as usize].as_ref().expect("pending slot");
            map.prefetch(slot.file_offset, slot.request.len as usize);
            if let (IoOp::Write, Some(chunk)) = (p.op, slot.chunk.as_ref()) {
                let data = &self.arena.bytes(chunk)[slot.buf_offset as usize..];
                prefetch_range(data.as_ptr(), (slot.request.len as usize).min(data.len()));
            }
        }
    }

    /// Whether the buffered read `p` may be tried inline with `RWF_NOWAIT` (not through a
    /// mapping, and its export's file system has non-blocking reads).
    fn nowait_read(&self, p: &Pending) -> bool {
        let export = &self.exports[usize::from(p.export)];
        p.lane == Lane::Buffered
            && self.nowait_reads[usize::from(p.export)]
            && export.read_map().is_none()
    }

    /// Whether to keep `run` back for `merge_delay`, hoping for a neighbour.
    fn hold(&mut self, run: Run, now: Option<Instant>) -> bool {
        let Some(now) = now else { return false };
        let first = self.pending[run.start];
        if self.cfg.merge_delay.is_zero()
            || first.op == IoOp::Flush
            || run.len() >= self.cfg.merge_max_segments
        {
            return false;
        }
        let mut oldest = now;
        for p in &self.pending[run.start..run.end] {
            let slot = self.slots[p.slot as usize]
                .as_mut()
                .expect("pending slot is taken");
            oldest = oldest.min(*slot.first_commit.get_or_insert(now));
        }
        now.saturating_duration_since(oldest) < self.cfg.merge_delay
    }

    /// Pushes `run` as one kernel I/O, or carries it out inline (see [`Self::inline`]).
    /// Returns false (nothing changed) if the ring is full.
    fn issue(&mut self, run: Run) -> bool {
        let first = self.pending[run.start];
        if first.op == IoOp::Flush {
            // Every request of a FLUSH run is a FLUSH (merging never joins them); each waits
            // for the export's next group sync.
            for p in &self.pending[run.start..run.end] {
                let mut slot = self.slots[p.slot as usize].take().expect("pending slot");
                self.free_slots.push(p.slot);
                let completion = IoCompletion {
                    user_data: slot.user_data,
                    chunk: slot.chunk.take().expect("a FLUSH keeps its chunk"),
                    result: Ok(()),
                };
                self.groups[usize::from(p.export)].join(completion);
                self.grouped += 1;
            }
            return true;
        }
        if self.inline(run) {
            return true;
        }
        if !self.ring.has_room(1) {
            return false;
        }
        let file = u32::from(first.export) * 2 + u32::from(first.lane == Lane::Buffered);
        let (offset, total) = self.link(run);
        let export = &self.exports[usize::from(first.export)];
        assert_in_window(export, first.sector, total, offset);
        let pushed = self.push_rw(run, first.op, file, offset);
        assert!(pushed, "has_room promised space");
        self.stats.ios += 1;
        self.stats.merged += run.len() as u64 - 1;
        match (first.op, first.lane) {
            // Buffered writes go inline unless their export's inline writes are paused, or a
            // page they need is not cached.
            (IoOp::Write, Lane::Buffered) if self.writes_paused(first.export) => {
                self.stats.paused_writes += run.len() as u64;
            }
            (IoOp::Write, Lane::Buffered) => self.stats.uncached_writes += run.len() as u64,
            // The kernel drops the pages a direct write covers from the page cache.
            (IoOp::Write, Lane::Direct) => {
                if let Some(pages) = self.seen[usize::from(first.export)].as_mut() {
                    pages.forget(offset, total);
                }
            }
            _ => {}
        }
        true
    }

    /// Chains the run's slots in order; returns (file offset, total bytes).
    fn link(&mut self, run: Run) -> (u64, u64) {
        let requests = &self.pending[run.start..run.end];
        let mut total = 0u64;
        for (i, p) in requests.iter().enumerate() {
            let slot = self.slots[p.slot as usize]
                .as_mut()
                .expect("pending slot is taken");
            slot.next = requests.get(i + 1).map_or(NONE, |n| n.slot);
            total += u64::from(p.len);
        }
        let head = self.slots[requests[0].slot as usize]
            .as_ref()
            .expect("pending slot is taken");
        (head.file_offset, total)
    }

    /// Carries out a buffered run on this thread when that cannot block on the disk, and
    /// completes its requests into `ready`. Returns false when the run must go to the ring.
    ///
    /// - Writeback writes are copies into the page cache: io_uring would punt each to an io-wq
    ///   thread (ext4 has no non-blocking buffered-write path), which then competes with the
    ///   busy-polling worker for a core (random 1 KiB writes ran at 0.4x vblade that way).
    ///   Unless a page they need is not cached ([`Self::pages_cached`]): then the kernel
    ///   would read it from the disk on this thread, and the ring takes them.
    ///   Hazard: dirty-page throttling can block here, as it blocks any writer.
    /// - Reads try `preadv2(RWF_NOWAIT)`, a copy out of the page cache that never waits for
    ///   the disk: one syscall per run instead of an SQE, a share of an `io_uring_enter`, a
    ///   CQE and the op bookkeeping (a lone 1 KiB read costs half as much CPU). A page not in
    ///   the cache gives `EAGAIN` or a short count, and the run goes through the ring, which
    ///   waits for the disk without holding up the worker.
    ///
    /// Write-back writes of a `mapped-writes` export, and reads of a resident or `mapped-reads`
    /// one, are copies through the export's mapping instead, one per request, with no system
    /// call at all (see [`crate::sys::filemap`], [`Export::write_map`] and
    /// [`Export::read_map`]).
    fn inline(&mut self, run: Run) -> bool {
        let first = self.pending[run.start];
        let export = &self.exports[usize::from(first.export)];
        let use_map = first.lane == Lane::Buffered && mapping(export, first.op).is_some();
        let wanted = use_map
            || first.lane == Lane::Buffered
                && match first.op {
                    IoOp::Read => {
                        self.nowait_reads[usize::from(first.export)]
                            && (run.len() > 1 || self.nowait_batch < RING_READS_MIN)
                    }
                    // Both durabilities: a `sync` export's write waits for its group sync.
                    IoOp::Write => true,
                    IoOp::Flush => false,
                };
        if !wanted {
            return false;
        }
        let (offset, total) = self.link(run);
        let export = &self.exports[usize::from(first.export)];
        assert_in_window(export, first.sector, total, offset);
        if first.op == IoOp::Write
            && (self.writes_paused(first.export)
                || !self.pages_cached(first.export, offset, total, use_map))
        {
            return false;
        }
        if first.op == IoOp::Write
            && self
                .clock
                .is_some_and(|now| self.stalls.needs_baseline(now))
        {
            self.stalls
                .set_baseline(filemap::thread_voluntary_switches());
        }
        let export = &self.exports[usize::from(first.export)];
        let mapped = mapping(export, first.op).filter(|_| use_map);
        // The chunks leave their slots for the syscalls (one slice per request) and return.
        self.inline_segs.clear();
        self.inline_results.clear();
        for p in &self.pending[run.start..run.end] {
            let slot = self.slots[p.slot as usize].as_mut().expect("pending slot");
            // `Export::route` bounces only on the direct lane; the chunk goes back to `chunk`.
            assert!(!slot.route.bounce, "a buffered request with a bounce chunk");
            self.inline_segs.push(lend(slot));
        }
        let fd = export.fd(Lane::Buffered);
        let started = (first.op == IoOp::Write).then(Instant::now);
        let outcome = match (mapped, first.op) {
            (Some(map), op) => {
                let results = &mut self.inline_results;
                copy_mapped(map, op, &self.arena, &mut self.inline_segs, offset, results);
                Nowait::Done(Ok(()))
            }
            (None, IoOp::Read) => read_nowait(fd, &self.arena, &mut self.inline_segs, offset),
            (None, _) => {
                let results = &mut self.inline_results;
                write_run(fd, &self.arena, &self.inline_segs, offset, results);
                Nowait::Done(Ok(()))
            }
        };
        let took = started.map(|started| started.elapsed());
        let ios = self.inline_segs.len().div_ceil(INLINE_IOVECS_MAX) as u64;
        for (p, seg) in self.pending[run.start..run.end]
            .iter()
            .zip(self.inline_segs.drain(..))
        {
            let slot = self.slots[p.slot as usize].as_mut().expect("pending slot");
            slot.chunk = Some(seg.chunk);
        }
        let shared = match outcome {
            Nowait::Done(result) => result,
            Nowait::Miss => {
                self.stats.inline_misses += run.len() as u64;
                return false;
            }
            Nowait::Unsupported => {
                self.nowait_reads[usize::from(first.export)] = false;
                return false;
            }
        };
        let mapped = mapped.is_some();
        if let Some(took) = took.filter(|took| *took >= stall::STALL) {
            self.write_stalled(first.export, took);
        }
        if mapped {
            self.stats.mapped += run.len() as u64;
        } else {
            self.stats.ios += ios;
            self.stats.merged += run.len() as u64 - 1;
            self.stats.inline += run.len() as u64;
        }
        for (i, p) in self.pending[run.start..run.end].iter().enumerate() {
            let result = self.inline_results.get(i).copied().unwrap_or(shared);
            let mut slot = self.slots[p.slot as usize].take().expect("pending slot");
            self.free_slots.push(p.slot);
            self.stats.errors += u64::from(result.is_err());
            let completion = IoCompletion {
                user_data: slot.user_data,
                chunk: slot.chunk.take().expect("chunk is home"),
                result,
            };
            if slot.grouped && completion.result.is_ok() {
                self.groups[usize::from(slot.request.export)].join(completion);
                self.grouped += 1;
            } else {
                self.ready.push_back(completion);
            }
        }
        true
    }

    /// An inline write run to `export` took `took`, [`stall::STALL`] or more: if the worker
    /// blocked in it (dirty-page throttling, most likely), `export`'s buffered writes go
    /// through the ring for a while (see [`crate::storage::stall`]).
    fn write_stalled(&mut self, export: u16, took: Duration) {
        // By the clock `commit` was given (the runs after this one in the commit see it).
        let ended = self.clock.map_or_else(Instant::now, |now| now + took);
        self.clock = Some(ended);
        let switches = self
            .stalls
            .counting()
            .then(filemap::thread_voluntary_switches);
        if !self.stalls.held(ended, switches) {
            return;
        }
        self.stats.inline_stalls += 1;
        let pause = &mut self.write_pauses[usize::from(export)];
        pause.stalled(ended);
        tracing::info!(
            path = %self.exports[usize::from(export)].path().display(),
            took_us = took.as_micros(),
            pause_ms = pause.length().as_millis(),
            "a write on the worker's thread waited in the kernel (dirty-page throttling?): \
             the device's writes go through io_uring for a while"
        );
    }

    /// Whether `export`'s buffered writes go through the ring for now, since an inline one
    /// was held up (see [`crate::storage::stall`]).
    fn writes_paused(&self, export: u16) -> bool {
        self.clock
            .is_some_and(|now| self.write_pauses[usize::from(export)].active(now))
    }

    /// Whether a buffered write of `len` bytes at `offset` to `export` (a copy through its
    /// mapping if `mapped`) finds every page it needs in the page cache, so that it cannot
    /// wait for the disk on this thread (see [`crate::storage::cached`]). Pages not seen
    /// before are asked about with a one-byte `preadv2(RWF_NOWAIT)`, which also starts
    /// reading a missing page in. A file system without `RWF_NOWAIT` reads (`EOPNOTSUPP`)
    /// cannot be asked: its writes stay inline, as before.
    fn pages_cached(&mut self, export: u16, offset: u64, len: u64, mapped: bool) -> bool {
        let epoch = cached::eviction_epoch();
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            self.seen.iter_mut().flatten().for_each(SeenPages::clear);
            self.stats.seen_resets += 1;
        }
        if let Some(now) = self.clock {
            if self
                .sampled_at
                .is_none_or(|at| now.duration_since(at) >= cached::SAMPLE_EVERY)
            {
                self.sampled_at = Some(now);
                self.sample_seen();
            }
        }
        let index = usize::from(export);
        let Some(pages) = self.seen[index].as_mut() else {
            return true;
        };
        let fd = self.exports[index].fd(Lane::Buffered);
        for page in pages.needed(offset, len, mapped) {
            if pages.contains(page) {
                continue;
            }
            match page_cached(fd, page * pages.page_size()) {
                // Cached, or past the end of the file (nothing to read there).
                Ok(()) => pages.insert(page),
                Err(Errno::OPNOTSUPP) => {
                    self.seen[index] = None;
                    return true;
                }
                // Not cached (`EAGAIN`), or failing: the ring's write finds out which.
                Err(_) => return false,
            }
        }
        true
    }

    /// Asks again about [`cached::SAMPLE_PAGES`] pages of each table, and clears a table one
    /// of whose pages is gone from the page cache (evicted in a way the kernel does not count
    /// in `/proc/vmstat`; see [`crate::storage::cached`]).
    fn sample_seen(&mut self) {
        let mut sampled = [0u64; cached::SAMPLE_PAGES];
        for (index, table) in self.seen.iter_mut().enumerate() {
            let Some(pages) = table.as_mut() else {
                continue;
            };
            // xorshift64: a new place in every table each time.
            let mut seed = self.sample_seed;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            self.sample_seed = seed;
            let found = pages.sample(seed, &mut sampled);
            let fd = self.exports[index].fd(Lane::Buffered);
            let gone = sampled[..found]
                .iter()
                .any(|&page| page_cached(fd, page * pages.page_size()) == Err(Errno::AGAIN));
            if gone {
                pages.clear();
                self.stats.seen_resets += 1;
                self.stats.seen_sample_misses += 1;
            }
        }
    }

    /// Pushes `run` as one read or write (never `RWF_DSYNC`: durability comes from the
    /// group sync). Returns whether the ring took it.
    fn push_rw(&mut self, run: Run, op: IoOp, file: u32, offset: u64) -> bool {
        let UringEngine {
            ring,
            slots,
            pending,
            ..
        } = self;
        let requests = &pending[run.start..run.end];
        let ud = u64::from(requests[0].slot);
        let mut segs = requests
            .iter()
            .map(|p| lend(slots[p.slot as usize].as_mut().expect("taken")));
        match (op, requests.len()) {
            (IoOp::Read, 1) => ring
                .push_read_fixed(file, offset, segs.next().expect("one"), ud)
                .is_ok(),
            (IoOp::Write, 1) => ring
                .push_write_fixed(file, offset, segs.next().expect("one"), 0, ud)
                .is_ok(),
            (IoOp::Read, _) => ring.push_readv(file, offset, segs, ud).is_ok(),
            _ => ring.push_writev(file, offset, segs, 0, ud).is_ok(),
        }
    }
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringEngine")
            .field("ring", &self.ring)
            .field("exports", &self.exports.len())
            .field("in_flight", &self.in_flight())
            .field("pending", &self.pending.len())
            .field("waiting_for_sync", &self.grouped)
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Whether the page at `at` of `fd` is in the page cache: a one-byte `preadv2(RWF_NOWAIT)`
/// (which starts reading a missing page in). `Ok` also past the end of the file; `EAGAIN`
/// when not cached; `EOPNOTSUPP` where the file system cannot tell.
fn page_cached(fd: BorrowedFd<'_>, at: u64) -> Result<(), Errno> {
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::preadv2(
            fd,
            &mut [IoSliceMut::new(&mut byte)],
            at,
            ReadWriteFlags::NOWAIT,
        ) {
            Err(Errno::INTR) => {}
            other => return other.map(drop),
        }
    }
}

/// How an inline `RWF_NOWAIT` read went.
enum Nowait {
    /// Every byte was read (`Ok`), or the read failed for every request of the run.
    Done(Result<(), IoError>),
    /// Something is not in the page cache (or lies past the end of the file): use the ring.
    Miss,
    /// The file system has no non-blocking read (`EOPNOTSUPP`): use the ring from now on.
    Unsupported,
}

/// Reads `segs` (back to back on disk from `offset`) with `preadv2(RWF_NOWAIT)`, at most
/// [`INLINE_IOVECS_MAX`] slices per call.
fn read_nowait(fd: BorrowedFd<'_>, arena: &Arenas, segs: &mut [Seg], mut offset: u64) -> Nowait {
    for group in segs.chunks_mut(INLINE_IOVECS_MAX) {
        let (len, count) = (
            group.iter().map(|seg| seg.len as usize).sum::<usize>(),
            group.len(),
        );
        let mut bufs: [IoSliceMut<'_>; INLINE_IOVECS_MAX] =
            std::array::from_fn(|_| IoSliceMut::new(&mut []));
        for (buf, seg) in bufs.iter_mut().zip(group.iter_mut()) {
            let (start, end) = (seg.offset as usize, (seg.offset + seg.len) as usize);
            *buf = IoSliceMut::new(&mut arena.bytes_mut(&mut seg.chunk)[start..end]);
        }
        loop {
            match rustix::io::preadv2(fd, &mut bufs[..count], offset, ReadWriteFlags::NOWAIT) {
                Ok(n) if n == len => break,
                Ok(_) | Err(Errno::AGAIN) => return Nowait::Miss,
                Err(Errno::OPNOTSUPP) => return Nowait::Unsupported,
                Err(Errno::INTR) => {}
                Err(errno) => return Nowait::Done(Err(errno.into())),
            }
        }
        offset += len as u64;
    }
    Nowait::Done(Ok(()))
}

/// The mapping that `op` on `export` may copy through: reads only when it is locked in memory,
/// writes only when they are acknowledged from the page cache (`Writeback`).
fn mapping(export: &Export, op: IoOp) -> Option<&FileMap> {
    match op {
        IoOp::Read => export.read_map(),
        IoOp::Write => export.write_map(),
        IoOp::Flush => None,
    }
}

/// Copies each of `segs` (back to back on disk from `offset`) through `map`, in the direction
/// of `op`, and pushes one result per segment to `results`.
fn copy_mapped(
    map: &FileMap,
    op: IoOp,
    arena: &Arenas,
    segs: &mut [Seg],
    mut offset: u64,
    results: &mut Vec<Result<(), IoError>>,
) {
    for seg in segs {
        let (start, end) = (seg.offset as usize, (seg.offset + seg.len) as usize);
        let result = match op {
            IoOp::Read => map.read(offset, &mut arena.bytes_mut(&mut seg.chunk)[start..end]),
            _ => map.write(offset, &arena.bytes(&seg.chunk)[start..end]),
        };
        results.push(result.map_err(IoError::from));
        offset += u64::from(seg.len);
    }
}

/// Writes `segs` (back to back on disk from `offset`) with `pwritev2`, at most
/// [`INLINE_IOVECS_MAX`] slices per call, and pushes one result per segment to `results`.
/// After a short write, the request it stopped in and the rest of that call's requests are
/// finished one by one, so each request gets its own outcome.
fn write_run(
    fd: BorrowedFd<'_>,
    arena: &Arenas,
    segs: &[Seg],
    mut offset: u64,
    results: &mut Vec<Result<(), IoError>>,
) {
    for group in segs.chunks(INLINE_IOVECS_MAX) {
        let mut bufs: [IoSlice<'_>; INLINE_IOVECS_MAX] = std::array::from_fn(|_| IoSlice::new(&[]));
        for (buf, seg) in bufs.iter_mut().zip(group) {
            let (start, end) = (seg.offset as usize, (seg.offset + seg.len) as usize);
            *buf = IoSlice::new(&arena.bytes(&seg.chunk)[start..end]);
        }
        let written = loop {
            let flags = ReadWriteFlags::empty();
            match rustix::io::pwritev2(fd, &bufs[..group.len()], offset, flags) {
                Err(Errno::INTR) => {}
                other => break other.map_err(IoError::from),
            }
        };
        let mut done = *written.as_ref().unwrap_or(&0);
        for seg in group {
            let len = seg.len as usize;
            let result = match written {
                Err(error) => Err(error),
                Ok(_) if done >= len => {
                    done -= len;
                    Ok(())
                }
                Ok(_) => {
                    let start = seg.offset as usize + done;
                    let data = &arena.bytes(&seg.chunk)[start..seg.offset as usize + len];
                    let at = offset + done as u64;
                    done = 0;
                    write_all(fd, data, at, ReadWriteFlags::empty())
                }
            };
            results.push(result);
            offset += len as u64;
        }
    }
}

/// Settles the requests that the group sync of `export`, finished with kernel result `res`,
/// decides: on success those it covers, on failure every waiting request (answered with the
/// sync's error). Hands them to `out`; returns how many.
fn settle(
    group: &mut GroupCommit<IoCompletion>,
    res: i32,
    export: &Export,
    stats: &mut EngineStats,
    out: &mut impl FnMut(IoCompletion),
) -> usize {
    let result = if res < 0 {
        Err(IoError { errno: -res })
    } else {
        Ok(())
    };
    if let Err(error) = result {
        stats.sync_failures += 1;
        tracing::error!(
            path = %export.path().display(),
            %error,
            failed = group.len(),
            "data sync failed: every write and FLUSH waiting for one is answered with an error \
             (the kernel may have dropped their pages); the device keeps serving"
        );
    }
    group.finish_sync(result, |mut completion, result| {
        match result {
            Ok(()) => stats.sync_covered += 1,
            Err(error) => {
                completion.result = Err(error);
                stats.errors += 1;
            }
        }
        stats.completed += 1;
        out(completion);
    })
}

/// Lends a slot's I/O buffer (the bounce chunk if any) to the ring.
fn lend(slot: &mut Slot) -> Seg {
    if slot.route.bounce {
        let chunk = slot.bounce.take().expect("bounce chunk lent twice");
        Seg {
            chunk,
            offset: 0,
            len: slot.request.len,
        }
    } else {
        let chunk = slot.chunk.take().expect("chunk lent twice");
        Seg {
            chunk,
            offset: slot.buf_offset,
            len: slot.request.len,
        }
    }
}

/// Borrowed engine state for splitting one kernel completion into request completions.
struct Done<'a> {
    slots: &'a mut [Option<Slot>],
    /// Requests to issue again on their own (the engine's pending list), and the next `seq`.
    retry: &'a mut Vec<Pending>,
    seq: &'a mut u64,
    free_slots: &'a mut Vec<u32>,
    bounce: &'a mut ChunkPool,
    arena: &'a Arenas,
    stats: &'a mut EngineStats,
    groups: &'a mut [GroupCommit<IoCompletion>],
    grouped: &'a mut usize,
}

impl Done<'_> {
    /// Completes the chain of slots starting at `head` with kernel result `res`.
    fn complete(
        &mut self,
        head: u32,
        res: i32,
        segs: &mut Segs<'_>,
        out: &mut impl FnMut(IoCompletion),
    ) -> usize {
        // Bytes the kernel reported, or the errno shared by every request of the I/O.
        let mut left = u64::try_from(res).map_err(|_| IoError { errno: -res });
        let merged = self.slots[head as usize]
            .as_ref()
            .is_some_and(|slot| slot.next != NONE);
        let (mut index, mut count) = (head, 0);
        while index != NONE {
            let mut slot = self.slots[index as usize]
                .take()
                .expect("completion for a free slot");
            if slot.request.op != IoOp::Flush {
                let seg = segs.next().expect("one segment per request");
                assert_eq!(
                    seg.len, slot.request.len,
                    "segment returned to the wrong request"
                );
                *(if slot.route.bounce {
                    &mut slot.bounce
                } else {
                    &mut slot.chunk
                }) = Some(seg.chunk);
            }
            let mut short = false;
            let result = match (&mut left, slot.request.op) {
                (Err(e), _) => Err(*e),
                (Ok(_), IoOp::Flush) => Ok(()),
                (Ok(bytes), _) if *bytes >= u64::from(slot.request.len) => {
                    *bytes -= u64::from(slot.request.len);
                    Ok(())
                }
                (Ok(bytes), _) => {
                    (*bytes, short) = (0, true);
                    Err(IoError::SHORT)
                }
            };
            let next = slot.next;
            if !slot.request.alone && (short || merged && result.is_err()) {
                // A short count says nothing of why the rest failed (a full file system, a
                // file that ends), and one errno for a merged I/O may belong to one of its
                // requests only (a bad range): such requests go again, each on its own, and
                // get their own outcome (the errno, success, or a short count again: EIO).
                slot.request.alone = true;
                slot.request.seq = *self.seq;
                *self.seq += 1;
                (slot.next, slot.first_commit) = (NONE, None);
                self.retry.push(slot.request);
                self.stats.retried += 1;
                self.slots[index as usize] = Some(slot);
                index = next;
                continue;
            }
            self.free_slots.push(index);
            index = next;
            let (grouped, export) = (slot.grouped && result.is_ok(), slot.request.export);
            let completion = self.finish(slot, result);
            if grouped {
                self.groups[usize::from(export)].join(completion);
                *self.grouped += 1;
            } else {
                self.stats.completed += 1;
                count += 1;
                out(completion);
            }
        }
        count
    }

    /// Copies bounced read data back, frees the bounce chunk, counts, builds the completion.
    fn finish(&mut self, mut slot: Slot, result: Result<(), IoError>) -> IoCompletion {
        let mut chunk = slot.chunk.take().expect("request chunk is home");
        if let Some(bounce) = slot.bounce.take() {
            if slot.request.op == IoOp::Read && result.is_ok() {
                let (offset, len) = (slot.buf_offset as usize, slot.request.len as usize);
                let data = &self.bounce.bytes(&bounce)[..len];
                self.arena.bytes_mut(&mut chunk)[offset..offset + len].copy_from_slice(data);
            }
            self.bounce.free(bounce);
        }
        self.stats.errors += u64::from(result.is_err());
        IoCompletion {
            user_data: slot.user_data,
            chunk,
            result,
        }
    }
}

//! A thin, safe wrapper over the `io-uring` crate for the storage engine.
//!
//! Contract: every buffer the kernel may touch is a chunk of an [`Arena`] registered with the
//! ring, and the ring takes the chunk's token by value when the I/O is pushed ([`Seg`]) and
//! returns it only with the completion ([`Ring::reap`]). So while the kernel may read or write
//! the bytes, no safe code can borrow them, and the memory cannot be unmapped: the ring keeps
//! an `Arc<Arena>` of each registered arena. Vectored I/O uses an iovec array owned by the
//! ring, one region of `max_segments` entries per operation slot, reused only after that
//! operation's completion has been reaped.
//!
//! Hazards:
//! - Dropping the ring waits (blocking) for every in-flight I/O. If it cannot (the enter
//!   syscall fails, e.g. when dropped on a thread other than the single issuer), it leaks the
//!   arenas and iovecs rather than unmap memory the kernel may still write.
//! - With `single_issuer`, the ring is created disabled and enabled by the first thread that
//!   submits; only that thread may submit afterwards (others get `EEXIST`).
//! - With `defer_taskrun`, completions appear only after an enter with GETEVENTS, which
//!   [`Ring::submit`] always does while I/O is in flight: call it once per loop iteration.
//! - Completion order is not submission order; an FSYNC does not order against writes in
//!   flight with it.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use io_uring::{opcode, squeue, types, EnterFlags, IoUring};

use crate::sys::mem::{Arena, Chunk};

/// `user_data` of the `NOP` that creates the submitting thread's io-wq (never an op index).
const NOP_USER_DATA: u64 = u64::MAX;

/// `RWF_DSYNC`: the write completes only once the data is durable.
pub const RWF_DSYNC: i32 = libc::RWF_DSYNC;

/// Largest `max_segments` accepted (the kernel's `UIO_MAXIOV`).
pub const SEGMENTS_MAX: usize = 1024;

/// Marks "no entry" in the intrusive lists.
const NONE: u32 = u32::MAX;

/// Ring set-up wishes; the ring falls back to what the kernel accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOptions {
    /// Ask for `IORING_SETUP_SINGLE_ISSUER` (the first submitting thread owns the ring).
    pub single_issuer: bool,
    /// Ask for `IORING_SETUP_DEFER_TASKRUN` (needs `single_issuer`).
    pub defer_taskrun: bool,
    /// Most iovecs one vectored operation may carry.
    pub max_segments: usize,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            single_issuer: true,
            defer_taskrun: true,
            max_segments: 32,
        }
    }
}

/// The set-up flags the kernel accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupMode {
    /// `IORING_SETUP_SINGLE_ISSUER` (created with `R_DISABLED`, enabled on first submit).
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN`.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN`.
    pub coop_taskrun: bool,
}

/// Errors of ring set-up and submission.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// `io_uring_setup` failed even without optional flags.
    #[error(
        "io_uring_setup({entries}) failed; check sysctl kernel.io_uring_disabled and ulimit -l"
    )]
    Setup {
        /// Requested queue depth.
        entries: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Setting the io-wq CPU affinity failed.
    #[error("setting the io_uring worker CPU affinity failed")]
    IoWorkerAffinity(#[source] io::Error),
    /// Arenas can be registered only once per ring.
    #[error("arenas are already registered with this ring")]
    AlreadyRegistered,
    /// Buffer registration failed.
    #[error("registering {count} arenas as fixed buffers failed (each must be <= 1 GiB)")]
    RegisterBuffers {
        /// Number of arenas.
        count: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// File registration failed.
    #[error("registering {count} files failed")]
    RegisterFiles {
        /// Number of files.
        count: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Enabling a ring created disabled failed.
    #[error("enabling the ring failed")]
    Enable(#[source] io::Error),
    /// `io_uring_enter` failed.
    #[error("io_uring_enter failed")]
    Enter(#[source] io::Error),
}

/// One buffer of an I/O: `len` bytes at `offset` inside `chunk`. The ring owns it while the
/// I/O is in flight.
#[derive(Debug)]
pub struct Seg {
    /// The chunk lent to the kernel.
    pub chunk: Chunk,
    /// Offset of the data inside the chunk.
    pub offset: u32,
    /// Length in bytes (non-zero; `offset + len <= chunk_size`).
    pub len: u32,
}

/// The ring had no room (submission queue or operation slots); the argument is handed back.
#[derive(Debug)]
pub struct Full<T>(pub T);

#[derive(Debug, Default)]
struct Op {
    user_data: u64,
    /// First parked segment (index into `held`), or `NONE`.
    head: u32,
    count: u32,
    busy: bool,
}

#[derive(Debug)]
struct Held {
    seg: Option<Seg>,
    next: u32,
}

#[derive(Debug)]
struct Registered {
    arena: Arc<Arena>,
    /// Index in `held` of this arena's chunk 0.
    first_held: u32,
}

/// An io_uring with registered arenas and files, and owned iovecs.
pub struct Ring {
    // Drop order: `Drop::drop` first waits for in-flight I/O; then fields drop top to bottom:
    // the ring fd and its mappings before the iovecs and arenas the kernel referenced.
    ring: IoUring,
    iovecs: Box<[libc::iovec]>,
    ops: Box<[Op]>,
    free_ops: Vec<u32>,
    /// One entry per chunk of every registered arena: the segment parked while in flight.
    held: Box<[Held]>,
    arenas: Vec<Registered>,
    max_segments: usize,
    enabled: bool,
    mode: SetupMode,
}

// SAFETY: `Ring` is `!Send` only because of the raw pointers inside `libc::iovec`, which point
// into arenas the ring keeps alive through `Arc`s; the `IoUring` itself is `Send`. Moving the
// ring moves no memory the kernel references (iovecs and arenas are heap/mmap allocations).
// A single-issuer ring is enabled by the first thread that submits, so it may be built on one
// thread and moved to its worker before first use.
unsafe impl Send for Ring {}

impl Ring {
    /// Creates a ring with `entries` submission slots (rounded up to a power of two).
    pub fn new(entries: u32, opts: RingOptions) -> Result<Ring, RingError> {
        assert!(
            (1..=SEGMENTS_MAX).contains(&opts.max_segments),
            "bad max_segments"
        );
        let (ring, mode) = build(entries, opts)?;
        let op_count = ring.params().sq_entries() as usize;
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let free_ops = (0..u32::try_from(op_count).expect("sq entries fit u32"))
            .rev()
            .collect();
        Ok(Ring {
            ring,
            iovecs: vec![empty; op_count * opts.max_segments].into_boxed_slice(),
            ops: (0..op_count).map(|_| Op::default()).collect(),
            free_ops,
            held: Box::new([]),
            arenas: Vec::new(),
            max_segments: opts.max_segments,
            enabled: !mode.single_issuer,
            mode,
        })
    }

    /// Registers one arena as fixed buffer 0.
    pub fn register_arena(&mut self, arena: &Arc<Arena>) -> Result<(), RingError> {
        self.register_arenas(std::slice::from_ref(arena))
    }

    /// Registers arenas as fixed buffers `0..arenas.len()`, once per ring.
    pub fn register_arenas(&mut self, arenas: &[Arc<Arena>]) -> Result<(), RingError> {
        if !self.arenas.is_empty() {
            return Err(RingError::AlreadyRegistered);
        }
        assert!(arenas.len() <= usize::from(u16::MAX), "too many arenas");
        let iovecs: Vec<libc::iovec> = arenas
            .iter()
            .map(|a| libc::iovec {
                iov_base: a.base_ptr().cast(),
                iov_len: a.len(),
            })
            .collect();
        // SAFETY: each iovec covers exactly one live arena mapping; the ring keeps an
        // `Arc<Arena>` of each for as long as the ring (and thus the registration) exists, and
        // `Drop` waits for in-flight I/O before those Arcs are released.
        unsafe { self.ring.submitter().register_buffers(&iovecs) }.map_err(|source| {
            RingError::RegisterBuffers {
                count: arenas.len(),
                source,
            }
        })?;
        let total: usize = arenas.iter().map(|a| a.chunk_count()).sum();
        assert!(total < NONE as usize, "too many chunks for one ring");
        self.held = (0..total)
            .map(|_| Held {
                seg: None,
                next: NONE,
            })
            .collect();
        let mut first_held = 0u32;
        for arena in arenas {
            self.arenas.push(Registered {
                arena: Arc::clone(arena),
                first_held,
            });
            first_held += u32::try_from(arena.chunk_count()).expect("checked by total");
        }
        Ok(())
    }

    /// Registers files; operations name them by index in `fds`.
    pub fn register_files(&mut self, fds: &[RawFd]) -> Result<(), RingError> {
        self.ring
            .submitter()
            .register_files(fds)
            .map_err(|source| RingError::RegisterFiles {
                count: fds.len(),
                source,
            })
    }

    /// Queues a `READ_FIXED` of `seg.len` bytes at `file_offset` of registered file `file`.
    pub fn push_read_fixed(
        &mut self,
        file: u32,
        file_offset: u64,
        seg: Seg,
        user_data: u64,
    ) -> Result<(), Full<Seg>> {
        let Some(op) = self.reserve(1) else {
            return Err(Full(seg));
        };
        let (len, buf_index) = (seg.len, self.park(op, user_data, std::iter::once(seg)));
        let addr = self.iovecs[self.iov_base(op)].iov_base.cast::<u8>();
        let entry = opcode::ReadFixed::new(types::Fixed(file), addr, len, buf_index)
            .offset(file_offset)
            .build();
        self.push_entry(op, entry);
        Ok(())
    }

    /// Queues a `WRITE_FIXED` (`rw_flags`, e.g. [`RWF_DSYNC`]).
    pub fn push_write_fixed(
        &mut self,
        file: u32,
        file_offset: u64,
        seg: Seg,
        rw_flags: i32,
        user_data: u64,
    ) -> Result<(), Full<Seg>> {
        let Some(op) = self.reserve(1) else {
            return Err(Full(seg));
        };
        let (len, buf_index) = (seg.len, self.park(op, user_data, std::iter::once(seg)));
        let addr = self.iovecs[self.iov_base(op)]
            .iov_base
            .cast::<u8>()
            .cast_const();
        let entry = opcode::WriteFixed::new(types::Fixed(file), addr, len, buf_index)
            .offset(file_offset)
            .rw_flags(rw_flags)
            .build();
        self.push_entry(op, entry);
        Ok(())
    }

    /// Queues a `READV` of `segs` (1..=max_segments, in file order) at `file_offset`.
    pub fn push_readv<I>(
        &mut self,
        file: u32,
        file_offset: u64,
        segs: I,
        user_data: u64,
    ) -> Result<(), Full<I>>
    where
        I: ExactSizeIterator<Item = Seg>,
    {
        let count = segs.len();
        let Some(op) = self.reserve(count) else {
            return Err(Full(segs));
        };
        self.park(op, user_data, segs);
        let iov = self.iovecs[self.iov_base(op)..].as_ptr();
        let n = u32::try_from(count).expect("count <= SEGMENTS_MAX");
        let entry = opcode::Readv::new(types::Fixed(file), iov, n)
            .offset(file_offset)
            .build();
        self.push_entry(op, entry);
        Ok(())
    }

    /// Queues a `WRITEV` of `segs` (1..=max_segments, in file order) at `file_offset`.
    pub fn push_writev<I>(
        &mut self,
        file: u32,
        file_offset: u64,
        segs: I,
        rw_flags: i32,
        user_data: u64,
    ) -> Result<(), Full<I>>
    where
        I: ExactSizeIterator<Item = Seg>,
    {
        let count = segs.len();
        let Some(op) = self.reserve(count) else {
            return Err(Full(segs));
        };
        self.park(op, user_data, segs);
        let iov = self.iovecs[self.iov_base(op)..].as_ptr();
        let n = u32::try_from(count).expect("count <= SEGMENTS_MAX");
        let entry = opcode::Writev::new(types::Fixed(file), iov, n)
            .offset(file_offset)
            .rw_flags(rw_flags)
            .build();
        self.push_entry(op, entry);
        Ok(())
    }

    /// Queues an `FSYNC` of registered file `file` (`datasync`: `IORING_FSYNC_DATASYNC`).
    pub fn push_fsync(
        &mut self,
        file: u32,
        datasync: bool,
        user_data: u64,
    ) -> Result<(), Full<()>> {
        let Some(op) = self.reserve(0) else {
            return Err(Full(()));
        };
        self.park(op, user_data, std::iter::empty());
        let flags = if datasync {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        let entry = opcode::Fsync::new(types::Fixed(file)).flags(flags).build();
        self.push_entry(op, entry);
        Ok(())
    }

    /// Restricts io_uring's async worker threads (io-wq: they carry out I/O that blocks, such
    /// as every `RWF_DSYNC` write) to `cpus`. By default they inherit the creating thread's
    /// pinning, so a busy-polling worker pinned to one core would starve its own I/O.
    ///
    /// io-wq belongs to the *calling thread* and exists only once that thread has submitted
    /// to a ring (the kernel answers `EINVAL` before): call this from the thread that will
    /// submit, before anything is in flight; it submits one `NOP` first.
    pub fn set_io_worker_cpus(&mut self, cpus: &[usize]) -> Result<(), RingError> {
        self.prime_io_worker()?;
        // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in cpus {
            // CPU_SET indexes a fixed bitmap; larger CPU numbers are skipped.
            if cpu < libc::CPU_SETSIZE as usize {
                // SAFETY: `cpu` is below CPU_SETSIZE, so the bit is inside `set`.
                unsafe { libc::CPU_SET(cpu, &mut set) };
            }
        }
        self.ring
            .submitter()
            .register_iowq_aff(&set)
            .map_err(RingError::IoWorkerAffinity)
    }

    /// Whether `count` more operations fit right now.
    pub fn has_room(&mut self, count: usize) -> bool {
        let sq = self.ring.submission();
        sq.capacity() - sq.len() >= count && self.free_ops.len() >= count
    }

    /// Submits queued entries with one `io_uring_enter` (none if there is nothing to do).
    pub fn submit(&mut self) -> Result<usize, RingError> {
        self.enter(0)
    }

    /// Submits queued entries and waits until at least `want` completions are ready.
    pub fn submit_and_wait(&mut self, want: usize) -> Result<usize, RingError> {
        self.enter(want.min(self.in_flight()))
    }

    /// Hands each ready completion to `f` as `(user_data, result, segments)`; `f` must take
    /// every segment (in push order). Never blocks. Returns the number of completions.
    pub fn reap(&mut self, mut f: impl FnMut(u64, i32, &mut Segs<'_>)) -> usize {
        let Ring {
            ring,
            ops,
            free_ops,
            held,
            ..
        } = self;
        let mut count = 0;
        for cqe in ring.completion() {
            let index = u32::try_from(cqe.user_data()).expect("ring user_data is an op index");
            let op = &mut ops[index as usize];
            assert!(op.busy, "completion for idle op slot {index}");
            op.busy = false;
            let mut segs = Segs {
                held,
                next: op.head,
                remaining: op.count,
            };
            f(op.user_data, cqe.result(), &mut segs);
            assert_eq!(
                segs.remaining, 0,
                "completion handler left chunks in the ring"
            );
            free_ops.push(index);
            count += 1;
        }
        count
    }

    /// Operations pushed and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.ops.len() - self.free_ops.len()
    }

    /// Number of operation slots (the submission queue size).
    pub fn capacity(&self) -> usize {
        self.ops.len()
    }

    /// The set-up flags in use.
    pub fn mode(&self) -> SetupMode {
        self.mode
    }

    /// Most iovecs per vectored operation.
    pub fn max_segments(&self) -> usize {
        self.max_segments
    }

    fn iov_base(&self, op: u32) -> usize {
        op as usize * self.max_segments
    }

    fn reserve(&mut self, segments: usize) -> Option<u32> {
        assert!(
            segments <= self.max_segments,
            "{segments} segments > max {}",
            self.max_segments
        );
        if self.ring.submission().is_full() {
            return None;
        }
        // Popped only in `push_entry`, so a panic in between leaves no phantom in-flight op
        // for `Drop` to wait on.
        self.free_ops.last().copied()
    }

    /// Parks `segs` in `held` under op slot `op` and fills its iovecs. Returns the fixed buffer
    /// index of the first segment. Panics on a segment outside the registered arenas.
    fn park(&mut self, op: u32, user_data: u64, segs: impl Iterator<Item = Seg>) -> u16 {
        let base = self.iov_base(op);
        let (mut head, mut prev, mut count, mut buf_index) = (NONE, NONE, 0usize, 0u16);
        for seg in segs {
            assert!(
                count < self.max_segments,
                "segment iterator longer than its len"
            );
            let (index, addr, held) = self.locate(&seg);
            buf_index = if count == 0 { index } else { buf_index };
            self.iovecs[base + count] = libc::iovec {
                iov_base: addr.cast(),
                iov_len: seg.len as usize,
            };
            let slot = &mut self.held[held as usize];
            assert!(slot.seg.is_none(), "chunk parked twice");
            *slot = Held {
                seg: Some(seg),
                next: NONE,
            };
            if prev == NONE {
                head = held;
            } else {
                self.held[prev as usize].next = held;
            }
            (prev, count) = (held, count + 1);
        }
        let count = u32::try_from(count).expect("count <= SEGMENTS_MAX");
        let slot = &mut self.ops[op as usize];
        assert!(!slot.busy, "op slot {op} reused while busy");
        *slot = Op {
            user_data,
            head,
            count,
            busy: true,
        };
        buf_index
    }

    /// Finds `seg`'s arena: (fixed buffer index, address of its first byte, `held` index).
    fn locate(&self, seg: &Seg) -> (u16, *mut u8, u32) {
        let index = self
            .arenas
            .iter()
            .position(|r| r.arena.owns(&seg.chunk))
            .expect("chunk of an arena not registered with this ring");
        let Registered { arena, first_held } = &self.arenas[index];
        let end = (seg.offset as usize).checked_add(seg.len as usize);
        assert!(
            seg.len > 0 && end.is_some_and(|e| e <= arena.chunk_size()),
            "bad segment {seg:?}"
        );
        let offset = arena.offset(&seg.chunk) + seg.offset as usize;
        let addr = arena.base_ptr().wrapping_add(offset);
        let held = first_held + u32::try_from(seg.chunk.index()).expect("index < chunk_count");
        (
            u16::try_from(index).expect("checked at registration"),
            addr,
            held,
        )
    }

    fn push_entry(&mut self, op: u32, entry: squeue::Entry) {
        let entry = entry.user_data(u64::from(op));
        // SAFETY: the entry's buffers stay valid until its completion is reaped: data buffers
        // are chunks of registered arenas (checked in `locate`), kept mapped by the ring's
        // `Arc`s and unreachable from safe code because their tokens are parked in `held`; the
        // iovec region of slot `op` is not rewritten until the slot is freed in `reap`; and
        // `Drop` waits for in-flight operations.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        pushed.expect("reserve checked the submission queue has room");
        assert_eq!(
            self.free_ops.pop(),
            Some(op),
            "op slot reserved out of order"
        );
    }

    /// Submits one `NOP` and waits for it, so that the calling thread has its io_uring task
    /// context and io-wq. Only with nothing in flight (its completion is consumed here).
    fn prime_io_worker(&mut self) -> Result<(), RingError> {
        assert_eq!(self.in_flight(), 0, "prime the ring before any I/O");
        self.enable()?;
        let nop = opcode::Nop::new().build().user_data(NOP_USER_DATA);
        // SAFETY: a NOP references no memory.
        let pushed = unsafe { self.ring.submission().push(&nop) };
        pushed.expect("nothing is in flight, so the submission queue has room");
        self.ring
            .submitter()
            .submit_and_wait(1)
            .map_err(RingError::Enter)?;
        for cqe in self.ring.completion() {
            assert_eq!(cqe.user_data(), NOP_USER_DATA, "only the NOP was in flight");
        }
        Ok(())
    }

    fn enable(&mut self) -> Result<(), RingError> {
        if !self.enabled {
            self.ring
                .submitter()
                .register_enable_rings()
                .map_err(RingError::Enable)?;
            self.enabled = true;
        }
        Ok(())
    }

    /// One `io_uring_enter`: submits what is queued, runs deferred task work, waits for
    /// `want` completions. `EINTR`, `EAGAIN` and `EBUSY` return `Ok(0)`: retry later.
    fn enter(&mut self, want: usize) -> Result<usize, RingError> {
        let to_submit = self.ring.submission().len();
        let defer_work = self.mode.defer_taskrun && self.in_flight() > 0;
        if to_submit == 0 && want == 0 && !defer_work {
            return Ok(0);
        }
        self.enable()?;
        let flags = if want > 0 || defer_work {
            EnterFlags::GETEVENTS.bits()
        } else {
            0
        };
        let (to_submit, want) = (clamp_u32(to_submit), clamp_u32(want));
        // SAFETY: a plain io_uring_enter without an argument struct; the entries it submits
        // reference only memory kept alive as described in `push_entry`.
        let result = unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(to_submit, want, flags, None)
        };
        match result {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(RingError::Enter(e)),
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("in_flight", &self.in_flight())
            .field("arenas", &self.arenas.len())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        while self.in_flight() > 0 {
            if self.enter(1).is_err() {
                // The kernel may still use this memory: never unmap it.
                for registered in &self.arenas {
                    std::mem::forget(Arc::clone(&registered.arena));
                }
                std::mem::forget(std::mem::take(&mut self.iovecs));
                return;
            }
            self.reap(|_, _, segs| segs.for_each(drop));
        }
    }
}

/// The segments of one completed operation, in push order.
#[derive(Debug)]
pub struct Segs<'a> {
    held: &'a mut [Held],
    next: u32,
    remaining: u32,
}

impl Iterator for Segs<'_> {
    type Item = Seg;

    fn next(&mut self) -> Option<Seg> {
        if self.remaining == 0 {
            return None;
        }
        let slot = &mut self.held[self.next as usize];
        let seg = slot.seg.take().expect("parked segment missing");
        (self.next, slot.next) = (slot.next, NONE);
        self.remaining -= 1;
        Some(seg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for Segs<'_> {}

fn clamp_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Builds the ring, dropping optional flags the kernel refuses (`EINVAL`).
fn build(entries: u32, opts: RingOptions) -> Result<(IoUring, SetupMode), RingError> {
    let wishes = [
        SetupMode {
            single_issuer: true,
            defer_taskrun: true,
            coop_taskrun: false,
        },
        SetupMode {
            single_issuer: true,
            defer_taskrun: false,
            coop_taskrun: true,
        },
        SetupMode {
            single_issuer: false,
            defer_taskrun: false,
            coop_taskrun: true,
        },
        SetupMode::default(),
    ];
    let allowed = |m: &SetupMode| {
        (opts.single_issuer || !m.single_issuer) && (opts.defer_taskrun || !m.defer_taskrun)
    };
    let mut last = None;
    for mode in wishes.iter().filter(|m| allowed(m)) {
        let mut builder = IoUring::builder();
        if mode.single_issuer {
            builder.setup_single_issuer().setup_r_disabled();
        }
        if mode.defer_taskrun {
            builder.setup_defer_taskrun();
        }
        if mode.coop_taskrun {
            builder.setup_coop_taskrun();
        }
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, *mode)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(source) => return Err(RingError::Setup { entries, source }),
        }
    }
    let source = last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL));
    Err(RingError::Setup { entries, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::mem::ChunkPool;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;

    fn setup(chunks: usize) -> (Ring, ChunkPool, std::fs::File) {
        let arena = Arc::new(Arena::new(4096, chunks).unwrap());
        let pool = ChunkPool::new(Arc::clone(&arena)).unwrap();
        let mut ring = Ring::new(8, RingOptions::default()).unwrap();
        ring.register_arena(&arena).unwrap();
        let file = tempfile::tempfile_in("/var/tmp").unwrap();
        file.set_len(1 << 16).unwrap();
        ring.register_files(&[file.as_raw_fd()]).unwrap();
        (ring, pool, file)
    }

    fn wait_one(ring: &mut Ring) -> (u64, i32, Vec<Seg>) {
        ring.submit_and_wait(1).unwrap();
        let mut out = None;
        assert_eq!(
            ring.reap(|ud, res, segs| out = Some((ud, res, segs.collect()))),
            1
        );
        out.unwrap()
    }

    /// The CPUs the io-wq threads of the calling thread may run on: `(thread, list)` per
    /// `iou-wrk-<tid>` thread of this process.
    fn io_worker_cpus() -> Vec<(String, String)> {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let name = format!("iou-wrk-{tid}");
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let path = task.ok()?.path();
                let comm = std::fs::read_to_string(path.join("comm")).ok()?;
                (comm.trim() == name).then_some(())?;
                let status = std::fs::read_to_string(path.join("status")).ok()?;
                let cpus = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                    .trim()
                    .to_string();
                Some((path.display().to_string(), cpus))
            })
            .collect()
    }

    #[test]
    fn test_io_worker_cpus_apply_to_the_threads_that_run_blocking_io() {
        let cpu = core_affinity::get_core_ids().unwrap().last().unwrap().id;
        // As in the dataplane: the ring is built on one thread and driven by another, and
        // io-wq belongs to the thread that submits.
        let (mut ring, mut pool, _file) = setup(1);
        std::thread::spawn(move || {
            ring.set_io_worker_cpus(&[cpu])
                .expect("a fresh ring accepts io-wq affinity");
            // Synced buffered writes block, so the kernel runs them on io-wq threads.
            let mut chunk = Some(pool.alloc().unwrap());
            for round in 0..4u64 {
                let seg = Seg {
                    chunk: chunk.take().unwrap(),
                    offset: 0,
                    len: 512,
                };
                ring.push_write_fixed(0, round * 512, seg, RWF_DSYNC, round)
                    .unwrap();
                let (_, res, mut segs) = wait_one(&mut ring);
                assert_eq!(res, 512);
                chunk = Some(segs.pop().unwrap().chunk);
            }
            let workers = io_worker_cpus();
            assert!(!workers.is_empty(), "no io-wq thread ran the synced writes");
            for (thread, cpus) in &workers {
                assert_eq!(cpus, &cpu.to_string(), "{thread}");
            }
            pool.free(chunk.unwrap());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn test_write_fixed_then_read_fixed_round_trip() {
        let (mut ring, mut pool, mut file) = setup(2);
        let mut chunk = pool.alloc().unwrap();
        pool.bytes_mut(&mut chunk)[512..1024].fill(0x5A);
        let seg = Seg {
            chunk,
            offset: 512,
            len: 512,
        };
        ring.push_write_fixed(0, 1024, seg, RWF_DSYNC, 7).unwrap();
        assert_eq!(ring.in_flight(), 1);
        let (ud, res, mut segs) = wait_one(&mut ring);
        assert_eq!((ud, res, segs.len()), (7, 512, 1));
        let mut disk = [0u8; 512];
        file.seek(SeekFrom::Start(1024)).unwrap();
        file.read_exact(&mut disk).unwrap();
        assert!(disk.iter().all(|b| *b == 0x5A));
        pool.free(segs.pop().unwrap().chunk);
    }

    #[test]
    fn test_readv_returns_segments_in_order() {
        let (mut ring, mut pool, mut file) = setup(4);
        let mut data = vec![0u8; 3 * 512];
        for (i, b) in data.iter_mut().enumerate() {
            *b = u8::try_from(i % 251).unwrap();
        }
        file.write_all(&data).unwrap();
        let segs: Vec<Seg> = (0..3)
            .map(|_| Seg {
                chunk: pool.alloc().unwrap(),
                offset: 1024,
                len: 512,
            })
            .collect();
        ring.push_readv(0, 0, segs.into_iter(), 99).unwrap();
        let (ud, res, segs) = wait_one(&mut ring);
        assert_eq!((ud, res), (99, 3 * 512));
        assert_eq!(ring.in_flight(), 0);
        for (i, seg) in segs.into_iter().enumerate() {
            assert_eq!(seg.chunk.index(), i);
            assert_eq!(
                &pool.bytes(&seg.chunk)[1024..1536],
                &data[i * 512..(i + 1) * 512]
            );
            pool.free(seg.chunk);
        }
    }

    #[test]
    fn test_fsync_and_error_results_are_reported() {
        let (mut ring, mut pool, _file) = setup(1);
        ring.push_fsync(0, true, 3).unwrap();
        let (ud, res, segs) = wait_one(&mut ring);
        assert_eq!((ud, res, segs.len()), (3, 0, 0));
        // File index 5 is not registered: the kernel answers -EBADF, and the chunk comes back.
        let seg = Seg {
            chunk: pool.alloc().unwrap(),
            offset: 0,
            len: 512,
        };
        ring.push_read_fixed(5, 0, seg, 4).unwrap();
        let (ud, res, segs) = wait_one(&mut ring);
        assert_eq!((ud, res, segs.len()), (4, -libc::EBADF, 1));
    }

    #[test]
    fn test_full_hands_back_the_segment() {
        let (mut ring, mut pool, _file) = setup(1);
        for i in 0..ring.capacity() as u64 {
            ring.push_fsync(0, false, i).unwrap();
        }
        assert!(!ring.has_room(1));
        let seg = Seg {
            chunk: pool.alloc().unwrap(),
            offset: 0,
            len: 512,
        };
        let Err(Full(seg)) = ring.push_read_fixed(0, 0, seg, 1) else {
            panic!("accepted")
        };
        assert_eq!(seg.chunk.index(), 0);
        ring.submit_and_wait(ring.capacity()).unwrap();
        assert_eq!(ring.reap(|_, res, _| assert_eq!(res, 0)), 8);
        pool.free(seg.chunk);
    }

    #[test]
    #[should_panic(expected = "not registered")]
    fn test_foreign_chunk_is_refused() {
        let (mut ring, _pool, _file) = setup(1);
        let mut other = ChunkPool::new(Arc::new(Arena::new(4096, 1).unwrap())).unwrap();
        let seg = Seg {
            chunk: other.alloc().unwrap(),
            offset: 0,
            len: 512,
        };
        let _ = ring.push_read_fixed(0, 0, seg, 1);
    }

    #[test]
    #[should_panic(expected = "bad segment")]
    fn test_segment_past_chunk_end_is_refused() {
        let (mut ring, mut pool, _file) = setup(1);
        let seg = Seg {
            chunk: pool.alloc().unwrap(),
            offset: 4096 - 256,
            len: 512,
        };
        let _ = ring.push_read_fixed(0, 0, seg, 1);
    }

    #[test]
    fn test_drop_waits_for_in_flight_io() {
        let (mut ring, mut pool, _file) = setup(2);
        let seg = Seg {
            chunk: pool.alloc().unwrap(),
            offset: 0,
            len: 4096,
        };
        ring.push_read_fixed(0, 0, seg, 1).unwrap();
        ring.submit().unwrap();
        drop(ring); // must block until the read is done, then release the arena
        assert_eq!(Arc::strong_count(pool.arena()), 1);
    }
}

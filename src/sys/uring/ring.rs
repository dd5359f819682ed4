//! [`Ring`]: the io_uring, what it holds for the kernel while operations are in flight (the
//! segments, [`Seg`], parked per operation, and the registered arenas), and its one system
//! call, `io_uring_enter`. The other files of this folder add the ring's methods.
//!
//! Contract: an operation slot (`ops`, with its region of `iovecs`) is busy from its push until
//! its completion is reaped, and each chunk of a registered arena has one `held` entry where
//! its segment is parked meanwhile (see `submission.rs` and `completion.rs`). The ring keeps an
//! `Arc` of every registered arena.
//!
//! Hazards: `Drop` blocks until every in-flight operation has completed, and leaks the arenas
//! and iovecs if it cannot wait (the enter fails), rather than unmap memory the kernel may
//! still write. With `single_issuer`, the first thread that enters owns the ring.

use std::sync::Arc;

use io_uring::{EnterFlags, IoUring};

use super::setup::{build, RingOptions, SetupMode, SEGMENTS_MAX};
use super::RingError;
use crate::sys::mem::{Arena, Chunk};

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

/// One arena registered as a fixed buffer.
#[derive(Debug)]
pub(super) struct Registered {
    pub(super) arena: Arc<Arena>,
    /// Index in `held` of this arena's chunk 0.
    pub(super) first_held: u32,
}

/// Marks "no entry" in the intrusive lists.
pub(super) const NONE: u32 = u32::MAX;

/// One operation slot: the `user_data` the caller gave and the segments parked for it.
#[derive(Debug, Default)]
pub(super) struct Op {
    pub(super) user_data: u64,
    /// First parked segment (index into `held`), or `NONE`.
    pub(super) head: u32,
    pub(super) count: u32,
    pub(super) busy: bool,
}

/// Where one chunk's segment is parked while its operation is in flight, and the next segment
/// of the same operation.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) seg: Option<Seg>,
    pub(super) next: u32,
}

/// An io_uring with registered arenas and files, and owned iovecs.
pub struct Ring {
    // Drop order: `Drop::drop` first waits for in-flight I/O; then fields drop top to bottom:
    // the ring fd and its mappings before the iovecs and arenas the kernel referenced.
    pub(super) ring: IoUring,
    pub(super) iovecs: Box<[libc::iovec]>,
    pub(super) ops: Box<[Op]>,
    pub(super) free_ops: Vec<u32>,
    /// One entry per chunk of every registered arena: the segment parked while in flight.
    pub(super) held: Box<[Held]>,
    pub(super) arenas: Vec<Registered>,
    pub(super) max_segments: usize,
    pub(super) enabled: bool,
    pub(super) mode: SetupMode,
    /// The eventfd registered for completions, once a sleeper asked for it (`notify.rs`).
    pub(super) completion_fd: Option<std::os::fd::OwnedFd>,
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
            completion_fd: None,
        })
    }

    /// Submits queued entries with one `io_uring_enter` (none if there is nothing to do).
    pub fn submit(&mut self) -> Result<usize, RingError> {
        self.enter(0)
    }

    /// Submits queued entries and waits until at least `want` completions are ready.
    pub fn submit_and_wait(&mut self, want: usize) -> Result<usize, RingError> {
        self.enter(want.min(self.in_flight()))
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

    pub(super) fn enable(&mut self) -> Result<(), RingError> {
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
    pub(super) fn enter(&mut self, want: usize) -> Result<usize, RingError> {
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
        // The kernel lets go of registered files only when it frees the ring, later and on a
        // thread of its own; until then a block device stays claimed (`O_EXCL`) and a new
        // engine's open of it fails with EBUSY. Unregistered now, they are released before
        // this returns (the caller's close of its own descriptors is then the last).
        // Fails harmlessly where none were registered, or on another thread than the issuer.
        let _ = self.ring.submitter().unregister_files();
    }
}

fn clamp_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

//! The submission side of a [`Ring`]: the segments an operation carries ([`Seg`]), the `push_*`
//! calls that queue one operation each, and the parking of its segments until it completes.
//!
//! Contract: a push takes its segments by value and parks them in the ring's `held` entries;
//! they come back only with the operation's completion (`completion.rs`). A push that does not
//! fit (submission queue or operation slots full) hands its argument back in [`Full`] and
//! queues nothing. Entries are queued here and reach the kernel with the next
//! [`Ring::submit`].
//!
//! Hazard: the kernel reads the iovecs and the buffers until the completion is reaped; the
//! `SAFETY` comment of `push_entry` is the argument why nothing frees or reuses them sooner.

use io_uring::{opcode, squeue, types};

use super::ring::{Held, Op, Ring, Seg, NONE};

/// `RWF_DSYNC`: the write completes only once the data is durable.
pub const RWF_DSYNC: i32 = libc::RWF_DSYNC;

/// The ring had no room (submission queue or operation slots); the argument is handed back.
#[derive(Debug)]
pub struct Full<T>(pub T);

impl Ring {
    /// Queues a `READ_FIXED` of `seg.len` bytes at `file_offset` of registered file `file`.
    pub fn push_read_fixed(
        &mut self,
        file: u32,
        file_offset: u64,
        seg: Seg,
        user_data: u64,
    ) -> Result<(), Full<Seg>> {
        self.push_fixed(seg, user_data, |addr, len, buf_index| {
            opcode::ReadFixed::new(types::Fixed(file), addr, len, buf_index)
                .offset(file_offset)
                .build()
        })
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
        self.push_fixed(seg, user_data, |addr, len, buf_index| {
            opcode::WriteFixed::new(types::Fixed(file), addr.cast_const(), len, buf_index)
                .offset(file_offset)
                .rw_flags(rw_flags)
                .build()
        })
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
        self.push_vectored(segs, user_data, |iov, n| {
            opcode::Readv::new(types::Fixed(file), iov, n)
                .offset(file_offset)
                .build()
        })
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
        self.push_vectored(segs, user_data, |iov, n| {
            opcode::Writev::new(types::Fixed(file), iov, n)
                .offset(file_offset)
                .rw_flags(rw_flags)
                .build()
        })
    }

    /// Queues an `FSYNC` of registered file `file` (`datasync`: `IORING_FSYNC_DATASYNC`).
    pub fn push_fsync(
        &mut self,
        file: u32,
        datasync: bool,
        user_data: u64,
    ) -> Result<(), Full<()>> {
        let flags = if datasync {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        self.push_unbuffered(
            user_data,
            opcode::Fsync::new(types::Fixed(file)).flags(flags).build(),
        )
    }

    /// Queues a `POSIX_FADV_WILLNEED` of `len` bytes at `file_offset` of registered file
    /// `file`: the kernel starts reading them into the page cache (in an io-wq thread, not
    /// the submitter's) and completes without waiting for the disk.
    pub fn push_willneed(
        &mut self,
        file: u32,
        file_offset: u64,
        len: u32,
        user_data: u64,
    ) -> Result<(), Full<()>> {
        let entry = opcode::Fadvise::new(
            types::Fixed(file),
            libc::off_t::from(len),
            libc::POSIX_FADV_WILLNEED,
        )
        .offset(file_offset)
        .build();
        self.push_unbuffered(user_data, entry)
    }

    /// Queues `entry`, an operation on no buffer of ours (a sync, an advice).
    fn push_unbuffered(&mut self, user_data: u64, entry: squeue::Entry) -> Result<(), Full<()>> {
        let Some(op) = self.reserve(0) else {
            return Err(Full(()));
        };
        self.park(op, user_data, std::iter::empty());
        self.push_entry(op, entry);
        Ok(())
    }

    /// Whether `count` more operations fit right now.
    pub fn has_room(&mut self, count: usize) -> bool {
        let sq = self.ring.submission();
        sq.capacity() - sq.len() >= count && self.free_ops.len() >= count
    }

    /// Queues one fixed-buffer operation on `seg`; `entry` builds it from the address of the
    /// segment's first byte, its length and its fixed buffer index.
    fn push_fixed(
        &mut self,
        seg: Seg,
        user_data: u64,
        entry: impl FnOnce(*mut u8, u32, u16) -> squeue::Entry,
    ) -> Result<(), Full<Seg>> {
        let Some(op) = self.reserve(1) else {
            return Err(Full(seg));
        };
        let (len, buf_index) = (seg.len, self.park(op, user_data, std::iter::once(seg)));
        let addr = self.iovecs[self.iov_base(op)].iov_base.cast::<u8>();
        self.push_entry(op, entry(addr, len, buf_index));
        Ok(())
    }

    /// Queues one vectored operation on `segs`; `entry` builds it from the slot's iovecs and
    /// their count.
    fn push_vectored<I>(
        &mut self,
        segs: I,
        user_data: u64,
        entry: impl FnOnce(*const libc::iovec, u32) -> squeue::Entry,
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
        self.push_entry(op, entry(iov, n));
        Ok(())
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
}

//! Frame ownership: who may touch each UMEM frame right now.
//!
//! AF_XDP hands frames back and forth between user space and the kernel through four rings. A
//! frame on the fill or TX ring belongs to the kernel, which may write (RX) or read (TX) it at
//! any moment; touching it then is a data race, and putting it on two rings at once corrupts
//! traffic. xsk-rs leaves this to the caller (`unsafe` ring calls). Here [`FramePool`] owns
//! every frame and records its state:
//!
//! ```text
//! Free ──refill──▶ Fill ──RX ring (rx_burst)──▶ Rx ──transmit──▶ Tx ──flush_tx──▶ Completion
//! Free ──alloc────────────────────────────────▶ Rx
//!                                               Rx ──release──▶ Free
//! Completion ──completion ring (reap_completions)──▶ Free
//! ```
//!
//! - `Free`: in the pool's free list; nobody uses it.
//! - `Fill`: handed to the kernel on the fill ring; comes back on the RX ring.
//! - `Rx`: held by the application through a [`Frame`] handle (received, or from `alloc`).
//! - `Tx`: queued for transmission in user space (handle consumed), not yet on the TX ring.
//! - `Completion`: on the TX ring, owned by the kernel until the completion ring returns it.
//!
//! Every transition checks the current state with `assert!` (not `debug_assert!`): a frame
//! used twice or returned by the kernel in an unexpected state is a broken invariant, and the
//! check is one byte compare. Counts per state are kept so leaks show up as a count that does
//! not return to its start value.
//!
//! Jumbo slabs (see `umem.rs`) are tracked by the same pool with the same states, as indexes
//! `frame_count..frame_count + slab_count`; they have their own free list and counts, are
//! taken only by [`FramePool::take_free_slab`] (straight to `Rx`), and may never enter `Fill`.
//! A slab's [`Frame`] handle is used like any other.
//!
//! [`Frame`] is a move-only token (no `Clone`); the only way to give it up is
//! `XskPort::transmit` or `XskPort::release`. Dropping a handle otherwise would leak its frame
//! forever, so `Drop` panics (unless the thread is already panicking). The pool id in each handle
//! catches a handle used with another port.

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a frame is; see the module docs for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameState {
    /// In the pool's free list.
    Free = 0,
    /// On the fill ring (kernel-owned), returns on the RX ring.
    Fill = 1,
    /// Held by the application through a [`Frame`].
    Rx = 2,
    /// Queued for transmission, not yet on the TX ring.
    Tx = 3,
    /// On the TX ring (kernel-owned), returns on the completion ring.
    Completion = 4,
}

const STATE_COUNT: usize = 5;

impl FrameState {
    fn allowed(from: FrameState, to: FrameState) -> bool {
        use FrameState::{Completion, Fill, Free, Rx, Tx};
        matches!(
            (from, to),
            (Free, Fill)
                | (Free, Rx)
                | (Fill, Rx)
                | (Rx, Tx)
                | (Rx, Free)
                | (Tx, Completion)
                | (Completion, Free)
        )
    }
}

/// Number of frames in each state; they always sum to the frame count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// In the free list.
    pub free: u32,
    /// On the fill ring or in the kernel waiting to be received into.
    pub fill: u32,
    /// Held by the application.
    pub rx: u32,
    /// Queued for transmission in user space.
    pub tx: u32,
    /// On the TX ring, waiting for the completion ring.
    pub completion: u32,
}

impl FrameCounts {
    /// Frames the application holds or has queued for transmission (`Rx` and `Tx`).
    pub fn held(&self) -> u32 {
        self.rx + self.tx
    }

    /// Total number of frames.
    pub fn total(&self) -> u32 {
        self.free + self.fill + self.rx + self.tx + self.completion
    }
}

/// Unique id per pool, so a handle from one pool is never accepted by another.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// Owner of every frame's (and slab's) state. Pure bookkeeping: knows nothing about rings or
/// memory, so its state machine is unit-tested without a kernel.
pub struct FramePool {
    id: u64,
    /// Number of frames; indexes at and above it are slabs.
    frames: u32,
    states: Vec<FrameState>,
    /// Stack of free frame indexes; capacity = frame count, so pushing never allocates.
    free: Vec<u32>,
    /// Stack of free slab indexes (absolute, `>= frames`); capacity = slab count.
    slab_free: Vec<u32>,
    /// Per state: `[frames, slabs]`.
    counts: [[u32; 2]; STATE_COUNT],
}

impl fmt::Debug for FramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramePool")
            .field("id", &self.id)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl FramePool {
    /// A pool of `frame_count` frames, all free, and no slabs.
    pub fn new(frame_count: u32) -> Self {
        Self::with_slabs(frame_count, 0)
    }

    /// A pool of `frame_count` frames and `slab_count` jumbo slabs (indexes `frame_count..`),
    /// all free.
    pub fn with_slabs(frame_count: u32, slab_count: u32) -> Self {
        // Relaxed: the id only needs to be unique, it orders nothing.
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let total = frame_count
            .checked_add(slab_count)
            .expect("frame + slab count fits u32");
        let mut free = Vec::with_capacity(frame_count as usize);
        // Highest index at the bottom, so frame 0 is handed out first (easier to read in traces).
        free.extend((0..frame_count).rev());
        let mut slab_free = Vec::with_capacity(slab_count as usize);
        slab_free.extend((frame_count..total).rev());
        let mut counts = [[0; 2]; STATE_COUNT];
        counts[FrameState::Free as usize] = [frame_count, slab_count];
        Self {
            id,
            frames: frame_count,
            states: vec![FrameState::Free; total as usize],
            free,
            slab_free,
            counts,
        }
    }

    /// This pool's id (carried by its handles).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of frames (slabs not included).
    pub fn frame_count(&self) -> u32 {
        self.frames
    }

    /// Number of jumbo slabs.
    pub fn slab_count(&self) -> u32 {
        u32::try_from(self.states.len()).expect("created from a u32") - self.frames
    }

    /// True if `index` is a slab (not a frame).
    pub fn is_slab(&self, index: u32) -> bool {
        index >= self.frames
    }

    /// The state of frame `index`.
    pub fn state(&self, index: u32) -> FrameState {
        self.states[index as usize]
    }

    fn counts_of(&self, kind: usize) -> FrameCounts {
        FrameCounts {
            free: self.counts[FrameState::Free as usize][kind],
            fill: self.counts[FrameState::Fill as usize][kind],
            rx: self.counts[FrameState::Rx as usize][kind],
            tx: self.counts[FrameState::Tx as usize][kind],
            completion: self.counts[FrameState::Completion as usize][kind],
        }
    }

    /// Frames per state (slabs not included).
    pub fn counts(&self) -> FrameCounts {
        self.counts_of(0)
    }

    /// Slabs per state (`fill` is always 0).
    pub fn slab_counts(&self) -> FrameCounts {
        self.counts_of(1)
    }

    /// Frames in `state` (slabs not included).
    pub fn count(&self, state: FrameState) -> u32 {
        self.counts[state as usize][0]
    }

    /// Takes a frame from the free list and moves it to `to` (`Fill` or `Rx`).
    pub fn take_free(&mut self, to: FrameState) -> Option<u32> {
        let index = self.free.pop()?;
        self.transition(index, FrameState::Free, to);
        Some(index)
    }

    /// Takes a free slab for the application (state `Free` -> `Rx`), if any.
    pub fn take_free_slab(&mut self) -> Option<u32> {
        let index = self.slab_free.pop()?;
        self.transition(index, FrameState::Free, FrameState::Rx);
        Some(index)
    }

    /// Moves frame or slab `index` from `from` to `Free` and puts it on its free list.
    pub fn put_free(&mut self, index: u32, from: FrameState) {
        self.transition(index, from, FrameState::Free);
        let list = if self.is_slab(index) {
            &mut self.slab_free
        } else {
            &mut self.free
        };
        assert!(
            list.len() < list.capacity(),
            "free list overflow: frame freed twice"
        );
        list.push(index);
    }

    /// Moves frame `index` from `from` to `to`, asserting both that the transition is one of the
    /// allowed ones and that the frame really is in `from`.
    pub fn transition(&mut self, index: u32, from: FrameState, to: FrameState) {
        assert!(
            FrameState::allowed(from, to),
            "illegal frame transition {from:?} -> {to:?}"
        );
        let state = self
            .states
            .get_mut(index as usize)
            .unwrap_or_else(|| panic!("frame index {index} out of range"));
        assert!(
            *state == from,
            "frame {index} is {:?}, expected {from:?} for {from:?} -> {to:?} (used twice?)",
            *state
        );
        let kind = usize::from(index >= self.frames);
        assert!(
            kind == 0 || to != FrameState::Fill,
            "slab {index} put on the fill ring"
        );
        *state = to;
        self.counts[from as usize][kind] -= 1;
        self.counts[to as usize][kind] += 1;
    }

    /// Creates the handle for a frame that just entered `Rx`.
    pub(crate) fn handle(&self, index: u32, len: usize) -> Frame {
        assert_eq!(
            self.state(index),
            FrameState::Rx,
            "handle for frame {index} not held by the app"
        );
        Frame {
            pool_id: self.id,
            index,
            len,
        }
    }

    /// Queues `frame` for transmission (state `Rx` → `Tx`) as `(index, wire_len)` on `queue`
    /// (see [`pad_for_wire`]); the shared tail of both port kinds' `transmit`. `queue` never
    /// grows: it is sized for every frame.
    pub(crate) fn queue_tx(
        &mut self,
        frame: Frame,
        wire_len: usize,
        queue: &mut Vec<(u32, usize)>,
    ) {
        self.check(&frame);
        let (_, index, _) = frame.into_parts();
        self.transition(index, FrameState::Rx, FrameState::Tx);
        assert!(queue.len() < queue.capacity(), "TX queue overflow");
        queue.push((index, wire_len));
    }

    /// Takes back a frame the application held without sending it (state `Rx` → `Free`).
    pub(crate) fn release(&mut self, frame: Frame) {
        self.check(&frame);
        let (_, index, _) = frame.into_parts();
        self.put_free(index, FrameState::Rx);
    }

    /// Checks that `frame` belongs to this pool and is held by the application.
    pub(crate) fn check(&self, frame: &Frame) {
        assert_eq!(
            frame.pool_id, self.id,
            "frame {} used with a different pool",
            frame.index
        );
        assert_eq!(
            self.state(frame.index),
            FrameState::Rx,
            "stale handle for frame {}",
            frame.index
        );
    }
}

/// A UMEM frame the application owns: received by `XskPort::rx_burst` or taken with
/// `XskPort::alloc`. Move-only; give it back with `XskPort::transmit` or `XskPort::release`.
/// Access the bytes with `XskPort::data` / `XskPort::data_mut`.
#[must_use = "a frame must be transmitted or released, or it leaks (dropping it panics)"]
pub struct Frame {
    pool_id: u64,
    index: u32,
    len: usize,
}

impl Frame {
    /// The frame's index in its UMEM (chunk number).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Length of the received packet (0 for a frame from `alloc`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a frame from `alloc` that has no packet yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the packet length of a frame built by copying (a duplicate made from `alloc`).
    /// Reads through the port check it against the frame's capacity.
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Consumes the handle without running its `Drop` check.
    pub(crate) fn into_parts(self) -> (u64, u32, usize) {
        let frame = ManuallyDrop::new(self);
        (frame.pool_id, frame.index, frame.len)
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("index", &self.index)
            .field("len", &self.len)
            .finish()
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!(
                "frame {} (pool {}) dropped without transmit() or release(): it would leak",
                self.index, self.pool_id
            );
        }
    }
}

/// Zero-pads a frame's bytes `data` from `len` up to the Ethernet minimum (60 bytes) and
/// returns the length to put on the wire. Panics if `len` exceeds the frame.
pub(crate) fn pad_for_wire(data: &mut [u8], len: usize) -> usize {
    assert!(
        len <= data.len(),
        "transmit length {len} exceeds frame capacity {}",
        data.len()
    );
    crate::wire::pad_to_min(data, len)
}

/// Counters of the jumbo (multi-buffer) path of a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JumboStats {
    /// Multi-buffer packets received and copied into a slab (the one bounce copy).
    pub bounce_frames: u64,
    /// Bytes copied by those bounces.
    pub bounce_bytes: u64,
    /// Multi-buffer packets dropped because no slab was free.
    pub rx_no_slab: u64,
    /// Multi-buffer packets dropped because they are longer than a slab.
    pub rx_too_long: u64,
    /// Frames moved into a slab by `upgrade` (the received bytes are copied, usually 36).
    pub upgrades: u64,
    /// `upgrade` calls that found no free slab (the caller retries later).
    pub upgrade_no_slab: u64,
}

/// Most frames one `rx_burst` returns.
pub const RX_BURST_MAX: usize = 64;

/// The frames of one RX burst; an iterator of [`Frame`] handles that owns them until yielded.
/// Fixed size, no allocation. Dropping it with frames not yet taken panics (they would leak).
#[must_use = "received frames must be taken and transmitted or released"]
pub struct RxBurst {
    pool_id: u64,
    frames: [(u32, usize); RX_BURST_MAX],
    len: usize,
    next: usize,
}

impl RxBurst {
    /// Reuses the burst for the next receive: it must be empty (every frame taken).
    pub(crate) fn reset(&mut self, pool_id: u64) {
        assert_eq!(self.next, self.len, "RX burst reused with frames not taken");
        assert_eq!(pool_id, self.pool_id, "RX burst of another pool");
        self.len = 0;
        self.next = 0;
    }

    /// Empties the burst (every frame taken) for frames of the same pool pushed by hand.
    pub(crate) fn clear(&mut self) {
        assert_eq!(
            self.next, self.len,
            "RX burst cleared with frames not taken"
        );
        self.len = 0;
        self.next = 0;
    }

    pub(crate) fn new(pool_id: u64) -> Self {
        Self {
            pool_id,
            frames: [(0, 0); RX_BURST_MAX],
            len: 0,
            next: 0,
        }
    }

    pub(crate) fn push(&mut self, frame: Frame) {
        assert!(self.len < RX_BURST_MAX, "RX burst overflow");
        let (pool_id, index, len) = frame.into_parts();
        assert_eq!(pool_id, self.pool_id);
        self.frames[self.len] = (index, len);
        self.len += 1;
    }
}

impl Iterator for RxBurst {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.next == self.len {
            return None;
        }
        let (index, len) = self.frames[self.next];
        self.next += 1;
        Some(Frame {
            pool_id: self.pool_id,
            index,
            len,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for RxBurst {}

impl fmt::Debug for RxBurst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxBurst")
            .field("left", &(self.len - self.next))
            .finish()
    }
}

impl Drop for RxBurst {
    fn drop(&mut self) {
        if self.next < self.len && !std::thread::panicking() {
            panic!(
                "RxBurst dropped with {} frames not taken: they would leak",
                self.len - self.next
            );
        }
    }
}

/// Lending frames to storage I/O: the frame area as an io_uring arena (chunk `i` = frame `i`),
/// optionally the slab area as a second arena (chunk `j` = slab `j`, pool index
/// `frame_count + j`), and each frame's and slab's chunk token. A held frame is exchanged for
/// its token ([`Lender::lend`]) and back ([`Lender::reclaim`]); while lent it has no handle, so
/// it can be neither transmitted nor released, and nothing but the engine holding the token
/// touches it.
pub(crate) struct Lender {
    arena: std::sync::Arc<super::mem::Arena>,
    slab_arena: Option<std::sync::Arc<super::mem::Arena>>,
    /// Chunk token of each frame, then of each slab; present unless lent.
    tokens: Vec<Option<super::mem::Chunk>>,
    /// Received length of each lent frame, restored on reclaim.
    lent_len: Vec<usize>,
}

impl Lender {
    /// Takes all chunk tokens of `arena` (frames) and of `slab_arena` (slabs, indexed after
    /// the frames); both must be fresh.
    pub(crate) fn with_slabs(
        arena: super::mem::Arena,
        slab_arena: Option<super::mem::Arena>,
    ) -> Lender {
        let arena = std::sync::Arc::new(arena);
        let slab_arena = slab_arena.map(std::sync::Arc::new);
        let mut tokens: Vec<Option<super::mem::Chunk>> = arena
            .take_chunks()
            .expect("fresh arena")
            .map(Some)
            .collect();
        if let Some(slabs) = &slab_arena {
            tokens.extend(slabs.take_chunks().expect("fresh slab arena").map(Some));
        }
        let lent_len = vec![0; tokens.len()];
        Lender {
            arena,
            slab_arena,
            tokens,
            lent_len,
        }
    }

    /// The frame arena, for io_uring registration.
    pub(crate) fn arena(&self) -> &std::sync::Arc<super::mem::Arena> {
        &self.arena
    }

    /// The slab arena, if the port has slabs.
    pub(crate) fn slab_arena(&self) -> Option<&std::sync::Arc<super::mem::Arena>> {
        self.slab_arena.as_ref()
    }

    /// Exchanges a held frame of `pool` for its chunk token.
    pub(crate) fn lend(&mut self, pool: &FramePool, frame: Frame) -> super::mem::Chunk {
        pool.check(&frame);
        let (_, index, len) = frame.into_parts();
        self.lent_len[index as usize] = len;
        self.tokens[index as usize]
            .take()
            .expect("a held frame's token is present")
    }

    /// Exchanges a lent chunk token back for its frame's handle.
    pub(crate) fn reclaim(&mut self, pool: &FramePool, chunk: super::mem::Chunk) -> Frame {
        let index = if self.arena.owns(&chunk) {
            chunk.index()
        } else {
            assert!(
                self.slab_arena.as_ref().is_some_and(|a| a.owns(&chunk)),
                "chunk of another frame area reclaimed"
            );
            pool.frame_count() as usize + chunk.index()
        };
        assert!(
            self.tokens[index].is_none(),
            "frame {index} reclaimed but not lent"
        );
        self.tokens[index] = Some(chunk);
        let index = u32::try_from(index).expect("frame index fits u32");
        pool.handle(index, self.lent_len[index as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FrameState::{Completion, Fill, Rx, Tx};

    /// A pool of `count` frames, and the index of one taken from it into `state`.
    fn pool_with_taken(count: u32, state: FrameState) -> (FramePool, u32) {
        let mut pool = FramePool::new(count);
        let index = pool.take_free(state).unwrap();
        (pool, index)
    }

    /// A pool of one frame, the frame taken (`Rx`), and its handle.
    fn pool_with_held_frame() -> (FramePool, u32, Frame) {
        let (pool, index) = pool_with_taken(1, Rx);
        let frame = pool.handle(index, 0);
        (pool, index, frame)
    }

    fn release(pool: &mut FramePool, frame: Frame) {
        pool.check(&frame);
        let (_, index, _) = frame.into_parts();
        pool.put_free(index, Rx);
    }

    #[test]
    fn test_full_cycle_returns_every_frame() {
        let mut pool = FramePool::new(4);
        let start = pool.counts();
        assert_eq!(
            start,
            FrameCounts {
                free: 4,
                ..FrameCounts::default()
            }
        );
        // Refill two, receive both, reflect one, drop the other.
        let a = pool.take_free(Fill).unwrap();
        let b = pool.take_free(Fill).unwrap();
        assert_eq!((a, b), (0, 1));
        pool.transition(a, Fill, Rx);
        pool.transition(b, Fill, Rx);
        let frame_a = pool.handle(a, 60);
        let frame_b = pool.handle(b, 60);
        pool.check(&frame_a);
        let (_, index, _) = frame_a.into_parts();
        pool.transition(index, Rx, Tx);
        pool.transition(index, Tx, Completion);
        assert_eq!(
            pool.counts(),
            FrameCounts {
                free: 2,
                fill: 0,
                rx: 1,
                tx: 0,
                completion: 1
            }
        );
        release(&mut pool, frame_b);
        pool.put_free(index, Completion);
        assert_eq!(pool.counts(), start);
        assert_eq!(pool.counts().total(), 4);
    }

    #[test]
    fn test_slabs_have_their_own_free_list_and_counts() {
        let mut pool = FramePool::with_slabs(2, 3);
        assert_eq!((pool.frame_count(), pool.slab_count()), (2, 3));
        assert_eq!(pool.counts().free, 2);
        assert_eq!(pool.slab_counts().free, 3);
        // Frames never hand out a slab, and slabs never a frame.
        let frames: Vec<u32> = std::iter::from_fn(|| pool.take_free(Fill)).collect();
        assert_eq!(frames, [0, 1]);
        let slabs: Vec<u32> = std::iter::from_fn(|| pool.take_free_slab()).collect();
        assert_eq!(slabs, [2, 3, 4]);
        assert!(slabs.iter().all(|&s| pool.is_slab(s)));
        assert!(!pool.is_slab(1));
        assert_eq!(pool.slab_counts().rx, 3);
        assert_eq!(pool.counts().fill, 2);
        // A slab goes through Tx and Completion like a frame, and back to the slab list.
        pool.transition(3, Rx, Tx);
        pool.transition(3, Tx, Completion);
        assert_eq!(pool.slab_counts().completion, 1);
        pool.put_free(3, Completion);
        pool.put_free(2, Rx);
        pool.put_free(4, Rx);
        assert_eq!(pool.slab_counts().free, 3);
        assert_eq!(
            pool.counts().free,
            0,
            "slabs did not land on the frame list"
        );
        assert_eq!(pool.take_free_slab(), Some(4));
        let frame = pool.handle(4, 9000);
        pool.release(frame);
        assert_eq!(pool.slab_counts().total(), 3);
        assert_eq!(pool.counts().total(), 2);
    }

    #[test]
    #[should_panic(expected = "put on the fill ring")]
    fn test_slab_on_fill_ring_panics() {
        let mut pool = FramePool::with_slabs(1, 1);
        pool.transition(1, FrameState::Free, Fill);
    }

    #[test]
    #[should_panic(expected = "expected Rx")]
    fn test_slab_double_release_panics() {
        let mut pool = FramePool::with_slabs(1, 2);
        let slab = pool.take_free_slab().unwrap();
        pool.put_free(slab, Rx);
        pool.put_free(slab, Rx);
    }

    #[test]
    fn test_lender_lends_slabs_from_the_slab_arena() {
        use crate::sys::mem::Arena;
        let mut pool = FramePool::with_slabs(2, 2);
        let frames = Arena::new(4096, 2).unwrap();
        let slabs = Arena::new(3 * 4096, 2).unwrap();
        let mut lender = Lender::with_slabs(frames, Some(slabs));
        let slab = pool.take_free_slab().unwrap();
        let frame = pool.take_free(Rx).unwrap();
        let chunk = lender.lend(&pool, pool.handle(slab, 8740));
        assert!(lender.slab_arena().unwrap().owns(&chunk));
        assert_eq!(chunk.index(), 0);
        assert_eq!(lender.slab_arena().unwrap().bytes(&chunk).len(), 3 * 4096);
        let small = lender.lend(&pool, pool.handle(frame, 60));
        assert!(lender.arena().owns(&small));
        let back = lender.reclaim(&pool, chunk);
        assert_eq!((back.index(), back.len()), (slab, 8740));
        let small = lender.reclaim(&pool, small);
        assert_eq!(small.index(), frame);
        pool.release(back);
        pool.release(small);
        assert_eq!(pool.slab_counts().free, 2);
    }

    #[test]
    fn test_exhaustion_returns_none() {
        let mut pool = FramePool::new(2);
        assert!(pool.take_free(Fill).is_some());
        assert!(pool.take_free(Rx).is_some());
        assert_eq!(pool.take_free(Fill), None);
        assert_eq!(
            pool.counts(),
            FrameCounts {
                free: 0,
                fill: 1,
                rx: 1,
                tx: 0,
                completion: 0
            }
        );
    }

    #[test]
    #[should_panic(expected = "expected Rx")]
    fn test_double_release_panics() {
        let (mut pool, index) = pool_with_taken(2, Rx);
        pool.put_free(index, Rx);
        pool.put_free(index, Rx);
    }

    #[test]
    #[should_panic(expected = "expected Fill")]
    fn test_rx_of_frame_not_on_fill_ring_panics() {
        let mut pool = FramePool::new(2);
        // The kernel "returns" frame 1 on the RX ring although we never gave it one.
        pool.transition(1, Fill, Rx);
    }

    #[test]
    #[should_panic(expected = "expected Completion")]
    fn test_completion_of_frame_not_sent_panics() {
        let (mut pool, index) = pool_with_taken(2, Fill);
        pool.put_free(index, Completion);
    }

    #[test]
    #[should_panic(expected = "illegal frame transition Fill -> Tx")]
    fn test_transmit_from_fill_ring_is_illegal() {
        let (mut pool, index) = pool_with_taken(1, Fill);
        pool.transition(index, Fill, Tx);
    }

    #[test]
    #[should_panic(expected = "used with a different pool")]
    fn test_handle_from_other_pool_panics() {
        let (_one, _, frame) = pool_with_held_frame();
        let other = FramePool::new(1);
        other.check(&frame);
    }

    #[test]
    #[should_panic(expected = "stale handle")]
    fn test_stale_handle_panics() {
        let (mut pool, index, frame) = pool_with_held_frame();
        // Bookkeeping says the frame went back (a bug elsewhere); the handle must not be used.
        pool.put_free(index, Rx);
        pool.check(&frame);
    }

    #[test]
    #[should_panic(expected = "dropped without transmit() or release()")]
    fn test_dropping_a_handle_panics() {
        let (_pool, _, frame) = pool_with_held_frame();
        drop(frame);
    }

    #[test]
    #[should_panic(expected = "not taken")]
    fn test_dropping_a_burst_with_frames_panics() {
        let mut pool = FramePool::new(2);
        let mut burst = RxBurst::new(pool.id());
        let index = pool.take_free(Rx).unwrap();
        burst.push(pool.handle(index, 60));
        drop(burst);
    }

    #[test]
    fn test_burst_yields_in_order() {
        let mut pool = FramePool::new(3);
        let mut burst = RxBurst::new(pool.id());
        for len in [60, 61, 62] {
            let index = pool.take_free(Rx).unwrap();
            burst.push(pool.handle(index, len));
        }
        assert_eq!(burst.len(), 3);
        let lens: Vec<usize> = burst
            .map(|frame| {
                let len = frame.len();
                release(&mut pool, frame);
                len
            })
            .collect();
        assert_eq!(lens, [60, 61, 62]);
        assert_eq!(pool.counts().free, 3);
    }
}

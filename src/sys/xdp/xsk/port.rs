//! [`XskPort`]: the socket's state (rings, UMEM, frame pool, fill target) in drop order, and
//! what the port says about itself: its interface, queue and bind mode, its fd, its arenas and
//! frame counts.
//!
//! Contract: the fields are shared with the files beside this one (`bind.rs` fills them in,
//! `rx.rs`, `tx.rs` and `frames.rs` move frames between the pool's states); every ownership
//! transition goes through the [`FramePool`], which asserts it.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue};

use super::rx::Partial;
use super::BindMode;
use crate::sys::frame::{FrameCounts, FramePool, JumboStats, Lender};
use crate::sys::layout::{FRAME_CAPACITY, FRAME_SIZE, SLAB_CAPACITY};
use crate::sys::mem::Arena;
use crate::sys::xdp::loader::XdpQueueCounters;
use crate::sys::xdp::txring::TxRing;
use crate::sys::xdp::umem::UmemArea;

/// One AF_XDP socket on one (interface, RX queue), with its UMEM and frame pool.
///
/// Field order is drop order: the rings (each holding a reference to the socket) go first, so the
/// socket is closed before the UMEM it was bound to is unregistered and unmapped (xsk-rs also
/// keeps the UMEM alive through the socket, so this is belt and braces).
pub struct XskPort {
    /// Our mapping of the TX ring: unmapped before the socket closes.
    pub(super) txring: TxRing,
    /// Kept for the socket's lifetime and for `sendto` kicks; never used to produce.
    pub(super) tx: TxQueue,
    pub(super) rx: RxQueue,
    pub(super) fill: FillQueue,
    pub(super) comp: CompQueue,
    pub(super) umem: UmemArea,
    pub(super) pool: FramePool,
    /// Current descriptor of each frame (address as last received; length set on transmit).
    pub(super) descs: Vec<FrameDesc>,
    /// Scratch descriptors for ring calls; fixed length, never reallocated.
    pub(super) scratch: Vec<FrameDesc>,
    /// Frames and slabs in state `Tx` with their wire length, in transmit order. Capacity =
    /// frame count + slab count, so it never grows.
    pub(super) tx_queued: Vec<(u32, usize)>,
    /// Per slab: TX descriptors not yet returned on the completion ring.
    pub(super) slab_pending: Vec<u8>,
    /// The multi-buffer packet being received, if its last fragment has not arrived yet.
    pub(super) rx_partial: Option<Partial>,
    pub(super) jumbo: JumboStats,
    /// Bound with `XDP_USE_SG`: slabs are in use.
    pub(super) multi_buffer: bool,
    /// Frames `refill` keeps with the kernel now: starts at [`FILL_TARGET_START`](super::FILL_TARGET_START) and doubles
    /// up to `fill_max` after a burst (see there).
    pub(super) fill_target: u32,
    /// `fill_ring_size`, or the frame count if smaller.
    pub(super) fill_max: u32,
    /// Frames the kernel held for receiving after the last `refill`.
    pub(super) fill_held: u32,
    /// The UMEM as an io_uring arena and each frame's chunk token (it holds a clone of the
    /// xsk-rs `Umem`, so the mapping outlives every ring that registered it).
    pub(super) lender: Lender,
    pub(super) bind_mode: BindMode,
    pub(super) interface: String,
    pub(super) queue_id: u32,
    /// The XDP program's counters of this queue, once the program it is registered with
    /// handed them over ([`XskPort::set_program_counters`]).
    pub(super) program_counters: Option<XdpQueueCounters>,
}

impl std::fmt::Debug for XskPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskPort")
            .field("interface", &self.interface)
            .field("queue_id", &self.queue_id)
            .field("bind_mode", &self.bind_mode)
            .field("counts", &self.pool.counts())
            .finish_non_exhaustive()
    }
}

impl XskPort {
    /// The UMEM as an arena for io_uring registration: chunk `i` is frame `i`.
    pub fn io_arena(&self) -> &Arc<Arena> {
        self.lender.arena()
    }

    /// The jumbo slabs as a second io_uring arena (chunk `j` = slab `j`, [`SLAB_SIZE`](crate::sys::layout::SLAB_SIZE) bytes,
    /// packet at chunk + 476, payload at chunk + 512), or `None` if the port has no slabs
    /// (bound without multi-buffer support). A slab frame's [`Self::lend`] returns a chunk of
    /// this arena.
    pub fn slab_arena(&self) -> Option<&Arc<Arena>> {
        self.lender.slab_arena()
    }

    /// Longest frame (Ethernet header to payload end, without FCS) this port can receive and
    /// transmit: a slab's capacity with multi-buffer, otherwise what one chunk holds.
    pub fn max_frame_len(&self) -> usize {
        if self.multi_buffer {
            SLAB_CAPACITY
        } else {
            FRAME_CAPACITY
        }
    }

    /// True if bound with `XDP_USE_SG` (jumbo frames work).
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer
    }

    /// Slabs per ownership state (`fill` is always 0).
    pub fn slab_counts(&self) -> FrameCounts {
        self.pool.slab_counts()
    }

    /// Zero-copy or copy mode.
    pub fn bind_mode(&self) -> BindMode {
        self.bind_mode
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The RX queue.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// The socket fd, for `XdpProgram::insert_socket` and for `poll`/`epoll`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the socket, which the rings keep open for as long as `self`
        // lives; the returned borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.rx.fd().as_raw_fd()) }
    }

    /// Frames per ownership state (they always sum to the frame count; slabs are counted in
    /// [`Self::slab_counts`]).
    pub fn frame_counts(&self) -> FrameCounts {
        self.pool.counts()
    }

    /// Start of the UMEM mapping (for registering it as one io_uring fixed buffer).
    pub fn umem_base_ptr(&self) -> NonNull<u8> {
        self.umem.base_ptr()
    }

    /// Length of the UMEM mapping in bytes: the frames, then the slabs
    /// (`(frame_count + 3 * slab_count) * frame_size`).
    pub fn umem_len(&self) -> usize {
        self.umem.len()
    }

    /// Size of one frame (chunk).
    pub fn frame_size(&self) -> usize {
        FRAME_SIZE
    }
}

//! [`XskPort`]: one AF_XDP socket bound to one (interface, RX queue), with its own UMEM.
//!
//! Contract: the port owns the UMEM, the four rings and a [`FramePool`] that owns every frame
//! (see `frame.rs` for the ownership states). The data path is safe and does not allocate:
//!
//! ```text
//! loop {
//!     port.reap_completions();          // TX frames the kernel is done with -> Free
//!     port.refill()?;                   // Free -> fill ring (kicks the kernel if it asks)
//!     for frame in port.rx_burst(32) {  // RX ring -> Frame handles
//!         // read port.data(&frame), build the reply in port.data_mut(&mut frame)
//!         port.transmit(frame, reply_len);   // or port.release(frame)
//!     }
//!     port.flush_tx()?;                 // queued frames -> TX ring, sendto() kicks if needed
//! }
//! ```
//!
//! Binding tries zero-copy first and falls back to copy mode (veth refuses zero-copy with
//! EOPNOTSUPP); [`XskPort::bind_mode`] reports what is in use. The socket is bound with
//! `XDP_USE_NEED_WAKEUP`; in copy mode the kernel always asks for a TX kick and sends at most
//! [`COPY_MODE_TX_BATCH`] frames per kick, so `flush_tx` costs one `sendto` per 32 frames. An XDP program must redirect
//! the queue's traffic to this socket (`XdpProgram::insert_socket(queue, port.fd())`); the port
//! never loads one itself.
//!
//! Jumbo frames: on an interface whose MTU does not fit one chunk, the UMEM also holds
//! [`XskConfig::slab_count`] slabs of three chunks (see `umem.rs`), and the socket is bound with
//! `XDP_USE_SG` (multi-buffer; in copy mode if zero-copy refuses it). A packet that arrives
//! in several descriptors is copied into a free slab (the one bounce copy, counted in
//! [`XskPort::jumbo_stats`]), its fragment chunks go straight back to the free list, and
//! `rx_burst` yields one [`Frame`] whose [`XskPort::data`] is the whole packet, contiguous. A
//! slab frame is transmitted without a copy as a chain of descriptors (`XDP_PKT_CONTD` on all
//! but the last) written to our own mapping of the TX ring (`txring.rs`: xsk-rs can only
//! describe chunk + 476). [`XskPort::upgrade`] moves a small request into a slab so that a big
//! reply (a 17-sector read) can be built in place; [`XskPort::max_frame_len`] says how long a
//! frame this port can carry. Slabs are a second io_uring arena ([`XskPort::slab_arena`]) and
//! are lent and reclaimed like frames.
//!
//! Hazards:
//! - One port per (interface, queue); a second bind on the same pair fails with EBUSY.
//! - Frames sent shorter than 60 bytes are zero-padded to 60: veth does not pad, and some
//!   initiators (aoeping) ignore runts.
//! - Dropping the port with frames still held by the application is allowed, but the handles
//!   then panic when dropped (release them first).
//! - The socket is bound in the calling thread's network namespace (libxdp resolves the name).
//!
//! This file holds the port's state, in drop order; the files beside it are its concerns, and
//! they alone see its fields: the configuration and its checks (`config.rs`), binding and what
//! the bind got (`bind.rs`), the UMEM and the frames the application holds (`frames.rs`), the
//! receive path (`rx.rs`), the transmit path (`tx.rs`), statistics (`stats.rs`), busy polling
//! (`busy_poll.rs`) and [`XskError`] (`error.rs`). Every ownership transition goes through the
//! [`FramePool`], which asserts it.
//!
//! [`FramePool`]: crate::sys::frame::FramePool
//! [`Frame`]: crate::sys::frame::Frame

mod bind;
mod busy_poll;
mod config;
mod error;
mod frames;
mod rx;
mod stats;
mod tx;

pub use bind::BindMode;
pub use busy_poll::{check_irq_deferral, BusyPoll, BusyPollReach};
pub use config::{BindPreference, XskConfig, FILL_TARGET_START};
pub use error::XskError;
pub use stats::XskStats;

/// Frames the kernel sends per TX kick in copy mode (`TX_BATCH_SIZE` in net/xdp/xsk.c; Linux
/// 6.17+ lets a socket raise it with `XDP_MAX_TX_SKB_BUDGET`, which measured no faster on
/// veth).
pub const COPY_MODE_TX_BATCH: usize = 32;

use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue};

use crate::sys::frame::{FramePool, JumboStats, Lender};
use crate::sys::xdp::loader::XdpQueueCounters;
use crate::sys::xdp::txring::TxRing;
use crate::sys::xdp::umem::UmemArea;
use rx::Partial;

/// One AF_XDP socket on one (interface, RX queue), with its UMEM and frame pool.
///
/// Field order is drop order: the rings (each holding a reference to the socket) go first, so the
/// socket is closed before the UMEM it was bound to is unregistered and unmapped (xsk-rs also
/// keeps the UMEM alive through the socket, so this is belt and braces).
pub struct XskPort {
    /// Our mapping of the TX ring: unmapped before the socket closes.
    txring: TxRing,
    /// Kept for the socket's lifetime and for `sendto` kicks; never used to produce.
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    umem: UmemArea,
    pool: FramePool,
    /// Current descriptor of each frame (address as last received; length set on transmit).
    descs: Vec<FrameDesc>,
    /// Scratch descriptors for ring calls; fixed length, never reallocated.
    scratch: Vec<FrameDesc>,
    /// Frames and slabs in state `Tx` with their wire length, in transmit order. Capacity =
    /// frame count + slab count, so it never grows.
    tx_queued: Vec<(u32, usize)>,
    /// Per slab: TX descriptors not yet returned on the completion ring.
    slab_pending: Vec<u8>,
    /// The multi-buffer packet being received, if its last fragment has not arrived yet.
    rx_partial: Option<Partial>,
    jumbo: JumboStats,
    /// Bound with `XDP_USE_SG`: slabs are in use.
    multi_buffer: bool,
    /// Frames `refill` keeps with the kernel now: starts at [`FILL_TARGET_START`] and doubles
    /// up to `fill_max` after a burst (see there).
    fill_target: u32,
    /// `fill_ring_size`, or the frame count if smaller.
    fill_max: u32,
    /// Frames the kernel held for receiving after the last `refill`.
    fill_held: u32,
    /// The UMEM as an io_uring arena and each frame's chunk token (it holds a clone of the
    /// xsk-rs `Umem`, so the mapping outlives every ring that registered it).
    lender: Lender,
    bind_mode: BindMode,
    /// Busy polling reaches the queue's NAPI: every `refill` drives it with a non-blocking
    /// `recvfrom` (see [`BusyPollReach`]).
    busy_poll: bool,
    /// Busy polling was asked for and the socket was tied to no NAPI at bind: the tie is
    /// looked for once more when the first frame has arrived (Linux before 6.13 makes it
    /// then, from the frame's receive queue).
    busy_poll_pending: bool,
    /// The interface's NAPI that a worker waiting on this port busy-polls in its wait
    /// ([`crate::sys::napi::NapiWait`]), where the socket itself is tied to none.
    wait_napi: Option<u32>,
    interface: String,
    queue_id: u32,
    /// The XDP program's counters of this queue, once the program it is registered with
    /// handed them over ([`XskPort::set_program_counters`]).
    program_counters: Option<XdpQueueCounters>,
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

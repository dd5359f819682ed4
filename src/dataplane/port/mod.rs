//! The seam between a worker and the network: [`NetPort`], what a worker needs of a port.
//!
//! - [`Port`] (`kernel.rs`): the ports the target serves: an AF_XDP socket on one
//!   (interface, RX queue), or the AF_PACKET fallback;
//! - [`LoopbackPort`] (`loopback.rs`): frames in memory, put in and taken out by a test, the
//!   fuzzer or the conformance harness: the real worker with no socket and no root;
//! - [`FaultyPort`] (`fault.rs`): wraps any port and drops, duplicates or reorders received
//!   frames, holds transmissions back as a full TX ring does, or fails a call.
//!
//! Every port hands out the same move-only [`Frame`] handles over memory laid out identically
//! (packet at chunk + 476, ATA data at chunk + 512), and lends a frame's chunk to the storage
//! engine, so the worker code is the same for each (it is generic over the port: no dynamic
//! dispatch on the data path).
//!
//! Jumbo frames: a frame of up to [`Port::max_frame_len`] bytes may be a slab frame (three
//! chunks, one contiguous buffer). A port has slabs only where the interface MTU does not fit
//! one chunk: an AF_XDP port then binds with `XDP_USE_SG` (multi-buffer), an AF_PACKET port
//! sizes its RX ring for the MTU (`PacketConfig::for_mtu`); otherwise a frame is one chunk
//! (at most 7 sectors). The worker drives them like this:
//!
//! ```text
//! // RX: a jumbo request (e.g. a 17-sector write) arrives as ONE frame; data()/data_mut() see
//! // the whole packet (the kernel's fragments were bounce-copied once into a slab).
//! for frame in port.rx_burst(n) {
//!     // A read whose reply does not fit the request's frame: move the request into a slab
//!     // (fit_reply = upgrade(frame, request.reply_room())).
//!     let request = Request::parse(port.data(&frame))?;          // the one parse
//!     let frame = match port.fit_reply(frame, request.reply_room()) {
//!         Ok(frame) => frame,                             // fits (unchanged) or now a slab
//!         Err(frame) => { backlog.push(frame); continue } // no slab free: retry later
//!     };
//!     // ... target.handle(device, &request, port.data_mut(&mut frame), info) ...
//!     // Disk I/O: lend/reclaim exactly as for small frames; the chunk belongs to
//!     // port.io_arenas()[0] (frames) or [1] (slabs): register both with the io_uring.
//!     let offset = port.offset_in_chunk(&frame) + plan.data_offset;   // 512 for both
//!     let chunk = port.lend(frame);
//!     // ... completion: let frame = port.reclaim(chunk); port.transmit(frame, len);
//! }
//! ```
//!
//! `transmit`, `release`, `flush_tx` and `reap_completions` work unchanged for slab frames (a
//! slab goes back to its free list when the last descriptor of its reply completes).

/// The frame-level [`NetPort`] methods of a port whose frames another value keeps (its frame
/// area, or the port it wraps): each calls the method of the same name on `$frames` (shared
/// borrow) or `$frames_mut` (exclusive borrow). Used inside `impl NetPort for ...`; `$self` is
/// `self`, passed in so that the expressions may name it.
macro_rules! forward_frame_methods {
    ($self:ident => $frames:expr, $frames_mut:expr) => {
        fn data<'a>(&'a $self, frame: &'a Frame) -> &'a [u8] {
            $frames.data(frame)
        }
        fn data_mut<'a>(&'a $self, frame: &'a mut Frame) -> &'a mut [u8] {
            $frames.data_mut(frame)
        }
        fn offset_in_chunk(&$self, frame: &Frame) -> usize {
            $frames.offset_in_chunk(frame)
        }
        fn max_frame_len(&$self) -> usize {
            $frames.max_frame_len()
        }
        fn frame_capacity(&$self, frame: &Frame) -> usize {
            $frames.frame_capacity(frame)
        }
        fn upgrade(&mut $self, frame: Frame, needed: usize) -> Result<Frame, Frame> {
            $frames_mut.upgrade(frame, needed)
        }
        fn alloc(&mut $self) -> Option<Frame> {
            $frames_mut.alloc()
        }
        fn release(&mut $self, frame: Frame) {
            $frames_mut.release(frame);
        }
        fn transmit(&mut $self, frame: Frame, len: usize) {
            $frames_mut.transmit(frame, len);
        }
        fn io_arena(&$self) -> &Arc<Arena> {
            $frames.io_arena()
        }
        fn slab_arena(&$self) -> Option<&Arc<Arena>> {
            $frames.slab_arena()
        }
        fn lend(&mut $self, frame: Frame) -> Chunk {
            $frames_mut.lend(frame)
        }
        fn reclaim(&mut $self, chunk: Chunk) -> Frame {
            $frames_mut.reclaim(chunk)
        }
        fn jumbo_stats(&$self) -> JumboStats {
            $frames.jumbo_stats()
        }
    };
}

mod fault;
mod kernel;
mod loopback;

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::sys::frame::{Frame, JumboStats, RxBurst, RX_BURST_MAX};
use crate::sys::mem::{Arena, Chunk};
use crate::sys::packet::PacketError;
use crate::sys::xdp::xsk::XskError;

pub use fault::{FaultCall, FaultConfig, FaultStats, FaultyPort};
pub use kernel::Port;
pub use loopback::{LoopbackPort, LoopbackStats, WireEvent, WireLog};

/// Receive-side figures that only the kernel has, for the statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelCounters {
    /// Frames for this socket that the kernel dropped before we saw them: AF_XDP `rx_dropped`
    /// + `rx_ring_full`, AF_PACKET `tp_drops` (ring full).
    pub rx_dropped: u64,
    /// AF_XDP: times the kernel found the fill ring empty (a frame lost each time).
    pub fill_empty: u64,
    /// AF_XDP: frames the port keeps on the fill ring now (it deepens after bursts).
    pub fill_depth: u32,
    /// Replies the kernel would not send, so dropped: AF_XDP `tx_invalid_descs`; AF_PACKET
    /// frames it rejected (too long for the link, say) or kept refusing (`tx_rejected` +
    /// `tx_dropped` of the port).
    #[serde(default)]
    pub tx_dropped: u64,
}

/// A port operation failed; the worker stops and reports it.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// On an AF_XDP socket.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// On an AF_PACKET socket.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// Made up by a [`FaultyPort`] (tests).
    #[error("injected port fault in {call}")]
    Injected {
        /// The call that failed.
        call: &'static str,
    },
}

/// What a worker needs of a network port. Frames are move-only handles: every frame a port
/// hands out comes back to it through `transmit`, `release` or `lend` (and then `reclaim`).
pub trait NetPort {
    /// Transport name for logs ("af_xdp", "af_packet", "loopback").
    fn kind(&self) -> &'static str;

    /// An empty burst for [`NetPort::rx_burst_into`], made once and reused.
    fn new_burst(&self) -> RxBurst;

    /// Receives up to `max` frames into `burst`, whose frames were all taken.
    fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize);

    /// Most frames the worker takes from this port per iteration: about as many as one
    /// transmit call sends, so that what arrived together is answered together (by default a
    /// whole burst, [`RX_BURST_MAX`]).
    fn rx_batch_max(&self) -> usize {
        RX_BURST_MAX
    }

    /// The received packet.
    fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8];

    /// The frame buffer up to the end of its chunk.
    fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8];

    /// Offset of the packet start inside the chunk [`NetPort::lend`] returns for `frame` (a
    /// slab frame's chunk is the whole slab).
    fn offset_in_chunk(&self, frame: &Frame) -> usize;

    /// Longest frame (Ethernet header to end of payload, no FCS) this port receives and sends:
    /// the dataplane advertises `min(MTU, max_frame_len)` as the port's MTU, so sectors per
    /// request are `(that - 36) / 512` (17 at MTU 9000 on AF_XDP with multi-buffer).
    fn max_frame_len(&self) -> usize;

    /// Bytes `frame` can hold from its packet start (what `data_mut` returns).
    fn frame_capacity(&self, frame: &Frame) -> usize;

    /// Makes `frame` able to hold `needed` bytes: `Ok` with the frame unchanged if it already
    /// can, or with a slab frame holding a copy of its received bytes; `Err` gives the frame
    /// back when no slab is free (keep the request and retry later; never drop it). Panics if
    /// `needed > max_frame_len()`.
    fn upgrade(&mut self, frame: Frame, needed: usize) -> Result<Frame, Frame>;

    /// A free frame for a reply that is not built in a request's frame.
    fn alloc(&mut self) -> Option<Frame>;

    /// Gives a frame back without sending it.
    fn release(&mut self, frame: Frame);

    /// Queues `frame[..len]` for transmission (padded to 60 bytes).
    fn transmit(&mut self, frame: Frame, len: usize);

    /// Hands queued frames to the kernel (or the peer); returns how many.
    fn flush_tx(&mut self) -> Result<usize, PortError>;

    /// Takes back frames the kernel has sent.
    fn reap_completions(&mut self) -> usize;

    /// Gives the kernel free frames to receive into.
    fn refill(&mut self) -> Result<usize, PortError>;

    /// Sleeps until a frame arrives or `timeout` passes; true if one is ready.
    fn wait_rx(&mut self, timeout: Duration) -> Result<bool, PortError>;

    /// The file descriptor a worker that waits on several ports (or on other workers too)
    /// polls for this port's frames (`POLLIN` when the RX ring has one), or `None` when the
    /// port cannot be waited on so: the worker then sleeps in short steps. Before such a wait
    /// the worker calls [`NetPort::prepare_nap`]; after an error event, `wait_rx` with a zero
    /// timeout, which reports it.
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// A NAPI that a worker waiting on this port busy-polls during its wait
    /// ([`crate::sys::napi::NapiWait`]): the interface's receive path, where the socket itself
    /// is tied to none (veth); `None` otherwise.
    fn wait_napi(&self) -> Option<u32> {
        None
    }

    /// Before the worker stops polling for a while without waiting on this port (a nap):
    /// gives the kernel room for a burst, as [`NetPort::wait_rx`] does.
    fn prepare_nap(&mut self) -> Result<(), PortError> {
        Ok(())
    }

    /// The frame memory, for io_uring registration.
    fn io_arena(&self) -> &Arc<Arena>;

    /// The jumbo slabs, a second arena to register, if this port has them.
    fn slab_arena(&self) -> Option<&Arc<Arena>>;

    /// Lends a frame's chunk to a storage I/O.
    fn lend(&mut self, frame: Frame) -> Chunk;

    /// Takes a lent chunk back as its frame.
    fn reclaim(&mut self, chunk: Chunk) -> Frame;

    /// Counters of the jumbo path.
    fn jumbo_stats(&self) -> JumboStats;

    /// Frames and slabs the application holds or has queued for transmission (states `Rx`
    /// and `Tx`): at rest, after a drain, 0; anything else is a leak.
    fn frames_held(&self) -> u32;

    /// What the kernel counts for this socket: see [`KernelCounters`].
    fn kernel_counters(&self) -> Result<KernelCounters, PortError> {
        Ok(KernelCounters::default())
    }

    /// AoE requests for another host (destination neither the interface's MAC nor broadcast)
    /// that this port did not serve.
    fn foreign_dst(&self) -> std::io::Result<u64> {
        Ok(0)
    }

    /// Every arena whose chunks [`NetPort::lend`] may return: the frames, then the slabs if
    /// any. Register all of them with the io_uring that performs this port's disk I/O.
    fn io_arenas(&self) -> impl Iterator<Item = &Arc<Arena>> {
        std::iter::once(self.io_arena()).chain(self.slab_arena())
    }

    /// Makes `frame` (a received request whose reply needs `room` bytes, see
    /// [`crate::aoe::Request::reply_room`]) big enough for its reply: [`NetPort::upgrade`]
    /// when that is more than the frame holds and no more than the port carries (a longer
    /// request is left alone: the target refuses its sector count). `Err` gives the frame back
    /// when no slab is free: keep it and retry later.
    fn fit_reply(&mut self, frame: Frame, room: usize) -> Result<Frame, Frame> {
        if room <= self.frame_capacity(&frame) || room > self.max_frame_len() {
            return Ok(frame);
        }
        self.upgrade(frame, room)
    }

    /// The MTU to put in this port's `PortInfo`: the interface MTU, capped by what a frame of
    /// this port can hold, so `PortInfo::max_sectors` never advertises more than the port
    /// carries (17 sectors at MTU 9000 with slabs, 7 without).
    fn advertised_mtu(&self, interface_mtu: u32) -> u16 {
        let cap = u32::try_from(self.max_frame_len()).unwrap_or(u32::MAX);
        u16::try_from(interface_mtu.min(cap)).unwrap_or(u16::MAX)
    }
}

//! A network port a worker serves: an AF_XDP socket on one (interface, RX queue), or the
//! AF_PACKET fallback. Both hand out the same move-only [`Frame`] handles over a UMEM-like
//! arena laid out identically (packet at chunk + 476, ATA data at chunk + 512), and both can
//! lend a frame's chunk to the storage engine, so the worker code is the same for either.
//!
//! Jumbo frames (AF_XDP only; the AF_PACKET fallback carries one chunk, 7 sectors): a frame of
//! up to [`Port::max_frame_len`] bytes may be a slab frame (three chunks, one contiguous
//! buffer). The worker drives them like this:
//!
//! ```text
//! // RX: a jumbo request (e.g. a 17-sector write) arrives as ONE frame; data()/data_mut() see
//! // the whole packet (the kernel's fragments were bounce-copied once into a slab).
//! for frame in port.rx_burst(n) {
//!     // A read whose reply does not fit the request's frame: move the request into a slab.
//!     let need = reply_room(port.data(&frame));          // 36 + sectors * 512 (+4 if tagged)
//!     let frame = match port.upgrade(frame, need) {
//!         Ok(frame) => frame,                             // fits (unchanged) or now a slab
//!         Err(frame) => { backlog.push(frame); continue } // no slab free: retry later
//!     };
//!     // ... target.handle(port.data_mut(&mut frame)) as before ...
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

use std::sync::Arc;
use std::time::Duration;

use crate::xdp::frame::{Frame, JumboStats, RxBurst};
use crate::xdp::mem::{Arena, Chunk};
use crate::xdp::packet::{PacketError, PacketPort};
use crate::xdp::socket::{XskError, XskPort};
use crate::xdp::umem::{FRAME_CAPACITY, FRAME_SIZE};

/// The transport of one port.
#[derive(Debug)]
pub enum Port {
    /// AF_XDP socket fed by the XDP program.
    Xsk(XskPort),
    /// AF_PACKET socket with mmap rings (the fallback; one copy each way).
    Packet(PacketPort),
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
}

macro_rules! delegate {
    ($self:ident, $port:ident => $call:expr) => {
        match $self {
            Port::Xsk($port) => $call,
            Port::Packet($port) => $call,
        }
    };
}

impl Port {
    /// Human-readable transport name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Port::Xsk(_) => "af_xdp",
            Port::Packet(_) => "af_packet",
        }
    }

    /// Receives up to `max` frames.
    pub fn rx_burst(&mut self, max: usize) -> RxBurst {
        delegate!(self, p => p.rx_burst(max))
    }

    /// The received packet.
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        delegate!(self, p => p.data(frame))
    }

    /// The frame buffer up to the end of its chunk.
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        delegate!(self, p => p.data_mut(frame))
    }

    /// Offset of the packet start inside the chunk [`Port::lend`] returns for `frame` (a slab
    /// frame's chunk is the whole slab).
    pub fn offset_in_chunk(&self, frame: &Frame) -> usize {
        match self {
            Port::Xsk(p) => p.offset_in_chunk(frame),
            Port::Packet(p) => p.umem_offset(frame) - frame.index() as usize * FRAME_SIZE,
        }
    }

    /// Longest frame (Ethernet header to end of payload, no FCS) this port receives and sends:
    /// the dataplane advertises `min(MTU, max_frame_len)` as the port's MTU, so sectors per
    /// request are `(that - 36) / 512` (17 at MTU 9000 on AF_XDP with multi-buffer).
    pub fn max_frame_len(&self) -> usize {
        match self {
            Port::Xsk(p) => p.max_frame_len(),
            Port::Packet(_) => FRAME_CAPACITY,
        }
    }

    /// Bytes `frame` can hold from its packet start (what `data_mut` returns).
    pub fn frame_capacity(&self, frame: &Frame) -> usize {
        delegate!(self, p => p.frame_capacity(frame))
    }

    /// Makes `frame` able to hold `needed` bytes: `Ok` with the frame unchanged if it already
    /// can, or with a slab frame holding a copy of its received bytes; `Err` gives the frame
    /// back when no slab is free (keep the request and retry later; never drop it). Panics if
    /// `needed > max_frame_len()`.
    pub fn upgrade(&mut self, frame: Frame, needed: usize) -> Result<Frame, Frame> {
        match self {
            Port::Xsk(p) => p.upgrade(frame, needed),
            Port::Packet(p) => {
                let capacity = p.frame_capacity(&frame);
                assert!(
                    needed <= capacity,
                    "upgrade to {needed} bytes: this port carries at most {capacity}"
                );
                Ok(frame)
            }
        }
    }

    /// Counters of the jumbo path (all zero on AF_PACKET).
    pub fn jumbo_stats(&self) -> JumboStats {
        match self {
            Port::Xsk(p) => p.jumbo_stats(),
            Port::Packet(_) => JumboStats::default(),
        }
    }

    /// A free frame for a reply that is not built in a request's frame.
    pub fn alloc(&mut self) -> Option<Frame> {
        delegate!(self, p => p.alloc())
    }

    /// Gives a frame back without sending it.
    pub fn release(&mut self, frame: Frame) {
        delegate!(self, p => p.release(frame))
    }

    /// Queues `frame[..len]` for transmission (padded to 60 bytes).
    pub fn transmit(&mut self, frame: Frame, len: usize) {
        delegate!(self, p => p.transmit(frame, len))
    }

    /// Hands queued frames to the kernel.
    pub fn flush_tx(&mut self) -> Result<usize, PortError> {
        delegate!(self, p => Ok(p.flush_tx()?))
    }

    /// Takes back frames the kernel has sent.
    pub fn reap_completions(&mut self) -> usize {
        delegate!(self, p => p.reap_completions())
    }

    /// Gives the kernel free frames to receive into.
    pub fn refill(&mut self) -> Result<usize, PortError> {
        delegate!(self, p => Ok(p.refill()?))
    }

    /// Sleeps until a frame arrives or `timeout` passes.
    pub fn wait_rx(&mut self, timeout: Duration) -> Result<bool, PortError> {
        delegate!(self, p => Ok(p.wait_rx(timeout)?))
    }

    /// The frame memory, for io_uring registration.
    pub fn io_arena(&self) -> &Arc<Arena> {
        delegate!(self, p => p.io_arena())
    }

    /// The jumbo slabs, a second arena to register, if this port has them.
    pub fn slab_arena(&self) -> Option<&Arc<Arena>> {
        match self {
            Port::Xsk(p) => p.slab_arena(),
            Port::Packet(_) => None,
        }
    }

    /// Every arena whose chunks [`Port::lend`] may return: the frames, then the slabs if any.
    /// Register all of them with the io_uring that performs this port's disk I/O.
    pub fn io_arenas(&self) -> impl Iterator<Item = &Arc<Arena>> {
        std::iter::once(self.io_arena()).chain(self.slab_arena())
    }

    /// Lends a frame's chunk to a storage I/O.
    pub fn lend(&mut self, frame: Frame) -> Chunk {
        delegate!(self, p => p.lend(frame))
    }

    /// Takes a lent chunk back as its frame.
    pub fn reclaim(&mut self, chunk: Chunk) -> Frame {
        delegate!(self, p => p.reclaim(chunk))
    }
}

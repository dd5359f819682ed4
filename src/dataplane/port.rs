//! A network port a worker serves: an AF_XDP socket on one (interface, RX queue), or the
//! AF_PACKET fallback. Both hand out the same move-only [`Frame`] handles over a UMEM-like
//! arena laid out identically (packet at chunk + 476, ATA data at chunk + 512), and both can
//! lend a frame's chunk to the storage engine, so the worker code is the same for either.

use std::sync::Arc;
use std::time::Duration;

use crate::xdp::frame::{Frame, RxBurst};
use crate::xdp::mem::{Arena, Chunk};
use crate::xdp::packet::{PacketError, PacketPort};
use crate::xdp::socket::{XskError, XskPort};
use crate::xdp::umem::FRAME_SIZE;

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

    /// Offset of the packet start inside its chunk.
    pub fn offset_in_chunk(&self, frame: &Frame) -> usize {
        let absolute = delegate!(self, p => p.umem_offset(frame));
        absolute - frame.index() as usize * FRAME_SIZE
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

    /// Lends a frame's chunk to a storage I/O.
    pub fn lend(&mut self, frame: Frame) -> Chunk {
        delegate!(self, p => p.lend(frame))
    }

    /// Takes a lent chunk back as its frame.
    pub fn reclaim(&mut self, chunk: Chunk) -> Frame {
        delegate!(self, p => p.reclaim(chunk))
    }
}

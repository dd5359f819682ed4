//! A network port a worker serves: an AF_XDP socket on one (interface, RX queue), or the
//! AF_PACKET fallback. Both hand out the same move-only [`Frame`] handles over a UMEM-like
//! arena laid out identically (packet at chunk + 476, ATA data at chunk + 512), and both can
//! lend a frame's chunk to the storage engine, so the worker code is the same for either.
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
//!     // (fit_reply = upgrade(frame, reply_room(data))).
//!     let frame = match port.fit_reply(frame) {
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

pub use crate::aoe::reply_room;
use crate::sys::frame::{Frame, JumboStats, RxBurst};
use crate::sys::mem::{Arena, Chunk};
use crate::sys::packet::{PacketError, PacketPort};
use crate::sys::xdp::xsk::{XskError, XskPort};

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
}

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

    /// An empty burst for [`Port::rx_burst_into`], made once and reused.
    pub fn new_burst(&self) -> RxBurst {
        delegate!(self, p => p.new_burst())
    }

    /// As [`Port::rx_burst`], into a reused `burst` whose frames were all taken.
    pub fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize) {
        delegate!(self, p => p.rx_burst_into(burst, max))
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
            Port::Packet(p) => p.offset_in_chunk(frame),
        }
    }

    /// Longest frame (Ethernet header to end of payload, no FCS) this port receives and sends:
    /// the dataplane advertises `min(MTU, max_frame_len)` as the port's MTU, so sectors per
    /// request are `(that - 36) / 512` (17 at MTU 9000 on AF_XDP with multi-buffer).
    pub fn max_frame_len(&self) -> usize {
        delegate!(self, p => p.max_frame_len())
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
        delegate!(self, p => p.upgrade(frame, needed))
    }

    /// Makes `frame` (a received request) big enough for its reply: [`Port::upgrade`] to
    /// [`reply_room`] bytes when that is more than the frame holds and no more than the port
    /// carries (a longer request is left alone: the target refuses its sector count). `Err`
    /// gives the frame back when no slab is free: keep it and retry later.
    pub fn fit_reply(&mut self, frame: Frame) -> Result<Frame, Frame> {
        let needed = reply_room(self.data(&frame));
        if needed <= self.frame_capacity(&frame) || needed > self.max_frame_len() {
            return Ok(frame);
        }
        self.upgrade(frame, needed)
    }

    /// The MTU to put in this port's `PortInfo`: the interface MTU, capped by what a frame of
    /// this port can hold, so `PortInfo::max_sectors` never advertises more than the port
    /// carries (17 sectors at MTU 9000 with slabs, 7 without).
    pub fn advertised_mtu(&self, interface_mtu: u32) -> u16 {
        let cap = u32::try_from(self.max_frame_len()).unwrap_or(u32::MAX);
        u16::try_from(interface_mtu.min(cap)).unwrap_or(u16::MAX)
    }

    /// Counters of the jumbo path.
    pub fn jumbo_stats(&self) -> JumboStats {
        delegate!(self, p => p.jumbo_stats())
    }

    /// What the kernel counts for this socket (one `getsockopt`): see [`KernelCounters`].
    pub fn kernel_counters(&self) -> Result<KernelCounters, PortError> {
        Ok(match self {
            Port::Xsk(p) => {
                let stats = p.stats()?;
                KernelCounters {
                    rx_dropped: stats.rx_dropped + stats.rx_ring_full,
                    fill_empty: stats.rx_fill_ring_empty_descs,
                    fill_depth: p.fill_target(),
                }
            }
            Port::Packet(p) => KernelCounters {
                rx_dropped: p.stats()?.rx_kernel_drops,
                ..KernelCounters::default()
            },
        })
    }

    /// AoE requests for another host (destination neither the interface's MAC nor broadcast)
    /// that this port did not serve: counted by the XDP program for its queue (one `bpf`
    /// system call), or by the AF_PACKET port itself. An AF_XDP port that was never given
    /// its program's counters reports 0.
    pub fn foreign_dst(&self) -> std::io::Result<u64> {
        match self {
            Port::Xsk(p) => p
                .program_counters()
                .map_or(Ok(0), |counters| counters.map(|c| c.passed_foreign_dst)),
            Port::Packet(p) => Ok(p.foreign_dst()),
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

    /// Before the worker stops polling for a while without waiting on this port (a nap):
    /// gives the kernel room for a burst, as [`Port::wait_rx`] does. A packet socket's ring
    /// needs nothing.
    pub fn prepare_nap(&mut self) -> Result<(), PortError> {
        match self {
            Port::Xsk(p) => Ok(p.fill_all()?),
            Port::Packet(_) => Ok(()),
        }
    }

    /// The frame memory, for io_uring registration.
    pub fn io_arena(&self) -> &Arc<Arena> {
        delegate!(self, p => p.io_arena())
    }

    /// The jumbo slabs, a second arena to register, if this port has them.
    pub fn slab_arena(&self) -> Option<&Arc<Arena>> {
        delegate!(self, p => p.slab_arena())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(vlan: bool, command: u8, aflags: u8, sectors: u8, data: usize) -> Vec<u8> {
        let mut frame = vec![0xAA; 12];
        if vlan {
            frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x2A]);
        }
        frame.extend_from_slice(&[0x88, 0xA2, 0x10, 0, 0, 1, 2, command, 0, 0, 0, 9]);
        frame.extend_from_slice(&[aflags, 0, sectors, 0x24, 0, 0, 0, 0, 0, 0, 0, 0]);
        frame.resize(frame.len() + data, 0x55);
        frame
    }

    #[test]
    fn test_reply_room_of_a_read_counts_its_sectors() {
        assert_eq!(reply_room(&request(false, 0, 0x40, 17, 0)), 36 + 17 * 512);
        assert_eq!(reply_room(&request(true, 0, 0x40, 17, 0)), 40 + 17 * 512);
        assert_eq!(reply_room(&request(false, 0, 0x40, 1, 0)), 36 + 512);
        // A padded runt read of 0 sectors needs no more than it has.
        assert_eq!(reply_room(&request(false, 0, 0x40, 0, 24)), 60);
    }

    #[test]
    fn test_reply_room_of_writes_and_others_is_their_length() {
        let write = request(false, 0, 0x41, 17, 17 * 512);
        assert_eq!(reply_room(&write), write.len());
        let query = request(false, 1, 0x40, 17, 0);
        assert_eq!(reply_room(&query), query.len());
        let mut not_aoe = request(false, 0, 0x40, 17, 0);
        not_aoe[12] = 0x08;
        assert_eq!(reply_room(&not_aoe), not_aoe.len());
        assert_eq!(reply_room(&[0u8; 20]), 20, "truncated");
    }
}

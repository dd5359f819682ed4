//! The ports the target serves: [`XskPort`] (AF_XDP) and [`PacketPort`] (AF_PACKET), each a
//! [`NetPort`], and [`Port`], the one of the two a unit was given.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use super::{KernelCounters, NetPort, PortError};
use crate::sys::frame::{Frame, JumboStats, RxBurst, RX_BURST_MAX};
use crate::sys::mem::{Arena, Chunk};
use crate::sys::packet::PacketPort;
use crate::sys::xdp::xsk::{XskPort, COPY_MODE_TX_BATCH};

/// The transport of one port the target serves.
#[derive(Debug)]
pub enum Port {
    /// AF_XDP socket fed by the XDP program.
    Xsk(XskPort),
    /// AF_PACKET sockets: an mmap RX ring, `sendmmsg` to send (the fallback; one copy each
    /// way).
    Packet(PacketPort),
}

/// The [`NetPort`] methods a kernel socket port answers itself, for `$port` (`XskPort` or
/// `PacketPort`): receive, send, wait, and the frames and slabs it holds.
macro_rules! forward_socket_methods {
    ($port:ident) => {
        fn new_burst(&self) -> RxBurst {
            $port::new_burst(self)
        }
        fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize) {
            $port::rx_burst_into(self, burst, max);
        }
        fn flush_tx(&mut self) -> Result<usize, PortError> {
            Ok($port::flush_tx(self)?)
        }
        fn reap_completions(&mut self) -> usize {
            $port::reap_completions(self)
        }
        fn wait_rx(&mut self, timeout: Duration) -> Result<bool, PortError> {
            Ok($port::wait_rx(self, timeout)?)
        }
        fn frames_held(&self) -> u32 {
            self.frame_counts().held() + self.slab_counts().held()
        }
        fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
            Some($port::fd(self))
        }
    };
}

impl NetPort for XskPort {
    // XskPort's own methods of these names: inherent methods come before the trait's in
    // method resolution (and a missing one would be an unconditional recursion, which rustc
    // reports).
    forward_frame_methods!(self => self, self);
    forward_socket_methods!(XskPort);
    fn kind(&self) -> &'static str {
        "af_xdp"
    }
    /// What one TX kick sends in copy mode ([`COPY_MODE_TX_BATCH`]): taking a whole window
    /// of 64 only delayed its first half (two kicks either way). On the two-machine veth rig
    /// at queue depth 64, 64 against 32 left the rates level within the noise and raised the
    /// p50 latency by 10-15 µs (random reads 140-143 against 153-158 µs).
    fn rx_batch_max(&self) -> usize {
        COPY_MODE_TX_BATCH
    }
    fn refill(&mut self) -> Result<usize, PortError> {
        Ok(XskPort::refill(self)?)
    }
    fn prepare_nap(&mut self) -> Result<(), PortError> {
        Ok(self.fill_all()?)
    }
    fn wait_napi(&self) -> Option<u32> {
        XskPort::wait_napi(self)
    }
    fn kernel_counters(&self) -> Result<KernelCounters, PortError> {
        let stats = self.stats()?;
        Ok(KernelCounters {
            rx_dropped: stats.rx_dropped + stats.rx_ring_full,
            fill_empty: stats.rx_fill_ring_empty_descs,
            fill_depth: self.fill_target(),
            tx_dropped: stats.tx_invalid_descs,
        })
    }
    /// Counted by the XDP program for this queue (one `bpf` system call); 0 for a socket that
    /// was never given its program's counters.
    fn foreign_dst(&self) -> std::io::Result<u64> {
        self.program_counters()
            .map_or(Ok(0), |counters| counters.map(|c| c.passed_foreign_dst))
    }
}

impl NetPort for PacketPort {
    forward_frame_methods!(self => self.frames(), self.frames_mut());
    forward_socket_methods!(PacketPort);
    fn kind(&self) -> &'static str {
        "af_packet"
    }
    /// A whole burst: one `sendmmsg` answers it, and the Linux initiator's window (at most
    /// 64 frames per target MAC) arrives together, so a window leaves in one call, waking the
    /// initiator's receive path once. On the two-machine veth rig at queue depth 64, 64
    /// against 32 raised this port's rates by 25-60 % (random reads 225-240k to 363-386k
    /// requests/s) and left those at depth 16 level.
    fn rx_batch_max(&self) -> usize {
        RX_BURST_MAX
    }
    fn refill(&mut self) -> Result<usize, PortError> {
        Ok(0)
    }
    fn wait_napi(&self) -> Option<u32> {
        PacketPort::wait_napi(self)
    }
    fn kernel_counters(&self) -> Result<KernelCounters, PortError> {
        let stats = self.stats()?;
        Ok(KernelCounters {
            rx_dropped: stats.rx_kernel_drops,
            tx_dropped: stats.tx_rejected + stats.tx_dropped,
            ..KernelCounters::default()
        })
    }
    /// Counted by the port itself (no system call).
    fn foreign_dst(&self) -> std::io::Result<u64> {
        Ok(PacketPort::foreign_dst(self))
    }
}

macro_rules! delegate {
    ($self:ident, $port:ident => $call:expr) => {
        match $self {
            Port::Xsk($port) => $call,
            Port::Packet($port) => $call,
        }
    };
}

impl NetPort for Port {
    fn kind(&self) -> &'static str {
        delegate!(self, p => p.kind())
    }
    fn new_burst(&self) -> RxBurst {
        delegate!(self, p => NetPort::new_burst(p))
    }
    fn rx_batch_max(&self) -> usize {
        delegate!(self, p => NetPort::rx_batch_max(p))
    }
    fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize) {
        delegate!(self, p => NetPort::rx_burst_into(p, burst, max));
    }
    fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        delegate!(self, p => NetPort::data(p, frame))
    }
    fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        delegate!(self, p => NetPort::data_mut(p, frame))
    }
    fn offset_in_chunk(&self, frame: &Frame) -> usize {
        delegate!(self, p => NetPort::offset_in_chunk(p, frame))
    }
    fn max_frame_len(&self) -> usize {
        delegate!(self, p => NetPort::max_frame_len(p))
    }
    fn frame_capacity(&self, frame: &Frame) -> usize {
        delegate!(self, p => NetPort::frame_capacity(p, frame))
    }
    fn upgrade(&mut self, frame: Frame, needed: usize) -> Result<Frame, Frame> {
        delegate!(self, p => NetPort::upgrade(p, frame, needed))
    }
    fn alloc(&mut self) -> Option<Frame> {
        delegate!(self, p => NetPort::alloc(p))
    }
    fn release(&mut self, frame: Frame) {
        delegate!(self, p => NetPort::release(p, frame));
    }
    fn transmit(&mut self, frame: Frame, len: usize) {
        delegate!(self, p => NetPort::transmit(p, frame, len));
    }
    fn flush_tx(&mut self) -> Result<usize, PortError> {
        delegate!(self, p => NetPort::flush_tx(p))
    }
    fn reap_completions(&mut self) -> usize {
        delegate!(self, p => NetPort::reap_completions(p))
    }
    fn refill(&mut self) -> Result<usize, PortError> {
        delegate!(self, p => NetPort::refill(p))
    }
    fn wait_rx(&mut self, timeout: Duration) -> Result<bool, PortError> {
        delegate!(self, p => NetPort::wait_rx(p, timeout))
    }
    fn prepare_nap(&mut self) -> Result<(), PortError> {
        delegate!(self, p => NetPort::prepare_nap(p))
    }
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        delegate!(self, p => NetPort::poll_fd(p))
    }
    fn wait_napi(&self) -> Option<u32> {
        delegate!(self, p => NetPort::wait_napi(p))
    }
    fn io_arena(&self) -> &Arc<Arena> {
        delegate!(self, p => NetPort::io_arena(p))
    }
    fn slab_arena(&self) -> Option<&Arc<Arena>> {
        delegate!(self, p => NetPort::slab_arena(p))
    }
    fn lend(&mut self, frame: Frame) -> Chunk {
        delegate!(self, p => NetPort::lend(p, frame))
    }
    fn reclaim(&mut self, chunk: Chunk) -> Frame {
        delegate!(self, p => NetPort::reclaim(p, chunk))
    }
    fn jumbo_stats(&self) -> JumboStats {
        delegate!(self, p => NetPort::jumbo_stats(p))
    }
    fn frames_held(&self) -> u32 {
        delegate!(self, p => NetPort::frames_held(p))
    }
    fn kernel_counters(&self) -> Result<KernelCounters, PortError> {
        delegate!(self, p => NetPort::kernel_counters(p))
    }
    fn foreign_dst(&self) -> std::io::Result<u64> {
        delegate!(self, p => NetPort::foreign_dst(p))
    }
}

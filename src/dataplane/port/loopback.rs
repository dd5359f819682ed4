//! [`LoopbackPort`]: a port whose wire is two queues of byte buffers. A test (or the fuzzer,
//! or the conformance harness) puts request frames in with [`LoopbackPort::push_rx`] and takes
//! the worker's replies out with [`LoopbackPort::pop_sent`]; in between the frames live in a
//! [`FrameArea`] laid out like the UMEM, so the worker, its io_uring engine (registered buffers
//! included) and the target run exactly as on a socket. No system call but the one `mmap`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{NetPort, PortError};
use crate::sys::frame::{Frame, FrameCounts, JumboStats, RxBurst, RX_BURST_MAX};
use crate::sys::frame_area::{FrameArea, NoRoom};
use crate::sys::layout::{FRAME_CAPACITY, SLAB_CAPACITY};
use crate::sys::mem::{Arena, Chunk};

/// Counters of a loopback port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopbackStats {
    /// Frames the worker received.
    pub rx_frames: u64,
    /// Receives that stopped because no frame (or slab) was free; the packet waits.
    pub rx_no_frame: u64,
    /// Packets dropped because they are longer than the port carries.
    pub rx_too_long: u64,
    /// Frames handed to the wire by `flush_tx`.
    pub tx_frames: u64,
    /// `flush_tx` calls that left frames queued because the TX room was used up.
    pub tx_full: u64,
}

/// What loopback ports did, in the order they did it, shared by the ports that record into it
/// ([`LoopbackPort::record_into`]): how a test sees the order of a worker's work across ports.
pub type WireLog = Arc<Mutex<Vec<WireEvent>>>;

/// One entry of a [`WireLog`] (only calls that moved frames are recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireEvent {
    /// Port `port` took `frames` packets off its wire (`rx_burst_into`).
    Received { port: u16, frames: usize },
    /// Port `port` put `frames` packets on its wire (`flush_tx`).
    Sent { port: u16, frames: usize },
}

/// An in-memory port: see the module docs.
pub struct LoopbackPort {
    frames: FrameArea,
    /// Packets on the wire towards the worker, oldest first.
    rx: VecDeque<Vec<u8>>,
    /// Packets the worker sent, oldest first.
    sent: VecDeque<Vec<u8>>,
    /// Most frames one `flush_tx` moves (a TX ring's free slots); `usize::MAX` for no limit.
    tx_room: usize,
    /// What [`NetPort::rx_batch_max`] answers.
    rx_batch: usize,
    stats: LoopbackStats,
    /// Where this port records what it does, and under which number.
    log: Option<(u16, WireLog)>,
}

impl std::fmt::Debug for LoopbackPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackPort")
            .field("frames", &self.frames)
            .field("rx", &self.rx.len())
            .field("sent", &self.sent.len())
            .finish_non_exhaustive()
    }
}

impl LoopbackPort {
    /// A port of `frame_count` frames carrying standard frames (up to a chunk: 7 sectors).
    pub fn new(frame_count: u32) -> std::io::Result<LoopbackPort> {
        Self::with_slabs(frame_count, 0)
    }

    /// A port of `frame_count` frames and `slab_count` jumbo slabs (with slabs it carries
    /// frames up to a slab's capacity: an MTU of 9000 behind a VLAN tag).
    pub fn with_slabs(frame_count: u32, slab_count: u32) -> std::io::Result<LoopbackPort> {
        let max_frame_len = if slab_count > 0 {
            SLAB_CAPACITY
        } else {
            FRAME_CAPACITY
        };
        Ok(LoopbackPort {
            frames: FrameArea::new(frame_count, slab_count, max_frame_len)?,
            rx: VecDeque::new(),
            sent: VecDeque::new(),
            tx_room: usize::MAX,
            rx_batch: RX_BURST_MAX,
            stats: LoopbackStats::default(),
            log: None,
        })
    }

    /// Puts `packet` on the wire towards the worker.
    pub fn push_rx(&mut self, packet: &[u8]) {
        self.rx.push_back(packet.to_vec());
    }

    /// Packets on the wire not yet received.
    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }

    /// The oldest packet the worker sent, if any.
    pub fn pop_sent(&mut self) -> Option<Vec<u8>> {
        self.sent.pop_front()
    }

    /// Frames queued by the worker and not yet on the wire (held back by the TX room).
    pub fn tx_queued(&self) -> usize {
        self.frames.tx_queued().len()
    }

    /// Limits how many frames one `flush_tx` moves (`usize::MAX`: no limit; 0: a TX ring
    /// that stays full).
    pub fn set_tx_room(&mut self, room: usize) {
        self.tx_room = room;
    }

    /// Sets how many frames the worker takes from this port per iteration
    /// ([`NetPort::rx_batch_max`]; a whole burst by default, as an AF_PACKET port).
    pub fn set_rx_batch(&mut self, batch: usize) {
        self.rx_batch = batch;
    }

    /// Frames per ownership state: with nothing in flight every frame is free.
    pub fn frame_counts(&self) -> FrameCounts {
        self.frames.counts()
    }

    /// Slabs per ownership state.
    pub fn slab_counts(&self) -> FrameCounts {
        self.frames.slab_counts()
    }

    /// The counters.
    pub fn stats(&self) -> LoopbackStats {
        self.stats
    }

    /// From now on records every receive and send that moves frames into `log`, as port `port`.
    pub fn record_into(&mut self, port: u16, log: WireLog) {
        self.log = Some((port, log));
    }

    fn record(&self, event: impl FnOnce(u16) -> WireEvent) {
        if let Some((port, log)) = &self.log {
            log.lock().expect("wire log").push(event(*port));
        }
    }
}

impl NetPort for LoopbackPort {
    forward_frame_methods!(self => self.frames, self.frames);
    fn kind(&self) -> &'static str {
        "loopback"
    }
    fn new_burst(&self) -> RxBurst {
        self.frames.new_burst()
    }
    fn rx_batch_max(&self) -> usize {
        self.rx_batch
    }
    fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize) {
        self.frames.reset_burst(burst);
        let mut taken = 0;
        while taken < max.min(RX_BURST_MAX) {
            let Some(packet) = self.rx.front() else {
                break;
            };
            match self.frames.receive(packet) {
                Ok(frame) => {
                    burst.push(frame);
                    self.stats.rx_frames += 1;
                    taken += 1;
                }
                Err(NoRoom::TooLong) => self.stats.rx_too_long += 1,
                Err(NoRoom::NoFrame | NoRoom::NoSlab) => {
                    self.stats.rx_no_frame += 1;
                    break;
                }
            }
            self.rx.pop_front();
        }
        if taken > 0 {
            self.record(|port| WireEvent::Received {
                port,
                frames: taken,
            });
        }
    }
    fn flush_tx(&mut self) -> Result<usize, PortError> {
        let queued = self.frames.tx_queued().len();
        let moved = queued.min(self.tx_room);
        for n in 0..moved {
            self.sent.push_back(self.frames.queued_bytes(n).to_vec());
        }
        self.frames.sent(moved);
        self.stats.tx_frames += moved as u64;
        self.stats.tx_full += u64::from(moved < queued);
        if moved > 0 {
            self.record(|port| WireEvent::Sent {
                port,
                frames: moved,
            });
        }
        Ok(moved)
    }
    fn reap_completions(&mut self) -> usize {
        0
    }
    fn refill(&mut self) -> Result<usize, PortError> {
        Ok(0)
    }
    fn wait_rx(&mut self, _timeout: Duration) -> Result<bool, PortError> {
        Ok(!self.rx.is_empty())
    }
    fn frames_held(&self) -> u32 {
        self.frames.counts().held() + self.frames.slab_counts().held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_packets_cross_in_order_and_frames_come_back() {
        let mut port = LoopbackPort::new(2).unwrap();
        for byte in 1..=3u8 {
            port.push_rx(&[byte; 64]);
        }
        let mut burst = port.new_burst();
        port.rx_burst_into(&mut burst, 8);
        assert_eq!(burst.len(), 2, "two frames: the third packet waits");
        assert_eq!(port.rx_pending(), 1);
        for frame in burst {
            let len = frame.len();
            port.transmit(frame, len);
        }
        port.set_tx_room(1);
        assert_eq!(port.flush_tx().unwrap(), 1);
        assert_eq!(port.tx_queued(), 1);
        port.set_tx_room(usize::MAX);
        assert_eq!(port.flush_tx().unwrap(), 1);
        assert_eq!(port.pop_sent().unwrap(), vec![1; 64]);
        assert_eq!(port.pop_sent().unwrap(), vec![2; 64]);
        assert_eq!(port.frame_counts().free, 2);
        assert_eq!(port.stats().tx_full, 1);
    }
}

//! What a port counts: the kernel's socket statistics ([`XskStats`], one `getsockopt`), the
//! jumbo path's counters, and the XDP program's counters of the port's queue.

use std::io;

use super::{XskError, XskPort};
use crate::sys::frame::JumboStats;
use crate::sys::xdp::abi::XdpCounters;
use crate::sys::xdp::loader::XdpQueueCounters;

/// Socket statistics from `getsockopt(XDP_STATISTICS)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Received frames dropped for reasons other than those below.
    pub rx_dropped: u64,
    /// Received frames dropped because of an invalid descriptor.
    pub rx_invalid_descs: u64,
    /// TX descriptors rejected as invalid.
    pub tx_invalid_descs: u64,
    /// Received frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty.
    pub tx_ring_empty_descs: u64,
}

impl XskPort {
    /// Kernel statistics for this socket.
    pub fn stats(&self) -> Result<XskStats, XskError> {
        let stats = self
            .rx
            .fd()
            .xdp_statistics()
            .map_err(|source| XskError::Syscall {
                call: "getsockopt(XDP_STATISTICS)",
                source,
            })?;
        Ok(XskStats {
            rx_dropped: stats.rx_dropped(),
            rx_invalid_descs: stats.rx_invalid_descs(),
            tx_invalid_descs: stats.tx_invalid_descs(),
            rx_ring_full: stats.rx_ring_full(),
            rx_fill_ring_empty_descs: stats.rx_fill_ring_empty_descs(),
            tx_ring_empty_descs: stats.tx_ring_empty_descs(),
        })
    }

    /// Counters of the jumbo path (bounce copies, drops, upgrades).
    pub fn jumbo_stats(&self) -> JumboStats {
        self.jumbo
    }

    /// Keeps the counters of this socket's RX queue in the XDP program that feeds it (from
    /// `XdpProgram::queue_counters`), so that the port's statistics can show what the program
    /// kept from it (requests for other hosts).
    pub fn set_program_counters(&mut self, counters: XdpQueueCounters) {
        self.program_counters = Some(counters);
    }

    /// The XDP program's counters of this queue (one `bpf` system call), if it has them.
    pub fn program_counters(&self) -> Option<io::Result<XdpCounters>> {
        self.program_counters.as_ref().map(XdpQueueCounters::read)
    }
}

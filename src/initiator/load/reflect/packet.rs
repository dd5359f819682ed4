//! [`PacketReflector`]: the bare reflector on AF_PACKET, the AF_XDP [`Reflector`]'s twin for
//! what the kernel's ordinary receive and transmit paths can do with no storage behind them.
//!
//! One [`BurstSocket`] on the interface (bound to the AoE ethertype, `PACKET_QDISC_BYPASS`):
//! requests are read from its `TPACKET_V2` receive ring with no syscall, each one is copied
//! into a transmit staging buffer and answered there in place by [`Reflection::reflect`], and
//! the batch's replies leave in one `sendmmsg`. When the ring is empty the reflector sleeps in
//! `poll(2)` ([`BurstSocket::wait_rx`]) instead of spinning, as a target that shares its core
//! with the kernel's receive path must; a signal or [`IDLE_WAIT`] ends the sleep, so the stop
//! flag and the duration are looked at. Where the interface has one queue and one NAPI (veth
//! with GRO on, as on the bench's rig) and a NAPI spin is given, it waits as aoe-xdp's idle
//! worker does in AF_PACKET mode: it polls its ring for [`POLL_RINGS_FIRST`], then waits in a
//! [`NapiWait`] that busy-polls that NAPI for the rest of the spin before it sleeps, so that
//! it stays the ceiling of that mode's path.
//!
//! Buffers are sized from the MTU, and the reflector answers as many sectors per request as
//! the MTU carries ([`sectors_for_mtu`] without the UMEM's limit): 2 at 1500, 17 at 9000.
//! Requests addressed to another host's MAC are not answered (the AF_XDP reflector's XDP
//! program does not redirect them either).
//!
//! Bounds: one iteration handles at most [`PACKET_REFLECT_BATCH`] frames. A reply that finds
//! every staging buffer still staged (the kernel's send buffer or the device queue full) is
//! lost, as a NIC would drop it, and counted: the initiator retransmits.
//!
//! [`Reflector`]: super::Reflector

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{
    mac_and_mtu, rx_queue_count, sectors_for_mtu, ReflectError, Reflection, REFLECT_BUFFER_COUNT,
    REFLECT_CAPACITY_SECTORS,
};
use crate::sys::napi::{self, NapiWait, POLL_RINGS_FIRST};
use crate::sys::packet::burst::{BurstConfig, BurstSocket};
use crate::sys::xdp::DstFilter;
use crate::wire::{pad_to_min, VLAN_HEADER_LEN};

/// Frames per receive batch, and staging buffers for one `sendmmsg` (the load generator's
/// batch).
pub const PACKET_REFLECT_BATCH: usize = 64;

/// The longest an idle reflector sleeps in `poll(2)` before it looks at its stop flag and
/// duration again (SIGINT and SIGTERM end the sleep at once).
const IDLE_WAIT: Duration = Duration::from_millis(10);

/// Bytes per ring slot and staging buffer on an interface of `mtu`: the frame with its
/// Ethernet header and room for one VLAN tag, rounded up to 64 (as the load generator does).
fn frame_size_for_mtu(mtu: usize) -> usize {
    (mtu + VLAN_HEADER_LEN).next_multiple_of(64)
}

/// Counters of a [`PacketReflector`] run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketReflectStats {
    /// Requests answered.
    pub replied: u64,
    /// Frames not answered: not AoE requests, addressed to another host, a failed config test.
    pub dropped: u64,
    /// Replies lost because every staging buffer was still staged.
    pub unsent: u64,
    /// Times the reflector found the ring empty and slept in `poll(2)` (or in its NAPI wait).
    pub waits: u64,
}

/// A [`BurstSocket`] on one interface and what it answers with.
#[derive(Debug)]
pub struct PacketReflector {
    socket: BurstSocket,
    reflection: Reflection,
    /// Requests to the interface's MAC or to broadcast are answered.
    dst_filter: DstFilter,
    interface: String,
    mtu: usize,
    /// The wait that busy-polls the interface's NAPI, where there is one.
    napi: Option<NapiWait>,
}

impl PacketReflector {
    /// Opens the socket on `interface` (needs CAP_NET_RAW) with buffers for its MTU. The
    /// reflector advertises [`REFLECT_BUFFER_COUNT`] buffers and `sectors_for_mtu(MTU)`
    /// sectors per request, and answers discovery broadcasts as `address` (shelf, slot).
    ///
    /// With `napi_spin` above [`POLL_RINGS_FIRST`], on an interface with one queue and one
    /// NAPI, an idle reflector busy-polls that NAPI before it sleeps (see the module);
    /// otherwise, and where io_uring's NAPI busy polling is missing, it sleeps at once.
    pub fn start(
        interface: &str,
        address: (u16, u8),
        napi_spin: Duration,
    ) -> Result<PacketReflector, ReflectError> {
        let (mac, mtu) = mac_and_mtu(interface)?;
        let config = BurstConfig {
            batch: PACKET_REFLECT_BATCH,
            frame_size: frame_size_for_mtu(mtu),
        };
        let socket =
            BurstSocket::open(interface, config).map_err(|source| ReflectError::Socket {
                interface: interface.to_owned(),
                source,
            })?;
        let napi = if napi_spin > POLL_RINGS_FIRST && rx_queue_count(interface)? == 1 {
            match napi::interface_napis(socket.ifindex()) {
                Ok(ids) if ids.len() == 1 => NapiWait::new(&ids, napi_spin - POLL_RINGS_FIRST).ok(),
                _ => None,
            }
        } else {
            None
        };
        Ok(PacketReflector {
            socket,
            reflection: Reflection::new(
                mac,
                address,
                REFLECT_BUFFER_COUNT,
                sectors_for_mtu(mtu, u8::MAX),
                REFLECT_CAPACITY_SECTORS,
            ),
            dst_filter: DstFilter::Own(mac.0),
            interface: interface.to_owned(),
            mtu,
            napi,
        })
    }

    /// One line saying what runs where.
    pub fn describe(&self) -> String {
        let idle = match &self.napi {
            Some(napi) => format!(
                "idle: polls its ring for {} us, then busy-polls NAPI {:?} for {} us, then \
                 sleeps in poll",
                POLL_RINGS_FIRST.as_micros(),
                napi.ids(),
                napi.busy().as_micros()
            ),
            None => "poll when idle".to_owned(),
        };
        format!(
            "reflecting on {}: AF_PACKET (TPACKET_V2 ring, sendmmsg batches of {}, {idle}), MTU \
             {}, {} sectors per request, buffer count {}",
            self.interface,
            self.socket.batch(),
            self.mtu,
            self.reflection.sectors_max,
            self.reflection.buffer_count,
        )
    }

    /// Reflects requests batch by batch, sleeping in `poll(2)` whenever the ring is empty,
    /// until `stop` is set or `duration` (if any) passes.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        duration: Option<Duration>,
    ) -> Result<PacketReflectStats, ReflectError> {
        let started = Instant::now();
        let mut stats = PacketReflectStats::default();
        // Since when the ring was found empty (`None` after a batch), for the NAPI wait.
        let mut idle_since: Option<Instant> = None;
        // Relaxed: the flag carries no data; a late observation only delays the exit.
        while !stop.load(Ordering::Relaxed) {
            // One clock read per batch or wake-up (a vDSO call): a sleeping loop has no round
            // count to space the reads by.
            let left = match duration {
                Some(limit) => match limit.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                None => IDLE_WAIT,
            };
            let received = self.socket.recv_batch().map_err(|e| self.error(e))?;
            for index in 0..received {
                self.answer(index, &mut stats)?;
            }
            self.flush()?;
            // Replies the kernel did not take yet are retried at once rather than after a
            // sleep.
            if received > 0 || self.socket.tx_pending() > 0 {
                idle_since = None;
                continue;
            }
            let Some(napi) = &mut self.napi else {
                stats.waits += 1;
                self.socket
                    .wait_rx(left.min(IDLE_WAIT))
                    .map_err(|e| self.error(e))?;
                continue;
            };
            // As aoe-xdp's idle worker: its ring first (yielding the core), then the wait.
            if idle_since.get_or_insert_with(Instant::now).elapsed() < POLL_RINGS_FIRST {
                std::thread::yield_now();
                continue;
            }
            stats.waits += 1;
            let mut fds = [napi::pollfd(self.socket.fd())];
            let waited = napi.poll(&mut fds, left.min(IDLE_WAIT));
            waited.map_err(|e| self.error(e))?;
            if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                // `wait_rx` says what the error is.
                self.socket
                    .wait_rx(Duration::ZERO)
                    .map_err(|e| self.error(e))?;
            }
        }
        Ok(stats)
    }

    /// Answers frame `index` of the current batch in the next staging buffer, flushing first
    /// if none is free.
    fn answer(&mut self, index: usize, stats: &mut PacketReflectStats) -> Result<(), ReflectError> {
        // The destination MAC comes first; `reflect` checks the rest.
        let dst = self.socket.rx_frame(index).first_chunk::<6>().copied();
        if !dst.is_some_and(|dst| self.dst_filter.accepts(dst)) {
            stats.dropped += 1;
            return Ok(());
        }
        if self.socket.tx_buffer().is_none() {
            self.flush()?;
        }
        let Some((buf, len)) = self.socket.tx_copy_of_rx(index) else {
            stats.unsent += 1;
            return Ok(());
        };
        match self.reflection.reflect(buf, len) {
            Some(reply_len) => {
                let reply_len = pad_to_min(buf, reply_len);
                self.socket.tx_commit(reply_len);
                stats.replied += 1;
            }
            None => stats.dropped += 1,
        }
        Ok(())
    }

    /// Sends what is staged (what the kernel does not take stays staged).
    fn flush(&mut self) -> Result<(), ReflectError> {
        self.socket.flush().map(drop).map_err(|e| self.error(e))
    }

    fn error(&self, source: std::io::Error) -> ReflectError {
        ReflectError::Socket {
            interface: self.interface.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initiator::load::reflect::REFLECT_SECTORS_MAX;
    use crate::wire::{ATA_FRAME_HEADER_LEN, ETHERNET_HEADER_LEN, SECTOR_SIZE};

    #[test]
    fn test_frame_size_for_mtu() {
        assert_eq!(frame_size_for_mtu(1500), 1536);
        assert_eq!(frame_size_for_mtu(9000), 9024);
        assert_eq!(frame_size_for_mtu(1518 - 18), 1536);
        assert_eq!(frame_size_for_mtu(1519 - 18), 1536);
        assert_eq!(frame_size_for_mtu(1537 - 18), 1600);
    }

    #[test]
    fn test_replies_for_the_mtu_fit_the_buffers() {
        for mtu in [576, 1500, 4000, 9000, 9216, 65535] {
            let sectors = usize::from(sectors_for_mtu(mtu, u8::MAX));
            let reply = ATA_FRAME_HEADER_LEN + sectors * SECTOR_SIZE;
            assert!(
                reply <= mtu + ETHERNET_HEADER_LEN,
                "MTU {mtu}: {reply}-byte reply"
            );
            assert!(reply <= frame_size_for_mtu(mtu), "MTU {mtu}");
        }
        // More than a UMEM frame holds: the AF_PACKET reflector is the jumbo limit.
        assert!(sectors_for_mtu(9000, u8::MAX) > REFLECT_SECTORS_MAX);
    }
}

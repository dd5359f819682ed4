//! [`PacketPort`]: the AF_PACKET port's data path — RX burst over the ring of [`super::ring`],
//! TX flush through the [`Sender`], frame hand-out — and what it counts ([`PacketStats`]).

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::config::{validate, PacketConfig};
use super::ring::{copy_restoring_tag, Ring, RxPacket};
use super::sender::Sender;
use super::setup::{
    bind_socket, interface_index, log_fallback, open_rx_socket, open_tx_socket, setup_hint,
    setup_ring, take_socket_error,
};
use super::{PacketError, MACS_LEN, VLAN_TAG_LEN};
use crate::sys::frame::{FrameCounts, RxBurst, RX_BURST_MAX};
use crate::sys::frame_area::{FrameArea, NoRoom};
use crate::sys::syscall::{poll_one, socklen};
use crate::sys::xdp::DstFilter;

/// Counters of one port: kernel counters (accumulated from `PACKET_STATISTICS`, which resets on
/// every read) and the port's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStats {
    /// Frames that passed the filter (kernel `tp_packets`, including those dropped).
    pub rx_kernel_packets: u64,
    /// Frames the kernel dropped, mostly because the ring was full (user space behind).
    pub rx_kernel_drops: u64,
    /// Times the `TPACKET_V3` ring froze because user space fell behind (`tp_freeze_q_cnt`).
    pub rx_ring_freezes: u64,
    /// Packets copied from the RX ring into frames.
    pub rx_frames: u64,
    /// Bytes copied from the RX ring into frames (the one RX copy).
    pub rx_copy_bytes: u64,
    /// Packets dropped because they (with their VLAN tag restored) do not fit a frame, or the
    /// kernel truncated them.
    pub rx_too_long: u64,
    /// Requests left in the ring (not copied, not served) because their destination MAC is
    /// neither the interface's nor broadcast: another host's (see [`DstFilter`]).
    pub rx_foreign_dst: u64,
    /// `rx_burst` calls that stopped early because no frame was free.
    pub rx_no_free_frame: u64,
    /// `rx_burst` calls that stopped early because no slab was free for a jumbo frame.
    pub rx_no_free_slab: u64,
    /// Frames the kernel took from `sendmmsg` (each copied into an skb of its own).
    pub tx_frames: u64,
    /// Bytes the kernel copied out of the frames (the one TX copy).
    pub tx_copy_bytes: u64,
    /// `sendmmsg` calls.
    pub tx_sendmmsg_calls: u64,
    /// `sendmmsg` calls after which frames stayed queued for the next `flush_tx`: the kernel
    /// took only the first part of the batch, or nothing (`EAGAIN`: the socket's send budget
    /// is used up; `ENOBUFS`: the device did not take the frame, its queue stopped or its link
    /// without carrier, or the frame one it drops; `EINTR`). A part that stopped at a frame
    /// the kernel refuses is counted here too: the next flush drops that frame
    /// ([`Self::tx_rejected`]).
    pub tx_deferred: u64,
    /// Frames dropped because the kernel refused them for themselves (`EMSGSIZE`: longer than
    /// the interface's MTU allows; `EINVAL`: shorter than an Ethernet header): retrying could
    /// never send them.
    pub tx_rejected: u64,
    /// Frames dropped because the device kept refusing them (`ENOBUFS`) for longer than
    /// [`PacketConfig::tx_refused_hold_ms`]: a link without carrier, or a frame the device
    /// drops each time (on veth, one longer than the peer's MTU).
    pub tx_dropped: u64,
}

/// Two AF_PACKET sockets on one interface, one receiving through an mmap RX ring, one sending
/// with `sendmmsg`; a frame area laid out like the XDP UMEM and a frame pool.
///
/// Field order is drop order: the ring is unmapped before its socket closes; the sending
/// socket closes next; the frame area (ours alone: the kernel reads frames only during a
/// `sendmmsg` and through io_uring while lent) goes last.
pub struct PacketPort {
    pub(super) ring: Ring,
    pub(super) fd: OwnedFd,
    /// The sending socket and its message arrays.
    pub(super) sender: Sender,
    /// The frames (ours alone; the kernel reads them only during a `sendmmsg`, and through
    /// io_uring while lent).
    pub(super) frames: FrameArea,
    /// Frames freed by `flush_tx` since the last `reap_completions`.
    pub(super) tx_completed: usize,
    /// How long the device may refuse the oldest queued frame before it is dropped.
    pub(super) tx_refused_hold: Duration,
    /// When the device began refusing (`ENOBUFS`) the oldest queued frame without taking any
    /// frame since; `None` while it takes them.
    pub(super) tx_refused_since: Option<Instant>,
    pub(super) stats: PacketStats,
    /// Kernel counters accumulated across reads (`PACKET_STATISTICS` clears on read).
    pub(super) kernel_packets: Cell<u64>,
    pub(super) kernel_drops: Cell<u64>,
    pub(super) kernel_freezes: Cell<u64>,
    pub(super) interface: String,
    pub(super) ifindex: u32,
    /// Which destination MACs are served.
    pub(super) dst_filter: DstFilter,
    /// The NAPI a worker waiting on this port busy-polls ([`Self::set_wait_napi`]).
    pub(super) wait_napi: Option<u32>,
}

impl std::fmt::Debug for PacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketPort")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("rx", &self.ring.rx)
            .field("sender", &self.sender)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl PacketPort {
    /// Opens two AF_PACKET sockets on `interface` (in the calling thread's network namespace):
    /// one with the AoE request filter and an mmap RX ring, one that only sends; and maps a
    /// frame area of `config.frame_count` frames. `dst` says which destination MACs are served
    /// (normally [`DstFilter::Own`] with the interface's MAC). Logs a warning: this is the
    /// fallback path.
    pub fn bind(
        interface: &str,
        config: &PacketConfig,
        dst: DstFilter,
    ) -> Result<PacketPort, PacketError> {
        validate(config)?;
        let ifindex = interface_index(interface)?;
        let setup = |(call, source): (&'static str, io::Error)| PacketError::Setup {
            interface: interface.to_owned(),
            call,
            hint: setup_hint(call, source.raw_os_error()),
            source,
        };
        let fd = open_rx_socket(config).map_err(setup)?;
        let ring = setup_ring(fd.as_fd(), config).map_err(setup)?;
        let tx_fd =
            open_tx_socket(interface, ifindex, config.send_buffer_bytes()).map_err(setup)?;
        let sender = Sender::new(tx_fd, config.send_batch_max());
        let frames = FrameArea::new(
            config.frame_count,
            config.slab_count(),
            config.max_frame_len(),
        )
        .map_err(|e| setup(("mmap frame area", e)))?;
        bind_socket(fd.as_fd(), ifindex, config.vlan).map_err(|e| setup(("bind", e)))?;
        log_fallback(interface, ifindex, config);
        Ok(PacketPort {
            ring,
            fd,
            sender,
            frames,
            tx_completed: 0,
            tx_refused_hold: Duration::from_millis(u64::from(config.tx_refused_hold_ms)),
            tx_refused_since: None,
            stats: PacketStats::default(),
            kernel_packets: Cell::new(0),
            kernel_drops: Cell::new(0),
            kernel_freezes: Cell::new(0),
            interface: interface.to_owned(),
            ifindex,
            dst_filter: dst,
            wait_napi: None,
        })
    }

    /// Names the NAPI that receives this port's frames: a worker waiting on the port then
    /// busy-polls it in its wait ([`crate::sys::napi::NapiWait`]), so that the receive path
    /// (the packet socket's copy into the ring) runs in the worker rather than in a softirq or
    /// NAPI thread woken for every burst.
    pub fn set_wait_napi(&mut self, napi: Option<u32>) {
        self.wait_napi = napi;
    }

    /// The NAPI set by [`Self::set_wait_napi`].
    pub fn wait_napi(&self) -> Option<u32> {
        self.wait_napi
    }

    /// Which destination MACs the port serves.
    pub fn dst_filter(&self) -> DstFilter {
        self.dst_filter
    }

    /// Requests refused so far for another host's destination ([`PacketStats::rx_foreign_dst`],
    /// without the system call of [`PacketPort::stats`]).
    pub fn foreign_dst(&self) -> u64 {
        self.stats.rx_foreign_dst
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The receiving socket's fd, for `poll`/`epoll`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Frames per ownership state. On AF_PACKET `fill` and `completion` are always 0: received
    /// packets wait in the kernel's ring, not in frames, and a frame is free again as soon as
    /// `sendmmsg` has copied it; `tx` counts the frames queued and not yet sent.
    pub fn frame_counts(&self) -> FrameCounts {
        self.frames.counts()
    }

    /// Slabs per ownership state (see [`Self::frame_counts`]).
    pub fn slab_counts(&self) -> FrameCounts {
        self.frames.slab_counts()
    }

    /// The frames: pool, io_uring arenas, data access (see [`FrameArea`]).
    pub fn frames(&self) -> &FrameArea {
        &self.frames
    }

    /// The frames, for the calls that change them (alloc, lend, upgrade, transmit, ...).
    pub fn frames_mut(&mut self) -> &mut FrameArea {
        &mut self.frames
    }

    /// Nothing to do: AF_PACKET has no fill ring (frames are taken when packets are copied).
    /// Present so the data path can drive both port kinds alike. Always `Ok(0)`.
    pub fn refill(&mut self) -> Result<usize, PacketError> {
        Ok(0)
    }

    /// Copies up to `max` (at most [`RX_BURST_MAX`]) received packets from the RX ring into
    /// free frames, putting back a VLAN tag the kernel removed. No syscall. Each ring block or
    /// slot goes back to the kernel as soon as its last packet is copied. Stops early when no
    /// frame is free (the rest stays in the ring). Requests for another host's MAC are
    /// skipped (counted, not copied, not returned).
    pub fn rx_burst(&mut self, max: usize) -> RxBurst {
        let mut burst = self.new_burst();
        self.rx_burst_into(&mut burst, max);
        burst
    }

    /// An empty burst for [`Self::rx_burst_into`] (made once, reused every iteration).
    pub fn new_burst(&self) -> RxBurst {
        self.frames.new_burst()
    }

    /// As [`Self::rx_burst`], into `burst`, which must be empty (every frame of its previous
    /// use taken): nothing is zeroed or moved per call.
    pub fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize) {
        self.frames.reset_burst(burst);
        let max = max.min(RX_BURST_MAX);
        let mut taken = 0;
        while taken < max {
            let Some(packet) = self.ring.rx.peek(&self.ring.map) else {
                break;
            };
            let tag_len = if packet.vlan.is_some() {
                VLAN_TAG_LEN
            } else {
                0
            };
            let wire_len = packet.captured + tag_len;
            let whole = packet.captured == packet.len && packet.captured >= MACS_LEN;
            if packet.captured >= MACS_LEN && !self.dst_filter.accepts(self.dst_of(&packet)) {
                self.stats.rx_foreign_dst += 1;
            } else if whole {
                let index = match self.frames.take_rx(wire_len) {
                    Ok(index) => index,
                    Err(NoRoom::TooLong) => {
                        self.stats.rx_too_long += 1;
                        self.ring.rx.advance(&self.ring.map, &packet);
                        continue;
                    }
                    Err(NoRoom::NoFrame) => {
                        self.stats.rx_no_free_frame += 1;
                        break;
                    }
                    Err(NoRoom::NoSlab) => {
                        self.stats.rx_no_free_slab += 1;
                        break;
                    }
                };
                let dst = self.frames.packet_ptr(index);
                let src = self.ring.map.at(packet.data);
                // SAFETY: `src..src + captured` is inside the block or slot `peek` found
                // user-owned (it asserted the bounds); `dst..dst + wire_len` is inside frame
                // (or slab) `index` (`take_rx` chose one whose capacity holds wire_len), which
                // just moved Free -> Rx without a handle, so nobody else uses it. Ring and
                // frame area are distinct mappings: no overlap.
                unsafe { copy_restoring_tag(src, dst, packet.captured, packet.vlan) };
                self.stats.rx_frames += 1;
                self.stats.rx_copy_bytes += wire_len as u64;
                burst.push(self.frames.received(index, wire_len));
                taken += 1;
            } else {
                self.stats.rx_too_long += 1;
            }
            self.ring.rx.advance(&self.ring.map, &packet);
        }
    }

    /// The destination MAC of a packet `peek` found (at least [`MACS_LEN`] bytes captured).
    pub(super) fn dst_of(&self, packet: &RxPacket) -> [u8; 6] {
        assert!(
            packet.captured >= MACS_LEN,
            "a packet shorter than its MACs"
        );
        let mut dst = [0u8; 6];
        // SAFETY: the packet's first `captured` bytes at `data` are inside the block or slot
        // that `peek` found user-owned (it asserted the bounds), and `captured` covers the six
        // read here; the kernel does not write a user-owned block or slot.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring.map.at(packet.data), dst.as_mut_ptr(), 6);
        }
        dst
    }

    /// Waits until a received packet is ready in the RX ring or `timeout` passes; true if one
    /// is ready.
    pub fn wait_rx(&mut self, timeout: Duration) -> Result<bool, PacketError> {
        if self.ring.rx.ready(&self.ring.map) {
            return Ok(true);
        }
        match poll_one(self.fd.as_fd(), libc::POLLIN, timeout) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(PacketError::Syscall {
                    call: "poll",
                    source,
                })
            }
            Ok(revents) if revents & libc::POLLERR != 0 => {
                // E.g. ENETDOWN after the interface went down; reading SO_ERROR clears it.
                if let Some(source) = take_socket_error(self.fd.as_fd()) {
                    return Err(PacketError::Syscall {
                        call: "poll",
                        source,
                    });
                }
            }
            Ok(_) => {}
        }
        Ok(self.ring.rx.ready(&self.ring.map))
    }

    /// Sends the queued frames, oldest first, straight from the frame area with one
    /// `sendmmsg` per 1024 frames (the kernel's `UIO_MAXIOV`), without waiting, and frees each
    /// frame the kernel took at once (it has copied it). Returns the number sent.
    ///
    /// Frames the kernel does not take now stay queued, in order, for the next call
    /// ([`PacketStats::tx_deferred`]); but a frame it refuses for itself (`EMSGSIZE`, `EINVAL`:
    /// [`PacketStats::tx_rejected`]), or that the device has refused (`ENOBUFS`) for longer
    /// than [`PacketConfig::tx_refused_hold_ms`] ([`PacketStats::tx_dropped`]), is dropped
    /// and the flush goes on. Other errors (`ENETDOWN`, `ENXIO`: the interface is down or
    /// gone) are returned.
    ///
    /// Bound: each call but the last of a flush sends a whole batch or drops one frame, so a
    /// flush makes at most one call per batch plus one per frame dropped.
    pub fn flush_tx(&mut self) -> Result<usize, PacketError> {
        let mut sent_total = 0;
        while !self.frames.tx_queued().is_empty() {
            let batch = self.frames.tx_queued().len().min(self.sender.batch_max());
            self.stats.tx_sendmmsg_calls += 1;
            match self.sender.send(&self.frames) {
                Ok(sent) => {
                    self.tx_refused_since = None;
                    self.stats.tx_frames += sent as u64;
                    self.stats.tx_copy_bytes += self.frames.tx_queued()[..sent]
                        .iter()
                        .map(|&(_, len)| len as u64)
                        .sum::<u64>();
                    // The copy into the skbs is the completion: the frames are free at once.
                    self.frames.sent(sent);
                    self.tx_completed += sent;
                    sent_total += sent;
                    if sent < batch {
                        self.stats.tx_deferred += 1;
                        break;
                    }
                }
                Err(error) => match error.raw_os_error() {
                    Some(libc::EMSGSIZE | libc::EINVAL) => {
                        self.stats.tx_rejected += 1;
                        self.drop_first_queued(&error);
                    }
                    Some(libc::ENOBUFS) if self.refused_too_long() => {
                        self.stats.tx_dropped += 1;
                        self.drop_first_queued(&error);
                    }
                    Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => {
                        self.stats.tx_deferred += 1;
                        break;
                    }
                    _ => {
                        return Err(PacketError::Syscall {
                            call: "sendmmsg",
                            source: error,
                        })
                    }
                },
            }
        }
        Ok(sent_total)
    }

    /// Called when the device refused the oldest queued frame (`ENOBUFS`): true once it has
    /// refused frames, without taking any, for [`Self::tx_refused_hold`] (the clock is read
    /// only here, on this error path).
    ///
    /// `ENOBUFS` means the device did not take the frame: its queue was stopped (a moment's
    /// back-pressure, worth a retry), the link has no carrier, or it dropped this very frame
    /// (veth does when the frame is longer than its peer's MTU: every retry fails). The error
    /// does not say which, so the frame is retried for a while and then dropped rather than
    /// left to hold back the queue for ever.
    fn refused_too_long(&mut self) -> bool {
        let now = Instant::now();
        let since = *self.tx_refused_since.get_or_insert(now);
        now.duration_since(since) >= self.tx_refused_hold
    }

    /// Drops the oldest queued frame, which the kernel refused with `error` and would refuse
    /// again (it would hold back every frame behind it). The caller counts it.
    fn drop_first_queued(&mut self, error: &io::Error) {
        let (_, len) = self.frames.tx_queued()[0];
        if self.stats.tx_rejected + self.stats.tx_dropped == 1 {
            tracing::warn!(
                interface = self.interface,
                len,
                %error,
                "a frame of {len} bytes could not be sent: dropped (further ones are only \
                 counted, in tx_rejected and tx_dropped)"
            );
        }
        // Freed as a sent frame would be: it leaves the queue's head and is free again.
        self.frames.sent(1);
        self.tx_completed += 1;
    }

    /// Returns how many TX frames became free since the last call (sent or dropped). A frame
    /// is free as soon as `flush_tx` has handed it to the kernel, so this only reports; it
    /// exists so the data path can drive both port kinds alike.
    pub fn reap_completions(&mut self) -> usize {
        std::mem::take(&mut self.tx_completed)
    }

    /// Port and kernel statistics (reads and accumulates `PACKET_STATISTICS`).
    pub fn stats(&self) -> Result<PacketStats, PacketError> {
        // SAFETY: tpacket_stats_v3 is plain old data; all-zero is a valid value.
        let mut kernel: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        // With TPACKET_V2 the kernel fills only the first two fields (struct tpacket_stats).
        let mut len = socklen::<libc::tpacket_stats_v3>();
        // SAFETY: the buffer is a live tpacket_stats_v3 of the length passed; the fd is open.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                std::ptr::from_mut(&mut kernel).cast(),
                &mut len,
            )
        };
        if ret != 0 {
            return Err(PacketError::Syscall {
                call: "getsockopt(PACKET_STATISTICS)",
                source: io::Error::last_os_error(),
            });
        }
        let add = |cell: &Cell<u64>, value: libc::c_uint| {
            cell.set(cell.get() + u64::from(value));
            cell.get()
        };
        Ok(PacketStats {
            rx_kernel_packets: add(&self.kernel_packets, kernel.tp_packets),
            rx_kernel_drops: add(&self.kernel_drops, kernel.tp_drops),
            rx_ring_freezes: add(&self.kernel_freezes, kernel.tp_freeze_q_cnt),
            ..self.stats
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_port_can_move_to_a_worker_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<PacketPort>();
    }
}

//! [`PacketPort`]: the AF_PACKET port's data path — RX burst, TX queue and flush, frame
//! hand-out — over the rings of [`super::ring`], and what it counts ([`PacketStats`]).

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::config::{validate, PacketConfig};
use super::ring::{copy_restoring_tag, Rings, RxPacket};
use super::setup::{
    bind_socket, interface_index, log_fallback, open_socket, setup_hint, setup_rings,
    take_socket_error,
};
use super::{PacketError, MACS_LEN, VLAN_TAG_LEN};
use crate::sys::frame::{FrameCounts, RxBurst, RX_BURST_MAX};
use crate::sys::frame_area::{FrameArea, NoRoom};
use crate::sys::syscall::{poll_one, set_int, socklen};
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
    /// Frames copied into the TX ring.
    pub tx_frames: u64,
    /// Bytes copied into the TX ring (the one TX copy).
    pub tx_copy_bytes: u64,
    /// `rx_burst` calls that stopped early because no slab was free for a jumbo frame.
    pub rx_no_free_slab: u64,
    /// `flush_tx` calls that found the TX ring full and left frames queued.
    pub tx_ring_full: u64,
    /// `send` kicks.
    pub tx_kicks: u64,
    /// Kicks that failed transiently (socket send budget or device queue full); the slots stay
    /// requested and the next `flush_tx` kicks again.
    pub tx_kick_errors: u64,
    /// TX slots the kernel rejected as malformed (`TP_STATUS_WRONG_FORMAT`). With `PACKET_LOSS`
    /// (always set) the kernel skips such slots silently instead, so this stays 0 unless that
    /// changes; a frame longer than the MTU is dropped without a trace.
    pub tx_malformed: u64,
}

/// One AF_PACKET socket on one interface, with mmap RX and TX rings, a frame area laid out like
/// the XDP UMEM and a frame pool.
///
/// Field order is drop order: the rings are unmapped before the socket closes; the frame area
/// (ours alone, the kernel never sees it) goes last.
pub struct PacketPort {
    pub(super) rings: Rings,
    pub(super) fd: OwnedFd,
    /// The frames (ours alone; the kernel sees them only through io_uring while lent).
    pub(super) frames: FrameArea,
    /// Slots handed to the kernel whose frames might not have been sent yet.
    pub(super) tx_requested: bool,
    /// Frames freed by `flush_tx` since the last `reap_completions`.
    pub(super) tx_completed: usize,
    pub(super) stats: PacketStats,
    /// Kernel counters accumulated across reads (`PACKET_STATISTICS` clears on read).
    pub(super) kernel_packets: Cell<u64>,
    pub(super) kernel_drops: Cell<u64>,
    pub(super) kernel_freezes: Cell<u64>,
    pub(super) interface: String,
    pub(super) ifindex: u32,
    /// Which destination MACs are served.
    pub(super) dst_filter: DstFilter,
}

impl std::fmt::Debug for PacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketPort")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("rx", &self.rings.rx)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl PacketPort {
    /// Opens an AF_PACKET socket on `interface` (in the calling thread's network namespace)
    /// with the AoE request filter and mmap RX and TX rings, and maps a frame area of
    /// `config.frame_count` frames. `dst` says which destination MACs are served (normally
    /// [`DstFilter::Own`] with the interface's MAC). Logs a warning: this is the fallback path.
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
        let fd = open_socket(config).map_err(setup)?;
        let rings = setup_rings(fd.as_fd(), config).map_err(setup)?;
        let send_buffer = i32::try_from(config.tx_ring_size as usize * 2 * config.tx_slot_size())
            .unwrap_or(i32::MAX);
        // Room in the socket's send budget for every TX slot. Needs CAP_NET_ADMIN; without it
        // the default (net.core.wmem_default) applies and a full budget only delays a kick.
        let sndbuf = set_int(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            send_buffer,
        );
        if let Err(error) = sndbuf {
            tracing::debug!(interface, %error, "SO_SNDBUFFORCE refused, default send buffer");
        }
        let frames = FrameArea::new(
            config.frame_count,
            config.slab_count(),
            config.max_frame_len(),
        )
        .map_err(|e| setup(("mmap frame area", e)))?;
        bind_socket(fd.as_fd(), ifindex, config.vlan).map_err(|e| setup(("bind", e)))?;
        log_fallback(interface, ifindex, config);
        Ok(PacketPort {
            rings,
            fd,
            frames,
            tx_requested: false,
            tx_completed: 0,
            stats: PacketStats::default(),
            kernel_packets: Cell::new(0),
            kernel_drops: Cell::new(0),
            kernel_freezes: Cell::new(0),
            interface: interface.to_owned(),
            ifindex,
            dst_filter: dst,
        })
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

    /// The socket fd, for `poll`/`epoll`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Frames per ownership state. On AF_PACKET only `free` and `rx` are used; `fill`, `tx` and
    /// `completion` are always 0: received packets wait in the kernel's ring, not in frames,
    /// and a frame is free again once copied into the TX ring.
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
            let Some(packet) = self.rings.rx.peek(&self.rings.map) else {
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
                        self.rings.rx.advance(&self.rings.map, &packet);
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
                let src = self.rings.map.at(packet.data);
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
            self.rings.rx.advance(&self.rings.map, &packet);
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
            std::ptr::copy_nonoverlapping(self.rings.map.at(packet.data), dst.as_mut_ptr(), 6);
        }
        dst
    }

    /// Waits until a received packet is ready in the RX ring or `timeout` passes; true if one
    /// is ready.
    pub fn wait_rx(&mut self, timeout: Duration) -> Result<bool, PacketError> {
        if self.rings.rx.ready(&self.rings.map) {
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
        Ok(self.rings.rx.ready(&self.rings.map))
    }

    /// Copies queued frames into free TX ring slots (as many as there are), frees those frames
    /// at once, and kicks the kernel with one `send` for the whole batch. Returns the number
    /// moved; the rest stay queued for the next call. A kick that fails transiently (socket
    /// send budget or device queue full) is counted and retried by the next call.
    pub fn flush_tx(&mut self) -> Result<usize, PacketError> {
        let layout = self.rings.tx_layout;
        let mut moved = 0;
        for &(index, len) in self.frames.tx_queued() {
            let slot = self.rings.tx_head;
            // Acquire: pairs with the kernel's store of TP_STATUS_AVAILABLE in
            // `tpacket_destruct_skb` (made once it is done with the slot's bytes), so our
            // writes below cannot be reordered before it.
            let status = self.rings.tx_status(slot).load(Ordering::Acquire);
            if status & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0 {
                self.stats.tx_ring_full += 1;
                break;
            }
            if status & libc::TP_STATUS_WRONG_FORMAT != 0 {
                self.stats.tx_malformed += 1;
            }
            let base = self.rings.map.at(self.rings.tx_slot(slot));
            let src = self.frames.packet_ptr(index);
            let tp_len = u32::try_from(len).expect("len <= frame capacity");
            // SAFETY: the slot is ours (status neither SEND_REQUEST nor SENDING, loaded with
            // Acquire): the kernel does not read it until we store SEND_REQUEST. The header
            // fields are aligned words inside the slot; the data range ends inside the slot
            // (`data + FRAME_CAPACITY <= TX_SLOT_SIZE`, and a port with slabs has
            // `data + SLAB_CAPACITY <= JUMBO_TX_SLOT_SIZE`: asserted at compile time). The frame
            // (state Tx) is held by the port alone, and area and ring are distinct mappings.
            unsafe {
                if let Some(next) = layout.next_offset {
                    std::ptr::write_volatile(base.add(next).cast::<u32>(), 0);
                }
                std::ptr::write_volatile(base.add(layout.len).cast::<u32>(), tp_len);
                std::ptr::write_volatile(base.add(layout.snaplen).cast::<u32>(), tp_len);
                std::ptr::copy_nonoverlapping(src, base.add(layout.data), len);
            }
            // Release: the length and bytes written above are visible before the kernel can
            // see SEND_REQUEST (it reads the status in `tpacket_snd` via `__packet_get_status`,
            // then the header and data).
            self.rings
                .tx_status(slot)
                .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.rings.tx_head = (slot + 1) % self.rings.tx_slot_count;
            self.stats.tx_frames += 1;
            self.stats.tx_copy_bytes += len as u64;
            moved += 1;
        }
        // The copy into the ring is the completion: the frames are free at once.
        self.frames.sent(moved);
        self.tx_completed += moved;
        if moved > 0 {
            self.tx_requested = true;
        }
        if self.tx_requested {
            self.kick_tx()?;
        }
        Ok(moved)
    }

    /// One `send(fd, NULL, 0, MSG_DONTWAIT)`: the kernel sends every slot marked
    /// SEND_REQUEST, in ring order, without waiting for completions.
    pub(super) fn kick_tx(&mut self) -> Result<(), PacketError> {
        self.stats.tx_kicks += 1;
        // SAFETY: a send with no buffer on an open socket; the TX ring supplies the data.
        let ret =
            unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if ret < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => {
                    self.stats.tx_kick_errors += 1;
                    Ok(())
                }
                _ => Err(PacketError::Syscall {
                    call: "send (TX ring kick)",
                    source: error,
                }),
            };
        }
        // The kernel walks the ring in order from its own head, so once the newest slot we
        // requested is no longer SEND_REQUEST, every older one was taken too.
        let count = self.rings.tx_slot_count;
        let newest = (self.rings.tx_head + count - 1) % count;
        // Acquire: pairs with the kernel's status store (SENDING/AVAILABLE) for that slot.
        let status = self.rings.tx_status(newest).load(Ordering::Acquire);
        self.tx_requested = status & libc::TP_STATUS_SEND_REQUEST != 0;
        Ok(())
    }

    /// Returns how many TX frames became free since the last call. With a TX ring a frame is
    /// free as soon as `flush_tx` copied it into the ring, so this only reports; it exists so
    /// the data path can drive both port kinds alike.
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

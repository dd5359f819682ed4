//! [`PacketPort`]: the AF_PACKET port's data path — RX burst, TX queue and flush, frame
//! hand-out — over the rings of [`super::ring`], and what it counts ([`PacketStats`]).

use super::*;

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
    /// The frame area; shared only with the lender's arena, which keeps it mapped for io_uring.
    pub(super) area: Arc<Mapping>,
    /// The frame area as an io_uring arena and each frame's chunk token.
    pub(super) lender: Lender,
    pub(super) pool: FramePool,
    /// Frames and slabs in state `Tx`, as (index, wire length), in transmit order. Capacity =
    /// frame count + slab count, so it never grows.
    pub(super) tx_queued: Vec<(u32, usize)>,
    /// Longest frame the port carries ([`PacketConfig::max_frame_len`]).
    pub(super) max_frame_len: usize,
    pub(super) jumbo: JumboStats,
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
            .field("counts", &self.pool.counts())
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
        let frames_len = config.frame_count as usize * FRAME_SIZE;
        let slab_count = config.slab_count();
        let area = Mapping::new(
            frames_len + slab_count as usize * SLAB_SIZE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            None,
        )
        .map_err(|e| setup(("mmap frame area", e)))?;
        bind_socket(fd.as_fd(), ifindex, config.vlan).map_err(|e| setup(("bind", e)))?;
        log_fallback(interface, ifindex, config);
        let area = Arc::new(area);
        // SAFETY: the area is a private anonymous mapping of `frame_count` whole frames,
        // page-aligned; the `Arc<Mapping>` given as keep-alive owns it, so it stays mapped as
        // long as the arena. The chunk tokens are minted once, into `tokens`, and lent only for
        // frames the application holds, so nothing else touches a lent chunk.
        let io_arena = unsafe {
            Arena::from_raw_kept(
                area.ptr.as_ptr(),
                FRAME_SIZE,
                config.frame_count as usize,
                Box::new(Arc::clone(&area)),
            )
        }
        .map_err(|e| setup(("frame area arena", io::Error::other(e.to_string()))))?;
        let slab_arena = if slab_count > 0 {
            // SAFETY: the slabs follow the frames in the same private mapping (its length
            // covers them), page-aligned; the keep-alive owns the mapping. Slab tokens are lent
            // only for slabs the application holds.
            let arena = unsafe {
                Arena::from_raw_kept(
                    area.ptr.as_ptr().add(frames_len),
                    SLAB_SIZE,
                    slab_count as usize,
                    Box::new(Arc::clone(&area)),
                )
            }
            .map_err(|e| setup(("slab arena", io::Error::other(e.to_string()))))?;
            Some(arena)
        } else {
            None
        };
        let lender = Lender::with_slabs(io_arena, slab_arena);
        Ok(PacketPort {
            rings,
            fd,
            area,
            lender,
            pool: FramePool::with_slabs(config.frame_count, slab_count),
            tx_queued: Vec::with_capacity((config.frame_count + slab_count) as usize),
            max_frame_len: config.max_frame_len(),
            jumbo: JumboStats::default(),
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

    /// Frames per ownership state (they always sum to the frame count). `fill` and
    /// `completion` are always 0: received packets wait in the kernel's ring, not in frames,
    /// and a frame is free again once copied into the TX ring.
    pub fn frame_counts(&self) -> FrameCounts {
        self.pool.counts()
    }

    /// The frame area as an arena for io_uring registration: chunk `i` is frame `i`.
    pub fn io_arena(&self) -> &Arc<Arena> {
        self.lender.arena()
    }

    /// Lends a held frame to a storage I/O (see `XskPort::lend`).
    pub fn lend(&mut self, frame: Frame) -> Chunk {
        self.lender.lend(&self.pool, frame)
    }

    /// Takes back a chunk lent by [`Self::lend`] and returns the frame's handle.
    pub fn reclaim(&mut self, chunk: Chunk) -> Frame {
        self.lender.reclaim(&self.pool, chunk)
    }

    /// Start of the frame area (for registering it as one io_uring fixed buffer).
    pub fn umem_base_ptr(&self) -> NonNull<u8> {
        self.area.ptr
    }

    /// Length of the frame area in bytes (`frame_count * frame_size`).
    pub fn umem_len(&self) -> usize {
        self.area.len
    }

    /// Size of one frame (chunk).
    pub fn frame_size(&self) -> usize {
        FRAME_SIZE
    }

    /// Offset of `frame`'s first packet byte from the area start (chunk + [`PACKET_OFFSET`], or
    /// slab + [`PACKET_OFFSET`] behind the frames); the same contract as
    /// `XskPort::umem_offset`: while an io_uring operation targets the frame, keep the handle,
    /// do not call [`Self::data`]/[`Self::data_mut`] on it, and transmit or release it only
    /// after the completion arrived.
    pub fn umem_offset(&self, frame: &Frame) -> usize {
        self.pool.check(frame);
        self.packet_offset(frame.index())
    }

    pub(super) fn packet_offset(&self, index: u32) -> usize {
        let frames = self.pool.frame_count();
        if index >= frames {
            frames as usize * FRAME_SIZE + (index - frames) as usize * SLAB_SIZE + PACKET_OFFSET
        } else {
            index as usize * FRAME_SIZE + PACKET_OFFSET
        }
    }

    /// Offset of `frame`'s packet start in the chunk [`Self::lend`] returns for it (always
    /// [`PACKET_OFFSET`]).
    pub fn offset_in_chunk(&self, frame: &Frame) -> usize {
        self.pool.check(frame);
        PACKET_OFFSET
    }

    /// Bytes `frame` can hold, from its packet start to the end of its chunk or slab.
    pub fn frame_capacity(&self, frame: &Frame) -> usize {
        self.pool.check(frame);
        if self.pool.is_slab(frame.index()) {
            SLAB_CAPACITY
        } else {
            FRAME_CAPACITY
        }
    }

    /// Longest frame this port receives and transmits ([`PacketConfig::max_frame_len`]).
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The jumbo slabs as a second io_uring arena, if this is a jumbo port.
    pub fn slab_arena(&self) -> Option<&Arc<Arena>> {
        self.lender.slab_arena()
    }

    /// Slabs per ownership state.
    pub fn slab_counts(&self) -> FrameCounts {
        self.pool.slab_counts()
    }

    /// True if `frame` is a jumbo slab.
    pub fn is_slab(&self, frame: &Frame) -> bool {
        self.pool.is_slab(frame.index())
    }

    /// Counters of the jumbo path: `upgrades`, `upgrade_no_slab` (the RX copy into a slab is
    /// the port's ordinary RX copy, counted in [`PacketStats`]).
    pub fn jumbo_stats(&self) -> JumboStats {
        self.jumbo
    }

    /// As `XskPort::upgrade`: `frame` unchanged if it holds `needed` bytes, else its received
    /// bytes copied into a free slab (the frame is released); `Err(frame)` when no slab is
    /// free. Panics if `needed` exceeds [`Self::max_frame_len`].
    pub fn upgrade(&mut self, frame: Frame, needed: usize) -> Result<Frame, Frame> {
        if self.frame_capacity(&frame) >= needed {
            return Ok(frame);
        }
        assert!(
            needed <= self.max_frame_len,
            "upgrade to {needed} bytes: this port carries at most {}",
            self.max_frame_len
        );
        let Some(slab) = self.pool.take_free_slab() else {
            self.jumbo.upgrade_no_slab += 1;
            return Err(frame);
        };
        let len = frame.len();
        let src = self.area.at(self.umem_offset(&frame));
        let dst = self.area.at(self.packet_offset(slab));
        // SAFETY: the frame is held by the application (checked) and the slab was just taken
        // (state Rx, no handle): both are ours, in disjoint chunks of the area, and `len` fits
        // both (the frame's received length is at most a chunk's capacity).
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        self.pool.release(frame);
        self.jumbo.upgrades += 1;
        Ok(self.pool.handle(slab, len))
    }

    /// A free slab for building a jumbo frame from scratch, or `None`.
    pub fn alloc_slab(&mut self) -> Option<Frame> {
        let slab = self.pool.take_free_slab()?;
        Some(self.pool.handle(slab, 0))
    }

    /// The received packet (`frame.len()` bytes).
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        let offset = self.umem_offset(frame);
        assert!(frame.len() <= self.frame_capacity(frame));
        // SAFETY: `check` (in `umem_offset`) proved the frame is held by the application; the
        // area is private to this process and the kernel never touches it, and the shared
        // borrow of the unique handle rules out a concurrent `data_mut` of the same frame. The
        // range ends inside the frame's chunk, which is inside the mapping.
        unsafe { std::slice::from_raw_parts(self.area.at(offset), frame.len()) }
    }

    /// The whole frame buffer, from the packet start to the end of the chunk or slab
    /// ([`Self::frame_capacity`] bytes), for building a reply in place. The first `frame.len()`
    /// bytes are the received packet.
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let offset = self.umem_offset(frame);
        let capacity = self.frame_capacity(frame);
        // SAFETY: as in `data`, plus the exclusive borrow of the unique handle guarantees no
        // other slice of this frame exists while this one lives.
        unsafe { std::slice::from_raw_parts_mut(self.area.at(offset), capacity) }
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
        RxBurst::new(self.pool.id())
    }

    /// As [`Self::rx_burst`], into `burst`, which must be empty (every frame of its previous
    /// use taken): nothing is zeroed or moved per call.
    pub fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize) {
        burst.reset(self.pool.id());
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
            let fits = packet.captured == packet.len
                && packet.captured >= MACS_LEN
                && wire_len <= self.max_frame_len;
            if packet.captured >= MACS_LEN && !self.dst_filter.accepts(self.dst_of(&packet)) {
                self.stats.rx_foreign_dst += 1;
            } else if fits {
                let taken_index = if wire_len <= FRAME_CAPACITY {
                    self.pool
                        .take_free(FrameState::Rx)
                        .ok_or(&mut self.stats.rx_no_free_frame)
                } else {
                    self.pool
                        .take_free_slab()
                        .ok_or(&mut self.stats.rx_no_free_slab)
                };
                let index = match taken_index {
                    Ok(index) => index,
                    Err(counter) => {
                        *counter += 1;
                        break;
                    }
                };
                let dst = self.area.at(self.packet_offset(index));
                let src = self.rings.map.at(packet.data);
                // SAFETY: `src..src + captured` is inside the block or slot `peek` found
                // user-owned (it asserted the bounds); `dst..dst + wire_len` is inside frame
                // (or slab) `index` (wire_len <= its capacity), which just moved Free -> Rx, so
                // nobody else uses it. Ring and area are distinct mappings: no overlap.
                unsafe { copy_restoring_tag(src, dst, packet.captured, packet.vlan) };
                self.stats.rx_frames += 1;
                self.stats.rx_copy_bytes += wire_len as u64;
                burst.push(self.pool.handle(index, wire_len));
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
        let mut pollfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(PacketError::Syscall {
                    call: "poll",
                    source: error,
                });
            }
        } else if pollfd.revents & libc::POLLERR != 0 {
            // E.g. ENETDOWN after the interface went down; reading SO_ERROR clears it.
            if let Some(error) = take_socket_error(self.fd.as_fd()) {
                return Err(PacketError::Syscall {
                    call: "poll",
                    source: error,
                });
            }
        }
        Ok(self.rings.rx.ready(&self.rings.map))
    }

    /// A free frame for building a packet from scratch (e.g. an advertisement), or `None` if
    /// every frame is in use.
    pub fn alloc(&mut self) -> Option<Frame> {
        let index = self.pool.take_free(FrameState::Rx)?;
        Some(self.pool.handle(index, 0))
    }

    /// Gives a frame back without sending it (e.g. a dropped request).
    pub fn release(&mut self, frame: Frame) {
        self.pool.release(frame);
    }

    /// Queues the first `len` bytes of `frame` for transmission (sent by the next
    /// [`Self::flush_tx`]). Frames shorter than 60 bytes are zero-padded to 60. Never fails: the
    /// queue has room for every frame.
    pub fn transmit(&mut self, mut frame: Frame, len: usize) {
        let wire_len = pad_for_wire(self.data_mut(&mut frame), len);
        self.pool.queue_tx(frame, wire_len, &mut self.tx_queued);
    }

    /// Copies queued frames into free TX ring slots (as many as there are), frees those frames
    /// at once, and kicks the kernel with one `send` for the whole batch. Returns the number
    /// moved; the rest stay queued for the next call. A kick that fails transiently (socket
    /// send budget or device queue full) is counted and retried by the next call.
    pub fn flush_tx(&mut self) -> Result<usize, PacketError> {
        let layout = self.rings.tx_layout;
        let mut moved = 0;
        for &(index, len) in &self.tx_queued {
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
            let src = self.area.at(self.packet_offset(index));
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
        for &(index, _) in &self.tx_queued[..moved] {
            // The copy into the ring is the completion: the frame is free at once.
            self.pool
                .transition(index, FrameState::Tx, FrameState::Completion);
            self.pool.put_free(index, FrameState::Completion);
        }
        self.tx_queued.drain(..moved);
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

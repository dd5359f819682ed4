//! [`XskPort`]: one AF_XDP socket bound to one (interface, RX queue), with its own UMEM.
//!
//! Contract: the port owns the UMEM, the four rings and a [`FramePool`] that owns every frame
//! (see `frame.rs` for the ownership states). The data path is safe and does not allocate:
//!
//! ```text
//! loop {
//!     port.reap_completions();          // TX frames the kernel is done with -> Free
//!     port.refill()?;                   // Free -> fill ring (kicks the kernel if it asks)
//!     for frame in port.rx_burst(32) {  // RX ring -> Frame handles
//!         // read port.data(&frame), build the reply in port.data_mut(&mut frame)
//!         port.transmit(frame, reply_len);   // or port.release(frame)
//!     }
//!     port.flush_tx()?;                 // queued frames -> TX ring, sendto() kicks if needed
//! }
//! ```
//!
//! Binding tries zero-copy first and falls back to copy mode (veth refuses zero-copy with
//! EOPNOTSUPP); [`XskPort::bind_mode`] reports what is in use. The socket is bound with
//! `XDP_USE_NEED_WAKEUP`; in copy mode the kernel always asks for a TX kick and sends at most 32
//! frames per kick, so `flush_tx` costs one `sendto` per 32 frames. An XDP program must redirect
//! the queue's traffic to this socket (`XdpProgram::insert_socket(queue, port.fd())`); the port
//! never loads one itself.
//!
//! Jumbo frames: on an interface whose MTU does not fit one chunk, the UMEM also holds
//! [`XskConfig::slab_count`] slabs of three chunks (see `umem.rs`), and the socket is bound with
//! `XDP_USE_SG` (multi-buffer; in copy mode if zero-copy refuses it). A packet that arrives
//! in several descriptors is copied into a free slab (the one bounce copy, counted in
//! [`XskPort::jumbo_stats`]), its fragment chunks go straight back to the free list, and
//! `rx_burst` yields one [`Frame`] whose [`XskPort::data`] is the whole packet, contiguous. A
//! slab frame is transmitted without a copy as a chain of descriptors (`XDP_PKT_CONTD` on all
//! but the last) written to our own mapping of the TX ring (`txring.rs`: xsk-rs can only
//! describe chunk + 476). [`XskPort::upgrade`] moves a small request into a slab so that a big
//! reply (a 17-sector read) can be built in place; [`XskPort::max_frame_len`] says how long a
//! frame this port can carry. Slabs are a second io_uring arena ([`XskPort::slab_arena`]) and
//! are lent and reclaimed like frames.
//!
//! Hazards:
//! - One port per (interface, queue); a second bind on the same pair fails with EBUSY.
//! - Frames sent shorter than 60 bytes are zero-padded to 60: veth does not pad, and some
//!   initiators (aoeping) ignore runts.
//! - Dropping the port with frames still held by the application is allowed, but the handles
//!   then panic when dropped (release them first).
//! - The socket is bound in the calling thread's network namespace (libxdp resolves the name).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use xsk_rs::config::{BindFlags, LibxdpFlags, QueueSize, SocketConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue};

use super::abi::XdpCounters;
use super::loader::XdpQueueCounters;
use super::txring::TxRing;
use super::umem::{UmemArea, UmemError};
use crate::sys::frame::{
    pad_for_wire, Frame, FrameCounts, FramePool, FrameState, JumboStats, Lender, RxBurst,
    RX_BURST_MAX,
};
use crate::sys::layout::{
    FRAME_CAPACITY, FRAME_SIZE, PACKET_OFFSET, SLAB_CAPACITY, SLAB_CHUNKS, SLAB_SIZE,
};
use crate::sys::mem::{Arena, Chunk};

/// Which bind mode to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindPreference {
    /// Zero-copy first, copy mode if the driver refuses.
    Auto,
    /// Zero-copy only (`XDP_ZEROCOPY`): fail loudly if the driver cannot.
    ZeroCopy,
    /// Copy mode only (`XDP_COPY`).
    Copy,
}

/// The bind mode in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The NIC DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM.
    Copy,
}

/// Frames a port first keeps on its fill ring for the kernel to receive into ([`XskPort::refill`]).
///
/// The kernel takes fill-ring frames in order, so every frame on the ring is touched once per
/// trip round it: with 2048 frames that is more than a core's L2 cache, and each reply's
/// lines are fetched from farther away, by the kernel's copy and by ours. 256 frames stay
/// hot: +1-10 % requests/s for the target and +2-18 % for the reflector on veth (copy mode).
/// A burst that leaves the kernel less than a quarter of them doubles the target, up to
/// `fill_ring_size`, for the rest of the port's life; a port about to sleep
/// ([`XskPort::wait_rx`]) hands over the whole ring, so a burst that wakes it finds room.
pub const FILL_TARGET_START: u32 = 256;

/// Geometry of a port. Ring sizes must be powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// Frames in the UMEM (each [`FRAME_SIZE`] bytes, locked memory). The jumbo slabs
    /// ([`XskConfig::slab_count`]) come on top.
    pub frame_count: u32,
    /// Fill ring entries; also the most frames `refill` keeps with the kernel for receiving
    /// (it starts with [`FILL_TARGET_START`]).
    pub fill_ring_size: u32,
    /// Completion ring entries.
    pub comp_ring_size: u32,
    /// RX ring entries.
    pub rx_ring_size: u32,
    /// TX ring entries.
    pub tx_ring_size: u32,
    /// Zero-copy or copy mode.
    pub bind: BindPreference,
}

impl XskConfig {
    /// Jumbo slabs set aside behind the frames: one per 16 frames, at least 4 (each
    /// [`SLAB_SIZE`] bytes of locked memory; 256 slabs = 3 MiB for the default 4096 frames).
    /// A slab is held by one jumbo request from its arrival (or upgrade) until its reply's TX
    /// completion.
    pub fn slab_count(&self) -> u32 {
        (self.frame_count / 16).max(4)
    }
}

impl Default for XskConfig {
    /// 16 MiB of UMEM:
    /// frame_count 4096 = 2048 (fill ring: buffers waiting for RX)
    ///                  + 2048 (held by the application, queued or on the TX ring).
    fn default() -> Self {
        Self {
            frame_count: 4096,
            fill_ring_size: 2048,
            comp_ring_size: 2048,
            rx_ring_size: 2048,
            tx_ring_size: 2048,
            bind: BindPreference::Auto,
        }
    }
}

/// Busy-poll socket options (Linux 5.11+). With busy polling, the application's
/// `recvfrom`/`sendto`/`poll` on this socket drive the driver's NAPI on its own core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_PREFER_BUSY_POLL`.
    pub prefer: bool,
    /// `SO_BUSY_POLL`: microseconds to busy-poll in a blocking call (0 = off).
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per busy-poll round (0 = kernel default).
    pub budget: u32,
}

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

/// Errors creating or driving a port.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// The UMEM could not be created.
    #[error(transparent)]
    Umem(#[from] UmemError),
    /// A configuration value is invalid.
    #[error("invalid XSK configuration: {what}")]
    Config {
        /// What is wrong.
        what: &'static str,
    },
    /// Creating or binding the socket failed.
    #[error("cannot bind AF_XDP socket to {interface} queue {queue_id} ({mode}): {hint}")]
    Bind {
        /// Interface name.
        interface: String,
        /// RX queue.
        queue_id: u32,
        /// The bind mode tried last.
        mode: &'static str,
        /// Likely cause and fix.
        hint: &'static str,
        /// What xsk-rs reported (with the kernel's errno as its source).
        #[source]
        source: xsk_rs::socket::SocketCreateError,
    },
    /// A socket syscall failed.
    #[error("{call} failed on the AF_XDP socket")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
}

/// One AF_XDP socket on one (interface, RX queue), with its UMEM and frame pool.
///
/// Field order is drop order: the rings (each holding a reference to the socket) go first, so the
/// socket is closed before the UMEM it was bound to is unregistered and unmapped (xsk-rs also
/// keeps the UMEM alive through the socket, so this is belt and braces).
pub struct XskPort {
    /// Our mapping of the TX ring: unmapped before the socket closes.
    txring: TxRing,
    /// Kept for the socket's lifetime and for `sendto` kicks; never used to produce.
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    umem: UmemArea,
    pool: FramePool,
    /// Current descriptor of each frame (address as last received; length set on transmit).
    descs: Vec<FrameDesc>,
    /// Scratch descriptors for ring calls; fixed length, never reallocated.
    scratch: Vec<FrameDesc>,
    /// Frames and slabs in state `Tx` with their wire length, in transmit order. Capacity =
    /// frame count + slab count, so it never grows.
    tx_queued: Vec<(u32, usize)>,
    /// Per slab: TX descriptors not yet returned on the completion ring.
    slab_pending: Vec<u8>,
    /// The multi-buffer packet being received, if its last fragment has not arrived yet.
    rx_partial: Option<Partial>,
    jumbo: JumboStats,
    /// Bound with `XDP_USE_SG`: slabs are in use.
    multi_buffer: bool,
    /// Frames `refill` keeps with the kernel now: starts at [`FILL_TARGET_START`] and doubles
    /// up to `fill_max` after a burst (see there).
    fill_target: u32,
    /// `fill_ring_size`, or the frame count if smaller.
    fill_max: u32,
    /// Frames the kernel held for receiving after the last `refill`.
    fill_held: u32,
    /// The UMEM as an io_uring arena and each frame's chunk token (it holds a clone of the
    /// xsk-rs `Umem`, so the mapping outlives every ring that registered it).
    lender: Lender,
    bind_mode: BindMode,
    interface: String,
    queue_id: u32,
    /// The XDP program's counters of this queue, once the program it is registered with
    /// handed them over ([`XskPort::set_program_counters`]).
    program_counters: Option<XdpQueueCounters>,
}

/// A multi-buffer packet being copied into a slab.
#[derive(Clone, Copy, Debug)]
struct Partial {
    /// The slab receiving it; `None` if none was free (the packet is dropped).
    slab: Option<u32>,
    /// Bytes copied so far.
    len: usize,
    /// The packet outgrew the slab (dropped).
    too_long: bool,
}

/// UMEM address of the first byte of slab `index` (pool index, `>= frames`).
fn slab_addr(frames: u32, index: u32) -> usize {
    debug_assert!(index >= frames);
    (frames as usize + (index - frames) as usize * SLAB_CHUNKS) * FRAME_SIZE
}

/// Number of chunks a packet of `len` bytes occupies in a slab.
fn slab_descs(len: usize) -> usize {
    (PACKET_OFFSET + len).div_ceil(FRAME_SIZE)
}

impl std::fmt::Debug for XskPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskPort")
            .field("interface", &self.interface)
            .field("queue_id", &self.queue_id)
            .field("bind_mode", &self.bind_mode)
            .field("counts", &self.pool.counts())
            .finish_non_exhaustive()
    }
}

impl XskPort {
    /// Creates a UMEM and binds a socket to `interface` queue `queue_id` (in the calling thread's
    /// network namespace), then fills the fill ring.
    pub fn bind(interface: &str, queue_id: u32, config: &XskConfig) -> Result<XskPort, XskError> {
        validate(config)?;
        // Multi-buffer and slabs only where frames can be longer than a chunk.
        let jumbo = crate::sys::interface::mtu(interface).map_or(true, |mtu| {
            usize::try_from(mtu).map_or(true, |mtu| {
                mtu + crate::wire::VLAN_HEADER_LEN > FRAME_CAPACITY
            })
        });
        let slab_chunks = if jumbo {
            config.slab_count() as usize * SLAB_CHUNKS
        } else {
            0
        };
        let chunks = u32::try_from(config.frame_count as usize + slab_chunks).map_err(|_| {
            XskError::Config {
                what: "too many frames",
            }
        })?;
        let umem = UmemArea::new(chunks, config.fill_ring_size, config.comp_ring_size)?;
        let modes: &[BindMode] = match config.bind {
            BindPreference::Auto => &[BindMode::ZeroCopy, BindMode::Copy],
            BindPreference::ZeroCopy => &[BindMode::ZeroCopy],
            BindPreference::Copy => &[BindMode::Copy],
        };
        // At a jumbo MTU, multi-buffer first (in copy mode rather than zero-copy without it);
        // a kernel or driver without it (before Linux 6.6 in copy mode) gets a port without
        // slabs, limited to one chunk per frame.
        let multi_buffer_options: &[bool] = if jumbo { &[true, false] } else { &[false] };
        let attempts: Vec<(BindMode, bool)> = multi_buffer_options
            .iter()
            .flat_map(|&sg| modes.iter().map(move |&mode| (mode, sg)))
            .collect();
        let if_name = interface
            .parse::<xsk_rs::config::Interface>()
            .map_err(|_| XskError::Config {
                what: "interface name contains a NUL byte",
            })?;
        let mut last_error = None;
        for &(mode, multi_buffer) in &attempts {
            let socket_config = socket_config(config, mode, multi_buffer)?;
            // SAFETY: the UMEM is fresh and not shared with any other socket, so the
            // INHIBIT_PROG_LOAD requirement for shared UMEMs does not apply (and we set that
            // flag anyway: our own XDP program does the redirect). xsk-rs keeps the fill and
            // completion rings it was handed when a bind fails, so a retry on the same UMEM is
            // supported.
            let created =
                unsafe { xsk_rs::Socket::new(socket_config, umem.xsk(), &if_name, queue_id) };
            match created {
                Ok((tx, rx, Some((fill, comp)))) => {
                    if jumbo && !multi_buffer {
                        tracing::warn!(
                            interface,
                            queue_id,
                            "no multi-buffer AF_XDP (XDP_USE_SG): frames limited to one \
                             4 KiB chunk (7 sectors) despite the jumbo MTU"
                        );
                    }
                    tracing::info!(
                        interface,
                        queue_id,
                        ?mode,
                        multi_buffer,
                        "AF_XDP socket bound"
                    );
                    let rings = Rings { tx, rx, fill, comp };
                    let bound = Bound {
                        mode,
                        multi_buffer,
                        interface,
                        queue_id,
                    };
                    let mut port = Self::assemble(umem, rings, config, bound)?;
                    port.refill()?;
                    return Ok(port);
                }
                Ok((_, _, None)) => {
                    unreachable!("a fresh UMEM always gets its own fill and completion rings")
                }
                Err(source) => {
                    let errno = bind_errno(&source);
                    if multi_buffer {
                        tracing::debug!(interface, queue_id, ?mode, ?errno, "XDP_USE_SG refused");
                    }
                    if mode == BindMode::ZeroCopy && modes.len() > 1 {
                        tracing::info!(
                            interface,
                            queue_id,
                            ?errno,
                            "zero-copy bind refused, using copy mode"
                        );
                    }
                    last_error = Some(XskError::Bind {
                        interface: interface.to_owned(),
                        queue_id,
                        mode: if mode == BindMode::ZeroCopy {
                            "zero-copy"
                        } else {
                            "copy mode"
                        },
                        hint: bind_hint(errno),
                        source,
                    });
                }
            }
        }
        Err(last_error.expect("at least one bind mode was tried"))
    }

    fn assemble(
        umem: UmemArea,
        rings: Rings,
        config: &XskConfig,
        bound: Bound<'_>,
    ) -> Result<Self, XskError> {
        let Rings { tx, rx, fill, comp } = rings;
        let frame_count = config.frame_count;
        let slab_count = if bound.multi_buffer {
            config.slab_count()
        } else {
            0
        };
        let descs: Vec<FrameDesc> = (0..frame_count)
            .map(|index| umem.canonical(index))
            .collect();
        let scratch_len =
            (config.fill_ring_size.max(config.comp_ring_size) as usize).max(RX_BURST_MAX);
        let scratch = vec![umem.canonical(0); scratch_len];
        let tx_queued = Vec::with_capacity((frame_count + slab_count) as usize);
        // SAFETY: the UMEM mapping starts with `frame_count` frames of FRAME_SIZE bytes from
        // `base_ptr`, page-aligned; the clone of the xsk-rs `Umem` kept by the arena owns the
        // mapping, so it stays mapped as long as the arena. The arena's chunk tokens are minted
        // once, in the lender, and handed out only for frames the application holds (`lend`),
        // so the kernel's AF_XDP side never owns a chunk whose token is out.
        let io_arena = unsafe {
            Arena::from_raw_kept(
                umem.base_ptr().as_ptr(),
                FRAME_SIZE,
                frame_count as usize,
                Box::new(umem.xsk().clone()),
            )
        }
        .expect("the UMEM is a page-aligned mapping of whole frames");
        let slab_arena = (slab_count > 0).then(|| {
            let offset = frame_count as usize * FRAME_SIZE;
            assert!(offset + slab_count as usize * SLAB_SIZE <= umem.len());
            // SAFETY: the slab region follows the frames inside the same mapping (checked
            // above), page-aligned; the `Umem` clone keeps it mapped. Slabs are never put on the
            // fill ring, and a slab's token is lent only while the application holds the slab.
            unsafe {
                Arena::from_raw_kept(
                    umem.base_ptr().as_ptr().add(offset),
                    SLAB_SIZE,
                    slab_count as usize,
                    Box::new(umem.xsk().clone()),
                )
            }
            .expect("the slab region is a page-aligned run of whole slabs")
        });
        let lender = Lender::with_slabs(io_arena, slab_arena);
        let txring = TxRing::map(rx.fd().as_raw_fd(), config.tx_ring_size).map_err(|source| {
            XskError::Syscall {
                call: "mmap (TX ring)",
                source,
            }
        })?;
        Ok(Self {
            txring,
            lender,
            tx,
            rx,
            fill,
            comp,
            pool: FramePool::with_slabs(frame_count, slab_count),
            descs,
            scratch,
            tx_queued,
            slab_pending: vec![0; slab_count as usize],
            rx_partial: None,
            jumbo: JumboStats::default(),
            multi_buffer: bound.multi_buffer,
            fill_target: FILL_TARGET_START.min(config.fill_ring_size.min(frame_count)),
            fill_max: config.fill_ring_size.min(frame_count),
            fill_held: 0,
            bind_mode: bound.mode,
            interface: bound.interface.to_owned(),
            queue_id: bound.queue_id,
            program_counters: None,
            umem,
        })
    }

    /// The UMEM as an arena for io_uring registration: chunk `i` is frame `i`.
    pub fn io_arena(&self) -> &Arc<Arena> {
        self.lender.arena()
    }

    /// The jumbo slabs as a second io_uring arena (chunk `j` = slab `j`, [`SLAB_SIZE`] bytes,
    /// packet at chunk + 476, payload at chunk + 512), or `None` if the port has no slabs
    /// (bound without multi-buffer support). A slab frame's [`Self::lend`] returns a chunk of
    /// this arena.
    pub fn slab_arena(&self) -> Option<&Arc<Arena>> {
        self.lender.slab_arena()
    }

    /// Longest frame (Ethernet header to payload end, without FCS) this port can receive and
    /// transmit: a slab's capacity with multi-buffer, otherwise what one chunk holds.
    pub fn max_frame_len(&self) -> usize {
        if self.multi_buffer {
            SLAB_CAPACITY
        } else {
            FRAME_CAPACITY
        }
    }

    /// True if bound with `XDP_USE_SG` (jumbo frames work).
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer
    }

    /// Counters of the jumbo path (bounce copies, drops, upgrades).
    pub fn jumbo_stats(&self) -> JumboStats {
        self.jumbo
    }

    /// Slabs per ownership state (`fill` is always 0).
    pub fn slab_counts(&self) -> FrameCounts {
        self.pool.slab_counts()
    }

    /// True if `frame` is a jumbo slab.
    pub fn is_slab(&self, frame: &Frame) -> bool {
        self.pool.is_slab(frame.index())
    }

    /// Makes sure `frame` can hold `needed` bytes from its packet start: returns it unchanged
    /// if it already can, otherwise copies its received bytes (`frame.len()`, the request
    /// headers) into a free slab, releases the original frame and returns the slab frame (same
    /// `len`, same offsets). `Err(frame)` gives the frame back when no slab is free: keep it and
    /// retry later (slabs come back with TX completions), never drop the request.
    ///
    /// Panics if `needed` exceeds [`Self::max_frame_len`].
    pub fn upgrade(&mut self, frame: Frame, needed: usize) -> Result<Frame, Frame> {
        if self.frame_capacity(&frame) >= needed {
            return Ok(frame);
        }
        assert!(
            needed <= self.max_frame_len(),
            "upgrade to {needed} bytes: this port carries at most {}",
            self.max_frame_len()
        );
        let Some(slab) = self.pool.take_free_slab() else {
            self.jumbo.upgrade_no_slab += 1;
            return Err(frame);
        };
        let len = frame.len();
        let from = self.packet_addr(&frame);
        let to = slab_addr(self.pool.frame_count(), slab) + PACKET_OFFSET;
        {
            // SAFETY: `frame` is held by the application (checked in `packet_addr`) and `slab`
            // was just taken from the free list (state Rx, no handle yet): neither is on a ring,
            // they are different chunks, and no other slice of either exists.
            let (src, dst) = unsafe { (self.umem.span(from, len), self.umem.span_mut(to, len)) };
            dst.copy_from_slice(src);
        }
        self.pool.release(frame);
        self.jumbo.upgrades += 1;
        Ok(self.pool.handle(slab, len))
    }

    /// A free slab for building a jumbo frame from scratch, or `None` if none is free.
    pub fn alloc_slab(&mut self) -> Option<Frame> {
        let slab = self.pool.take_free_slab()?;
        Some(self.pool.handle(slab, 0))
    }

    /// Offset of `frame`'s packet start inside the chunk [`Self::lend`] returns for it
    /// (chunk + 476 for frames and slabs alike, unless the kernel moved the packet).
    pub fn offset_in_chunk(&self, frame: &Frame) -> usize {
        let addr = self.packet_addr(frame);
        if self.pool.is_slab(frame.index()) {
            addr - slab_addr(self.pool.frame_count(), frame.index())
        } else {
            addr % FRAME_SIZE
        }
    }

    /// UMEM address of `frame`'s first packet byte (checks the handle).
    fn packet_addr(&self, frame: &Frame) -> usize {
        self.pool.check(frame);
        let index = frame.index();
        if self.pool.is_slab(index) {
            slab_addr(self.pool.frame_count(), index) + PACKET_OFFSET
        } else {
            self.descs[index as usize].addr()
        }
    }

    /// Lends a held frame to a storage I/O: returns the chunk token the engine needs to read
    /// into or write from the frame. The frame stays held by the application (it is not on any
    /// ring) until [`Self::reclaim`] gives the handle back; without a handle it cannot be
    /// transmitted or released meanwhile.
    pub fn lend(&mut self, frame: Frame) -> Chunk {
        self.lender.lend(&self.pool, frame)
    }

    /// Takes back a chunk lent by [`Self::lend`] and returns the frame's handle.
    pub fn reclaim(&mut self, chunk: Chunk) -> Frame {
        self.lender.reclaim(&self.pool, chunk)
    }

    /// Zero-copy or copy mode.
    pub fn bind_mode(&self) -> BindMode {
        self.bind_mode
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The RX queue.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
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

    /// The socket fd, for `XdpProgram::insert_socket` and for `poll`/`epoll`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the socket, which the rings keep open for as long as `self`
        // lives; the returned borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.rx.fd().as_raw_fd()) }
    }

    /// Frames per ownership state (they always sum to the frame count; slabs are counted in
    /// [`Self::slab_counts`]).
    pub fn frame_counts(&self) -> FrameCounts {
        self.pool.counts()
    }

    /// Start of the UMEM mapping (for registering it as one io_uring fixed buffer).
    pub fn umem_base_ptr(&self) -> NonNull<u8> {
        self.umem.base_ptr()
    }

    /// Length of the UMEM mapping in bytes: the frames, then the slabs
    /// (`(frame_count + 3 * slab_count) * frame_size`).
    pub fn umem_len(&self) -> usize {
        self.umem.len()
    }

    /// Size of one frame (chunk).
    pub fn frame_size(&self) -> usize {
        FRAME_SIZE
    }

    /// Offset of `frame`'s first packet byte from the UMEM start; the frame's bytes are
    /// `umem_base_ptr() + offset .. + frame_capacity(frame)`. With a fixed-buffer registration of
    /// the whole UMEM, io_uring can read a disk block straight to `offset + 36` (chunk + 512).
    ///
    /// While an io_uring operation targets the frame, keep the handle (the frame stays owned by
    /// the application, so the kernel's AF_XDP side will not touch it), do not call
    /// [`Self::data`]/[`Self::data_mut`] on it, and transmit or release it only after the
    /// completion arrived.
    pub fn umem_offset(&self, frame: &Frame) -> usize {
        self.packet_addr(frame)
    }

    /// Bytes `frame` can hold, from its packet start to the end of its chunk (of its slab for
    /// a slab frame).
    pub fn frame_capacity(&self, frame: &Frame) -> usize {
        let addr = self.packet_addr(frame);
        if self.pool.is_slab(frame.index()) {
            slab_addr(self.pool.frame_count(), frame.index()) + SLAB_SIZE - addr
        } else {
            UmemArea::capacity_at(addr)
        }
    }

    /// The received packet (`frame.len()` bytes; a jumbo packet is contiguous in its slab).
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        let addr = self.packet_addr(frame);
        assert!(frame.len() <= self.frame_capacity(frame));
        // SAFETY: `check` (in `packet_addr`) proved the frame or slab is held by the
        // application (state Rx), so the kernel does not touch it, and the shared borrow of the
        // unique handle rules out a concurrent `data_mut` of the same frame. The range stays in
        // the frame's chunk or slab (asserted above).
        unsafe { self.umem.span(addr, frame.len()) }
    }

    /// The whole frame buffer, from the packet start to the end of the chunk or slab
    /// ([`Self::frame_capacity`] bytes), for building a reply in place. The first `frame.len()`
    /// bytes are the received packet.
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let addr = self.packet_addr(frame);
        let capacity = self.frame_capacity(frame);
        // SAFETY: as in `data`, plus the exclusive borrow of the unique handle guarantees no
        // other slice of this frame exists while this one lives.
        unsafe { self.umem.span_mut(addr, capacity) }
    }

    /// Posts free frames to the fill ring until the kernel holds [`Self::fill_target`] frames
    /// for receiving (or the free list is empty), and kicks the kernel if it asked for a
    /// wakeup. Returns the number of frames posted.
    ///
    /// The target starts at [`FILL_TARGET_START`] and doubles (up to `fill_ring_size`) when
    /// the kernel, given the whole target last time, now holds less than a quarter of it: a
    /// burst came close to finding the ring empty, which drops frames.
    pub fn refill(&mut self) -> Result<usize, XskError> {
        let held = self.pool.count(FrameState::Fill);
        if self.fill_held >= self.fill_target
            && held < self.fill_target / 4
            && self.fill_target < self.fill_max
        {
            self.fill_target = (self.fill_target * 2).min(self.fill_max);
            tracing::info!(
                interface = %self.interface,
                queue = self.queue_id,
                frames = self.fill_target,
                "a burst nearly emptied the fill ring: deepened"
            );
        }
        self.post_fill(self.fill_target)
    }

    /// Posts free frames until the kernel holds `target` (or the free list is empty).
    fn post_fill(&mut self, target: u32) -> Result<usize, XskError> {
        let held = self.pool.count(FrameState::Fill);
        let wanted = target
            .saturating_sub(held)
            .min(self.pool.count(FrameState::Free));
        let room = self.fill.nb_free(wanted);
        let count = wanted.min(room) as usize;
        if count > 0 {
            for slot in 0..count {
                let index = self
                    .pool
                    .take_free(FrameState::Fill)
                    .expect("counted as free");
                self.scratch[slot] = self.umem.canonical(index);
            }
            // SAFETY: every descriptor in `scratch[..count]` is a frame of this UMEM that just
            // moved Free -> Fill, so no one else uses it and it is on no other ring.
            let posted = unsafe { self.fill.produce(&self.scratch[..count]) };
            assert_eq!(
                posted, count,
                "fill ring had room for {room} but took {posted}"
            );
        }
        self.fill_held = self.pool.count(FrameState::Fill);
        if self.fill.needs_wakeup() {
            self.fill
                .wakeup(self.rx.fd_mut(), 0)
                .map_err(|source| XskError::Syscall {
                    call: "poll (fill wakeup)",
                    source,
                })?;
        }
        Ok(count)
    }

    /// Frames `refill` keeps with the kernel for receiving now (see [`Self::refill`]).
    pub fn fill_target(&self) -> u32 {
        self.fill_target
    }

    /// Takes up to `max` (at most [`RX_BURST_MAX`]) received frames off the RX ring. No syscall.
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
        if max == 0 {
            return;
        }
        // SAFETY: the descriptors are overwritten with frames of this UMEM that the kernel
        // returns on the RX ring; the state transition below asserts each was on the fill ring.
        let received = unsafe { self.rx.consume(&mut self.scratch[..max]) };
        for slot in 0..received {
            let desc = self.scratch[slot];
            let index = self.umem.index_of(desc.addr());
            assert!(
                !self.pool.is_slab(index),
                "the kernel returned slab chunk {index} on the RX ring"
            );
            self.pool
                .transition(index, FrameState::Fill, FrameState::Rx);
            if self.rx_partial.is_none() && !desc.has_more_frames() {
                // The kernel wrote the frame on the core that ran the XDP program: start
                // fetching its headers now, so the misses of a whole burst overlap instead of
                // stalling each request in turn (the first read of a frame was ~10 % of a
                // busy worker).
                crate::sys::cpu::prefetch(self.umem.base_ptr().as_ptr().wrapping_add(desc.addr()));
                self.descs[index as usize] = desc;
                burst.push(self.pool.handle(index, desc.lengths().data()));
            } else {
                assert!(self.multi_buffer, "multi-buffer frame without XDP_USE_SG");
                if let Some(frame) = self.rx_fragment(index, &desc) {
                    burst.push(frame);
                }
            }
        }
    }

    /// Copies one fragment of a multi-buffer packet (frame `index`, just moved to Rx) into the
    /// packet's slab and frees the fragment; returns the slab frame after the last fragment.
    fn rx_fragment(&mut self, index: u32, desc: &FrameDesc) -> Option<Frame> {
        let frames = self.pool.frame_count();
        let pool = &mut self.pool;
        let partial = self.rx_partial.get_or_insert_with(|| Partial {
            slab: pool.take_free_slab(),
            len: 0,
            too_long: false,
        });
        let piece = desc.lengths().data();
        if let Some(slab) = partial.slab {
            if partial.len + piece <= SLAB_CAPACITY && !partial.too_long {
                let to = slab_addr(frames, slab) + PACKET_OFFSET + partial.len;
                // SAFETY: the fragment's chunk was just returned by the kernel (state Rx, no
                // handle) and the slab is held for this packet (state Rx, no handle yet): both
                // are ours, they are disjoint, and no other slice of either exists. The piece
                // stays in its chunk (the kernel bounds it) and in the slab (checked above).
                let (src, dst) = unsafe {
                    (
                        self.umem.bytes(desc.addr(), piece),
                        self.umem.span_mut(to, piece),
                    )
                };
                dst.copy_from_slice(src);
                partial.len += piece;
            } else {
                partial.too_long = true;
            }
        }
        self.pool.put_free(index, FrameState::Rx);
        if desc.has_more_frames() {
            return None;
        }
        let done = self.rx_partial.take().expect("set above");
        match done.slab {
            Some(slab) if !done.too_long => {
                self.jumbo.bounce_frames += 1;
                self.jumbo.bounce_bytes += done.len as u64;
                Some(self.pool.handle(slab, done.len))
            }
            Some(slab) => {
                self.pool.put_free(slab, FrameState::Rx);
                self.jumbo.rx_too_long += 1;
                None
            }
            None => {
                self.jumbo.rx_no_slab += 1;
                None
            }
        }
    }

    /// Waits until the RX ring has frames or `timeout` passes; true if frames are ready.
    ///
    /// First gives the kernel the whole fill ring (`fill_ring_size` frames, if free): a burst
    /// that wakes a sleeping worker finds room, and once the worker runs again `refill` lets
    /// the ring drain back to [`Self::fill_target`] (hot frames).
    pub fn wait_rx(&mut self, timeout: Duration) -> Result<bool, XskError> {
        self.fill_all()?;
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        self.rx.poll(millis).map_err(|source| XskError::Syscall {
            call: "poll",
            source,
        })
    }

    /// Hands the kernel every free frame, up to `fill-ring-size`, before the worker stops
    /// polling for a while (a sleep or a nap): a burst meanwhile then finds room.
    pub fn fill_all(&mut self) -> Result<(), XskError> {
        self.post_fill(self.fill_max).map(drop)
    }

    /// A free frame for building a packet from scratch (e.g. an advertisement), or `None` if
    /// every frame is in use.
    pub fn alloc(&mut self) -> Option<Frame> {
        let index = self.pool.take_free(FrameState::Rx)?;
        self.descs[index as usize] = self.umem.canonical(index);
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

    /// Moves queued frames onto the TX ring (as many as fit) and kicks the kernel with `sendto`
    /// if it asked for a wakeup. Returns the number moved; the rest stay queued for the next
    /// call.
    ///
    /// Zero-copy: one kick (it only schedules the driver). Copy mode: the kernel sends at most 32
    /// frames per `sendto` (`TX_BATCH_SIZE` in net/xdp/xsk.c) and leaves the rest on the ring, so
    /// this kicks until the ring is drained or a kick makes no progress (device busy; the next
    /// call retries) — one `sendto` per 32 frames.
    pub fn flush_tx(&mut self) -> Result<usize, XskError> {
        let mut room = self.txring.free() as usize;
        let frames = self.pool.frame_count();
        let mut count = 0;
        for &(index, len) in &self.tx_queued {
            // Each packet goes on the ring whole: one descriptor per chunk it spans.
            let slab = self.pool.is_slab(index).then(|| slab_addr(frames, index));
            let needed = slab.map_or(1, |_| slab_descs(len));
            if needed > room {
                break;
            }
            // The handle was given up in `transmit`; from here the kernel owns the frame.
            self.pool
                .transition(index, FrameState::Tx, FrameState::Completion);
            match slab {
                None => self.txring.push(self.descs[index as usize].addr(), len, 0),
                Some(base) => {
                    let mut addr = base + PACKET_OFFSET;
                    let mut left = len;
                    for piece in 0..needed {
                        let chunk_left = FRAME_SIZE - addr % FRAME_SIZE;
                        let take = left.min(chunk_left);
                        let last = piece + 1 == needed;
                        let options = if last { 0 } else { libc::XDP_PKT_CONTD };
                        self.txring.push(addr, take, options);
                        addr += take;
                        left -= take;
                    }
                    debug_assert_eq!(left, 0);
                    self.slab_pending[(index - frames) as usize] =
                        u8::try_from(needed).expect("a slab spans 3 chunks");
                }
            }
            room -= needed;
            count += 1;
        }
        if count > 0 {
            self.txring.submit();
            self.tx_queued.drain(..count);
        }
        let size = self.txring.size();
        let mut free = self.txring.free();
        if (count == 0 && free == size) || !self.txring.needs_wakeup() {
            return Ok(count);
        }
        loop {
            self.tx.wakeup().map_err(|source| XskError::Syscall {
                call: "sendto (TX kick)",
                source,
            })?;
            let before = free;
            free = self.txring.free();
            let drained = free == size;
            if drained || free == before || self.bind_mode == BindMode::ZeroCopy {
                return Ok(count);
            }
        }
    }

    /// Returns frames the kernel has finished sending to the free list. Returns how many.
    pub fn reap_completions(&mut self) -> usize {
        let mut total = 0;
        loop {
            // SAFETY: the descriptors are overwritten with frames of this UMEM from the
            // completion ring; the transition below asserts each was on the TX ring.
            let done = unsafe { self.comp.consume(&mut self.scratch) };
            let frames = self.pool.frame_count();
            for slot in 0..done {
                let chunk = self.umem.index_of(self.scratch[slot].addr());
                if chunk < frames {
                    self.pool.put_free(chunk, FrameState::Completion);
                    continue;
                }
                // A slab comes back once per descriptor; it is free after the last one.
                let slab = (chunk - frames) as usize / SLAB_CHUNKS;
                let index = frames + u32::try_from(slab).expect("slab index fits u32");
                let pending = &mut self.slab_pending[slab];
                assert!(
                    *pending > 0,
                    "completion for slab {index} that was not sent"
                );
                *pending -= 1;
                if *pending == 0 {
                    self.pool.put_free(index, FrameState::Completion);
                }
            }
            total += done;
            if done < self.scratch.len() {
                return total;
            }
        }
    }

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

    /// Sets the busy-poll socket options.
    pub fn set_busy_poll(&self, options: BusyPoll) -> Result<(), XskError> {
        set_int_option(
            self.fd(),
            libc::SO_PREFER_BUSY_POLL,
            i32::from(options.prefer),
            "SO_PREFER_BUSY_POLL",
        )?;
        let usecs = i32::try_from(options.usecs).map_err(|_| XskError::Config {
            what: "busy-poll usecs",
        })?;
        set_int_option(self.fd(), libc::SO_BUSY_POLL, usecs, "SO_BUSY_POLL")?;
        if options.budget > 0 {
            let budget = i32::try_from(options.budget).map_err(|_| XskError::Config {
                what: "busy-poll budget",
            })?;
            set_int_option(
                self.fd(),
                libc::SO_BUSY_POLL_BUDGET,
                budget,
                "SO_BUSY_POLL_BUDGET",
            )?;
        }
        Ok(())
    }
}

fn validate(config: &XskConfig) -> Result<(), XskError> {
    let rings = [
        config.fill_ring_size,
        config.comp_ring_size,
        config.rx_ring_size,
        config.tx_ring_size,
    ];
    if rings.iter().any(|size| !size.is_power_of_two()) {
        return Err(XskError::Config {
            what: "ring sizes must be powers of two",
        });
    }
    if config.frame_count == 0 {
        return Err(XskError::Config {
            what: "frame_count must be at least 1",
        });
    }
    Ok(())
}

/// The rings xsk-rs hands back on a successful bind.
struct Rings {
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
}

/// What a successful bind got.
struct Bound<'a> {
    mode: BindMode,
    multi_buffer: bool,
    interface: &'a str,
    queue_id: u32,
}

fn socket_config(
    config: &XskConfig,
    mode: BindMode,
    multi_buffer: bool,
) -> Result<SocketConfig, XskError> {
    let size = |size| QueueSize::new(size).map_err(|_| XskError::Config { what: "ring size" });
    let mut copy_flag = match mode {
        BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
        BindMode::Copy => BindFlags::XDP_COPY,
    };
    if multi_buffer {
        copy_flag |= BindFlags::XDP_USE_SG;
    }
    Ok(SocketConfig::builder()
        .rx_queue_size(size(config.rx_ring_size)?)
        .tx_queue_size(size(config.tx_ring_size)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(copy_flag | BindFlags::XDP_USE_NEED_WAKEUP)
        .build())
}

/// The kernel errno behind an xsk-rs socket error, if any.
fn bind_errno(error: &xsk_rs::socket::SocketCreateError) -> Option<i32> {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error)
}

fn bind_hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EPERM | libc::EACCES) => {
            "permission denied: run as root (needs CAP_NET_RAW and CAP_NET_ADMIN)"
        }
        Some(libc::ENODEV) => "no such interface in this network namespace",
        Some(libc::EBUSY) => "another AF_XDP socket is already bound to this queue",
        Some(libc::EOPNOTSUPP) => "the driver does not support zero-copy AF_XDP (use copy mode)",
        Some(libc::EINVAL) => "the queue id does not exist on this interface (check ethtool -l)",
        Some(libc::ENOMEM | libc::ENOBUFS) => {
            "out of locked memory: run as root or raise RLIMIT_MEMLOCK (ulimit -l), or use \
             smaller rings"
        }
        _ => "unexpected error from the kernel",
    }
}

fn set_int_option(
    fd: BorrowedFd<'_>,
    option: i32,
    value: i32,
    name: &'static str,
) -> Result<(), XskError> {
    let len = crate::sys::syscall::socklen::<i32>();
    // SAFETY: `fd` is an open socket for the duration of the call; the option value points at a
    // live `i32` of the length passed, which the kernel only reads.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            len,
        )
    };
    if ret != 0 {
        return Err(XskError::Syscall {
            call: name,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_config_validation() {
        assert!(validate(&XskConfig::default()).is_ok());
        let bad_ring = XskConfig {
            rx_ring_size: 1000,
            ..XskConfig::default()
        };
        assert!(matches!(validate(&bad_ring), Err(XskError::Config { .. })));
        let no_frames = XskConfig {
            frame_count: 0,
            ..XskConfig::default()
        };
        assert!(matches!(validate(&no_frames), Err(XskError::Config { .. })));
    }

    #[test]
    fn test_bind_hints_name_the_fix() {
        assert!(bind_hint(Some(libc::EPERM)).contains("run as root"));
        assert!(bind_hint(Some(libc::EOPNOTSUPP)).contains("copy mode"));
        assert!(bind_hint(Some(libc::EBUSY)).contains("already bound"));
    }
}

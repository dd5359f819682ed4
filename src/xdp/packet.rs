//! [`PacketPort`]: the AF_PACKET fallback transport, with the same methods as
//! [`XskPort`](super::socket::XskPort).
//!
//! Where XDP cannot be attached or an AF_XDP socket cannot be bound (no driver support, no BPF
//! privileges), the dataplane runs over one `AF_PACKET` `SOCK_RAW` socket per interface instead.
//! The caller decides when to fall back; this module only builds the port.
//!
//! Contract: the port owns a frame area laid out exactly like the XDP UMEM (see `umem.rs`:
//! 4096-byte chunks, packet at chunk + 476, payload after a 36-byte AoE/ATA header at chunk + 512)
//! and a [`FramePool`], so the data path gets the same move-only [`Frame`] handles and the same
//! loop works unchanged:
//!
//! ```text
//! loop {
//!     port.reap_completions();          // frames copied into the TX ring since last time
//!     port.refill()?;                   // no-op: there is no fill ring
//!     for frame in port.rx_burst(32) {  // RX ring -> copy into a free frame
//!         // read port.data(&frame), build the reply in port.data_mut(&mut frame)
//!         port.transmit(frame, reply_len);   // or port.release(frame)
//!     }
//!     port.flush_tx()?;                 // queued frames -> TX ring, one send() per batch
//! }
//! ```
//!
//! How it works:
//! - RX: an mmap ring (`PACKET_RX_RING`) in one of two layouts. `TPACKET_V3`
//!   ([`RingVersion::V3`]): the kernel packs packets into the current block and hands the whole
//!   block to user space when it is full or its retire timeout expires. `TPACKET_V2`
//!   ([`RingVersion::V2`], the default, see Hazards for why): one fixed slot per packet,
//!   visible to user space at once. `rx_burst` copies each packet into a free
//!   frame (the one copy of the receive path, counted in [`PacketStats::rx_copy_bytes`]) and
//!   returns each block or slot to the kernel as soon as its last packet is copied. Frames are
//!   taken from the pool only when a packet is there: no frame waits in the kernel (state
//!   `Fill` is never used).
//! - TX: a TX ring (`PACKET_TX_RING`; with `TPACKET_V3`, Linux 4.11+) of fixed 4096-byte
//!   slots (16 KiB on a jumbo port). `flush_tx` copies each queued frame into a free slot (the one copy of the transmit
//!   path), marks it `TP_STATUS_SEND_REQUEST`, frees the frame at once and kicks the kernel with
//!   one `send(fd, NULL, 0, MSG_DONTWAIT)` for the whole batch. `PACKET_QDISC_BYPASS` hands
//!   frames straight to the driver. The kernel attaches ring pages to the skb as zero-copy
//!   fragments and copies them before they reach another socket or namespace, and marks a slot
//!   free only when its skb is gone, so a slot is never reused while its bytes are in use.
//! - Filter: a classic BPF program (`SO_ATTACH_FILTER`, see [`aoe_request_filter`]) accepts
//!   only AoE version 1 requests (response flag clear), untagged or behind one 802.1Q tag, and
//!   not our own host's outgoing frames. Of those, `rx_burst` takes only the ones addressed to
//!   the interface's MAC or to broadcast (the port's [`DstFilter`]): the same frames the XDP
//!   program redirects. A request for another host is counted
//!   ([`PacketStats::rx_foreign_dst`]) and its ring slot released without a copy. The check
//!   is made there rather than in the filter so that such requests can be counted, and on the
//!   destination MAC rather than on the ring's `sll_pkttype`, which bound to `ETH_P_AOE`
//!   (`vlan: false`) says `PACKET_OTHERHOST` for every tagged frame no VLAN device claims,
//!   whatever its destination.
//!
//! VLAN tags: the kernel removes an 802.1Q tag from a received frame in software
//! (`skb_vlan_untag` in `__netif_receive_skb_core`) before delivering it to packet sockets.
//! - With [`PacketConfig::vlan`] (the default) the socket is bound to `ETH_P_ALL`. Such
//!   "taps" run before the kernel drops the tag, the ring header carries it
//!   (`TP_STATUS_VLAN_VALID`), and `rx_burst` puts it back into the frame, so the data path sees
//!   the frame as it was on the wire, tag in place, exactly as with XDP (its payload then sits
//!   at chunk + 516: see `umem::payload_is_aligned`). The filter runs for every frame on the
//!   interface; this host's outgoing frames are skipped by `PACKET_IGNORE_OUTGOING`.
//! - Without it the socket is bound to `ETH_P_AOE` (0x88A2): the kernel delivers a tagged AoE
//!   frame (as `PACKET_OTHERHOST` when no VLAN device claims it) with the tag already removed
//!   and no trace of it in the ring header; a reply would go out untagged, on the wrong VLAN.
//!   Use this only where AoE is never tagged. `tests/packet_port.rs` checks both behaviours.
//!
//! Hazards:
//! - Latency with `TPACKET_V3`: a block reaches user space only when it is full or its retire
//!   timeout (at least 1 ms) expires. A request/response protocol with a window (AoE: at most
//!   64 frames per target MAC, 16 with vblade-style buffer counts) rarely fills a block, so each
//!   window waits for the timeout. Measured on veth (2 shared vCPUs, noisy; two ports bouncing
//!   60-byte requests at each other, `test_pingpong_rates` in `tests/packet_port.rs`), round
//!   trips/s for V3 (4 KiB blocks) vs V2: window 1, ~0.9 k vs 45-53 k (1.0 ms vs ~22 µs per
//!   round trip); window 16, ~15 k vs 140-240 k; window 64, 110-137 k (37-58 k with 16 KiB
//!   blocks) vs 130-260 k; window 256, comparable (110-190 k). V3 pays off only with windows
//!   far above what one AoE initiator uses, hence V2 is the default. If V3 is chosen,
//!   keep blocks at 4 KiB so they fill (and reach user space) sooner.
//! - Jumbo frames: with an RX ring whose slots (V2) or blocks (V3) hold more than a chunk plus
//!   one sector ([`PacketConfig::for_mtu`] picks one for MTU 9000), the port also has jumbo
//!   slabs laid out as in `umem.rs` (a second io_uring arena), and 16 KiB TX slots. A frame
//!   longer than a chunk is copied from the ring into a free slab (still the one RX copy;
//!   `rx_burst` stops, leaving it in the ring, while no slab is free), and
//!   [`PacketPort::upgrade`] moves a request into a slab for a long reply, as on AF_XDP.
//!   [`PacketPort::max_frame_len`] is what the port carries; longer frames are dropped and
//!   counted in [`PacketStats::rx_too_long`].
//! - `wait_rx` reports packets waiting in the ring even when no free frame is left to copy them
//!   into; `rx_burst` then returns nothing until frames come back.
//! - Dropping the port with frames still held by the application is allowed, but the handles
//!   then panic when dropped (release them first).
//! - The socket is bound in the calling thread's network namespace.

use std::cell::Cell;
use std::ffi::CString;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::frame::{
    pad_for_wire, Frame, FrameCounts, FramePool, FrameState, JumboStats, Lender, RxBurst,
    RX_BURST_MAX,
};
use super::mem::{Arena, Chunk};
use super::umem::{
    FRAME_CAPACITY, FRAME_SIZE, JUMBO_FRAME_LEN, PACKET_OFFSET, SLAB_CAPACITY, SLAB_SIZE,
};
use super::DstFilter;

/// The AoE ethertype.
pub const ETH_P_AOE: u16 = 0x88A2;
/// The 802.1Q ethertype (the only tag the filter looks behind, as the XDP program does).
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_ALL: u16 = 0x0003;
const VLAN_TAG_LEN: usize = 4;
/// Bytes from the frame start to the AoE header of an untagged frame.
const ETH_HEADER_LEN: usize = 14;
/// Size of the AoE common header (ver/flags .. tag).
const AOE_COMMON_HEADER_LEN: usize = 10;
/// Two MAC addresses: where a VLAN tag goes back in.
const MACS_LEN: usize = 12;
const PAGE_SIZE: usize = 4096;

/// `TPACKET_V2` and `TPACKET_V3` from `enum tpacket_versions`.
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;

/// Size of one TX ring slot; one slot per kernel "block", so the ring needs only order-0 pages.
const TX_SLOT_SIZE: usize = 4096;
const _: () = assert!(TX_SLOT_SIZE % PAGE_SIZE == 0);
/// TX slot size of a jumbo port (holds a whole slab frame).
const JUMBO_TX_SLOT_SIZE: usize = 16384;
/// Bytes of an RX slot (V2) or block (V3) that are not frame data, rounded up: ring header,
/// `sockaddr_ll`, alignment (the kernel puts the frame at offset 66 of a V2 slot, 130 of a V3
/// block's first packet).
const V2_RX_OVERHEAD: usize = 96;
const V3_RX_OVERHEAD: usize = 160;

/// Where the fields of a TX slot are, per `TPACKET` version.
#[derive(Clone, Copy, Debug)]
struct TxLayout {
    status: usize,
    len: usize,
    snaplen: usize,
    /// `tp_next_offset` (V3 only; must be 0 for TX).
    next_offset: Option<usize>,
    /// The frame bytes: `TPACKETx_HDRLEN - sizeof(sockaddr_ll)`, where `tpacket_snd` reads
    /// them when `PACKET_TX_HAS_OFF` is off.
    data: usize,
}

const TX_V3: TxLayout = TxLayout {
    status: offset_of!(libc::tpacket3_hdr, tp_status),
    len: offset_of!(libc::tpacket3_hdr, tp_len),
    snaplen: offset_of!(libc::tpacket3_hdr, tp_snaplen),
    next_offset: Some(offset_of!(libc::tpacket3_hdr, tp_next_offset)),
    data: libc::TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>(),
};
const TX_V2: TxLayout = TxLayout {
    status: offset_of!(libc::tpacket2_hdr, tp_status),
    len: offset_of!(libc::tpacket2_hdr, tp_len),
    snaplen: offset_of!(libc::tpacket2_hdr, tp_snaplen),
    next_offset: None,
    data: libc::TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>(),
};
const _: () = assert!(TX_V3.status == 20 && TX_V3.data == 48);
const _: () = assert!(TX_V2.status == 0 && TX_V2.data == 32);
const _: () = assert!(TX_V3.data + FRAME_CAPACITY <= TX_SLOT_SIZE);
const _: () = assert!(TX_V2.data + FRAME_CAPACITY <= TX_SLOT_SIZE);
const _: () = assert!(TX_V3.data + SLAB_CAPACITY <= JUMBO_TX_SLOT_SIZE);
const _: () = assert!(TX_V2.data + SLAB_CAPACITY <= JUMBO_TX_SLOT_SIZE);

/// `tpacket_block_desc.hdr.bh1.block_status` and friends (the union member is at offset 0).
const BLOCK_STATUS_OFFSET: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);
const BLOCK_NUM_PKTS_OFFSET: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const BLOCK_FIRST_PKT_OFFSET: usize = offset_of!(libc::tpacket_block_desc, hdr)
    + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
const V2_STATUS_OFFSET: usize = offset_of!(libc::tpacket2_hdr, tp_status);
const _: () = assert!(BLOCK_STATUS_OFFSET == 8 && V2_STATUS_OFFSET == 0);

/// The ring layout. `PACKET_VERSION` is per socket, so this also picks the TX slot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingVersion {
    /// `TPACKET_V3`: packets packed into blocks; a block reaches user space when full or after
    /// the retire timeout. Fewer wakeups under heavy load, up to the timeout of added latency
    /// per window under light load (see the module docs). [`RingVersion::v3_default`] is a
    /// sensible geometry.
    V3 {
        /// Bytes per block: a power of two, at least 4096. Smaller blocks fill (and reach user
        /// space) sooner; one must hold a whole frame plus about 100 bytes of headers.
        block_size: u32,
        /// Blocks (kernel memory: `block_size * block_count` bytes).
        block_count: u32,
        /// Milliseconds after which the kernel hands over a partly filled block (at least 1).
        retire_timeout_ms: u32,
    },
    /// `TPACKET_V2` (the default): one fixed slot per packet, handed to user space at once.
    V2 {
        /// Bytes per slot: a power of two, at least 2048. A slot holds about 80 bytes of headers
        /// plus the frame; a longer frame is truncated by the kernel and dropped
        /// ([`PacketStats::rx_too_long`]). 4096 fits every frame a chunk can hold.
        slot_size: u32,
        /// Slots, rounded up to fill whole pages (kernel memory: `slot_size * slot_count`).
        slot_count: u32,
    },
}

/// Geometry and options of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketConfig {
    /// Frames in the frame area (each [`FRAME_SIZE`] bytes of ordinary anonymous memory).
    pub frame_count: u32,
    /// RX ring layout and size.
    pub ring: RingVersion,
    /// TX ring slots, 4096 bytes each; at most this many frames are in the kernel's hands.
    pub tx_ring_size: u32,
    /// Bind to `ETH_P_ALL` so AoE behind one 802.1Q tag arrives with its tag (see the module
    /// docs); `false` binds to `ETH_P_AOE` and loses tags.
    pub vlan: bool,
}

impl Default for PacketConfig {
    /// 16 MiB of frames, 4 MiB of RX ring, 1 MiB of TX ring:
    /// frame_count 4096 = 2048 (RX bursts and requests waiting for storage)
    ///                  + 2048 (replies queued for TX).
    /// RX: `TPACKET_V2`, 1024 slots of 4 KiB (16 windows of 64 requests; a 4 KiB slot holds
    /// any frame a chunk can).
    /// TX: 256 slots (a few full RX bursts in flight).
    fn default() -> Self {
        Self {
            frame_count: 4096,
            ring: RingVersion::V2 {
                slot_size: 4096,
                slot_count: 1024,
            },
            tx_ring_size: 256,
            vlan: true,
        }
    }
}

impl PacketConfig {
    /// The default configuration, with an RX ring that holds whole frames of an interface of
    /// `mtu` (plus one VLAN tag): above 4 KiB frames, 256 V2 slots of 16 KiB (4 MiB, as the
    /// default), which makes the port a jumbo port ([`Self::max_frame_len`]).
    pub fn for_mtu(mtu: u32) -> Self {
        let frame = mtu as usize + 14 + VLAN_TAG_LEN;
        let mut config = PacketConfig::default();
        if frame > FRAME_CAPACITY {
            let slot_size = (frame + V2_RX_OVERHEAD).next_power_of_two().max(16384);
            config.ring = RingVersion::V2 {
                slot_size: u32::try_from(slot_size).unwrap_or(u32::MAX),
                slot_count: 256,
            };
        }
        config
    }

    /// Longest frame the RX ring delivers whole.
    fn rx_frame_max(&self) -> usize {
        match self.ring {
            RingVersion::V3 { block_size, .. } => {
                (block_size as usize).saturating_sub(V3_RX_OVERHEAD)
            }
            RingVersion::V2 { slot_size, .. } => {
                (slot_size as usize).saturating_sub(V2_RX_OVERHEAD)
            }
        }
    }

    /// True if the RX ring holds at least one sector more than a chunk: the port then has
    /// slabs and 16 KiB TX slots.
    pub fn jumbo(&self) -> bool {
        self.rx_frame_max() >= FRAME_CAPACITY + 512
    }

    /// Longest frame the port receives and transmits: [`FRAME_CAPACITY`], or for a jumbo port
    /// what the RX ring holds, at most [`SLAB_CAPACITY`].
    pub fn max_frame_len(&self) -> usize {
        if self.jumbo() {
            self.rx_frame_max().min(SLAB_CAPACITY)
        } else {
            FRAME_CAPACITY
        }
    }

    /// Jumbo slabs of a jumbo port: one per 16 frames, at least 4 (0 otherwise).
    pub fn slab_count(&self) -> u32 {
        if self.jumbo() {
            (self.frame_count / 16).max(4)
        } else {
            0
        }
    }

    fn tx_slot_size(&self) -> usize {
        if self.jumbo() {
            JUMBO_TX_SLOT_SIZE
        } else {
            TX_SLOT_SIZE
        }
    }
}

const _: () = assert!(JUMBO_FRAME_LEN + V2_RX_OVERHEAD <= 16384);

impl RingVersion {
    /// The recommended `TPACKET_V3` ring of the same size as the default: 1024 blocks of 4 KiB
    /// (small blocks fill sooner), 1 ms retire timeout.
    pub fn v3_default() -> Self {
        RingVersion::V3 {
            block_size: 4096,
            block_count: 1024,
            retire_timeout_ms: 1,
        }
    }
}

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

/// Errors creating or driving a port.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// A configuration value is invalid.
    #[error("invalid AF_PACKET configuration: {what}")]
    Config {
        /// What is wrong.
        what: &'static str,
    },
    /// The interface does not exist in this network namespace.
    #[error("no interface {interface} in this network namespace: check the name (ip link)")]
    NoInterface {
        /// Interface name.
        interface: String,
    },
    /// A set-up step failed.
    #[error("cannot set up the AF_PACKET socket on {interface} ({call}): {hint}")]
    Setup {
        /// Interface name.
        interface: String,
        /// The step that failed.
        call: &'static str,
        /// Likely cause and fix.
        hint: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// A socket syscall on the data path failed.
    #[error("{call} failed on the AF_PACKET socket")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
}

/// A memory mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is the sole owner of its address range (like a `Box<[u8]>`); moving it to
// another thread moves that ownership. All access goes through the owning `PacketPort`, whose
// `&self`/`&mut self` and frame ownership rules serialize it.
unsafe impl Send for Mapping {}
// SAFETY: shared references to a `Mapping` only read its address and length (`at` computes a
// pointer; every dereference is done by the owning `PacketPort` under its frame rules). The
// frame area's `Arc` is also held by the io_uring arena only to keep the memory mapped.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(len, PROT_READ | PROT_WRITE, flags, fd, 0)`.
    fn new(len: usize, flags: libc::c_int, fd: Option<BorrowedFd<'_>>) -> io::Result<Mapping> {
        let raw_fd = fd.map_or(-1, |fd| fd.as_raw_fd());
        // SAFETY: a fresh mapping at an address the kernel chooses; no existing memory is
        // affected. The result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw_fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap never returns null on success");
        Ok(Mapping { ptr, len })
    }

    /// Address of byte `offset`.
    fn at(&self, offset: usize) -> *mut u8 {
        assert!(offset < self.len, "offset {offset:#x} outside the mapping");
        // SAFETY: `offset` is inside the mapping (checked above), so the result stays in the
        // same allocation.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The 4-aligned `u32` word at `offset`, as an atomic: a status word the kernel reads and
    /// writes concurrently with single-word accesses.
    fn status_word(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "status word at {offset:#x}"
        );
        // SAFETY: in bounds and 4-aligned (the mapping is page-aligned; checked above), and it
        // lives as long as `self`. Only atomic accesses are made through this view while the
        // kernel may access the word; non-atomic reads of the same word happen only while user
        // space owns the slot or block (the kernel does not write it then).
        unsafe { AtomicU32::from_ptr(self.at(offset).cast()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns; nothing
        // borrows it any more (borrows are tied to the owning port, which is being dropped).
        let ret = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        debug_assert_eq!(ret, 0, "munmap: {}", io::Error::last_os_error());
    }
}

/// A `T` at `offset` in `map`, read with a volatile load (shared memory the compiler must not
/// cache or invent reads of).
///
/// # Safety
///
/// `offset .. offset + size_of::<T>()` must be inside `map`, suitably aligned for `T`, in a
/// part of the ring that user space owns at the moment (an RX block or slot whose status said
/// `TP_STATUS_USER`, loaded with `Acquire`), and every bit pattern must be a valid `T`.
unsafe fn read_ring<T>(map: &Mapping, offset: usize) -> T {
    assert!(offset + size_of::<T>() <= map.len);
    // SAFETY: the caller guarantees a live, aligned, user-owned location holding a valid `T`.
    unsafe { std::ptr::read_volatile(map.at(offset).cast::<T>()) }
}

/// One received packet in the RX ring, as found by [`RxRing::peek`].
#[derive(Clone, Copy, Debug)]
struct RxPacket {
    /// Offset of the first frame byte in the ring mapping.
    data: usize,
    /// Bytes in the ring (`tp_snaplen`).
    captured: usize,
    /// Bytes the frame had (`tp_len`); more than `captured` if the kernel truncated it.
    len: usize,
    /// (TPID, TCI) of a VLAN tag the kernel removed.
    vlan: Option<(u16, u16)>,
    /// V3: offset from this packet's header to the next one's.
    next_offset: usize,
}

/// The RX ring and user space's position in it.
#[derive(Debug)]
enum RxRing {
    V3(BlockCursor),
    V2(SlotCursor),
}

impl RxRing {
    /// The next received packet, opening the next V3 block if needed; `None` if the ring holds
    /// none. Does not move past it (see [`Self::advance`]).
    fn peek(&mut self, map: &Mapping) -> Option<RxPacket> {
        match self {
            RxRing::V3(cursor) => cursor.peek(map),
            RxRing::V2(cursor) => cursor.peek(map),
        }
    }

    /// Moves past the packet [`Self::peek`] returned, after the caller copied it; hands its
    /// block (V3, after the block's last packet) or slot (V2) back to the kernel.
    fn advance(&mut self, map: &Mapping, packet: &RxPacket) {
        match self {
            RxRing::V3(cursor) => cursor.advance(map, packet),
            RxRing::V2(cursor) => cursor.advance(map),
        }
    }

    /// True if [`Self::peek`] would find a packet.
    fn ready(&self, map: &Mapping) -> bool {
        let status_offset = match self {
            RxRing::V3(cursor) if cursor.left > 0 => return true,
            RxRing::V3(cursor) => cursor.base() + BLOCK_STATUS_OFFSET,
            RxRing::V2(cursor) => cursor.base() + V2_STATUS_OFFSET,
        };
        // Acquire: as in `peek`; a true answer is followed by reads of the packet.
        map.status_word(status_offset).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }
}

/// Position in a `TPACKET_V3` ring of blocks.
#[derive(Debug)]
struct BlockCursor {
    block_size: usize,
    block_count: u32,
    /// The block being read, or the next one to check.
    block: u32,
    /// Packets of `block` not yet consumed; 0 when `block` is not open.
    left: u32,
    /// Offset of the next packet header from the block start.
    offset: usize,
}

impl BlockCursor {
    fn base(&self) -> usize {
        self.block as usize * self.block_size
    }

    fn peek(&mut self, map: &Mapping) -> Option<RxPacket> {
        if self.left == 0 && !self.open(map) {
            return None;
        }
        let header_len = size_of::<libc::tpacket3_hdr>();
        assert!(
            self.offset % 8 == 0 && self.offset + header_len <= self.block_size,
            "packet header at {} outside its {}-byte block",
            self.offset,
            self.block_size
        );
        // SAFETY: the header lies inside the current block (checked above), which user space
        // owns (status USER seen with Acquire when the block was opened); the offset is
        // 8-aligned, and the header is plain integers.
        let header: libc::tpacket3_hdr = unsafe { read_ring(map, self.base() + self.offset) };
        let tci = u16::try_from(header.hv1.tp_vlan_tci & 0xFFFF).expect("masked to 16 bits");
        Some(packet_at(
            self.offset,
            self.block_size,
            self.base(),
            (header.tp_mac, header.tp_snaplen, header.tp_len),
            vlan_of(header.tp_status, header.hv1.tp_vlan_tpid, tci),
            header.tp_next_offset as usize,
        ))
    }

    /// Opens the next block the kernel has handed over; false if there is none.
    fn open(&mut self, map: &Mapping) -> bool {
        loop {
            let base = self.base();
            // Acquire: pairs with the kernel's `smp_wmb()` before it stores TP_STATUS_USER in
            // `prb_flush_block`, so the packets it wrote into the block are visible below.
            let status = map
                .status_word(base + BLOCK_STATUS_OFFSET)
                .load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                return false;
            }
            // SAFETY: the block is user-owned (status USER, loaded with Acquire); the
            // descriptor words are 4-aligned and inside the block.
            let (count, first) = unsafe {
                (
                    read_ring::<u32>(map, base + BLOCK_NUM_PKTS_OFFSET),
                    read_ring::<u32>(map, base + BLOCK_FIRST_PKT_OFFSET) as usize,
                )
            };
            if count > 0 {
                self.left = count;
                self.offset = first;
                return true;
            }
            // The kernel does not retire empty blocks, but hand one back if it did.
            self.release(map);
        }
    }

    fn advance(&mut self, map: &Mapping, packet: &RxPacket) {
        assert!(self.left > 0, "advance without a packet");
        self.left -= 1;
        if self.left == 0 {
            self.release(map);
        } else {
            assert!(
                packet.next_offset > 0,
                "tp_next_offset 0 before the block's last packet"
            );
            self.offset += packet.next_offset;
        }
    }

    /// Hands the current block back to the kernel and moves to the next one.
    fn release(&mut self, map: &Mapping) {
        // Release: every read of this block's packets (the copies in `rx_burst`) happens
        // before the kernel can see TP_STATUS_KERNEL and reuse the block (it checks the status
        // in `prb_dispatch_next_block` / `__packet_lookup_frame_in_block` before writing).
        map.status_word(self.base() + BLOCK_STATUS_OFFSET)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % self.block_count;
        self.left = 0;
        self.offset = 0;
    }
}

/// Position in a `TPACKET_V2` ring of slots.
#[derive(Debug)]
struct SlotCursor {
    slot_size: usize,
    slot_count: u32,
    /// The next slot to read.
    slot: u32,
}

impl SlotCursor {
    fn base(&self) -> usize {
        self.slot as usize * self.slot_size
    }

    fn peek(&self, map: &Mapping) -> Option<RxPacket> {
        let base = self.base();
        // Acquire: pairs with the kernel's `smp_wmb()` (and lock release) before it stores
        // TP_STATUS_USER in `tpacket_rcv`, so the packet is visible to the reads below.
        let status = map
            .status_word(base + V2_STATUS_OFFSET)
            .load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the slot is user-owned (status USER, loaded with Acquire), at least
        // 2048-aligned, and the header is plain integers inside it.
        let header: libc::tpacket2_hdr = unsafe { read_ring(map, base) };
        Some(packet_at(
            0,
            self.slot_size,
            base,
            (header.tp_mac, header.tp_snaplen, header.tp_len),
            vlan_of(header.tp_status, header.tp_vlan_tpid, header.tp_vlan_tci),
            0,
        ))
    }

    fn advance(&mut self, map: &Mapping) {
        // Release: the copy of this slot's packet (made by the caller before this call) happens
        // before the kernel can see TP_STATUS_KERNEL and refill the slot (it checks the status
        // in `tpacket_rcv` before writing).
        map.status_word(self.base() + V2_STATUS_OFFSET)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.slot = (self.slot + 1) % self.slot_count;
    }
}

/// The VLAN tag recorded in a ring header's status, if any.
fn vlan_of(status: u32, tpid: u16, tci: u16) -> Option<(u16, u16)> {
    if status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
        tpid
    } else {
        ETH_P_8021Q
    };
    Some((tpid, tci))
}

/// Builds an [`RxPacket`] from a header at `header_offset` in the area `[base, base + area)`,
/// asserting the data lies inside that area (a kernel invariant).
fn packet_at(
    header_offset: usize,
    area: usize,
    base: usize,
    (mac, snaplen, len): (u16, u32, u32),
    vlan: Option<(u16, u16)>,
    next_offset: usize,
) -> RxPacket {
    let start = header_offset + usize::from(mac);
    let captured = snaplen as usize;
    assert!(
        start + captured <= area,
        "packet data [{start}, +{captured}) outside its {area}-byte block or slot"
    );
    RxPacket {
        data: base + start,
        captured,
        len: len as usize,
        vlan,
        next_offset,
    }
}

/// The kernel's RX and TX rings, mapped in one piece (RX first, then TX slots), and user space's
/// position in each.
struct Rings {
    map: Mapping,
    rx: RxRing,
    tx_layout: TxLayout,
    /// Offset of TX slot 0 in `map`.
    tx_offset: usize,
    tx_slot_count: u32,
    tx_slot_size: usize,
    /// Next TX slot to fill.
    tx_head: u32,
}

impl Rings {
    fn tx_slot(&self, slot: u32) -> usize {
        assert!(slot < self.tx_slot_count);
        self.tx_offset + slot as usize * self.tx_slot_size
    }

    fn tx_status(&self, slot: u32) -> &AtomicU32 {
        self.map
            .status_word(self.tx_slot(slot) + self.tx_layout.status)
    }
}

/// One AF_PACKET socket on one interface, with mmap RX and TX rings, a frame area laid out like
/// the XDP UMEM and a frame pool.
///
/// Field order is drop order: the rings are unmapped before the socket closes; the frame area
/// (ours alone, the kernel never sees it) goes last.
pub struct PacketPort {
    rings: Rings,
    fd: OwnedFd,
    /// The frame area; shared only with the lender's arena, which keeps it mapped for io_uring.
    area: Arc<Mapping>,
    /// The frame area as an io_uring arena and each frame's chunk token.
    lender: Lender,
    pool: FramePool,
    /// Frames and slabs in state `Tx`, as (index, wire length), in transmit order. Capacity =
    /// frame count + slab count, so it never grows.
    tx_queued: Vec<(u32, usize)>,
    /// Longest frame the port carries ([`PacketConfig::max_frame_len`]).
    max_frame_len: usize,
    jumbo: JumboStats,
    /// Slots handed to the kernel whose frames might not have been sent yet.
    tx_requested: bool,
    /// Frames freed by `flush_tx` since the last `reap_completions`.
    tx_completed: usize,
    stats: PacketStats,
    /// Kernel counters accumulated across reads (`PACKET_STATISTICS` clears on read).
    kernel_packets: Cell<u64>,
    kernel_drops: Cell<u64>,
    kernel_freezes: Cell<u64>,
    interface: String,
    ifindex: u32,
    /// Which destination MACs are served.
    dst_filter: DstFilter,
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

    fn packet_offset(&self, index: u32) -> usize {
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
    fn dst_of(&self, packet: &RxPacket) -> [u8; 6] {
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
    fn kick_tx(&mut self) -> Result<(), PacketError> {
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

/// Creates the socket (receiving nothing yet) and sets the filter and socket options that must
/// precede the rings. Errors carry the failing step.
fn open_socket(config: &PacketConfig) -> Result<OwnedFd, (&'static str, io::Error)> {
    // Protocol 0: the socket receives nothing until `bind_socket`, after the filter and the
    // rings are in place.
    // SAFETY: plain socket(2); the result is checked and then owned.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(("socket(AF_PACKET, SOCK_RAW)", io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    attach_filter(fd.as_fd(), &aoe_request_filter()).map_err(|e| ("SO_ATTACH_FILTER", e))?;
    let version = match config.ring {
        RingVersion::V3 { .. } => TPACKET_V3,
        RingVersion::V2 { .. } => TPACKET_V2,
    };
    let options = [
        (libc::PACKET_VERSION, version, "PACKET_VERSION"),
        (libc::PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS"),
        // A malformed TX slot is skipped instead of stopping the ring.
        (libc::PACKET_LOSS, 1, "PACKET_LOSS"),
    ];
    for (option, value, name) in options {
        set_int(fd.as_fd(), libc::SOL_PACKET, option, value).map_err(|e| (name, e))?;
    }
    if config.vlan {
        // Not strictly needed (the filter drops outgoing frames too), but it spares the kernel
        // a clone of every frame this host sends on the interface.
        set_int(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1,
        )
        .map_err(|e| ("PACKET_IGNORE_OUTGOING", e))?;
    }
    Ok(fd)
}

/// The loud warning that this interface runs without XDP.
fn log_fallback(interface: &str, ifindex: u32, config: &PacketConfig) {
    let ring = match config.ring {
        RingVersion::V3 {
            retire_timeout_ms, ..
        } => format!(
            "TPACKET_V3 rings (up to {retire_timeout_ms} ms added latency per window under \
             light load)"
        ),
        RingVersion::V2 { .. } => "TPACKET_V2 rings".to_owned(),
    };
    tracing::warn!(
        interface,
        ifindex,
        rx_ring_bytes = ring_bytes(&config.ring),
        tx_slots = config.tx_ring_size,
        frames = config.frame_count,
        protocol = if config.vlan {
            "ETH_P_ALL"
        } else {
            "ETH_P_AOE"
        },
        "AF_PACKET fallback on {interface}: {ring}, one copy per frame each way (XDP not in use)"
    );
}

/// Copies `len` bytes from `src` to `dst`; with `vlan = Some((tpid, tci))` inserts the 4-byte
/// tag after the two MAC addresses (`dst` receives `len + 4` bytes).
///
/// # Safety
///
/// `src` must be readable for `len` bytes, `dst` writable for `len` (+ 4 with a tag) bytes, the
/// ranges must not overlap, and `len >= 12` when a tag is given.
unsafe fn copy_restoring_tag(src: *const u8, dst: *mut u8, len: usize, vlan: Option<(u16, u16)>) {
    match vlan {
        None => {
            // SAFETY: the caller guarantees both ranges.
            unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        }
        Some((tpid, tci)) => {
            let mut tag = [0u8; VLAN_TAG_LEN];
            tag[..2].copy_from_slice(&tpid.to_be_bytes());
            tag[2..].copy_from_slice(&tci.to_be_bytes());
            assert!(len >= MACS_LEN);
            // SAFETY: the caller guarantees `len >= 12` readable bytes at `src` and `len + 4`
            // writable bytes at `dst`; the three copies cover exactly those ranges.
            unsafe {
                std::ptr::copy_nonoverlapping(src, dst, MACS_LEN);
                std::ptr::copy_nonoverlapping(tag.as_ptr(), dst.add(MACS_LEN), VLAN_TAG_LEN);
                std::ptr::copy_nonoverlapping(
                    src.add(MACS_LEN),
                    dst.add(MACS_LEN + VLAN_TAG_LEN),
                    len - MACS_LEN,
                );
            }
        }
    }
}

/// Bytes of kernel memory the RX ring takes.
fn ring_bytes(ring: &RingVersion) -> usize {
    match *ring {
        RingVersion::V3 {
            block_size,
            block_count,
            ..
        } => block_size as usize * block_count as usize,
        RingVersion::V2 {
            slot_size,
            slot_count,
        } => v2_geometry(slot_size, slot_count).1 as usize * v2_block_size(slot_size) as usize,
    }
}

/// Kernel block size for V2 slots of `slot_size`: at least a page.
fn v2_block_size(slot_size: u32) -> u32 {
    slot_size.max(u32::try_from(PAGE_SIZE).expect("4096 fits"))
}

/// (slots per block, blocks, slots) for `slot_count` V2 slots, rounded up to whole blocks.
fn v2_geometry(slot_size: u32, slot_count: u32) -> (u32, u32, u32) {
    let per_block = v2_block_size(slot_size) / slot_size;
    let blocks = slot_count.div_ceil(per_block);
    (per_block, blocks, blocks * per_block)
}

fn validate(config: &PacketConfig) -> Result<(), PacketError> {
    let bad = |what| Err(PacketError::Config { what });
    if config.frame_count == 0 {
        return bad("frame_count must be at least 1");
    }
    match config.ring {
        RingVersion::V3 {
            block_size,
            block_count,
            retire_timeout_ms,
        } => {
            if !block_size.is_power_of_two() || (block_size as usize) < PAGE_SIZE {
                return bad("block_size must be a power of two of at least 4096");
            }
            if block_count == 0 {
                return bad("block_count must be at least 1");
            }
            if block_count.checked_mul(block_size).is_none() {
                return bad("RX ring larger than 4 GiB");
            }
            if retire_timeout_ms == 0 {
                return bad("retire_timeout_ms must be at least 1 (0 lets the kernel pick)");
            }
        }
        RingVersion::V2 {
            slot_size,
            slot_count,
        } => {
            if !slot_size.is_power_of_two() || slot_size < 2048 {
                return bad("slot_size must be a power of two of at least 2048");
            }
            if slot_count == 0 {
                return bad("slot_count must be at least 1");
            }
            if slot_count.checked_mul(slot_size).is_none() {
                return bad("RX ring larger than 4 GiB");
            }
        }
    }
    if config.tx_ring_size == 0 {
        return bad("tx_ring_size must be at least 1");
    }
    let tx_slot_size = u32::try_from(config.tx_slot_size()).expect("16 KiB fits");
    if config.tx_ring_size.checked_mul(tx_slot_size).is_none() {
        return bad("TX ring larger than 4 GiB");
    }
    Ok(())
}

fn interface_index(interface: &str) -> Result<u32, PacketError> {
    let missing = || PacketError::NoInterface {
        interface: interface.to_owned(),
    };
    let name = CString::new(interface).map_err(|_| missing())?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(missing());
    }
    Ok(index)
}

/// Sets up both rings (after `PACKET_VERSION`) and maps them. Errors carry the failing step.
fn setup_rings(
    fd: BorrowedFd<'_>,
    config: &PacketConfig,
) -> Result<Rings, (&'static str, io::Error)> {
    let (rx, rx_len) = request_rx_ring(fd, &config.ring).map_err(|e| ("PACKET_RX_RING", e))?;
    let tx_slot_size = config.tx_slot_size();
    let tx_layout = request_tx_ring(fd, &config.ring, config.tx_ring_size, tx_slot_size)
        .map_err(|e| ("PACKET_TX_RING", e))?;
    let tx_len = config.tx_ring_size as usize * tx_slot_size;
    let map =
        Mapping::new(rx_len + tx_len, libc::MAP_SHARED, Some(fd)).map_err(|e| ("mmap rings", e))?;
    Ok(Rings {
        map,
        rx,
        tx_layout,
        tx_offset: rx_len,
        tx_slot_count: config.tx_ring_size,
        tx_slot_size,
        tx_head: 0,
    })
}

/// `PACKET_RX_RING`; returns the ring's cursor and its size in bytes.
fn request_rx_ring(fd: BorrowedFd<'_>, ring: &RingVersion) -> io::Result<(RxRing, usize)> {
    match *ring {
        RingVersion::V3 {
            block_size,
            block_count,
            retire_timeout_ms,
        } => {
            let page = u32::try_from(PAGE_SIZE).expect("4096 fits");
            // tp_frame_size/tp_frame_nr mean nothing for a V3 RX ring, but the kernel still
            // checks frame_nr == (block_size / frame_size) * block_nr.
            let request = libc::tpacket_req3 {
                tp_block_size: block_size,
                tp_block_nr: block_count,
                tp_frame_size: page,
                tp_frame_nr: block_size / page * block_count,
                tp_retire_blk_tov: retire_timeout_ms,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            set_struct(fd, libc::PACKET_RX_RING, &request)?;
            let rx = RxRing::V3(BlockCursor {
                block_size: block_size as usize,
                block_count,
                block: 0,
                left: 0,
                offset: 0,
            });
            Ok((rx, block_size as usize * block_count as usize))
        }
        RingVersion::V2 {
            slot_size,
            slot_count,
        } => {
            let (per_block, blocks, slots) = v2_geometry(slot_size, slot_count);
            let block_size = v2_block_size(slot_size);
            let request = libc::tpacket_req {
                tp_block_size: block_size,
                tp_block_nr: blocks,
                tp_frame_size: slot_size,
                tp_frame_nr: per_block * blocks,
            };
            set_struct(fd, libc::PACKET_RX_RING, &request)?;
            let rx = RxRing::V2(SlotCursor {
                slot_size: slot_size as usize,
                slot_count: slots,
                slot: 0,
            });
            Ok((rx, block_size as usize * blocks as usize))
        }
    }
}

/// `PACKET_TX_RING` of `slots` fixed-size slots, one per kernel block; returns the slot layout.
fn request_tx_ring(
    fd: BorrowedFd<'_>,
    ring: &RingVersion,
    slots: u32,
    slot_size: usize,
) -> io::Result<TxLayout> {
    let slot_size = u32::try_from(slot_size).expect("16 KiB fits");
    let request = libc::tpacket_req {
        tp_block_size: slot_size,
        tp_block_nr: slots,
        tp_frame_size: slot_size,
        tp_frame_nr: slots,
    };
    match ring {
        RingVersion::V3 { .. } => {
            // The V3 request is longer; its retire timeout, private area and features must be
            // zero for a TX ring (packet_set_ring rejects them).
            let request = libc::tpacket_req3 {
                tp_block_size: request.tp_block_size,
                tp_block_nr: request.tp_block_nr,
                tp_frame_size: request.tp_frame_size,
                tp_frame_nr: request.tp_frame_nr,
                tp_retire_blk_tov: 0,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            set_struct(fd, libc::PACKET_TX_RING, &request)?;
            Ok(TX_V3)
        }
        RingVersion::V2 { .. } => {
            set_struct(fd, libc::PACKET_TX_RING, &request)?;
            Ok(TX_V2)
        }
    }
}

fn bind_socket(fd: BorrowedFd<'_>, ifindex: u32, all: bool) -> io::Result<()> {
    let protocol = if all { ETH_P_ALL } else { ETH_P_AOE };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).expect("AF_PACKET fits u16");
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: `addr` is a valid sockaddr_ll of the size passed; the fd is open.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            socklen::<libc::sockaddr_ll>(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the ancillary "offset" that loads `skb->pkt_type`. The
/// negative offset is what the kernel expects, reinterpreted as the instruction's `u32` k.
const SKF_PKTTYPE: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;

/// Number of instructions in [`aoe_request_filter`].
pub const FILTER_LEN: usize = 18;

/// The classic BPF socket filter: accept (whole frame) exactly what the XDP program redirects —
/// ethertype 0x88A2 directly or behind one 802.1Q tag still in the frame, at least a full AoE
/// common header, AoE version 1, response flag clear — and drop everything else, including
/// frames this host sends (`PACKET_OUTGOING`). A tag the kernel already removed is invisible
/// here (the frame looks untagged), which is what we want.
pub fn aoe_request_filter() -> [libc::sock_filter; FILTER_LEN] {
    const ACCEPT: u8 = 16;
    const DROP: u8 = 17;
    const CHECK: u8 = 14;
    const TAGGED: u8 = 8;
    let ld = libc::BPF_LD | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let len = libc::BPF_LD | libc::BPF_W | libc::BPF_LEN;
    let untagged_min = u32::try_from(ETH_HEADER_LEN + AOE_COMMON_HEADER_LEN).expect("24");
    let tagged_min = untagged_min + u32::try_from(VLAN_TAG_LEN).expect("4");
    // Jump offsets count instructions after the jump: target - (position + 1).
    let to = |target: u8, position: u8| target - position - 1;
    [
        // 0: ancillary load of skb->pkt_type; our own transmissions are not requests for us.
        stmt(ld | libc::BPF_W, SKF_PKTTYPE),
        jump(jeq, u32::from(libc::PACKET_OUTGOING), to(DROP, 1), 0),
        // 2: ethertype.
        stmt(ld | libc::BPF_H, 12),
        jump(jeq, u32::from(ETH_P_AOE), 0, to(TAGGED, 3)),
        // 4: untagged AoE: long enough for the common header, then ver/flags at 14.
        stmt(len, 0),
        jump(jge, untagged_min, 0, to(DROP, 5)),
        stmt(ld | libc::BPF_B, 14),
        stmt(libc::BPF_JMP | libc::BPF_JA, u32::from(to(CHECK, 7))),
        // 8 (TAGGED): one 802.1Q tag, AoE behind it, ver/flags at 18.
        jump(jeq, u32::from(ETH_P_8021Q), 0, to(DROP, 8)),
        stmt(len, 0),
        jump(jge, tagged_min, 0, to(DROP, 10)),
        stmt(ld | libc::BPF_H, 16),
        jump(jeq, u32::from(ETH_P_AOE), 0, to(DROP, 12)),
        stmt(ld | libc::BPF_B, 18),
        // 14 (CHECK): version 1 (high nibble) and response flag 0x08 clear, in one compare.
        stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0xF8),
        jump(jeq, 0x10, to(ACCEPT, 15), to(DROP, 15)),
        // 16 (ACCEPT): keep the whole frame.
        stmt(libc::BPF_RET | libc::BPF_K, u32::MAX),
        // 17 (DROP).
        stmt(libc::BPF_RET | libc::BPF_K, 0),
    ]
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    jump(code, k, 0, 0)
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: u16::try_from(code).expect("BPF opcodes fit 16 bits"),
        jt,
        jf,
        k,
    }
}

fn attach_filter(fd: BorrowedFd<'_>, filter: &[libc::sock_filter]) -> io::Result<()> {
    let program = libc::sock_fprog {
        len: u16::try_from(filter.len()).expect("short program"),
        // The kernel copies the program in setsockopt and never writes through this pointer.
        filter: filter.as_ptr().cast_mut(),
    };
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &program)
}

fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set_option(fd, level, option, &value)
}

fn set_struct<T>(fd: BorrowedFd<'_>, option: libc::c_int, value: &T) -> io::Result<()> {
    set_option(fd, libc::SOL_PACKET, option, value)
}

fn set_option<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the length passed, which the kernel only reads (and
    // copies) during the call; the fd is open. Callers pass the type each option expects.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            std::ptr::from_ref(value).cast::<libc::c_void>(),
            socklen::<T>(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads and clears the socket's pending error (`SO_ERROR`), if any.
fn take_socket_error(fd: BorrowedFd<'_>) -> Option<io::Error> {
    let mut value: libc::c_int = 0;
    let mut len = socklen::<libc::c_int>();
    // SAFETY: the buffer is a live c_int of the length passed; the fd is open.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    (ret == 0 && value != 0).then(|| io::Error::from_raw_os_error(value))
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).expect("small struct")
}

fn setup_hint(call: &'static str, errno: Option<i32>) -> &'static str {
    match (call, errno) {
        (_, Some(libc::EPERM | libc::EACCES)) => {
            "permission denied: AF_PACKET needs CAP_NET_RAW, run as root"
        }
        (_, Some(libc::ENODEV | libc::ENXIO)) => "no such interface in this network namespace",
        ("PACKET_RX_RING" | "PACKET_TX_RING" | "mmap rings", Some(libc::ENOMEM)) => {
            "the kernel could not allocate the ring: use a smaller ring (fewer or smaller \
             RX blocks or slots, a smaller tx_ring_size)"
        }
        (_, Some(libc::EAGAIN)) | ("mmap frame area", Some(libc::ENOMEM)) => {
            "out of memory or over the locked-memory limit: run as root or raise \
             RLIMIT_MEMLOCK (ulimit -l), or use fewer frames"
        }
        ("PACKET_RX_RING" | "PACKET_TX_RING", Some(libc::EINVAL)) => {
            "the kernel rejected the ring geometry (the TPACKET_V3 TX ring needs Linux 4.11+; \
             block sizes must be multiples of the page size)"
        }
        (_, Some(libc::ENOPROTOOPT | libc::EINVAL)) => {
            "the kernel does not support this option (Linux 4.20+ needed)"
        }
        _ => "unexpected error from the kernel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input to the filter interpreter: the bytes the filter sees and the socket metadata.
    struct Skb<'a> {
        data: &'a [u8],
        pkt_type: u8,
    }

    /// A classic BPF interpreter for the instructions `aoe_request_filter` uses (the kernel
    /// semantics: an out-of-bounds load ends the program with 0).
    fn run(program: &[libc::sock_filter], skb: &Skb<'_>) -> u32 {
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        let load = |offset: u32, size: usize| -> Option<u32> {
            if offset == SKF_PKTTYPE {
                return Some(u32::from(skb.pkt_type));
            }
            let start = offset as usize;
            let bytes = skb.data.get(start..start + size)?;
            Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
        };
        loop {
            let insn = program[pc];
            let code = u32::from(insn.code);
            pc += 1;
            let next = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
            match code {
                c if c == libc::BPF_LD | libc::BPF_ABS | libc::BPF_W => {
                    let Some(value) = load(insn.k, 4) else {
                        return 0;
                    };
                    acc = value;
                }
                c if c == libc::BPF_LD | libc::BPF_ABS | libc::BPF_H => {
                    let Some(value) = load(insn.k, 2) else {
                        return 0;
                    };
                    acc = value;
                }
                c if c == libc::BPF_LD | libc::BPF_ABS | libc::BPF_B => {
                    let Some(value) = load(insn.k, 1) else {
                        return 0;
                    };
                    acc = value;
                }
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_LEN => {
                    acc = u32::try_from(skb.data.len()).unwrap();
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= insn.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += insn.k as usize,
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += next(acc == insn.k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += next(acc >= insn.k),
                c if c == libc::BPF_RET | libc::BPF_K => return insn.k,
                other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
            }
            assert!(pc < program.len(), "jump past the end");
        }
    }

    fn frame(tag: Option<u16>, ethertype: u16, ver_flags: u8, len: usize) -> Vec<u8> {
        let mut frame = vec![0xFFu8; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        if let Some(vid) = tag {
            frame.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            frame.extend_from_slice(&vid.to_be_bytes());
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.push(ver_flags);
        frame.resize(len.max(frame.len()), 0);
        frame
    }

    fn accepts(data: &[u8], pkt_type: u8) -> bool {
        let verdict = run(&aoe_request_filter(), &Skb { data, pkt_type });
        assert!(verdict == 0 || verdict == u32::MAX, "verdict {verdict:#x}");
        verdict != 0
    }

    #[test]
    fn test_filter_accepts_requests() {
        assert!(accepts(
            &frame(None, ETH_P_AOE, 0x10, 60),
            libc::PACKET_HOST
        ));
        assert!(accepts(
            &frame(None, ETH_P_AOE, 0x10, 24),
            libc::PACKET_BROADCAST
        ));
        // The error flag does not matter for a request (only R and the version do).
        assert!(accepts(
            &frame(None, ETH_P_AOE, 0x14, 60),
            libc::PACKET_HOST
        ));
        assert!(accepts(
            &frame(Some(42), ETH_P_AOE, 0x10, 64),
            libc::PACKET_HOST
        ));
        assert!(accepts(
            &frame(Some(42), ETH_P_AOE, 0x10, 28),
            libc::PACKET_OTHERHOST
        ));
        // Another host's request passes too: `rx_burst` refuses it by its destination MAC and
        // counts it, which a filter could not.
        let mut foreign = frame(None, ETH_P_AOE, 0x10, 60);
        foreign[..6].copy_from_slice(&[0x02, 0xAE, 0, 0, 0, 1]);
        assert!(accepts(&foreign, libc::PACKET_OTHERHOST));
    }

    #[test]
    fn test_filter_drops_responses_and_others() {
        let cases = [
            (frame(None, ETH_P_AOE, 0x18, 60), "response"),
            (frame(None, ETH_P_AOE, 0x1C, 60), "error response"),
            (frame(None, ETH_P_AOE, 0x20, 60), "version 2"),
            (frame(None, ETH_P_AOE, 0x00, 60), "version 0"),
            (
                frame(None, ETH_P_AOE, 0x10, 23),
                "shorter than the AoE header",
            ),
            (frame(None, 0x0800, 0x45, 60), "IPv4"),
            (frame(None, 0x88B5, 0x10, 60), "other ethertype"),
            (frame(Some(42), ETH_P_AOE, 0x18, 64), "tagged response"),
            (frame(Some(42), 0x0800, 0x45, 64), "tagged IPv4"),
            (frame(Some(42), ETH_P_AOE, 0x10, 27), "tagged, too short"),
            (frame(None, ETH_P_AOE, 0x10, 13)[..13].to_vec(), "runt"),
            (Vec::new(), "empty"),
        ];
        for (data, what) in &cases {
            assert!(!accepts(data, libc::PACKET_HOST), "{what} accepted");
        }
        // Two tags (802.1ad outside 802.1Q): not looked into, as in the XDP program.
        let mut qinq = frame(Some(7), ETH_P_8021Q, 0, 68);
        qinq[12..14].copy_from_slice(&0x88A8u16.to_be_bytes());
        assert!(!accepts(&qinq, libc::PACKET_HOST), "QinQ accepted");
    }

    #[test]
    fn test_filter_drops_outgoing() {
        let request = frame(None, ETH_P_AOE, 0x10, 60);
        assert!(!accepts(&request, libc::PACKET_OUTGOING));
    }

    #[test]
    fn test_filter_jumps_stay_in_program() {
        let program = aoe_request_filter();
        for (position, insn) in program.iter().enumerate() {
            let code = u32::from(insn.code);
            if code & 0x07 == libc::BPF_JMP {
                let base = position + 1;
                let targets = if code == libc::BPF_JMP | libc::BPF_JA {
                    vec![base + insn.k as usize]
                } else {
                    vec![base + usize::from(insn.jt), base + usize::from(insn.jf)]
                };
                for target in targets {
                    assert!(target < program.len(), "insn {position} jumps to {target}");
                }
            }
        }
        let last = program[FILTER_LEN - 1];
        assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_K);
    }

    #[test]
    fn test_copy_restoring_tag() {
        let src: Vec<u8> = (0..40).collect();
        let mut dst = [0u8; 44];
        // SAFETY: 40 readable bytes, 44 writable bytes, distinct buffers.
        unsafe { copy_restoring_tag(src.as_ptr(), dst.as_mut_ptr(), 40, Some((0x8100, 0x202A))) };
        assert_eq!(dst[..12], src[..12]);
        assert_eq!(dst[12..16], [0x81, 0x00, 0x20, 0x2A]);
        assert_eq!(dst[16..], src[12..]);
    }

    #[test]
    fn test_config_validation() {
        assert!(validate(&PacketConfig::default()).is_ok());
        assert!(validate(&PacketConfig {
            ring: RingVersion::v3_default(),
            ..PacketConfig::default()
        })
        .is_ok());
        let v3 = |block_size, block_count, retire_timeout_ms| PacketConfig {
            ring: RingVersion::V3 {
                block_size,
                block_count,
                retire_timeout_ms,
            },
            ..PacketConfig::default()
        };
        let v2 = |slot_size, slot_count| PacketConfig {
            ring: RingVersion::V2 {
                slot_size,
                slot_count,
            },
            ..PacketConfig::default()
        };
        assert!(validate(&v3(4096, 1, 1)).is_ok());
        assert!(validate(&v2(2048, 1)).is_ok());
        let cases = [
            PacketConfig {
                frame_count: 0,
                ..PacketConfig::default()
            },
            PacketConfig {
                tx_ring_size: 0,
                ..PacketConfig::default()
            },
            v3(3000, 64, 1),
            v3(2048, 64, 1),
            v3(65536, 0, 1),
            v3(65536, 64, 0),
            v3(1 << 30, 8, 1),
            v2(1000, 64),
            v2(1024, 64),
            v2(4096, 0),
            v2(1 << 20, 1 << 13),
        ];
        for config in &cases {
            assert!(
                matches!(validate(config), Err(PacketError::Config { .. })),
                "{config:?} accepted"
            );
        }
    }

    #[test]
    fn test_v2_geometry_rounds_to_whole_pages() {
        // Two 2048-byte slots share a page: 5 slots need 3 blocks, which hold 6.
        assert_eq!(v2_geometry(2048, 5), (2, 3, 6));
        assert_eq!(v2_geometry(4096, 5), (1, 5, 5));
        assert_eq!(v2_geometry(8192, 3), (1, 3, 3));
        assert_eq!(v2_block_size(8192), 8192);
        assert_eq!(
            ring_bytes(&RingVersion::V2 {
                slot_size: 2048,
                slot_count: 5
            }),
            3 * 4096
        );
    }

    #[test]
    fn test_setup_hints_name_the_fix() {
        assert!(
            setup_hint("socket(AF_PACKET, SOCK_RAW)", Some(libc::EPERM)).contains("run as root")
        );
        assert!(setup_hint("PACKET_RX_RING", Some(libc::ENOMEM)).contains("smaller ring"));
        assert!(setup_hint("mmap rings", Some(libc::EAGAIN)).contains("RLIMIT_MEMLOCK"));
        assert!(setup_hint("PACKET_TX_RING", Some(libc::EINVAL)).contains("4.11"));
        assert!(setup_hint("bind", Some(libc::ENODEV)).contains("no such interface"));
    }

    #[test]
    fn test_port_can_move_to_a_worker_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<PacketPort>();
    }

    #[test]
    fn test_missing_interface_is_named() {
        let error = interface_index("aoex-no-such-if").unwrap_err();
        assert!(matches!(error, PacketError::NoInterface { .. }));
        assert!(error.to_string().contains("aoex-no-such-if"), "{error}");
    }
}

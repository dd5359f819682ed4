//! [`PacketPort`]: the AF_PACKET fallback transport, with the same methods as
//! [`XskPort`](crate::sys::xdp::xsk::XskPort).
//!
//! Where XDP cannot be attached or an AF_XDP socket cannot be bound (no driver support, no BPF
//! privileges), the dataplane runs over `AF_PACKET` `SOCK_RAW` sockets instead: per interface
//! one that receives and one that sends. The caller decides when to fall back; this module
//! only builds the port.
//!
//! Contract: the port owns a frame area laid out exactly like the XDP UMEM (see `umem.rs`:
//! 4096-byte chunks, packet at chunk + 476, payload after a 36-byte AoE/ATA header at chunk + 512)
//! and a [`FramePool`], so the data path gets the same move-only [`Frame`] handles and the same
//! loop works unchanged:
//!
//! ```text
//! loop {
//!     port.reap_completions();          // frames sent (freed) since last time
//!     port.refill()?;                   // no-op: there is no fill ring
//!     for frame in port.rx_burst(32) {  // RX ring -> copy into a free frame
//!         // read port.data(&frame), build the reply in port.data_mut(&mut frame)
//!         port.transmit(frame, reply_len);   // or port.release(frame)
//!     }
//!     port.flush_tx()?;                 // queued frames -> kernel, one sendmmsg() per batch
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
//! - TX: a second socket that only sends: protocol 0, so the kernel delivers it nothing; bound
//!   to the interface, so a message needs no address; `PACKET_QDISC_BYPASS`, so frames go
//!   straight to the driver. `flush_tx` points one `iovec` per queued frame at the frame's
//!   bytes in the frame area and hands them all to the kernel with one
//!   `sendmmsg(MSG_DONTWAIT)` (up to 1024 frames, the kernel's `UIO_MAXIOV`; a longer queue
//!   takes one call per 1024). The kernel copies each message into an skb of its own before
//!   the call returns (`packet_snd`: the one copy of the transmit path, counted in
//!   [`PacketStats::tx_copy_bytes`]), so each frame it took is free at once; a frame sent is
//!   the same bytes as the frame queued, an 802.1Q tag included.
//!
//!   Why not a TX ring (`PACKET_TX_RING`, which this port used before): the kernel attaches
//!   the ring's pages to the skb as zero-copy fragments, and veth (as anything that hands the
//!   skb to another socket or namespace) must copy them before the receiver sees them
//!   (`skb_copy_ubufs`). A NIC sends from the ring's pages, so there both ways cost one copy
//!   (into the ring, or into the skb), but on veth the ring cost two. Profiled under a
//!   two-machine veth emulation (random reads, queue depth 64), the ring's one `send` kick per
//!   batch took 38 % of the worker core (`skb_copy_ubufs` alone 9 %); one `sendmmsg` from the
//!   frames instead measured 223-229 k requests/s against 200-215 k.
//!
//!   Why a socket of its own: that experiment sent from a second socket because the first one
//!   still had its TX ring, and a socket with a TX ring always sends from it (`packet_sendmsg`
//!   calls `tpacket_snd`). With the TX ring gone the receiving socket could send as well; a
//!   socket of its own costs one fd and keeps sending apart: bound to protocol 0, it has the
//!   kernel read each skb's protocol from the frame's header (`packet_parse_headers`, a tag
//!   included), where a receiving socket bound to `ETH_P_AOE` would stamp 0x88A2 on every
//!   frame; its send budget and `PACKET_QDISC_BYPASS` stay off the receiving socket; and it is
//!   the set-up that was measured.
//!
//!   When the kernel does not take every frame: `sendmmsg` stops at the first message that
//!   fails and returns how many went before it, or that message's error if it was the first.
//!   Frames not sent stay queued, in order, for the next `flush_tx`, and the event is counted
//!   in [`PacketStats::tx_deferred`]: a part of the batch, or nothing with `EAGAIN` (the
//!   socket's send budget is used up until the device frees skbs), `ENOBUFS` (the device did
//!   not take the frame) or `EINTR`. A frame that would fail every retry must not hold back
//!   the frames behind it for ever. Once it is first in the queue (a partial send stopped at
//!   it), the next call returns its own error, and the flush drops it and goes on:
//!   - `EMSGSIZE` (longer than the MTU allows, 4 bytes more for a tagged frame) or `EINVAL`
//!     (shorter than an Ethernet header): at once ([`PacketStats::tx_rejected`]).
//!   - `ENOBUFS` says only that the device did not take the frame: its queue was stopped (the
//!     driver wakes it as soon as a few frames are sent), the link has no carrier, or it
//!     dropped this very frame (veth does with a frame longer than its peer's MTU, each
//!     time). So the frame is retried until the device has refused frames, without taking
//!     any, for [`PacketConfig::tx_refused_hold_ms`] (100 ms by default), then dropped, and so
//!     is each next one it refuses until it takes one ([`PacketStats::tx_dropped`]).
//!
//!   Any other error (`ENETDOWN`, `ENXIO`: the interface is down or gone) is returned.
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
//! - With [`PacketConfig::vlan`] (the default) the receiving socket is bound to `ETH_P_ALL`. Such
//!   "taps" run before the kernel drops the tag, the ring header carries it
//!   (`TP_STATUS_VLAN_VALID`), and `rx_burst` puts it back into the frame, so the data path sees
//!   the frame as it was on the wire, tag in place, exactly as with XDP (its payload then sits
//!   at chunk + 516: see `umem::payload_is_aligned`). The filter runs for every frame on the
//!   interface; this host's outgoing frames are skipped by `PACKET_IGNORE_OUTGOING`.
//! - Without it the receiving socket is bound to `ETH_P_AOE` (0x88A2): the kernel delivers a
//!   tagged AoE frame (as `PACKET_OTHERHOST` when no VLAN device claims it) with the tag
//!   already removed and no trace of it in the ring header; a reply would go out untagged, on
//!   the wrong VLAN.
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
//!   slabs laid out as in `umem.rs` (a second io_uring arena). A frame longer than a chunk is
//!   copied from the ring into a free slab (still the one RX copy; `rx_burst` stops, leaving it
//!   in the ring, while no slab is free), and [`FrameArea::upgrade`] moves a request into a
//!   slab for a long reply, as on AF_XDP.
//!   [`FrameArea::max_frame_len`] is what the port carries; longer frames are dropped and
//!   counted in [`PacketStats::rx_too_long`].
//! - `wait_rx` reports packets waiting in the ring even when no free frame is left to copy them
//!   into; `rx_burst` then returns nothing until frames come back.
//! - Dropping the port with frames still held by the application is allowed, but the handles
//!   then panic when dropped (release them first).
//! - A link without carrier (its peer down, a cable out) refuses every frame with `ENOBUFS`:
//!   replies stay queued, holding their frames, for [`PacketConfig::tx_refused_hold_ms`],
//!   and are dropped after that (meanwhile no request arrives either). A frame longer than a
//!   veth peer's MTU (the two ends' MTUs differ) holds back the frames behind it as long.
//! - The sockets are bound in the calling thread's network namespace.
//!
//! [`FramePool`]: crate::sys::frame::FramePool
//! [`Frame`]: crate::sys::frame::Frame
//! [`FrameArea`]: crate::sys::frame_area::FrameArea
//! [`FrameArea::upgrade`]: crate::sys::frame_area::FrameArea::upgrade
//! [`FrameArea::max_frame_len`]: crate::sys::frame_area::FrameArea::max_frame_len
//! [`DstFilter`]: crate::sys::xdp::DstFilter

pub mod burst;
mod config;
mod filter;
mod port;
pub mod raw;
mod ring;
mod sender;
mod setup;

pub use config::{PacketConfig, RingVersion};
pub use filter::{aoe_request_filter, FILTER_LEN};
pub use port::{PacketPort, PacketStats};

use std::io;

/// The AoE ethertype (the one definition is [`crate::wire::ETHERTYPE_AOE`]).
pub use crate::wire::ETHERTYPE_AOE as ETH_P_AOE;

/// The 802.1Q ethertype (the only tag the filter looks behind, as the XDP program does).
const ETH_P_8021Q: u16 = 0x8100;

const ETH_P_ALL: u16 = 0x0003;

const VLAN_TAG_LEN: usize = 4;

/// Two MAC addresses: where a VLAN tag goes back in.
const MACS_LEN: usize = 12;

const PAGE_SIZE: usize = 4096;

/// `TPACKET_V2` and `TPACKET_V3` from `enum tpacket_versions`.
const TPACKET_V2: libc::c_int = 1;

const TPACKET_V3: libc::c_int = 2;

/// Bytes of an RX slot (V2) or block (V3) that are not frame data, rounded up: ring header,
/// `sockaddr_ll`, alignment (the kernel puts the frame at offset 66 of a V2 slot, 130 of a V3
/// block's first packet).
const V2_RX_OVERHEAD: usize = 96;

const V3_RX_OVERHEAD: usize = 160;

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
    #[error("cannot set up an AF_PACKET socket on {interface} ({call}): {hint}")]
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
    #[error("{call} failed on an AF_PACKET socket: {source}")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
}

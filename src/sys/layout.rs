//! Frame layout: where a packet and its payload sit in a buffer chunk. Both ports use it: the
//! AF_XDP UMEM ([`super::xdp::umem`]) and the AF_PACKET port's frame arena ([`super::packet`]).
//!
//! Layout of every frame (chunk), chosen so that AoE payloads are 512-aligned for `O_DIRECT`:
//!
//! ```text
//! chunk+0     FRAME_HEADROOM (220) bytes of user headroom (unused)
//! chunk+220   XDP_PACKET_HEADROOM (256) bytes the kernel reserves for XDP
//! chunk+476   packet: Ethernet header (14) + AoE header (10) + ATA header (12) = 36 bytes
//! chunk+512   AoE payload (sector data), 512-aligned, up to 3584 bytes (7 sectors)
//! chunk+4096  end of chunk
//! ```
//!
//! The kernel places received data at `chunk + XDP_PACKET_HEADROOM + headroom` (verified on
//! veth in copy mode by `tests/xdp_reflect.rs`), and TX descriptors reuse the same address, so
//! a reply built in a received frame keeps the payload at chunk+512. A frame may be written up
//! to the chunk end ([`FRAME_CAPACITY`] bytes from the packet start), so a reply can be longer
//! than its request.
//!
//! Hazard: a request behind one 802.1Q tag is 4 bytes longer in front, so its payload lands at
//! chunk+516 — not 512-aligned. Callers doing `O_DIRECT` straight from/to the frame must check
//! [`payload_is_aligned`] and bounce-copy otherwise.
//!
//! Jumbo slabs: behind the `frame_count` frames the mapping holds `slab_count` slabs of
//! [`SLAB_CHUNKS`] consecutive chunks each ([`SLAB_SIZE`] bytes). A slab is never put on the fill
//! ring; it holds one whole jumbo packet contiguously, laid out like a frame (packet at
//! slab+476, payload at slab+512) but [`SLAB_CAPACITY`] bytes long. The kernel never sees a slab
//! as one buffer: a slab packet is transmitted as a chain of descriptors, one per chunk (aligned
//! mode forbids a descriptor to cross a chunk boundary), the first at slab+476 and the others at
//! the start of the next chunks.
//!
/// Size of one UMEM frame (chunk); a power of two, as aligned mode requires.
pub const FRAME_SIZE: usize = 4096;
/// Headroom the kernel reserves in front of every packet for XDP (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: usize = 256;
/// User headroom configured on the UMEM; chosen so [`PAYLOAD_OFFSET`] is 512-aligned.
pub const FRAME_HEADROOM: usize = 220;
/// Offset of the first packet byte (Ethernet header) inside a chunk.
pub const PACKET_OFFSET: usize = XDP_PACKET_HEADROOM + FRAME_HEADROOM;
/// Ethernet (14) + AoE common (10) + ATA (12) header bytes of an untagged AoE ATA frame.
pub use crate::wire::ATA_FRAME_HEADER_LEN as AOE_ATA_HEADERS_LEN;
/// Offset of the AoE ATA payload inside a chunk, for an untagged frame.
pub const PAYLOAD_OFFSET: usize = PACKET_OFFSET + AOE_ATA_HEADERS_LEN;
/// Alignment of [`PAYLOAD_OFFSET`] (the sector size `O_DIRECT` needs).
pub const PAYLOAD_ALIGN: usize = 512;
/// Bytes a packet may occupy, from its start to the end of its chunk.
pub const FRAME_CAPACITY: usize = FRAME_SIZE - PACKET_OFFSET;
/// Chunks per jumbo slab.
pub const SLAB_CHUNKS: usize = 3;
/// Bytes per jumbo slab.
pub const SLAB_SIZE: usize = SLAB_CHUNKS * FRAME_SIZE;
/// Bytes a packet may occupy in a slab, from its start (slab + [`PACKET_OFFSET`]) to the slab
/// end.
pub const SLAB_CAPACITY: usize = SLAB_SIZE - PACKET_OFFSET;
/// Largest Ethernet frame (without FCS) at MTU 9000 behind one 802.1Q tag.
pub const JUMBO_FRAME_LEN: usize = 9000 + 14 + 4;
/// Minimum Ethernet frame length without FCS; shorter frames are zero-padded on transmit.
pub use crate::wire::MIN_FRAME_LEN as ETH_MIN_FRAME_LEN;

const _: () = assert!(FRAME_SIZE.is_power_of_two());
const _: () = assert!(PACKET_OFFSET == 476);
const _: () = assert!(PAYLOAD_OFFSET == 512);
const _: () = assert!(PAYLOAD_OFFSET % PAYLOAD_ALIGN == 0);
// An MTU-1500 AoE frame (1024 bytes of data) fits, and so do 7 sectors.
const _: () = assert!(FRAME_SIZE - PAYLOAD_OFFSET >= 7 * 512);
const _: () = assert!(FRAME_CAPACITY >= 1514);
const _: () = assert!(SLAB_CAPACITY >= JUMBO_FRAME_LEN);

/// True if the payload of a frame whose packet starts at `umem_offset`, after `headers_len`
/// header bytes, is [`PAYLOAD_ALIGN`]-aligned in the UMEM.
pub fn payload_is_aligned(umem_offset: usize, headers_len: usize) -> bool {
    (umem_offset + headers_len) % PAYLOAD_ALIGN == 0
}

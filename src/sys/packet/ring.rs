//! The mmap'ed TPACKET RX ring, walked block by block (`TPACKET_V3`) or slot by slot
//! (`TPACKET_V2`). Each status word is the hand-over point with the kernel; see the port's
//! module docs for the contract.

use std::mem::offset_of;
use std::sync::atomic::Ordering;

use super::{ETH_P_8021Q, MACS_LEN, VLAN_TAG_LEN};
use crate::sys::mem::Mapping;

/// `tpacket_block_desc.hdr.bh1.block_status` and friends (the union member is at offset 0).
pub(super) const BLOCK_STATUS_OFFSET: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);

pub(super) const BLOCK_NUM_PKTS_OFFSET: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);

pub(super) const BLOCK_FIRST_PKT_OFFSET: usize = offset_of!(libc::tpacket_block_desc, hdr)
    + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);

pub(super) const V2_STATUS_OFFSET: usize = offset_of!(libc::tpacket2_hdr, tp_status);

const _: () = assert!(BLOCK_STATUS_OFFSET == 8 && V2_STATUS_OFFSET == 0);

/// A `T` at `offset` in `map`, read with a volatile load (shared memory the compiler must not
/// cache or invent reads of).
///
/// # Safety
///
/// `offset .. offset + size_of::<T>()` must be inside `map`, suitably aligned for `T`, in a
/// part of the ring that user space owns at the moment (an RX block or slot whose status said
/// `TP_STATUS_USER`, loaded with `Acquire`), and every bit pattern must be a valid `T`.
pub(super) unsafe fn read_ring<T>(map: &Mapping, offset: usize) -> T {
    assert!(offset + size_of::<T>() <= map.len);
    // SAFETY: the caller guarantees a live, aligned, user-owned location holding a valid `T`.
    unsafe { std::ptr::read_volatile(map.at(offset).cast::<T>()) }
}

/// One received packet in the RX ring, as found by [`RxRing::peek`].
#[derive(Clone, Copy, Debug)]
pub(super) struct RxPacket {
    /// Offset of the first frame byte in the ring mapping.
    pub(super) data: usize,
    /// Bytes in the ring (`tp_snaplen`).
    pub(super) captured: usize,
    /// Bytes the frame had (`tp_len`); more than `captured` if the kernel truncated it.
    pub(super) len: usize,
    /// (TPID, TCI) of a VLAN tag the kernel removed.
    pub(super) vlan: Option<(u16, u16)>,
    /// V3: offset from this packet's header to the next one's.
    pub(super) next_offset: usize,
}

/// The RX ring and user space's position in it.
#[derive(Debug)]
pub(super) enum RxRing {
    V3(BlockCursor),
    V2(SlotCursor),
}

impl RxRing {
    /// The next received packet, opening the next V3 block if needed; `None` if the ring holds
    /// none. Does not move past it (see [`Self::advance`]).
    pub(super) fn peek(&mut self, map: &Mapping) -> Option<RxPacket> {
        match self {
            RxRing::V3(cursor) => cursor.peek(map),
            RxRing::V2(cursor) => cursor.peek(map),
        }
    }

    /// Moves past the packet [`Self::peek`] returned, after the caller copied it; hands its
    /// block (V3, after the block's last packet) or slot (V2) back to the kernel.
    pub(super) fn advance(&mut self, map: &Mapping, packet: &RxPacket) {
        match self {
            RxRing::V3(cursor) => cursor.advance(map, packet),
            RxRing::V2(cursor) => cursor.advance(map),
        }
    }

    /// True if [`Self::peek`] would find a packet.
    pub(super) fn ready(&self, map: &Mapping) -> bool {
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
pub(super) struct BlockCursor {
    pub(super) block_size: usize,
    pub(super) block_count: u32,
    /// The block being read, or the next one to check.
    pub(super) block: u32,
    /// Packets of `block` not yet consumed; 0 when `block` is not open.
    pub(super) left: u32,
    /// Offset of the next packet header from the block start.
    pub(super) offset: usize,
}

impl BlockCursor {
    pub(super) fn base(&self) -> usize {
        self.block as usize * self.block_size
    }

    pub(super) fn peek(&mut self, map: &Mapping) -> Option<RxPacket> {
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
    pub(super) fn open(&mut self, map: &Mapping) -> bool {
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

    pub(super) fn advance(&mut self, map: &Mapping, packet: &RxPacket) {
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
    pub(super) fn release(&mut self, map: &Mapping) {
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
pub(super) struct SlotCursor {
    pub(super) slot_size: usize,
    pub(super) slot_count: u32,
    /// The next slot to read.
    pub(super) slot: u32,
}

impl SlotCursor {
    pub(super) fn base(&self) -> usize {
        self.slot as usize * self.slot_size
    }

    pub(super) fn peek(&self, map: &Mapping) -> Option<RxPacket> {
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

    pub(super) fn advance(&mut self, map: &Mapping) {
        // Release: the copy of this slot's packet (made by the caller before this call) happens
        // before the kernel can see TP_STATUS_KERNEL and refill the slot (it checks the status
        // in `tpacket_rcv` before writing).
        map.status_word(self.base() + V2_STATUS_OFFSET)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.slot = (self.slot + 1) % self.slot_count;
    }
}

/// The VLAN tag recorded in a ring header's status, if any.
pub(super) fn vlan_of(status: u32, tpid: u16, tci: u16) -> Option<(u16, u16)> {
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
pub(super) fn packet_at(
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

/// The kernel's RX ring, mapped, and user space's position in it.
pub(super) struct Ring {
    pub(super) map: Mapping,
    pub(super) rx: RxRing,
}

/// Copies `len` bytes from `src` to `dst`; with `vlan = Some((tpid, tci))` inserts the 4-byte
/// tag after the two MAC addresses (`dst` receives `len + 4` bytes).
///
/// # Safety
///
/// `src` must be readable for `len` bytes, `dst` writable for `len` (+ 4 with a tag) bytes, the
/// ranges must not overlap, and `len >= 12` when a tag is given.
pub(super) unsafe fn copy_restoring_tag(
    src: *const u8,
    dst: *mut u8,
    len: usize,
    vlan: Option<(u16, u16)>,
) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

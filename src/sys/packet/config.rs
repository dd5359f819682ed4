//! What a [`super::PacketPort`] is built from: the ring layout ([`RingVersion`]) and sizes
//! ([`PacketConfig`]), and the checks they must pass before any syscall.

use super::{PacketError, PAGE_SIZE, V2_RX_OVERHEAD, V3_RX_OVERHEAD, VLAN_TAG_LEN};
use crate::sys::layout::{FRAME_CAPACITY, JUMBO_FRAME_LEN, SLAB_CAPACITY};

/// Most messages one `sendmmsg` takes: the kernel caps `vlen` at `UIO_MAXIOV`.
pub(super) const SEND_BATCH_MAX: usize = 1024;

/// The RX ring layout.
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
        /// ([`PacketStats::rx_too_long`](super::PacketStats::rx_too_long)). 4096 fits every
        /// frame a chunk can hold.
        slot_size: u32,
        /// Slots, rounded up to fill whole pages (kernel memory: `slot_size * slot_count`).
        slot_count: u32,
    },
}

/// Geometry and options of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketConfig {
    /// Frames in the frame area (each [`FRAME_SIZE`](crate::sys::layout::FRAME_SIZE) bytes of
    /// ordinary anonymous memory).
    pub frame_count: u32,
    /// RX ring layout and size.
    pub ring: RingVersion,
    /// Milliseconds the device may refuse (`ENOBUFS`) the oldest queued frame, without taking
    /// any frame meanwhile, before that frame is dropped (0: at the first refusal). Frames
    /// wait in the queue meanwhile; a device queue that is full drains far sooner, a link
    /// without carrier or a frame the device never takes does not (see the module docs).
    pub tx_refused_hold_ms: u32,
    /// Bind to `ETH_P_ALL` so AoE behind one 802.1Q tag arrives with its tag (see the module
    /// docs); `false` binds to `ETH_P_AOE` and loses tags.
    pub vlan: bool,
}

impl Default for PacketConfig {
    /// 16 MiB of frames, 4 MiB of RX ring:
    /// frame_count 4096 = 2048 (RX bursts and requests waiting for storage)
    ///                  + 2048 (replies queued for TX).
    /// RX: `TPACKET_V2`, 1024 slots of 4 KiB (16 windows of 64 requests; a 4 KiB slot holds
    /// any frame a chunk can).
    /// TX: `sendmmsg` straight from the frames, nothing to size; a refused frame is held for
    /// 100 ms (a driver wakes its stopped queue as soon as a few of its frames are sent).
    fn default() -> Self {
        Self {
            frame_count: 4096,
            ring: RingVersion::V2 {
                slot_size: 4096,
                slot_count: 1024,
            },
            tx_refused_hold_ms: 100,
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
    pub(super) fn rx_frame_max(&self) -> usize {
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
    /// slabs.
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

    /// Most frames one `sendmmsg` sends: every frame that can be queued (frames and slabs), at
    /// most [`SEND_BATCH_MAX`] (more take one call per [`SEND_BATCH_MAX`]).
    pub(super) fn send_batch_max(&self) -> usize {
        (self.frame_count as usize + self.slab_count() as usize).min(SEND_BATCH_MAX)
    }

    /// The sending socket's budget (`SO_SNDBUFFORCE`; the kernel doubles it for its
    /// bookkeeping): a whole batch of the longest frames, each with a page for its skb's head
    /// and the rounding of its data to pages.
    pub(super) fn send_buffer_bytes(&self) -> usize {
        self.send_batch_max() * (self.max_frame_len() + PAGE_SIZE)
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

/// Bytes of kernel memory the RX ring takes.
pub(super) fn ring_bytes(ring: &RingVersion) -> usize {
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
pub(super) fn v2_block_size(slot_size: u32) -> u32 {
    slot_size.max(u32::try_from(PAGE_SIZE).expect("4096 fits"))
}

/// (slots per block, blocks, slots) for `slot_count` V2 slots, rounded up to whole blocks.
pub(super) fn v2_geometry(slot_size: u32, slot_count: u32) -> (u32, u32, u32) {
    let per_block = v2_block_size(slot_size) / slot_size;
    let blocks = slot_count.div_ceil(per_block);
    (per_block, blocks, blocks * per_block)
}

pub(super) fn validate(config: &PacketConfig) -> Result<(), PacketError> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn test_send_batch_covers_every_queued_frame_up_to_uio_maxiov() {
        assert_eq!(PacketConfig::default().send_batch_max(), SEND_BATCH_MAX);
        let small = PacketConfig {
            frame_count: 256,
            ..PacketConfig::default()
        };
        assert_eq!(small.send_batch_max(), 256);
        let jumbo = PacketConfig {
            frame_count: 256,
            ..PacketConfig::for_mtu(9000)
        };
        assert_eq!(jumbo.send_batch_max(), 256 + 16, "frames and slabs");
        assert!(jumbo.send_buffer_bytes() >= 272 * SLAB_CAPACITY);
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
}

//! Golden frames for tests, written byte by byte from the layout in AoE r11 §3 and what the
//! Linux initiator (`drivers/block/aoe/aoecmd.c`) puts on the wire. Short frames carry the zero
//! padding a NIC adds up to the 60-byte Ethernet minimum.
//!
//! Offsets: Ethernet 0..14 (0..18 with a tag), AoE header 14..24, command argument from 24.

use proptest::prelude::*;

use super::ethernet::MacAddr;
use super::{Error, Result};

/// The initiator's MAC in every golden frame.
pub const INITIATOR: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The target's MAC in every golden frame.
pub const TARGET: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];

/// [`INITIATOR`] and [`TARGET`] as addresses.
pub const INITIATOR_MAC: MacAddr = MacAddr(INITIATOR);
pub const TARGET_MAC: MacAddr = MacAddr(TARGET);
/// The two MACs the golden Mac Mask List and Reserve/Release frames list, in order.
pub const MAC_1: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const MAC_2: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

/// Start of the AoE header in an untagged frame.
pub const AOE_OFFSET: usize = 14;
/// Start of the command argument in an untagged frame.
pub const ARG_OFFSET: usize = 24;
/// Start of the ATA data in an untagged frame.
pub const DATA_OFFSET: usize = 36;

fn frame(dst: [u8; 6], src: [u8; 6], rest: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&dst);
    bytes.extend_from_slice(&src);
    for part in rest {
        bytes.extend_from_slice(part);
    }
    if bytes.len() < 60 {
        bytes.resize(60, 0);
    }
    bytes
}

/// The data pattern of sector-sized payloads: byte `i` is `i * 7 + seed` (mod 256).
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            u8::try_from(i % 256)
                .unwrap()
                .wrapping_mul(7)
                .wrapping_add(seed)
        })
        .collect()
}

/// Linux discovery: Query Config read broadcast to shelf 0xFFFF slot 0xFF, everything zero.
pub fn query_config_broadcast() -> Vec<u8> {
    frame(
        [0xff; 6],
        INITIATOR,
        &[
            &[0x88, 0xa2],
            // ver 1, no flags | error | major ffff | minor ff | cmd 1 | tag 0
            &[0x10, 0x00, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x00],
            // buffer count | firmware | sector count | ver/ccmd | string length
            &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        ],
    )
}

/// A target's Query Config reply from e1.2: 64 buffers, firmware 0x4019, 2 sectors, AoE
/// version 1, CCmd read, config string "aoe-xdp".
pub fn query_config_reply() -> Vec<u8> {
    frame(
        INITIATOR,
        TARGET,
        &[
            &[0x88, 0xa2],
            // ver 1, R | error | major 1 | minor 2 | cmd 1 | tag
            &[0x18, 0x00, 0x00, 0x01, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00],
            &[0x00, 0x40, 0x40, 0x19, 0x02, 0x10, 0x00, 0x07],
            b"aoe-xdp",
        ],
    )
}

/// ATA READ SECTORS EXT of 2 sectors at LBA 0x01_0203_0405 to e1.2, tag 0x8001abcd.
pub fn ata_read_ext_request() -> Vec<u8> {
    frame(
        TARGET,
        INITIATOR,
        &[
            &[0x88, 0xa2],
            &[0x10, 0x00, 0x00, 0x01, 0x02, 0x00, 0x80, 0x01, 0xab, 0xcd],
            // aflags E | feature | count 2 | cmd 0x24 | LBA 0..5 little-endian | reserved
            &[
                0x40, 0x00, 0x02, 0x24, 0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00,
            ],
        ],
    )
}

/// The reply to [`ata_read_ext_request`]: status DRDY, 1024 bytes of [`data`] (seed 1).
pub fn ata_read_ext_reply() -> Vec<u8> {
    frame(
        INITIATOR,
        TARGET,
        &[
            &[0x88, 0xa2],
            &[0x18, 0x00, 0x00, 0x01, 0x02, 0x00, 0x80, 0x01, 0xab, 0xcd],
            &[
                0x40, 0x00, 0x02, 0x40, 0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00,
            ],
            &data(1024, 1),
        ],
    )
}

/// ATA WRITE SECTORS EXT of 1 sector at LBA 0x10, tag 7, 512 bytes of [`data`] (seed 9).
pub fn ata_write_ext_request() -> Vec<u8> {
    frame(
        TARGET,
        INITIATOR,
        &[
            &[0x88, 0xa2],
            &[0x10, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x07],
            // aflags E|W | feature | count 1 | cmd 0x34 | LBA 0x10 | reserved
            &[
                0x41, 0x00, 0x01, 0x34, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ],
            &data(512, 9),
        ],
    )
}

/// LBA28 READ SECTORS of 2 sectors at 0x0ABCDEF as Linux sends it: byte 3 of the LBA carries
/// `0xE0` (LBA bit + obsolete bits) above the top nibble.
pub fn ata_read28_request() -> Vec<u8> {
    frame(
        TARGET,
        INITIATOR,
        &[
            &[0x88, 0xa2],
            &[0x10, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x08],
            &[
                0x00, 0x00, 0x02, 0x20, 0xef, 0xcd, 0xab, 0xe0, 0x00, 0x00, 0x00, 0x00,
            ],
        ],
    )
}

/// IDENTIFY DEVICE for e1.2 in VLAN 100, priority 1 (TCI 0x2064), tag 0x0000_0102.
pub fn vlan_ata_identify() -> Vec<u8> {
    frame(
        TARGET,
        INITIATOR,
        &[
            &[0x81, 0x00, 0x20, 0x64, 0x88, 0xa2],
            &[0x10, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x02],
            &[
                0x00, 0x00, 0x01, 0xec, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ],
        ],
    )
}

/// Mac Mask List edit to e1.2: add 02:00:00:00:00:01, delete 02:00:00:00:00:02.
pub fn mask_edit_request() -> Vec<u8> {
    frame(
        TARGET,
        INITIATOR,
        &[
            &[0x88, 0xa2],
            &[0x10, 0x00, 0x00, 0x01, 0x02, 0x02, 0x00, 0x00, 0x00, 0x21],
            // reserved | MCmd edit | MError | dir count 2
            &[0x00, 0x01, 0x00, 0x02],
            // reserved | DCmd add | MAC
            &[0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01],
            // reserved | DCmd delete | MAC
            &[0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02],
        ],
    )
}

/// Reserve/Release set to e1.2 for 02:00:00:00:00:01 and 02:00:00:00:00:02.
pub fn reserve_set_request() -> Vec<u8> {
    frame(
        TARGET,
        INITIATOR,
        &[
            &[0x88, 0xa2],
            &[0x10, 0x00, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x31],
            // RCmd set | NMacs 2
            &[0x01, 0x02],
            &[0x02, 0x00, 0x00, 0x00, 0x00, 0x01],
            &[0x02, 0x00, 0x00, 0x00, 0x00, 0x02],
        ],
    )
}

/// Every golden frame (all are valid down to the command argument).
pub fn all_frames() -> Vec<Vec<u8>> {
    vec![
        query_config_broadcast(),
        query_config_reply(),
        ata_read_ext_request(),
        ata_read_ext_reply(),
        ata_write_ext_request(),
        ata_read28_request(),
        vlan_ata_identify(),
        mask_edit_request(),
        reserve_set_request(),
    ]
}

/// Asserts that `new_checked` rejects every prefix of `bytes` shorter than `len`.
pub fn assert_rejects_shorter<'a, V: core::fmt::Debug>(
    bytes: &'a [u8],
    len: usize,
    new_checked: impl Fn(&'a [u8]) -> Result<V>,
) {
    for short in 0..len {
        assert_eq!(
            new_checked(&bytes[..short]).err(),
            Some(Error),
            "len {short}"
        );
    }
}

/// Asserts that `len` is the shortest prefix of `bytes` that `new_checked` accepts: where the
/// header and the lengths it declares end.
pub fn assert_shortest<'a, V: core::fmt::Debug>(
    bytes: &'a [u8],
    len: usize,
    new_checked: impl Fn(&'a [u8]) -> Result<V>,
) {
    assert_rejects_shorter(bytes, len, &new_checked);
    assert!(new_checked(&bytes[..len]).is_ok(), "len {len}");
}

/// Any MAC address.
pub fn arb_mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

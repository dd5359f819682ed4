//! Wire formats: typed, bounds-checked views over frame bytes (smoltcp style).
//!
//! Every message has two forms:
//!
//! * a **view** (`EthernetFrame<T>`, `AoePacket<T>`, `AtaPacket<T>`, `QueryConfigPacket<T>`,
//!   `MacMaskPacket<T>`, `ReservePacket<T>`) wrapping any `T: AsRef<[u8]>`; getters need
//!   `AsRef<[u8]>`, setters `AsMut<[u8]>`. Field offsets exist only in each file's private
//!   `mod field`; code outside `wire/` never indexes frame bytes by hand.
//! * a **repr** (`EthernetRepr`, `AoeRepr`, ...) — the header as plain values, with
//!   `Repr::parse(&view)`, `repr.buffer_len()` and `repr.emit(&mut view)`.
//!
//! Layers nest: `EthernetFrame::payload()` is the AoE header, `AoePacket::payload()` is the
//! command argument (ATA, Query Config, Mac Mask List or Reserve/Release).
//!
//! # Contract
//!
//! * **RX**: frames from the network are only ever wrapped with `new_checked`. It verifies that
//!   the buffer holds the header *and* everything the header says follows it (VLAN tag, config
//!   string length, directive count, MAC count). After that, every getter on the view is
//!   infallible and panic-free, whatever the bytes are.
//! * **TX**: build a reply by wrapping exactly `repr.buffer_len()` bytes (or more, for the data
//!   that follows) with `new_unchecked` and calling `repr.emit`. Setters on a buffer that is too
//!   short panic: that is a bug in the caller, not peer input.
//! * Nothing here does I/O, allocates, reads a clock or waives `deny(unsafe_code)`; only `core` is needed
//!   (the error type additionally implements `std::error::Error`).
//!
//! # Hazards
//!
//! * `new_checked` does not validate semantics: the AoE version, opcodes, an ATA write's data
//!   length (`sector_count × 512` vs. payload) and a config string longer than
//!   [`CONFIG_STRING_MAX`] are the target's business (it answers with AoE or ATA errors
//!   rather than dropping the frame).
//! * Short frames are padded to 60 bytes on a real wire, so payloads may carry trailing
//!   padding; use the lengths the header declares.
//! * Multi-byte fields have explicit endianness: AoE and Query Config fields are big-endian,
//!   the ATA LBA is six little-endian bytes.

mod macros;
mod view;

pub mod aoe;
pub mod ata;
pub mod cfg;
pub mod ethernet;
pub mod mask;
pub mod reserve;

#[cfg(test)]
pub(crate) mod golden;

pub(crate) use macros::enum_with_unknown;

pub use aoe::{
    AoeCommand, AoeError, AoePacket, AoeRepr, AOE_HEADER_LEN, AOE_VERSION, SHELF_BROADCAST,
    SLOT_BROADCAST,
};
pub use ata::{
    identify_device, AtaCommand, AtaPacket, AtaRepr, IdentifyInfo, ATA_HEADER_LEN, SECTOR_SIZE,
};
pub use cfg::{
    ConfigCommand, QueryConfigPacket, QueryConfigRepr, CONFIG_STRING_MAX, QUERY_CONFIG_HEADER_LEN,
};
pub use ethernet::{
    pad_to_min, EthernetFrame, EthernetRepr, MacAddr, ParseMacAddrError, ETHERTYPE_AOE,
    ETHERTYPE_VLAN, HEADER_LEN as ETHERNET_HEADER_LEN, MIN_FRAME_LEN, VLAN_HEADER_LEN,
};
pub use mask::{
    DirectiveCommand, DirectiveRepr, MacMaskCommand, MacMaskError, MacMaskPacket, MacMaskRepr,
    DIRECTIVE_LEN, MASK_HEADER_LEN,
};
pub use reserve::{ReserveCommand, ReservePacket, ReserveRepr, RESERVE_HEADER_LEN};

/// Ethernet + AoE + ATA header bytes of an untagged AoE ATA frame: where its sector data
/// starts (36; 40 behind an 802.1Q tag). The one definition of that length.
pub const ATA_FRAME_HEADER_LEN: usize = ethernet::HEADER_LEN + AOE_HEADER_LEN + ATA_HEADER_LEN;

// The layout in AoE r11 §3.1: ATA data starts 36 bytes into an untagged frame, the Query Config
// string 32 bytes in. The field tables in each file must add up to that.
const _: () = assert!(ATA_FRAME_HEADER_LEN == 36);
const _: () = assert!(ethernet::HEADER_LEN + AOE_HEADER_LEN + QUERY_CONFIG_HEADER_LEN == 32);
const _: () = assert!(ethernet::VLAN_HEADER_LEN == ethernet::HEADER_LEN + 4);
const _: () = assert!(MASK_HEADER_LEN == 4 && DIRECTIVE_LEN == 8 && RESERVE_HEADER_LEN == 2);

/// A byte range of a header field.
type Field = core::ops::Range<usize>;
/// The bytes from an offset to the end of the buffer.
type Rest = core::ops::RangeFrom<usize>;

/// A frame is too short for its header or for the lengths its header declares.
///
/// A unit struct on purpose (smoltcp `wire::Error`): the parser does not say *why*, and
/// `aoe/` maps it to the AoE reply (or to a silent drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("malformed frame")]
pub struct Error;

/// The result of parsing wire bytes.
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn test_error_display() {
        assert_eq!(Error.to_string(), "malformed frame");
        let boxed: Box<dyn std::error::Error> = Box::new(Error);
        assert_eq!(boxed.to_string(), "malformed frame");
    }

    /// What the receive path does with a frame: every layer through `new_checked`, then every
    /// getter. Returns how many layers parsed, so tests can check the walk went deep.
    fn walk(bytes: &[u8]) -> usize {
        let Ok(eth) = EthernetFrame::new_checked(bytes) else {
            return 0;
        };
        let _ = (
            eth.dst_addr(),
            eth.src_addr(),
            eth.vlan_tci(),
            eth.header_len(),
        );
        EthernetRepr::parse(&eth).unwrap();
        if eth.ethertype() != ETHERTYPE_AOE {
            return 1;
        }
        let Ok(aoe) = AoePacket::new_checked(eth.payload()) else {
            return 1;
        };
        let repr = AoeRepr::parse(&aoe).unwrap();
        let _ = (
            aoe.version(),
            aoe.is_response(),
            aoe.is_error(),
            aoe.error(),
        );
        let _ = (aoe.major(), aoe.minor(), aoe.tag());
        let arg = aoe.payload();
        let parsed = match repr.command {
            AoeCommand::Ata => AtaPacket::new_checked(arg).map(|ata| {
                AtaRepr::parse(&ata).unwrap();
                let _ = (
                    ata.command(),
                    ata.is_lba48(),
                    ata.is_write(),
                    ata.payload().len(),
                );
            }),
            AoeCommand::QueryConfig => QueryConfigPacket::new_checked(arg).map(|qc| {
                let repr = QueryConfigRepr::parse(&qc).unwrap();
                assert_eq!(repr.config_string, qc.config_string());
            }),
            AoeCommand::MacMaskList => MacMaskPacket::new_checked(arg).map(|mask| {
                MacMaskRepr::parse(&mask).unwrap();
                assert_eq!(mask.directives().count(), usize::from(mask.dir_count()));
            }),
            AoeCommand::ReserveRelease => ReservePacket::new_checked(arg).map(|res| {
                ReserveRepr::parse(&res).unwrap();
                assert_eq!(res.macs().count(), usize::from(res.nmacs()));
            }),
            AoeCommand::Unknown(_) => Ok(()),
        };
        if parsed.is_ok() {
            3
        } else {
            2
        }
    }

    #[test]
    fn test_walk_golden_frames() {
        for frame in golden::all_frames() {
            assert_eq!(walk(&frame), 3, "{frame:02x?}");
        }
    }

    proptest! {
        /// The whole receive-side parser on arbitrary bytes never panics.
        #[test]
        fn prop_walk_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2200)) {
            walk(&bytes);
        }

        /// Arbitrary bytes behind a valid Ethernet + AoE header reach the command parsers.
        #[test]
        fn prop_walk_aoe_arbitrary_never_panics(
            command in 0u8..5,
            vlan in any::<bool>(),
            rest in proptest::collection::vec(any::<u8>(), 0..2100),
        ) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&[0xff; 12]);
            if vlan {
                bytes.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
            }
            bytes.extend_from_slice(&[0x88, 0xa2, 0x10, 0x00, 0x00, 0x01, 0x02, command, 0, 0, 0, 0]);
            bytes.extend_from_slice(&rest);
            prop_assert!(walk(&bytes) >= 2);
        }
    }
}

//! Ethernet II frames with at most one 802.1Q tag, and MAC addresses.
//!
//! Contract: see `wire` — RX frames via [`EthernetFrame::new_checked`], TX frames via
//! [`EthernetFrame::new_unchecked`] + [`EthernetRepr::emit`].
//!
//! Hazards: only one 802.1Q tag (TPID 0x8100) is understood. A QinQ outer tag (0x88A8) or a
//! second 0x8100 tag shows up as that value in [`EthernetFrame::ethertype`], so such frames
//! are simply not AoE. The FCS is not part of the buffer (NICs and AF_XDP strip it).

use core::fmt;
use core::str::FromStr;

use super::view::{self, view, Value};
use super::{Field, Rest, Result};

/// The AoE ethertype.
pub const ETHERTYPE_AOE: u16 = 0x88A2;
/// The 802.1Q tag protocol identifier.
pub const ETHERTYPE_VLAN: u16 = 0x8100;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; MacAddr::LEN]);

impl MacAddr {
    /// Length of an address on the wire.
    pub const LEN: usize = 6;

    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Builds an address from the first six bytes of `bytes`.
    ///
    /// # Panics
    /// If `bytes` is shorter than six bytes.
    pub fn from_bytes(bytes: &[u8]) -> MacAddr {
        let mut addr = [0; MacAddr::LEN];
        addr.copy_from_slice(&bytes[..MacAddr::LEN]);
        MacAddr(addr)
    }

    /// The six address bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit is set (broadcast is a multicast address).
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this addresses a single station.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address (expected six hex pairs, e.g. 52:54:00:12:34:56)")]
pub struct ParseMacAddrError;

impl FromStr for MacAddr {
    type Err = ParseMacAddrError;

    /// Accepts `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` and `aabbccddeeff`, in either case.
    /// Every byte must have two hex digits; separators must not be mixed.
    fn from_str(s: &str) -> core::result::Result<MacAddr, ParseMacAddrError> {
        let s = s.as_bytes();
        // Byte `i` starts at `i * stride`; separators sit between the pairs.
        let stride = match s.len() {
            12 => 2,
            17 => 3,
            _ => return Err(ParseMacAddrError),
        };
        if stride == 3 {
            let sep = s[2];
            if sep != b':' && sep != b'-' {
                return Err(ParseMacAddrError);
            }
            if (1..6).any(|i| s[i * 3 - 1] != sep) {
                return Err(ParseMacAddrError);
            }
        }
        let mut addr = [0u8; 6];
        for (i, byte) in addr.iter_mut().enumerate() {
            let hi = hex_digit(s[i * stride]).ok_or(ParseMacAddrError)?;
            let lo = hex_digit(s[i * stride + 1]).ok_or(ParseMacAddrError)?;
            *byte = hi << 4 | lo;
        }
        Ok(MacAddr(addr))
    }
}

/// The value of one hex digit (no sign, no prefix, unlike `u8::from_str_radix`).
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

view! {
    /// A read/write view of an Ethernet frame.
    pub struct EthernetFrame;
    mod field {
        /// Destination address.
        DESTINATION: Field = 0..6 => pub dst_addr, set_dst_addr: MacAddr;
        /// Source address.
        SOURCE: Field = 6..12 => pub src_addr, set_src_addr: MacAddr;
        /// The ethertype field right after the source address: the payload's ethertype, or
        /// [`super::ETHERTYPE_VLAN`] when a tag follows.
        ETHERTYPE: Field = 12..14 => outer_ethertype: u16;
        PAYLOAD: Rest = 14..;

        /// Tag control information (PCP, DEI, VID) of the 802.1Q tag.
        VLAN_TCI: Field = 14..16;
        /// The ethertype after the 802.1Q tag.
        VLAN_ETHERTYPE: Field = 16..18;
        VLAN_PAYLOAD: Rest = 18..;
    }
}

/// Stored as its six bytes, in order.
impl Value<Field> for MacAddr {
    #[inline]
    fn read(data: &[u8], at: Field) -> MacAddr {
        MacAddr::from_bytes(&data[at])
    }

    #[inline]
    fn write(self, data: &mut [u8], at: Field) {
        data[at].copy_from_slice(&self.0);
    }
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Shortest Ethernet frame without its FCS: shorter frames are zero-padded to it on transmit
/// (veth does not pad; `aoeping` ignores runts). The one definition of that length.
pub const MIN_FRAME_LEN: usize = 60;

/// Zero-pads the frame `buf[..len]` to [`MIN_FRAME_LEN`]; returns the length to send. Panics if
/// `buf` is shorter than that.
pub fn pad_to_min(buf: &mut [u8], len: usize) -> usize {
    if len < MIN_FRAME_LEN {
        buf[len..MIN_FRAME_LEN].fill(0);
        MIN_FRAME_LEN
    } else {
        len
    }
}
/// Length of an Ethernet header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = field::VLAN_PAYLOAD.start;

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that the buffer holds the header, including the 802.1Q tag if there is one.
    pub fn check_len(&self) -> Result<()> {
        view::check_len(self.buffer.as_ref().len(), HEADER_LEN, || {
            self.header_len() - HEADER_LEN
        })
    }

    fn is_tagged(&self) -> bool {
        self.outer_ethertype() == ETHERTYPE_VLAN
    }

    /// Header length: 14, or 18 with an 802.1Q tag.
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The 802.1Q tag control information, if the frame is tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_tagged()
            .then(|| u16::read(self.buffer.as_ref(), field::VLAN_TCI))
    }

    /// The ethertype of the payload (after the 802.1Q tag, if any).
    pub fn ethertype(&self) -> u16 {
        if self.is_tagged() {
            u16::read(self.buffer.as_ref(), field::VLAN_ETHERTYPE)
        } else {
            self.outer_ethertype()
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// The bytes after the header (AoE header onwards), with the buffer's lifetime.
    pub fn payload(&self) -> &'a [u8] {
        let start = self.header_len();
        &self.buffer.as_ref()[start..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the payload's ethertype, after the 802.1Q tag if the frame already has one.
    pub fn set_ethertype(&mut self, value: u16) {
        let range = if self.is_tagged() {
            field::VLAN_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Adds, changes or removes the 802.1Q tag, keeping the payload's ethertype.
    ///
    /// The payload is not moved: its start ([`header_len`](Self::header_len)) shifts by four
    /// bytes when a tag is added or removed.
    ///
    /// # Panics
    /// If `tci` is `Some` and the buffer is shorter than 18 bytes.
    pub fn set_vlan_tci(&mut self, tci: Option<u16>) {
        let ethertype = self.ethertype();
        let data = self.buffer.as_mut();
        match tci {
            Some(tci) => {
                data[field::VLAN_ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
                data[field::VLAN_TCI].copy_from_slice(&tci.to_be_bytes());
                data[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            }
            None => data[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes()),
        }
    }

    /// The bytes after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// An Ethernet header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Destination address.
    pub dst_addr: MacAddr,
    /// Source address.
    pub src_addr: MacAddr,
    /// 802.1Q tag control information; `None` for an untagged frame.
    pub vlan_tci: Option<u16>,
    /// Ethertype of the payload (inside the tag, if any).
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of a frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr {
            dst_addr: frame.dst_addr(),
            src_addr: frame.src_addr(),
            vlan_tci: frame.vlan_tci(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length in bytes: 14, or 18 when tagged.
    pub const fn buffer_len(&self) -> usize {
        if self.vlan_tci.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header into `frame`, whatever the buffer held before.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        let data = frame.buffer.as_mut();
        match self.vlan_tci {
            Some(tci) => {
                data[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
                data[field::VLAN_TCI].copy_from_slice(&tci.to_be_bytes());
                data[field::VLAN_ETHERTYPE].copy_from_slice(&self.ethertype.to_be_bytes());
            }
            None => data[field::ETHERTYPE].copy_from_slice(&self.ethertype.to_be_bytes()),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::golden::{self, arb_mac, INITIATOR_MAC as INITIATOR, TARGET_MAC as TARGET};
    use crate::wire::Error;
    use proptest::prelude::*;

    #[test]
    fn test_deconstruct() {
        let bytes = golden::query_config_broadcast();
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(frame.src_addr(), INITIATOR);
        assert_eq!(frame.vlan_tci(), None);
        assert_eq!(frame.ethertype(), ETHERTYPE_AOE);
        assert_eq!(frame.header_len(), 14);
        assert_eq!(frame.payload(), &bytes[14..]);
        assert_eq!(frame.payload().len(), 46);
    }

    #[test]
    fn test_deconstruct_vlan() {
        let bytes = golden::vlan_ata_identify();
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.dst_addr(), TARGET);
        assert_eq!(frame.src_addr(), INITIATOR);
        assert_eq!(frame.vlan_tci(), Some(0x2064));
        assert_eq!(frame.ethertype(), ETHERTYPE_AOE);
        assert_eq!(frame.header_len(), 18);
        assert_eq!(frame.payload(), &bytes[18..]);
        assert_eq!(frame.payload()[0], 0x10, "AoE version/flags byte");
    }

    #[test]
    fn test_construct() {
        let golden = golden::query_config_broadcast();
        let repr = EthernetRepr {
            dst_addr: MacAddr::BROADCAST,
            src_addr: INITIATOR,
            vlan_tci: None,
            ethertype: ETHERTYPE_AOE,
        };
        assert_eq!(repr.buffer_len(), 14);
        let mut bytes = [0xa5u8; 14];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        repr.emit(&mut frame);
        assert_eq!(bytes, golden[..14]);
    }

    #[test]
    fn test_construct_vlan() {
        let golden = golden::vlan_ata_identify();
        let repr = EthernetRepr {
            dst_addr: TARGET,
            src_addr: INITIATOR,
            vlan_tci: Some(0x2064),
            ethertype: ETHERTYPE_AOE,
        };
        assert_eq!(repr.buffer_len(), 18);
        // Stale bytes that look like a tag must not confuse emit.
        let mut bytes = [0x81u8; 18];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, golden[..18]);
    }

    #[test]
    fn test_parse_repr() {
        let bytes = golden::vlan_ata_identify();
        let repr = EthernetRepr::parse(&EthernetFrame::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                dst_addr: TARGET,
                src_addr: INITIATOR,
                vlan_tci: Some(0x2064),
                ethertype: ETHERTYPE_AOE,
            }
        );
    }

    #[test]
    fn test_set_vlan_tci_keeps_ethertype() {
        let mut bytes = [0u8; 64];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.set_ethertype(ETHERTYPE_AOE);
        frame.set_vlan_tci(Some(7));
        assert_eq!(
            (frame.vlan_tci(), frame.ethertype()),
            (Some(7), ETHERTYPE_AOE)
        );
        assert_eq!(frame.header_len(), 18);
        frame.set_ethertype(0x0800);
        assert_eq!(frame.ethertype(), 0x0800);
        frame.set_vlan_tci(None);
        assert_eq!((frame.vlan_tci(), frame.ethertype()), (None, 0x0800));
        assert_eq!(frame.header_len(), 14);
        frame.payload_mut()[0] = 0xee;
        assert_eq!(bytes[14], 0xee);
    }

    #[test]
    fn test_set_addrs() {
        let mut bytes = [0u8; 14];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.set_dst_addr(TARGET);
        frame.set_src_addr(INITIATOR);
        assert_eq!((frame.dst_addr(), frame.src_addr()), (TARGET, INITIATOR));
        assert_eq!(
            bytes[..12],
            [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x52, 0x54, 0, 0x12, 0x34, 0x56]
        );
    }

    #[test]
    fn test_reject_empty() {
        assert_eq!(EthernetFrame::new_checked(&[][..]), Err(Error));
    }

    #[test]
    fn test_reject_short_header() {
        let bytes = golden::query_config_broadcast();
        assert_eq!(EthernetFrame::new_checked(&bytes[..13]), Err(Error));
        assert!(EthernetFrame::new_checked(&bytes[..14]).is_ok());
    }

    #[test]
    fn test_reject_truncated_vlan_tag() {
        let bytes = golden::vlan_ata_identify();
        for len in 14..18 {
            assert_eq!(
                EthernetFrame::new_checked(&bytes[..len]),
                Err(Error),
                "len {len}"
            );
        }
        let frame = EthernetFrame::new_checked(&bytes[..18]).unwrap();
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn test_into_inner() {
        let bytes = [1u8; 14];
        assert_eq!(
            EthernetFrame::new_checked(&bytes[..]).unwrap().into_inner(),
            &bytes[..]
        );
    }

    #[test]
    fn test_mac_display_and_debug() {
        let mac = MacAddr([0x00, 0x1b, 0x21, 0xAB, 0xcd, 0xEF]);
        assert_eq!(mac.to_string(), "00:1b:21:ab:cd:ef");
        assert_eq!(format!("{mac:?}"), "00:1b:21:ab:cd:ef");
    }

    #[test]
    fn test_mac_from_str() {
        let mac = MacAddr([0x00, 0x1b, 0x21, 0xab, 0xcd, 0xef]);
        for s in [
            "00:1b:21:ab:cd:ef",
            "00-1B-21-AB-CD-EF",
            "001b21ABcdEF",
            "00:1B:21:aB:Cd:eF",
        ] {
            assert_eq!(s.parse::<MacAddr>(), Ok(mac), "{s}");
        }
    }

    #[test]
    fn test_mac_from_str_rejects() {
        for s in [
            "",
            "00:1b:21:ab:cd",
            "00:1b:21:ab:cd:ef:",
            "00:1b:21:ab:cd:e",
            "0:1b:21:ab:cd:eff",
            "00:1b-21:ab:cd:ef",
            "00.1b.21.ab.cd.ef",
            "00:1b:21:ab:cd:eg",
            "+0:1b:21:ab:cd:ef",
            "001b21abcde",
            "001b21abcdef0",
            "00 1b 21 ab cd ef",
            "00:1b:21:ab:cd:é",
        ] {
            assert_eq!(s.parse::<MacAddr>(), Err(ParseMacAddrError), "{s:?}");
        }
    }

    #[test]
    fn test_mac_kinds() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        let multicast = MacAddr([0x01, 0x80, 0xc2, 0, 0, 0]);
        assert!(multicast.is_multicast() && !multicast.is_broadcast() && !multicast.is_unicast());
        assert!(INITIATOR.is_unicast() && !INITIATOR.is_multicast() && !INITIATOR.is_broadcast());
    }

    #[test]
    fn test_mac_order() {
        assert!(MacAddr([0, 0, 0, 0, 0, 1]) < MacAddr([0, 0, 0, 0, 1, 0]));
        assert_eq!(
            MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6, 7]).as_bytes(),
            &[1, 2, 3, 4, 5, 6]
        );
    }

    proptest! {
        #[test]
        fn prop_repr_round_trip(
            dst_addr in arb_mac(),
            src_addr in arb_mac(),
            vlan_tci in proptest::option::of(any::<u16>()),
            ethertype in any::<u16>().prop_filter("the inner type is not a tag", |t| *t != ETHERTYPE_VLAN),
            stale in any::<u8>(),
        ) {
            let repr = EthernetRepr { dst_addr, src_addr, vlan_tci, ethertype };
            let mut bytes = vec![stale; repr.buffer_len()];
            repr.emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
            let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&frame).unwrap(), repr);
            prop_assert_eq!(frame.header_len(), repr.buffer_len());
            prop_assert!(frame.payload().is_empty());
        }

        #[test]
        fn prop_mac_display_parse_round_trip(mac in arb_mac()) {
            prop_assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
            prop_assert_eq!(mac.to_string().replace(':', "").parse::<MacAddr>(), Ok(mac));
            prop_assert_eq!(mac.to_string().to_uppercase().replace(':', "-").parse::<MacAddr>(), Ok(mac));
        }

        #[test]
        fn prop_mac_from_str_never_panics(s in ".{0,20}") {
            let _ = s.parse::<MacAddr>();
        }

        #[test]
        fn prop_checked_accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.vlan_tci(), frame.ethertype());
                prop_assert_eq!(frame.header_len() + frame.payload().len(), bytes.len());
                EthernetRepr::parse(&frame).unwrap();
            } else {
                prop_assert!(bytes.len() < 18);
            }
        }
    }
}

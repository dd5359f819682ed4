//! The common AoE header (AoE r11 §3.1): version, flags, error, shelf.slot, command, tag.
//!
//! Contract: see `wire` — RX via [`AoePacket::new_checked`] on the Ethernet payload, TX via
//! [`AoePacket::new_unchecked`] + [`AoeRepr::emit`].
//!
//! Hazards: parsing accepts any version and any command; the target decides whether to answer
//! `UnsupportedVersion`/`UnrecognizedCommand` or to ignore the frame. The error byte only
//! means something when the E flag is set ([`AoeRepr::error`] is `None` otherwise).

use super::view::{self, view};
use super::{enum_with_unknown, Field, Rest, Result};

/// Length of the AoE header (bytes 14..24 of an untagged frame).
pub const AOE_HEADER_LEN: usize = field::ARG.start;
/// The AoE protocol version this crate speaks.
pub const AOE_VERSION: u8 = 1;
/// Major (shelf) address that addresses every shelf.
pub const SHELF_BROADCAST: u16 = 0xFFFF;
/// Minor (slot) address that addresses every slot.
pub const SLOT_BROADCAST: u8 = 0xFF;

/// Response flag in the version/flags byte.
const FLAG_RESPONSE: u8 = 0x08;
/// Error flag in the version/flags byte.
const FLAG_ERROR: u8 = 0x04;

enum_with_unknown! {
    /// The AoE command (byte 19). 0xF0..=0xFF are vendor-specific and come out as `Unknown`.
    pub enum AoeCommand(u8) {
        /// Issue an ATA command.
        Ata = 0,
        /// Query (and possibly set) the config string; also the discovery message.
        QueryConfig = 1,
        /// Read or edit the MAC mask list.
        MacMaskList = 2,
        /// Read, set or release the reservation.
        ReserveRelease = 3,
    }
}

enum_with_unknown! {
    /// The AoE error code (byte 15), meaningful when the E flag is set.
    pub enum AoeError(u8) {
        /// Unrecognized command code.
        UnrecognizedCommand = 1,
        /// Bad argument parameter.
        BadArgument = 2,
        /// Device unavailable.
        DeviceUnavailable = 3,
        /// Config string present (Query Config "set" when another string is set).
        ConfigStringPresent = 4,
        /// Unsupported AoE version.
        UnsupportedVersion = 5,
        /// Target is reserved by another initiator.
        TargetReserved = 6,
    }
}

view! {
    /// A read/write view of an AoE header and its command argument.
    pub struct AoePacket;
    mod field {
        /// Version in the high nibble, flags (R, E) in the low nibble.
        VER_FLAGS: usize = 0;
        /// The raw error byte, whatever the E flag says.
        ERROR: usize = 1 => pub error: u8;
        /// Major address (shelf), big-endian.
        MAJOR: Field = 2..4 => pub major, set_major: u16;
        /// Minor address (slot).
        MINOR: usize = 4 => pub minor, set_minor: u8;
        /// The command.
        COMMAND: usize = 5 => pub command, set_command: AoeCommand;
        /// The tag: opaque to the target, echoed in the reply; big-endian by convention, so a
        /// tag read and written back echoes exactly.
        TAG: Field = 6..10 => pub tag, set_tag: u32;
        /// The command argument.
        ARG: Rest = 10..;
    }
}

impl<T: AsRef<[u8]>> AoePacket<T> {
    /// Checks that the buffer holds the 10-byte header.
    pub fn check_len(&self) -> Result<()> {
        view::check_len(self.buffer.as_ref().len(), AOE_HEADER_LEN, || 0)
    }

    /// Protocol version (high nibble of byte 14).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_FLAGS] >> 4
    }

    /// Whether the R flag is set (a reply).
    pub fn is_response(&self) -> bool {
        self.buffer.as_ref()[field::VER_FLAGS] & FLAG_RESPONSE != 0
    }

    /// Whether the E flag is set (the error byte is valid).
    pub fn is_error(&self) -> bool {
        self.buffer.as_ref()[field::VER_FLAGS] & FLAG_ERROR != 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> AoePacket<&'a T> {
    /// The command argument (everything after the header), with the buffer's lifetime.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::ARG]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AoePacket<T> {
    /// Sets the protocol version, keeping the flags.
    ///
    /// # Panics
    /// If `value` does not fit in four bits.
    pub fn set_version(&mut self, value: u8) {
        view::set_high_nibble(
            &mut self.buffer.as_mut()[field::VER_FLAGS],
            value,
            "AoE version",
        );
    }

    /// Sets or clears the R flag.
    pub fn set_response(&mut self, value: bool) {
        let byte = &mut self.buffer.as_mut()[field::VER_FLAGS];
        if value {
            *byte |= FLAG_RESPONSE;
        } else {
            *byte &= !FLAG_RESPONSE;
        }
    }

    /// Sets the E flag and the error byte (`Some`), or clears both (`None`).
    pub fn set_error(&mut self, value: Option<AoeError>) {
        let data = self.buffer.as_mut();
        match value {
            Some(error) => {
                data[field::VER_FLAGS] |= FLAG_ERROR;
                data[field::ERROR] = error.into();
            }
            None => {
                data[field::VER_FLAGS] &= !FLAG_ERROR;
                data[field::ERROR] = 0;
            }
        }
    }

    /// The command argument, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::ARG]
    }
}

/// An AoE header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AoeRepr {
    /// Protocol version (0..=15; [`AOE_VERSION`] for everything this target sends).
    pub version: u8,
    /// R flag.
    pub response: bool,
    /// E flag with the error code; `None` when the E flag is clear.
    pub error: Option<AoeError>,
    /// Shelf.
    pub major: u16,
    /// Slot.
    pub minor: u8,
    /// Command.
    pub command: AoeCommand,
    /// Tag, echoed in replies.
    pub tag: u32,
}

impl AoeRepr {
    /// Reads the header of a packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &AoePacket<T>) -> Result<AoeRepr> {
        packet.check_len()?;
        Ok(AoeRepr {
            version: packet.version(),
            response: packet.is_response(),
            error: packet.is_error().then(|| AoeError::from(packet.error())),
            major: packet.major(),
            minor: packet.minor(),
            command: packet.command(),
            tag: packet.tag(),
        })
    }

    /// Header length: [`AOE_HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        AOE_HEADER_LEN
    }

    /// Writes the header into `packet`, whatever the buffer held before; the reserved flag
    /// bits are cleared. The argument is left alone.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len) or `version > 15`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut AoePacket<T>) {
        packet.buffer.as_mut()[field::VER_FLAGS] = 0;
        packet.set_version(self.version);
        packet.set_response(self.response);
        packet.set_error(self.error);
        packet.set_major(self.major);
        packet.set_minor(self.minor);
        packet.set_command(self.command);
        packet.set_tag(self.tag);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::golden::{self, AOE_OFFSET, ARG_OFFSET};
    use crate::wire::Error;
    use proptest::prelude::*;

    fn discovery_repr() -> AoeRepr {
        AoeRepr {
            version: 1,
            response: false,
            error: None,
            major: SHELF_BROADCAST,
            minor: SLOT_BROADCAST,
            command: AoeCommand::QueryConfig,
            tag: 0,
        }
    }

    fn read_reply_repr() -> AoeRepr {
        AoeRepr {
            version: 1,
            response: true,
            error: None,
            major: 1,
            minor: 2,
            command: AoeCommand::Ata,
            tag: 0x8001_abcd,
        }
    }

    #[test]
    fn test_deconstruct() {
        let frame = golden::ata_read_ext_reply();
        let packet = AoePacket::new_checked(&frame[AOE_OFFSET..]).unwrap();
        assert_eq!(packet.version(), 1);
        assert!(packet.is_response());
        assert!(!packet.is_error());
        assert_eq!(packet.error(), 0);
        assert_eq!(packet.major(), 1);
        assert_eq!(packet.minor(), 2);
        assert_eq!(packet.command(), AoeCommand::Ata);
        assert_eq!(packet.tag(), 0x8001_abcd);
        assert_eq!(packet.payload(), &frame[ARG_OFFSET..]);
        assert_eq!(AoeRepr::parse(&packet), Ok(read_reply_repr()));
    }

    #[test]
    fn test_deconstruct_discovery() {
        let frame = golden::query_config_broadcast();
        let packet = AoePacket::new_checked(&frame[AOE_OFFSET..]).unwrap();
        assert!(!packet.is_response());
        assert_eq!(AoeRepr::parse(&packet), Ok(discovery_repr()));
    }

    #[test]
    fn test_construct() {
        for (frame, repr) in [
            (golden::ata_read_ext_reply(), read_reply_repr()),
            (golden::query_config_broadcast(), discovery_repr()),
        ] {
            assert_eq!(repr.buffer_len(), 10);
            let mut bytes = [0xffu8; AOE_HEADER_LEN];
            repr.emit(&mut AoePacket::new_unchecked(&mut bytes[..]));
            assert_eq!(bytes, frame[AOE_OFFSET..ARG_OFFSET]);
        }
    }

    #[test]
    fn test_error_reply() {
        let mut bytes = [0u8; AOE_HEADER_LEN];
        let repr = AoeRepr {
            error: Some(AoeError::TargetReserved),
            ..read_reply_repr()
        };
        repr.emit(&mut AoePacket::new_unchecked(&mut bytes[..]));
        assert_eq!(
            bytes,
            [0x1c, 0x06, 0x00, 0x01, 0x02, 0x00, 0x80, 0x01, 0xab, 0xcd]
        );

        let mut packet = AoePacket::new_unchecked(&mut bytes[..]);
        assert!(packet.is_error());
        assert_eq!(packet.error(), 6);
        packet.set_error(None);
        assert!(!packet.is_error());
        packet.set_response(false);
        assert!(!packet.is_response());
        assert_eq!(bytes[..2], [0x10, 0x00]);
    }

    #[test]
    fn test_error_byte_ignored_without_flag() {
        let mut bytes = golden::ata_read_ext_request()[AOE_OFFSET..ARG_OFFSET].to_vec();
        bytes[1] = 3;
        let packet = AoePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.error(), 3);
        assert_eq!(AoeRepr::parse(&packet).unwrap().error, None);
    }

    #[test]
    fn test_vendor_and_version() {
        let bytes = [0x20, 0, 0, 0, 0, 0xf0, 0, 0, 0, 0];
        let repr = AoeRepr::parse(&AoePacket::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.version, 2);
        assert_eq!(repr.command, AoeCommand::Unknown(0xf0));
    }

    #[test]
    fn test_set_version_keeps_flags() {
        let mut bytes = [0x1cu8; AOE_HEADER_LEN];
        let mut packet = AoePacket::new_unchecked(&mut bytes[..]);
        packet.set_version(3);
        assert_eq!(packet.version(), 3);
        assert!(packet.is_response() && packet.is_error());
    }

    #[test]
    #[should_panic(expected = "nibble")]
    fn test_set_version_too_big() {
        let mut bytes = [0u8; AOE_HEADER_LEN];
        AoePacket::new_unchecked(&mut bytes[..]).set_version(16);
    }

    #[test]
    fn test_payload_mut() {
        let mut bytes = [0u8; AOE_HEADER_LEN + 2];
        AoePacket::new_unchecked(&mut bytes[..]).payload_mut()[1] = 9;
        assert_eq!(bytes[11], 9);
    }

    #[test]
    fn test_reject_short_header() {
        let frame = golden::query_config_broadcast();
        golden::assert_shortest(&frame[AOE_OFFSET..], AOE_HEADER_LEN, AoePacket::new_checked);
        let packet = AoePacket::new_checked(&frame[AOE_OFFSET..ARG_OFFSET]).unwrap();
        assert!(packet.payload().is_empty());
    }

    #[test]
    fn test_parse_rechecks_unchecked_view() {
        assert_eq!(
            AoeRepr::parse(&AoePacket::new_unchecked(&[0u8; 9][..])),
            Err(Error)
        );
    }

    fn arb_repr() -> impl Strategy<Value = AoeRepr> {
        (
            0u8..16,
            any::<bool>(),
            proptest::option::of(any::<u8>().prop_map(AoeError::from)),
            any::<u16>(),
            any::<u8>(),
            any::<u8>().prop_map(AoeCommand::from),
            any::<u32>(),
        )
            .prop_map(
                |(version, response, error, major, minor, command, tag)| AoeRepr {
                    version,
                    response,
                    error,
                    major,
                    minor,
                    command,
                    tag,
                },
            )
    }

    proptest! {
        #[test]
        fn prop_repr_round_trip(repr in arb_repr(), stale in any::<u8>()) {
            let mut bytes = vec![stale; repr.buffer_len()];
            repr.emit(&mut AoePacket::new_unchecked(&mut bytes[..]));
            let packet = AoePacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(AoeRepr::parse(&packet), Ok(repr));
            prop_assert_eq!(bytes[0] & 0x03, 0, "reserved flag bits are cleared");
        }

        #[test]
        fn prop_checked_accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            match AoePacket::new_checked(&bytes[..]) {
                Ok(packet) => {
                    let _ = (packet.version(), packet.is_response(), packet.is_error(), packet.error());
                    let _ = (packet.major(), packet.minor(), packet.command(), packet.tag());
                    prop_assert_eq!(packet.payload().len(), bytes.len() - AOE_HEADER_LEN);
                    AoeRepr::parse(&packet).unwrap();
                }
                Err(_) => prop_assert!(bytes.len() < AOE_HEADER_LEN),
            }
        }
    }
}

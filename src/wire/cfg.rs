//! The Query Config argument (AoE r11 §3.2): discovery, buffer count, config string.
//!
//! Contract: see `wire` — RX via [`QueryConfigPacket::new_checked`] on the AoE payload, TX via
//! [`QueryConfigPacket::new_unchecked`] on `repr.buffer_len()` bytes + [`QueryConfigRepr::emit`].
//!
//! Hazards: `check_len` guarantees the declared string fits the buffer, **not** that it is at
//! most [`CONFIG_STRING_MAX`]: a longer string that is really there is a well-formed request
//! the target must answer with `BadArgument`. The Linux initiator's discovery broadcast is all
//! zeros (no string, buffer count 0) and arrives padded to 60 bytes.

use super::view::{self, view};
use super::{enum_with_unknown, Field, Rest, Result};

/// Length of the fixed part of the argument (bytes 24..32 of an untagged frame).
pub const QUERY_CONFIG_HEADER_LEN: usize = field::STRING.start;
/// The longest config string a target accepts or sends.
pub const CONFIG_STRING_MAX: usize = 1024;

enum_with_unknown! {
    /// The Query Config sub-command (low nibble of byte 29).
    pub enum ConfigCommand(u8) {
        /// Read the config string.
        Read = 0,
        /// Reply only if the string matches exactly.
        Test = 1,
        /// Reply only if the argument is a prefix of the string.
        TestPrefix = 2,
        /// Set the string if it is empty (error `ConfigStringPresent` otherwise).
        Set = 3,
        /// Set the string unconditionally.
        ForceSet = 4,
    }
}

view! {
    /// A read/write view of a Query Config argument.
    pub struct QueryConfigPacket;
    mod field {
        /// Buffer count: how many commands the target queues, big-endian.
        BUFFER_COUNT: Field = 0..2 => pub buffer_count, set_buffer_count: u16;
        /// Firmware version, big-endian.
        FIRMWARE_VERSION: Field = 2..4 => pub firmware_version, set_firmware_version: u16;
        /// Maximum sectors per ATA command (0: the initiator assumes 2).
        SECTOR_COUNT: usize = 4 => pub sector_count, set_sector_count: u8;
        /// AoE version in the high nibble, CCmd in the low nibble.
        VER_CCMD: usize = 5;
        /// Declared config string length, big-endian (may exceed [`CONFIG_STRING_MAX`]).
        STRING_LEN: Field = 6..8 => pub config_string_len: u16;
        STRING: Rest = 8..;
    }
}

impl<T: AsRef<[u8]>> QueryConfigPacket<T> {
    /// Checks that the buffer holds the 8-byte header and the declared config string.
    pub fn check_len(&self) -> Result<()> {
        view::check_len(self.buffer.as_ref().len(), QUERY_CONFIG_HEADER_LEN, || {
            usize::from(self.config_string_len())
        })
    }

    /// AoE version (high nibble of byte 29).
    pub fn aoe_version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_CCMD] >> 4
    }

    /// Sub-command (low nibble of byte 29).
    pub fn command(&self) -> ConfigCommand {
        ConfigCommand::from(self.buffer.as_ref()[field::VER_CCMD] & 0x0F)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> QueryConfigPacket<&'a T> {
    /// The config string (declared length, padding excluded), with the buffer's lifetime.
    pub fn config_string(&self) -> &'a [u8] {
        let len = usize::from(self.config_string_len());
        let start = field::STRING.start;
        &self.buffer.as_ref()[start..start + len]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> QueryConfigPacket<T> {
    /// Sets the AoE version, keeping the sub-command.
    ///
    /// # Panics
    /// If `value` does not fit in four bits.
    pub fn set_aoe_version(&mut self, value: u8) {
        view::set_high_nibble(
            &mut self.buffer.as_mut()[field::VER_CCMD],
            value,
            "AoE version",
        );
    }

    /// Sets the sub-command, keeping the AoE version.
    ///
    /// # Panics
    /// If the command's value does not fit in four bits.
    pub fn set_command(&mut self, value: ConfigCommand) {
        view::set_low_nibble(
            &mut self.buffer.as_mut()[field::VER_CCMD],
            value.into(),
            "config command",
        );
    }

    /// Sets the length field and copies the config string after the header.
    ///
    /// # Panics
    /// If the string is longer than 65535 bytes or does not fit the buffer.
    pub fn set_config_string(&mut self, value: &[u8]) {
        let len = u16::try_from(value.len()).expect("config string longer than 65535 bytes");
        let data = self.buffer.as_mut();
        data[field::STRING_LEN].copy_from_slice(&len.to_be_bytes());
        let start = field::STRING.start;
        data[start..start + value.len()].copy_from_slice(value);
    }
}

/// A Query Config argument as plain values, borrowing the config string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryConfigRepr<'a> {
    /// Outstanding commands the target queues.
    pub buffer_count: u16,
    /// Firmware version.
    pub firmware_version: u16,
    /// Maximum sectors per ATA command.
    pub sector_count: u8,
    /// AoE version (0..=15).
    pub aoe_version: u8,
    /// Sub-command (its value must fit in four bits).
    pub command: ConfigCommand,
    /// The config string (the target enforces [`CONFIG_STRING_MAX`]).
    pub config_string: &'a [u8],
}

impl<'a> QueryConfigRepr<'a> {
    /// Reads an argument; the string borrows the packet's buffer.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &QueryConfigPacket<&'a T>,
    ) -> Result<QueryConfigRepr<'a>> {
        packet.check_len()?;
        Ok(QueryConfigRepr {
            buffer_count: packet.buffer_count(),
            firmware_version: packet.firmware_version(),
            sector_count: packet.sector_count(),
            aoe_version: packet.aoe_version(),
            command: packet.command(),
            config_string: packet.config_string(),
        })
    }

    /// Header plus string length.
    pub const fn buffer_len(&self) -> usize {
        QUERY_CONFIG_HEADER_LEN + self.config_string.len()
    }

    /// Writes the argument, string included, into `packet`.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len), or the version or
    /// command does not fit in a nibble, or the string is longer than 65535 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut QueryConfigPacket<T>) {
        packet.set_buffer_count(self.buffer_count);
        packet.set_firmware_version(self.firmware_version);
        packet.set_sector_count(self.sector_count);
        packet.buffer.as_mut()[field::VER_CCMD] = 0;
        packet.set_aoe_version(self.aoe_version);
        packet.set_command(self.command);
        packet.set_config_string(self.config_string);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::golden::{self, ARG_OFFSET};
    use crate::wire::Error;
    use proptest::prelude::*;

    fn reply_repr() -> QueryConfigRepr<'static> {
        QueryConfigRepr {
            buffer_count: 64,
            firmware_version: 0x4019,
            sector_count: 2,
            aoe_version: 1,
            command: ConfigCommand::Read,
            config_string: b"aoe-xdp",
        }
    }

    /// Asserts what each getter of `packet` reads: buffer count, firmware version, sector
    /// count, AoE version and command as `fixed` says, then the string (and its length).
    #[track_caller]
    fn assert_fields(
        packet: &QueryConfigPacket<&[u8]>,
        fixed: (u16, u16, u8, u8, ConfigCommand),
        string: &[u8],
    ) {
        assert_eq!(packet.buffer_count(), fixed.0);
        assert_eq!(packet.firmware_version(), fixed.1);
        assert_eq!(packet.sector_count(), fixed.2);
        assert_eq!(packet.aoe_version(), fixed.3);
        assert_eq!(packet.command(), fixed.4);
        assert_eq!(usize::from(packet.config_string_len()), string.len());
        assert_eq!(packet.config_string(), string);
    }

    #[test]
    fn test_deconstruct_discovery() {
        let frame = golden::query_config_broadcast();
        let packet = QueryConfigPacket::new_checked(&frame[ARG_OFFSET..]).unwrap();
        assert_fields(&packet, (0, 0, 0, 0, ConfigCommand::Read), b"");
    }

    #[test]
    fn test_deconstruct_reply() {
        let frame = golden::query_config_reply();
        let packet = QueryConfigPacket::new_checked(&frame[ARG_OFFSET..]).unwrap();
        // Padding after the string is not part of it.
        assert_fields(&packet, (64, 0x4019, 2, 1, ConfigCommand::Read), b"aoe-xdp");
        assert_eq!(QueryConfigRepr::parse(&packet), Ok(reply_repr()));
    }

    #[test]
    fn test_construct_reply() {
        let frame = golden::query_config_reply();
        let repr = reply_repr();
        assert_eq!(repr.buffer_len(), 15);
        let mut bytes = vec![0xffu8; repr.buffer_len()];
        repr.emit(&mut QueryConfigPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, frame[ARG_OFFSET..ARG_OFFSET + 15]);
    }

    #[test]
    fn test_construct_discovery() {
        let frame = golden::query_config_broadcast();
        let repr = QueryConfigRepr {
            buffer_count: 0,
            firmware_version: 0,
            sector_count: 0,
            aoe_version: 0,
            command: ConfigCommand::Read,
            config_string: b"",
        };
        let mut bytes = [0x5au8; QUERY_CONFIG_HEADER_LEN];
        repr.emit(&mut QueryConfigPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, frame[ARG_OFFSET..ARG_OFFSET + 8]);
    }

    #[test]
    fn test_version_and_command_share_a_byte() {
        let mut bytes = [0u8; QUERY_CONFIG_HEADER_LEN];
        let mut packet = QueryConfigPacket::new_unchecked(&mut bytes[..]);
        packet.set_command(ConfigCommand::ForceSet);
        packet.set_aoe_version(1);
        assert_eq!(
            (packet.aoe_version(), packet.command()),
            (1, ConfigCommand::ForceSet)
        );
        packet.set_command(ConfigCommand::TestPrefix);
        assert_eq!(packet.aoe_version(), 1);
        assert_eq!(bytes[5], 0x12);
    }

    #[test]
    #[should_panic(expected = "nibble")]
    fn test_set_command_too_big() {
        let mut bytes = [0u8; QUERY_CONFIG_HEADER_LEN];
        QueryConfigPacket::new_unchecked(&mut bytes[..]).set_command(ConfigCommand::Unknown(16));
    }

    #[test]
    fn test_reject_short_header() {
        let frame = golden::query_config_broadcast();
        golden::assert_shortest(
            &frame[ARG_OFFSET..],
            QUERY_CONFIG_HEADER_LEN,
            QueryConfigPacket::new_checked,
        );
    }

    #[test]
    fn test_reject_string_beyond_buffer() {
        let frame = golden::query_config_reply();
        golden::assert_shortest(
            &frame[ARG_OFFSET..],
            QUERY_CONFIG_HEADER_LEN + 7,
            QueryConfigPacket::new_checked,
        );
        let mut bytes = frame[ARG_OFFSET..].to_vec();
        bytes[6..8].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(QueryConfigPacket::new_checked(&bytes[..]), Err(Error));
        let unchecked = QueryConfigPacket::new_unchecked(&bytes[..]);
        assert_eq!(QueryConfigRepr::parse(&unchecked), Err(Error));
    }

    #[test]
    fn test_overlong_string_that_fits_is_accepted() {
        // The target must answer BadArgument, so the string has to get through the parser.
        let string = [b'x'; CONFIG_STRING_MAX + 1];
        let repr = QueryConfigRepr {
            command: ConfigCommand::ForceSet,
            config_string: &string,
            ..reply_repr()
        };
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut QueryConfigPacket::new_unchecked(&mut bytes[..]));
        let packet = QueryConfigPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            usize::from(packet.config_string_len()),
            CONFIG_STRING_MAX + 1
        );
        assert_eq!(
            QueryConfigRepr::parse(&packet).unwrap().config_string.len(),
            1025
        );
    }

    fn arb_repr() -> impl Strategy<Value = (u16, u16, u8, u8, ConfigCommand, Vec<u8>)> {
        (
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
            0u8..16,
            (0u8..16).prop_map(ConfigCommand::from),
            proptest::collection::vec(any::<u8>(), 0..=CONFIG_STRING_MAX + 8),
        )
    }

    proptest! {
        #[test]
        fn prop_repr_round_trip(
            (buffer_count, firmware_version, sector_count, aoe_version, command, string) in arb_repr(),
            padding in 0usize..40,
        ) {
            let repr = QueryConfigRepr {
                buffer_count,
                firmware_version,
                sector_count,
                aoe_version,
                command,
                config_string: &string,
            };
            let mut bytes = vec![0xa5u8; repr.buffer_len() + padding];
            repr.emit(&mut QueryConfigPacket::new_unchecked(&mut bytes[..]));
            let packet = QueryConfigPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(QueryConfigRepr::parse(&packet), Ok(repr));
        }

        #[test]
        fn prop_checked_accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = QueryConfigPacket::new_checked(&bytes[..]) {
                let _ = (packet.buffer_count(), packet.firmware_version(), packet.sector_count());
                let _ = (packet.aoe_version(), packet.command());
                prop_assert_eq!(packet.config_string().len(), usize::from(packet.config_string_len()));
                QueryConfigRepr::parse(&packet).unwrap();
            }
        }

        /// Small declared lengths so that the accepting branch is exercised too.
        #[test]
        fn prop_checked_iff_string_fits(len in 0u16..40, total in 0usize..60) {
            let mut bytes = vec![0u8; total];
            if total >= QUERY_CONFIG_HEADER_LEN {
                bytes[6..8].copy_from_slice(&len.to_be_bytes());
            }
            let fits = total >= QUERY_CONFIG_HEADER_LEN + usize::from(len);
            prop_assert_eq!(QueryConfigPacket::new_checked(&bytes[..]).is_ok(), fits);
        }
    }
}

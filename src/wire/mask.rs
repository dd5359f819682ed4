//! The Mac Mask List argument (AoE r11 §3.4): read or edit the list of MACs a target serves.
//!
//! Contract: see `wire` — RX via [`MacMaskPacket::new_checked`] on the AoE payload, TX via
//! [`MacMaskPacket::new_unchecked`] on `repr.buffer_len()` bytes, [`MacMaskRepr::emit`], then
//! one [`MacMaskPacket::set_directive`] per directive.
//!
//! Hazards: `check_len` guarantees `dir_count` directives are present; directive commands are
//! not validated (a bad one is answered with [`MacMaskError::BadDirective`]). At most 255
//! directives fit the count byte (255 × 8 + 4 = 2044 bytes); with the 24 header bytes in
//! front, a reply listing more than 184 entries does not fit a 1500-byte MTU.

use super::ethernet::MacAddr;
use super::view::{self, view};
use super::{enum_with_unknown, Field, Rest, Result};

/// Length of the fixed part of the argument.
pub const MASK_HEADER_LEN: usize = field::DIRECTIVES.start;
/// Length of one directive.
pub const DIRECTIVE_LEN: usize = 8;

enum_with_unknown! {
    /// The Mac Mask List sub-command (MCmd).
    pub enum MacMaskCommand(u8) {
        /// Read the list.
        Read = 0,
        /// Apply the directives, in order.
        Edit = 1,
    }
}

enum_with_unknown! {
    /// The Mac Mask List error (MError); 0 means no error.
    pub enum MacMaskError(u8) {
        /// Unspecified error.
        Unspecified = 1,
        /// A directive has an unknown DCmd.
        BadDirective = 2,
        /// The list is full.
        ListFull = 3,
    }
}

enum_with_unknown! {
    /// The command of one directive (DCmd).
    pub enum DirectiveCommand(u8) {
        /// No directive (used in replies listing the current entries).
        None = 0,
        /// Add the MAC to the list.
        Add = 1,
        /// Delete the MAC from the list.
        Delete = 2,
    }
}

view! {
    /// A read/write view of a Mac Mask List argument.
    pub struct MacMaskPacket;
    mod field {
        RESERVED: usize = 0;
        /// Sub-command.
        COMMAND: usize = 1 => pub command, set_command: MacMaskCommand;
        /// The raw MError byte (0: no error).
        ERROR: usize = 2 => pub error: u8;
        /// Number of directives (in an error reply: the index of the failing directive).
        DIR_COUNT: usize = 3 => pub dir_count, set_dir_count: u8;
        DIRECTIVES: Rest = 4..;

        /// Offsets inside one directive.
        DIR_RESERVED: usize = 0;
        DIR_COMMAND: usize = 1;
        DIR_MAC: Field = 2..8;
    }
}

const _: () = assert!(field::DIR_MAC.end == DIRECTIVE_LEN);

impl<T: AsRef<[u8]>> MacMaskPacket<T> {
    /// Checks that the buffer holds the 4-byte header and `dir_count` directives.
    pub fn check_len(&self) -> Result<()> {
        view::check_len(self.buffer.as_ref().len(), MASK_HEADER_LEN, || {
            usize::from(self.dir_count()) * DIRECTIVE_LEN
        })
    }

    /// Directive `index`.
    ///
    /// # Panics
    /// If the directive lies outside the buffer; on a checked view every
    /// `index < dir_count()` is inside.
    pub fn directive(&self, index: usize) -> DirectiveRepr {
        let start = field::DIRECTIVES.start + index * DIRECTIVE_LEN;
        let bytes = &self.buffer.as_ref()[start..start + DIRECTIVE_LEN];
        DirectiveRepr {
            command: DirectiveCommand::from(bytes[field::DIR_COMMAND]),
            mac: MacAddr::from_bytes(&bytes[field::DIR_MAC]),
        }
    }

    /// The `dir_count()` directives, in order.
    pub fn directives(&self) -> impl Iterator<Item = DirectiveRepr> + '_ {
        (0..usize::from(self.dir_count())).map(|index| self.directive(index))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MacMaskPacket<T> {
    /// Sets the MError byte (`None`: 0, no error).
    pub fn set_error(&mut self, value: Option<MacMaskError>) {
        self.buffer.as_mut()[field::ERROR] = value.map_or(0, u8::from);
    }

    /// Writes directive `index` (reserved byte zeroed).
    ///
    /// # Panics
    /// If the directive lies outside the buffer.
    pub fn set_directive(&mut self, index: usize, value: &DirectiveRepr) {
        let start = field::DIRECTIVES.start + index * DIRECTIVE_LEN;
        let bytes = &mut self.buffer.as_mut()[start..start + DIRECTIVE_LEN];
        bytes[field::DIR_RESERVED] = 0;
        bytes[field::DIR_COMMAND] = value.command.into();
        bytes[field::DIR_MAC].copy_from_slice(&value.mac.0);
    }
}

/// One directive: a command and a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirectiveRepr {
    /// What to do with the MAC.
    pub command: DirectiveCommand,
    /// The MAC.
    pub mac: MacAddr,
}

/// The fixed part of a Mac Mask List argument; the directives are read and written through
/// [`MacMaskPacket::directive`] and [`MacMaskPacket::set_directive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacMaskRepr {
    /// Sub-command.
    pub command: MacMaskCommand,
    /// MError; `None` for 0.
    pub error: Option<MacMaskError>,
    /// Number of directives that follow.
    pub dir_count: u8,
}

impl MacMaskRepr {
    /// Reads the fixed part of an argument.
    pub fn parse<T: AsRef<[u8]>>(packet: &MacMaskPacket<T>) -> Result<MacMaskRepr> {
        packet.check_len()?;
        let error = packet.error();
        Ok(MacMaskRepr {
            command: packet.command(),
            error: (error != 0).then(|| MacMaskError::from(error)),
            dir_count: packet.dir_count(),
        })
    }

    /// Header plus `dir_count` directives.
    pub const fn buffer_len(&self) -> usize {
        MASK_HEADER_LEN + self.dir_count as usize * DIRECTIVE_LEN
    }

    /// Writes the fixed part (reserved byte zeroed); directives are left alone.
    ///
    /// # Panics
    /// If the buffer is shorter than [`MASK_HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut MacMaskPacket<T>) {
        packet.buffer.as_mut()[field::RESERVED] = 0;
        packet.set_command(self.command);
        packet.set_error(self.error);
        packet.set_dir_count(self.dir_count);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::golden::{self, arb_mac, ARG_OFFSET, MAC_1, MAC_2};
    use crate::wire::Error;
    use proptest::prelude::*;

    fn edit_directives() -> [DirectiveRepr; 2] {
        [
            DirectiveRepr {
                command: DirectiveCommand::Add,
                mac: MAC_1,
            },
            DirectiveRepr {
                command: DirectiveCommand::Delete,
                mac: MAC_2,
            },
        ]
    }

    #[test]
    fn test_deconstruct() {
        let frame = golden::mask_edit_request();
        let packet = MacMaskPacket::new_checked(&frame[ARG_OFFSET..]).unwrap();
        assert_eq!(packet.command(), MacMaskCommand::Edit);
        assert_eq!(packet.error(), 0);
        assert_eq!(packet.dir_count(), 2);
        assert_eq!(packet.directive(0), edit_directives()[0]);
        assert_eq!(packet.directive(1), edit_directives()[1]);
        assert!(packet.directives().eq(edit_directives()));
        assert_eq!(
            MacMaskRepr::parse(&packet),
            Ok(MacMaskRepr {
                command: MacMaskCommand::Edit,
                error: None,
                dir_count: 2
            })
        );
    }

    #[test]
    fn test_construct() {
        let frame = golden::mask_edit_request();
        let repr = MacMaskRepr {
            command: MacMaskCommand::Edit,
            error: None,
            dir_count: 2,
        };
        assert_eq!(repr.buffer_len(), 20);
        let mut bytes = [0xffu8; 20];
        let mut packet = MacMaskPacket::new_unchecked(&mut bytes[..]);
        repr.emit(&mut packet);
        for (index, directive) in edit_directives().iter().enumerate() {
            packet.set_directive(index, directive);
        }
        assert_eq!(bytes, frame[ARG_OFFSET..ARG_OFFSET + 20]);
    }

    #[test]
    fn test_construct_error_reply() {
        // List full at directive 1: the count carries the failing index.
        let repr = MacMaskRepr {
            command: MacMaskCommand::Edit,
            error: Some(MacMaskError::ListFull),
            dir_count: 1,
        };
        let mut bytes = [0u8; 12];
        let mut packet = MacMaskPacket::new_unchecked(&mut bytes[..]);
        repr.emit(&mut packet);
        packet.set_directive(0, &edit_directives()[0]);
        assert_eq!(bytes, [0, 1, 3, 1, 0, 1, 2, 0, 0, 0, 0, 1]);
        let packet = MacMaskPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(MacMaskRepr::parse(&packet), Ok(repr));
    }

    #[test]
    fn test_largest_reply() {
        let repr = MacMaskRepr {
            command: MacMaskCommand::Read,
            error: None,
            dir_count: 255,
        };
        assert_eq!(repr.buffer_len(), 2044);
        let mut bytes = vec![0u8; repr.buffer_len()];
        let mut packet = MacMaskPacket::new_unchecked(&mut bytes[..]);
        repr.emit(&mut packet);
        let directive = DirectiveRepr {
            command: DirectiveCommand::None,
            mac: MAC_2,
        };
        packet.set_directive(254, &directive);
        let packet = MacMaskPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.directive(254), directive);
        assert_eq!(packet.directives().count(), 255);
    }

    #[test]
    fn test_unknown_codes() {
        let bytes = [0, 7, 9, 1, 0, 5, 1, 2, 3, 4, 5, 6];
        let packet = MacMaskPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.command(), MacMaskCommand::Unknown(7));
        assert_eq!(packet.directive(0).command, DirectiveCommand::Unknown(5));
        let repr = MacMaskRepr::parse(&packet).unwrap();
        assert_eq!(repr.error, Some(MacMaskError::Unknown(9)));
    }

    #[test]
    fn test_reject_short_header() {
        let frame = golden::mask_edit_request();
        golden::assert_rejects_shorter(
            &frame[ARG_OFFSET..],
            MASK_HEADER_LEN,
            MacMaskPacket::new_checked,
        );
    }

    #[test]
    fn test_reject_dir_count_beyond_buffer() {
        let frame = golden::mask_edit_request();
        golden::assert_shortest(&frame[ARG_OFFSET..], 20, MacMaskPacket::new_checked);
        let mut bytes = frame[ARG_OFFSET..].to_vec();
        bytes[3] = 5; // 4 + 5 * 8 = 44 > 36 bytes of argument
        assert_eq!(MacMaskPacket::new_checked(&bytes[..]), Err(Error));
        let unchecked = MacMaskPacket::new_unchecked(&bytes[..]);
        assert_eq!(MacMaskRepr::parse(&unchecked), Err(Error));
    }

    fn arb_directive() -> impl Strategy<Value = DirectiveRepr> {
        (any::<u8>().prop_map(DirectiveCommand::from), arb_mac())
            .prop_map(|(command, mac)| DirectiveRepr { command, mac })
    }

    proptest! {
        #[test]
        fn prop_repr_round_trip(
            command in any::<u8>().prop_map(MacMaskCommand::from),
            error in proptest::option::of((1u8..=255).prop_map(MacMaskError::from)),
            directives in proptest::collection::vec(arb_directive(), 0..=255),
            stale in any::<u8>(),
        ) {
            let dir_count = u8::try_from(directives.len()).unwrap();
            let repr = MacMaskRepr { command, error, dir_count };
            let mut bytes = vec![stale; repr.buffer_len()];
            let mut packet = MacMaskPacket::new_unchecked(&mut bytes[..]);
            repr.emit(&mut packet);
            for (index, directive) in directives.iter().enumerate() {
                packet.set_directive(index, directive);
            }
            let packet = MacMaskPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(MacMaskRepr::parse(&packet), Ok(repr));
            prop_assert!(packet.directives().eq(directives.iter().copied()));
        }

        #[test]
        fn prop_checked_accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(packet) = MacMaskPacket::new_checked(&bytes[..]) {
                let _ = (packet.command(), packet.error(), packet.dir_count());
                prop_assert_eq!(packet.directives().count(), usize::from(packet.dir_count()));
                MacMaskRepr::parse(&packet).unwrap();
            } else {
                prop_assert!(
                    bytes.len() < MASK_HEADER_LEN
                        || bytes.len() < MASK_HEADER_LEN + usize::from(bytes[3]) * DIRECTIVE_LEN
                );
            }
        }
    }
}

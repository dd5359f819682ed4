//! The Reserve/Release argument (AoE r11 §3.5): which initiators hold the target.
//!
//! Contract: see `wire` — RX via [`ReservePacket::new_checked`] on the AoE payload, TX via
//! [`ReservePacket::new_unchecked`] on `repr.buffer_len()` bytes, [`ReserveRepr::emit`], then
//! one [`ReservePacket::set_mac`] per MAC.
//!
//! Hazards: `check_len` guarantees `nmacs` MACs are present. A set with `nmacs == 0` is a
//! release; what a set means is the target's business.

use super::ethernet::MacAddr;
use super::view::{self, view};
use super::{enum_with_unknown, Rest, Result};

/// Length of the fixed part of the argument.
pub const RESERVE_HEADER_LEN: usize = field::MACS.start;

enum_with_unknown! {
    /// The Reserve/Release sub-command (RCmd).
    pub enum ReserveCommand(u8) {
        /// Read the reservation list.
        Read = 0,
        /// Set the list, unless another initiator holds the target.
        Set = 1,
        /// Set the list unconditionally.
        ForceSet = 2,
    }
}

view! {
    /// A read/write view of a Reserve/Release argument.
    pub struct ReservePacket;
    mod field {
        /// Sub-command.
        COMMAND: usize = 0 => pub command, set_command: ReserveCommand;
        /// Number of MACs in the list.
        NMACS: usize = 1 => pub nmacs, set_nmacs: u8;
        MACS: Rest = 2..;
    }
}

impl<T: AsRef<[u8]>> ReservePacket<T> {
    /// Checks that the buffer holds the 2-byte header and `nmacs` MACs.
    pub fn check_len(&self) -> Result<()> {
        view::check_len(self.buffer.as_ref().len(), RESERVE_HEADER_LEN, || {
            usize::from(self.nmacs()) * MacAddr::LEN
        })
    }

    /// MAC `index`.
    ///
    /// # Panics
    /// If the MAC lies outside the buffer; on a checked view every `index < nmacs()` is inside.
    pub fn mac(&self, index: usize) -> MacAddr {
        let start = field::MACS.start + index * MacAddr::LEN;
        MacAddr::from_bytes(&self.buffer.as_ref()[start..start + MacAddr::LEN])
    }

    /// The `nmacs()` MACs, in order.
    pub fn macs(&self) -> impl Iterator<Item = MacAddr> + '_ {
        (0..usize::from(self.nmacs())).map(|index| self.mac(index))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ReservePacket<T> {
    /// Writes MAC `index`.
    ///
    /// # Panics
    /// If the MAC lies outside the buffer.
    pub fn set_mac(&mut self, index: usize, value: MacAddr) {
        let start = field::MACS.start + index * MacAddr::LEN;
        self.buffer.as_mut()[start..start + MacAddr::LEN].copy_from_slice(&value.0);
    }
}

/// The fixed part of a Reserve/Release argument; the MACs are read and written through
/// [`ReservePacket::mac`] and [`ReservePacket::set_mac`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReserveRepr {
    /// Sub-command.
    pub command: ReserveCommand,
    /// Number of MACs that follow.
    pub nmacs: u8,
}

impl ReserveRepr {
    /// Reads the fixed part of an argument.
    pub fn parse<T: AsRef<[u8]>>(packet: &ReservePacket<T>) -> Result<ReserveRepr> {
        packet.check_len()?;
        Ok(ReserveRepr {
            command: packet.command(),
            nmacs: packet.nmacs(),
        })
    }

    /// Header plus `nmacs` MACs.
    pub const fn buffer_len(&self) -> usize {
        RESERVE_HEADER_LEN + self.nmacs as usize * MacAddr::LEN
    }

    /// Writes the fixed part; the MACs are left alone.
    ///
    /// # Panics
    /// If the buffer is shorter than [`RESERVE_HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ReservePacket<T>) {
        packet.set_command(self.command);
        packet.set_nmacs(self.nmacs);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::golden::{self, arb_mac, ARG_OFFSET, MAC_1, MAC_2};
    use crate::wire::Error;
    use proptest::prelude::*;

    #[test]
    fn test_deconstruct() {
        let frame = golden::reserve_set_request();
        let packet = ReservePacket::new_checked(&frame[ARG_OFFSET..]).unwrap();
        assert_eq!(packet.command(), ReserveCommand::Set);
        assert_eq!(packet.nmacs(), 2);
        assert_eq!((packet.mac(0), packet.mac(1)), (MAC_1, MAC_2));
        assert!(packet.macs().eq([MAC_1, MAC_2]));
        assert_eq!(
            ReserveRepr::parse(&packet),
            Ok(ReserveRepr {
                command: ReserveCommand::Set,
                nmacs: 2
            })
        );
    }

    #[test]
    fn test_construct() {
        let frame = golden::reserve_set_request();
        let repr = ReserveRepr {
            command: ReserveCommand::Set,
            nmacs: 2,
        };
        assert_eq!(repr.buffer_len(), 14);
        let mut bytes = [0xffu8; 14];
        let mut packet = ReservePacket::new_unchecked(&mut bytes[..]);
        repr.emit(&mut packet);
        packet.set_mac(0, MAC_1);
        packet.set_mac(1, MAC_2);
        assert_eq!(bytes, frame[ARG_OFFSET..ARG_OFFSET + 14]);
    }

    #[test]
    fn test_release_and_codes() {
        let bytes = [2, 0];
        let packet = ReservePacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.command(), ReserveCommand::ForceSet);
        assert_eq!(packet.macs().count(), 0);
        assert_eq!(
            ReservePacket::new_checked(&[9u8, 0][..]).unwrap().command(),
            ReserveCommand::Unknown(9)
        );
    }

    #[test]
    fn test_reject_short_header() {
        let frame = golden::reserve_set_request();
        golden::assert_rejects_shorter(
            &frame[ARG_OFFSET..],
            RESERVE_HEADER_LEN,
            ReservePacket::new_checked,
        );
    }

    #[test]
    fn test_reject_nmacs_beyond_buffer() {
        let frame = golden::reserve_set_request();
        golden::assert_shortest(&frame[ARG_OFFSET..], 14, ReservePacket::new_checked);
        let mut bytes = frame[ARG_OFFSET..].to_vec();
        bytes[1] = 7; // 2 + 7 * 6 = 44 > 36 bytes of argument
        assert_eq!(ReservePacket::new_checked(&bytes[..]), Err(Error));
        let unchecked = ReservePacket::new_unchecked(&bytes[..]);
        assert_eq!(ReserveRepr::parse(&unchecked), Err(Error));
    }

    proptest! {
        #[test]
        fn prop_repr_round_trip(
            command in any::<u8>().prop_map(ReserveCommand::from),
            macs in proptest::collection::vec(arb_mac(), 0..=255),
            stale in any::<u8>(),
        ) {
            let repr = ReserveRepr { command, nmacs: u8::try_from(macs.len()).unwrap() };
            let mut bytes = vec![stale; repr.buffer_len()];
            let mut packet = ReservePacket::new_unchecked(&mut bytes[..]);
            repr.emit(&mut packet);
            for (index, mac) in macs.iter().enumerate() {
                packet.set_mac(index, *mac);
            }
            let packet = ReservePacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(ReserveRepr::parse(&packet), Ok(repr));
            prop_assert!(packet.macs().eq(macs.iter().copied()));
        }

        #[test]
        fn prop_checked_accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(packet) = ReservePacket::new_checked(&bytes[..]) {
                let _ = packet.command();
                prop_assert_eq!(packet.macs().count(), usize::from(packet.nmacs()));
                ReserveRepr::parse(&packet).unwrap();
            }
        }
    }
}

//! The AoE ATA command argument (AoE r11 §3.3) and the IDENTIFY DEVICE data block.
//!
//! Contract: see `wire` — RX via [`AtaPacket::new_checked`] on the AoE payload, TX via
//! [`AtaPacket::new_unchecked`] + [`AtaRepr::emit`], then the data into
//! [`AtaPacket::payload_mut`].
//!
//! Hazards:
//! * `check_len` checks the 12-byte header only. A read request carries no data, and a write
//!   whose payload is shorter than `sector_count × 512` must be answered with ATA ABRT, not
//!   dropped, so comparing the two is the target's job. The payload may also end in Ethernet
//!   padding; use `sector_count × 512` bytes of it.
//! * [`AtaPacket::lba`] returns all six LBA bytes. For LBA28 commands (E flag clear) Linux puts
//!   `0xE0` in the top bits of byte 3; mask with [`LBA28_MASK`].

use core::ops::Range;

use super::view::{self, view};
use super::{enum_with_unknown, Field, Rest, Result};

/// Length of the ATA argument header (bytes 24..36 of an untagged frame).
pub const ATA_HEADER_LEN: usize = field::DATA.start;
/// Bytes per sector; AoE always transfers 512-byte sectors.
pub const SECTOR_SIZE: usize = 512;
/// The bits of [`AtaPacket::lba`] an LBA28 command addresses.
pub const LBA28_MASK: u64 = 0x0FFF_FFFF;
/// The largest value the six LBA bytes hold.
pub const LBA48_MAX: u64 = (1 << 48) - 1;

/// AFlags E: the command is an LBA48 ("extended") command.
pub const AFLAG_LBA48: u8 = 0x40;
/// AFlags D: the device/head register bit.
pub const AFLAG_DEVICE: u8 = 0x10;
/// AFlags A: asynchronous write (the initiator wants no reply).
pub const AFLAG_ASYNC: u8 = 0x02;
/// AFlags W: the command writes data to the device.
pub const AFLAG_WRITE: u8 = 0x01;

/// ATA status register bits (the Cmd/Status byte of a reply).
pub mod status {
    /// Busy.
    pub const BSY: u8 = 0x80;
    /// Device ready.
    pub const DRDY: u8 = 0x40;
    /// Device fault.
    pub const DF: u8 = 0x20;
    /// Data request.
    pub const DRQ: u8 = 0x08;
    /// Error: the error register (Err/Feature byte) says which.
    pub const ERR: u8 = 0x01;
}

/// ATA error register bits (the Err/Feature byte of a reply with [`status::ERR`]).
pub mod error {
    /// Command aborted.
    pub const ABRT: u8 = 0x04;
    /// ID not found: the address is out of range.
    pub const IDNF: u8 = 0x10;
    /// Uncorrectable data error.
    pub const UNC: u8 = 0x40;
}

enum_with_unknown! {
    /// The ATA command in the Cmd/Status byte of a request.
    pub enum AtaCommand(u8) {
        /// READ SECTORS (LBA28).
        ReadSectors = 0x20,
        /// READ SECTORS EXT (LBA48).
        ReadSectorsExt = 0x24,
        /// WRITE SECTORS (LBA28).
        WriteSectors = 0x30,
        /// WRITE SECTORS EXT (LBA48).
        WriteSectorsExt = 0x34,
        /// SMART (subcommand in the feature register).
        Smart = 0xB0,
        /// CHECK POWER MODE.
        CheckPowerMode = 0xE5,
        /// FLUSH CACHE.
        FlushCache = 0xE7,
        /// FLUSH CACHE EXT.
        FlushCacheExt = 0xEA,
        /// IDENTIFY DEVICE.
        IdentifyDevice = 0xEC,
    }
}

view! {
    /// A read/write view of an AoE ATA argument and its data.
    pub struct AtaPacket;
    mod field {
        /// The AFlags byte (`AFLAG_*` bits).
        AFLAGS: usize = 0 => pub aflags, set_aflags: u8;
        /// Error register (reply) or feature register (request).
        ERR_FEATURE: usize = 1 => pub err_feature, set_err_feature: u8;
        /// Sector count.
        SECTOR_COUNT: usize = 2 => pub sector_count, set_sector_count: u8;
        /// The raw Cmd/Status byte: command in requests, status in replies.
        CMD_STATUS: usize = 3 => pub cmd_status, set_cmd_status: u8;
        /// LBA bytes 0..5, least significant first.
        LBA: Field = 4..10;
        RESERVED: Field = 10..12;
        DATA: Rest = 12..;
    }
}

impl<T: AsRef<[u8]>> AtaPacket<T> {
    /// Checks that the buffer holds the 12-byte header (see the module docs for why the data
    /// length is not checked here).
    pub fn check_len(&self) -> Result<()> {
        view::check_len(self.buffer.as_ref().len(), ATA_HEADER_LEN, || 0)
    }

    /// Whether [`AFLAG_LBA48`] is set.
    pub fn is_lba48(&self) -> bool {
        self.aflags() & AFLAG_LBA48 != 0
    }

    /// Whether [`AFLAG_WRITE`] is set.
    pub fn is_write(&self) -> bool {
        self.aflags() & AFLAG_WRITE != 0
    }

    /// Whether [`AFLAG_ASYNC`] is set.
    pub fn is_async(&self) -> bool {
        self.aflags() & AFLAG_ASYNC != 0
    }

    /// The Cmd/Status byte read as a request's command.
    pub fn command(&self) -> AtaCommand {
        AtaCommand::from(self.cmd_status())
    }

    /// All six LBA bytes, little-endian (mask with [`LBA28_MASK`] for LBA28 commands).
    pub fn lba(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes[..6].copy_from_slice(&self.buffer.as_ref()[field::LBA]);
        u64::from_le_bytes(bytes)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> AtaPacket<&'a T> {
    /// The data after the 12-byte header, with the buffer's lifetime (may include padding).
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AtaPacket<T> {
    /// Sets the six LBA bytes.
    ///
    /// # Panics
    /// If `value` exceeds [`LBA48_MAX`].
    pub fn set_lba(&mut self, value: u64) {
        assert!(value <= LBA48_MAX, "LBA {value:#x} does not fit in 48 bits");
        self.buffer.as_mut()[field::LBA].copy_from_slice(&value.to_le_bytes()[..6]);
    }

    /// The data after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }
}

/// An ATA argument header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AtaRepr {
    /// AFlags (`AFLAG_*` bits).
    pub aflags: u8,
    /// Error register (reply) or feature register (request).
    pub err_feature: u8,
    /// Sector count.
    pub sector_count: u8,
    /// Command (request) or status (reply).
    pub cmd_status: u8,
    /// The six LBA bytes as a number (≤ [`LBA48_MAX`]).
    pub lba: u64,
}

impl AtaRepr {
    /// Reads the header of a packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &AtaPacket<T>) -> Result<AtaRepr> {
        packet.check_len()?;
        Ok(AtaRepr {
            aflags: packet.aflags(),
            err_feature: packet.err_feature(),
            sector_count: packet.sector_count(),
            cmd_status: packet.cmd_status(),
            lba: packet.lba(),
        })
    }

    /// Header length: [`ATA_HEADER_LEN`] (data, if any, follows).
    pub const fn buffer_len(&self) -> usize {
        ATA_HEADER_LEN
    }

    /// Writes the header into `packet` and zeroes the reserved bytes; the data is left alone.
    ///
    /// # Panics
    /// If the buffer is shorter than [`buffer_len`](Self::buffer_len) or `lba > LBA48_MAX`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut AtaPacket<T>) {
        packet.set_aflags(self.aflags);
        packet.set_err_feature(self.err_feature);
        packet.set_sector_count(self.sector_count);
        packet.set_cmd_status(self.cmd_status);
        packet.set_lba(self.lba);
        packet.buffer.as_mut()[field::RESERVED].fill(0);
    }
}

/// What IDENTIFY DEVICE reports about an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyInfo<'a> {
    /// Model number, at most 40 ASCII characters (longer is cut, shorter padded with spaces).
    pub model: &'a str,
    /// Serial number, at most 20 ASCII characters.
    pub serial: &'a str,
    /// Firmware revision, at most 8 ASCII characters.
    pub firmware: &'a str,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
}

/// Word indexes of the IDENTIFY DEVICE block (ATA8-ACS §7.16.7).
mod word {
    use core::ops::Range;

    pub const GENERAL_CONFIG: usize = 0;
    pub const CYLINDERS: usize = 1;
    pub const HEADS: usize = 3;
    pub const SECTORS_PER_TRACK: usize = 6;
    pub const SERIAL: Range<usize> = 10..20;
    pub const FIRMWARE: Range<usize> = 23..27;
    pub const MODEL: Range<usize> = 27..47;
    /// Bits 15:8 = 0x80; bits 7:0 = max sectors per READ/WRITE MULTIPLE (0: unsupported).
    pub const MULTIPLE_MAX: usize = 47;
    pub const CAPABILITIES: usize = 49;
    /// Bit 14 shall be one.
    pub const CAPABILITIES_2: usize = 50;
    /// Bit 0: words 54..58 are valid.
    pub const FIELD_VALIDITY: usize = 53;
    pub const CURRENT_CYLINDERS: usize = 54;
    pub const CURRENT_HEADS: usize = 55;
    pub const CURRENT_SECTORS_PER_TRACK: usize = 56;
    /// Two words, low word first.
    pub const CURRENT_CAPACITY: usize = 57;
    /// Bit 8: the current multiple setting in bits 7:0 is valid.
    pub const MULTIPLE_SETTING: usize = 59;
    /// Two words, low word first.
    pub const LBA28_SECTORS: usize = 60;
    pub const MAJOR_VERSION: usize = 80;
    pub const SUPPORTED_1: usize = 82;
    pub const SUPPORTED_2: usize = 83;
    pub const SUPPORTED_EXT: usize = 84;
    pub const ENABLED_1: usize = 85;
    pub const ENABLED_2: usize = 86;
    pub const ENABLED_DEFAULT: usize = 87;
    /// Four words, least significant first.
    pub const LBA48_SECTORS: usize = 100;
    /// Low byte: signature 0xA5; high byte: checksum.
    pub const INTEGRITY: usize = 255;
}

/// Bits of the IDENTIFY DEVICE words the target sets.
mod bit {
    /// Word 0: fixed (non-removable) device.
    pub const FIXED_DEVICE: u16 = 1 << 6;
    /// Word 49: LBA supported.
    pub const LBA: u16 = 1 << 9;
    /// Words 50, 83, 84, 87: "shall be one", marking the word valid.
    pub const VALID: u16 = 1 << 14;
    /// Word 47 bits 15:8 shall be 0x80.
    pub const MULTIPLE_MAX_SIGNATURE: u16 = 0x8000;
    /// Word 53: words 54..58 valid.
    pub const CHS_VALID: u16 = 1 << 0;
    /// Word 80: ATA/ATAPI-6, ATA/ATAPI-7, ATA8-ACS.
    pub const ATA6_TO_ATA8: u16 = 1 << 6 | 1 << 7 | 1 << 8;
    /// Words 82/85: SMART feature set.
    pub const SMART: u16 = 1 << 0;
    /// Words 83/86: 48-bit address feature set.
    pub const LBA48: u16 = 1 << 10;
    /// Words 83/86: FLUSH CACHE.
    pub const FLUSH_CACHE: u16 = 1 << 12;
    /// Words 83/86: FLUSH CACHE EXT.
    pub const FLUSH_CACHE_EXT: u16 = 1 << 13;
}

/// Default CHS geometry: 16 heads, 63 sectors per track, at most 16383 cylinders.
const CHS_HEADS: u16 = 16;
const CHS_SECTORS_PER_TRACK: u16 = 63;
const CHS_CYLINDERS_MAX: u16 = 16383;
/// Low byte of word 255.
const INTEGRITY_SIGNATURE: u8 = 0xA5;

/// Fills `buf` with the IDENTIFY DEVICE data of an export.
///
/// Advertises LBA, LBA48, FLUSH CACHE, FLUSH CACHE EXT and SMART (supported and enabled);
/// capacity in words 60-61 (capped at `0x0FFF_FFFF`) and 100-103 (capped at 2^48 sectors);
/// a default CHS geometry in words 1/3/6 and 54-58; and the integrity word 255 so the byte
/// sum of the block is zero. Characters other than printable ASCII become `?`.
pub fn identify_device(buf: &mut [u8; SECTOR_SIZE], info: &IdentifyInfo<'_>) {
    buf.fill(0);
    put_word(buf, word::GENERAL_CONFIG, bit::FIXED_DEVICE);

    // The initiator only looks at CHS for LBA28 devices; give it a consistent geometry.
    let cylinders_max = u64::from(CHS_CYLINDERS_MAX);
    let track_sectors = u64::from(CHS_HEADS) * u64::from(CHS_SECTORS_PER_TRACK);
    let cylinders = u16::try_from((info.sectors / track_sectors).min(cylinders_max))
        .expect("capped at CHS_CYLINDERS_MAX");
    let chs_sectors =
        u32::from(cylinders) * u32::from(CHS_HEADS) * u32::from(CHS_SECTORS_PER_TRACK);
    put_word(buf, word::CYLINDERS, cylinders);
    put_word(buf, word::HEADS, CHS_HEADS);
    put_word(buf, word::SECTORS_PER_TRACK, CHS_SECTORS_PER_TRACK);
    put_word(buf, word::FIELD_VALIDITY, bit::CHS_VALID);
    put_word(buf, word::CURRENT_CYLINDERS, cylinders);
    put_word(buf, word::CURRENT_HEADS, CHS_HEADS);
    put_word(buf, word::CURRENT_SECTORS_PER_TRACK, CHS_SECTORS_PER_TRACK);
    put_words(buf, word::CURRENT_CAPACITY, &chs_sectors.to_le_bytes());

    put_string(buf, word::SERIAL, info.serial);
    put_string(buf, word::FIRMWARE, info.firmware);
    put_string(buf, word::MODEL, info.model);

    // No READ/WRITE MULTIPLE: maximum 0, no valid current setting.
    put_word(buf, word::MULTIPLE_MAX, bit::MULTIPLE_MAX_SIGNATURE);
    put_word(buf, word::MULTIPLE_SETTING, 0);
    put_word(buf, word::CAPABILITIES, bit::LBA);
    put_word(buf, word::CAPABILITIES_2, bit::VALID);

    let lba28_sectors = u32::try_from(info.sectors.min(LBA28_MASK)).expect("capped at 28 bits");
    put_words(buf, word::LBA28_SECTORS, &lba28_sectors.to_le_bytes());
    let lba48_sectors = info.sectors.min(LBA48_MAX + 1);
    put_words(buf, word::LBA48_SECTORS, &lba48_sectors.to_le_bytes());

    put_word(buf, word::MAJOR_VERSION, bit::ATA6_TO_ATA8);
    let command_sets = bit::LBA48 | bit::FLUSH_CACHE | bit::FLUSH_CACHE_EXT;
    put_word(buf, word::SUPPORTED_1, bit::SMART);
    put_word(buf, word::SUPPORTED_2, bit::VALID | command_sets);
    put_word(buf, word::SUPPORTED_EXT, bit::VALID);
    put_word(buf, word::ENABLED_1, bit::SMART);
    put_word(buf, word::ENABLED_2, command_sets);
    put_word(buf, word::ENABLED_DEFAULT, bit::VALID);

    // Word 255: signature, then the checksum that makes all 512 bytes sum to zero (mod 256).
    let integrity = 2 * word::INTEGRITY;
    buf[integrity] = INTEGRITY_SIGNATURE;
    let sum = buf[..=integrity]
        .iter()
        .fold(0u8, |sum, &byte| sum.wrapping_add(byte));
    buf[integrity + 1] = sum.wrapping_neg();
}

/// Stores one little-endian word.
fn put_word(buf: &mut [u8; SECTOR_SIZE], index: usize, value: u16) {
    buf[2 * index..2 * index + 2].copy_from_slice(&value.to_le_bytes());
}

/// Stores a little-endian multi-word value starting at word `index` (low word first).
fn put_words(buf: &mut [u8; SECTOR_SIZE], index: usize, bytes: &[u8]) {
    buf[2 * index..2 * index + bytes.len()].copy_from_slice(bytes);
}

/// Stores an ATA string: space-padded, and the first character of each pair in the word's
/// high byte, i.e. at the odd byte offset.
fn put_string(buf: &mut [u8; SECTOR_SIZE], words: Range<usize>, value: &str) {
    let field = &mut buf[2 * words.start..2 * words.end];
    let mut chars = value.bytes();
    for index in 0..field.len() {
        let c = match chars.next() {
            Some(c) if c.is_ascii_graphic() || c == b' ' => c,
            Some(_) => b'?',
            None => b' ',
        };
        field[index ^ 1] = c;
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::golden::{self, ARG_OFFSET, DATA_OFFSET};
    use crate::wire::Error;
    use proptest::prelude::*;

    fn read_ext_request_repr() -> AtaRepr {
        AtaRepr {
            aflags: AFLAG_LBA48,
            err_feature: 0,
            sector_count: 2,
            cmd_status: AtaCommand::ReadSectorsExt.into(),
            lba: 0x01_0203_0405,
        }
    }

    fn read_ext_reply_repr() -> AtaRepr {
        AtaRepr {
            cmd_status: status::DRDY,
            ..read_ext_request_repr()
        }
    }

    fn write_ext_request_repr() -> AtaRepr {
        AtaRepr {
            aflags: AFLAG_LBA48 | AFLAG_WRITE,
            err_feature: 0,
            sector_count: 1,
            cmd_status: AtaCommand::WriteSectorsExt.into(),
            lba: 0x10,
        }
    }

    #[test]
    fn test_deconstruct_read_ext_request() {
        let frame = golden::ata_read_ext_request();
        let packet = AtaPacket::new_checked(&frame[ARG_OFFSET..]).unwrap();
        assert_eq!(packet.aflags(), 0x40);
        assert!(packet.is_lba48());
        assert!(!packet.is_write());
        assert!(!packet.is_async());
        assert_eq!(packet.err_feature(), 0);
        assert_eq!(packet.sector_count(), 2);
        assert_eq!(packet.command(), AtaCommand::ReadSectorsExt);
        assert_eq!(packet.lba(), 0x01_0203_0405);
        // The request carries no data, only Ethernet padding.
        assert_eq!(packet.payload(), &[0u8; 24][..]);
        assert_eq!(AtaRepr::parse(&packet), Ok(read_ext_request_repr()));
    }

    #[test]
    fn test_deconstruct_read_ext_reply() {
        let frame = golden::ata_read_ext_reply();
        let packet = AtaPacket::new_checked(&frame[ARG_OFFSET..]).unwrap();
        assert_eq!(packet.cmd_status(), status::DRDY);
        assert_eq!(packet.payload(), &golden::data(1024, 1)[..]);
        assert_eq!(AtaRepr::parse(&packet), Ok(read_ext_reply_repr()));
    }

    #[test]
    fn test_deconstruct_write_ext_request() {
        let frame = golden::ata_write_ext_request();
        let packet = AtaPacket::new_checked(&frame[ARG_OFFSET..]).unwrap();
        assert!(packet.is_write() && packet.is_lba48());
        assert_eq!(packet.command(), AtaCommand::WriteSectorsExt);
        assert_eq!(packet.payload().len(), SECTOR_SIZE);
        assert_eq!(packet.payload(), &golden::data(512, 9)[..]);
        assert_eq!(AtaRepr::parse(&packet), Ok(write_ext_request_repr()));
    }

    #[test]
    fn test_deconstruct_read28_request() {
        let frame = golden::ata_read28_request();
        let packet = AtaPacket::new_checked(&frame[ARG_OFFSET..]).unwrap();
        assert!(!packet.is_lba48());
        assert_eq!(packet.command(), AtaCommand::ReadSectors);
        assert_eq!(packet.lba(), 0xE0AB_CDEF);
        assert_eq!(packet.lba() & LBA28_MASK, 0x00AB_CDEF);
    }

    #[test]
    fn test_deconstruct_vlan_identify() {
        let frame = golden::vlan_ata_identify();
        let packet = AtaPacket::new_checked(&frame[ARG_OFFSET + 4..]).unwrap();
        assert_eq!(packet.command(), AtaCommand::IdentifyDevice);
        assert_eq!((packet.sector_count(), packet.lba()), (1, 0));
    }

    #[test]
    fn test_construct_read_ext_request() {
        let frame = golden::ata_read_ext_request();
        let repr = read_ext_request_repr();
        assert_eq!(repr.buffer_len(), ATA_HEADER_LEN);
        let mut bytes = [0xeeu8; ATA_HEADER_LEN];
        repr.emit(&mut AtaPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, frame[ARG_OFFSET..DATA_OFFSET]);
    }

    #[test]
    fn test_construct_read_ext_reply() {
        let frame = golden::ata_read_ext_reply();
        let mut bytes = vec![0xeeu8; ATA_HEADER_LEN + 1024];
        let mut packet = AtaPacket::new_unchecked(&mut bytes[..]);
        read_ext_reply_repr().emit(&mut packet);
        packet.payload_mut().copy_from_slice(&golden::data(1024, 1));
        assert_eq!(bytes, frame[ARG_OFFSET..]);
    }

    #[test]
    fn test_construct_write_ext_request() {
        let frame = golden::ata_write_ext_request();
        let mut bytes = vec![0u8; ATA_HEADER_LEN + SECTOR_SIZE];
        let mut packet = AtaPacket::new_unchecked(&mut bytes[..]);
        write_ext_request_repr().emit(&mut packet);
        packet.payload_mut().copy_from_slice(&golden::data(512, 9));
        assert_eq!(bytes, frame[ARG_OFFSET..]);
    }

    #[test]
    fn test_setters() {
        let mut bytes = [0u8; ATA_HEADER_LEN];
        let mut packet = AtaPacket::new_unchecked(&mut bytes[..]);
        packet.set_aflags(AFLAG_ASYNC | AFLAG_DEVICE);
        packet.set_err_feature(error::ABRT);
        packet.set_sector_count(0xff);
        packet.set_cmd_status(status::DRDY | status::ERR);
        packet.set_lba(LBA48_MAX);
        assert!(packet.is_async() && !packet.is_write() && !packet.is_lba48());
        assert_eq!(packet.lba(), LBA48_MAX);
        assert_eq!(
            bytes,
            [0x12, 0x04, 0xff, 0x41, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]
        );
    }

    #[test]
    #[should_panic(expected = "48 bits")]
    fn test_set_lba_too_big() {
        let mut bytes = [0u8; ATA_HEADER_LEN];
        AtaPacket::new_unchecked(&mut bytes[..]).set_lba(LBA48_MAX + 1);
    }

    #[test]
    fn test_reject_short_header() {
        let frame = golden::ata_read_ext_request();
        golden::assert_shortest(&frame[ARG_OFFSET..], ATA_HEADER_LEN, AtaPacket::new_checked);
        let packet = AtaPacket::new_checked(&frame[ARG_OFFSET..DATA_OFFSET]).unwrap();
        assert!(packet.payload().is_empty());
        assert_eq!(
            AtaRepr::parse(&AtaPacket::new_unchecked(&frame[..11])),
            Err(Error)
        );
    }

    #[test]
    fn test_short_write_payload_is_not_a_wire_error() {
        // The target must be able to answer ABRT, so the view accepts it.
        let frame = golden::ata_write_ext_request();
        let packet = AtaPacket::new_checked(&frame[ARG_OFFSET..DATA_OFFSET + 100]).unwrap();
        assert_eq!(packet.sector_count(), 1);
        assert_eq!(packet.payload().len(), 100);
    }

    #[test]
    fn test_command_codes() {
        for (byte, command) in [
            (0x20, AtaCommand::ReadSectors),
            (0x24, AtaCommand::ReadSectorsExt),
            (0x30, AtaCommand::WriteSectors),
            (0x34, AtaCommand::WriteSectorsExt),
            (0xb0, AtaCommand::Smart),
            (0xe5, AtaCommand::CheckPowerMode),
            (0xe7, AtaCommand::FlushCache),
            (0xea, AtaCommand::FlushCacheExt),
            (0xec, AtaCommand::IdentifyDevice),
            (0xa1, AtaCommand::Unknown(0xa1)),
        ] {
            assert_eq!(AtaCommand::from(byte), command);
            assert_eq!(u8::from(command), byte);
        }
    }

    fn word_at(buf: &[u8; SECTOR_SIZE], index: usize) -> u16 {
        u16::from_le_bytes([buf[2 * index], buf[2 * index + 1]])
    }

    /// Decodes an ATA string the way the Linux `ata_id_string` does (swap each byte pair).
    fn string_at(buf: &[u8; SECTOR_SIZE], words: Range<usize>) -> String {
        let mut bytes = Vec::new();
        for index in words {
            bytes.extend_from_slice(&word_at(buf, index).to_be_bytes());
        }
        String::from_utf8(bytes).unwrap()
    }

    fn identify(sectors: u64) -> [u8; SECTOR_SIZE] {
        let mut buf = [0xffu8; SECTOR_SIZE];
        let info = IdentifyInfo {
            model: "aoe-xdp",
            serial: "1.2:host",
            firmware: "0.1.0",
            sectors,
        };
        identify_device(&mut buf, &info);
        buf
    }

    fn byte_sum(buf: &[u8]) -> u8 {
        buf.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte))
    }

    #[test]
    fn test_identify_golden_header() {
        let buf = identify(0x01_0000_0000);
        // Word 0 and the CHS words, bytes exactly as on the wire.
        assert_eq!(
            buf[0..14],
            [0x40, 0, 0xff, 0x3f, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x3f, 0]
        );
        // Serial "1.2:host": first character of each pair in the odd byte.
        assert_eq!(buf[20..30], *b".1:2ohts  ");
        assert_eq!(buf[30..40], [b' '; 10]);
        // Firmware "0.1.0" and model "aoe-xdp".
        assert_eq!(buf[46..54], *b".0.1 0  ");
        assert_eq!(buf[54..62], *b"oa-edx p");
    }

    #[test]
    fn test_identify_strings() {
        let buf = identify(1000);
        assert_eq!(string_at(&buf, word::MODEL), format!("{:40}", "aoe-xdp"));
        assert_eq!(string_at(&buf, word::SERIAL), format!("{:20}", "1.2:host"));
        assert_eq!(string_at(&buf, word::FIRMWARE), "0.1.0   ");
    }

    #[test]
    fn test_identify_strings_cut_and_sanitized() {
        let mut buf = [0u8; SECTOR_SIZE];
        let info = IdentifyInfo {
            model: "a model name that is much longer than forty characters",
            serial: "é\tx",
            firmware: "123456789",
            sectors: 8,
        };
        identify_device(&mut buf, &info);
        assert_eq!(
            string_at(&buf, word::MODEL),
            "a model name that is much longer than fo"
        );
        // 'é' is two UTF-8 bytes, each replaced.
        assert_eq!(string_at(&buf, word::SERIAL), format!("{:20}", "???x"));
        assert_eq!(string_at(&buf, word::FIRMWARE), "12345678");
    }

    #[test]
    fn test_identify_checksum() {
        for sectors in [
            0,
            1,
            2048,
            0x0FFF_FFFF,
            0x1000_0000,
            0x01_0203_0405,
            u64::MAX,
        ] {
            let buf = identify(sectors);
            assert_eq!(buf[510], 0xA5, "signature");
            assert_eq!(byte_sum(&buf), 0, "sectors {sectors}");
        }
    }

    #[test]
    fn test_identify_small_capacity() {
        let buf = identify(2048);
        assert_eq!((word_at(&buf, 60), word_at(&buf, 61)), (2048, 0));
        assert_eq!(buf[200..208], [0x00, 0x08, 0, 0, 0, 0, 0, 0]);
        // 2048 / (16 * 63) = 2 cylinders; words 57-58 hold 2 * 16 * 63.
        assert_eq!(
            (word_at(&buf, 1), word_at(&buf, 3), word_at(&buf, 6)),
            (2, 16, 63)
        );
        assert_eq!(
            (word_at(&buf, 54), word_at(&buf, 55), word_at(&buf, 56)),
            (2, 16, 63)
        );
        assert_eq!((word_at(&buf, 57), word_at(&buf, 58)), (2016, 0));
    }

    #[test]
    fn test_identify_large_capacity() {
        let buf = identify(0x01_0203_0405);
        // LBA28 capacity is capped, LBA48 holds the full count, low word first.
        assert_eq!(buf[120..124], [0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(buf[200..208], [0x05, 0x04, 0x03, 0x02, 0x01, 0x00, 0, 0]);
        assert_eq!(word_at(&buf, 1), 16383);
        assert_eq!(
            u32::from(word_at(&buf, 57)) | u32::from(word_at(&buf, 58)) << 16,
            16383 * 16 * 63
        );
    }

    #[test]
    fn test_identify_capacity_capped_at_lba48() {
        let buf = identify(u64::MAX);
        assert_eq!(buf[200..208], [0, 0, 0, 0, 0, 0, 0x01, 0]);
    }

    #[test]
    fn test_identify_features() {
        let buf = identify(1 << 30);
        assert_eq!(word_at(&buf, 47), 0x8000);
        assert_eq!(word_at(&buf, 49), 0x0200, "LBA");
        assert_eq!(word_at(&buf, 50), 0x4000);
        assert_eq!(word_at(&buf, 53), 0x0001);
        assert_eq!(word_at(&buf, 59), 0);
        assert_eq!(word_at(&buf, 80), 0x01c0, "ATA-6..ATA8-ACS");
        assert_eq!(word_at(&buf, 82), 0x0001, "SMART supported");
        assert_eq!(
            word_at(&buf, 83),
            0x7400,
            "valid + FLUSH EXT + FLUSH + LBA48"
        );
        assert_eq!(word_at(&buf, 84), 0x4000);
        assert_eq!(word_at(&buf, 85), 0x0001, "SMART enabled");
        assert_eq!(word_at(&buf, 86), 0x3400, "FLUSH EXT + FLUSH + LBA48");
        assert_eq!(word_at(&buf, 87), 0x4000);
        // Nothing else is set.
        let set: Vec<usize> = (0..256).filter(|&i| word_at(&buf, i) != 0).collect();
        let expected: Vec<usize> = [0, 1, 3, 6]
            .into_iter()
            .chain(10..20)
            .chain(23..47)
            .chain([
                47, 49, 50, 53, 54, 55, 56, 57, 58, 60, 61, 80, 82, 83, 84, 85, 86, 87,
            ])
            .chain([101, 255])
            .collect();
        assert_eq!(set, expected);
    }

    fn arb_repr() -> impl Strategy<Value = AtaRepr> {
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            0..=LBA48_MAX,
        )
            .prop_map(
                |(aflags, err_feature, sector_count, cmd_status, lba)| AtaRepr {
                    aflags,
                    err_feature,
                    sector_count,
                    cmd_status,
                    lba,
                },
            )
    }

    proptest! {
        #[test]
        fn prop_repr_round_trip(repr in arb_repr(), stale in any::<u8>()) {
            let mut bytes = vec![stale; repr.buffer_len()];
            repr.emit(&mut AtaPacket::new_unchecked(&mut bytes[..]));
            let packet = AtaPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(AtaRepr::parse(&packet), Ok(repr));
            prop_assert_eq!(&bytes[10..12], &[0, 0]);
        }

        #[test]
        fn prop_checked_accessors_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match AtaPacket::new_checked(&bytes[..]) {
                Ok(packet) => {
                    let _ = (packet.aflags(), packet.is_lba48(), packet.is_write(), packet.is_async());
                    let _ = (packet.err_feature(), packet.sector_count(), packet.cmd_status());
                    let _ = packet.command();
                    prop_assert!(packet.lba() <= LBA48_MAX);
                    prop_assert_eq!(packet.payload().len(), bytes.len() - ATA_HEADER_LEN);
                    AtaRepr::parse(&packet).unwrap();
                }
                Err(_) => prop_assert!(bytes.len() < ATA_HEADER_LEN),
            }
        }

        #[test]
        fn prop_identify_checksum_and_capacity(
            sectors in any::<u64>(),
            model in ".{0,50}",
            serial in ".{0,30}",
            firmware in ".{0,10}",
        ) {
            let mut buf = [0u8; SECTOR_SIZE];
            identify_device(&mut buf, &IdentifyInfo { model: &model, serial: &serial, firmware: &firmware, sectors });
            prop_assert_eq!(byte_sum(&buf), 0);
            prop_assert_eq!(buf[510], 0xA5);
            let lba48 = u64::from_le_bytes(buf[200..208].try_into().unwrap());
            prop_assert_eq!(lba48, sectors.min(1 << 48));
            let lba28 = u32::from_le_bytes(buf[120..124].try_into().unwrap());
            prop_assert_eq!(u64::from(lba28), sectors.min(LBA28_MASK));
            prop_assert!(string_at(&buf, word::MODEL).bytes().all(|c| c.is_ascii_graphic() || c == b' '));
        }
    }
}

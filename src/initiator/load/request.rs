//! One request: what a slot remembers of it, its frame, and why it failed.

use super::verify;
use super::workload::Io;
use crate::initiator::frames::{self, AtaCmd, Route};
use crate::wire::SECTOR_SIZE;

/// Bytes of Ethernet, AoE and ATA headers before the data of an untagged ATA frame.
pub(super) const ATA_DATA_OFFSET: usize = 36;

/// What a slot remembers about its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Request {
    pub io: Io,
    /// Generation stamped into a write's sectors (`verify`), else 0.
    pub stamp: u32,
}

/// Writes the request frame for `request` with `tag` into `buf`; returns its length.
pub(super) fn encode(
    buf: &mut [u8],
    route: &Route,
    tag: u32,
    request: &Request,
    lba48: bool,
) -> usize {
    let io = request.io;
    if !io.write {
        return frames::ata(buf, route, tag, &AtaCmd::read(io.lba, io.count, lba48), &[]);
    }
    debug_assert!(
        route.vlan_tci.is_none(),
        "data offset assumes untagged frames"
    );
    frames::ata(
        buf,
        route,
        tag,
        &AtaCmd::write(io.lba, io.count, lba48),
        &[],
    );
    let end = ATA_DATA_OFFSET + usize::from(io.count) * SECTOR_SIZE;
    if request.stamp != 0 {
        let sectors = buf[ATA_DATA_OFFSET..end].chunks_exact_mut(SECTOR_SIZE);
        for (lba, sector) in (io.lba..).zip(sectors) {
            verify::stamp(sector, lba, request.stamp);
        }
    }
    end
}

/// Why a reply fails its request.
#[derive(Debug)]
pub(super) enum Failure {
    Aoe(crate::wire::AoeError),
    Ata { status: u8, error: u8 },
    Malformed,
    Short { got: usize, want: usize },
    Timeout { tries: u32 },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Aoe(error) => write!(f, "AoE error {error:?}"),
            Failure::Ata { status, error } => {
                write!(f, "ATA status {status:#04x} error {error:#04x}")
            }
            Failure::Malformed => f.write_str("malformed reply"),
            Failure::Short { got, want } => write!(f, "short read reply ({got} of {want} bytes)"),
            Failure::Timeout { tries } => write!(f, "no reply after {tries} tries"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;

    fn route() -> Route {
        Route {
            dst: MacAddr([2, 0, 0, 0, 0, 1]),
            src: MacAddr([2, 0, 0, 0, 0, 2]),
            vlan_tci: None,
            shelf: 3,
            slot: 4,
        }
    }

    fn request(write: bool, lba: u64, count: u8, stamp: u32) -> Request {
        Request {
            io: Io { write, lba, count },
            stamp,
        }
    }

    #[test]
    fn test_encode_write_stamps_every_sector() {
        let mut buf = vec![0u8; 9216];
        let len = encode(&mut buf, &route(), 0x1234, &request(true, 10, 3, 9), true);
        assert_eq!(len, 36 + 3 * 512);
        let mut expected = vec![0u8; 512];
        for (i, sector) in buf[36..len].chunks_exact(512).enumerate() {
            verify::stamp(&mut expected, 10 + i as u64, 9);
            assert_eq!(sector, expected.as_slice());
        }
        assert_eq!(&buf[20..24], &0x1234u32.to_be_bytes(), "tag");
        assert_eq!(buf[36 - 12 + 3], 0x34, "WRITE SECTORS EXT");
    }

    #[test]
    fn test_encode_read_is_header_only() {
        let mut buf = vec![0u8; 9216];
        assert_eq!(
            encode(&mut buf, &route(), 1, &request(false, 1, 2, 0), true),
            60
        );
        assert_eq!(buf[36 - 12 + 2], 2, "sector count");
    }
}

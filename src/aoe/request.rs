//! One received frame, classified once: [`Request::parse`] reads its Ethernet, AoE and (for
//! an ATA command) ATA headers, and everything after it works from the result: which devices
//! it is for ([`super::Target::addressed`]), how much room its reply needs
//! ([`Request::reply_room`]), and the command itself ([`super::Target::handle`]). Nothing
//! parses the same header twice.

use crate::wire::{
    AoeCommand, AoePacket, AtaCommand, AtaPacket, EthernetFrame, MacAddr, AOE_HEADER_LEN,
    AOE_VERSION, ATA_HEADER_LEN, ETHERTYPE_AOE, SECTOR_SIZE,
};

/// An AoE request of our version, as the target needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The initiator's MAC: the destination of every reply.
    pub(super) src: MacAddr,
    /// Length of the Ethernet header (14, or 18 with a VLAN tag).
    pub(super) eth_len: usize,
    /// Target address as sent (may be a broadcast address).
    pub(super) shelf: u16,
    /// Target slot as sent (may be the broadcast slot).
    pub(super) slot: u8,
    pub(super) command: AoeCommand,
    /// Length of the received frame.
    pub(super) len: usize,
    /// The ATA header of an ATA command, `None` when it is shorter than one (an AoE error).
    pub(super) ata: Option<AtaArgs>,
}

/// The fields of an ATA header the target acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AtaArgs {
    pub(super) command: AtaCommand,
    pub(super) is_write: bool,
    pub(super) lba48: bool,
    pub(super) lba: u64,
    pub(super) count: u8,
    pub(super) feature: u8,
    /// Bytes after the ATA header (a write's data, plus any padding).
    pub(super) payload_len: usize,
}

impl Request {
    /// Classifies `frame`; `None` for anything that is not an AoE request of our version
    /// (other ethertypes, responses, other versions, frames shorter than their headers).
    pub fn parse(frame: &[u8]) -> Option<Request> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != ETHERTYPE_AOE {
            return None;
        }
        let aoe = AoePacket::new_checked(eth.payload()).ok()?;
        if aoe.is_response() || aoe.version() != AOE_VERSION {
            return None;
        }
        let command = aoe.command();
        let ata = match command {
            AoeCommand::Ata => AtaPacket::new_checked(aoe.payload())
                .ok()
                .map(|ata| AtaArgs {
                    command: ata.command(),
                    is_write: ata.is_write(),
                    lba48: ata.is_lba48(),
                    lba: ata.lba(),
                    count: ata.sector_count(),
                    feature: ata.err_feature(),
                    payload_len: ata.payload().len(),
                }),
            _ => None,
        };
        Some(Request {
            src: eth.src_addr(),
            eth_len: eth.header_len(),
            shelf: aoe.major(),
            slot: aoe.minor(),
            command,
            len: frame.len(),
            ata,
        })
    }

    /// Length of the received frame.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a request has at least its headers.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes, from the frame start, that the reply may need: for an ATA read, its headers (an
    /// 802.1Q tag included) plus the sectors it asks for; otherwise the request's own length
    /// (a write's reply is shorter than the request, other replies fit any frame). The worker
    /// moves a read into a frame large enough for its reply before handling it.
    pub fn reply_room(&self) -> usize {
        match self.ata {
            Some(ata) if !ata.is_write => {
                let headers = self.arg_offset() + ATA_HEADER_LEN;
                self.len.max(headers + usize::from(ata.count) * SECTOR_SIZE)
            }
            _ => self.len,
        }
    }

    /// Offset of the command argument (the ATA, Query Config, ... header).
    pub(super) fn arg_offset(&self) -> usize {
        self.eth_len + AOE_HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply room of `frame`, or its length when it is no request.
    fn room(frame: &[u8]) -> usize {
        Request::parse(frame).map_or(frame.len(), |request| request.reply_room())
    }

    fn request(vlan: bool, command: u8, aflags: u8, sectors: u8, data: usize) -> Vec<u8> {
        let mut frame = vec![0xAA; 12];
        if vlan {
            frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x2A]);
        }
        frame.extend_from_slice(&[0x88, 0xA2, 0x10, 0, 0, 1, 2, command, 0, 0, 0, 9]);
        frame.extend_from_slice(&[aflags, 0, sectors, 0x24, 0, 0, 0, 0, 0, 0, 0, 0]);
        frame.resize(frame.len() + data, 0x55);
        frame
    }

    #[test]
    fn test_reply_room_of_a_read_counts_its_sectors() {
        assert_eq!(room(&request(false, 0, 0x40, 17, 0)), 36 + 17 * 512);
        assert_eq!(room(&request(true, 0, 0x40, 17, 0)), 40 + 17 * 512);
        assert_eq!(room(&request(false, 0, 0x40, 1, 0)), 36 + 512);
        // A padded runt read of 0 sectors needs no more than it has.
        assert_eq!(room(&request(false, 0, 0x40, 0, 24)), 60);
    }

    #[test]
    fn test_reply_room_of_writes_and_others_is_their_length() {
        let write = request(false, 0, 0x41, 17, 17 * 512);
        assert_eq!(room(&write), write.len());
        let query = request(false, 1, 0x40, 17, 0);
        assert_eq!(room(&query), query.len());
        let mut not_aoe = request(false, 0, 0x40, 17, 0);
        not_aoe[12] = 0x08;
        assert_eq!(room(&not_aoe), not_aoe.len());
        assert_eq!(room(&[0u8; 20]), 20, "truncated");
    }
}

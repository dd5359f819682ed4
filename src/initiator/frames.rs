//! Request encoders and a reply decoder, as an initiator sends and reads AoE frames.
//!
//! Every encoder writes one complete frame into `buf` and returns its length (padded to the
//! Ethernet minimum of 60 bytes). They panic if `buf` is too short: callers size buffers for the
//! MTU they use.

use crate::wire::ata::{AFLAG_LBA48, AFLAG_WRITE};
use crate::wire::pad_to_min as pad;
use crate::wire::{
    AoeCommand, AoeError, AoePacket, AoeRepr, AtaCommand, AtaPacket, AtaRepr, ConfigCommand,
    DirectiveRepr, EthernetFrame, EthernetRepr, MacAddr, MacMaskCommand, MacMaskPacket,
    MacMaskRepr, QueryConfigPacket, QueryConfigRepr, ReserveCommand, ReservePacket, ReserveRepr,
    AOE_VERSION, ETHERTYPE_AOE,
};

/// Who talks to whom: the Ethernet and AoE addresses of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The target's MAC (or broadcast).
    pub dst: MacAddr,
    /// Our MAC.
    pub src: MacAddr,
    /// An optional 802.1Q tag.
    pub vlan_tci: Option<u16>,
    /// AoE major (shelf), 0xFFFF for all.
    pub shelf: u16,
    /// AoE minor (slot), 0xFF for all.
    pub slot: u8,
}

/// Writes the Ethernet and AoE headers of a request; returns the offset of the argument.
fn headers(buf: &mut [u8], route: &Route, command: AoeCommand, tag: u32) -> usize {
    let eth = EthernetRepr {
        dst_addr: route.dst,
        src_addr: route.src,
        vlan_tci: route.vlan_tci,
        ethertype: ETHERTYPE_AOE,
    };
    let aoe = AoeRepr {
        version: AOE_VERSION,
        response: false,
        error: None,
        major: route.shelf,
        minor: route.slot,
        command,
        tag,
    };
    let eth_len = eth.buffer_len();
    eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..eth_len]));
    let end = eth_len + aoe.buffer_len();
    aoe.emit(&mut AoePacket::new_unchecked(&mut buf[eth_len..end]));
    end
}

/// An ATA command as an initiator issues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtaCmd {
    /// The ATA command.
    pub command: AtaCommand,
    /// Use the LBA48 form (E flag).
    pub lba48: bool,
    /// First sector.
    pub lba: u64,
    /// Sector count.
    pub count: u8,
    /// Feature register (e.g. the SMART subcommand).
    pub feature: u8,
}

impl AtaCmd {
    /// READ SECTORS (EXT when `lba48`).
    pub fn read(lba: u64, count: u8, lba48: bool) -> AtaCmd {
        let forms = [AtaCommand::ReadSectors, AtaCommand::ReadSectorsExt];
        AtaCmd::sectors(forms, lba, count, lba48)
    }

    /// WRITE SECTORS (EXT when `lba48`).
    pub fn write(lba: u64, count: u8, lba48: bool) -> AtaCmd {
        let forms = [AtaCommand::WriteSectors, AtaCommand::WriteSectorsExt];
        AtaCmd::sectors(forms, lba, count, lba48)
    }

    /// A command on `count` sectors at `lba`: `forms[1]` (its EXT form) when `lba48`, else
    /// `forms[0]`.
    fn sectors(forms: [AtaCommand; 2], lba: u64, count: u8, lba48: bool) -> AtaCmd {
        AtaCmd {
            command: forms[usize::from(lba48)],
            lba48,
            lba,
            count,
            feature: 0,
        }
    }

    /// Any other command with no data (IDENTIFY, FLUSH, CHECK POWER, SMART...).
    pub fn other(command: AtaCommand, count: u8, feature: u8) -> AtaCmd {
        AtaCmd {
            command,
            lba48: false,
            lba: 0,
            count,
            feature,
        }
    }
}

/// Encodes an ATA request with `data` (for writes) after the header.
pub fn ata(buf: &mut [u8], route: &Route, tag: u32, cmd: &AtaCmd, data: &[u8]) -> usize {
    let offset = headers(buf, route, AoeCommand::Ata, tag);
    let is_write = matches!(
        cmd.command,
        AtaCommand::WriteSectors | AtaCommand::WriteSectorsExt
    );
    // Linux puts 0xE0 (LBA mode, obsolete bits) into LBA byte 3 of LBA28 commands.
    let lba = if cmd.lba48 {
        cmd.lba
    } else {
        (cmd.lba & 0x0FFF_FFFF) | 0xE000_0000
    };
    let repr = AtaRepr {
        aflags: if cmd.lba48 { AFLAG_LBA48 } else { 0 } | if is_write { AFLAG_WRITE } else { 0 },
        err_feature: cmd.feature,
        sector_count: cmd.count,
        cmd_status: cmd.command.into(),
        lba,
    };
    let end = offset + repr.buffer_len();
    repr.emit(&mut AtaPacket::new_unchecked(&mut buf[offset..end]));
    buf[end..end + data.len()].copy_from_slice(data);
    pad(buf, end + data.len())
}

/// Encodes a Query Config request.
pub fn query_config(
    buf: &mut [u8],
    route: &Route,
    tag: u32,
    command: ConfigCommand,
    config_string: &[u8],
) -> usize {
    let offset = headers(buf, route, AoeCommand::QueryConfig, tag);
    let repr = QueryConfigRepr {
        buffer_count: 0,
        firmware_version: 0,
        sector_count: 0,
        aoe_version: AOE_VERSION,
        command,
        config_string,
    };
    let end = offset + repr.buffer_len();
    repr.emit(&mut QueryConfigPacket::new_unchecked(&mut buf[offset..end]));
    pad(buf, end)
}

/// Encodes a Mac Mask List request.
pub fn mac_mask(
    buf: &mut [u8],
    route: &Route,
    tag: u32,
    command: MacMaskCommand,
    directives: &[DirectiveRepr],
) -> usize {
    let offset = headers(buf, route, AoeCommand::MacMaskList, tag);
    let repr = MacMaskRepr {
        command,
        error: None,
        dir_count: u8::try_from(directives.len()).expect("at most 255 directives"),
    };
    let end = offset + repr.buffer_len();
    let mut packet = MacMaskPacket::new_unchecked(&mut buf[offset..end]);
    repr.emit(&mut packet);
    for (index, directive) in directives.iter().enumerate() {
        packet.set_directive(index, directive);
    }
    pad(buf, end)
}

/// Encodes a Reserve/Release request.
pub fn reserve(
    buf: &mut [u8],
    route: &Route,
    tag: u32,
    command: ReserveCommand,
    macs: &[MacAddr],
) -> usize {
    let offset = headers(buf, route, AoeCommand::ReserveRelease, tag);
    let repr = ReserveRepr {
        command,
        nmacs: u8::try_from(macs.len()).expect("at most 255 MACs"),
    };
    let end = offset + repr.buffer_len();
    let mut packet = ReservePacket::new_unchecked(&mut buf[offset..end]);
    repr.emit(&mut packet);
    for (index, mac) in macs.iter().enumerate() {
        packet.set_mac(index, *mac);
    }
    pad(buf, end)
}

/// A decoded AoE reply.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    /// Who sent it.
    pub src: MacAddr,
    /// To whom.
    pub dst: MacAddr,
    /// The AoE header.
    pub aoe: AoeRepr,
    /// The AoE argument (everything after the AoE header, including Ethernet padding).
    pub arg: &'a [u8],
}

impl<'a> Reply<'a> {
    /// Decodes an AoE response frame; `None` for anything else (requests included).
    pub fn parse(frame: &'a [u8]) -> Option<Reply<'a>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != ETHERTYPE_AOE {
            return None;
        }
        let packet = AoePacket::new_checked(eth.payload()).ok()?;
        let aoe = AoeRepr::parse(&packet).ok()?;
        if !aoe.response {
            return None;
        }
        Some(Reply {
            src: eth.src_addr(),
            dst: eth.dst_addr(),
            aoe,
            arg: packet.payload(),
        })
    }

    /// The AoE error, if the E flag is set.
    pub fn error(&self) -> Option<AoeError> {
        self.aoe.error
    }

    /// The ATA reply header and the data after it.
    pub fn ata(&self) -> Option<(AtaRepr, &'a [u8])> {
        let packet = AtaPacket::new_checked(self.arg).ok()?;
        Some((AtaRepr::parse(&packet).ok()?, packet.payload()))
    }

    /// The Query Config reply.
    pub fn query_config(&self) -> Option<QueryConfigRepr<'a>> {
        QueryConfigRepr::parse(&QueryConfigPacket::new_checked(self.arg).ok()?).ok()
    }

    /// The Mac Mask List reply header and its directives.
    pub fn mac_mask(&self) -> Option<(MacMaskRepr, MacMaskPacket<&'a [u8]>)> {
        let packet = MacMaskPacket::new_checked(self.arg).ok()?;
        Some((MacMaskRepr::parse(&packet).ok()?, packet))
    }

    /// The Reserve/Release reply header and its MACs.
    pub fn reserve(&self) -> Option<(ReserveRepr, ReservePacket<&'a [u8]>)> {
        let packet = ReservePacket::new_checked(self.arg).ok()?;
        Some((ReserveRepr::parse(&packet).ok()?, packet))
    }
}

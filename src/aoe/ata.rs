//! The ATA command (AoE command 0): reads, writes, IDENTIFY, FLUSH, CHECK POWER, SMART.
//!
//! Errors follow the drive conventions initiators expect: a sector range past the end is IDNF,
//! a sector count the frame cannot carry, a short write payload or a write to a read-only
//! device is ABRT; an unknown command is ABRT. Only a reservation conflict is an AoE error.
//!
//! SMART is answered as a drive with SMART enabled and nothing to monitor: RETURN STATUS says
//! "no threshold exceeded", READ DATA and READ THRESHOLDS return structures with empty tables,
//! ENABLE/DISABLE OPERATIONS succeed, and the sub-commands that the READ DATA capability bytes
//! and IDENTIFY words 84/87 say are absent (off-line collection, self-tests, logs, attribute
//! autosave) are ABRT, as is any SMART command without the key 0xC24F in LBA bits 8..24.
//! Hazard: every SMART reply carries one sector, zeros when the sub-command has no data or
//! failed (see `Device::smart` for why).

use super::request::AtaArgs;
use super::{aoe_error, begin_reply, pad, Ctx, Device, IoFailure, IoKind, IoPlan, Outcome};
use crate::wire::ata::{error as ata_error, status as ata_status};
use crate::wire::{
    identify_device, AoeError, AtaCommand, AtaPacket, IdentifyInfo, ATA_HEADER_LEN, SECTOR_SIZE,
};

/// SMART sub-commands (feature register values) the target answers.
mod smart {
    /// SMART READ DATA: the device SMART data structure, one sector in.
    pub const READ_DATA: u8 = 0xD0;
    /// SMART READ ATTRIBUTE THRESHOLDS (obsolete since ATA/ATAPI-5, still widely answered).
    pub const READ_THRESHOLDS: u8 = 0xD1;
    /// SMART ENABLE OPERATIONS.
    pub const ENABLE_OPERATIONS: u8 = 0xD8;
    /// SMART DISABLE OPERATIONS.
    pub const DISABLE_OPERATIONS: u8 = 0xD9;
    /// SMART RETURN STATUS.
    pub const RETURN_STATUS: u8 = 0xDA;
    /// LBA bits 8..24 (LBA mid 0x4F, high 0xC2): the key every SMART command must carry,
    /// echoed by RETURN STATUS to mean "no threshold exceeded" (0x2CF4 would mean exceeded).
    pub const KEY: u64 = 0x00C2_4F00;
    /// The LBA bits [`KEY`] occupies.
    pub const KEY_MASK: u64 = 0x00FF_FF00;
    /// Revision in bytes 0..2 of the data and threshold structures, as most drives report it.
    pub const REVISION: u16 = 0x0010;
    /// Offset of the checksum byte: all 512 bytes of a structure sum to 0 mod 256.
    pub const CHECKSUM: usize = 511;
}

/// CHECK POWER MODE: active or idle.
const POWER_ACTIVE: u8 = 0xFF;

impl Device {
    pub(super) fn handle_ata(&mut self, ctx: &Ctx, buf: &mut [u8]) -> Outcome {
        let ata_offset = ctx.header.arg_offset();
        let Some(args) = ctx.header.ata else {
            self.counters.proto_errors += 1;
            return aoe_error(ctx, buf, AoeError::BadArgument);
        };
        let AtaArgs {
            command,
            lba48,
            lba,
            count,
            feature,
            payload_len,
            ..
        } = args;
        if command != AtaCommand::IdentifyDevice && !self.cache.reservation_allows(ctx.header.src) {
            self.counters.proto_errors += 1;
            return aoe_error(ctx, buf, AoeError::TargetReserved);
        }
        begin_reply(ctx, buf);
        match command {
            AtaCommand::ReadSectors | AtaCommand::ReadSectorsExt => {
                self.read_write(ctx, buf, IoKind::Read, lba48, lba, count, payload_len)
            }
            AtaCommand::WriteSectors | AtaCommand::WriteSectorsExt => {
                self.read_write(ctx, buf, IoKind::Write, lba48, lba, count, payload_len)
            }
            AtaCommand::FlushCache | AtaCommand::FlushCacheExt => Outcome::Io(IoPlan {
                device: ctx.device,
                export: self.params.export,
                kind: IoKind::Flush,
                sector: 0,
                count: 0,
                data_offset: ata_offset + ATA_HEADER_LEN,
            }),
            AtaCommand::IdentifyDevice => self.identify(ctx, buf),
            AtaCommand::CheckPowerMode => {
                self.counters.other_cmds += 1;
                let mut ata = AtaPacket::new_unchecked(&mut buf[ata_offset..]);
                ata.set_sector_count(POWER_ACTIVE);
                ata_reply(ctx, buf, ata_status::DRDY, 0, 0)
            }
            AtaCommand::Smart => self.smart(ctx, buf, feature, lba),
            _ => self.ata_fail(ctx, buf, ata_error::ABRT),
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the decoded ATA fields, kept flat"
    )]
    fn read_write(
        &mut self,
        ctx: &Ctx,
        buf: &mut [u8],
        kind: IoKind,
        lba48: bool,
        lba: u64,
        count: u8,
        payload_len: usize,
    ) -> Outcome {
        // LBA28 commands carry 28 address bits; the upper bytes are not part of the address.
        let lba = if lba48 { lba } else { lba & 0x0FFF_FFFF };
        let data_offset = ctx.header.arg_offset() + ATA_HEADER_LEN;
        let byte_len = usize::from(count) * SECTOR_SIZE;
        // Count 0 means 256 (LBA28) or 65536 (LBA48) sectors in ATA: never fits a frame.
        if count == 0 || count > ctx.port.max_sectors() || data_offset + byte_len > buf.len() {
            return self.ata_fail(ctx, buf, ata_error::ABRT);
        }
        match lba.checked_add(u64::from(count)) {
            Some(end) if end <= self.params.sectors => {}
            _ => return self.ata_fail(ctx, buf, ata_error::IDNF),
        }
        if kind == IoKind::Write && (self.params.read_only || payload_len < byte_len) {
            return self.ata_fail(ctx, buf, ata_error::ABRT);
        }
        Outcome::Io(IoPlan {
            device: ctx.device,
            export: self.params.export,
            kind,
            sector: lba,
            count: u16::from(count),
            data_offset,
        })
    }

    fn identify(&mut self, ctx: &Ctx, buf: &mut [u8]) -> Outcome {
        let Some(block) = reply_sector(ctx, buf) else {
            return self.ata_fail(ctx, buf, ata_error::ABRT);
        };
        identify_device(
            block,
            &IdentifyInfo {
                model: &self.params.model,
                serial: &self.params.serial,
                firmware: env!("CARGO_PKG_VERSION"),
                sectors: self.params.sectors,
            },
        );
        self.counters.other_cmds += 1;
        ata_reply(ctx, buf, ata_status::DRDY, 0, SECTOR_SIZE)
    }

    /// SMART (0xB0): `feature` is the sub-command, `lba` the six LBA bytes of the request.
    ///
    /// Every reply carries one sector when the port can carry it: the structure for READ DATA
    /// and READ THRESHOLDS, zeros otherwise (non-data sub-commands and ABRT included). ATA
    /// transfers nothing for those, but AoE has no data length field, so bytes after the ATA
    /// header that the command does not return are padding to an initiator: Linux's aoe
    /// driver never sends SMART and checks only that a reply is not shorter than it asked for;
    /// iPXE copies only what it asked for ("There may be trailing garbage due to Ethernet
    /// minimum-frame-size padding", `aoecmd_ata_rsp`). The one AoE SMART client, aoetools'
    /// `aoeping -S`, exits with status 1 and no message unless the reply holds the 36 header
    /// bytes plus 512, for every sub-command, and looks for ABRT only after that check: it was
    /// written against targets that answer every SMART command with a sector. (vblade, ggaoed
    /// and qaoed ABRT all of SMART with header-only replies, which aoeping cannot tell apart
    /// from a lost reply.)
    fn smart(&mut self, ctx: &Ctx, buf: &mut [u8], feature: u8, lba: u64) -> Outcome {
        let data_in = matches!(feature, smart::READ_DATA | smart::READ_THRESHOLDS);
        // SMART stays enabled: with no attributes there is nothing DISABLE could stop, and
        // IDENTIFY word 85 keeps reporting SMART enabled. RETURN STATUS needs no work: the
        // reply keeps the request's LBA, so it carries the key, "no threshold exceeded".
        let known = data_in
            || matches!(
                feature,
                smart::ENABLE_OPERATIONS | smart::DISABLE_OPERATIONS | smart::RETURN_STATUS
            );
        let ok = known && lba & smart::KEY_MASK == smart::KEY;
        let data_len = match reply_sector(ctx, buf) {
            Some(sector) => {
                if ok && data_in {
                    empty_smart_structure(sector);
                } else {
                    sector.fill(0);
                }
                SECTOR_SIZE
            }
            // A structure that cannot be sent is a command the device cannot complete.
            None if ok && data_in => return self.ata_fail(ctx, buf, ata_error::ABRT),
            None => 0,
        };
        if ok {
            self.counters.other_cmds += 1;
            ata_reply(ctx, buf, ata_status::DRDY, 0, data_len)
        } else {
            self.counters.ata_errors += 1;
            let status = ata_status::DRDY | ata_status::ERR;
            ata_reply(ctx, buf, status, ata_error::ABRT, data_len)
        }
    }

    fn ata_fail(&mut self, ctx: &Ctx, buf: &mut [u8], error: u8) -> Outcome {
        self.counters.ata_errors += 1;
        ata_reply(ctx, buf, ata_status::DRDY | ata_status::ERR, error, 0)
    }

    pub(super) fn complete_io(
        &mut self,
        buf: &mut [u8],
        plan: &IoPlan,
        result: Result<(), IoFailure>,
    ) -> usize {
        let ata_offset = plan.data_offset - ATA_HEADER_LEN;
        let (status, error, data_len) = match result {
            Ok(()) => {
                let bytes = plan.byte_len() as u64;
                match plan.kind {
                    IoKind::Read => {
                        self.counters.read_cmds += 1;
                        self.counters.read_bytes += bytes;
                    }
                    IoKind::Write => {
                        self.counters.write_cmds += 1;
                        self.counters.write_bytes += bytes;
                    }
                    IoKind::Flush => self.counters.other_cmds += 1,
                }
                let data_len = if plan.kind == IoKind::Read {
                    plan.byte_len()
                } else {
                    0
                };
                (ata_status::DRDY, 0, data_len)
            }
            Err(failure) => {
                self.counters.ata_errors += 1;
                let error = match failure {
                    IoFailure::Media => ata_error::UNC,
                    IoFailure::Aborted => ata_error::ABRT,
                };
                (ata_status::DRDY | ata_status::ERR, error, 0)
            }
        };
        let mut ata = AtaPacket::new_unchecked(&mut buf[ata_offset..plan.data_offset]);
        ata.set_cmd_status(status);
        ata.set_err_feature(error);
        pad(buf, plan.data_offset + data_len)
    }
}

/// Sets the ATA status and error registers of the reply already begun in `buf`.
fn ata_reply(ctx: &Ctx, buf: &mut [u8], status: u8, error: u8, data_len: usize) -> Outcome {
    let ata_offset = ctx.header.arg_offset();
    let mut ata = AtaPacket::new_unchecked(&mut buf[ata_offset..ata_offset + ATA_HEADER_LEN]);
    ata.set_cmd_status(status);
    ata.set_err_feature(error);
    let len = pad(buf, ata_offset + ATA_HEADER_LEN + data_len);
    Outcome::Reply {
        len,
        persist: false,
    }
}

/// The one-sector data area of the reply begun in `buf`, or `None` when the reply cannot carry
/// a sector: the port's MTU is too small for one, or (never, given `BUFFER_LEN_MIN`) the buffer.
fn reply_sector<'b>(ctx: &Ctx, buf: &'b mut [u8]) -> Option<&'b mut [u8; SECTOR_SIZE]> {
    if ctx.port.max_sectors() == 0 {
        return None;
    }
    let data_offset = ctx.header.arg_offset() + ATA_HEADER_LEN;
    buf.get_mut(data_offset..data_offset + SECTOR_SIZE)
        .and_then(|b| <&mut [u8; SECTOR_SIZE]>::try_from(b).ok())
}

/// A SMART structure of a drive with nothing to report, for READ DATA and READ THRESHOLDS
/// alike: the revision, a table of 30 unused 12-byte entries (ID 0) in bytes 2..362, zeros
/// for the rest, then the checksum. In the data structure those zeros read as: off-line data
/// collection never started (byte 362), no self-test ever run (363), no time needed for
/// off-line collection (364..366), no off-line collection or self-test capability (367), no
/// attribute autosave (368..370), no error logging (370), no self-test polling times
/// (372..377). In the thresholds structure bytes 362..511 are reserved or vendor specific.
fn empty_smart_structure(sector: &mut [u8; SECTOR_SIZE]) {
    sector.fill(0);
    sector[..2].copy_from_slice(&smart::REVISION.to_le_bytes());
    seal_smart(sector);
}

/// Sets the checksum byte so that the 512 bytes sum to 0 mod 256.
fn seal_smart(sector: &mut [u8; SECTOR_SIZE]) {
    let sum = sector[..smart::CHECKSUM]
        .iter()
        .fold(0u8, |sum, &b| sum.wrapping_add(b));
    sector[smart::CHECKSUM] = sum.wrapping_neg();
}

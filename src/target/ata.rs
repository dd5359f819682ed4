//! The ATA command (AoE command 0): reads, writes, IDENTIFY, FLUSH, CHECK POWER, SMART status.
//!
//! Errors follow the drive conventions initiators expect: a sector range past the end is IDNF,
//! a sector count the frame cannot carry, a short write payload or a write to a read-only
//! device is ABRT; an unknown command is ABRT. Only a reservation conflict is an AoE error.

use super::{aoe_error, begin_reply, pad, Ctx, Device, IoFailure, IoKind, IoPlan, Outcome};
use crate::wire::ata::{error as ata_error, status as ata_status};
use crate::wire::{
    identify_device, AoeError, AtaCommand, AtaPacket, IdentifyInfo, ATA_HEADER_LEN, SECTOR_SIZE,
};

/// SMART feature register values.
const SMART_RETURN_STATUS: u8 = 0xDA;
/// LBA mid/high of a SMART RETURN STATUS reply meaning "no threshold exceeded".
const SMART_HEALTHY: (u8, u8) = (0x4F, 0xC2);
/// CHECK POWER MODE: active or idle.
const POWER_ACTIVE: u8 = 0xFF;

impl Device {
    pub(super) fn handle_ata(&mut self, ctx: &Ctx, buf: &mut [u8]) -> Outcome {
        let ata_offset = ctx.header.arg_offset();
        let Ok(ata) = AtaPacket::new_checked(&buf[ata_offset..ctx.len]) else {
            self.counters.proto_errors += 1;
            return aoe_error(ctx, buf, AoeError::BadArgument);
        };
        let command = ata.command();
        let (lba48, lba, count, feature) = (
            ata.is_lba48(),
            ata.lba(),
            ata.sector_count(),
            ata.err_feature(),
        );
        let payload_len = ata.payload().len();
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
            AtaCommand::Smart if feature == SMART_RETURN_STATUS => {
                self.counters.other_cmds += 1;
                let mut ata = AtaPacket::new_unchecked(&mut buf[ata_offset..]);
                let (mid, high) = SMART_HEALTHY;
                let lba = (ata.lba() & !0x00FF_FF00) | u64::from(mid) << 8 | u64::from(high) << 16;
                ata.set_lba(lba);
                ata_reply(ctx, buf, ata_status::DRDY, 0, 0)
            }
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
        let data_offset = ctx.header.arg_offset() + ATA_HEADER_LEN;
        let Some(block) = buf
            .get_mut(data_offset..data_offset + SECTOR_SIZE)
            .and_then(|b| <&mut [u8; SECTOR_SIZE]>::try_from(b).ok())
        else {
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

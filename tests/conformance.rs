//! AoE r11 / ATA conformance of the target, written down as a table.
//!
//! Every row of [`STEPS`] is one frame an initiator sends (built with the initiator encoders in
//! `aoe_xdp::initiator::frames`), the exact reply it must get, and what must happen to the
//! backing files and the persistent AoE state. The rows run in order against one world of
//! four devices on real, sparse files under /var/tmp, through `LocalTarget` with the real
//! io_uring engine, then again with the synchronous engine; both must give byte-identical
//! replies and files. After every row the files are read back with `std::fs` and compared
//! with a model (see `conformance/harness.rs`), so rows that must not write prove it.
//!
//! Reading a row: `row(name, initiator MAC, port, AoE address, request, expected reply,
//! effect)`. ATA replies are `(status, error)` bytes: 0x40 = DRDY, 0x41 = DRDY|ERR with error
//! 0x04 = ABRT or 0x10 = IDNF.

#[path = "conformance/harness.rs"]
mod harness;

use aoe_xdp::storage::export::Durability;
use aoe_xdp::wire::{
    AoeError, AtaCommand, ConfigCommand as Cc, DirectiveCommand as Dc, MacAddr,
    MacMaskCommand as Mc, MacMaskError, ReserveCommand as Rc,
};
use harness::*;

// ---------------------------------------------------------------------------------------------
// The world.

/// Initiators.
const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0A]);
const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0B]);
const C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0C]);

const P1500: Port = Port::Mtu1500;
const P9000: Port = Port::Mtu9000;

/// Devices (shelf.slot) and AoE broadcast addresses.
const E1_0: Addr = Addr(1, 0);
const E1_1: Addr = Addr(1, 1);
const E1_2: Addr = Addr(1, 2);
const E2_0: Addr = Addr(2, 0);
const ALL: Addr = Addr(0xFFFF, 0xFF);
const SHELF_1: Addr = Addr(1, 0xFF);
const SLOT_0: Addr = Addr(0xFFFF, 0);
const NOBODY: Addr = Addr(9, 9);

/// e1.0: a 4096-sector file, O_DIRECT, writeback.
const MAIN_SECTORS: u64 = 4096;
/// e1.1: a sparse file past the LBA28 limit (128 GiB + 2 MiB), writes with RWF_DSYNC.
const BIG_SECTORS: u64 = (1 << 28) + 4096;
const LBA28_LAST: u64 = 0x0FFF_FFFF;
const LBA48_MAX: u64 = (1 << 48) - 1;
/// e2.0: sectors 100..300 of a 1024-sector file (vblade -o 100 -l 200).
const WINDOW_OFFSET: u64 = 100;
const WINDOW_SECTORS: u64 = 200;

#[rustfmt::skip]
const FILES: [FileSpec; 4] = [
    FileSpec { sectors: MAIN_SECTORS, tracked: &[(0, MAIN_SECTORS)] },
    FileSpec {
        sectors: BIG_SECTORS,
        tracked: &[(0, 64), ((1 << 28) - 32, 64), (BIG_SECTORS - 64, 64)],
    },
    FileSpec { sectors: 64, tracked: &[(0, 64)] },
    FileSpec { sectors: 1024, tracked: &[(0, 1024)] },
];

/// A 40-character model fills words 27-46 exactly.
const MODEL_40: &str = "aoe-xdp conformance disk 0123456789ABCDE";

#[rustfmt::skip]
static DEVICES: [DeviceSpec; 4] = [
    DeviceSpec {
        addr: E1_0, file: 0, offset: 0, length: None, read_only: false,
        durability: Durability::Writeback, direct_io: true, queue_length: 64,
        model: MODEL_40, serial: "SN-E1.0-20CHARACTERS",
    },
    DeviceSpec {
        addr: E1_1, file: 1, offset: 0, length: None, read_only: false,
        durability: Durability::Sync, direct_io: false, queue_length: 16,
        model: "big", serial: "SN-E1.1",
    },
    DeviceSpec {
        addr: E1_2, file: 2, offset: 0, length: None, read_only: true,
        durability: Durability::Writeback, direct_io: false, queue_length: 8,
        model: "read-only", serial: "SN-E1.2",
    },
    DeviceSpec {
        addr: E2_0, file: 3, offset: WINDOW_OFFSET, length: Some(WINDOW_SECTORS), read_only: false,
        durability: Durability::Writeback, direct_io: false, queue_length: 32,
        model: "window", serial: "SN-E2.0",
    },
];

// ---------------------------------------------------------------------------------------------
// Expected replies and effects, spelled as the spec does.

/// ATA success, header-only reply (writes, FLUSH).
const DRDY: Expect = ata_reply(0x40, 0x00, AtaReply::Header);
/// ATA success with the sectors' data.
const DATA: Expect = ata_reply(0x40, 0x00, AtaReply::Data);
/// ATA ERR + ABRT: bad sector count, short payload, read-only, unknown command.
const ABRT: Expect = ata_reply(0x41, 0x04, AtaReply::Header);
/// ATA ERR + IDNF: sectors outside the device.
const IDNF: Expect = ata_reply(0x41, 0x10, AtaReply::Header);
/// CHECK POWER MODE: sector count 0xFF = active or idle.
const POWER_ACTIVE: Expect = ata_reply(0x40, 0x00, AtaReply::Count(0xFF));
/// Every SMART reply carries one sector (aoeping reads nothing shorter): zeros unless the
/// sub-command returns data. LBA mid/high 0x4F/0xC2 is the key the request carried, echoed;
/// for RETURN STATUS it means no threshold exceeded.
const SMART_OK: Expect = smart_reply(0x40, 0x00, &ZERO_SECTOR);
/// SMART READ DATA / READ THRESHOLDS of a drive with nothing to report.
const SMART_DATA: Expect = smart_reply(0x40, 0x00, &SMART_EMPTY);
const SMART_ABRT: Expect = smart_reply(0x41, 0x04, &ZERO_SECTOR);
/// ABRT for a SMART command without the key: its LBA mid/high (zero) echoed.
const SMART_ABRT_NO_KEY: Expect = ata_reply(
    0x41,
    0x04,
    AtaReply::Sector {
        mid: 0,
        high: 0,
        data: &ZERO_SECTOR,
    },
);
const ZERO_SECTOR: [u8; 512] = [0; 512];
/// Revision 0x0010, 30 unused table entries, the rest zero, checksum 0xF0 (the 512 bytes sum
/// to 0 mod 256).
const SMART_EMPTY: [u8; 512] = smart_structure(0x0010);
const fn smart_structure(revision: u16) -> [u8; 512] {
    let mut sector = [0u8; 512];
    let revision = revision.to_le_bytes();
    sector[0] = revision[0];
    sector[1] = revision[1];
    let mut sum = 0u8;
    let mut i = 0;
    while i < 511 {
        sum = sum.wrapping_add(sector[i]);
        i += 1;
    }
    sector[511] = sum.wrapping_neg();
    sector
}
const fn smart_reply(status: u8, error: u8, data: &'static [u8; 512]) -> Expect {
    ata_reply(
        status,
        error,
        AtaReply::Sector {
            mid: 0x4F,
            high: 0xC2,
            data,
        },
    )
}
const fn identify(lba28: u32, lba48: u64) -> Expect {
    ata_reply(0x40, 0x00, AtaReply::Identify { lba28, lba48 })
}
const SILENCE: Expect = Expect::Silence;
const ERR_UNRECOGNIZED: Expect = aoe(AoeError::UnrecognizedCommand); // 1
const ERR_BAD_ARG: Expect = aoe(AoeError::BadArgument); // 2
const ERR_CONFIG_PRESENT: Expect = aoe(AoeError::ConfigStringPresent); // 4
const ERR_RESERVED: Expect = aoe(AoeError::TargetReserved); // 6

const UNCHANGED: Effect = Effect::Unchanged;
const READ: Effect = Effect::Read;
const WRITTEN: Effect = Effect::Written;
const FLUSHED: Effect = Effect::Flushed;
const SAVED: Effect = Effect::Saved;

const IDENTIFY: Req = ata(AtaCommand::IdentifyDevice, 1, 0);
const FLUSH: Req = ata(AtaCommand::FlushCache, 0, 0);
const FLUSH_EXT: Req = ata(AtaCommand::FlushCacheExt, 0, 0);
const CHECK_POWER: Req = ata(AtaCommand::CheckPowerMode, 0, 0);
const QC_READ: Req = cfg(Cc::Read, b"");
/// A SMART command as aoeping sends it: the sub-command in the feature register, the key
/// 0xC24F in LBA mid/high.
const fn smart(feature: u8, count: u8) -> Req {
    Req::Ata(Ata {
        cmd: AtaCommand::Smart,
        lba48: false,
        lba: 0xC2_4F00,
        count,
        feature,
        payload_sectors: 0,
        seed: 0,
    })
}
const X1024: &[u8] = &[b'x'; 1024];
const X1025: &[u8] = &[b'x'; 1025];

// ---------------------------------------------------------------------------------------------
// The table.

#[rustfmt::skip]
static STEPS: &[Step] = &[
    // ATA READ/WRITE SECTORS (LBA28, the encoder sets 0xE0 in LBA byte 3 as Linux does) and
    // READ/WRITE EXT (LBA48) at the first, a middle and the last sector.
    row("IDENTIFY: strings, capacity, LBA48/FLUSH/FLUSH EXT bits",   A, P1500, E1_0, IDENTIFY,              identify(4096, 4096), UNCHANGED),
    row("IDENTIFY > 2^28 sectors: words 60-61 capped",               A, P1500, E1_1, IDENTIFY,              identify(0x0FFF_FFFF, BIG_SECTORS), UNCHANGED),
    row("READ SECTORS first sector (seed data)",                     A, P1500, E1_0, read28(0, 2),          DATA,  READ),
    row("WRITE SECTORS first sector",                                A, P1500, E1_0, write28(0, 2, 1),      DRDY,  WRITTEN),
    row("READ SECTORS first sector returns the write",               A, P1500, E1_0, read28(0, 2),          DATA,  READ),
    row("WRITE SECTORS middle",                                      A, P1500, E1_0, write28(2048, 1, 2),   DRDY,  WRITTEN),
    row("READ SECTORS middle",                                       A, P1500, E1_0, read28(2047, 2),       DATA,  READ),
    row("WRITE SECTORS last sector",                                 A, P1500, E1_0, write28(4095, 1, 3),   DRDY,  WRITTEN),
    row("READ SECTORS last two sectors",                             A, P1500, E1_0, read28(4094, 2),       DATA,  READ),
    row("WRITE EXT first sector",                                    A, P1500, E1_0, write48(0, 2, 4),      DRDY,  WRITTEN),
    row("READ EXT first sector",                                     A, P1500, E1_0, read48(0, 2),          DATA,  READ),
    row("WRITE EXT middle",                                          A, P1500, E1_0, write48(2049, 2, 5),   DRDY,  WRITTEN),
    row("READ EXT middle",                                           A, P1500, E1_0, read48(2049, 2),       DATA,  READ),
    row("WRITE EXT last sector",                                     A, P1500, E1_0, write48(4095, 1, 6),   DRDY,  WRITTEN),
    row("READ EXT last sector",                                      A, P1500, E1_0, read48(4095, 1),       DATA,  READ),
    row("READ 17 sectors on MTU 9000",                               A, P9000, E1_0, read48(100, 17),       DATA,  READ),
    row("WRITE 17 sectors on MTU 9000",                              A, P9000, E1_0, write48(100, 17, 7),   DRDY,  WRITTEN),
    row("READ the 17 sectors back",                                  A, P9000, E1_0, read48(100, 17),       DATA,  READ),
    // Range and count errors.
    row("READ SECTORS last+1 -> IDNF",                               A, P1500, E1_0, read28(4096, 1),       IDNF,  UNCHANGED),
    row("READ EXT last+1 -> IDNF",                                   A, P1500, E1_0, read48(4096, 1),       IDNF,  UNCHANGED),
    row("READ EXT straddling the end -> IDNF",                       A, P1500, E1_0, read48(4095, 2),       IDNF,  UNCHANGED),
    row("WRITE EXT straddling the end -> IDNF, file unchanged",      A, P1500, E1_0, write48(4095, 2, 8),   IDNF,  UNCHANGED),
    row("READ EXT at 2^48-1 -> IDNF",                                A, P1500, E1_0, read48(LBA48_MAX, 1),  IDNF,  UNCHANGED),
    row("WRITE EXT at 2^48-1 -> IDNF",                               A, P1500, E1_0, write48(LBA48_MAX, 1, 8), IDNF, UNCHANGED),
    row("READ 0 sectors -> ABRT",                                    A, P1500, E1_0, read28(0, 0),          ABRT,  UNCHANGED),
    row("WRITE EXT 0 sectors -> ABRT",                               A, P1500, E1_0, write48(0, 0, 8),      ABRT,  UNCHANGED),
    row("READ 3 sectors on MTU 1500 ((1500-36)/512 = 2) -> ABRT",    A, P1500, E1_0, read28(0, 3),          ABRT,  UNCHANGED),
    row("WRITE 3 sectors on MTU 1500 -> ABRT, file unchanged",       A, P1500, E1_0, write28(0, 3, 8),      ABRT,  UNCHANGED),
    row("READ 18 sectors on MTU 9000 ((9000-36)/512 = 17) -> ABRT",  A, P9000, E1_0, read48(0, 18),         ABRT,  UNCHANGED),
    row("short WRITE payload (2 announced, 1 sent) -> ABRT",         A, P1500, E1_0, write28_ata(10, 2, 8).short(1), ABRT, UNCHANGED),
    row("WRITE without payload -> ABRT",                             A, P1500, E1_0, write28_ata(10, 1, 8).short(0), ABRT, UNCHANGED),
    // Other ATA commands.
    row("FLUSH CACHE -> DRDY after fdatasync",                       A, P1500, E1_0, FLUSH,                 DRDY,  FLUSHED),
    row("FLUSH CACHE EXT -> DRDY after fdatasync",                   A, P1500, E1_0, FLUSH_EXT,             DRDY,  FLUSHED),
    row("CHECK POWER MODE -> count 0xFF",                            A, P1500, E1_0, CHECK_POWER,           POWER_ACTIVE, UNCHANGED),
    row("SMART RETURN STATUS (0xDA) -> 0x4F/0xC2, zero sector",      A, P1500, E1_0, smart(0xDA, 0),        SMART_OK, UNCHANGED),
    row("SMART READ DATA (0xD0) -> empty structure, checksum",       A, P1500, E1_0, smart(0xD0, 1),        SMART_DATA, UNCHANGED),
    row("SMART READ THRESHOLDS (0xD1) -> empty structure",           A, P9000, E1_0, smart(0xD1, 1),        SMART_DATA, UNCHANGED),
    row("SMART ENABLE OPERATIONS (0xD8) -> DRDY",                    A, P1500, E1_0, smart(0xD8, 0),        SMART_OK, UNCHANGED),
    row("SMART DISABLE OPERATIONS (0xD9) -> DRDY",                   A, P1500, E1_0, smart(0xD9, 0),        SMART_OK, UNCHANGED),
    row("SMART OFF-LINE IMMEDIATE (0xD4) -> ABRT (not capable)",     A, P1500, E1_0, smart(0xD4, 0),        SMART_ABRT, UNCHANGED),
    row("SMART READ LOG (0xD5) -> ABRT (no SMART logs)",             A, P1500, E1_0, smart(0xD5, 1),        SMART_ABRT, UNCHANGED),
    row("SMART RETURN STATUS without the 0xC24F key -> ABRT",        A, P1500, E1_0, ata(AtaCommand::Smart, 0, 0xDA), SMART_ABRT_NO_KEY, UNCHANGED),
    row("NOP (0x00) -> ABRT",                                        A, P1500, E1_0, ata(AtaCommand::Unknown(0x00), 0, 0), ABRT, UNCHANGED),
    row("READ DMA (0xC8) -> ABRT",                                   A, P1500, E1_0, ata(AtaCommand::Unknown(0xC8), 1, 0), ABRT, UNCHANGED),
    row("WRITE DMA (0xCA) -> ABRT",                                  A, P1500, E1_0, ata(AtaCommand::Unknown(0xCA), 1, 0), ABRT, UNCHANGED),
    row("SET FEATURES (0xEF) -> ABRT",                               A, P1500, E1_0, ata(AtaCommand::Unknown(0xEF), 0, 0x02), ABRT, UNCHANGED),
    row("IDENTIFY PACKET DEVICE (0xA1) -> ABRT",                     A, P1500, E1_0, ata(AtaCommand::Unknown(0xA1), 1, 0), ABRT, UNCHANGED),
    // A device past the LBA28 limit, with durability Sync.
    row("LBA28 last addressable sector (0x0FFFFFFF)",                A, P1500, E1_1, write28(LBA28_LAST, 1, 9), DRDY, WRITTEN),
    row("LBA28 ignores junk in LBA bytes 3-5",                       A, P1500, E1_1, read28(LBA28_LAST, 1), DATA,  READ).with(Tweak::LbaJunk(0xFFFF_F000_0000)),
    row("WRITE EXT first sector past 2^28 (Sync durability)",        A, P1500, E1_1, write48(1 << 28, 2, 10), DRDY, WRITTEN),
    row("READ EXT across the 2^28 boundary",                         A, P1500, E1_1, read48(LBA28_LAST, 2), DATA,  READ),
    row("WRITE EXT last sector of the big device",                   A, P9000, E1_1, write48(BIG_SECTORS - 1, 1, 11), DRDY, WRITTEN),
    row("READ EXT last sectors of the big device",                   A, P9000, E1_1, read48(BIG_SECTORS - 17, 17), DATA, READ),
    row("READ EXT big device last+1 -> IDNF",                        A, P1500, E1_1, read48(BIG_SECTORS, 1), IDNF, UNCHANGED),
    row("FLUSH CACHE on the Sync device -> DRDY",                    A, P1500, E1_1, FLUSH,                 DRDY,  FLUSHED),
    // Read-only device.
    row("read-only: READ works",                                     A, P1500, E1_2, read28(0, 2),          DATA,  READ),
    row("read-only: WRITE -> ABRT, file unchanged",                  A, P1500, E1_2, write28(0, 1, 12),     ABRT,  UNCHANGED),
    row("read-only: WRITE EXT -> ABRT, file unchanged",              A, P1500, E1_2, write48(63, 1, 12),    ABRT,  UNCHANGED),
    // Windowed export: window sector 0 is file sector 100; nothing outside 100..300 changes.
    row("window: READ sector 0 = file sector 100",                   A, P1500, E2_0, read28(0, 2),          DATA,  READ),
    row("window: WRITE first window sectors",                        A, P1500, E2_0, write28(0, 2, 13),     DRDY,  WRITTEN),
    row("window: WRITE last window sector",                          A, P1500, E2_0, write48(WINDOW_SECTORS - 1, 1, 14), DRDY, WRITTEN),
    row("window: READ last window sectors",                          A, P1500, E2_0, read48(WINDOW_SECTORS - 2, 2), DATA, READ),
    row("window: READ past the window -> IDNF",                      A, P1500, E2_0, read28(WINDOW_SECTORS, 1), IDNF, UNCHANGED),
    row("window: WRITE straddling the window end -> IDNF",           A, P1500, E2_0, write48(WINDOW_SECTORS - 1, 2, 15), IDNF, UNCHANGED),
    // Retransmission: the initiator resends with a new tag; same result.
    row("retransmit: WRITE",                                         A, P1500, E1_0, write28(300, 2, 16),   DRDY,  WRITTEN),
    row("retransmit: the same WRITE again (new tag)",                A, P1500, E1_0, write28(300, 2, 16),   DRDY,  WRITTEN),
    row("retransmit: READ back",                                     A, P1500, E1_0, read28(300, 2),        DATA,  READ),

    // Query Config.
    row("QC read: empty string, 2 sectors at MTU 1500",              A, P1500, E1_0, QC_READ,               config(2, b""), UNCHANGED),
    row("QC read at MTU 9000: 17 sectors",                           A, P9000, E1_0, QC_READ,               config(17, b""), UNCHANGED),
    row("QC test \"\" matches the empty string",                     A, P1500, E1_0, cfg(Cc::Test, b""),    config(2, b""), UNCHANGED),
    row("QC test mismatch -> silence",                               A, P1500, E1_0, cfg(Cc::Test, b"x"),   SILENCE, UNCHANGED),
    row("QC set if empty",                                           A, P1500, E1_0, cfg(Cc::Set, b"cluster-a"), config(2, b"cluster-a"), SAVED),
    row("QC set the same string -> OK",                              A, P1500, E1_0, cfg(Cc::Set, b"cluster-a"), config(2, b"cluster-a"), UNCHANGED),
    row("QC set a different string -> AoE error 4",                  A, P1500, E1_0, cfg(Cc::Set, b"cluster-b"), ERR_CONFIG_PRESENT, UNCHANGED),
    row("QC set from another host -> AoE error 4",                   B, P1500, E1_0, cfg(Cc::Set, b"mine"), ERR_CONFIG_PRESENT, UNCHANGED),
    row("QC test exact match",                                       A, P1500, E1_0, cfg(Cc::Test, b"cluster-a"), config(2, b"cluster-a"), UNCHANGED),
    row("QC test with only a prefix -> silence",                     A, P1500, E1_0, cfg(Cc::Test, b"cluster"), SILENCE, UNCHANGED),
    row("QC test prefix",                                            A, P1500, E1_0, cfg(Cc::TestPrefix, b"clus"), config(2, b"cluster-a"), UNCHANGED),
    row("QC test prefix \"\" matches",                               A, P1500, E1_0, cfg(Cc::TestPrefix, b""), config(2, b"cluster-a"), UNCHANGED),
    row("QC test prefix mismatch -> silence",                        A, P1500, E1_0, cfg(Cc::TestPrefix, b"other"), SILENCE, UNCHANGED),
    row("QC test prefix longer than the string -> silence",          A, P1500, E1_0, cfg(Cc::TestPrefix, b"cluster-a-and-more"), SILENCE, UNCHANGED),
    row("QC force set",                                              A, P1500, E1_0, cfg(Cc::ForceSet, b"cluster-b"), config(2, b"cluster-b"), SAVED),
    row("QC 1025-byte string -> AoE error 2",                        A, P1500, E1_0, cfg(Cc::ForceSet, X1025), ERR_BAD_ARG, UNCHANGED),
    row("QC 1024-byte string is accepted",                           A, P1500, E1_0, cfg(Cc::ForceSet, X1024), config(2, X1024), SAVED),
    row("QC force set back",                                         A, P1500, E1_0, cfg(Cc::ForceSet, b"cluster-b"), config(2, b"cluster-b"), SAVED),
    row("QC unknown CCmd 5 -> AoE error 2",                          A, P1500, E1_0, cfg(Cc::Unknown(5), b""), ERR_BAD_ARG, UNCHANGED),
    row("QC unknown CCmd 15 -> AoE error 2",                         A, P1500, E1_0, cfg(Cc::Unknown(15), b"x"), ERR_BAD_ARG, UNCHANGED),

    // Mac Mask List.
    row("MASK read: empty",                                          A, P1500, E1_0, mask(Mc::Read, &[]),   mask_list(&[]), UNCHANGED),
    row("MASK add A, add B",                                         A, P1500, E1_0, mask(Mc::Edit, &[(Dc::Add, A), (Dc::Add, B)]), mask_list(&[A, B]), SAVED),
    row("MASK delete B",                                             A, P1500, E1_0, mask(Mc::Edit, &[(Dc::Delete, B)]), mask_list(&[A]), SAVED),
    row("MASK directive none changes nothing",                       A, P1500, E1_0, mask(Mc::Edit, &[(Dc::None, C)]), mask_list(&[A]), UNCHANGED),
    row("MASK bad DCmd at index 1 -> MError 2, Dir Count 1",         A, P1500, E1_0, mask(Mc::Edit, &[(Dc::Add, C), (Dc::Unknown(7), B), (Dc::Add, B)]), mask_error(MacMaskError::BadDirective, 1), SAVED),
    row("MASK read: directives before the bad one took effect",      A, P1500, E1_0, mask(Mc::Read, &[]),   mask_list(&[A, C]), UNCHANGED),
    row("masked: ATA from B -> silence",                             B, P1500, E1_0, read28(0, 1),          SILENCE, UNCHANGED),
    row("masked: WRITE from B -> silence, file unchanged",           B, P1500, E1_0, write28(0, 1, 17),     SILENCE, UNCHANGED),
    row("masked: QC from B -> silence",                              B, P1500, E1_0, QC_READ,               SILENCE, UNCHANGED),
    row("masked: discovery from B -> the others answer",             B, P1500, ALL,  QC_READ,               discovery(2, &[(E1_1, b""), (E1_2, b""), (E2_0, b"")]), UNCHANGED),
    row("masked: MASK read from B -> silence",                       B, P1500, E1_0, mask(Mc::Read, &[]),   SILENCE, UNCHANGED),
    row("masked: MASK edit from B -> silence",                       B, P1500, E1_0, mask(Mc::Edit, &[(Dc::Add, B)]), SILENCE, UNCHANGED),
    row("masked: RESERVE from B -> silence",                         B, P1500, E1_0, rsv(Rc::Set, &[B]),    SILENCE, UNCHANGED),
    row("masked: unknown AoE command from B -> silence",             B, P1500, E1_0, QC_READ,               SILENCE, UNCHANGED).with(Tweak::Command(0x04)),
    row("masked: C is on the list and served",                       C, P1500, E1_0, read28(0, 1),          DATA,  READ),
    row("MASK unknown MCmd 2 -> AoE error 2",                        A, P1500, E1_0, mask(Mc::Unknown(2), &[]), ERR_BAD_ARG, UNCHANGED),
    row("MASK delete A and C",                                       A, P1500, E1_0, mask(Mc::Edit, &[(Dc::Delete, A), (Dc::Delete, C)]), mask_list(&[]), SAVED),
    row("unmasked: B is served again",                               B, P1500, E1_0, read28(0, 1),          DATA,  READ),
    row("MASK add 255 entries (A + 254) on MTU 9000",                A, P9000, E1_0, Req::MaskFill(Dc::Add), mask_count(255), SAVED),
    row("MASK full: add C -> MError 3, Dir Count 0",                 A, P9000, E1_0, mask(Mc::Edit, &[(Dc::Add, C)]), mask_error(MacMaskError::ListFull, 0), UNCHANGED),
    row("MASK full: adding a listed MAC is no error",                A, P9000, E1_0, mask(Mc::Edit, &[(Dc::Add, A)]), mask_count(255), UNCHANGED),
    row("MASK full list at MTU 1500: truncated to (1500-10-4)/8",  A, P1500, E1_0, mask(Mc::Read, &[]),   mask_count(185), UNCHANGED),
    row("MASK delete all 255",                                       A, P9000, E1_0, Req::MaskFill(Dc::Delete), mask_list(&[]), SAVED),

    // Reserve/Release.
    row("RESERVE read: empty",                                       A, P1500, E1_0, rsv(Rc::Read, &[]),    reserve(&[]), UNCHANGED),
    row("RESERVE set by A",                                          A, P1500, E1_0, rsv(Rc::Set, &[A]),    reserve(&[A]), SAVED),
    row("reserved: READ from B -> AoE error 6",                      B, P1500, E1_0, read28(0, 1),          ERR_RESERVED, UNCHANGED),
    row("reserved: WRITE from B -> AoE error 6, file unchanged",     B, P1500, E1_0, write28(0, 1, 18),     ERR_RESERVED, UNCHANGED),
    row("reserved: WRITE EXT from B -> AoE error 6",                 B, P1500, E1_0, write48(1, 1, 18),     ERR_RESERVED, UNCHANGED),
    row("reserved: SMART from B -> AoE error 6",                     B, P1500, E1_0, smart(0xDA, 0),        ERR_RESERVED, UNCHANGED),
    row("reserved: IDENTIFY from B is answered (as vblade)",         B, P1500, E1_0, IDENTIFY,              identify(4096, 4096), UNCHANGED),
    row("reserved: QC from B is answered",                           B, P1500, E1_0, QC_READ,               config(2, b"cluster-b"), UNCHANGED),
    row("reserved: READ from the holder",                            A, P1500, E1_0, read28(0, 1),          DATA,  READ),
    row("RESERVE set by B while A holds -> AoE error 6",             B, P1500, E1_0, rsv(Rc::Set, &[B]),    ERR_RESERVED, UNCHANGED),
    row("RESERVE release by B while A holds -> AoE error 6",         B, P1500, E1_0, rsv(Rc::Set, &[]),     ERR_RESERVED, UNCHANGED),
    row("RESERVE read by B shows A",                                 B, P1500, E1_0, rsv(Rc::Read, &[]),    reserve(&[A]), UNCHANGED),
    row("RESERVE holder A adds B",                                   A, P1500, E1_0, rsv(Rc::Set, &[A, B]), reserve(&[A, B]), SAVED),
    row("reserved for A and B: WRITE from B",                        B, P1500, E1_0, write28(5, 1, 19),     DRDY,  WRITTEN),
    row("RESERVE force set by C",                                    C, P1500, E1_0, rsv(Rc::ForceSet, &[C]), reserve(&[C]), SAVED),
    row("reserved for C: READ from A -> AoE error 6",                A, P1500, E1_0, read48(0, 1),          ERR_RESERVED, UNCHANGED),
    row("RESERVE unknown RCmd 3 -> AoE error 2",                     A, P1500, E1_0, rsv(Rc::Unknown(3), &[]), ERR_BAD_ARG, UNCHANGED),
    row("RESERVE set with 0 MACs by C releases",                     C, P1500, E1_0, rsv(Rc::Set, &[]),     reserve(&[]), SAVED),
    row("released: WRITE from A",                                    A, P1500, E1_0, write28(5, 1, 20),     DRDY,  WRITTEN),

    // Discovery and AoE header handling.
    row("discovery: ffff.ff answered by every device",               A, P1500, ALL,  QC_READ,               discovery(2, &[(E1_0, b"cluster-b"), (E1_1, b""), (E1_2, b""), (E2_0, b"")]), UNCHANGED),
    row("discovery on MTU 9000: 17 sectors each",                    A, P9000, ALL,  QC_READ,               discovery(17, &[(E1_0, b"cluster-b"), (E1_1, b""), (E1_2, b""), (E2_0, b"")]), UNCHANGED),
    row("discovery: shelf broadcast 1.ff",                           A, P1500, SHELF_1, QC_READ,            discovery(2, &[(E1_0, b"cluster-b"), (E1_1, b""), (E1_2, b"")]), UNCHANGED),
    row("discovery: slot broadcast ffff.0",                          A, P1500, SLOT_0, QC_READ,             discovery(2, &[(E1_0, b"cluster-b"), (E2_0, b"")]), UNCHANGED),
    row("discovery: broadcast test answered where it matches",       A, P1500, ALL,  cfg(Cc::Test, b"cluster-b"), discovery(2, &[(E1_0, b"cluster-b")]), UNCHANGED),
    row("ATA READ to ffff.ff -> silence",                            A, P1500, ALL,  read28(0, 1),          SILENCE, UNCHANGED),
    row("ATA WRITE to 1.ff -> silence, files unchanged",             A, P1500, SHELF_1, write28(0, 1, 21),  SILENCE, UNCHANGED),
    row("ATA IDENTIFY to ffff.0 -> silence",                         A, P1500, SLOT_0, IDENTIFY,            SILENCE, UNCHANGED),
    row("MASK edit to ffff.ff -> silence, nothing changes",          A, P1500, ALL,  mask(Mc::Edit, &[(Dc::Add, C)]), SILENCE, UNCHANGED),
    row("RESERVE set to 1.ff -> silence, nothing changes",           A, P1500, SHELF_1, rsv(Rc::Set, &[A]), SILENCE, UNCHANGED),
    row("unknown address 9.9 -> silence",                            A, P1500, NOBODY, QC_READ,             SILENCE, UNCHANGED),
    row("response frame (R flag) -> silence",                        A, P1500, E1_0, QC_READ,               SILENCE, UNCHANGED).with(Tweak::Response),
    row("response WRITE frame -> silence, file unchanged",           A, P1500, E1_0, write28(0, 1, 22),     SILENCE, UNCHANGED).with(Tweak::Response),
    row("AoE version 2 -> silence",                                  A, P1500, E1_0, QC_READ,               SILENCE, UNCHANGED).with(Tweak::Version(2)),
    row("AoE version 0 WRITE -> silence, file unchanged",            A, P1500, E1_0, write28(0, 1, 22),     SILENCE, UNCHANGED).with(Tweak::Version(0)),
    row("other ethertype -> silence",                                A, P1500, E1_0, QC_READ,               SILENCE, UNCHANGED).with(Tweak::Ethertype(0x0800)),
    row("unknown AoE command 4 -> AoE error 1",                      A, P1500, E1_0, QC_READ,               ERR_UNRECOGNIZED, UNCHANGED).with(Tweak::Command(0x04)),
    row("vendor AoE command 0xF0 -> AoE error 1",                    A, P1500, E1_0, QC_READ,               ERR_UNRECOGNIZED, UNCHANGED).with(Tweak::Command(0xF0)),
    row("advertisement: unsolicited QC response, tag 0",             A, P1500, E1_0, Req::Advertise,        advertisement(2, b"cluster-b"), UNCHANGED),
    row("advertisement on MTU 9000",                                 A, P9000, E2_0, Req::Advertise,        advertisement(17, b""), UNCHANGED),

    // Persistence across a restart (state directory).
    row("persist: QC set on e1.1",                                   A, P1500, E1_1, cfg(Cc::Set, b"persist-me"), config(2, b"persist-me"), SAVED),
    row("persist: MASK add A on e1.1",                               A, P1500, E1_1, mask(Mc::Edit, &[(Dc::Add, A)]), mask_list(&[A]), SAVED),
    row("persist: RESERVE set A on e1.1",                            A, P1500, E1_1, rsv(Rc::Set, &[A]),    reserve(&[A]), SAVED),
    row("RESTART: drop the target, reopen, load the state dir",      A, P1500, E1_1, Req::Restart,          SILENCE, UNCHANGED),
    row("after restart: config string is back",                      A, P1500, E1_1, QC_READ,               config(2, b"persist-me"), UNCHANGED),
    row("after restart: mask is back",                               A, P1500, E1_1, mask(Mc::Read, &[]),   mask_list(&[A]), UNCHANGED),
    row("after restart: B is masked",                                B, P1500, E1_1, QC_READ,               SILENCE, UNCHANGED),
    row("after restart: reservation is back",                        A, P1500, E1_1, rsv(Rc::Read, &[]),    reserve(&[A]), UNCHANGED),
    row("after restart: e1.0 keeps its config string",               A, P1500, E1_0, QC_READ,               config(2, b"cluster-b"), UNCHANGED),
    row("after restart: data written before is there",               A, P1500, E1_1, read48(1 << 28, 2),    DATA,  READ),
    row("after restart: writeback device data is there",             A, P1500, E1_0, read28(0, 2),          DATA,  READ),
];

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn conformance_table_on_io_uring() {
    run_table(EngineKind::Uring, &FILES, &DEVICES, STEPS);
}

#[test]
fn sync_engine_agrees_with_io_uring_on_the_table() {
    assert_agrees_with_sync(EngineKind::Uring, "io_uring");
}

#[test]
fn resident_exports_agree_with_the_sync_engine_on_the_table() {
    assert_agrees_with_sync(EngineKind::UringResident, "resident");
}

#[test]
fn mapped_exports_agree_with_the_sync_engine_on_the_table() {
    assert_agrees_with_sync(EngineKind::UringMapped, "mapped");
}

/// Runs the table on `kind` and on the synchronous engine, and checks that every reply and
/// the final files are the same.
fn assert_agrees_with_sync(kind: EngineKind, what: &str) {
    let subject = run_table(kind, &FILES, &DEVICES, STEPS);
    let sync = run_table(EngineKind::Sync, &FILES, &DEVICES, STEPS);
    for ((name, a), (_, s)) in subject.replies.iter().zip(&sync.replies) {
        assert_eq!(
            a, s,
            "[{name}] {what} and sync engines disagree on the replies"
        );
    }
    assert!(
        subject.files == sync.files,
        "{what} and sync engines disagree on the files"
    );
}

/// Index of each AtaCommand variant; exhaustive so a new variant fails to compile here.
fn ata_index(command: AtaCommand) -> usize {
    match command {
        AtaCommand::ReadSectors => 0,
        AtaCommand::ReadSectorsExt => 1,
        AtaCommand::WriteSectors => 2,
        AtaCommand::WriteSectorsExt => 3,
        AtaCommand::Smart => 4,
        AtaCommand::CheckPowerMode => 5,
        AtaCommand::FlushCache => 6,
        AtaCommand::FlushCacheExt => 7,
        AtaCommand::IdentifyDevice => 8,
        AtaCommand::Unknown(_) => 9,
    }
}

fn config_index(command: Cc) -> usize {
    match command {
        Cc::Read => 0,
        Cc::Test => 1,
        Cc::TestPrefix => 2,
        Cc::Set => 3,
        Cc::ForceSet => 4,
        Cc::Unknown(_) => 5,
    }
}

fn mask_index(command: Mc) -> usize {
    match command {
        Mc::Read => 0,
        Mc::Edit => 1,
        Mc::Unknown(_) => 2,
    }
}

fn directive_index(command: Dc) -> usize {
    match command {
        Dc::None => 0,
        Dc::Add => 1,
        Dc::Delete => 2,
        Dc::Unknown(_) => 3,
    }
}

fn reserve_index(command: Rc) -> usize {
    match command {
        Rc::Read => 0,
        Rc::Set => 1,
        Rc::ForceSet => 2,
        Rc::Unknown(_) => 3,
    }
}

#[test]
fn table_covers_every_command_variant_and_error_code() {
    let mut ata = [false; 10];
    let mut config = [false; 6];
    let mut mask = [false; 3];
    let mut directive = [false; 4];
    let mut reserve = [false; 4];
    let mut aoe_errors = Vec::new();
    let mut ata_errors = Vec::new();
    let mut mask_errors = Vec::new();
    for step in STEPS {
        match step.req {
            Req::Ata(a) => ata[ata_index(a.cmd)] = true,
            Req::Config(c, _) => config[config_index(c)] = true,
            Req::Mask(m, directives) => {
                mask[mask_index(m)] = true;
                for (d, _) in directives {
                    directive[directive_index(*d)] = true;
                }
            }
            Req::MaskFill(d) => {
                mask[mask_index(Mc::Edit)] = true;
                directive[directive_index(d)] = true;
            }
            Req::Reserve(r, _) => reserve[reserve_index(r)] = true,
            Req::Advertise | Req::Restart => {}
        }
        match step.expect {
            Expect::AoeError(e) => aoe_errors.push(u8::from(e)),
            Expect::Ata { error, .. } if error != 0 => ata_errors.push(error),
            Expect::Mask(MaskReply::Error(e, _)) => mask_errors.push(u8::from(e)),
            _ => {}
        }
    }
    assert!(ata.iter().all(|&c| c), "ATA commands covered: {ata:?}");
    assert!(config.iter().all(|&c| c), "CCmds covered: {config:?}");
    assert!(mask.iter().all(|&c| c), "MCmds covered: {mask:?}");
    assert!(directive.iter().all(|&c| c), "DCmds covered: {directive:?}");
    assert!(reserve.iter().all(|&c| c), "RCmds covered: {reserve:?}");
    // The AoE errors the target emits: unrecognized command, bad argument, config string
    // present, target reserved.
    for code in [1, 2, 4, 6] {
        assert!(aoe_errors.contains(&code), "AoE error {code} not covered");
    }
    for code in [0x04, 0x10] {
        assert!(
            ata_errors.contains(&code),
            "ATA error {code:#x} not covered"
        );
    }
    for code in [2, 3] {
        assert!(mask_errors.contains(&code), "MError {code} not covered");
    }
    // Every effect and every device appears.
    for effect in [UNCHANGED, READ, WRITTEN, FLUSHED, SAVED] {
        assert!(
            STEPS.iter().any(|s| s.effect == effect),
            "{effect:?} unused"
        );
    }
    for device in &DEVICES {
        assert!(
            STEPS.iter().any(|s| s.to == device.addr),
            "{:?} unused",
            device.addr
        );
    }
}

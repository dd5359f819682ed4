//! Sans-IO tests of the target: frames built with the initiator encoders go through `handle`,
//! replies are decoded and checked. Storage is simulated by the test (the real engines are
//! exercised by `tests/conformance.rs`).

use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::initiator::frames::{self, AtaCmd, Reply, Route};
use crate::wire::ata::{error as ata_error, status as ata_status};
use crate::wire::{
    AtaCommand, ConfigCommand, DirectiveCommand, DirectiveRepr, MacMaskCommand, MacMaskError,
    ReserveCommand,
};

const TARGET_MAC: MacAddr = MacAddr([0x02, 0xAA, 0, 0, 0, 1]);
const HOST_A: MacAddr = MacAddr([0x02, 0xBB, 0, 0, 0, 1]);
const HOST_B: MacAddr = MacAddr([0x02, 0xBB, 0, 0, 0, 2]);
const SECTORS: u64 = 1000;
const PORT: PortInfo = PortInfo {
    index: 0,
    mac: TARGET_MAC,
    mtu: 1500,
};

fn params(shelf: u16, slot: u8) -> DeviceParams {
    DeviceParams {
        buffer_count: 64,
        model: "aoe-xdp test".into(),
        serial: "serial-1".into(),
        ..DeviceParams::new(shelf, slot, SECTORS, 0)
    }
}

fn target_with(devices: Vec<DeviceParams>) -> Target {
    Target::new(
        devices
            .into_iter()
            .map(|p| (Arc::new(p), Arc::new(SharedState::default()))),
    )
}

fn route(src: MacAddr, shelf: u16, slot: u8) -> Route {
    Route {
        dst: TARGET_MAC,
        src,
        vlan_tci: None,
        shelf,
        slot,
    }
}

struct Exchange {
    buf: Vec<u8>,
    outcome: Outcome,
}

/// The classification of `frame`, which must be an AoE request.
fn request(frame: &[u8]) -> Request {
    Request::parse(frame).expect("an AoE request")
}

/// Sends `frame` to device 0 of `target` (which must be addressed).
fn send(target: &mut Target, frame: &[u8]) -> Exchange {
    let request = request(frame);
    let mut addressed = target.addressed(&request, &PORT);
    let device = target
        .next_addressed(&mut addressed)
        .expect("frame is addressed");
    let mut buf = vec![0u8; 4096];
    buf[..frame.len()].copy_from_slice(frame);
    let outcome = target.handle(device, &request, &mut buf, &PORT);
    Exchange { buf, outcome }
}

fn encode(f: impl FnOnce(&mut [u8]) -> usize) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let len = f(&mut buf);
    buf.truncate(len);
    buf
}

fn reply(exchange: &Exchange) -> Reply<'_> {
    let Outcome::Reply { len, .. } = exchange.outcome else {
        panic!("expected a reply, got {:?}", exchange.outcome)
    };
    Reply::parse(&exchange.buf[..len]).expect("a parsable AoE reply")
}

fn ata_status_of(exchange: &Exchange) -> (u8, u8) {
    let (ata, _) = reply(exchange).ata().expect("ATA reply");
    (ata.cmd_status, ata.err_feature)
}

fn ata_frame(src: MacAddr, cmd: AtaCmd, data: &[u8]) -> Vec<u8> {
    encode(|b| frames::ata(b, &route(src, 1, 0), 0x1234_5678, &cmd, data))
}

#[test]
fn addressing_unicast_broadcast_and_ignored_frames() {
    let target = target_with(vec![params(1, 0), params(1, 1), params(2, 0)]);
    let count = |frame: &[u8]| {
        let Some(request) = Request::parse(frame) else {
            return 0;
        };
        let mut a = target.addressed(&request, &PORT);
        std::iter::from_fn(|| target.next_addressed(&mut a)).count()
    };
    let qc = |shelf, slot| {
        encode(|b| {
            frames::query_config(b, &route(HOST_A, shelf, slot), 1, ConfigCommand::Read, b"")
        })
    };
    assert_eq!(count(&qc(1, 0)), 1);
    assert_eq!(count(&qc(1, 0xFF)), 2);
    assert_eq!(count(&qc(0xFFFF, 0xFF)), 3);
    assert_eq!(count(&qc(0xFFFF, 0)), 2);
    assert_eq!(count(&qc(3, 0)), 0);
    // ATA is never fanned out to several devices.
    let broadcast_read = encode(|b| {
        frames::ata(
            b,
            &route(HOST_A, 0xFFFF, 0xFF),
            1,
            &AtaCmd::read(0, 1, true),
            &[],
        )
    });
    assert_eq!(count(&broadcast_read), 0);
    // Responses and other versions are ignored.
    let mut response = qc(1, 0);
    response[14] |= 0x08;
    assert_eq!(count(&response), 0);
    let mut version2 = qc(1, 0);
    version2[14] = 0x20;
    assert_eq!(count(&version2), 0);
    // Not AoE at all.
    let mut other = qc(1, 0);
    other[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    assert_eq!(count(&other), 0);
    assert_eq!(count(&other[..20]), 0);
}

#[test]
fn broadcast_replies_carry_each_device_address() {
    // Linux's aoecmd_cfg_rsp ignores config responses from shelf 0xFFFF or slot 0xFF.
    let mut target = target_with(vec![params(1, 0), params(1, 1), params(2, 0)]);
    let frame = encode(|b| {
        frames::query_config(b, &route(HOST_A, 0xFFFF, 0xFF), 1, ConfigCommand::Read, b"")
    });
    let request = request(&frame);
    let mut addressed = target.addressed(&request, &PORT);
    let mut answered = Vec::new();
    while let Some(device) = target.next_addressed(&mut addressed) {
        let mut buf = vec![0u8; 4096];
        buf[..frame.len()].copy_from_slice(&frame);
        let Outcome::Reply { len, .. } = target.handle(device, &request, &mut buf, &PORT) else {
            panic!("discovery is answered")
        };
        let reply = Reply::parse(&buf[..len]).unwrap();
        answered.push((reply.aoe.major, reply.aoe.minor));
    }
    assert_eq!(answered, [(1, 0), (1, 1), (2, 0)]);
}

#[test]
fn port_mask_limits_where_a_device_answers() {
    let mut only_port_1 = params(1, 0);
    only_port_1.port_mask = 0b10;
    let target = target_with(vec![only_port_1]);
    let frame =
        encode(|b| frames::query_config(b, &route(HOST_A, 1, 0), 1, ConfigCommand::Read, b""));
    let mut on_port_0 = target.addressed(&request(&frame), &PORT);
    assert_eq!(target.next_addressed(&mut on_port_0), None);
    let port1 = PortInfo { index: 1, ..PORT };
    let mut on_port_1 = target.addressed(&request(&frame), &port1);
    assert_eq!(target.next_addressed(&mut on_port_1), Some(0));
}

#[test]
fn read_plans_io_into_the_reply_frame() {
    let mut target = target_with(vec![params(1, 0)]);
    let mut ex = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::read(SECTORS - 2, 2, true), &[]),
    );
    let Outcome::Io(plan) = ex.outcome else {
        panic!("{:?}", ex.outcome)
    };
    assert_eq!(
        (plan.kind, plan.sector, plan.count, plan.data_offset),
        (IoKind::Read, SECTORS - 2, 2, 36)
    );
    ex.buf[36..36 + 1024].fill(0xAB);
    let len = target.complete(&mut ex.buf, &plan, Ok(()));
    assert_eq!(len, 36 + 1024);
    let r = Reply::parse(&ex.buf[..len]).unwrap();
    assert_eq!((r.src, r.dst, r.aoe.tag), (TARGET_MAC, HOST_A, 0x1234_5678));
    let (ata, data) = r.ata().unwrap();
    assert_eq!((ata.cmd_status, ata.err_feature), (ata_status::DRDY, 0));
    assert!(data.iter().all(|&b| b == 0xAB));
    assert_eq!(target.counters(0).read_bytes, 1024);
}

#[test]
fn lba28_ignores_the_top_bits_linux_sets() {
    let mut target = target_with(vec![params(1, 0)]);
    // The encoder ORs 0xE0 into LBA byte 3, as Linux does.
    let ex = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::read(7, 1, false), &[]),
    );
    assert!(matches!(
        ex.outcome,
        Outcome::Io(IoPlan {
            sector: 7,
            count: 1,
            ..
        })
    ));
}

#[test]
fn range_and_count_errors() {
    let mut target = target_with(vec![params(1, 0)]);
    let idnf = (ata_status::DRDY | ata_status::ERR, ata_error::IDNF);
    let abrt = (ata_status::DRDY | ata_status::ERR, ata_error::ABRT);
    let last = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::read(SECTORS - 1, 1, true), &[]),
    );
    assert!(matches!(last.outcome, Outcome::Io(_)));
    let past = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::read(SECTORS - 1, 2, true), &[]),
    );
    assert_eq!(ata_status_of(&past), idnf);
    let huge = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::read((1 << 48) - 1, 2, true), &[]),
    );
    assert_eq!(ata_status_of(&huge), idnf);
    let zero = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::read(0, 0, true), &[]),
    );
    assert_eq!(ata_status_of(&zero), abrt);
    // MTU 1500 carries 2 sectors.
    let three = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::read(0, 3, true), &[]),
    );
    assert_eq!(ata_status_of(&three), abrt);
    assert_eq!(target.counters(0).ata_errors, 4);
}

#[test]
fn write_checks_payload_and_read_only() {
    let mut target = target_with(vec![params(1, 0)]);
    let ok = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::write(5, 2, true), &[7; 1024]),
    );
    assert!(matches!(
        ok.outcome,
        Outcome::Io(IoPlan {
            kind: IoKind::Write,
            sector: 5,
            ..
        })
    ));
    let short = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::write(5, 2, true), &[7; 1000]),
    );
    assert_eq!(ata_status_of(&short).1, ata_error::ABRT);
    let mut ro = params(1, 0);
    ro.read_only = true;
    let mut target = target_with(vec![ro]);
    let refused = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::write(5, 1, true), &[7; 512]),
    );
    assert_eq!(ata_status_of(&refused).1, ata_error::ABRT);
    let read = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::read(5, 1, true), &[]),
    );
    assert!(matches!(read.outcome, Outcome::Io(_)));
}

#[test]
fn write_ack_is_header_only_and_io_failures_map_to_ata_errors() {
    let mut target = target_with(vec![params(1, 0)]);
    let mut ex = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::write(1, 1, true), &[1; 512]),
    );
    let Outcome::Io(plan) = ex.outcome else {
        panic!()
    };
    assert_eq!(
        target.complete(&mut ex.buf, &plan, Ok(())),
        60,
        "36 bytes padded to 60"
    );
    for (failure, bit) in [
        (IoFailure::Media, ata_error::UNC),
        (IoFailure::Aborted, ata_error::ABRT),
    ] {
        let mut ex = send(
            &mut target,
            &ata_frame(HOST_A, AtaCmd::read(1, 1, true), &[]),
        );
        let Outcome::Io(plan) = ex.outcome else {
            panic!()
        };
        let len = target.complete(&mut ex.buf, &plan, Err(failure));
        let (ata, data) = Reply::parse(&ex.buf[..len]).unwrap().ata().unwrap();
        assert_eq!(
            (ata.cmd_status, ata.err_feature),
            (ata_status::DRDY | ata_status::ERR, bit)
        );
        assert!(data.iter().all(|&b| b == 0), "no data after a failed read");
    }
}

#[test]
fn identify_power_flush_and_unknown() {
    let mut target = target_with(vec![params(1, 0)]);
    let id = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::other(AtaCommand::IdentifyDevice, 1, 0), &[]),
    );
    let (ata, data) = reply(&id).ata().unwrap();
    assert_eq!(ata.cmd_status, ata_status::DRDY);
    assert_eq!(data.len(), 512);
    let word = |i: usize| u16::from_le_bytes([data[2 * i], data[2 * i + 1]]);
    let lba48 = u64::from(word(100)) | u64::from(word(101)) << 16 | u64::from(word(102)) << 32;
    assert_eq!(lba48, SECTORS);
    assert_ne!(word(83) & (1 << 10), 0, "LBA48 advertised");
    assert_ne!(word(86) & (1 << 13), 0, "FLUSH CACHE EXT enabled");

    let power = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::other(AtaCommand::CheckPowerMode, 0, 0), &[]),
    );
    let (ata, _) = reply(&power).ata().unwrap();
    assert_eq!((ata.cmd_status, ata.sector_count), (ata_status::DRDY, 0xFF));

    for command in [AtaCommand::FlushCache, AtaCommand::FlushCacheExt] {
        let flush = send(
            &mut target,
            &ata_frame(HOST_A, AtaCmd::other(command, 0, 0), &[]),
        );
        assert!(matches!(
            flush.outcome,
            Outcome::Io(IoPlan {
                kind: IoKind::Flush,
                ..
            })
        ));
    }
    let unknown = send(
        &mut target,
        &ata_frame(HOST_A, AtaCmd::other(AtaCommand::Unknown(0xA1), 1, 0), &[]),
    );
    assert_eq!(ata_status_of(&unknown).1, ata_error::ABRT);
}

/// LBA bits 8..24 every SMART command carries (LBA mid 0x4F, high 0xC2).
const SMART_KEY: u64 = 0xC2_4F00;

/// A SMART command: the sub-command in the feature register, the key (or not) in `lba`.
fn smart_cmd(feature: u8, count: u8, lba: u64) -> AtaCmd {
    AtaCmd {
        command: AtaCommand::Smart,
        lba48: false,
        lba,
        count,
        feature,
    }
}

/// Sends a SMART command on `port`; returns (status, error, LBA, reply data after the header).
fn smart_on(port: &PortInfo, feature: u8, count: u8, lba: u64) -> (u8, u8, u64, Vec<u8>) {
    let mut target = target_with(vec![params(1, 0)]);
    let frame = ata_frame(HOST_A, smart_cmd(feature, count, lba), &[]);
    let mut buf = vec![0u8; 4096];
    buf[..frame.len()].copy_from_slice(&frame);
    let outcome = target.handle(0, &request(&frame), &mut buf, port);
    let ex = Exchange { buf, outcome };
    let (ata, data) = reply(&ex).ata().expect("ATA reply");
    let counters = target.counters(0);
    if ata.cmd_status & ata_status::ERR == 0 {
        assert_eq!((counters.other_cmds, counters.ata_errors), (1, 0));
    } else {
        assert_eq!((counters.other_cmds, counters.ata_errors), (0, 1));
    }
    (ata.cmd_status, ata.err_feature, ata.lba, data.to_vec())
}

fn smart(feature: u8, count: u8, lba: u64) -> (u8, u8, u64, Vec<u8>) {
    smart_on(&PORT, feature, count, lba)
}

const SMART_ABRT: (u8, u8) = (ata_status::DRDY | ata_status::ERR, ata_error::ABRT);

#[test]
fn smart_return_status_says_no_threshold_exceeded() {
    let (status, error, lba, data) = smart(0xDA, 0, SMART_KEY);
    assert_eq!((status, error), (ata_status::DRDY, 0));
    assert_eq!(
        (lba >> 8) & 0xFFFF,
        0xC24F,
        "healthy: LBA mid 0x4F, high 0xC2 (0xF4/0x2C would be a threshold exceeded)"
    );
    // No data in ATA terms, but a zero sector so that aoeping reads the reply.
    assert_eq!(data, [0u8; 512]);
}

#[test]
fn smart_enable_and_disable_operations_succeed() {
    for feature in [0xD8, 0xD9, 0xD8] {
        let (status, error, _, data) = smart(feature, 0, SMART_KEY);
        assert_eq!((status, error), (ata_status::DRDY, 0), "{feature:#x}");
        assert_eq!(data, [0u8; 512], "{feature:#x}");
    }
}

#[test]
fn smart_read_data_and_thresholds_are_checksummed_empty_structures() {
    // The sector count is not part of these commands: one sector moves whatever it says.
    for (feature, count) in [(0xD0, 1), (0xD0, 0), (0xD1, 1), (0xD1, 2)] {
        let (status, error, _, data) = smart(feature, count, SMART_KEY);
        assert_eq!((status, error), (ata_status::DRDY, 0), "{feature:#x}");
        assert_eq!(data.len(), 512, "{feature:#x}: exactly one sector");
        let sum = data.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
        assert_eq!(sum, 0, "{feature:#x}: the 512 bytes sum to 0 mod 256");
        assert_eq!(
            u16::from_le_bytes([data[0], data[1]]),
            0x0010,
            "{feature:#x}: revision"
        );
        assert!(
            data[2..362].iter().all(|&b| b == 0),
            "{feature:#x}: every table entry unused (ID 0)"
        );
        // Data structure: off-line collection never started, no self-test run, no off-line,
        // self-test, autosave or error-logging capability, no polling times.
        assert!(data[362..511].iter().all(|&b| b == 0), "{feature:#x}");
        assert_eq!(data[511], 0xF0, "{feature:#x}: checksum of revision 0x10");
    }
}

#[test]
fn smart_without_the_key_is_abrt() {
    for feature in [0xD0, 0xD1, 0xD8, 0xD9, 0xDA] {
        for lba in [0, 0x4F00, 0xC2_0000, 0x4F_C200, 0xC2_4E00, 0xC3_4F00] {
            let (status, error, _, data) = smart(feature, 1, lba);
            assert_eq!((status, error), SMART_ABRT, "{feature:#x} lba {lba:#x}");
            assert_eq!(data, [0u8; 512], "{feature:#x} lba {lba:#x}: a zero sector");
        }
    }
    // LBA low, the device byte and LBA48 bytes are not part of the key.
    let (status, _, _, _) = smart(0xDA, 0, 0xFFFF_00C2_4FFF);
    assert_eq!(status, ata_status::DRDY);
}

#[test]
fn smart_sub_commands_a_drive_without_logs_or_self_tests_lacks_are_abrt() {
    // 0xD2 attribute autosave, 0xD3 save attributes, 0xD4 off-line immediate (the READ DATA
    // capability byte says none), 0xD5/0xD6 read/write log (IDENTIFY word 84 says no logs),
    // 0xDB enable/disable auto off-line, and values no ATA standard defines.
    for feature in [0x00, 0xCF, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xDB, 0xFF] {
        let (status, error, _, data) = smart(feature, 1, SMART_KEY | 1);
        assert_eq!((status, error), SMART_ABRT, "{feature:#x}");
        assert_eq!(data, [0u8; 512], "{feature:#x}");
    }
}

#[test]
fn smart_on_a_port_that_cannot_carry_a_sector_sends_no_data() {
    // (547 - 36) / 512 = 0 sectors.
    let small = PortInfo { mtu: 547, ..PORT };
    assert_eq!(small.max_sectors(), 0);
    let (status, error, lba, data) = smart_on(&small, 0xDA, 0, SMART_KEY);
    assert_eq!((status, error), (ata_status::DRDY, 0));
    assert_eq!((lba >> 8) & 0xFFFF, 0xC24F);
    assert_eq!(data.len(), 24, "header-only, padded to 60 bytes");
    let (status, error, _, data) = smart_on(&small, 0xD0, 1, SMART_KEY);
    assert_eq!(
        (status, error),
        SMART_ABRT,
        "a structure that cannot be sent"
    );
    assert_eq!(data.len(), 24);
    let (status, error, _, data) = smart_on(&small, 0xD4, 0, SMART_KEY);
    assert_eq!((status, error), SMART_ABRT);
    assert_eq!(data.len(), 24);
}

#[test]
fn identify_on_a_port_that_cannot_carry_a_sector_is_abrt() {
    let mut target = target_with(vec![params(1, 0)]);
    let small = PortInfo { mtu: 547, ..PORT };
    let frame = ata_frame(HOST_A, AtaCmd::other(AtaCommand::IdentifyDevice, 1, 0), &[]);
    let mut buf = vec![0u8; 4096];
    buf[..frame.len()].copy_from_slice(&frame);
    let outcome = target.handle(0, &request(&frame), &mut buf, &small);
    assert_eq!(ata_status_of(&Exchange { buf, outcome }), SMART_ABRT);
}

#[test]
fn unknown_aoe_command_is_error_1_and_truncated_ata_is_error_2() {
    let mut target = target_with(vec![params(1, 0)]);
    let mut frame = ata_frame(HOST_A, AtaCmd::read(0, 1, true), &[]);
    frame[19] = 0xF3;
    let ex = send(&mut target, &frame);
    assert_eq!(reply(&ex).error(), Some(AoeError::UnrecognizedCommand));
    let frame = ata_frame(HOST_A, AtaCmd::read(0, 1, true), &[]);
    let ex = send(&mut target, &frame[..30]);
    assert_eq!(reply(&ex).error(), Some(AoeError::BadArgument));
}

fn qc(target: &mut Target, src: MacAddr, command: ConfigCommand, s: &[u8]) -> Exchange {
    send(
        target,
        &encode(|b| frames::query_config(b, &route(src, 1, 0), 9, command, s)),
    )
}

#[test]
fn query_config_subcommands() {
    let mut target = target_with(vec![params(1, 0)]);
    let read = qc(&mut target, HOST_A, ConfigCommand::Read, b"");
    let cfg = reply(&read).query_config().unwrap();
    assert_eq!(
        (cfg.buffer_count, cfg.sector_count, cfg.aoe_version),
        (64, 2, 1)
    );
    assert_eq!(cfg.config_string, b"");
    // Test and prefix test against an empty string.
    assert_eq!(
        qc(&mut target, HOST_A, ConfigCommand::Test, b"x").outcome,
        Outcome::Drop
    );
    assert!(matches!(
        qc(&mut target, HOST_A, ConfigCommand::TestPrefix, b"").outcome,
        Outcome::Reply { .. }
    ));
    // Set if empty.
    let set = qc(&mut target, HOST_A, ConfigCommand::Set, b"hello world");
    assert!(matches!(set.outcome, Outcome::Reply { persist: true, .. }));
    assert_eq!(
        reply(&set).query_config().unwrap().config_string,
        b"hello world"
    );
    let same = qc(&mut target, HOST_A, ConfigCommand::Set, b"hello world");
    assert!(matches!(
        same.outcome,
        Outcome::Reply { persist: false, .. }
    ));
    let conflict = qc(&mut target, HOST_A, ConfigCommand::Set, b"other");
    assert_eq!(
        reply(&conflict).error(),
        Some(AoeError::ConfigStringPresent)
    );
    assert_eq!(
        qc(&mut target, HOST_A, ConfigCommand::Test, b"hello").outcome,
        Outcome::Drop
    );
    assert!(matches!(
        qc(&mut target, HOST_A, ConfigCommand::Test, b"hello world").outcome,
        Outcome::Reply { .. }
    ));
    assert!(matches!(
        qc(&mut target, HOST_A, ConfigCommand::TestPrefix, b"hello").outcome,
        Outcome::Reply { .. }
    ));
    assert_eq!(
        qc(&mut target, HOST_A, ConfigCommand::TestPrefix, b"world").outcome,
        Outcome::Drop
    );
    let force = qc(&mut target, HOST_A, ConfigCommand::ForceSet, b"forced");
    assert_eq!(
        reply(&force).query_config().unwrap().config_string,
        b"forced"
    );
    let long = qc(&mut target, HOST_A, ConfigCommand::ForceSet, &[b'x'; 1025]);
    assert_eq!(reply(&long).error(), Some(AoeError::BadArgument));
    let unknown = qc(&mut target, HOST_A, ConfigCommand::Unknown(9), b"");
    assert_eq!(reply(&unknown).error(), Some(AoeError::BadArgument));
    let max = qc(&mut target, HOST_A, ConfigCommand::ForceSet, &[b'y'; 1024]);
    assert_eq!(
        reply(&max).query_config().unwrap().config_string.len(),
        1024
    );
}

fn mask(
    target: &mut Target,
    src: MacAddr,
    command: MacMaskCommand,
    dirs: &[DirectiveRepr],
) -> Exchange {
    send(
        target,
        &encode(|b| frames::mac_mask(b, &route(src, 1, 0), 3, command, dirs)),
    )
}

fn dir(command: DirectiveCommand, mac: MacAddr) -> DirectiveRepr {
    DirectiveRepr { command, mac }
}

#[test]
fn mac_mask_list_edit_errors_and_enforcement() {
    let mut target = target_with(vec![params(1, 0)]);
    let add = mask(
        &mut target,
        HOST_A,
        MacMaskCommand::Edit,
        &[
            dir(DirectiveCommand::Add, HOST_A),
            dir(DirectiveCommand::Add, HOST_A),
        ],
    );
    assert!(matches!(add.outcome, Outcome::Reply { persist: true, .. }));
    let (repr, packet) = reply(&add).mac_mask().unwrap();
    assert_eq!((repr.error, repr.dir_count), (None, 1));
    assert_eq!(packet.directive(0), dir(DirectiveCommand::None, HOST_A));
    // Host B is now masked out: silence, for every command.
    assert_eq!(
        qc(&mut target, HOST_B, ConfigCommand::Read, b"").outcome,
        Outcome::Drop
    );
    assert_eq!(
        send(
            &mut target,
            &ata_frame(HOST_B, AtaCmd::read(0, 1, true), &[])
        )
        .outcome,
        Outcome::Drop
    );
    assert_eq!(target.counters(0).dropped, 2);
    // A bad directive stops the edit at its index; earlier directives took effect.
    let bad = mask(
        &mut target,
        HOST_A,
        MacMaskCommand::Edit,
        &[
            dir(DirectiveCommand::Add, HOST_B),
            dir(DirectiveCommand::Unknown(7), HOST_B),
        ],
    );
    let (repr, _) = reply(&bad).mac_mask().unwrap();
    assert_eq!(
        (repr.error, repr.dir_count),
        (Some(MacMaskError::BadDirective), 1)
    );
    assert!(matches!(
        qc(&mut target, HOST_B, ConfigCommand::Read, b"").outcome,
        Outcome::Reply { .. }
    ));
    let del = mask(
        &mut target,
        HOST_A,
        MacMaskCommand::Edit,
        &[dir(DirectiveCommand::Delete, HOST_B)],
    );
    assert_eq!(reply(&del).mac_mask().unwrap().0.dir_count, 1);
    let unknown = mask(&mut target, HOST_A, MacMaskCommand::Unknown(5), &[]);
    assert_eq!(reply(&unknown).error(), Some(AoeError::BadArgument));
}

#[test]
fn mac_mask_list_full_at_255() {
    let mut target = target_with(vec![params(1, 0)]);
    let mut dirs: Vec<DirectiveRepr> = (0..=255u16)
        .map(|i| {
            dir(DirectiveCommand::Add, {
                let [hi, lo] = i.to_be_bytes();
                MacAddr([2, 0, 0, 0, hi, lo])
            })
        })
        .collect();
    dirs[0].mac = HOST_A; // keep ourselves on the list
    let first = mask(&mut target, HOST_A, MacMaskCommand::Edit, &dirs[..255]);
    let (repr, _) = reply(&first).mac_mask().unwrap();
    assert_eq!(repr.error, None);
    // The reply lists what fits in a 1500-byte MTU: (1500 - 10 - 4) / 8 = 185 entries.
    assert_eq!(repr.dir_count, 185);
    let full = mask(&mut target, HOST_A, MacMaskCommand::Edit, &dirs[255..]);
    let (repr, _) = reply(&full).mac_mask().unwrap();
    assert_eq!(
        (repr.error, repr.dir_count),
        (Some(MacMaskError::ListFull), 0)
    );
}

fn rsv(target: &mut Target, src: MacAddr, command: ReserveCommand, macs: &[MacAddr]) -> Exchange {
    send(
        target,
        &encode(|b| frames::reserve(b, &route(src, 1, 0), 4, command, macs)),
    )
}

#[test]
fn reserve_release_semantics() {
    let mut target = target_with(vec![params(1, 0)]);
    let set = rsv(&mut target, HOST_A, ReserveCommand::Set, &[HOST_A]);
    assert!(matches!(set.outcome, Outcome::Reply { persist: true, .. }));
    assert_eq!(reply(&set).reserve().unwrap().1.mac(0), HOST_A);
    // B may not read or write, may IDENTIFY, may read the reservation, may not set it.
    let read = send(
        &mut target,
        &ata_frame(HOST_B, AtaCmd::read(0, 1, true), &[]),
    );
    assert_eq!(reply(&read).error(), Some(AoeError::TargetReserved));
    let id = send(
        &mut target,
        &ata_frame(HOST_B, AtaCmd::other(AtaCommand::IdentifyDevice, 1, 0), &[]),
    );
    assert_eq!(reply(&id).error(), None);
    assert_eq!(
        reply(&rsv(&mut target, HOST_B, ReserveCommand::Read, &[]))
            .reserve()
            .unwrap()
            .0
            .nmacs,
        1
    );
    let steal = rsv(&mut target, HOST_B, ReserveCommand::Set, &[HOST_B]);
    assert_eq!(reply(&steal).error(), Some(AoeError::TargetReserved));
    // The holder may read; force set takes it over; set with no MACs releases.
    assert!(matches!(
        send(
            &mut target,
            &ata_frame(HOST_A, AtaCmd::read(0, 1, true), &[])
        )
        .outcome,
        Outcome::Io(_)
    ));
    let force = rsv(&mut target, HOST_B, ReserveCommand::ForceSet, &[HOST_B]);
    assert_eq!(reply(&force).reserve().unwrap().1.mac(0), HOST_B);
    let release = rsv(&mut target, HOST_B, ReserveCommand::Set, &[]);
    assert_eq!(reply(&release).reserve().unwrap().0.nmacs, 0);
    assert!(matches!(
        send(
            &mut target,
            &ata_frame(HOST_A, AtaCmd::read(0, 1, true), &[])
        )
        .outcome,
        Outcome::Io(_)
    ));
    let unknown = rsv(&mut target, HOST_A, ReserveCommand::Unknown(3), &[]);
    assert_eq!(reply(&unknown).error(), Some(AoeError::BadArgument));
}

#[test]
fn static_acls_drop_silently() {
    let mut p = params(1, 0);
    p.accept = vec![HOST_A];
    p.deny = vec![HOST_A];
    let mut target = target_with(vec![p]);
    assert_eq!(
        qc(&mut target, HOST_A, ConfigCommand::Read, b"").outcome,
        Outcome::Drop
    );
    let mut p = params(1, 0);
    p.accept = vec![HOST_A];
    let mut target = target_with(vec![p]);
    assert!(matches!(
        qc(&mut target, HOST_A, ConfigCommand::Read, b"").outcome,
        Outcome::Reply { .. }
    ));
    assert_eq!(
        qc(&mut target, HOST_B, ConfigCommand::Read, b"").outcome,
        Outcome::Drop
    );
}

#[test]
fn workers_see_each_others_state_changes() {
    let params = Arc::new(params(1, 0));
    let shared = Arc::new(SharedState::default());
    let mut worker_a = Target::new([(params.clone(), shared.clone())]);
    let mut worker_b = Target::new([(params, shared)]);
    rsv(&mut worker_a, HOST_A, ReserveCommand::Set, &[HOST_A]);
    let read = send(
        &mut worker_b,
        &ata_frame(HOST_B, AtaCmd::read(0, 1, true), &[]),
    );
    assert_eq!(reply(&read).error(), Some(AoeError::TargetReserved));
}

#[test]
fn advertisement_is_an_unsolicited_config_reply() {
    let mut target = target_with(vec![params(7, 3)]);
    let mut buf = vec![0u8; 4096];
    let len = target.advertisement(0, &PORT, MacAddr::BROADCAST, &mut buf);
    let r = Reply::parse(&buf[..len]).unwrap();
    assert_eq!(
        (r.dst, r.src, r.aoe.major, r.aoe.minor, r.aoe.tag),
        (MacAddr::BROADCAST, TARGET_MAC, 7, 3, 0)
    );
    assert_eq!(r.query_config().unwrap().buffer_count, 64);
    assert_eq!(len, 60);
}

#[test]
fn vlan_tagged_requests_are_answered_with_the_tag() {
    let mut target = target_with(vec![params(1, 0)]);
    let tagged = Route {
        vlan_tci: Some(42),
        ..route(HOST_A, 1, 0)
    };
    let frame = encode(|b| frames::ata(b, &tagged, 1, &AtaCmd::read(0, 1, true), &[]));
    let ex = send(&mut target, &frame);
    let Outcome::Io(plan) = ex.outcome else {
        panic!()
    };
    assert_eq!(plan.data_offset, 40);
    let eth = crate::wire::EthernetFrame::new_checked(&ex.buf[..40]).unwrap();
    assert_eq!(eth.vlan_tci(), Some(42));
}

proptest! {
    /// Any SMART command: success exactly for the five answered sub-commands with the key,
    /// ABRT otherwise, and always one sector after the header.
    #[test]
    fn smart_answers_follow_feature_and_key(
        feature in prop_oneof![Just(0xD0u8), Just(0xD1), Just(0xD8), Just(0xD9), Just(0xDA),
                               any::<u8>()],
        key in prop_oneof![Just(0xC24Fu16), any::<u16>()],
        count in any::<u8>(), low in any::<u8>(), high in 0u64..(1 << 24)) {
        let lba = high << 24 | u64::from(key) << 8 | u64::from(low);
        let (status, error, _, data) = smart(feature, count, lba);
        let answered = matches!(feature, 0xD0 | 0xD1 | 0xD8 | 0xD9 | 0xDA) && key == 0xC24F;
        if answered {
            prop_assert_eq!((status, error), (ata_status::DRDY, 0));
        } else {
            prop_assert_eq!((status, error), SMART_ABRT);
        }
        prop_assert_eq!(data.len(), 512);
        let structure = answered && matches!(feature, 0xD0 | 0xD1);
        prop_assert_eq!(data.iter().any(|&b| b != 0), structure);
    }

    /// Arbitrary bytes never panic the target, and every plan stays inside the device.
    #[test]
    fn arbitrary_frames_are_safe(mut frame in proptest::collection::vec(any::<u8>(), 0..1600),
                                 command in 0u8..5, patch_header in any::<bool>()) {
        let mut target = target_with(vec![params(1, 0)]);
        if patch_header && frame.len() >= 24 {
            frame[12..14].copy_from_slice(&crate::wire::ETHERTYPE_AOE.to_be_bytes());
            frame[14] = 0x10;
            frame[16..18].copy_from_slice(&1u16.to_be_bytes());
            frame[18] = 0;
            frame[19] = command;
        }
        let Some(request) = Request::parse(&frame) else {
            return Ok(());
        };
        let mut addressed = target.addressed(&request, &PORT);
        while let Some(device) = target.next_addressed(&mut addressed) {
            let mut buf = vec![0u8; 4096];
            buf[..frame.len()].copy_from_slice(&frame);
            match target.handle(device, &request, &mut buf, &PORT) {
                Outcome::Io(plan) => {
                    prop_assert!(plan.sector + u64::from(plan.count) <= SECTORS);
                    prop_assert!(plan.data_offset + plan.byte_len() <= buf.len());
                    let len = target.complete(&mut buf, &plan, Ok(()));
                    prop_assert!(len <= buf.len());
                }
                Outcome::Reply { len, .. } => prop_assert!((60..=buf.len()).contains(&len)),
                Outcome::Drop => {}
            }
        }
    }
}

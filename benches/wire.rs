//! Parse and emit cost of the hot-path frames: an ATA READ EXT request (RX) and its reply
//! header (TX), as the dataplane handles them per frame.

use std::hint::black_box;

use aoe_xdp::wire::ata::{status, AFLAG_LBA48};
use aoe_xdp::wire::{
    AoeCommand, AoePacket, AoeRepr, AtaCommand, AtaPacket, AtaRepr, EthernetFrame, EthernetRepr,
    MacAddr, AOE_HEADER_LEN, AOE_VERSION, ATA_HEADER_LEN, ETHERTYPE_AOE,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

const INITIATOR: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const TARGET: MacAddr = MacAddr([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
const HEADERS_LEN: usize = 14 + AOE_HEADER_LEN + ATA_HEADER_LEN;
const DATA_LEN: usize = 1024;

fn request_reprs() -> (EthernetRepr, AoeRepr, AtaRepr) {
    let eth = EthernetRepr {
        dst_addr: TARGET,
        src_addr: INITIATOR,
        vlan_tci: None,
        ethertype: ETHERTYPE_AOE,
    };
    let aoe = AoeRepr {
        version: AOE_VERSION,
        response: false,
        error: None,
        major: 1,
        minor: 2,
        command: AoeCommand::Ata,
        tag: 0x8001_abcd,
    };
    let ata = AtaRepr {
        aflags: AFLAG_LBA48,
        err_feature: 0,
        sector_count: 2,
        cmd_status: AtaCommand::ReadSectorsExt.into(),
        lba: 0x01_0203_0405,
    };
    (eth, aoe, ata)
}

/// Writes the three headers; returns the total header length.
fn emit(buf: &mut [u8], eth: &EthernetRepr, aoe: &AoeRepr, ata: &AtaRepr) -> usize {
    let mut frame = EthernetFrame::new_unchecked(&mut *buf);
    eth.emit(&mut frame);
    let mut packet = AoePacket::new_unchecked(frame.payload_mut());
    aoe.emit(&mut packet);
    ata.emit(&mut AtaPacket::new_unchecked(packet.payload_mut()));
    eth.buffer_len() + aoe.buffer_len() + ata.buffer_len()
}

/// The receive path: every layer through `new_checked`, then the reprs.
fn parse(bytes: &[u8]) -> Option<(EthernetRepr, AoeRepr, AtaRepr, usize)> {
    let frame = EthernetFrame::new_checked(bytes).ok()?;
    let eth = EthernetRepr::parse(&frame).ok()?;
    let packet = AoePacket::new_checked(frame.payload()).ok()?;
    let aoe = AoeRepr::parse(&packet).ok()?;
    let ata_packet = AtaPacket::new_checked(packet.payload()).ok()?;
    let ata = AtaRepr::parse(&ata_packet).ok()?;
    Some((eth, aoe, ata, ata_packet.payload().len()))
}

/// The headers of the reply to a request with these: addresses swapped, R flag, status DRDY.
fn reply_reprs(eth: EthernetRepr, aoe: AoeRepr, ata: AtaRepr) -> (EthernetRepr, AoeRepr, AtaRepr) {
    let reply_eth = EthernetRepr {
        dst_addr: eth.src_addr,
        src_addr: eth.dst_addr,
        ..eth
    };
    let reply_aoe = AoeRepr {
        response: true,
        ..aoe
    };
    let reply_ata = AtaRepr {
        cmd_status: status::DRDY,
        ..ata
    };
    (reply_eth, reply_aoe, reply_ata)
}

/// Benchmarks `name`: emitting the headers `reprs` into a buffer of `len` bytes.
fn bench_emit(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    len: usize,
    (eth, aoe, ata): (EthernetRepr, AoeRepr, AtaRepr),
) {
    group.bench_function(name, |b| {
        let mut buf = vec![0u8; len];
        b.iter(|| {
            emit(
                black_box(&mut buf[..]),
                black_box(&eth),
                black_box(&aoe),
                black_box(&ata),
            )
        })
    });
}

fn bench_wire(c: &mut Criterion) {
    let (eth, aoe, ata) = request_reprs();
    let mut request = [0u8; 60];
    emit(&mut request, &eth, &aoe, &ata);

    let (reply_eth, reply_aoe, reply_ata) = reply_reprs(eth, aoe, ata);
    let mut reply = vec![0u8; HEADERS_LEN + DATA_LEN];
    emit(&mut reply, &reply_eth, &reply_aoe, &reply_ata);

    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_read_request", |b| {
        b.iter(|| parse(black_box(&request[..])))
    });
    bench_emit(&mut group, "emit_read_request", 60, (eth, aoe, ata));
    group.bench_function("parse_read_reply", |b| {
        b.iter(|| parse(black_box(&reply[..])))
    });
    let reply_headers = (reply_eth, reply_aoe, reply_ata);
    bench_emit(
        &mut group,
        "emit_read_reply_headers",
        reply.len(),
        reply_headers,
    );
    group.bench_function("request_to_reply", |b| {
        // Parse a request and emit its reply header in place of a TX frame, as the target does.
        let mut buf = vec![0u8; HEADERS_LEN + DATA_LEN];
        b.iter(|| {
            let (eth, aoe, ata, _) = parse(black_box(&request[..])).unwrap();
            let (reply_eth, reply_aoe, reply_ata) = reply_reprs(eth, aoe, ata);
            emit(black_box(&mut buf[..]), &reply_eth, &reply_aoe, &reply_ata)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_wire);
criterion_main!(benches);

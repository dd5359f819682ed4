//! Cost of the target core per request, without I/O: a received 1 KiB READ EXT or WRITE EXT
//! frame through `Target::addressed` + `handle` (parse, checks, storage plan) and, after the
//! storage step the dataplane would do, `complete` (the reply header, in place).

use std::hint::black_box;
use std::sync::Arc;

use aoe_xdp::aoe::{DeviceParams, Outcome, Request, SharedState, Target, MIN_FRAME_LEN};
use aoe_xdp::initiator::frames::{self, AtaCmd};
use aoe_xdp::wire::ATA_FRAME_HEADER_LEN;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "../tests/common/host.rs"]
mod host;

use host::{route, PORT};

/// Sectors per request: what one MTU-1500 frame carries.
const SECTORS: u8 = 2;
const DATA_LEN: usize = SECTORS as usize * 512;

fn target() -> Target {
    let params = DeviceParams {
        buffer_count: 64,
        ..DeviceParams::new(1, 0, 1 << 20, 0)
    };
    Target::new([(Arc::new(params), Arc::new(SharedState::default()))])
}

/// A request frame as an initiator sends it.
fn request(cmd: AtaCmd, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let len = frames::ata(&mut buf, &route(0), 0x0102_0304, &cmd, data);
    buf.truncate(len);
    buf
}

/// One request: the frame lands in the buffer (as RX does), is addressed, handled, and its
/// storage step is taken as successful; returns the reply length.
fn one_request(target: &mut Target, frame: &[u8], buf: &mut [u8]) -> usize {
    buf[..frame.len()].copy_from_slice(frame);
    let request = Request::parse(&buf[..frame.len()]).expect("an AoE request");
    let mut addressed = target.addressed(&request, &PORT);
    let device = target
        .next_addressed(&mut addressed)
        .expect("addressed to device 0");
    match target.handle(device, &request, buf, &PORT) {
        Outcome::Io(plan) => target.complete(buf, &black_box(plan), Ok(())),
        other => panic!("expected storage work, got {other:?}"),
    }
}

fn bench_requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("target_request");
    group.throughput(Throughput::Elements(1));
    // (name, request, reply length: read data comes back, a write is acknowledged).
    let cases = [
        (
            "read_1k",
            request(AtaCmd::read(4096, SECTORS, true), &[]),
            ATA_FRAME_HEADER_LEN + DATA_LEN,
        ),
        (
            "write_1k",
            request(AtaCmd::write(4096, SECTORS, true), &[0x5A; DATA_LEN]),
            MIN_FRAME_LEN,
        ),
    ];
    for (name, frame, reply_len) in cases {
        let mut target = target();
        let mut buf = vec![0u8; 4096];
        let len = one_request(&mut target, &frame, &mut buf);
        assert_eq!(len, reply_len, "{name}: reply length");
        group.bench_function(name, |b| {
            b.iter(|| black_box(one_request(&mut target, black_box(&frame), &mut buf)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_requests);
criterion_main!(benches);

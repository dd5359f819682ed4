//! Arbitrary bytes through every wire view and the sans-IO target: nothing may panic, and any
//! storage plan must stay inside the device.
#![no_main]

use std::sync::Arc;

use aoe_xdp::aoe::{DeviceParams, Outcome, PortInfo, Request, SharedState, Target};
use aoe_xdp::initiator::frames::Reply;
use aoe_xdp::wire::MacAddr;
use libfuzzer_sys::fuzz_target;

const SECTORS: u64 = 4096;

fn target() -> Target {
    let params = DeviceParams {
        buffer_count: 64,
        ..DeviceParams::new(1, 0, SECTORS, 0)
    };
    Target::new([(Arc::new(params), Arc::new(SharedState::default()))])
}

fuzz_target!(|data: &[u8]| {
    if let Some(reply) = Reply::parse(data) {
        let _ = (
            reply.ata(),
            reply.query_config(),
            reply.mac_mask(),
            reply.reserve(),
        );
    }
    let mut target = target();
    let port = PortInfo {
        index: 0,
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
        mtu: 9000,
    };
    let mut buf = vec![0u8; 9100];
    if data.len() > buf.len() {
        return;
    }
    let Some(request) = Request::parse(data) else {
        return;
    };
    assert!(request.reply_room() >= data.len());
    let mut addressed = target.addressed(&request, &port);
    while let Some(device) = target.next_addressed(&mut addressed) {
        buf[..data.len()].copy_from_slice(data);
        match target.handle(device, &request, &mut buf, &port) {
            Outcome::Io(plan) => {
                assert!(plan.sector + u64::from(plan.count) <= SECTORS);
                assert!(plan.data_offset + plan.byte_len() <= buf.len());
                let len = target.complete(&mut buf, &plan, Ok(()));
                assert!(len <= buf.len());
            }
            Outcome::Reply { len, .. } => assert!(len >= 60 && len <= buf.len()),
            Outcome::Drop => {}
        }
    }
});

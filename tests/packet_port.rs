//! Real-kernel test of the AF_PACKET fallback `PacketPort`: a veth pair between two fresh
//! network namespaces; side A runs a `PacketPort` (no XDP anywhere), side B injects frames with
//! a raw socket and captures what comes back (the rig and the steps it shares with
//! `xdp_reflect` are in `common::ports`).
//!
//! Needs root; prints "skipping: ..." otherwise (or fails with `AOE_XDP_REQUIRE_PRIV=1`).

mod common;

use std::time::{Duration, Instant};

use aoe_xdp::dataplane::port::NetPort;
use aoe_xdp::sys::layout::{
    payload_is_aligned, AOE_ATA_HEADERS_LEN, ETH_MIN_FRAME_LEN, FRAME_CAPACITY, FRAME_SIZE,
    PACKET_OFFSET, PAYLOAD_ALIGN, SLAB_CAPACITY,
};
use aoe_xdp::sys::packet::{PacketConfig, PacketError, PacketPort, RingVersion};
use aoe_xdp::sys::xdp::DstFilter;
use common::frames::{
    aoe_frame, aoe_tag, expected_reply, is_aoe, pattern, swap_macs, FOREIGN_MAC, GROUP_MAC, QUIET,
    REQUEST, RESPONSE, WAIT,
};
use common::netns::{beside, in_netns, joined_namespaces};
use common::ports::{
    assert_no_frame, queue_responses, recv_one, reflect, reflect_count, reflect_tagged,
    reply_longer_than_request, settle, Rig,
};
use netns_rig::{leftover_namespaces, privileged_or_skip, Netns};

/// Binds a port on side A (call inside ns A).
fn bind(rig: &Rig, config: &PacketConfig) -> PacketPort {
    bind_result(rig, config).expect("bind AF_PACKET port")
}

fn bind_result(rig: &Rig, config: &PacketConfig) -> Result<PacketPort, PacketError> {
    PacketPort::bind(&rig.veth.a.name, config, DstFilter::Own(rig.veth.a.mac))
}

/// Queues each of `frames`, each built in a frame of its own from `alloc`.
fn queue_frames(port: &mut PacketPort, frames: &[&[u8]]) {
    for bytes in frames {
        let mut frame = port.alloc().expect("free frame");
        port.data_mut(&mut frame)[..bytes.len()].copy_from_slice(bytes);
        port.transmit(frame, bytes.len());
    }
}

/// The two RX ring layouts under test.
#[derive(Clone, Copy, Debug)]
enum Ring {
    V3,
    V2,
}

/// Runs each check once per ring layout, as the two tests named after it.
macro_rules! on_both_rings {
    ($($check:ident: $v3:ident, $v2:ident;)*) => {$(
        #[test]
        fn $v3() {
            $check(Ring::V3);
        }

        #[test]
        fn $v2() {
            $check(Ring::V2);
        }
    )*};
}

on_both_rings! {
    test_request_reaches_port_and_reflects: test_reflect_v3, test_reflect_v2;
    test_foreign_destination_skipped:
        test_foreign_destination_skipped_v3, test_foreign_destination_skipped_v2;
    test_vlan_request_keeps_its_tag:
        test_vlan_request_keeps_its_tag_v3, test_vlan_request_keeps_its_tag_v2;
    test_burst_reflects_all_without_leaks: test_burst_v3, test_burst_v2;
    test_one_flush_sends_a_batch: test_one_flush_sends_a_batch_v3, test_one_flush_sends_a_batch_v2;
}

/// The default ring layout (V2), small.
fn small_config() -> PacketConfig {
    config(Ring::V2)
}

fn config(ring: Ring) -> PacketConfig {
    // 256 frames = 64 (one RX burst) + 192 (queued for TX, or spare).
    PacketConfig {
        frame_count: 256,
        ring: match ring {
            Ring::V3 => RingVersion::V3 {
                block_size: 4096,
                block_count: 64,
                retire_timeout_ms: 1,
            },
            Ring::V2 => RingVersion::V2 {
                slot_size: 2048,
                slot_count: 128,
            },
        },
        ..PacketConfig::default()
    }
}

/// A request from B reaches the port byte for byte at the UMEM layout's offset; the reply built
/// in the same frame reaches B padded to 60 bytes; a reply longer than its request works too.
fn test_request_reaches_port_and_reflects(ring: Ring) {
    let Some(rig) = Rig::new(&format!("reflect{ring:?}")) else {
        return;
    };
    let short = rig.request(None, REQUEST, 0x1234_5678);
    let long = rig.request(None, REQUEST, 0x0BAD_CAFE);
    in_netns(&rig.ns_a, || {
        let mut port = bind(&rig, &config(ring));
        assert_eq!(port.interface(), rig.veth.a.name);
        assert_eq!(port.frames().len(), 256 * FRAME_SIZE);
        let start = port.frame_counts();
        assert_eq!(start.free, 256);

        rig.peer.send(&short);
        let frame = recv_one(&mut port, WAIT).expect("request did not reach the port");
        assert_eq!(frame.len(), short.len());
        assert_eq!(port.data(&frame), &short[..]);
        let offset = port.frames().umem_offset(&frame);
        assert_eq!(offset % FRAME_SIZE, PACKET_OFFSET);
        assert_eq!((offset + AOE_ATA_HEADERS_LEN) % PAYLOAD_ALIGN, 0);
        assert!(payload_is_aligned(offset, AOE_ATA_HEADERS_LEN));
        assert_eq!(port.frame_capacity(&frame), FRAME_CAPACITY);
        // The frame really lives in the area that would be registered with io_uring.
        let base = port.frames().base_ptr().as_ptr() as usize;
        assert_eq!(port.data(&frame).as_ptr() as usize, base + offset);
        assert_eq!(port.frame_counts().rx, 1);
        reflect(&mut port, frame);
        assert_eq!(port.frame_counts().tx, 1);
        assert_eq!(port.flush_tx().unwrap(), 1);
        assert_eq!(port.frame_counts(), start, "frame not free after the copy");
        assert_eq!(port.reap_completions(), 1);
        assert_eq!(port.reap_completions(), 0);
        rig.expect_padded_reply(&short);

        // A reply longer than its request.
        let reply_len = reply_longer_than_request(&mut port, &rig, &long, |buf| {
            assert_eq!(buf.len(), FRAME_CAPACITY);
        });

        settle(&mut port, start);
        let stats = port.stats().unwrap();
        assert_eq!(stats.rx_frames, 2, "{stats:?}");
        assert_eq!(
            stats.rx_copy_bytes,
            (short.len() + long.len()) as u64,
            "{stats:?}"
        );
        assert_eq!(stats.rx_kernel_packets, 2, "{stats:?}");
        assert_eq!(stats.rx_kernel_drops, 0, "{stats:?}");
        assert_eq!(stats.tx_frames, 2, "{stats:?}");
        assert_eq!(
            stats.tx_copy_bytes,
            (ETH_MIN_FRAME_LEN + reply_len) as u64,
            "{stats:?}"
        );
        // One `sendmmsg` per flush that had frames to send; none was held back.
        assert_eq!(stats.tx_sendmmsg_calls, 2, "{stats:?}");
        assert_eq!(
            stats.tx_deferred + stats.tx_rejected + stats.tx_dropped,
            0,
            "{stats:?}"
        );
        // The kernel counters accumulate across reads (PACKET_STATISTICS clears on read).
        assert_eq!(port.stats().unwrap().rx_kernel_packets, 2);
    });
}

/// AoE responses, wrong AoE versions and other ethertypes never reach the port: the filter
/// passes only the request sent after them.
#[test]
fn test_filter_passes_only_requests() {
    let Some(rig) = Rig::new("filter") else {
        return;
    };
    let response = rig.request(None, RESPONSE, 0x5EED_0001);
    let tagged_response = rig.request(Some(42), RESPONSE, 0x5EED_0002);
    let mut other = rig.request(None, REQUEST, 0x5EED_0003);
    other[12..14].copy_from_slice(&0x88B5u16.to_be_bytes()); // IEEE local experimental
    let mut bad_version = rig.request(None, REQUEST, 0x5EED_0004);
    bad_version[14] = 0x20; // AoE version 2
    let marker = rig.request(None, REQUEST, 0x5EED_0005);
    in_netns(&rig.ns_a, || {
        let mut port = bind(&rig, &small_config());
        for frame in [&response, &tagged_response, &other, &bad_version, &marker] {
            rig.peer.send(frame);
        }
        // Frames arrive in order, so anything that slipped through would come first.
        let first = recv_one(&mut port, WAIT).expect("the request after the others is missing");
        let bytes = port.data(&first).to_vec();
        port.release(first);
        assert_eq!(bytes, marker, "a filtered frame reached the port");
        assert_no_frame(&mut port, QUIET, "unexpected frame at the port");
        let stats = port.stats().unwrap();
        assert_eq!(
            stats.rx_kernel_packets, 1,
            "the filter let through {stats:?}"
        );
        assert_eq!(port.frame_counts().free, 256);
    });
}

/// Requests for another host (a foreign unicast MAC, tagged or not, or a multicast group) are
/// not returned by `rx_burst`: they are counted (`rx_foreign_dst`) and handed back to the kernel
/// without a copy. Broadcast and the interface's own MAC get through. With `DstFilter::Any`
/// the foreign request is returned too.
fn test_foreign_destination_skipped(ring: Ring) {
    let Some(rig) = Rig::new(&format!("fdst{ring:?}")) else {
        return;
    };
    let b = rig.veth.b.mac;
    let foreign = aoe_frame(FOREIGN_MAC, b, None, REQUEST, 0xF0_0001);
    let tagged_foreign = aoe_frame(FOREIGN_MAC, b, Some(42), REQUEST, 0xF0_0002);
    let group = aoe_frame(GROUP_MAC, b, None, REQUEST, 0xF0_0003);
    let broadcast = aoe_frame([0xFF; 6], b, None, REQUEST, 0xF0_0004);
    let own = rig.request(None, REQUEST, 0xF0_0005);
    in_netns(&rig.ns_a, || {
        let mut port = bind(&rig, &config(ring));
        assert_eq!(port.dst_filter(), DstFilter::Own(rig.veth.a.mac));
        for frame in [&foreign, &tagged_foreign, &group, &broadcast, &own] {
            rig.peer.send(frame);
        }
        // Frames arrive in order, so a foreign one that slipped through would come first.
        for expected in [&broadcast, &own] {
            let frame = recv_one(&mut port, WAIT).expect("broadcast or own request missing");
            let bytes = port.data(&frame).to_vec();
            port.release(frame);
            assert_eq!(
                &bytes, expected,
                "a request for another host reached the port"
            );
        }
        assert_no_frame(&mut port, QUIET, "unexpected frame at the port");
        let stats = port.stats().unwrap();
        assert_eq!(stats.rx_foreign_dst, 3, "{stats:?}");
        assert_eq!(port.foreign_dst(), 3);
        assert_eq!(stats.rx_frames, 2, "{stats:?}");
        assert_eq!(stats.rx_copy_bytes, (broadcast.len() + own.len()) as u64);
        assert_eq!(port.frame_counts().free, 256);
    });
    in_netns(&rig.ns_a, || {
        let name = &rig.veth.a.name;
        let mut port = PacketPort::bind(name, &config(ring), DstFilter::Any).expect("bind");
        rig.peer.send(&foreign);
        let frame = recv_one(&mut port, WAIT).expect("foreign request refused with Any");
        assert_eq!(port.data(&frame), &foreign[..]);
        port.release(frame);
        assert_eq!(port.foreign_dst(), 0);
    });
}

/// A request behind one 802.1Q tag reaches the port with its tag in place (the kernel strips
/// it into the ring header; the port puts it back), and the reply goes out tagged.
fn test_vlan_request_keeps_its_tag(ring: Ring) {
    let Some(rig) = Rig::new(&format!("vlan{ring:?}")) else {
        return;
    };
    let request = rig.request(Some(42), REQUEST, 0x0000_0042);
    in_netns(&rig.ns_a, || {
        let mut port = bind(&rig, &config(ring));
        let start = port.frame_counts();
        // As with XDP, the tag shifts the payload off the 512 boundary.
        reflect_tagged(&mut port, &rig, &request, |port, frame| {
            port.frames().umem_offset(frame)
        });
        settle(&mut port, start);
    });
}

/// Documents the kernel's behaviour when bound to ETH_P_AOE (`vlan: false`): a tagged request
/// is still delivered, but with the tag already removed and no trace of it, so its reply would
/// leave untagged. This is why `vlan: true` (ETH_P_ALL) is the default.
#[test]
fn test_vlan_tag_lost_when_bound_to_aoe_ethertype() {
    let Some(rig) = Rig::new("novlan") else {
        return;
    };
    let tagged = rig.request(Some(42), REQUEST, 0x0000_0043);
    let untagged = rig.request(None, REQUEST, 0x0000_0043);
    in_netns(&rig.ns_a, || {
        let config = PacketConfig {
            vlan: false,
            ..small_config()
        };
        let mut port = bind(&rig, &config);
        rig.peer.send(&tagged);
        let frame = recv_one(&mut port, WAIT).expect("tagged request not delivered at all");
        let bytes = port.data(&frame).to_vec();
        port.release(frame);
        assert_eq!(bytes, untagged, "expected the kernel to strip the tag");
        // Untagged AoE works as usual.
        rig.peer.send(&untagged);
        let frame = recv_one(&mut port, WAIT).expect("untagged request did not arrive");
        assert_eq!(port.data(&frame), &untagged[..]);
        port.release(frame);
    });
}

/// On a jumbo-MTU link with 8 KiB RX slots: a 3000-byte request fits a chunk and a 5000-byte
/// one a slab (the port carries what a slot holds, 8096 bytes); both are received and
/// reflected whole; an 8500-byte one does not fit a slot and is dropped and counted, not
/// truncated.
#[test]
fn test_large_frames() {
    let Some(rig) = Rig::with_mtu("large", 9000) else {
        return;
    };
    let mut fits = rig.request(None, REQUEST, 0x0000_3000);
    fits.extend((0..3000 - fits.len()).map(pattern));
    let mut slab = rig.request(None, REQUEST, 0x0000_5000);
    slab.extend((0..5000 - slab.len()).map(pattern));
    let mut too_long = rig.request(None, REQUEST, 0x0000_8500);
    too_long.resize(8500, 0xAB);
    in_netns(&rig.ns_a, || {
        let config = PacketConfig {
            ring: RingVersion::V2 {
                slot_size: 8192,
                slot_count: 64,
            },
            ..small_config()
        };
        assert!(config.jumbo());
        let mut port = bind(&rig, &config);
        assert_eq!(port.max_frame_len(), 8192 - 96);
        let start = port.frame_counts();
        rig.peer.send(&too_long);
        for (request, tag, in_slab) in [(&fits, 0x3000, false), (&slab, 0x5000, true)] {
            rig.peer.send(request);
            let frame = recv_one(&mut port, WAIT).expect("request did not arrive");
            assert_eq!(port.frames().is_slab(&frame), in_slab);
            assert_eq!(port.data(&frame), &request[..]);
            reflect(&mut port, frame);
            port.flush_tx().unwrap();
            let reply = rig.reply(tag, "B did not receive the reply");
            assert_eq!(reply, expected_reply(request));
        }
        settle(&mut port, start);
        let stats = port.stats().unwrap();
        assert_eq!(stats.rx_too_long, 1, "{stats:?}");
        assert_eq!(stats.rx_frames, 2, "{stats:?}");
    });
}

/// `PacketConfig::for_mtu(9000)`: a 17-sector WRITE (8740 bytes) arrives in one slab frame,
/// lends as a chunk of the slab arena, and its 17-sector reply reaches B intact; a small READ
/// upgraded into a slab carries a 17-sector reply; 300 jumbo round trips leave nothing behind.
#[test]
fn test_jumbo_port_for_mtu_9000() {
    const JUMBO_LEN: usize = 36 + 17 * 512;
    let Some(rig) = Rig::with_mtu("jumbo", 9000) else {
        return;
    };
    let write_request = |tag: u32, sectors: usize| {
        let mut frame = rig.request(None, REQUEST, tag);
        frame.truncate(24);
        frame.extend_from_slice(&[0x41, 0, u8::try_from(sectors).unwrap(), 0x34]);
        frame.extend_from_slice(&[0; 8]);
        frame.extend((0..sectors * 512).map(|i| pattern(i + tag as usize)));
        frame
    };
    in_netns(&rig.ns_a, || {
        let config = PacketConfig {
            frame_count: 256,
            ..PacketConfig::for_mtu(9000)
        };
        assert!(config.jumbo());
        assert!(!PacketConfig::for_mtu(1500).jumbo());
        assert!(!PacketConfig::default().jumbo());
        let mut port = bind(&rig, &config);
        assert_eq!(port.max_frame_len(), SLAB_CAPACITY);
        assert_eq!(port.slab_counts().free, 16);
        let start = port.frame_counts();

        let request = write_request(0x1717, 17);
        assert_eq!(request.len(), JUMBO_LEN);
        rig.peer.send(&request);
        let frame = recv_one(&mut port, WAIT).expect("jumbo request did not arrive");
        assert!(port.frames().is_slab(&frame));
        assert!(port.data(&frame) == &request[..]);
        assert_eq!(port.offset_in_chunk(&frame), PACKET_OFFSET);
        let arena = std::sync::Arc::clone(port.slab_arena().expect("slab arena"));
        let chunk = port.lend(frame);
        assert!(arena.owns(&chunk));
        assert!(arena.bytes(&chunk)[PACKET_OFFSET..PACKET_OFFSET + JUMBO_LEN] == request[..]);
        let frame = port.reclaim(chunk);
        reflect(&mut port, frame);
        port.flush_tx().unwrap();
        let reply = rig.reply(0x1717, "B did not receive the jumbo reply");
        assert!(reply == expected_reply(&request));

        // Upgrade: a 36-byte READ gets a slab for its 8740-byte reply.
        let mut read = write_request(0x2222, 17);
        read.truncate(36);
        read[24] = 0x40;
        rig.peer.send(&read);
        let frame = recv_one(&mut port, WAIT).expect("read request did not arrive");
        assert!(!port.frames().is_slab(&frame));
        let mut frame = port.upgrade(frame, JUMBO_LEN).expect("slab free");
        assert!(port.frames().is_slab(&frame));
        assert_eq!(port.data(&frame), &read[..]);
        let buf = port.data_mut(&mut frame);
        for (i, byte) in buf[36..JUMBO_LEN].iter_mut().enumerate() {
            *byte = pattern(i);
        }
        buf[14] |= 0x08;
        port.transmit(frame, JUMBO_LEN);
        port.flush_tx().unwrap();
        let reply = rig.reply(0x2222, "B did not receive the upgraded reply");
        assert_eq!(reply.len(), JUMBO_LEN);
        assert!(reply[36..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(i)));
        assert_eq!(port.jumbo_stats().upgrades, 1);

        for round in 0..30u32 {
            let tags: Vec<u32> = (0..10).map(|i| 0x10_000 + round * 10 + i).collect();
            for &tag in &tags {
                rig.peer.send(&write_request(tag, 1 + tag as usize % 17));
            }
            for _ in &tags {
                let frame = recv_one(&mut port, WAIT).expect("request lost");
                reflect(&mut port, frame);
            }
            port.flush_tx().unwrap();
            rig.expect_reflected(tags.len(), |tag| write_request(tag, 1 + tag as usize % 17));
        }
        settle(&mut port, start);
        let stats = port.stats().unwrap();
        assert_eq!(stats.rx_too_long + stats.rx_kernel_drops, 0, "{stats:?}");
    });
}

/// 2000 requests, at most 64 in flight, all reflected; every frame back in the pool; no drops.
/// Prints the rate (rough; veth on 2 vCPUs).
fn test_burst_reflects_all_without_leaks(ring: Ring) {
    const COUNT: u32 = 2000;
    const WINDOW: u32 = 64;
    let Some(rig) = Rig::new(&format!("burst{ring:?}")) else {
        return;
    };
    let reflect = |ready: &dyn Fn()| {
        let mut port = bind(&rig, &config(ring));
        let start = port.frame_counts();
        ready();
        let bursts = reflect_count(&mut port, COUNT);
        settle(&mut port, start);
        assert_eq!(port.frame_counts(), start);
        assert_eq!(port.frame_counts().total(), 256);
        (port.stats().unwrap(), bursts)
    };
    let ((stats, bursts), elapsed) = beside(&rig.ns_a, reflect, || rig.round_trips(COUNT, WINDOW));
    eprintln!(
        "AF_PACKET {ring:?} burst: {COUNT} round trips (window {WINDOW}) in {elapsed:?} = {:.0} \
         requests/s, {bursts} RX bursts, {stats:?}",
        f64::from(COUNT) / elapsed.as_secs_f64()
    );
    assert_eq!(stats.rx_frames, u64::from(COUNT), "{stats:?}");
    assert_eq!(stats.tx_frames, u64::from(COUNT), "{stats:?}");
    assert_eq!(stats.rx_kernel_drops + stats.rx_too_long, 0, "{stats:?}");
}

/// 100 frames built with `alloc`, transmitted, then ONE `flush_tx` with ONE `sendmmsg`: all
/// arrive.
fn test_one_flush_sends_a_batch(ring: Ring) {
    const COUNT: u32 = 100;
    let Some(rig) = Rig::new(&format!("batch{ring:?}")) else {
        return;
    };
    in_netns(&rig.ns_a, || {
        let mut port = bind(&rig, &config(ring));
        let start = port.frame_counts();
        queue_responses(&mut port, &rig, COUNT);
        assert_eq!(port.frame_counts().tx, COUNT);
        assert_eq!(port.flush_tx().unwrap(), COUNT as usize);
        assert_eq!(port.frame_counts(), start);
        let stats = port.stats().unwrap();
        assert_eq!(stats.tx_sendmmsg_calls, 1, "{stats:?}");
        assert_eq!(stats.tx_frames, u64::from(COUNT), "{stats:?}");
        rig.expect_responses(COUNT, "after one flush");
    });
}

/// More frames queued than one `sendmmsg` takes (1024, the kernel's `UIO_MAXIOV`): one flush
/// sends them all, in two calls.
#[test]
fn test_one_flush_sends_more_than_one_call_takes() {
    const COUNT: u32 = 1500;
    let Some(rig) = Rig::new("batchmax") else {
        return;
    };
    in_netns(&rig.ns_a, || {
        let config = PacketConfig {
            frame_count: 2048,
            ..small_config()
        };
        let mut port = bind(&rig, &config);
        let start = port.frame_counts();
        queue_responses(&mut port, &rig, COUNT);
        assert_eq!(port.flush_tx().unwrap(), COUNT as usize);
        assert_eq!(port.frame_counts(), start);
        assert_eq!(port.reap_completions(), COUNT as usize);
        let stats = port.stats().unwrap();
        assert_eq!(stats.tx_sendmmsg_calls, 2, "{stats:?}");
        assert_eq!(stats.tx_frames, u64::from(COUNT), "{stats:?}");
        assert_eq!(stats.tx_deferred, 0, "{stats:?}");
    });
}

/// While the link has no carrier (B is down) the device refuses every frame (`ENOBUFS`): the
/// frames stay queued, in order, and go out once B is up again. Nothing is lost or leaked.
#[test]
fn test_frames_wait_while_the_link_has_no_carrier() {
    const COUNT: u32 = 200;
    let Some(rig) = Rig::new("carrier") else {
        return;
    };
    let b = rig.veth.b.name.clone();
    in_netns(&rig.ns_a, || {
        let config = PacketConfig {
            // Long enough that the frames are never dropped however slow the machine.
            tx_refused_hold_ms: 60_000,
            ..small_config()
        };
        let mut port = bind(&rig, &config);
        let start = port.frame_counts();
        queue_responses(&mut port, &rig, COUNT);
        rig.ns_b.link_down(&b).unwrap();
        assert_eq!(port.flush_tx().unwrap(), 0);
        assert_eq!(port.flush_tx().unwrap(), 0);
        assert_eq!(port.frame_counts().tx, COUNT);
        let stats = port.stats().unwrap();
        assert_eq!(stats.tx_deferred, 2, "{stats:?}");
        assert_eq!(stats.tx_sendmmsg_calls, 2, "{stats:?}");
        assert_eq!(stats.tx_frames + stats.tx_dropped, 0, "{stats:?}");

        rig.ns_b.link_up(&b).unwrap();
        // B's socket was told ENETDOWN when its link went down: take that error first.
        let _ = rig.peer.raw().recv_matching(Duration::ZERO, |_| false);
        assert_eq!(port.flush_tx().unwrap(), COUNT as usize);
        rig.expect_responses(COUNT, "once the carrier was back");
        settle(&mut port, start);
        let stats = port.stats().unwrap();
        assert_eq!(stats.tx_frames, u64::from(COUNT), "{stats:?}");
        assert_eq!(stats.tx_dropped, 0, "{stats:?}");
    });
}

/// A frame longer than the MTU allows: the kernel refuses it for itself (`EMSGSIZE`). In the
/// middle of a batch, `sendmmsg` sends the frames before it and stops (the rest stay queued);
/// the next flush finds it first, drops it and sends the rest. Nothing is leaked.
#[test]
fn test_frame_longer_than_the_mtu_is_rejected() {
    let Some(rig) = Rig::new("emsgsize") else {
        return;
    };
    let mut too_long = rig.response(1);
    too_long.resize(2000, 0);
    in_netns(&rig.ns_a, || {
        let mut port = bind(&rig, &small_config());
        let start = port.frame_counts();
        queue_frames(&mut port, &[&rig.response(0), &too_long, &rig.response(2)]);
        assert_eq!(port.flush_tx().unwrap(), 1, "the frame before it");
        assert_eq!(port.frame_counts().tx, 2);
        assert_eq!(port.stats().unwrap().tx_deferred, 1);
        assert_eq!(port.flush_tx().unwrap(), 1, "the frame after it");
        assert_eq!(port.frame_counts(), start);
        assert_eq!(
            port.reap_completions(),
            3,
            "sent or dropped, every frame is free"
        );
        // First in a batch: dropped, and the same flush sends the rest.
        queue_frames(&mut port, &[&too_long, &rig.response(3)]);
        assert_eq!(port.flush_tx().unwrap(), 1);
        assert_eq!(port.frame_counts(), start);
        let stats = port.stats().unwrap();
        assert_eq!(stats.tx_rejected, 2, "{stats:?}");
        assert_eq!(stats.tx_frames, 3, "{stats:?}");
        assert_eq!(stats.tx_sendmmsg_calls, 5, "{stats:?}");
        assert_eq!(stats.tx_deferred, 1, "{stats:?}");
        for tag in [0, 2, 3] {
            rig.reply(tag, "a frame beside the long one did not arrive");
        }
        let stray = rig
            .peer
            .recv_matching(QUIET, |f| is_aoe(f) && aoe_tag(f) == 1);
        assert!(stray.is_none(), "the long frame went out");
    });
}

/// A frame the device drops each time: on veth, one longer than the peer's MTU (A has 9000,
/// B 1500). `ENOBUFS` does not say so, so the frame is retried for `tx_refused_hold_ms`, the
/// frames behind it waiting, then dropped; the rest go out. A new refusal after a frame went
/// out waits the hold again.
#[test]
fn test_frame_the_device_keeps_refusing_is_dropped_after_the_hold() {
    const HOLD: Duration = Duration::from_millis(50);
    let Some(rig) = Rig::with_mtu("enobufs", 9000) else {
        return;
    };
    let b = rig.veth.b.name.clone();
    rig.ns_b.ip(&["link", "set", &b, "mtu", "1500"]).unwrap();
    let mut too_long = rig.response(1);
    too_long.resize(3000, 0);
    in_netns(&rig.ns_a, || {
        let config = PacketConfig {
            tx_refused_hold_ms: u32::try_from(HOLD.as_millis()).unwrap(),
            ..small_config()
        };
        let mut port = bind(&rig, &config);
        let start = port.frame_counts();
        queue_frames(&mut port, &[&too_long, &rig.response(2)]);
        let began = Instant::now();
        assert_eq!(port.flush_tx().unwrap(), 0);
        if began.elapsed() < HOLD {
            assert_eq!(port.frame_counts().tx, 2, "dropped before the hold");
        }
        std::thread::sleep(HOLD);
        assert_eq!(port.flush_tx().unwrap(), 1, "the frame behind it");
        assert_eq!(port.frame_counts(), start);
        rig.reply(2, "the frame behind the long one did not arrive");
        let stats = port.stats().unwrap();
        assert_eq!(stats.tx_dropped, 1, "{stats:?}");
        assert_eq!(stats.tx_frames, 1, "{stats:?}");
        assert_eq!(stats.tx_rejected, 0, "{stats:?}");

        // The device took a frame since: the next refusal is held again.
        queue_frames(&mut port, &[&too_long]);
        let began = Instant::now();
        assert_eq!(port.flush_tx().unwrap(), 0);
        if began.elapsed() < HOLD {
            assert_eq!(port.frame_counts().tx, 1, "dropped without a hold");
        }
        settle(&mut port, start);
        assert_eq!(port.stats().unwrap().tx_dropped, 2);
    });
}

/// One request at a time (queue depth 1): every request is answered; returns (and prints) the
/// median round trip, which a TPACKET_V3 ring lengthens to about one retire-timer tick.
fn test_one_outstanding_request_latency(ring: Ring) -> Option<Duration> {
    const COUNT: u32 = 50;
    let rig = Rig::new(&format!("qd1{ring:?}"))?;
    let reflector = |ready: &dyn Fn()| {
        let mut port = bind(&rig, &config(ring));
        ready();
        for _ in 0..COUNT {
            let frame = recv_one(&mut port, WAIT).expect("request missing");
            reflect(&mut port, frame);
            port.flush_tx().unwrap();
        }
    };
    let round_trips = || {
        (0..COUNT)
            .map(|tag| {
                let began = Instant::now();
                rig.peer.send(&rig.request(None, REQUEST, tag));
                rig.peer
                    .recv_matching(WAIT, |f| {
                        is_aoe(f) && f[14] == RESPONSE && aoe_tag(f) == tag
                    })
                    .unwrap_or_else(|| panic!("no reply to request {tag}"));
                began.elapsed()
            })
            .collect::<Vec<_>>()
    };
    let ((), mut rtts) = beside(&rig.ns_a, reflector, round_trips);
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    eprintln!(
        "AF_PACKET {ring:?} queue depth 1: median round trip {median:?}, max {:?}",
        rtts[rtts.len() - 1]
    );
    Some(median)
}

#[test]
fn test_latency_v3() {
    let Some(median) = test_one_outstanding_request_latency(Ring::V3) else {
        return;
    };
    // A lone request never fills a block: it waits for the 1 ms retire timeout.
    assert!(median >= Duration::from_micros(500), "median {median:?}");
}

#[test]
fn test_latency_v2() {
    let Some(median) = test_one_outstanding_request_latency(Ring::V2) else {
        return;
    };
    // A slot is visible at once: well under the V3 retire timeout.
    assert!(median < Duration::from_millis(1), "median {median:?}");
}

/// Binding to an interface that does not exist names it; no namespace is left behind.
#[test]
fn test_missing_interface_and_cleanup() {
    let Some(rig) = Rig::new("errors") else {
        return;
    };
    in_netns(&rig.ns_a, || {
        let error = PacketPort::bind("aoex-missing", &small_config(), DstFilter::Any).unwrap_err();
        assert!(
            matches!(error, PacketError::NoInterface { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("aoex-missing"), "{error}");
        let bad = PacketConfig {
            ring: RingVersion::V3 {
                block_size: 1000,
                block_count: 4,
                retire_timeout_ms: 1,
            },
            ..small_config()
        };
        let error = PacketPort::bind(&rig.veth.a.name, &bad, DstFilter::Any).unwrap_err();
        assert!(matches!(error, PacketError::Config { .. }), "{error:?}");
    });
    let name = rig.ns_a.name().to_owned();
    assert!(leftover_namespaces().unwrap().contains(&name));
    drop(rig);
    assert!(!leftover_namespaces().unwrap().contains(&name));
}

/// Without CAP_NET_RAW the error names the cause and the fix. Capabilities are per thread, so
/// the check drops CAP_NET_RAW from the effective set of a scratch thread only.
#[test]
fn test_without_cap_net_raw_says_run_as_root() {
    let Some(rig) = Rig::new("noraw") else {
        return;
    };
    in_netns(&rig.ns_a, || {
        drop_effective_capability(CAP_NET_RAW);
        let error = bind_result(&rig, &small_config()).expect_err("bind without CAP_NET_RAW");
        let text = error.to_string();
        assert!(
            text.contains("CAP_NET_RAW") && text.contains("run as root"),
            "{text}"
        );
        let errno = std::error::Error::source(&error)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(std::io::Error::raw_os_error);
        assert_eq!(errno, Some(libc::EPERM), "{error:?}");
    });
}

const CAP_NET_RAW: u32 = 13;

/// Clears capability `cap` from the calling thread's effective set (`capget` + `capset`).
fn drop_effective_capability(cap: u32) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a valid v3 header and room for two data structs, as the ABI requires.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    assert_eq!(ret, 0, "capget: {}", std::io::Error::last_os_error());
    data[0].effective &= !(1 << cap);
    // SAFETY: as above; pid 0 means the calling thread only.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    assert_eq!(ret, 0, "capset: {}", std::io::Error::last_os_error());
}

/// Throughput measurement behind the numbers in `packet.rs`'s docs (ignored: it takes ~20 s;
/// run with `cargo test --release --test packet_port -- --ignored --nocapture`). Two ports, one
/// per namespace, reflect `window` 60-byte requests back and forth (MACs swapped, R flag left
/// clear so both filters accept them) for two seconds; A's count is the round-trip rate.
#[test]
#[ignore = "measurement, ~20 s"]
fn test_pingpong_rates() {
    if !privileged_or_skip() {
        return;
    }
    let v3 = |block_size: u32| RingVersion::V3 {
        block_size,
        block_count: 4 * 1024 * 1024 / block_size,
        retire_timeout_ms: 1,
    };
    let v2 = RingVersion::V2 {
        slot_size: 4096,
        slot_count: 1024,
    };
    for window in [1, 16, 64, 256] {
        for ring in [v3(4096), v3(16384), v2] {
            let rate = pingpong(ring, window);
            eprintln!("AF_PACKET ping-pong, window {window:3}: {rate:7.0} round trips/s, {ring:?}");
        }
    }
}

/// Round trips per second of `window` frames bouncing between two ports with `ring`.
fn pingpong(ring: RingVersion, window: u32) -> f64 {
    let (ns_a, ns_b, veth) = joined_namespaces("pp", ("aoepa", "aoepb"), 1500);
    let config = PacketConfig {
        frame_count: 1024,
        ring,
        ..PacketConfig::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let bounce = |ns: &Netns, name: &str, mac: [u8; 6], seed: u32| {
        in_netns(ns, || {
            let mut port = PacketPort::bind(name, &config, DstFilter::Own(mac)).expect("bind");
            let start = port.frame_counts();
            for tag in 0..seed {
                let mut frame = port.alloc().expect("free frame");
                let bytes = aoe_frame(veth.a.mac, veth.b.mac, None, REQUEST, tag);
                port.data_mut(&mut frame)[..bytes.len()].copy_from_slice(&bytes);
                port.transmit(frame, bytes.len());
            }
            port.flush_tx().unwrap();
            let began = Instant::now();
            let mut count = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let burst = port.rx_burst(64);
                if burst.len() == 0 {
                    drop(burst);
                    port.wait_rx(Duration::from_millis(10)).unwrap();
                    continue;
                }
                for mut frame in burst {
                    let len = frame.len();
                    swap_macs(port.data_mut(&mut frame));
                    port.transmit(frame, len);
                    count += 1;
                }
                port.flush_tx().unwrap();
            }
            let elapsed = began.elapsed();
            settle(&mut port, start);
            let stats = port.stats().unwrap();
            assert_eq!(stats.rx_kernel_drops, 0, "{stats:?}");
            (count, elapsed)
        })
    };
    std::thread::scope(|scope| {
        let a = scope.spawn(|| bounce(&ns_a, "aoepa", veth.a.mac, 0));
        std::thread::sleep(Duration::from_millis(100));
        let b = scope.spawn(|| bounce(&ns_b, "aoepb", veth.b.mac, window));
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (count, elapsed) = a.join().unwrap();
        b.join().unwrap();
        assert!(count > 0, "no frame went round");
        count as f64 / elapsed.as_secs_f64()
    })
}

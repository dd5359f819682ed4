//! The rig of the port tests (`packet_port` for `PacketPort`, `xdp_reflect` for `XskPort`): two
//! fresh namespaces joined by a veth pair, the port under test on side A (`aoea`), a raw socket
//! on side B (`aoeb`) that injects requests and captures what comes back; and the steps both
//! suites take with either kind of port ([`TestPort`]): receive one frame, reflect it, settle
//! until every frame is back, reflect a stream, queue and count replies.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aoe_xdp::dataplane::port::NetPort;
use aoe_xdp::sys::frame::{Frame, FrameCounts, RxBurst};
use aoe_xdp::sys::layout::{payload_is_aligned, AOE_ATA_HEADERS_LEN, ETH_MIN_FRAME_LEN};
use aoe_xdp::sys::packet::PacketPort;
use aoe_xdp::sys::xdp::xsk::XskPort;
use netns_rig::{privileged_or_skip, Netns, VethPair};

use super::frames::{
    aoe_frame, aoe_offset, aoe_tag, expected_reply, is_aoe, pattern, swap_macs, REQUEST, RESPONSE,
    WAIT,
};
use super::netns::{joined_namespaces, PacketSocket};

/// How long a stream of round trips ([`Rig::round_trips`], [`reflect_count`]) may take.
const STREAM_WAIT: Duration = Duration::from_secs(20);

/// Two namespaces joined by a veth pair, with a raw socket on side B.
/// Field order is drop order: sockets, then the namespaces (which destroys the veths).
pub struct Rig {
    /// Side B's raw socket: sends requests to A, captures its replies.
    pub peer: PacketSocket,
    /// `a` is the port's interface, `b` the peer's.
    pub veth: VethPair,
    /// Side A: bind the port under test inside it (`in_netns`).
    pub ns_a: Netns,
    /// Side B: reached through `peer`; tests change its link (down, MTU) through it.
    pub ns_b: Netns,
}

impl Rig {
    /// The rig on an MTU-1500 link; `None` (after printing why) when the tests cannot run here.
    /// `tag` names the namespaces: unique per test.
    pub fn new(tag: &str) -> Option<Rig> {
        Rig::with_mtu(tag, 1500)
    }

    /// As [`Rig::new`], with links of `mtu` bytes.
    pub fn with_mtu(tag: &str, mtu: u16) -> Option<Rig> {
        if !privileged_or_skip() {
            return None;
        }
        let (ns_a, ns_b, veth) = joined_namespaces(tag, ("aoea", "aoeb"), mtu);
        let peer = PacketSocket::open(&ns_b, "aoeb");
        Some(Rig {
            peer,
            veth,
            ns_a,
            ns_b,
        })
    }

    /// An AoE frame from B to A.
    pub fn request(&self, vlan: Option<u16>, ver_flags: u8, tag: u32) -> Vec<u8> {
        aoe_frame(self.veth.a.mac, self.veth.b.mac, vlan, ver_flags, tag)
    }

    /// An AoE response from A to B, as the port sends it.
    pub fn response(&self, tag: u32) -> Vec<u8> {
        aoe_frame(self.veth.b.mac, self.veth.a.mac, None, RESPONSE, tag)
    }

    /// The frame with AoE tag `tag` that B receives next; panics with `missing` after
    /// [`WAIT`].
    pub fn reply(&self, tag: u32, missing: &str) -> Vec<u8> {
        self.peer
            .recv_matching(WAIT, |f| is_aoe(f) && aoe_tag(f) == tag)
            .expect(missing)
    }

    /// The next VLAN-tagged AoE frame B receives; panics with `missing` after [`WAIT`].
    pub fn tagged_reply(&self, missing: &str) -> Vec<u8> {
        self.peer
            .recv_matching(WAIT, |f| {
                f.len() >= 18 && f[12..14] == [0x81, 0x00] && is_aoe(f)
            })
            .expect(missing)
    }

    /// Receives `count` responses at B, in any order, and checks each is the
    /// [`expected_reply`] to the request `request_of` builds for its tag.
    pub fn expect_reflected(&self, count: usize, request_of: impl Fn(u32) -> Vec<u8>) {
        for _ in 0..count {
            let reply = self
                .peer
                .recv_matching(WAIT, |f| is_aoe(f) && f[14] == RESPONSE)
                .expect("reply lost");
            let tag = aoe_tag(&reply);
            assert!(
                reply == expected_reply(&request_of(tag)),
                "reply {tag:#x} differs"
            );
        }
    }

    /// Checks the reply B receives to `request` (a runt) is its [`expected_reply`], padded with
    /// zeros to the 60-byte minimum.
    pub fn expect_padded_reply(&self, request: &[u8]) {
        let reply = self.reply(aoe_tag(request), "B did not receive the reply");
        assert_eq!(
            reply.len(),
            ETH_MIN_FRAME_LEN,
            "runt reply not padded to 60 bytes"
        );
        assert_eq!(reply[..request.len()], expected_reply(request)[..]);
        assert!(
            reply[request.len()..].iter().all(|&b| b == 0),
            "padding not zero: {reply:02x?}"
        );
    }

    /// Checks the reply B receives to `request` is what [`build_long_reply`] made of it:
    /// `len` bytes, the request's header reflected, then the sector data.
    pub fn expect_long_reply(&self, request: &[u8], len: usize) {
        let reply = self.reply(aoe_tag(request), "B did not receive the long reply");
        assert_eq!(reply.len(), len);
        assert_eq!(reply[..request.len()], expected_reply(request)[..]);
        assert!(reply[AOE_ATA_HEADERS_LEN..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(i)));
    }

    /// Sends `count` requests from B (tags `0..count`), never more than `window` of them
    /// unanswered, until each was answered exactly once with a 60-byte response; returns how
    /// long that took.
    pub fn round_trips(&self, count: u32, window: u32) -> Duration {
        let began = Instant::now();
        let mut sent = 0;
        let mut seen = HashSet::new();
        let deadline = began + STREAM_WAIT;
        while seen.len() < count as usize {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} replies",
                seen.len()
            );
            while sent < count && sent - u32::try_from(seen.len()).unwrap() < window {
                self.peer.send(&self.request(None, REQUEST, sent));
                sent += 1;
            }
            let reply = self
                .peer
                .recv_matching(WAIT, |f| is_aoe(f) && f[14] == RESPONSE)
                .unwrap_or_else(|| panic!("reply stalled after {} of {count}", seen.len()));
            let tag = aoe_tag(&reply);
            assert!(tag < count, "unexpected tag {tag}");
            assert_eq!(reply.len(), ETH_MIN_FRAME_LEN);
            assert!(seen.insert(tag), "duplicate reply for tag {tag}");
        }
        began.elapsed()
    }

    /// Receives at B the `count` responses [`queue_responses`] queued (tags `0..count`), each
    /// once and padded to 60 bytes; `after` says what sent them, for the message.
    pub fn expect_responses(&self, count: u32, after: &str) {
        let mut seen = HashSet::new();
        while seen.len() < count as usize {
            let reply = self
                .peer
                .recv_matching(WAIT, |f| is_aoe(f) && f[14] == RESPONSE)
                .unwrap_or_else(|| panic!("only {} of {count} frames left {after}", seen.len()));
            assert_eq!(reply.len(), ETH_MIN_FRAME_LEN);
            assert!(seen.insert(aoe_tag(&reply)));
        }
    }
}

/// The calls the port tests make on either kind of port, as the ports name them; failures
/// panic.
pub trait TestPort {
    fn rx_burst(&mut self, max: usize) -> RxBurst;
    fn wait_rx(&mut self, timeout: Duration);
    fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8];
    fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8];
    fn alloc(&mut self) -> Option<Frame>;
    fn release(&mut self, frame: Frame);
    fn transmit(&mut self, frame: Frame, len: usize);
    fn flush_tx(&mut self) -> usize;
    fn reap_completions(&mut self) -> usize;
    fn refill(&mut self);
    fn frame_counts(&self) -> FrameCounts;
    fn slab_counts(&self) -> FrameCounts;
}

/// Implements [`TestPort`] for each port type by calling its own methods.
macro_rules! test_port {
    ($($port:ty),*) => {$(
        impl TestPort for $port {
            fn rx_burst(&mut self, max: usize) -> RxBurst {
                <$port>::rx_burst(self, max)
            }
            fn wait_rx(&mut self, timeout: Duration) {
                <$port>::wait_rx(self, timeout).unwrap();
            }
            fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
                NetPort::data(self, frame)
            }
            fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
                NetPort::data_mut(self, frame)
            }
            fn alloc(&mut self) -> Option<Frame> {
                NetPort::alloc(self)
            }
            fn release(&mut self, frame: Frame) {
                NetPort::release(self, frame);
            }
            fn transmit(&mut self, frame: Frame, len: usize) {
                NetPort::transmit(self, frame, len);
            }
            fn flush_tx(&mut self) -> usize {
                <$port>::flush_tx(self).unwrap()
            }
            fn reap_completions(&mut self) -> usize {
                <$port>::reap_completions(self)
            }
            fn refill(&mut self) {
                <$port>::refill(self).unwrap();
            }
            fn frame_counts(&self) -> FrameCounts {
                <$port>::frame_counts(self)
            }
            fn slab_counts(&self) -> FrameCounts {
                <$port>::slab_counts(self)
            }
        }
    )*};
}

test_port!(PacketPort, XskPort);

/// The next frame at the port, or `None` after `timeout`.
pub fn recv_one(port: &mut impl TestPort, timeout: Duration) -> Option<Frame> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(frame) = port.rx_burst(1).next() {
            return Some(frame);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        port.wait_rx(left.min(Duration::from_millis(50)));
    }
}

/// Panics with `what` and the frame's bytes if a frame reaches the port within `timeout`.
pub fn assert_no_frame(port: &mut impl TestPort, timeout: Duration, what: &str) {
    if let Some(stray) = recv_one(port, timeout) {
        let bytes = port.data(&stray).to_vec();
        port.release(stray);
        panic!("{what}: {bytes:02x?}");
    }
}

/// Turns `frame` (a received request of `frame.len()` bytes) into its reply in place and queues
/// it. Bytes past the request are dirtied first, so missing padding would show on the wire.
pub fn reflect(port: &mut impl TestPort, mut frame: Frame) {
    let len = frame.len();
    let buf = port.data_mut(&mut frame);
    swap_macs(buf);
    let offset = aoe_offset(buf);
    buf[offset] |= 0x08;
    let dirty = (len + 64).min(buf.len());
    buf[len..dirty].fill(0xEE);
    port.transmit(frame, len);
}

/// Turns the request in `buf` into a reply longer than it, in place: MACs swapped, response
/// flag set, then 1024 bytes of "sector data" ([`pattern`]) after the AoE ATA header; returns
/// the reply's length.
pub fn build_long_reply(buf: &mut [u8]) -> usize {
    let len = AOE_ATA_HEADERS_LEN + 1024;
    swap_macs(buf);
    buf[14] |= 0x08;
    for (i, byte) in buf[AOE_ATA_HEADERS_LEN..len].iter_mut().enumerate() {
        *byte = pattern(i);
    }
    len
}

/// Sends the VLAN-tagged `request` from B; checks `port` receives it whole, tag and all, with
/// its payload off the 512-byte boundary (the tag shifts it: the case the dataplane must
/// bounce-copy) at the offset `umem_offset` gives; reflects it and checks B gets the tagged
/// reply.
pub fn reflect_tagged<P: TestPort>(
    port: &mut P,
    rig: &Rig,
    request: &[u8],
    umem_offset: impl FnOnce(&P, &Frame) -> usize,
) {
    rig.peer.send(request);
    let frame = recv_one(port, WAIT).expect("VLAN-tagged request did not reach the port");
    assert_eq!(port.data(&frame), request, "tag not restored");
    assert!(!payload_is_aligned(
        umem_offset(port, &frame),
        AOE_ATA_HEADERS_LEN + 4
    ));
    reflect(port, frame);
    port.flush_tx();
    let reply = rig.tagged_reply("B did not receive the tagged reply");
    assert_eq!(reply[..request.len()], expected_reply(request)[..]);
    assert_eq!(reply.len(), ETH_MIN_FRAME_LEN);
}

/// Sends `long` from B and answers it on `port` with a reply longer than the request, built in
/// the request's frame by [`build_long_reply`] (`check_buffer` sees the frame's whole buffer
/// first); checks B receives it ([`Rig::expect_long_reply`]) and returns its length.
pub fn reply_longer_than_request(
    port: &mut impl TestPort,
    rig: &Rig,
    long: &[u8],
    check_buffer: impl FnOnce(&[u8]),
) -> usize {
    rig.peer.send(long);
    let mut frame = recv_one(port, WAIT).expect("second request did not reach the port");
    let buf = port.data_mut(&mut frame);
    check_buffer(buf);
    let reply_len = build_long_reply(buf);
    port.transmit(frame, reply_len);
    port.flush_tx();
    rig.expect_long_reply(long, reply_len);
    reply_len
}

/// Reflects `count` requests as they come, in bursts of up to 32, as a worker would; returns
/// the number of bursts.
pub fn reflect_count(port: &mut impl TestPort, count: u32) -> u32 {
    let deadline = Instant::now() + STREAM_WAIT;
    let mut reflected = 0;
    let mut bursts = 0;
    while reflected < count {
        assert!(
            Instant::now() < deadline,
            "only {reflected} of {count} reflected"
        );
        port.reap_completions();
        port.refill();
        let burst = port.rx_burst(32);
        if burst.len() == 0 {
            drop(burst);
            port.wait_rx(Duration::from_millis(10));
            continue;
        }
        bursts += 1;
        for frame in burst {
            reflect(port, frame);
            reflected += 1;
        }
        port.flush_tx();
    }
    bursts
}

/// Queues `count` responses from A to B (tags `0..count`), each built in a frame of its own
/// from `alloc`.
pub fn queue_responses(port: &mut impl TestPort, rig: &Rig, count: u32) {
    for tag in 0..count {
        let mut frame = port.alloc().expect("free frame");
        assert!(frame.is_empty());
        let bytes = rig.response(tag);
        port.data_mut(&mut frame)[..bytes.len()].copy_from_slice(&bytes);
        port.transmit(frame, bytes.len());
    }
}

/// Flushes, reaps and refills until the frame counts are back at `start` and every slab is
/// free.
pub fn settle(port: &mut impl TestPort, start: FrameCounts) {
    let deadline = Instant::now() + WAIT;
    let slabs_free = |slabs: FrameCounts| slabs.free == slabs.total();
    while port.frame_counts() != start || !slabs_free(port.slab_counts()) {
        assert!(
            Instant::now() < deadline,
            "frames not returned: {:?} != {start:?}, slabs {:?}",
            port.frame_counts(),
            port.slab_counts()
        );
        port.flush_tx();
        port.reap_completions();
        port.refill();
        std::thread::sleep(Duration::from_millis(1));
    }
}

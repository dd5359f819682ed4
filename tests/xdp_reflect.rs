//! Real-kernel test of the XDP program and `XskPort`: a veth pair between two fresh network
//! namespaces; side A runs `aoe_xdp` and an AF_XDP socket on queue 0, side B injects frames with
//! a raw socket and captures what comes back (the rig and the steps it shares with
//! `packet_port` are in `common::ports`).
//!
//! Needs root; prints "skipping: ..." otherwise (or fails with `AOE_XDP_REQUIRE_PRIV=1`).

mod common;

use std::time::{Duration, Instant};

use aoe_xdp::sys::frame::Frame;
use aoe_xdp::sys::layout::{
    payload_is_aligned, AOE_ATA_HEADERS_LEN, FRAME_CAPACITY, FRAME_SIZE, PACKET_OFFSET,
    PAYLOAD_ALIGN, PAYLOAD_OFFSET, SLAB_CAPACITY,
};
use aoe_xdp::sys::napi::NapiWait;
use aoe_xdp::sys::xdp::loader::{attached_program, detach_stale, AttachMode, XdpMode, XdpProgram};
use aoe_xdp::sys::xdp::xsk::{
    BindMode, BindPreference, BusyPoll, BusyPollReach, XskConfig, XskPort,
};
use aoe_xdp::sys::xdp::DstFilter;
use common::frames::{
    aoe_frame, aoe_tag, expected_reply, is_aoe, swap_macs, ETH_P_AOE, FOREIGN_MAC, GROUP_MAC,
    QUIET, REQUEST, RESPONSE, WAIT,
};
use common::netns::{beside, in_netns, PacketSocket};
use common::ports::{
    assert_no_frame, queue_responses, recv_one, reflect, reflect_count, reflect_tagged,
    reply_longer_than_request, settle, Rig,
};
use netns_rig::{leftover_namespaces, privileged_or_skip, Netns, Veth};

/// Runs a check in several XDP modes, one test each: `test(tag, requested mode, mode the
/// program must end up attached in)`.
macro_rules! in_modes {
    ($($check:ident: $($test:ident($tag:literal, $mode:ident, $attached:ident)),*;)*) => {$($(
        #[test]
        fn $test() {
            $check($tag, XdpMode::$mode, AttachMode::$attached);
        }
    )*)*};
}

in_modes! {
    reflect_request:
        test_reflect_native("native", Native, Native),
        test_reflect_generic("generic", Generic, Generic),
        test_auto_mode_picks_native_on_veth("auto", Auto, Native);
    jumbo_round_trip:
        test_jumbo_request_is_one_frame_and_reply_leaves_intact_native("jumbonat", Native, Native),
        test_jumbo_request_is_one_frame_and_reply_leaves_intact_generic("jumbogen", Generic, Generic);
}

fn small_config() -> XskConfig {
    // 256 frames = 128 (fill ring) + 128 (held, queued, on the TX ring).
    XskConfig {
        frame_count: 256,
        fill_ring_size: 128,
        comp_ring_size: 128,
        rx_ring_size: 128,
        tx_ring_size: 128,
        bind: BindPreference::Auto,
    }
}

/// Attaches the program in `mode` and binds a port on queue 0 of side A (call inside ns A).
fn setup_a(rig: &Rig, mode: XdpMode) -> (XdpProgram, XskPort) {
    let program = XdpProgram::attach(rig.veth.a.ifindex, mode, DstFilter::Own(rig.veth.a.mac))
        .expect("attach XDP");
    let port = XskPort::bind(&rig.veth.a.name, 0, &small_config()).expect("bind XSK");
    program
        .insert_socket(0, port.fd())
        .expect("insert socket into xsks_map");
    eprintln!(
        "veth: XDP attach mode {:?}, XSK bind mode {:?}",
        program.mode(),
        port.bind_mode()
    );
    (program, port)
}

/// Asserts the socket dropped nothing and the kernel found no invalid descriptor.
fn assert_nothing_dropped(port: &XskPort) {
    let stats = port.stats().unwrap();
    assert_eq!(
        stats.rx_dropped + stats.rx_invalid_descs + stats.tx_invalid_descs,
        0,
        "{stats:?}"
    );
}

/// (a) A request reaches the XSK byte for byte, at the documented UMEM offset; the reply built
/// in the same frame reaches B padded to 60 bytes; a reply longer than the request works too.
fn reflect_request(tag: &str, mode: XdpMode, expect_mode: AttachMode) {
    let Some(rig) = Rig::new(tag) else { return };
    let short = rig.request(None, REQUEST, 0x1234_5678);
    let long = rig.request(None, REQUEST, 0x0BAD_CAFE);
    in_netns(&rig.ns_a, || {
        let (program, mut port) = setup_a(&rig, mode);
        assert_eq!(program.mode(), expect_mode);
        assert_eq!(
            port.bind_mode(),
            BindMode::Copy,
            "veth has no zero-copy AF_XDP"
        );
        let start = port.frame_counts();
        assert_eq!(start.fill, 128);
        // MTU 1500: no multi-buffer, no slabs, one chunk per frame.
        assert!(!port.multi_buffer());
        assert!(port.slab_arena().is_none());
        assert_eq!(port.slab_counts().total(), 0);
        assert_eq!(port.max_frame_len(), FRAME_CAPACITY);
        assert_eq!(port.umem_len(), 256 * FRAME_SIZE);

        rig.peer.send(&short);
        let frame = recv_one(&mut port, WAIT).expect("AoE request did not reach the XSK");
        assert_eq!(port.data(&frame), &short[..]);
        // Layout: packet at chunk + 476, so the byte after a 36-byte AoE ATA header is at
        // chunk + 512, 512-aligned; the frame can be written up to the chunk end.
        let offset = port.umem_offset(&frame);
        assert_eq!(offset % FRAME_SIZE, PACKET_OFFSET);
        assert!(payload_is_aligned(offset, AOE_ATA_HEADERS_LEN));
        assert_eq!((offset + AOE_ATA_HEADERS_LEN) % PAYLOAD_ALIGN, 0);
        assert_eq!(port.frame_capacity(&frame), FRAME_SIZE - PACKET_OFFSET);
        let in_umem = port.umem_base_ptr().as_ptr().wrapping_add(offset);
        assert_eq!(port.data(&frame).as_ptr(), in_umem.cast_const());
        assert!(offset + FRAME_SIZE - PACKET_OFFSET <= port.umem_len());
        reflect(&mut port, frame);
        port.flush_tx().unwrap();
        rig.expect_padded_reply(&short);

        // A reply longer than its request.
        reply_longer_than_request(&mut port, &rig, &long, |buf| {
            assert!(buf.len() >= AOE_ATA_HEADERS_LEN + 1024);
        });

        let counters = program.counters().unwrap();
        assert_eq!(counters.redirected, 2);
        assert_eq!(counters.passed_response, 0);
        settle(&mut port, start);
        assert_nothing_dropped(&port);
    });
}

/// veth has no zero-copy AF_XDP: a forced zero-copy bind fails with a hint, Auto falls back.
#[test]
fn test_zero_copy_refused_on_veth() {
    let Some(rig) = Rig::new("zc") else { return };
    in_netns(&rig.ns_a, || {
        let _program = XdpProgram::attach(
            rig.veth.a.ifindex,
            XdpMode::Native,
            DstFilter::Own(rig.veth.a.mac),
        )
        .unwrap();
        let forced = XskConfig {
            bind: BindPreference::ZeroCopy,
            ..small_config()
        };
        let error = XskPort::bind(&rig.veth.a.name, 0, &forced).expect_err("veth zero-copy");
        let text = error.to_string();
        assert!(
            text.contains("zero-copy") && text.contains("use copy mode"),
            "{text}"
        );
        let source = std::error::Error::source(&error).and_then(std::error::Error::source);
        let errno = source
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(|e| e.raw_os_error());
        assert_eq!(errno, Some(libc::EOPNOTSUPP), "{error:?}");
        let port = XskPort::bind(&rig.veth.a.name, 0, &small_config()).expect("Auto falls back");
        assert_eq!(port.bind_mode(), BindMode::Copy);
        let copy = XskConfig {
            bind: BindPreference::Copy,
            ..small_config()
        };
        let busy = XskPort::bind(&rig.veth.a.name, 0, &copy).expect_err("second socket on queue 0");
        assert!(busy.to_string().contains("already bound"), "{busy}");
    });
}

/// The program is frags-aware, so native XDP on veth accepts a 9000-byte MTU (without frags
/// support veth refuses it with ERANGE).
#[test]
fn test_jumbo_mtu_attaches_native() {
    let Some(rig) = Rig::with_mtu("jumbo", 9000) else {
        return;
    };
    in_netns(&rig.ns_a, || {
        let program = XdpProgram::attach(
            rig.veth.a.ifindex,
            XdpMode::Auto,
            DstFilter::Own(rig.veth.a.mac),
        )
        .expect("Auto");
        assert_eq!(program.mode(), AttachMode::Native);
    });
}

/// Where native XDP is refused (here: veth wants at least as many RX queues as its peer has TX
/// queues), the error says why and Auto falls back to generic mode.
#[test]
fn test_native_refused_falls_back_to_generic() {
    if !privileged_or_skip() {
        return;
    }
    let ns_a = Netns::unique("nofrag-a").unwrap();
    let ns_b = Netns::unique("nofrag-b").unwrap();
    let veth = Veth::new(&ns_a, "aoexa", &ns_b, "aoexb")
        .mtu(9000)
        .b_tx_queues(2)
        .create()
        .unwrap();
    in_netns(&ns_a, || {
        let error = XdpProgram::attach(veth.a.ifindex, XdpMode::Native, DstFilter::Own(veth.a.mac))
            .expect_err("native refused");
        assert!(error.to_string().contains("native"), "{error}");
        let program = XdpProgram::attach(veth.a.ifindex, XdpMode::Auto, DstFilter::Own(veth.a.mac))
            .expect("Auto");
        assert_eq!(program.mode(), AttachMode::Generic);
    });
}

/// (b) A request behind one 802.1Q tag is redirected too, tag intact, and can be reflected.
#[test]
fn test_vlan_request_reaches_xsk() {
    let Some(rig) = Rig::new("vlan") else { return };
    let request = rig.request(Some(42), REQUEST, 0x0000_0042);
    in_netns(&rig.ns_a, || {
        let (program, mut port) = setup_a(&rig, XdpMode::Native);
        let start = port.frame_counts();
        reflect_tagged(&mut port, &rig, &request, XskPort::umem_offset);
        assert_eq!(program.counters().unwrap().redirected, 1);
        settle(&mut port, start);
    });
}

/// (c) and (d): AoE responses and other ethertypes pass to the kernel stack, not the XSK.
#[test]
fn test_responses_and_non_aoe_pass_to_kernel() {
    let Some(rig) = Rig::new("pass") else { return };
    let response = rig.request(None, RESPONSE, 0x5EED_0001);
    let mut other = rig.request(None, REQUEST, 0x5EED_0002);
    other[12..14].copy_from_slice(&0x88B5u16.to_be_bytes()); // IEEE local experimental
    let mut bad_version = rig.request(None, REQUEST, 0x5EED_0003);
    bad_version[14] = 0x20; // AoE version 2
    let kernel_side = PacketSocket::open(&rig.ns_a, &rig.veth.a.name);
    in_netns(&rig.ns_a, || {
        let (program, mut port) = setup_a(&rig, XdpMode::Native);
        let before = program.counters().unwrap();
        for (frame, what) in [
            (&response, "response"),
            (&other, "0x88B5"),
            (&bad_version, "version 2"),
        ] {
            rig.peer.send(frame);
            let seen = kernel_side
                .recv_matching(WAIT, |f| f == &frame[..])
                .unwrap_or_else(|| panic!("{what} frame did not reach the kernel stack on A"));
            assert_eq!(seen, *frame);
            let redirected = format!("{what} frame was redirected to the XSK");
            assert_no_frame(&mut port, QUIET, &redirected);
        }
        let after = program.counters().unwrap();
        assert_eq!(after.passed_response - before.passed_response, 1);
        assert_eq!(after.passed_malformed - before.passed_malformed, 1);
        // At least our 0x88B5 frame; IPv6 link-local chatter on the fresh link may add more.
        assert!(after.passed_non_aoe > before.passed_non_aoe);
        assert_eq!(after.redirected, 0);
    });
}

/// (c') A request for another host (a foreign unicast MAC, or a multicast group) passes to the
/// kernel stack (XDP_PASS, so a bridge or capture on A still sees it), not the XSK, and is
/// counted in its RX queue's `passed_foreign_dst`; a broadcast request is redirected. The
/// program reads the MAC it was given back from its map.
#[test]
fn test_foreign_destination_passes_to_kernel() {
    let Some(rig) = Rig::new("fdst") else { return };
    let b = rig.veth.b.mac;
    let foreign = aoe_frame(FOREIGN_MAC, b, None, REQUEST, 0xF0_0001);
    let group = aoe_frame(GROUP_MAC, b, None, REQUEST, 0xF0_0002);
    let broadcast = aoe_frame([0xFF; 6], b, None, REQUEST, 0xF0_0003);
    let kernel_side = PacketSocket::open(&rig.ns_a, &rig.veth.a.name);
    in_netns(&rig.ns_a, || {
        let (program, mut port) = setup_a(&rig, XdpMode::Native);
        assert_eq!(
            program.dst_filter().unwrap(),
            DstFilter::Own(rig.veth.a.mac)
        );
        let queue = program.queue_counters(0).expect("queue 0 counters");
        let start = port.frame_counts();
        for (frame, what) in [(&foreign, "foreign unicast"), (&group, "multicast")] {
            rig.peer.send(frame);
            kernel_side
                .recv_matching(WAIT, |f| f == &frame[..])
                .unwrap_or_else(|| panic!("{what} request did not reach the kernel stack on A"));
            let redirected = format!("{what} request was redirected to the XSK");
            assert_no_frame(&mut port, QUIET, &redirected);
        }
        let counters = queue.read().unwrap();
        assert_eq!(counters.passed_foreign_dst, 2, "{counters:?}");
        assert_eq!(counters.redirected, 0, "{counters:?}");
        assert_eq!(program.counters().unwrap().passed_foreign_dst, 2);
        assert_eq!(
            program.queue_counters(1).unwrap().read().unwrap(),
            Default::default()
        );

        rig.peer.send(&broadcast);
        let frame = recv_one(&mut port, WAIT).expect("broadcast request did not reach the XSK");
        assert_eq!(port.data(&frame), &broadcast[..]);
        port.release(frame);
        assert_eq!(queue.read().unwrap().redirected, 1);
        settle(&mut port, start);
    });
}

/// (c'') With `DstFilter::Any` a request for another host is redirected like our own.
#[test]
fn test_any_destination_is_redirected() {
    let Some(rig) = Rig::new("anyd") else { return };
    let foreign = aoe_frame(FOREIGN_MAC, rig.veth.b.mac, None, REQUEST, 0xF0_0011);
    in_netns(&rig.ns_a, || {
        let program = XdpProgram::attach(rig.veth.a.ifindex, XdpMode::Native, DstFilter::Any)
            .expect("attach XDP");
        assert_eq!(program.dst_filter().unwrap(), DstFilter::Any);
        let mut port = XskPort::bind(&rig.veth.a.name, 0, &small_config()).expect("bind XSK");
        program.insert_socket(0, port.fd()).expect("insert socket");
        let start = port.frame_counts();
        rig.peer.send(&foreign);
        let frame = recv_one(&mut port, WAIT).expect("foreign request not redirected with Any");
        assert_eq!(port.data(&frame), &foreign[..]);
        port.release(frame);
        let counters = program.counters().unwrap();
        assert_eq!(
            (counters.redirected, counters.passed_foreign_dst),
            (1, 0),
            "{counters:?}"
        );
        settle(&mut port, start);
    });
}

/// What `ip -d link show` says of side A's interface (an attached program shows as `prog/xdp`).
fn link_details(rig: &Rig) -> String {
    let name = &rig.veth.a.name;
    rig.ns_a.ip(&["-d", "link", "show", "dev", name]).unwrap()
}

/// (e) Dropping the program detaches it (netlink query and `ip -d link show` agree); nobody
/// else can detach a linked program (`ip link set ... xdp off` fails while it is held); a
/// netlink-attached `aoe_xdp` left behind (by `ip link`, or an earlier version after a crash) is
/// found and removed by `detach_stale`; a second attach while one is attached fails with a hint
/// instead of replacing it.
#[test]
fn test_detach_on_drop_and_stale_cleanup() {
    let Some(rig) = Rig::new("detach") else {
        return;
    };
    let ifindex = rig.veth.a.ifindex;
    let name = rig.veth.a.name.clone();
    let prog_id = in_netns(&rig.ns_a, || {
        let program = XdpProgram::attach(ifindex, XdpMode::Auto, DstFilter::Own(rig.veth.a.mac))
            .expect("attach");
        let attached = attached_program(ifindex)
            .unwrap()
            .expect("program attached");
        assert_eq!(attached.id, program.program_id());
        assert_eq!(attached.mode, AttachMode::Native);
        assert_eq!(attached.name, "aoe_xdp");
        let second = XdpProgram::attach(ifindex, XdpMode::Native, DstFilter::Own(rig.veth.a.mac))
            .expect_err("double attach");
        assert!(second.to_string().contains("already attached"), "{second}");
        // Neither the failed second attach nor `ip link` disturbs the first.
        let off = rig.ns_a.ip(&["link", "set", "dev", &name, "xdp", "off"]);
        assert!(off.is_err(), "ip link detached a linked program: {off:?}");
        assert_eq!(
            attached_program(ifindex).unwrap().map(|p| p.id),
            Some(program.program_id())
        );
        program.program_id()
    });
    let shown = link_details(&rig);
    assert!(
        !shown.contains("prog/xdp"),
        "XDP program {prog_id} still attached:\n{shown}"
    );
    in_netns(&rig.ns_a, || {
        assert_eq!(attached_program(ifindex).unwrap(), None);
        assert_eq!(detach_stale(ifindex).unwrap(), None, "nothing to clean up");
    });
    // A leftover attached through netlink, which outlives its process.
    let object = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/aoe_xdp.bpf.o");
    rig.ns_a
        .ip(&[
            "link",
            "set",
            "dev",
            &name,
            "xdpgeneric",
            "obj",
            object,
            "sec",
            "xdp.frags",
        ])
        .expect("ip link loads the object");
    in_netns(&rig.ns_a, || {
        let leftover = attached_program(ifindex)
            .unwrap()
            .expect("leftover attached");
        assert_eq!(
            (leftover.mode, leftover.name.as_str()),
            (AttachMode::Generic, "aoe_xdp")
        );
        assert_eq!(detach_stale(ifindex).unwrap(), Some(leftover.id));
        assert_eq!(attached_program(ifindex).unwrap(), None);
    });
    let shown = link_details(&rig);
    assert!(
        !shown.contains("prog/xdp"),
        "stale program still attached:\n{shown}"
    );
}

/// (f) 2000 requests, at most 64 in flight, all reflected; every frame back in its pool.
#[test]
fn test_burst_reflects_all_without_leaks() {
    const COUNT: u32 = 2000;
    const WINDOW: u32 = 64;
    let Some(rig) = Rig::new("burst") else { return };
    let reflect = |ready: &dyn Fn()| {
        let (program, mut port) = setup_a(&rig, XdpMode::Native);
        let reach = port
            .set_busy_poll(BusyPoll {
                prefer: true,
                usecs: 20,
                budget: 16,
            })
            .unwrap();
        // What the README says of veth: the kernel ties its sockets to no NAPI, so busy
        // polling cannot move the receive path into the worker.
        assert_eq!(reach, BusyPollReach::NoNapi);
        let start = port.frame_counts();
        ready();
        reflect_count(&mut port, COUNT);
        // Nor at the first frame (where Linux before 6.13 ties the socket): still no NAPI,
        // and the port makes no busy-poll calls.
        assert_eq!(port.busy_poll_reach().unwrap(), BusyPollReach::NoNapi);
        assert!(!port.busy_polling());
        settle(&mut port, start);
        assert_eq!(port.frame_counts(), start);
        assert_eq!(port.frame_counts().total(), 256);
        assert_eq!(program.counters().unwrap().redirected, u64::from(COUNT));
        port.stats().unwrap()
    };
    let (stats, _) = beside(&rig.ns_a, reflect, || rig.round_trips(COUNT, WINDOW));
    assert_eq!(stats.rx_dropped + stats.rx_ring_full, 0, "{stats:?}");
}

/// veth's one NAPI, listed through netlink once XDP turned it on, can be busy-polled by a
/// [`NapiWait`] although the socket is tied to none: each of 300 requests sent one at a time
/// wakes the wait (which polls that NAPI before it sleeps), and is reflected.
#[test]
fn test_a_napi_wait_on_veth_wakes_for_each_frame() {
    const COUNT: u32 = 300;
    let Some(rig) = Rig::new("napiw") else { return };
    let serve = |ready: &dyn Fn()| {
        let (_program, mut port) = setup_a(&rig, XdpMode::Native);
        let ids = aoe_xdp::sys::napi::interface_napis(rig.veth.a.ifindex).unwrap();
        assert_eq!(ids.len(), 1, "one NAPI for veth's one queue: {ids:?}");
        let mut wait = NapiWait::new(&ids, Duration::from_micros(200)).unwrap();
        ready();
        let mut woken = 0;
        for _ in 0..COUNT {
            let mut fds = aoe_xdp::sys::napi::pollfds([port.fd()]);
            if wait.poll(&mut fds, Duration::from_secs(5)).unwrap() == 1 {
                assert_ne!(fds[0].revents & libc::POLLIN, 0);
                woken += 1;
            }
            reflect_count(&mut port, 1);
        }
        woken
    };
    let (woken, _) = beside(&rig.ns_a, serve, || rig.round_trips(COUNT, 1));
    assert_eq!(woken, COUNT, "a wait ended without a frame");
}

/// Receives exactly `count` frames without refilling (each checked to be the AoE request with
/// the next tag from `first`) and frees them.
fn drain_without_refill(port: &mut XskPort, first: u32, count: u32) {
    let deadline = Instant::now() + WAIT;
    let mut tag = first;
    while tag < first + count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} arrived",
            tag - first
        );
        let burst = port.rx_burst(64);
        if burst.len() == 0 {
            // Not `wait_rx`: that fills the whole ring before it sleeps.
            drop(burst);
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let frames: Vec<Frame> = burst.collect();
        for frame in frames {
            assert_eq!(
                aoe_tag(port.data(&frame)),
                tag,
                "frames out of order or lost"
            );
            tag += 1;
            port.release(frame);
        }
    }
}

/// The fill ring starts shallow (hot frames) and deepens, for good, after a burst that left
/// less than a quarter of it; before sleeping the port fills the whole ring; no frame is
/// dropped on the way.
#[test]
fn test_fill_ring_starts_shallow_and_deepens_after_a_burst() {
    use aoe_xdp::sys::xdp::xsk::FILL_TARGET_START;
    let Some(rig) = Rig::new("fill") else { return };
    let rig = &rig;
    let (a_mac, b_mac) = (rig.veth.a.mac, rig.veth.b.mac);
    let config = XskConfig {
        frame_count: 4096,
        fill_ring_size: 1024,
        comp_ring_size: 1024,
        rx_ring_size: 1024,
        tx_ring_size: 1024,
        bind: BindPreference::Auto,
    };
    let big = FILL_TARGET_START / 4 * 3 + 10;
    let small = FILL_TARGET_START / 2;
    // More than the deepened target; leaves more than a quarter of it of the full ring.
    let large = FILL_TARGET_START * 3;
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
        let receiver = scope.spawn(|| {
            in_netns(&rig.ns_a, move || {
                let program = XdpProgram::attach(
                    rig.veth.a.ifindex,
                    XdpMode::Native,
                    DstFilter::Own(rig.veth.a.mac),
                )
                .unwrap();
                let mut port = XskPort::bind(&rig.veth.a.name, 0, &config).unwrap();
                program.insert_socket(0, port.fd()).unwrap();
                assert_eq!(port.fill_target(), FILL_TARGET_START);
                assert_eq!(port.frame_counts().fill, FILL_TARGET_START);
                // A burst of `big` frames arrives before the next refill.
                ready_tx.send(()).unwrap();
                sent_rx.recv_timeout(WAIT).expect("burst not sent");
                drain_without_refill(&mut port, 0, big);
                port.refill().unwrap();
                let deeper = FILL_TARGET_START * 2;
                assert_eq!(
                    port.fill_target(),
                    deeper,
                    "the burst did not deepen the ring"
                );
                assert_eq!(port.frame_counts().fill, deeper);
                // A burst of less than three quarters of the new depth leaves it alone.
                ready_tx.send(()).unwrap();
                sent_rx.recv_timeout(WAIT).expect("second burst not sent");
                drain_without_refill(&mut port, big, small);
                port.refill().unwrap();
                assert_eq!(
                    port.fill_target(),
                    deeper,
                    "a small burst changed the depth"
                );
                // Before it sleeps, a worker gives the kernel the whole ring: a burst larger
                // than the target, arriving while it sleeps, finds room and deepens nothing,
                // and the ring drains back to the target as the worker refills.
                assert!(!port.wait_rx(Duration::from_millis(10)).unwrap());
                assert_eq!(port.frame_counts().fill, 1024);
                ready_tx.send(()).unwrap();
                sent_rx.recv_timeout(WAIT).expect("third burst not sent");
                drain_without_refill(&mut port, big + small, large);
                port.refill().unwrap();
                assert_eq!(port.fill_target(), deeper);
                assert_eq!(
                    port.frame_counts().fill,
                    deeper,
                    "refill did not go back to the target"
                );
                let stats = port.stats().unwrap();
                assert_eq!(
                    stats.rx_dropped + stats.rx_ring_full + stats.rx_fill_ring_empty_descs,
                    0,
                    "{stats:?}"
                );
                assert_eq!(
                    program.counters().unwrap().redirected,
                    u64::from(big + small + large)
                );
            })
        });
        let mut tag = 0;
        for count in [big, small, large] {
            ready_rx.recv_timeout(WAIT).expect("receiver not ready");
            for _ in 0..count {
                rig.peer.send(&aoe_frame(a_mac, b_mac, None, REQUEST, tag));
                tag += 1;
            }
            sent_tx.send(()).unwrap();
        }
        receiver.join().unwrap();
    });
}

/// Frames built from scratch with `alloc` (as for an advertisement), 100 of them sent by ONE
/// `flush_tx`: copy mode sends at most 32 frames per `sendto`, so the flush must keep kicking.
#[test]
fn test_alloc_and_large_flush() {
    const COUNT: u32 = 100;
    let Some(rig) = Rig::new("alloc") else { return };
    in_netns(&rig.ns_a, || {
        let (_program, mut port) = setup_a(&rig, XdpMode::Native);
        let start = port.frame_counts();
        queue_responses(&mut port, &rig, COUNT);
        assert_eq!(port.frame_counts().tx, COUNT);
        assert_eq!(port.flush_tx().unwrap(), COUNT as usize);
        rig.expect_responses(COUNT, "after one flush_tx");
        settle(&mut port, start);
    });
}

/// Namespaces are deleted with their guards: none of this test's are left once it is done.
#[test]
fn test_namespaces_are_cleaned_up() {
    if !privileged_or_skip() {
        return;
    }
    let name = {
        let ns = Netns::unique("cleanup").unwrap();
        assert!(leftover_namespaces()
            .unwrap()
            .contains(&ns.name().to_owned()));
        ns.name().to_owned()
    };
    assert!(!leftover_namespaces().unwrap().contains(&name));
}

/// Sectors per request at MTU 9000: (9000 - 36) / 512.
const JUMBO_SECTORS: usize = 17;
/// An untagged AoE ATA frame carrying 17 sectors.
const JUMBO_LEN: usize = AOE_ATA_HEADERS_LEN + JUMBO_SECTORS * 512;

/// Sector data byte `i` of the frame with tag `tag`.
fn sector_byte(tag: u32, i: usize) -> u8 {
    u8::try_from((i * 7 + tag as usize) % 251).unwrap()
}

/// An AoE ATA request from B to A: a `sectors`-sector WRITE with its data (a jumbo frame for
/// 17 sectors), or a READ (the 36 header bytes only).
fn ata_request(rig: &Rig, tag: u32, sectors: usize, write: bool) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&rig.veth.a.mac);
    frame.extend_from_slice(&rig.veth.b.mac);
    frame.extend_from_slice(&ETH_P_AOE.to_be_bytes());
    frame.extend_from_slice(&[REQUEST, 0, 0, 7, 3, 0]); // ver/flags, error, major 7, minor 3, ATA
    frame.extend_from_slice(&tag.to_be_bytes());
    let sector_count = u8::try_from(sectors).unwrap();
    let (aflags, command) = if write { (0x41, 0x35) } else { (0x40, 0x25) };
    frame.extend_from_slice(&[aflags, 0, sector_count, command, 8, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(frame.len(), AOE_ATA_HEADERS_LEN);
    if write {
        frame.extend((0..sectors * 512).map(|i| sector_byte(tag, i)));
    }
    frame
}

/// Builds, in `frame`, the reply to the request it holds: MACs swapped, response flag set,
/// `sectors` of data derived from `data_tag`; returns the reply length.
fn build_reply(port: &XskPort, frame: &mut Frame, sectors: usize, data_tag: u32) -> usize {
    let buf = port.data_mut(frame);
    swap_macs(buf);
    buf[14] |= 0x08;
    let end = AOE_ATA_HEADERS_LEN + sectors * 512;
    for (i, byte) in buf[AOE_ATA_HEADERS_LEN..end].iter_mut().enumerate() {
        *byte = sector_byte(data_tag, i);
    }
    end
}

/// What `build_reply` makes of `request`.
fn expected_data_reply(request: &[u8], sectors: usize, data_tag: u32) -> Vec<u8> {
    let mut reply = expected_reply(&request[..AOE_ATA_HEADERS_LEN]);
    reply.extend((0..sectors * 512).map(|i| sector_byte(data_tag, i)));
    reply
}

/// A 17-sector WRITE (8740 bytes, three buffers in the kernel) reaches the XSK as ONE frame in
/// a slab, byte for byte, counted as one bounce; the slab lends as a chunk of the slab arena
/// with the payload 512-aligned; a 17-sector reply built in place leaves as a descriptor chain
/// and reaches B intact; frames and slabs all come back.
fn jumbo_round_trip(tag: &str, mode: XdpMode, expect_mode: AttachMode) {
    let Some(rig) = Rig::with_mtu(tag, 9000) else {
        return;
    };
    let request = ata_request(&rig, 0x1717, JUMBO_SECTORS, true);
    assert_eq!(request.len(), JUMBO_LEN);
    in_netns(&rig.ns_a, || {
        let (program, mut port) = setup_a(&rig, mode);
        assert_eq!(program.mode(), expect_mode);
        assert!(port.multi_buffer(), "XDP_USE_SG bind");
        assert_eq!(port.max_frame_len(), SLAB_CAPACITY);
        let start = port.frame_counts();
        let slabs = port.slab_counts();
        assert_eq!(
            (slabs.free, slabs.total()),
            (16, 16),
            "256 frames -> 16 slabs"
        );

        rig.peer.send(&request);
        let frame = recv_one(&mut port, WAIT).expect("jumbo request did not reach the XSK");
        assert!(port.is_slab(&frame));
        assert_eq!(frame.len(), JUMBO_LEN);
        assert!(port.data(&frame) == &request[..], "jumbo bytes differ");
        let stats = port.jumbo_stats();
        assert_eq!(stats.bounce_frames, 1);
        assert_eq!(stats.bounce_bytes, JUMBO_LEN as u64);
        assert_eq!(stats.rx_no_slab + stats.rx_too_long, 0);
        // The fragments' chunks went straight back; only the slab is held.
        assert_eq!(port.frame_counts().rx, 0);
        assert_eq!(port.slab_counts().rx, 1);
        assert_eq!(port.offset_in_chunk(&frame), PACKET_OFFSET);
        assert_eq!(port.frame_capacity(&frame), SLAB_CAPACITY);

        // Lent to storage: a chunk of the slab arena, packet at +476, payload 512-aligned.
        let arena = std::sync::Arc::clone(port.slab_arena().expect("slab arena"));
        let chunk = port.lend(frame);
        assert!(arena.owns(&chunk));
        assert!(!port.io_arena().owns(&chunk));
        let bytes = arena.bytes(&chunk);
        assert!(bytes[PACKET_OFFSET..PACKET_OFFSET + JUMBO_LEN] == request[..]);
        let payload = arena.base_ptr().addr() + arena.offset(&chunk) + PAYLOAD_OFFSET;
        assert_eq!(payload % PAYLOAD_ALIGN, 0);
        let mut frame = port.reclaim(chunk);
        assert_eq!(frame.len(), JUMBO_LEN);

        let len = build_reply(&port, &mut frame, JUMBO_SECTORS, 0x5151);
        assert_eq!(len, JUMBO_LEN);
        port.transmit(frame, len);
        assert_eq!(port.slab_counts().tx, 1);
        assert_eq!(port.flush_tx().unwrap(), 1);
        let reply = rig
            .peer
            .recv_matching(WAIT, |f| is_aoe(f) && f[14] == RESPONSE)
            .expect("B did not receive the jumbo reply");
        assert_eq!(reply.len(), JUMBO_LEN);
        assert!(reply == expected_data_reply(&request, JUMBO_SECTORS, 0x5151));
        settle(&mut port, start);
        assert_eq!(port.slab_counts(), slabs);
        assert_eq!(program.counters().unwrap().redirected, 1);
        assert_nothing_dropped(&port);
    });
}

/// A small READ request is upgraded into a slab so its 17-sector reply can be built in place;
/// a frame that already fits is returned unchanged; with no slab free, the frame comes back
/// (`Err`) and the refusal is counted.
#[test]
fn test_upgrade_for_jumbo_read_reply() {
    let Some(rig) = Rig::with_mtu("upgrade", 9000) else {
        return;
    };
    let read = ata_request(&rig, 0x2222, JUMBO_SECTORS, false);
    let second = ata_request(&rig, 0x3333, JUMBO_SECTORS, false);
    in_netns(&rig.ns_a, || {
        let (_program, mut port) = setup_a(&rig, XdpMode::Native);
        let start = port.frame_counts();

        rig.peer.send(&read);
        let frame = recv_one(&mut port, WAIT).expect("read request did not reach the XSK");
        assert!(!port.is_slab(&frame));
        assert_eq!(port.frame_capacity(&frame), FRAME_CAPACITY);
        let index = frame.index();
        let frame = port.upgrade(frame, 1024).expect("fits already");
        assert_eq!(frame.index(), index, "a frame that fits is not moved");
        assert_eq!(port.jumbo_stats().upgrades, 0);

        let mut frame = port.upgrade(frame, JUMBO_LEN).expect("a slab is free");
        assert!(port.is_slab(&frame));
        assert_eq!(port.data(&frame), &read[..]);
        assert_eq!(port.frame_counts().rx, 0, "the small frame was released");
        assert_eq!(port.jumbo_stats().upgrades, 1);
        let len = build_reply(&port, &mut frame, JUMBO_SECTORS, 0x7777);
        port.transmit(frame, len);
        port.flush_tx().unwrap();
        let reply = rig.reply(0x2222, "B did not receive the upgraded reply");
        assert!(reply == expected_data_reply(&read, JUMBO_SECTORS, 0x7777));
        settle(&mut port, start);

        // Every slab taken: the upgrade gives the frame back, nothing is lost.
        rig.peer.send(&second);
        let frame = recv_one(&mut port, WAIT).expect("second request");
        let held: Vec<Frame> = std::iter::from_fn(|| port.alloc_slab()).collect();
        assert_eq!(held.len(), 16);
        let frame = port.upgrade(frame, JUMBO_LEN).expect_err("no slab is free");
        assert_eq!(port.jumbo_stats().upgrade_no_slab, 1);
        assert_eq!(port.data(&frame), &second[..]);
        for slab in held {
            port.release(slab);
        }
        let frame = port
            .upgrade(frame, JUMBO_LEN)
            .expect("a slab is free again");
        port.release(frame);
        settle(&mut port, start);
    });
}

/// With every slab held, a jumbo request is dropped and counted, and its fragments go back.
#[test]
fn test_jumbo_without_free_slab_is_dropped_and_counted() {
    let Some(rig) = Rig::with_mtu("noslab", 9000) else {
        return;
    };
    let request = ata_request(&rig, 0x4444, JUMBO_SECTORS, true);
    let small = ata_request(&rig, 0x4445, 1, true);
    in_netns(&rig.ns_a, || {
        let (_program, mut port) = setup_a(&rig, XdpMode::Native);
        let start = port.frame_counts();
        let held: Vec<Frame> = std::iter::from_fn(|| port.alloc_slab()).collect();
        rig.peer.send(&request);
        rig.peer.send(&small);
        // Only the small request comes out; the jumbo one was dropped.
        let frame = recv_one(&mut port, WAIT).expect("small request");
        assert_eq!(port.data(&frame), &small[..]);
        port.release(frame);
        assert_eq!(port.jumbo_stats().rx_no_slab, 1);
        assert_eq!(port.jumbo_stats().bounce_frames, 0);
        for slab in held {
            port.release(slab);
        }
        settle(&mut port, start);
    });
}

/// 400 jumbo requests, 12 in flight (16 slabs), each reflected from its slab: every reply
/// arrives intact, and every frame and slab is back at the end.
#[test]
fn test_jumbo_rounds_without_leaks() {
    const ROUNDS: u32 = 400;
    const WINDOW: u32 = 12;
    let Some(rig) = Rig::with_mtu("jumboloop", 9000) else {
        return;
    };
    in_netns(&rig.ns_a, || {
        let (program, mut port) = setup_a(&rig, XdpMode::Native);
        let start = port.frame_counts();
        // Request `t` writes 1 + t % 17 sectors.
        let request_of = |t: u32| {
            let sectors = 1 + (t as usize % JUMBO_SECTORS);
            ata_request(&rig, t, sectors, true)
        };
        let mut tag = 0;
        while tag < ROUNDS {
            let batch: Vec<u32> = (tag..(tag + WINDOW).min(ROUNDS)).collect();
            for &t in &batch {
                rig.peer.send(&request_of(t));
            }
            for _ in &batch {
                let frame = recv_one(&mut port, WAIT).expect("request lost");
                reflect(&mut port, frame);
            }
            port.flush_tx().unwrap();
            port.reap_completions();
            port.refill().unwrap();
            rig.expect_reflected(batch.len(), request_of);
            tag += WINDOW;
        }
        settle(&mut port, start);
        let bounced = port.jumbo_stats().bounce_frames;
        // Requests of 8 sectors and more (36 + 4096 bytes) span more than one buffer.
        assert!(bounced >= u64::from(ROUNDS) / 2, "{bounced} bounces");
        assert_eq!(program.counters().unwrap().redirected, u64::from(ROUNDS));
        let stats = port.stats().unwrap();
        assert_eq!(stats.rx_dropped + stats.tx_invalid_descs, 0, "{stats:?}");
    });
}

/// Through the dataplane's `Port`: a 17-sector READ is fitted into a slab for its reply, a
/// 1-sector read and a write are left in place, and the port advertises the full 9000 MTU.
#[test]
fn test_port_fit_reply_on_af_xdp() {
    use aoe_xdp::aoe::Request;
    use aoe_xdp::dataplane::port::{NetPort, Port};
    let Some(rig) = Rig::with_mtu("fitreply", 9000) else {
        return;
    };
    // (request, fitted into a slab): the 17-sector READ is, the 1-sector read and the write
    // are not.
    let cases = [
        (ata_request(&rig, 0x6001, JUMBO_SECTORS, false), true),
        (ata_request(&rig, 0x6002, 1, false), false),
        (ata_request(&rig, 0x6003, 4, true), false),
    ];
    in_netns(&rig.ns_a, || {
        let (_program, xsk) = setup_a(&rig, XdpMode::Native);
        let mut port = Port::Xsk(xsk);
        assert_eq!(port.advertised_mtu(9000), 9000);
        assert_eq!(port.advertised_mtu(1500), 1500);
        assert_eq!(port.io_arenas().count(), 2);
        for (request, slab) in &cases {
            let slab = *slab;
            rig.peer.send(request);
            let deadline = Instant::now() + WAIT;
            let frame = loop {
                let mut burst = port.new_burst();
                port.rx_burst_into(&mut burst, 1);
                if let Some(frame) = burst.next() {
                    break frame;
                }
                assert!(Instant::now() < deadline, "request did not arrive");
                port.wait_rx(Duration::from_millis(50)).unwrap();
            };
            let room = Request::parse(port.data(&frame)).unwrap().reply_room();
            let frame = port.fit_reply(frame, room).expect("slab free");
            let Port::Xsk(xsk) = &port else {
                unreachable!()
            };
            assert_eq!(xsk.is_slab(&frame), slab);
            assert_eq!(port.data(&frame), &request[..]);
            let room = AOE_ATA_HEADERS_LEN + if slab { JUMBO_SECTORS * 512 } else { 512 };
            assert!(port.frame_capacity(&frame) >= room);
            assert_eq!(port.offset_in_chunk(&frame), PACKET_OFFSET);
            port.release(frame);
        }
        assert_eq!(port.jumbo_stats().upgrades, 1);
    });
}

/// The storage side end to end: a 17-sector WRITE arrives in a slab and is written to an
/// `O_DIRECT` file straight from the slab (`WRITE_FIXED` on the registered slab arena, payload
/// at slab + 512); a small 17-sector READ is upgraded into a slab, the disk data is read
/// straight into it (`READ_FIXED`) and the 8740-byte reply reaches B with the file's bytes.
#[test]
fn test_jumbo_write_and_read_through_io_uring_o_direct() {
    use aoe_xdp::sys::uring::{Ring, RingOptions, Seg, RWF_DSYNC};
    use std::io::{Read, Seek, SeekFrom};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    const LBA: u64 = 24;
    let Some(rig) = Rig::with_mtu("jumboio", 9000) else {
        return;
    };
    let file = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
    file.as_file().set_len(1 << 16).unwrap();
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(file.path())
        .expect("/var/tmp supports O_DIRECT");
    let write = ata_request(&rig, 0x0D15_C001, JUMBO_SECTORS, true);
    let read = ata_request(&rig, 0x0D15_C002, JUMBO_SECTORS, false);
    let wait_one = |ring: &mut Ring| {
        ring.submit_and_wait(1).unwrap();
        let mut out = None;
        ring.reap(|_, result, segs| out = Some((result, segs.next().unwrap())));
        out.expect("one completion")
    };
    in_netns(&rig.ns_a, || {
        let (_program, mut port) = setup_a(&rig, XdpMode::Native);
        let start = port.frame_counts();
        let mut ring = Ring::new(8, RingOptions::default()).unwrap();
        let arenas = [
            std::sync::Arc::clone(port.io_arena()),
            std::sync::Arc::clone(port.slab_arena().unwrap()),
        ];
        ring.register_arenas(&arenas).unwrap();
        ring.register_files(&[direct.as_raw_fd()]).unwrap();
        let data_len = u32::try_from(JUMBO_SECTORS * 512).unwrap();

        // WRITE: from the slab the jumbo request landed in, then acknowledge.
        rig.peer.send(&write);
        let frame = recv_one(&mut port, WAIT).expect("jumbo write");
        assert!(port.is_slab(&frame));
        let offset = u32::try_from(port.offset_in_chunk(&frame) + AOE_ATA_HEADERS_LEN).unwrap();
        assert_eq!(offset, 512);
        let seg = Seg {
            chunk: port.lend(frame),
            offset,
            len: data_len,
        };
        ring.push_write_fixed(0, LBA * 512, seg, RWF_DSYNC, 1)
            .unwrap();
        let (result, seg) = wait_one(&mut ring);
        assert_eq!(result, i32::try_from(data_len).unwrap(), "O_DIRECT write");
        let frame = port.reclaim(seg.chunk);
        port.release(frame);
        let mut on_disk = vec![0u8; JUMBO_SECTORS * 512];
        let mut plain = file.reopen().unwrap();
        plain.seek(SeekFrom::Start(LBA * 512)).unwrap();
        plain.read_exact(&mut on_disk).unwrap();
        assert!(
            on_disk[..] == write[AOE_ATA_HEADERS_LEN..],
            "disk data differs"
        );

        // READ: upgrade, read the same sectors into the slab, reply.
        rig.peer.send(&read);
        let frame = recv_one(&mut port, WAIT).expect("read request");
        let frame = port.upgrade(frame, JUMBO_LEN).expect("slab free");
        let seg = Seg {
            chunk: port.lend(frame),
            offset,
            len: data_len,
        };
        ring.push_read_fixed(0, LBA * 512, seg, 2).unwrap();
        let (result, seg) = wait_one(&mut ring);
        assert_eq!(result, i32::try_from(data_len).unwrap(), "O_DIRECT read");
        let mut frame = port.reclaim(seg.chunk);
        let buf = port.data_mut(&mut frame);
        swap_macs(buf);
        buf[14] |= 0x08;
        port.transmit(frame, JUMBO_LEN);
        port.flush_tx().unwrap();
        let reply = rig.reply(0x0D15_C002, "B did not receive the read reply");
        assert_eq!(reply.len(), JUMBO_LEN);
        assert!(reply[..AOE_ATA_HEADERS_LEN] == expected_reply(&read)[..]);
        assert!(
            reply[AOE_ATA_HEADERS_LEN..] == on_disk[..],
            "read data differs"
        );
        settle(&mut port, start);
    });
}

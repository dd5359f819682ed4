//! Starting up: a second instance on a served interface is refused, and `socket = "auto"`
//! falls back to AF_PACKET where XDP cannot attach.

use crate::common::target::{DeviceSpec, TargetDir};
use crate::fixture::{Setup, Transport, SECTORS, SHELF, SLOT};
use crate::patterns::pattern;

/// A second aoe-xdp on an interface that a running one serves refuses to start, naming the
/// other one's pid, whatever its transport; it neither removes the first one's XDP program
/// nor falls back to AF_PACKET (the program would take every request away from it). The
/// first one keeps serving.
pub fn test_second_instance_refused(transport: Transport) {
    let Some((net, first)) = Setup::new(&transport.tag("dp-twice"))
        .target(&Transport::Xdp.config(""))
        .build()
    else {
        return;
    };
    let running = first.start(&net.target_ns);
    let second = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT + 1, SECTORS)],
    );
    let log = second.start_refused(&net.target_ns);
    assert!(
        log.contains("already served by another aoe-xdp (pid "),
        "{log}"
    );
    assert!(!log.contains("FALLING BACK"), "{log}");
    let (mut client, device) = net.discover(0);
    assert_eq!((device.shelf, device.slot), (SHELF, SLOT));
    let data = pattern(8, 2, 77);
    client.write(&device, 8, &data, true).expect("write");
    assert_eq!(client.read(&device, 8, 2, true).expect("read"), data);
    let pid = running.pid();
    let holder = log
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .expect("a pid in the message");
    // `ip netns exec` runs aoe-xdp in its own process (exec), so the pid is the target's.
    assert_eq!(holder, pid, "{log}");
}

/// `socket = "auto"` falls back to AF_PACKET, loudly, where XDP cannot attach: native XDP on
/// veth refuses a peer with more TX queues than it has RX queues, and `xdp-mode = "native"`
/// forbids the generic fallback. The device is still served, and nothing is left attached.
#[test]
fn test_auto_falls_back_to_af_packet_when_xdp_cannot_attach() {
    Setup::new("dp-auto")
        .mtu(9000)
        .client_tx_queues(2)
        .target("socket = \"auto\"\nxdp-mode = \"native\"")
        .serve(|net, _dir, target| {
            let log = target.log();
            assert!(log.contains("FALLING BACK TO AF_PACKET"), "{log}");
            assert!(
                !net.target_ns
                    .ip(&["link", "show", "vt"])
                    .unwrap()
                    .contains("xdp"),
                "a failed XDP attach must leave nothing behind"
            );
            let (mut client, device) = net.discover(0);
            // The fallback carries jumbo frames too: (9000 - 36) / 512 sectors.
            assert_eq!(device.sector_count, 17);
            let data = pattern(7, 17, 11);
            client.write(&device, 7, &data, true).expect("write");
            assert_eq!(client.read(&device, 7, 17, true).expect("read"), data);
            let log = target.stop();
            assert!(log.contains("stopped cleanly"), "{log}");
        });
}

/// A control socket that cannot be made (its directory cannot be created: a file stands in
/// the way) costs `aoe-xdp ctl`, not the storage: the target says so and serves.
#[test]
fn test_no_control_socket_is_a_warning_not_a_failure() {
    Setup::new("dp-noctl")
        .target("control-socket = \"/proc/version/ctl.sock\"")
        .serve(|net, _dir, target| {
            let (mut client, device) = net.discover(0);
            client.read(&device, 0, 2, true).expect("served");
            let log = target.stop();
            assert!(log.contains("no control socket: no aoe-xdp ctl"), "{log}");
        });
}

//! Who may use a device: the Mac Mask List and reservations; the config string and the
//! reservation survive a restart.

use aoe_xdp::wire::{
    AoeError, ConfigCommand, DirectiveCommand, DirectiveRepr, MacMaskCommand, ReserveCommand,
};

use crate::answers::{assert_aoe_error, assert_silent, word};
use crate::fixture::{discover_one, Setup, Transport, DISCOVER_WAIT};
use crate::patterns::{byte_offset, pattern};

/// The Mac Mask List silences everyone else; a reservation refuses others' reads and writes
/// with AoE error 6 but still answers their IDENTIFY.
pub fn test_mask_and_reservation(transport: Transport) {
    // A glob, as operators write it.
    Setup::over(transport, "dp-acl")
        .paths(2)
        .interfaces(&["vt*"])
        .serve(|net, dir, _target| {
            let (mut a, mut b) = (net.client(0), net.client(1));
            let (a_mac, b_mac) = (a.mac(), b.mac());
            let dev_a = discover_one(&mut a);
            let dev_b = discover_one(&mut b);

            let add = |mac| DirectiveRepr {
                command: DirectiveCommand::Add,
                mac,
            };
            let delete = |mac| DirectiveRepr {
                command: DirectiveCommand::Delete,
                mac,
            };
            assert_eq!(
                a.mac_mask(&dev_a, MacMaskCommand::Edit, &[add(a_mac)])
                    .expect("mask add"),
                [a_mac]
            );
            a.read(&dev_a, 0, 2, true).expect("A is on the list");
            assert_silent(
                net.impatient_client(1).read(&dev_b, 0, 2, true),
                "B's read, masked",
            );
            assert_silent(
                net.impatient_client(1).identify(&dev_b),
                "B's identify, masked",
            );
            assert!(
                b.discover(DISCOVER_WAIT).expect("discover").is_empty(),
                "B discovers nothing while masked"
            );
            assert_eq!(
                a.mac_mask(&dev_a, MacMaskCommand::Read, &[])
                    .expect("mask read"),
                [a_mac]
            );
            assert!(a
                .mac_mask(&dev_a, MacMaskCommand::Edit, &[delete(a_mac)])
                .expect("mask delete")
                .is_empty());
            b.read(&dev_b, 0, 2, true).expect("B served again");

            assert_eq!(
                a.reserve(&dev_a, ReserveCommand::Set, &[a_mac])
                    .expect("reserve"),
                [a_mac]
            );
            a.write(&dev_a, 8, &pattern(8, 2, 1), true)
                .expect("holder writes");
            assert_eq!(
                a.read(&dev_a, 8, 2, false).expect("holder reads"),
                pattern(8, 2, 1)
            );
            assert_aoe_error(b.read(&dev_b, 8, 2, true), AoeError::TargetReserved);
            assert_aoe_error(
                b.write(&dev_b, 8, &pattern(8, 2, 2), false),
                AoeError::TargetReserved,
            );
            let identify = b.identify(&dev_b).expect("IDENTIFY is not reserved");
            assert_eq!(word(&identify, 60), 2048);
            assert_aoe_error(
                b.reserve(&dev_b, ReserveCommand::Set, &[b_mac]),
                AoeError::TargetReserved,
            );
            assert_eq!(
                b.reserve(&dev_b, ReserveCommand::Read, &[]).expect("read"),
                [a_mac]
            );
            assert_eq!(
                b.reserve(&dev_b, ReserveCommand::ForceSet, &[b_mac])
                    .expect("force"),
                [b_mac]
            );
            assert_aoe_error(a.read(&dev_a, 8, 2, true), AoeError::TargetReserved);
            assert!(b
                .reserve(&dev_b, ReserveCommand::Set, &[])
                .expect("release")
                .is_empty());
            assert_eq!(
                a.read(&dev_a, 8, 2, true).expect("released"),
                pattern(8, 2, 1)
            );
            let file = std::fs::read(dir.disk(0)).expect("read backing file");
            assert_eq!(&file[byte_offset(8)..byte_offset(10)], pattern(8, 2, 1));
        });
}

/// SIGTERM stops the target cleanly and detaches XDP; a new run on the same state directory
/// has the config string and reservation of the first and enforces the reservation.
pub fn test_restart_keeps_state(transport: Transport) {
    let Some((net, dir)) = Setup::over(transport, "dp-restart").paths(2).build() else {
        return;
    };
    let xdp_attached = |name: &str| {
        net.target_ns
            .ip(&["link", "show", name])
            .unwrap()
            .contains("xdp")
    };

    let (mut a, mut b) = (net.client(0), net.client(1));
    let a_mac = a.mac();
    let target = dir.start(&net.target_ns);
    let expect_xdp = transport == Transport::Xdp;
    assert!(
        xdp_attached("vt0") == expect_xdp && xdp_attached("vt1") == expect_xdp,
        "XDP attached while serving over {transport:?}: {expect_xdp}"
    );
    let ring = match transport {
        Transport::Xdp => None,
        Transport::Packet => Some("TPACKET_V2"),
        Transport::PacketV3 => Some("TPACKET_V3"),
    };
    if let Some(ring) = ring {
        let log = target.log();
        assert!(log.contains("AF_PACKET") && log.contains(ring), "{log}");
    }
    let dev_a = discover_one(&mut a);
    let dev_b = discover_one(&mut b);
    a.query_config(&dev_a, ConfigCommand::Set, b"survives restarts")
        .expect("set config");
    a.reserve(&dev_a, ReserveCommand::Set, &[a_mac])
        .expect("reserve");
    a.write(&dev_a, 100, &pattern(100, 2, 5), true)
        .expect("write");
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    for name in ["vt0", "vt1"] {
        assert!(
            !xdp_attached(name),
            "XDP still attached to {name} after SIGTERM:\n{}",
            net.target_ns.ip(&["link", "show", name]).unwrap()
        );
    }
    assert!(
        dir.path()
            .join("state")
            .read_dir()
            .expect("state dir")
            .count()
            > 0,
        "state directory is empty"
    );

    let target = dir.start(&net.target_ns);
    assert!(
        !target.log().contains("stale"),
        "the first run left a program behind:\n{}",
        target.log()
    );
    let found = discover_one(&mut b);
    assert_eq!(found.config_string, b"survives restarts");
    assert_eq!(
        b.reserve(&dev_b, ReserveCommand::Read, &[]).expect("read"),
        [a_mac]
    );
    assert_aoe_error(b.read(&dev_b, 100, 2, true), AoeError::TargetReserved);
    assert_eq!(
        a.read(&dev_a, 100, 2, true).expect("holder reads"),
        pattern(100, 2, 5)
    );
}

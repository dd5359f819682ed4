//! Finding the target: discovery, the start-up advertisement, IDENTIFY, Query Config, and
//! Debian's `aoeping` (discovery, IDENTIFY, SMART).

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use aoe_xdp::initiator::client::Found;
use aoe_xdp::initiator::frames::Reply;
use aoe_xdp::wire::ata::status as ata_status;
use aoe_xdp::wire::{AoeCommand, AoeError, ConfigCommand, MacAddr, SECTOR_SIZE};

use crate::answers::{assert_aoe_error, assert_silent, ata_string, word};
use crate::common::target::DeviceSpec;
use crate::fixture::{discover_one, Setup, Transport, SECTORS, SHELF, SLOT};

/// Broadcast discovery finds the device with the configured buffer count and the sectors an
/// MTU-1500 frame carries; directed queries reach only our address; IDENTIFY reports the file's
/// capacity and the configured strings; the start-up advertisement is broadcast.
pub fn test_discovery_and_identify(transport: Transport) {
    // An odd size, so the capacity cannot be right by accident; default idle mode (spin).
    let sectors = 5001;
    let Some((net, dir)) = Setup::over(transport, "dp-disc")
        .target("idle = \"spin\"")
        .sectors(sectors)
        .device_with("model = \"aoe-xdp dataplane test\"")
        .device_with("serial = \"DP-0001\"")
        .build()
    else {
        return;
    };
    let monitor = net.monitor(0);
    let _target = dir.start(&net.target_ns);
    let target_mac = MacAddr(net.target_end(0).mac);

    let advert = monitor
        .recv_matching(Duration::from_secs(2), |f| Reply::parse(f).is_some())
        .expect("a start-up advertisement");
    let advert = Reply::parse(&advert).expect("AoE response");
    assert_eq!(advert.src, target_mac);
    assert!(advert.dst.is_broadcast());
    assert_eq!((advert.aoe.major, advert.aoe.minor), (SHELF, SLOT));
    assert_eq!(advert.aoe.command, AoeCommand::QueryConfig);

    let (mut client, found) = net.discover(0);
    assert_eq!(found.mac, target_mac);
    assert_eq!((found.shelf, found.slot), (SHELF, SLOT));
    assert_eq!(found.buffer_count, 64, "queue-length default");
    assert_eq!(found.sector_count, 2, "(1500 - 36) / 512");
    assert!(found.config_string.is_empty());

    // Directed Query Config: our address answers, a neighbour's does not.
    let config = client
        .query_config(&found, ConfigCommand::Read, b"")
        .expect("directed query");
    assert!(config.is_empty());
    for (shelf, slot) in [(SHELF, SLOT + 1), (SHELF + 1, SLOT), (SHELF + 1, 0xFF)] {
        let other = Found {
            shelf,
            slot,
            ..found.clone()
        };
        assert_silent(
            net.impatient_client(0)
                .query_config(&other, ConfigCommand::Read, b""),
            &format!("query e{shelf}.{slot}"),
        );
    }

    let identify = client.identify(&found).expect("identify");
    let lba28 = u32::from(word(&identify, 60)) | u32::from(word(&identify, 61)) << 16;
    assert_eq!(u64::from(lba28), sectors, "LBA28 capacity (words 60-61)");
    let lba48 = (100..104).rev().fold(0u64, |sum, index| {
        sum << 16 | u64::from(word(&identify, index))
    });
    assert_eq!(lba48, sectors, "LBA48 capacity (words 100-103)");
    assert_ne!(word(&identify, 83) & 1 << 10, 0, "LBA48 supported");
    assert_eq!(ata_string(&identify, 27, 20), "aoe-xdp dataplane test");
    assert_eq!(ata_string(&identify, 10, 10), "DP-0001");
    let checksum = identify.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
    assert_eq!(checksum, 0, "IDENTIFY checksum");
}

/// Query Config set, test, prefix test and force set; a conflicting set is AoE error 4.
pub fn test_config_string(transport: Transport) {
    Setup::over(transport, "dp-cfg").serve(|net, _dir, _target| {
        let (mut client, device) = net.discover(0);
        let mut query = |command, value: &[u8]| client.query_config(&device, command, value);

        assert_eq!(query(ConfigCommand::Read, b"").expect("read"), b"");
        // Each answers with the string set; setting the same string again is fine (a different
        // one conflicts, below).
        for (command, value, what) in [
            (ConfigCommand::Set, &b"aoe-xdp test"[..], "set"),
            (ConfigCommand::Test, b"aoe-xdp test", "test"),
            (ConfigCommand::TestPrefix, b"aoe-xdp", "prefix"),
            (ConfigCommand::Set, b"aoe-xdp test", "same set"),
        ] {
            assert_eq!(
                query(command, value).expect(what),
                b"aoe-xdp test",
                "{what}"
            );
        }
        assert_aoe_error(
            query(ConfigCommand::Set, b"other"),
            AoeError::ConfigStringPresent,
        );
        for (command, value) in [
            (ConfigCommand::Test, &b"aoe-xdp"[..]),
            (ConfigCommand::Test, b"aoe-xdp test!"),
            (ConfigCommand::TestPrefix, b"xdp"),
            (ConfigCommand::TestPrefix, b"aoe-xdp test!"),
        ] {
            assert_silent(
                // A fresh socket: replies to `client` must not be mistaken for an answer.
                net.impatient_client(0)
                    .query_config(&device, command, value),
                &format!("{command:?} {:?}", String::from_utf8_lossy(value)),
            );
        }
        assert_eq!(
            query(ConfigCommand::Read, b"").expect("read"),
            b"aoe-xdp test"
        );

        let longest = vec![b'x'; 1024];
        assert_eq!(
            query(ConfigCommand::ForceSet, &longest).expect("force set"),
            longest
        );
        assert_eq!(
            query(ConfigCommand::ForceSet, b"other").expect("force set"),
            b"other"
        );
        assert_eq!(discover_one(&mut client).config_string, b"other");
    });
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Debian's `aoeping` (aoetools) finds the device, reads its IDENTIFY (dumped and decoded)
/// and sends SMART commands with `-S`: RETURN STATUS reports no threshold exceeded, READ DATA
/// dumps a checksummed structure, ENABLE/DISABLE succeed, and what the device lacks (READ LOG,
/// OFF-LINE IMMEDIATE) is reported as aborted. aoeping reads a SMART reply only when it holds
/// 512 bytes after the headers, so this also proves every SMART reply carries a sector.
pub fn test_aoeping(transport: Transport) {
    Setup::over(transport, "dp-ping")
        .target("idle = \"spin\"")
        .device_with("model = \"aoe-xdp ping test\"")
        .device_with("serial = \"PING-1\"")
        .serve(|net, _dir, target| {
            let run = |options: &[&str]| {
                Command::new("ip")
                    .args(["netns", "exec", net.client_ns.name(), "aoeping", "-s", "5"])
                    .args(options)
                    .args([&SHELF.to_string(), &SLOT.to_string(), "vc"])
                    .output()
                    .expect("run aoeping")
            };
            let aoeping = |options: &[&str]| {
                let out = run(options);
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                assert!(
                    out.status.success(),
                    "aoeping {options:?} failed ({}): {stdout}{}\ntarget log:\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                    target.log()
                );
                stdout
            };
            let found = format!(
                "found e{SHELF}.{SLOT} with mac {}",
                mac_text(net.target_end(0).mac)
            );
            let verbose = aoeping(&["-v"]);
            assert!(verbose.contains(&found), "{verbose}");
            assert!(verbose.contains("config query response"), "{verbose}");

            // The bytes of a hex dump aoeping prints after a heading (16 per line, to the end).
            let hex_dump_after = |output: &str, heading: &str| -> Vec<u8> {
                output
                    .split(heading)
                    .nth(1)
                    .unwrap_or_else(|| panic!("no {heading:?} in:\n{output}"))
                    .split_whitespace()
                    .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
                    .collect()
            };
            let identify = aoeping(&["-i"]);
            let dump = hex_dump_after(&identify, "device identify response:");
            assert_eq!(dump.len(), SECTOR_SIZE, "{identify}");
            assert_eq!(word(&dump, 60), 2048, "capacity in the dump");

            let fields = aoeping(&["-I"]);
            assert!(fields.contains("model: aoe-xdp ping test"), "{fields}");
            assert!(fields.contains("serial_number: PING-1"), "{fields}");

            // SMART. aoeping prints the reply's registers as `<name>: 0x<hex>`.
            let register = |out: &str, name: &str| {
                out.lines()
                    .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(": 0x"))
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .unwrap_or_else(|| panic!("no {name} register in:\n{out}"))
            };
            let status = aoeping(&["-S", "return_status"]);
            assert_eq!(register(&status, "Status"), ata_status::DRDY, "{status}");
            assert_eq!(register(&status, "Features"), 0, "no error: {status}");
            assert_eq!(
                (register(&status, "LBA Mid"), register(&status, "LBA High")),
                (0x4F, 0xC2),
                "no threshold exceeded: {status}"
            );
            assert!(!status.contains("SMART data:"), "no data to show: {status}");

            let data = aoeping(&["-S", "read_data"]);
            assert_eq!(register(&data, "Status"), ata_status::DRDY, "{data}");
            let structure = hex_dump_after(&data, "SMART data:");
            assert_eq!(structure.len(), SECTOR_SIZE, "{data}");
            assert_eq!(
                structure.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)),
                0,
                "the structure's checksum: {data}"
            );
            assert_eq!(word(&structure, 0), 0x0010, "revision: {data}");

            for command in ["disable", "enable"] {
                let out = aoeping(&["-S", command]);
                assert_eq!(
                    register(&out, "Status"),
                    ata_status::DRDY,
                    "{command}: {out}"
                );
            }
            for command in ["read_log:0", "offline_immediate:1"] {
                let out = run(&["-S", command]);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    !out.status.success() && stderr.contains("SMART command aborted on target."),
                    "aoeping -S {command}: {} {stderr}",
                    out.status
                );
            }
        });
}

/// The start-up advertisement goes out once per interface and device, not once per RX queue:
/// a target interface with two RX queues (two AF_XDP sockets) sends one per device.
#[test]
fn test_advertisement_once_per_interface_with_two_queues() {
    let Some((net, dir)) = Setup::new("dp-adv2q")
        .queues(2)
        .target("socket = \"xdp\"")
        .and_device(DeviceSpec::new(SHELF, SLOT + 1, SECTORS))
        .build()
    else {
        return;
    };
    let monitor = net.monitor(0);
    let target = dir.start(&net.target_ns);
    let log = target.log();
    assert!(
        log.contains("queue=0") && log.contains("queue=1"),
        "a socket on each of the two RX queues:\n{log}"
    );
    let mut adverts: HashMap<(u16, u8), u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(frame) = monitor.recv_matching(left, |f| Reply::parse(f).is_some()) else {
            break;
        };
        let reply = Reply::parse(&frame).expect("AoE response");
        assert_eq!(reply.aoe.command, AoeCommand::QueryConfig, "{reply:?}");
        *adverts
            .entry((reply.aoe.major, reply.aoe.minor))
            .or_default() += 1;
    }
    assert_eq!(
        adverts,
        HashMap::from([((SHELF, SLOT), 1), ((SHELF, SLOT + 1), 1)]),
        "advertisements per device"
    );
}

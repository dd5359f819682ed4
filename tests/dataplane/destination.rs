//! The destination filter: requests for other hosts' MACs are neither answered nor executed,
//! unless `accept-any-destination = true`.

use std::path::Path;

use aoe_xdp::initiator::client::{Client, Found};
use aoe_xdp::wire::{ConfigCommand, MacAddr};

use crate::answers::assert_silent;
use crate::common::frames::{FOREIGN_MAC, GROUP_MAC};
use crate::common::target::TargetDir;
use crate::counters::{stats, table_cell, wait_stats};
use crate::fixture::{discover_one, Setup, Transport};
use crate::patterns::{byte_offset, pattern};

/// Requests addressed to another host (a foreign unicast MAC, or a multicast group) are
/// neither answered nor executed, and the port counts them (`foreign_dst`, FOREIGN-DST); the
/// same requests to the interface's own MAC are served, and broadcast discovery is answered.
/// A veth end receives every frame its peer sends, whatever the destination (no promiscuous
/// mode needed): what a bridge port, a hub or a promiscuous port sees.
pub fn test_foreign_destination_refused(transport: Transport) {
    Setup::over(transport, "dp-fdst").serve(|net, dir, _target| {
        let socket = dir.control_socket();
        let (mut client, device) = net.discover(0);
        assert_eq!(device.mac, MacAddr(net.target_end(0).mac));
        let foreign = Found {
            mac: MacAddr(FOREIGN_MAC),
            ..device.clone()
        };
        let group = Found {
            mac: MacAddr(GROUP_MAC),
            ..device.clone()
        };

        // Each refused request is sent twice (the impatient client's two tries).
        let (lba, seed) = (8, 5);
        let data = pattern(lba, 2, seed);
        assert_silent(
            net.impatient_client(0).write(&foreign, lba, &data, true),
            "WRITE to a foreign MAC",
        );
        assert_silent(
            net.impatient_client(0).read(&foreign, lba, 2, true),
            "READ from a foreign MAC",
        );
        assert_silent(
            net.impatient_client(0).write(&group, lba, &data, false),
            "WRITE to a multicast group",
        );
        assert_silent(
            net.impatient_client(0)
                .query_config(&group, ConfigCommand::Read, b""),
            "Query Config to a multicast group",
        );
        let refused = 8;
        let report = wait_stats(&socket, |report| {
            report["ports"][0]["foreign_dst"].as_u64() >= Some(refused)
        });
        let port = &report["ports"][0];
        assert_eq!(port["foreign_dst"], refused, "{port}");
        let counters = &report["devices"][0];
        assert_eq!(counters["write_cmds"], 0, "{counters}");
        assert_eq!(counters["read_cmds"], 0, "{counters}");
        let file = std::fs::read(dir.disk(0)).expect("read backing file");
        assert!(
            file[byte_offset(lba)..byte_offset(lba + 2)]
                .iter()
                .all(|&byte| byte == 0),
            "a request for another host was written to the backing file"
        );
        let table = stats(&socket, false);
        assert_eq!(
            table_cell(&table, "FOREIGN-DST", "vt:0:").as_deref(),
            Some("8"),
            "{table}"
        );

        // The same requests to the interface's own MAC are served, and broadcast discovery is
        // still answered; none of that counts as foreign.
        write_read_back(
            &mut client,
            &device,
            dir,
            (lba, &data),
            "the interface's MAC",
        );
        assert_eq!(discover_one(&mut client), device, "broadcast discovery");
        assert_one_write_one_read(&socket, refused);
    });
}

/// `accept-any-destination = true`: a request to another host's MAC is served after all (the
/// operator's override), says so in the log, and nothing counts as foreign.
pub fn test_accept_any_destination(transport: Transport) {
    Setup::over(transport, "dp-anyd")
        .target("accept-any-destination = true")
        .serve(|net, dir, target| {
            let (mut client, device) = net.discover(0);
            let foreign = Found {
                mac: MacAddr(FOREIGN_MAC),
                ..device.clone()
            };
            let (lba, seed) = (12, 6);
            let data = pattern(lba, 2, seed);
            write_read_back(&mut client, &foreign, dir, (lba, &data), "a foreign MAC");
            assert_one_write_one_read(&dir.control_socket(), 0);
            let log = target.log();
            assert!(log.contains("accept-any-destination = true"), "{log}");
        });
}

/// Writes the two sectors `data` at `lba` (synced) to `device`, reads them back and finds them
/// in the backing file; `to` names the destination MAC in the messages.
fn write_read_back(
    client: &mut Client,
    device: &Found,
    dir: &TargetDir,
    (lba, data): (u64, &[u8]),
    to: &str,
) {
    client
        .write(device, lba, data, true)
        .unwrap_or_else(|error| panic!("WRITE to {to}: {error:?}"));
    assert!(
        client.read(device, lba, 2, true).expect("READ") == data,
        "read back through {to}"
    );
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert!(
        file[byte_offset(lba)..byte_offset(lba + 2)] == *data,
        "the write to {to} is not in the backing file"
    );
}

/// Waits until the statistics (at `socket`) count one write and one read on the device, and
/// asserts that the port counted `foreign_dst` requests for other hosts.
fn assert_one_write_one_read(socket: &Path, foreign_dst: u64) {
    let report = wait_stats(socket, |report| {
        let counters = &report["devices"][0];
        counters["write_cmds"] == 1 && counters["read_cmds"] == 1
    });
    assert_eq!(report["ports"][0]["foreign_dst"], foreign_dst, "{report:#}");
}

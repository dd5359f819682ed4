//! Reads and writes checked against what was written: the whole device, ranges and read-only
//! devices refused, bursts of requests in flight, jumbo frames.

use aoe_xdp::initiator::frames::{AtaCmd, Reply, Route};
use aoe_xdp::wire::ata::{error as ata_error, status as ata_status};
use aoe_xdp::wire::SECTOR_SIZE;

use crate::answers::assert_ata_error;
use crate::common::target::DeviceSpec;
use crate::counters::{stats, table_cell, wait_stats};
use crate::fixture::{Setup, Transport, DISCOVER_WAIT, SECTORS, SHELF, SLOT};
use crate::in_flight::burst;
use crate::patterns::{byte_offset, pattern, sector_pattern, xorshift};

/// Writes every sector of the device (LBA28 and LBA48 commands in turn), reads all of it back
/// with each addressing form, and checks the backing file; then the last sector alone. The
/// device uses the default durability (sync), so every write is on disk when acknowledged.
pub fn test_write_read_whole_device(transport: Transport) {
    Setup::over(transport, "dp-rw").serve(|net, dir, _target| {
        let (mut client, device) = net.discover(0);

        let seed = 1;
        for lba in (0..SECTORS).step_by(2) {
            let lba48 = lba % 4 == 2;
            client
                .write(&device, lba, &pattern(lba, 2, seed), lba48)
                .unwrap_or_else(|e| panic!("write {lba} (lba48 {lba48}): {e}"));
        }
        for lba48 in [false, true] {
            for lba in (0..SECTORS).step_by(2) {
                let data = client
                    .read(&device, lba, 2, lba48)
                    .unwrap_or_else(|e| panic!("read {lba} (lba48 {lba48}): {e}"));
                assert!(
                    data == pattern(lba, 2, seed),
                    "sectors {lba}..{} differ (lba48 {lba48})",
                    lba + 2
                );
            }
        }
        let file = std::fs::read(dir.disk(0)).expect("read backing file");
        assert_eq!(file.len(), byte_offset(SECTORS), "file size unchanged");
        assert!(
            file == pattern(0, SECTORS, seed),
            "backing file differs from what was written"
        );

        // The last sector alone, in both forms; the rest of the file stays as it was.
        let last = SECTORS - 1;
        for (last_seed, lba48) in [(3, false), (4, true)] {
            client
                .write(&device, last, &sector_pattern(last, last_seed), lba48)
                .expect("write last sector");
            assert!(
                client.read(&device, last, 1, !lba48).expect("read last")
                    == sector_pattern(last, last_seed),
                "last sector read back wrong (lba48 write {lba48})"
            );
            let file = std::fs::read(dir.disk(0)).expect("read backing file");
            assert!(
                file[byte_offset(last)..] == sector_pattern(last, last_seed),
                "last sector of the file (lba48 write {lba48})"
            );
            assert!(
                file[..byte_offset(last)] == pattern(0, last, seed),
                "a write to the last sector changed others"
            );
        }
    });
}

/// Out-of-range requests fail with IDNF and do not grow the file; too many sectors for the
/// frame is ABRT; a read-only device refuses writes with ABRT and stays unchanged.
pub fn test_ata_errors(transport: Transport) {
    let ro_sectors = 64;
    let Some((net, dir)) = Setup::over(transport, "dp-err")
        .and_device(DeviceSpec::new(SHELF, SLOT + 1, ro_sectors).with("read-only = true"))
        .build()
    else {
        return;
    };
    let ro_contents = pattern(0, ro_sectors, 7);
    std::fs::write(dir.disk(1), &ro_contents).expect("fill read-only disk");
    let _target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let found = client.discover(DISCOVER_WAIT).expect("discover");
    assert_eq!(found.len(), 2, "{found:?}");
    let (rw, ro) = (&found[0], &found[1]);
    assert_eq!((rw.slot, ro.slot), (SLOT, SLOT + 1));

    let end = SECTORS;
    for lba48 in [false, true] {
        assert_ata_error(client.read(rw, end, 1, lba48), ata_error::IDNF, "read end");
        assert_ata_error(
            client.read(rw, end - 1, 2, lba48),
            ata_error::IDNF,
            "read across end",
        );
        assert_ata_error(
            client.write(rw, end, &sector_pattern(end, 1), lba48),
            ata_error::IDNF,
            "write end",
        );
        assert_ata_error(
            client.write(rw, end - 1, &pattern(end - 1, 2, 1), lba48),
            ata_error::IDNF,
            "write across end",
        );
        client
            .read(rw, end - 1, 1, lba48)
            .expect("the last sector itself is readable");
    }
    assert_ata_error(
        client.read(rw, u64::from(u32::MAX) << 8, 1, true),
        ata_error::IDNF,
        "read far beyond end",
    );
    // Three sectors do not fit an MTU-1500 frame.
    assert_ata_error(client.read(rw, 0, 3, true), ata_error::ABRT, "read 3");
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert_eq!(file.len(), byte_offset(SECTORS), "file did not grow");
    assert!(file.iter().all(|&b| b == 0), "nothing was written");

    for lba48 in [false, true] {
        assert_ata_error(
            client.write(ro, 0, &pattern(0, 2, 9), lba48),
            ata_error::ABRT,
            "write to read-only device",
        );
        assert_eq!(
            client.read(ro, 10, 2, lba48).expect("read read-only"),
            ro_contents[byte_offset(10)..byte_offset(12)]
        );
    }
    assert!(
        std::fs::read(dir.disk(1)).expect("read backing file") == ro_contents,
        "read-only backing file changed"
    );
}

/// 2000 random overlapping 1 KiB writes, then the whole device is read back and compared with
/// a model; then bursts of requests in flight at once (one per tag) all come back, right.
pub fn test_many_requests(transport: Transport) {
    // Write-back: this is about requests being lost or misplaced, not durability (the sync
    // path, the default, is what the other tests use), and synced writes cost ~2 ms each.
    Setup::over(transport, "dp-load")
        .device_with("durability = \"writeback\"")
        .serve(|net, dir, _target| {
            let (mut client, device) = net.discover(0);

            let mut model = vec![0u8; byte_offset(SECTORS)];
            let mut random = 0x5EED_1234_ABCD_0001u64;
            for seed in 0..2000u64 {
                random = xorshift(random);
                let lba = random % (SECTORS - 1);
                let data = pattern(lba, 2, 1000 + seed);
                client
                    .write(&device, lba, &data, random & 1 << 40 != 0)
                    .unwrap_or_else(|e| panic!("write {seed} at {lba}: {e}"));
                model[byte_offset(lba)..byte_offset(lba + 2)].copy_from_slice(&data);
            }
            for lba in (0..SECTORS).step_by(2) {
                let data = client.read(&device, lba, 2, true).expect("read");
                assert!(
                    data == model[byte_offset(lba)..byte_offset(lba + 2)],
                    "sectors {lba}..{} differ from the model",
                    lba + 2
                );
            }
            assert!(
                std::fs::read(dir.disk(0)).expect("read backing file") == model,
                "backing file differs from the model"
            );

            // Bursts: as many requests in flight as the advertised buffer count.
            let socket = net.raw(0);
            let route = Route {
                dst: device.mac,
                src: client.mac(),
                vlan_tci: None,
                shelf: SHELF,
                slot: SLOT,
            };
            let in_flight = u64::from(device.buffer_count);
            for round in 0..8u64 {
                let lbas: Vec<u64> = (0..in_flight)
                    .map(|i| (i * 32 + round * 2) % (SECTORS - 1))
                    .collect();
                let seed = 5000 + round;
                let writes: Vec<(AtaCmd, Vec<u8>)> = lbas
                    .iter()
                    .map(|&lba| (AtaCmd::write(lba, 2, true), pattern(lba, 2, seed)))
                    .collect();
                let replies = burst(&socket, &route, round << 16, &writes);
                for (index, reply) in replies.iter().enumerate() {
                    let (ata, _) = Reply::parse(reply)
                        .and_then(|r| r.ata())
                        .expect("ATA reply");
                    assert_eq!(ata.cmd_status, ata_status::DRDY, "write {index}");
                }
                let reads: Vec<(AtaCmd, Vec<u8>)> = lbas
                    .iter()
                    .map(|&lba| (AtaCmd::read(lba, 2, round % 2 == 0), Vec::new()))
                    .collect();
                let replies = burst(&socket, &route, round << 16 | 0x8000, &reads);
                for ((reply, &lba), (cmd, _)) in replies.iter().zip(&lbas).zip(&reads) {
                    let reply = Reply::parse(reply).expect("AoE reply");
                    let (ata, data) = reply.ata().expect("ATA reply");
                    assert_eq!(ata.cmd_status, ata_status::DRDY, "read {lba}");
                    assert_eq!(ata.lba & 0x0FFF_FFFF, cmd.lba, "LBA echoed");
                    assert!(
                        data[..2 * SECTOR_SIZE] == pattern(lba, 2, seed),
                        "round {round}: burst read of {lba} returned wrong data"
                    );
                }
            }
        });
}

/// MTU 9000: the target advertises (9000 - 36) / 512 = 17 sectors, and 17-sector writes
/// (which arrive in several buffers on AF_XDP and are copied once into a slab) and reads
/// (whose reply is built in a slab) are right across the device, LBA28 and LBA48, the last
/// sectors included; smaller requests still work. The bounces are counted.
pub fn test_jumbo_frames(transport: Transport) {
    Setup::over(transport, "dp-jumbo")
        .mtu(9000)
        .device_with("durability = \"writeback\"")
        .serve(|net, dir, target| {
            let (mut client, device) = net.discover(0);
            assert_eq!(device.sector_count, 17);
            let mut model = vec![0u8; byte_offset(SECTORS)];
            let mut lbas: Vec<u64> = (0..SECTORS - 17).step_by(17 * 7).collect();
            lbas.push(SECTORS - 17);
            for (round, &lba) in lbas.iter().enumerate() {
                let data = pattern(lba, 17, 300 + round as u64);
                client
                    .write(&device, lba, &data, round % 2 == 0)
                    .unwrap_or_else(|e| panic!("17-sector write at {lba}: {e}"));
                model[byte_offset(lba)..byte_offset(lba + 17)].copy_from_slice(&data);
            }
            for (round, &lba) in lbas.iter().enumerate() {
                assert!(
                    client.read(&device, lba, 17, round % 2 == 1).expect("read")
                        == model[byte_offset(lba)..byte_offset(lba + 17)],
                    "17 sectors at {lba}"
                );
                // A small read of the same place, from an ordinary frame.
                assert!(
                    client.read(&device, lba + 3, 2, true).expect("small read")
                        == model[byte_offset(lba + 3)..byte_offset(lba + 5)],
                    "2 sectors at {}",
                    lba + 3
                );
            }
            // One past the end: IDNF, as for small requests.
            assert_ata_error(
                client.read(&device, SECTORS - 16, 17, true),
                ata_error::IDNF,
                "17 sectors crossing the end",
            );
            assert!(
                std::fs::read(dir.disk(0)).expect("backing file") == model,
                "backing file differs from the model"
            );
            // Every 17-sector read moved into a slab for its reply; on AF_XDP every 17-sector write
            // arrived in several buffers and was copied once into a slab.
            let writes = lbas.len() as u64;
            let report = wait_stats(&dir.control_socket(), |report| {
                report["devices"][0]["read_cmds"] == 2 * writes
            });
            let jumbo = &report["ports"][0]["jumbo"];
            assert!(jumbo["upgrades"].as_u64() >= Some(writes), "{report:#}");
            if transport == Transport::Xdp {
                assert!(
                    jumbo["bounce_frames"].as_u64() >= Some(writes),
                    "{report:#}"
                );
            }
            let log = target.stop();
            assert!(log.contains("sectors=17"), "{log}");
        });
}

/// A link whose far end takes smaller frames than ours (MTU 9000 here, 1500 at the initiator,
/// a common misconfiguration): over AF_PACKET the kernel refuses each 17-sector reply for ever,
/// so after the port's hold it is dropped and counted (`tx_dropped` in the port's kernel
/// counters, shown by `aoe-xdp ctl stats` and the metrics), and the replies behind it still go
/// out: a 2-sector read right after is answered.
#[test]
fn test_a_reply_the_link_cannot_carry_is_dropped_counted_and_does_not_block() {
    Setup::over(Transport::Packet, "dp-mtumis")
        .mtu(9000)
        .serve(|net, dir, _target| {
            let (_, device) = net.discover(0);
            assert_eq!(device.sector_count, 17);
            let client_end = &net.client_end(0).name;
            net.client_ns
                .ip(&["link", "set", "dev", client_end, "mtu", "1500"])
                .expect("lower the initiator's MTU");
            let mut client = net.impatient_client(0);
            assert!(
                client.read(&device, 0, 17, true).is_err(),
                "a 17-sector reply crossed a 1500-byte link"
            );
            let mut client = net.client(0);
            let data = client
                .read(&device, 34, 2, true)
                .expect("a small read after it");
            assert_eq!(data.len(), 2 * SECTOR_SIZE);
            // Nothing more is dropped after the small read was answered (the queue is in
            // order); past one publishing interval (100 ms) every report says the same.
            std::thread::sleep(std::time::Duration::from_millis(300));
            let report = wait_stats(&dir.control_socket(), |report| {
                report["ports"][0]["kernel"]["tx_dropped"].as_u64() >= Some(1)
            });
            let dropped = report["ports"][0]["kernel"]["tx_dropped"].as_u64();
            // The impatient client asked twice; each reply was dropped once.
            assert!(dropped <= Some(2), "{report:#}");
            let table = stats(&dir.control_socket(), false);
            let shown = table_cell(&table, "TX-DROP", "vt:0:");
            assert_eq!(shown.and_then(|v| v.parse().ok()), dropped, "{table}");
        });
}

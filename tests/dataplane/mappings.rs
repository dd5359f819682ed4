//! Devices served through file mappings: resident and mapped-reads devices, a file that
//! shrinks under them, and the page faults they cost.

use aoe_xdp::wire::ata::error as ata_error;
use aoe_xdp::wire::SECTOR_SIZE;

use crate::answers::assert_ata_error;
use crate::common::target::DeviceSpec;
use crate::counters::{stats, wait_stats};
use crate::fixture::{Setup, Transport, DISCOVER_WAIT, SECTORS, SHELF, SLOT};
use crate::patterns::{byte_offset, pattern};

/// A resident device (window locked in memory, requests copied through a shared mapping)
/// serves the same data as the default path, does no disk I/O for reads and write-back
/// writes, and answers UNC instead of crashing when its file shrinks under it.
pub fn test_resident_device(transport: Transport) {
    device_served_through_mappings(
        transport,
        "dp-res",
        "resident = true",
        "resident: window locked in memory",
    );
}

/// The same for a device with mapped reads (the mapping not locked).
pub fn test_mapped_reads_device(transport: Transport) {
    device_served_through_mappings(
        transport,
        "dp-mrd",
        "mapped-reads = true",
        "mapped reads: reads copy out of a shared mapping",
    );
}

/// Runs the checks of [`test_resident_device`] on a device configured with `option`, whose
/// start-up log says `logged`.
fn device_served_through_mappings(transport: Transport, tag: &str, option: &str, logged: &str) {
    Setup::over(transport, tag)
        .device_with(&format!(
            "durability = \"writeback\"\nmapped-writes = true\n{option}\n\
             offset = 8\nlength = 2040"
        ))
        .serve(|net, dir, target| {
            assert!(target.log().contains(logged), "{}", target.log());
            let socket = dir.control_socket();
            let (mut client, device) = net.discover(0);
            let sectors = SECTORS - 8;
            let seed = 7;
            for lba in (0..sectors).step_by(2) {
                client
                    .write(&device, lba, &pattern(lba, 2, seed), lba % 4 == 2)
                    .unwrap_or_else(|e| panic!("write {lba}: {e}"));
            }
            for lba in (0..sectors).step_by(2) {
                let data = client.read(&device, lba, 2, true).expect("read");
                assert!(data == pattern(lba, 2, seed), "sectors {lba}..{}", lba + 2);
            }
            assert_ata_error(
                client.read(&device, sectors - 1, 2, true),
                ata_error::IDNF,
                "read past the window",
            );
            client.flush(&device).expect("flush");
            let file = std::fs::read(dir.disk(0)).expect("read backing file");
            assert!(
                file[byte_offset(8)..] == pattern(0, sectors, seed),
                "backing file differs from what was written"
            );
            assert!(
                file[..byte_offset(8)].iter().all(|b| *b == 0),
                "sectors before the window"
            );
            let requests = sectors; // a write and a read per pair of sectors
                                    // Workers publish every 100 ms: a report may show every mapped request and not yet
                                    // the FLUSH that followed them, so wait for both.
            let report = wait_stats(&socket, |r| {
                let engine = &r["workers"][0]["engine"];
                engine["mapped"] == requests && engine["ios"].as_u64() >= Some(1)
            });
            // Only the FLUSH reached the kernel as an I/O.
            assert_eq!(report["workers"][0]["engine"]["ios"], 1, "{report:#}");

            // The file shrinks under the target: requests past its new end fail with UNC, the rest
            // are served, and the target lives on; once it grows back, the range works again.
            let backing = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.disk(0))
                .expect("open the backing file");
            backing.set_len(1024 * SECTOR_SIZE as u64).expect("shrink");
            let past = 1024 - 8 + 16;
            assert_ata_error(
                client.read(&device, past, 2, true),
                ata_error::UNC,
                "read past the shrunk end",
            );
            assert_ata_error(
                client.write(&device, past, &pattern(past, 2, 9), true),
                ata_error::UNC,
                "write past the shrunk end",
            );
            let data = client
                .read(&device, 100, 2, true)
                .expect("read below the end");
            assert!(
                data == pattern(100, 2, seed),
                "sectors 100..102 after the shrink"
            );
            backing
                .set_len(SECTORS * SECTOR_SIZE as u64)
                .expect("grow back");
            assert_eq!(
                client
                    .read(&device, past, 2, true)
                    .expect("read after growing back"),
                vec![0u8; 1024],
                "the regrown range reads as zeros"
            );
            client
                .write(&device, past, &pattern(past, 2, 9), true)
                .expect("write after growing back");
            let file = std::fs::read(dir.disk(0)).expect("read backing file");
            assert!(file[byte_offset(8 + past)..byte_offset(8 + past + 2)] == pattern(past, 2, 9));
            let log = target.stop();
            assert!(!log.contains("panicked"), "{log}");
        });
}

/// Writes the `seed` pattern over the backing file at `path`, syncs it and drops it from the
/// page cache: data on the disk, not in memory (nobody maps it yet). Returns the file.
fn cold_disk(path: &std::path::Path, seed: u64) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open the backing file");
    std::io::Write::write_all(&mut &file, &pattern(0, SECTORS, seed)).expect("write");
    file.sync_all().expect("sync");
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    file
}

/// A device with the defaults (no mapping) reads ahead of a sequential stream itself, in
/// one-page page-cache folios (the kernel's readahead is off for its file), and `ctl stats`
/// counts the windows.
#[test]
fn test_sequential_reads_of_a_cold_device_are_read_ahead() {
    let Some((net, dir)) = Setup::new("dp-ra").build() else {
        return;
    };
    let seed = 5;
    let file = cold_disk(dir.disk(0), seed);
    let target = dir.start(&net.target_ns);
    let socket = dir.control_socket();
    let mut client = net.client(0);
    let devices = client.discover(DISCOVER_WAIT).expect("discover");
    // The first 128 KiB, one 1 KiB read after another.
    const KIB: u64 = 1024;
    for lba in (0..256).step_by(2) {
        let data = client.read(&devices[0], lba, 2, true).expect("read");
        assert!(data == pattern(lba, 2, seed), "sectors {lba}..{}", lba + 2);
    }
    let report = wait_stats(&socket, |r| r["workers"][0]["jobs"] == 128);
    let readaheads = report["workers"][0]["engine"]["readaheads"].as_u64();
    // At the eighth read 128 KiB from 8 KiB on, at the ninth 256 KiB more (to 392 KiB).
    assert_eq!(readaheads, Some(2), "two windows: {report:#}");
    assert!(
        stats(&socket, false).contains("READAHEAD"),
        "the table shows them"
    );
    // The 256 KiB after the reads, never read by the client, come into the cache, one page
    // per folio.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let cached = |from: u64, len: u64| {
        let len = usize::try_from(len).expect("small");
        aoe_xdp::sys::pagecache::cached_pages(&file, from, len).expect("page cache")
    };
    while cached(128 * KIB, 256 * KIB).cached < 64 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(cached(128 * KIB, 256 * KIB).cached, 64, "read ahead");
    let whole = cached(0, SECTORS * SECTOR_SIZE as u64);
    assert_eq!(whole.in_large_folios, 0, "{whole:?}");
    target.stop();
}

/// A device with mapped reads whose pages are not in memory makes the worker wait for the
/// disk, and the statistics count those waits (major faults); a device without the mapping
/// hands such reads to io_uring, and the worker does not wait.
#[test]
fn test_major_faults_of_mapped_reads_are_counted() {
    let Some((net, dir)) = Setup::new("dp-majf")
        .and_device(DeviceSpec::new(SHELF, SLOT + 1, SECTORS).with("mapped-reads = true"))
        .build()
    else {
        return;
    };
    // Data on the disk, not in the page cache: written, synced and dropped from the cache
    // (nobody maps it yet).
    let seed = 3;
    for disk in 0..2 {
        cold_disk(dir.disk(disk), seed);
    }
    let target = dir.start(&net.target_ns);
    let socket = dir.control_socket();
    let mut client = net.client(0);
    let devices = client.discover(DISCOVER_WAIT).expect("discover");
    assert_eq!(devices.len(), 2, "{devices:?}");
    let device = |slot: u8| {
        devices
            .iter()
            .find(|d| d.slot == slot)
            .expect("discovered")
            .clone()
    };
    let faults = |report: &serde_json::Value| report["workers"][0]["major_faults"].as_u64();
    let lbas = [0, 700, 1400, 2000];
    // Without the mapping: reads from the disk through io_uring, no fault on the worker.
    let plain = device(SLOT);
    for lba in lbas {
        let data = client.read(&plain, lba, 2, true).expect("read");
        assert!(data == pattern(lba, 2, seed), "sectors {lba}..{}", lba + 2);
    }
    let report = wait_stats(&socket, |r| r["workers"][0]["jobs"] == 4);
    let before = faults(&report).expect("major_faults in the report");
    assert_eq!(before, 0, "{report:#}");
    // With it: each read of a page not in memory is a fault that waits for the disk.
    let mapped = device(SLOT + 1);
    for lba in lbas {
        let data = client.read(&mapped, lba, 2, true).expect("read");
        assert!(data == pattern(lba, 2, seed), "sectors {lba}..{}", lba + 2);
    }
    // A report may come between the first fault and the last read: wait for the reads too.
    let report = wait_stats(&socket, |r| {
        faults(r) >= Some(1) && r["workers"][0]["engine"]["mapped"].as_u64() >= Some(4)
    });
    assert_eq!(report["workers"][0]["engine"]["mapped"], 4, "{report:#}");
    assert!(
        stats(&socket, false).contains("MAJFLT"),
        "the table shows the faults"
    );
    target.stop();
}

//! A backing file that fails under the target: a full file system, a bad range.

use aoe_xdp::initiator::client::ClientError;
use aoe_xdp::wire::ata::error as ata_error;

use crate::common::faultfs::FaultFs;
use crate::common::mounts::SmallTmpfs;
use crate::fixture::{Setup, SECTORS};
use crate::patterns::pattern;

/// A device whose file lives on a full file system (a 1 MiB tmpfs holding a 4 MiB sparse
/// file): sequential writes succeed until the space runs out, then fail with ATA ABRT (not
/// UNC: the medium is fine) and so do the writes after them; the data written before is
/// intact, and the target keeps serving (reads, and writes into space it has).
#[test]
fn test_full_file_system_gives_ata_errors_and_keeps_serving() {
    let sectors = 8192;
    let Some((net, dir)) = Setup::new("dp-full")
        .target("socket = \"xdp\"")
        .sectors(sectors)
        .build()
    else {
        return;
    };
    let tmpfs = SmallTmpfs::new(1024);
    let backing = tmpfs.path().join("disk");
    std::fs::File::create(&backing)
        .and_then(|f| f.set_len(sectors * 512))
        .expect("sparse file on the tmpfs");
    dir.back_first_device_with(&backing);
    let target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    let mut written = 0;
    let first_error = loop {
        let lba = written * 2;
        assert!(lba < sectors, "4 MiB written to a 1 MiB file system");
        match client.write(&device, lba, &pattern(lba, 2, 7), false) {
            Ok(()) => written += 1,
            Err(error) => break error,
        }
    };
    let is_abort = |error: &ClientError| {
        matches!(error, ClientError::Ata { error, .. } if *error & ata_error::ABRT != 0
            && *error & ata_error::UNC == 0)
    };
    assert!(
        is_abort(&first_error),
        "a full file system is ABRT: {first_error:?}"
    );
    assert!(written > 0, "nothing could be written");
    for lba in (written * 2..sectors).step_by(512).take(8) {
        let error = client
            .write(&device, lba, &pattern(lba, 2, 8), false)
            .expect_err("no write into space the file system does not have");
        assert!(is_abort(&error), "write at {lba}: {error:?}");
    }
    for i in 0..written {
        let lba = i * 2;
        let data = client.read(&device, lba, 2, false).expect("read back");
        assert!(
            data == pattern(lba, 2, 7),
            "data written before the failure at {lba}"
        );
    }
    client
        .write(&device, 0, &pattern(0, 2, 9), false)
        .expect("a write into space the file already has");
    assert!(client.read(&device, 0, 2, false).expect("read") == pattern(0, 2, 9));
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    drop(tmpfs);
}

/// A disk with a bad range (a FUSE file whose reads and writes there fail with EIO): requests
/// touching it get ATA UNC, every other request is served and its data kept, and the target
/// keeps serving throughout.
#[test]
fn test_bad_range_fails_only_its_requests() {
    let sectors = SECTORS;
    let Some((net, dir)) = Setup::new("dp-badrange").target("socket = \"xdp\"").build() else {
        return;
    };
    // Bad: 64 KiB..128 KiB, page-aligned (FUSE reads whole pages).
    let bad = 128..256u64;
    let fs = FaultFs::mount(
        usize::try_from(sectors * 512).unwrap(),
        bad.start * 512..bad.end * 512,
    );
    dir.back_first_device_with(&fs.disk());
    let target = dir.start(&net.target_ns);
    let (mut client, device) = net.discover(0);
    let is_media_error = |error: &ClientError| matches!(error, ClientError::Ata { error, .. } if *error & ata_error::UNC != 0);
    // Around the bad range and in it, 2 sectors at a time.
    let blocks: Vec<u64> = (bad.start - 32..bad.end + 32).step_by(2).collect();
    for &lba in &blocks {
        let result = client.write(&device, lba, &pattern(lba, 2, 3), false);
        if bad.contains(&lba) {
            let error = result.expect_err("a write into the bad range fails");
            assert!(is_media_error(&error), "write at {lba}: {error:?}");
        } else {
            result
                .unwrap_or_else(|error| panic!("write at {lba} outside the bad range: {error:?}"));
        }
    }
    for &lba in &blocks {
        let result = client.read(&device, lba, 2, false);
        if bad.contains(&lba) {
            let error = result.expect_err("a read of the bad range fails");
            assert!(is_media_error(&error), "read at {lba}: {error:?}");
        } else {
            let data = result
                .unwrap_or_else(|error| panic!("read at {lba} outside the bad range: {error:?}"));
            assert!(data == pattern(lba, 2, 3), "data at {lba}");
        }
    }
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    let bytes = fs.bytes();
    for &lba in blocks.iter().filter(|lba| !bad.contains(*lba)) {
        let at = usize::try_from(lba * 512).unwrap();
        assert!(
            bytes[at..at + 1024] == pattern(lba, 2, 3),
            "the disk at {lba}"
        );
    }
}

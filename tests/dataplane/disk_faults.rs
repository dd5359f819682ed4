//! A backing file that fails under the target: a full file system, a bad range, a slow disk.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aoe_xdp::initiator::client::{Client, ClientError, Found};
use aoe_xdp::wire::ata::error as ata_error;

use crate::common::cgroup::MemCgroup;
use crate::common::faultfs::FaultFs;
use crate::common::mounts::{losetup, Detach, DirtyLimit, SmallTmpfs};
use crate::common::target::TargetDir;
use crate::counters::{stats, wait_stats};
use crate::fixture::{Net, Setup, SECTORS};
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

/// A slow disk (a FUSE file whose reads take 400 ms, behind a loop device) under the default
/// configuration: a 1 KiB write into a page the page cache does not hold makes the kernel
/// read the page first, and that read waits in io_uring, not on the worker. A read of a
/// cached sector sent while the write waits is answered at once (it waited for the write's
/// 400 ms before), the write once its page was read and synced, with its data and the page's
/// other sectors intact; `--stats` counts it (`uncached_writes`).
#[test]
fn test_a_write_that_must_read_the_disk_does_not_hold_up_the_worker() {
    let Some((net, dir, fs, detach)) = slow_device("dp-coldwr") else {
        return;
    };
    let target = dir.start(&net.target_ns);
    let (mut reader, writer, device) = reader_and_writer(&net);
    let lba = 8194; // 1 KiB into the page at 4 MiB
    let written = pattern(lba, 2, 5);
    write_beside_a_cached_read(&mut reader, writer, &device, lba, &written);
    let report = wait_stats(&dir.control_socket(), |r| {
        r["devices"][0]["write_cmds"].as_u64() == Some(1)
    });
    assert_eq!(
        report["workers"][0]["engine"]["uncached_writes"], 1,
        "{report:#}"
    );
    let page: Vec<u8> = (8192..8200)
        .step_by(2)
        .flat_map(|lba| reader.read(&device, lba, 2, false).expect("read back"))
        .collect();
    let mut expected = pattern(8192, 8, 4);
    expected[1024..2048].copy_from_slice(&written);
    assert!(page == expected, "the page around the write");
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    drop(detach);
    let bytes = fs.bytes();
    assert!(bytes[8192 * 512..8200 * 512] == expected[..], "the disk");
}

/// The same slow disk, with the target in a memory cgroup of its own: after the kernel
/// evicted the device's pages (a forced reclaim of the cgroup, as a `MemoryMax` limit does
/// under memory pressure), the worker forgets the pages it had seen cached. A write into a
/// page it wrote inline before, gone now, goes through io_uring again, and a read of a cached
/// page sent meanwhile is answered at once; without that, the worker would believe the page
/// cached, write inline and wait 400 ms for the kernel to read the page back.
#[test]
fn test_a_write_into_a_page_evicted_since_does_not_hold_up_the_worker() {
    let Some((net, dir, fs, detach)) = slow_device("dp-evict") else {
        return;
    };
    let dev = detach.0.clone();
    // Before the target: dropped after it (a cgroup with a process in it stays).
    let cgroup = MemCgroup::new("aoe-xdp-test-evict");
    let target = dir.start(&net.target_ns);
    cgroup.add(target.pid());
    let (mut reader, mut writer, device) = reader_and_writer(&net);
    let timed_write = |writer: &mut Client, lba: u64, data: &[u8]| {
        let sent = Instant::now();
        writer.write(&device, lba, data, false).expect("write");
        sent.elapsed()
    };
    // The page at 4 MiB: not cached (through io_uring, 400 ms), then cached (inline, seen).
    let (first, second) = (pattern(8194, 2, 5), pattern(8196, 2, 6));
    let took = timed_write(&mut writer, 8194, &first);
    assert!(
        took >= SLOW_READ * 3 / 4,
        "the first write did not read the disk ({took:?})"
    );
    let took = timed_write(&mut writer, 8196, &second);
    assert!(
        took < SLOW_READ / 4,
        "the write into a cached page took {took:?}"
    );
    let report = wait_stats(&dir.control_socket(), |r| {
        r["devices"][0]["write_cmds"].as_u64() == Some(2)
    });
    assert_eq!(
        report["workers"][0]["engine"]["uncached_writes"], 1,
        "{report:#}"
    );
    // Evict the target's page cache: the page is gone from the loop device's cache.
    cgroup.reclaim();
    let file = std::fs::File::open(&dev).expect("open the loop device");
    let cached = aoe_xdp::sys::pagecache::cached_pages(&file, 8192 * 512, 4096).expect("mincore");
    assert_eq!(
        cached.cached, 0,
        "the reclaim left the page in the page cache"
    );
    // The FUSE file's own copy (charged to whichever cgroup the loop worker ran in) too.
    fs.drop_page_cache();
    // The supervisor looks at /proc/vmstat once a second; sector 0's page back in the cache.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(reader.read(&device, 0, 2, false).expect("read") == pattern(0, 2, 4));
    let third = pattern(8198, 2, 7);
    write_beside_a_cached_read(&mut reader, writer, &device, 8198, &third);
    let report = wait_stats(&dir.control_socket(), |r| {
        r["devices"][0]["write_cmds"].as_u64() == Some(3)
    });
    let engine = &report["workers"][0]["engine"];
    assert_eq!(engine["uncached_writes"], 2, "{report:#}");
    // Forgotten after the supervisor saw the reclaim counted: the sample that followed found
    // no page gone.
    assert!(engine["seen_resets"].as_u64() >= Some(1), "{report:#}");
    assert_eq!(engine["seen_sample_misses"], 0, "{report:#}");
    let page: Vec<u8> = (8192..8200)
        .step_by(2)
        .flat_map(|lba| reader.read(&device, lba, 2, false).expect("read back"))
        .collect();
    let mut expected = pattern(8192, 8, 4);
    expected[1024..2048].copy_from_slice(&first);
    expected[2048..3072].copy_from_slice(&second);
    expected[3072..].copy_from_slice(&third);
    assert!(page == expected, "the page around the writes");
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    drop(detach);
    assert!(
        fs.bytes()[8192 * 512..8200 * 512] == expected[..],
        "the disk"
    );
}

/// A disk that takes data more slowly than the initiator writes it (a FUSE file whose writes
/// take 200 ms, behind a loop device allowed 64 KiB of dirty data), under `durability =
/// "writeback"`: once the dirty limit is reached the kernel pauses whoever writes to it, for
/// up to 200 ms a time. The range written is in the page cache, so the writes are carried out
/// on the worker's thread. The first pause makes the worker watchful, the second tells it
/// (`inline_stalls`: it blocked in the kernel, was not preempted); from then on the device's
/// writes go through io_uring (`paused_writes`), whose thread is paused instead, and reads of
/// a cached sector sent meanwhile, every 10 ms, are answered at once (but the one sent during
/// a stall: one at first, and one after each pause while the disk is behind). Every write
/// arrives. Two paths: the reader has an interface of its own, so that its socket is not
/// flooded with the writer's replies.
#[test]
fn test_a_write_paused_by_dirty_page_throttling_does_not_hold_up_the_worker() {
    let sectors = 16_384;
    let Some((net, dir)) = Setup::new("dp-dirty")
        .paths(2)
        .sectors(sectors)
        .device_with("durability = \"writeback\"")
        .build()
    else {
        return;
    };
    let fs = FaultFs::mount_slow_writes(pattern(0, sectors, 4), Duration::from_millis(200));
    let dev = losetup(&fs.disk(), 512);
    let detach = Detach(dev.clone());
    let _limit = DirtyLimit::new(&dev, 64 << 10);
    dir.back_first_device_with(&dev);
    let target = dir.start(&net.target_ns);
    let patient = |client: Client| client.with_retry(Duration::from_secs(5), 1);
    let (reader, device) = net.discover(1);
    let mut reader = patient(reader);
    assert!(reader.read(&device, 0, 2, false).expect("read") == pattern(0, 2, 4));
    let (writer, written) = net.discover(0);
    let mut writer = patient(writer);
    // 1 MiB from sector 4096 on, 1 KiB at a time (16 times the dirty limit), over and over
    // until 3 s after the worker first stalled (the throttling started after 1 to 15 s here).
    // Read into the page cache first, so that every write is carried out inline (none needs a
    // page read).
    let (first, count) = (4096u64, 1024u64);
    let mut cached = vec![0u8; usize::try_from(2 * count * 512).expect("in memory")];
    std::fs::File::open(&dev)
        .and_then(|file| file.read_exact_at(&mut cached, first * 512))
        .expect("read the range into the page cache");
    let stop = Arc::new(AtomicBool::new(false));
    let writes = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let lba = first + 2 * (sent % count);
                writer
                    .write(&written, lba, &pattern(lba, 2, 9), false)
                    .unwrap_or_else(|error| panic!("write at {lba}: {error:?}"));
                sent += 1;
            }
            sent
        }
    });
    let engine = |report: &serde_json::Value| {
        let owner = report["devices"][0]["owner"].as_u64().expect("owner");
        report["workers"][usize::try_from(owner).expect("index")]["engine"].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut waits, mut stalled_at, mut looked_at) = (Vec::new(), None, Instant::now());
    while stalled_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(3)) {
        assert!(Instant::now() < deadline, "no inline write stalled in 20 s");
        let sent = Instant::now();
        let read = reader
            .read(&device, 0, 2, false)
            .expect("read of a cached page");
        waits.push(sent.elapsed());
        assert!(read == pattern(0, 2, 4));
        std::thread::sleep(Duration::from_millis(10));
        if stalled_at.is_none() && looked_at.elapsed() >= Duration::from_millis(100) {
            looked_at = Instant::now();
            let report: serde_json::Value =
                serde_json::from_str(&stats(&dir.control_socket(), true)).expect("JSON report");
            if engine(&report)["inline_stalls"].as_u64() >= Some(1) {
                stalled_at = Some(Instant::now());
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = writes.join().expect("writer thread");
    let report = wait_stats(&dir.control_socket(), |r| {
        r["devices"][0]["write_cmds"].as_u64() == Some(sent)
    });
    let engine = engine(&report);
    // Each stall held up at most the one read sent meanwhile (10 ms is 50 times a read's
    // round trip here), and so did the first slow write, which only made the worker watchful
    // (see `storage::stall`): stalls + 1 (seen: 1-3), and two more for a hiccup of the rig's
    // own; without the pauses every throttled write would (53 of 54 reads, 20-130 ms each).
    // A pause of 1 s, then 2 s: at most 3 stalls in the 3 s after the first, and one more
    // if the last pause ends right then.
    let stalls = engine["inline_stalls"].as_u64().expect("inline_stalls");
    let held = waits
        .iter()
        .filter(|wait| **wait >= Duration::from_millis(10))
        .count() as u64;
    eprintln!("{stalls} stalls, {held} of {} reads held", waits.len());
    assert!(
        held <= stalls + 3 && held <= 8 && stalls <= 4,
        "{held} of {} reads waited 10 ms or more behind writes, {stalls} stalls: {waits:?}",
        waits.len()
    );
    assert!(engine["paused_writes"].as_u64() > Some(0), "{report:#}");
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    drop(detach);
    let start = usize::try_from(first * 512).expect("in memory");
    // Every sector written at least once (with the same data each pass).
    let expected = pattern(first, 2 * count.min(sent), 9);
    assert!(
        fs.bytes()[start..start + expected.len()] == expected[..],
        "the disk"
    );
}

/// Writes `data` at `lba`, into a page the page cache does not hold, from a thread of its own
/// and, 100 ms into it, reads sectors 2-3 (whose page is cached) with `reader`: the write must
/// wait for the disk's read of its page (at least 3/4 of [`SLOW_READ`]), the read must not wait
/// behind it (less than 1/4).
fn write_beside_a_cached_read(
    reader: &mut Client,
    mut writer: Client,
    device: &Found,
    lba: u64,
    data: &[u8],
) {
    let write = std::thread::spawn({
        let (device, data) = (device.clone(), data.to_vec());
        move || {
            let sent = Instant::now();
            writer
                .write(&device, lba, &data, false)
                .map(|()| sent.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let sent = Instant::now();
    let read = reader
        .read(device, 2, 2, false)
        .expect("read of a cached page");
    let read_took = sent.elapsed();
    assert!(read == pattern(2, 2, 4));
    let write_took = write
        .join()
        .expect("writer thread")
        .expect("the write into the page that was not cached");
    assert!(
        write_took >= SLOW_READ * 3 / 4,
        "the write did not wait for the disk's read ({write_took:?})"
    );
    assert!(
        read_took < SLOW_READ / 4,
        "the read of a cached page waited {read_took:?} behind the write"
    );
}

/// How long a read of the slow disk takes.
const SLOW_READ: Duration = Duration::from_millis(400);

/// The network and a target directory whose first device is a slow disk: an 8 MiB FUSE file
/// (sector `i` holds `pattern(i, 1, 4)`) whose reads take [`SLOW_READ`], behind a loop device
/// of 512-byte blocks (detached when the guard drops). 8 MiB, so that the FUSE file's own
/// readahead around sector 0 stays far from the page the tests write (4 MiB in). `None`
/// where the fixture skips.
fn slow_device(name: &str) -> Option<(Net, TargetDir, FaultFs, Detach)> {
    let sectors = 16_384;
    let (net, dir) = Setup::new(name).sectors(sectors).build()?;
    let fs = FaultFs::mount_slow_reads(pattern(0, sectors, 4), SLOW_READ);
    let dev = losetup(&fs.disk(), 512);
    dir.back_first_device_with(&dev);
    Some((net, dir, fs, Detach(dev)))
}

/// Two patient clients of the slow device (5 s per try, once): a reader that has read sectors
/// 0-1 (one slow read; their page is cached now) and a writer.
fn reader_and_writer(net: &Net) -> (Client, Client, Found) {
    let patient = |client: Client| client.with_retry(Duration::from_secs(5), 1);
    let (reader, device) = net.discover(0);
    let mut reader = patient(reader);
    assert!(reader.read(&device, 0, 2, false).expect("read") == pattern(0, 2, 4));
    // Each client counts its tags from 1 and sees every frame on the interface: the reader
    // moves on to tags the writer will not use, before the writer's socket exists.
    for _ in 0..16 {
        reader.identify(&device).expect("identify");
    }
    let (writer, _) = net.discover(0);
    (reader, patient(writer), device)
}

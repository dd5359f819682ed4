//! Storage engines on real files in /var/tmp (a real file system, so O_DIRECT is real) with
//! the real io_uring engine, checked against the file contents read with std and against the
//! synchronous engine as oracle.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aoe_xdp::storage::engine::{Engine, IoCompletion, IoOp, IoRequest, SubmitError};
use aoe_xdp::storage::export::{Durability, Export, ExportSpec};
use aoe_xdp::storage::sync_engine::SyncEngine;
use aoe_xdp::storage::uring_engine::{UringConfig, UringEngine};
use aoe_xdp::sys::filemap::{FileMap, HUGE_PAGE};
use aoe_xdp::sys::mem::{Arena, ChunkPool};
use proptest::prelude::*;
use tempfile::NamedTempFile;

mod common;
use common::faultfs::FaultFs;
use common::mounts::{losetup, Detach, MountPoint, SmallTmpfs};

const CHUNK_SIZE: usize = 4096;

/// Counts heap allocations made by the current thread while counting is switched on.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting only touches
// const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// A zero-filled temporary file of `sectors` sectors on a real file system.
fn temp_file(sectors: u64) -> NamedTempFile {
    let file = NamedTempFile::new_in("/var/tmp").unwrap();
    file.as_file().set_len(sectors * 512).unwrap();
    file
}

fn spec(path: &Path) -> ExportSpec {
    ExportSpec::whole_file(path)
}

/// An export whose writes are acknowledged only after a group sync (`Durability::Sync`).
fn synced_spec(path: &Path) -> ExportSpec {
    ExportSpec {
        durability: Durability::Sync,
        ..spec(path)
    }
}

fn open(specs: &[ExportSpec]) -> Arc<[Export]> {
    specs.iter().map(|s| Export::open(s).unwrap()).collect()
}

fn pool() -> ChunkPool {
    ChunkPool::new(Arc::new(Arena::new(CHUNK_SIZE, 64).unwrap())).unwrap()
}

fn uring_with(exports: Arc<[Export]>, pool: &ChunkPool, cfg: UringConfig) -> Engine {
    Engine::Uring(UringEngine::new(exports, Arc::clone(pool.arena()), cfg).unwrap())
}

fn uring(exports: Arc<[Export]>, pool: &ChunkPool) -> Engine {
    uring_with(exports, pool, UringConfig::default())
}

fn sync(exports: Arc<[Export]>, pool: &ChunkPool) -> Engine {
    Engine::Sync(SyncEngine::new(exports, Arc::clone(pool.arena())).unwrap())
}

/// A request with a fresh chunk; writes carry `len` bytes of `fill` at `buf_offset`.
fn req(
    pool: &mut ChunkPool,
    op: IoOp,
    sector: u64,
    len: u32,
    buf_offset: u32,
    fill: u8,
) -> IoRequest {
    let mut chunk = pool.alloc().expect("pool has a free chunk");
    let bytes = pool.bytes_mut(&mut chunk);
    bytes.fill(0xEE);
    if op == IoOp::Write {
        bytes[buf_offset as usize..(buf_offset + len) as usize].fill(fill);
    }
    IoRequest {
        export: 0,
        op,
        sector,
        len,
        chunk,
        buf_offset,
        user_data: u64::from(fill),
    }
}

/// Commits and waits until nothing is in flight; completions sorted by `user_data`.
fn drain(engine: &mut Engine) -> Vec<IoCompletion> {
    engine.commit(Instant::now()).unwrap();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        if engine.in_flight() == 0 {
            out.sort_by_key(|c: &IoCompletion| c.user_data);
            return out;
        }
        engine.wait(1).unwrap();
        engine.reap(&mut |c| out.push(c));
    }
    panic!("engine never drained: {} in flight", engine.in_flight());
}

/// I/O operations other than group syncs (reads and writes), and group syncs.
fn data_ios_and_syncs(engine: &Engine) -> (u64, u64) {
    let stats = engine.stats();
    (stats.ios - stats.syncs, stats.syncs)
}

fn submit_all(engine: &mut Engine, reqs: Vec<IoRequest>) -> Vec<IoCompletion> {
    for r in reqs {
        engine.submit(r).unwrap();
    }
    drain(engine)
}

fn file_bytes(file: &NamedTempFile, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    file.as_file().read_exact_at(&mut buf, offset).unwrap();
    buf
}

fn data<'a>(pool: &'a ChunkPool, c: &'a IoCompletion, buf_offset: u32, len: u32) -> &'a [u8] {
    &pool.bytes(&c.chunk)[buf_offset as usize..(buf_offset + len) as usize]
}

fn recycle(pool: &mut ChunkPool, completions: Vec<IoCompletion>) {
    completions.into_iter().for_each(|c| pool.free(c.chunk));
}

/// Submits `reqs`, asserts that every one succeeded and frees their chunks.
#[track_caller]
fn submit_ok(engine: &mut Engine, pool: &mut ChunkPool, reqs: Vec<IoRequest>) {
    let done = submit_all(engine, reqs);
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    recycle(pool, done);
}

/// Asserts that each `(sector, len, fill)` names `len` bytes of `file` from `sector` on that
/// are all `fill`.
#[track_caller]
fn assert_fills(file: &NamedTempFile, fills: &[(u64, usize, u8)]) {
    for &(sector, len, fill) in fills {
        let bytes = file_bytes(file, sector * 512, len);
        assert!(bytes.iter().all(|b| *b == fill), "sector {sector}");
    }
}

#[test]
fn test_uring_round_trip_at_first_and_last_sector_of_window() {
    let file = temp_file(64);
    let mut s = spec(file.path());
    (s.offset_sectors, s.length_sectors) = (8, Some(16));
    let mut pool = pool();
    let mut engine = uring(open(&[s]), &pool);
    let writes = vec![
        req(&mut pool, IoOp::Write, 0, 512, 0, 1),
        req(&mut pool, IoOp::Write, 15, 512, 0, 2),
    ];
    submit_ok(&mut engine, &mut pool, writes);
    assert!(file_bytes(&file, 8 * 512, 512).iter().all(|b| *b == 1));
    assert!(file_bytes(&file, 23 * 512, 512).iter().all(|b| *b == 2));
    assert!(
        file_bytes(&file, 7 * 512, 512).iter().all(|b| *b == 0),
        "before the window"
    );
    assert!(
        file_bytes(&file, 24 * 512, 512).iter().all(|b| *b == 0),
        "after the window"
    );

    let reads = vec![
        req(&mut pool, IoOp::Read, 0, 512, 512, 3),
        req(&mut pool, IoOp::Read, 15, 512, 512, 4),
    ];
    let done = submit_all(&mut engine, reads);
    assert!(data(&pool, &done[0], 512, 512).iter().all(|b| *b == 1));
    assert!(data(&pool, &done[1], 512, 512).iter().all(|b| *b == 2));
    assert!(
        pool.bytes(&done[0].chunk)[..512].iter().all(|b| *b == 0xEE),
        "outside the buffer untouched"
    );
    assert_eq!(engine.stats().completed, 4);
}

#[test]
fn test_invalid_requests_are_handed_back() {
    let file = temp_file(32);
    let mut s = spec(file.path());
    (s.offset_sectors, s.length_sectors) = (8, Some(16));
    let mut pool = pool();
    let mut foreign = ChunkPool::new(Arc::new(Arena::new(CHUNK_SIZE, 1).unwrap())).unwrap();
    for mut engine in [
        uring(open(&[s.clone()]), &pool),
        sync(open(&[s.clone()]), &pool),
    ] {
        let cases = [
            (
                IoOp::Read,
                16,
                512,
                0,
                SubmitError::OutOfRange {
                    sector: 16,
                    len: 512,
                },
            ),
            (
                IoOp::Write,
                15,
                1024,
                0,
                SubmitError::OutOfRange {
                    sector: 15,
                    len: 1024,
                },
            ),
            (
                IoOp::Read,
                u64::MAX,
                512,
                0,
                SubmitError::OutOfRange {
                    sector: u64::MAX,
                    len: 512,
                },
            ),
            (IoOp::Read, 0, 100, 0, SubmitError::BadLength(100)),
            (IoOp::Read, 0, 0, 0, SubmitError::BadLength(0)),
            (IoOp::Flush, 0, 512, 0, SubmitError::BadLength(512)),
            (
                IoOp::Read,
                0,
                1024,
                3584,
                SubmitError::BadBuffer {
                    offset: 3584,
                    len: 1024,
                },
            ),
        ];
        for (op, sector, len, buf_offset, expected) in cases {
            let r = req(&mut pool, op, sector, len, 0, 9);
            let r = IoRequest { buf_offset, ..r };
            let err = engine.submit(r).unwrap_err();
            assert_eq!(err.error, expected);
            assert!(!err.is_throttling_err());
            assert_eq!((err.req.sector, err.req.user_data), (sector, 9));
            pool.free(err.req.chunk);
        }
        let mut r = req(&mut pool, IoOp::Read, 0, 512, 0, 9);
        r.export = 3;
        let err = engine.submit(r).unwrap_err();
        assert_eq!(err.error, SubmitError::NoSuchExport(3));
        pool.free(err.req.chunk);
        let chunk = foreign.alloc().unwrap();
        let r = IoRequest {
            export: 0,
            op: IoOp::Read,
            sector: 0,
            len: 512,
            chunk,
            buf_offset: 0,
            user_data: 1,
        };
        let err = engine.submit(r).unwrap_err();
        assert_eq!(err.error, SubmitError::ForeignChunk);
        foreign.free(err.req.chunk);
        assert_eq!(
            (
                engine.stats().rejected,
                engine.stats().submitted,
                engine.in_flight()
            ),
            (9, 0, 0)
        );
    }
    assert!(file_bytes(&file, 0, 32 * 512).iter().all(|b| *b == 0));
}

#[test]
fn test_direct_io_aligned_and_bounced_buffers() {
    let file = temp_file(64);
    let mut s = spec(file.path());
    s.direct_io = true;
    let exports = open(&[s]);
    let align = exports[0]
        .dio_align()
        .expect("/var/tmp must support O_DIRECT (STATX_DIOALIGN)");
    assert!(
        align.mem_align > 1,
        "a misaligned buf_offset of 1 must need a bounce"
    );
    let oa = align.offset_align;
    let mut pool = pool();
    let mut engine = uring(exports, &pool);
    let aligned = req(&mut pool, IoOp::Write, 0, oa, 0, 0x11);
    let misaligned = req(&mut pool, IoOp::Write, u64::from(oa / 512) * 2, oa, 1, 0x22);
    submit_ok(&mut engine, &mut pool, vec![aligned, misaligned]);
    assert_eq!(engine.stats().bounced, 1);
    assert!(file_bytes(&file, 0, oa as usize).iter().all(|b| *b == 0x11));
    assert!(file_bytes(&file, 2 * u64::from(oa), oa as usize)
        .iter()
        .all(|b| *b == 0x22));

    let read = req(&mut pool, IoOp::Read, u64::from(oa / 512) * 2, oa, 7, 0x33);
    let done = submit_all(&mut engine, vec![read]);
    assert!(done[0].result.is_ok());
    assert!(data(&pool, &done[0], 7, oa).iter().all(|b| *b == 0x22));
    assert_eq!(
        pool.bytes(&done[0].chunk)[6],
        0xEE,
        "bounce copy-back stays inside the buffer"
    );
    assert_eq!(engine.stats().bounced, 2);
    recycle(&mut pool, done);

    // 512-byte requests on a device with a larger offset alignment use the buffered descriptor.
    let small = req(&mut pool, IoOp::Write, 1, 512, 0, 0x44);
    let done = submit_all(&mut engine, vec![small]);
    assert!(done[0].result.is_ok());
    assert_eq!(engine.stats().buffered, u64::from(oa > 512));
    assert!(file_bytes(&file, 512, 512).iter().all(|b| *b == 0x44));
}

#[test]
fn test_eight_adjacent_1k_writes_merge_into_one_io() {
    let file = temp_file(64);
    let mut pool = pool();
    let mut engine = uring(open(&[synced_spec(file.path())]), &pool);
    // Submitted out of order: the planner sorts by sector.
    let writes: Vec<_> = (0u8..8)
        .rev()
        .map(|i| {
            req(
                &mut pool,
                IoOp::Write,
                4 + 2 * u64::from(i),
                1024,
                512,
                i + 1,
            )
        })
        .collect();
    let done = submit_all(&mut engine, writes);
    assert_eq!(done.len(), 8);
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    recycle(&mut pool, done);
    let stats = engine.stats();
    // One pwritev2 for the eight, and one data sync acknowledges them all.
    assert_eq!((stats.ios, stats.merged, stats.submitted), (2, 7, 8));
    assert_eq!(data_ios_and_syncs(&engine), (1, 1));
    assert_eq!(stats.sync_covered, 8);
    let disk = file_bytes(&file, 4 * 512, 8 * 1024);
    for (i, block) in disk.chunks(1024).enumerate() {
        assert!(block.iter().all(|b| usize::from(*b) == i + 1), "block {i}");
    }
    assert!(file_bytes(&file, 3 * 512, 512).iter().all(|b| *b == 0));
    assert!(file_bytes(&file, 20 * 512, 512).iter().all(|b| *b == 0));

    let reads: Vec<_> = (0u8..8)
        .map(|i| req(&mut pool, IoOp::Read, 4 + 2 * u64::from(i), 1024, 0, 10 + i))
        .collect();
    let done = submit_all(&mut engine, reads);
    for (i, c) in done.iter().enumerate() {
        assert!(
            data(&pool, c, 0, 1024)
                .iter()
                .all(|b| usize::from(*b) == i + 1),
            "read {i}"
        );
    }
    assert_eq!(data_ios_and_syncs(&engine), (2, 1));
    assert_eq!(engine.stats().merged, 14);
}

#[test]
fn test_merge_cap_splits_runs() {
    let file = temp_file(64);
    let mut pool = pool();
    let cfg = UringConfig {
        merge_max_segments: 3,
        ..UringConfig::default()
    };
    let mut engine = uring_with(open(&[synced_spec(file.path())]), &pool, cfg);
    let writes: Vec<_> = (0u8..8)
        .map(|i| req(&mut pool, IoOp::Write, u64::from(i), 512, 0, i))
        .collect();
    let done = submit_all(&mut engine, writes);
    assert!(done.iter().all(|c| c.result.is_ok()));
    assert_eq!(data_ios_and_syncs(&engine), (3, 1));
    assert_eq!(engine.stats().merged, 5);
    let disk = file_bytes(&file, 0, 8 * 512);
    assert!(disk
        .chunks(512)
        .enumerate()
        .all(|(i, b)| b.iter().all(|x| usize::from(*x) == i)));
}

#[test]
fn test_merge_delay_holds_a_request_for_its_neighbour() {
    let file = temp_file(64);
    let mut pool = pool();
    let cfg = UringConfig {
        merge_delay: Duration::from_secs(60),
        ..UringConfig::default()
    };
    let mut engine = uring_with(open(&[synced_spec(file.path())]), &pool, cfg);
    let t0 = Instant::now();
    engine
        .submit(req(&mut pool, IoOp::Write, 0, 512, 0, 1))
        .unwrap();
    engine.commit(t0).unwrap();
    assert_eq!(engine.stats().ios, 0, "held for a neighbour");
    engine
        .submit(req(&mut pool, IoOp::Write, 1, 512, 0, 2))
        .unwrap();
    engine.commit(t0 + Duration::from_secs(1)).unwrap();
    assert_eq!(engine.stats().ios, 0, "still inside merge_delay");
    engine.commit(t0 + Duration::from_secs(61)).unwrap();
    assert_eq!(data_ios_and_syncs(&engine), (1, 1));
    assert_eq!(engine.stats().merged, 1);
    let done = drain(&mut engine);
    assert!(done.iter().all(|c| c.result.is_ok()));
    // `wait` forces held requests out.
    engine
        .submit(req(&mut pool, IoOp::Write, 9, 512, 0, 3))
        .unwrap();
    engine.commit(Instant::now()).unwrap();
    engine.wait(1).unwrap();
    let mut got = Vec::new();
    engine.reap(&mut |c| got.push(c));
    assert_eq!(got.len(), 1);
    assert_eq!(data_ios_and_syncs(&engine), (2, 2));
    assert!(file_bytes(&file, 9 * 512, 512).iter().all(|b| *b == 3));
}

#[test]
fn test_flush_and_durability_sync_writes() {
    for durability in [Durability::Writeback, Durability::Sync] {
        let file = temp_file(16);
        let mut s = spec(file.path());
        s.durability = durability;
        let mut pool = pool();
        let exports = open(&[s]);
        for mut engine in [
            uring(Arc::clone(&exports), &pool),
            sync(Arc::clone(&exports), &pool),
        ] {
            let fill = if matches!(engine, Engine::Sync(_)) {
                0x5A
            } else {
                0xA5
            };
            let write = req(&mut pool, IoOp::Write, 3, 2048, 0, fill);
            let done = submit_all(&mut engine, vec![write]);
            assert!(done[0].result.is_ok());
            recycle(&mut pool, done);
            let flush = req(&mut pool, IoOp::Flush, 0, 0, 0, 77);
            let done = submit_all(&mut engine, vec![flush]);
            assert_eq!((done[0].user_data, done[0].result), (77, Ok(())));
            recycle(&mut pool, done);
            // The write is one I/O (a pwritev2, or `RWF_DSYNC` in the oracle) and the FLUSH a
            // data sync; the io_uring engine's `sync` write waited for a sync of its own.
            let stats = engine.stats();
            let syncs = match (&engine, durability) {
                (Engine::Uring(_), Durability::Sync) => 2,
                _ => 1,
            };
            assert_eq!((stats.ios, stats.syncs), (1 + syncs, syncs), "{stats:?}");
            assert!(
                file_bytes(&file, 3 * 512, 2048).iter().all(|b| *b == fill),
                "{durability:?}"
            );
        }
    }
}

#[test]
fn test_read_only_export_refuses_writes() {
    let file = temp_file(16);
    file.as_file().write_all_at(&[0x42; 512], 0).unwrap();
    let mut s = spec(file.path());
    s.read_only = true;
    let mut pool = pool();
    let exports = open(&[s]);
    for mut engine in [
        uring(Arc::clone(&exports), &pool),
        sync(Arc::clone(&exports), &pool),
    ] {
        let write = req(&mut pool, IoOp::Write, 0, 512, 0, 1);
        let read = req(&mut pool, IoOp::Read, 0, 512, 0, 2);
        let done = submit_all(&mut engine, vec![write, read]);
        let err = done[0].result.unwrap_err();
        assert_eq!(err.errno, libc::EROFS);
        assert!(!err.is_media_error());
        assert!(done[1].result.is_ok());
        assert!(data(&pool, &done[1], 0, 512).iter().all(|b| *b == 0x42));
        assert_eq!(engine.stats().errors, 1);
        recycle(&mut pool, done);
    }
    assert!(file_bytes(&file, 0, 512).iter().all(|b| *b == 0x42));
}

#[test]
fn test_queue_full_hands_the_request_back() {
    let file = temp_file(64);
    let mut pool = pool();
    let cfg = UringConfig {
        entries: 4,
        ..UringConfig::default()
    };
    let mut engine = uring_with(open(&[spec(file.path())]), &pool, cfg);
    for i in 0..4u8 {
        engine
            .submit(req(&mut pool, IoOp::Write, u64::from(i) * 4, 512, 0, i))
            .unwrap();
    }
    let err = engine
        .submit(req(&mut pool, IoOp::Write, 40, 512, 0, 9))
        .unwrap_err();
    assert!(err.is_throttling_err());
    assert_eq!(err.error, SubmitError::QueueFull);
    assert_eq!(engine.in_flight(), 4);
    engine.commit(Instant::now()).unwrap();
    let again = err.req;
    assert_eq!(again.user_data, 9);
    assert_eq!(
        engine.submit(again).unwrap_err().error,
        SubmitError::QueueFull,
        "still full while in flight"
    );
    let done = drain(&mut engine);
    assert_eq!(done.len(), 4);
    recycle(&mut pool, done);
    let mut sync_engine = Engine::Sync(
        SyncEngine::with_capacity(open(&[spec(file.path())]), Arc::clone(pool.arena()), 1).unwrap(),
    );
    sync_engine
        .submit(req(&mut pool, IoOp::Read, 0, 512, 0, 1))
        .unwrap();
    let err = sync_engine
        .submit(req(&mut pool, IoOp::Read, 0, 512, 0, 2))
        .unwrap_err();
    assert!(err.is_throttling_err());
}

#[test]
fn test_io_errors_on_a_file_that_shrank_after_open() {
    let file = temp_file(64);
    let mut pool = pool();
    let exports = open(&[spec(file.path())]);
    file.as_file().set_len(8 * 512).unwrap();
    for mut engine in [
        uring(Arc::clone(&exports), &pool),
        sync(Arc::clone(&exports), &pool),
    ] {
        // Sectors 6..10 merge into one READV that comes back short at the new end of file.
        let reads: Vec<_> = (6u8..10)
            .map(|s| req(&mut pool, IoOp::Read, u64::from(s), 512, 0, s))
            .collect();
        let far = req(&mut pool, IoOp::Read, 32, 512, 0, 32);
        let done = submit_all(&mut engine, reads.into_iter().chain([far]).collect());
        let ok: Vec<bool> = done.iter().map(|c| c.result.is_ok()).collect();
        assert_eq!(ok, [true, true, false, false, false], "{engine:?}");
        assert!(done[2..]
            .iter()
            .all(|c| c.result.unwrap_err().is_media_error()));
        assert_eq!(engine.stats().errors, 3);
        recycle(&mut pool, done);
    }
}

#[test]
fn test_resident_and_mapped_reads_exports_copy_through_their_mapping() {
    // Resident (the mapping locked) or mapped reads (not locked). With mapped writes the
    // writes are copies through a mapping too; without, they are pwritev2 calls, and the read
    // mapping sees what they wrote.
    for resident in [true, false] {
        for mapped_writes in [true, false] {
            export_copies_through_its_mapping(resident, mapped_writes);
        }
    }
}

fn export_copies_through_its_mapping(resident: bool, mapped_writes: bool) {
    let file = patterned_file(64);
    let mut s = spec(file.path());
    (s.offset_sectors, s.length_sectors) = (8, Some(48));
    (s.resident, s.mapped_reads, s.mapped_writes) = (resident, !resident, mapped_writes);
    let exports = open(&[s]);
    let map = exports[0].read_map().expect("a read mapping");
    assert!(map.locked() == resident && !map.writable());
    assert_eq!(map.window(), 8 * 512..56 * 512);
    // Writes get a mapping of their own (write faults would split the read mapping's pages).
    let write_map = exports[0].write_map();
    assert_eq!(write_map.is_some(), mapped_writes);
    assert!(write_map.is_none_or(|m| m.writable() && !m.locked()));
    let mut pool = pool();
    let mut engine = uring(Arc::clone(&exports), &pool);
    // Reads at both ends of the window, unaligned in memory, and a run of adjacent reads.
    let reads: Vec<_> = [(0u64, 1), (47, 2), (10, 3), (11, 4), (12, 5)]
        .into_iter()
        .map(|(sector, tag)| req(&mut pool, IoOp::Read, sector, 512, 100, tag))
        .collect();
    let done = submit_all(&mut engine, reads);
    for (c, sector) in done.iter().zip([0u64, 47, 10, 11, 12]) {
        assert_patterned(&pool, c, 100, sector + 8, 512);
    }
    recycle(&mut pool, done);
    let writes = vec![
        req(&mut pool, IoOp::Write, 0, 1024, 0, 0xA1),
        req(&mut pool, IoOp::Write, 46, 1024, 1, 0xA2),
    ];
    submit_ok(&mut engine, &mut pool, writes);
    assert!(file_bytes(&file, 8 * 512, 1024).iter().all(|b| *b == 0xA1));
    assert!(file_bytes(&file, 54 * 512, 1024).iter().all(|b| *b == 0xA2));
    // The sectors around the window are untouched.
    assert_ne!(file_bytes(&file, 7 * 512, 512), vec![0xA1; 512]);
    assert_ne!(file_bytes(&file, 56 * 512, 512), vec![0xA2; 512]);
    // A read past the window is refused before any copy.
    let err = engine
        .submit(req(&mut pool, IoOp::Read, 47, 1024, 0, 9))
        .unwrap_err();
    assert!(
        matches!(err.error, SubmitError::OutOfRange { .. }),
        "{:?}",
        err.error
    );
    pool.free(err.req.chunk);
    // Reads through the mapping see the writes, whichever way they were made.
    let done = submit_all(
        &mut engine,
        vec![req(&mut pool, IoOp::Read, 46, 1024, 0, 8)],
    );
    assert!(data(&pool, &done[0], 0, 1024).iter().all(|b| *b == 0xA2));
    recycle(&mut pool, done);
    let stats = engine.stats();
    let (mapped, inline) = if mapped_writes { (8, 0) } else { (6, 2) };
    assert_eq!(
        (stats.mapped, stats.inline, stats.ios, stats.errors),
        (mapped, inline, inline, 0),
        "resident = {resident}, mapped_writes = {mapped_writes}: {stats:?}"
    );
    // FLUSH still goes to the kernel.
    let done = submit_all(&mut engine, vec![req(&mut pool, IoOp::Flush, 0, 0, 0, 1)]);
    assert!(done[0].result.is_ok());
    assert_eq!(engine.stats().ios, inline + 1);
    recycle(&mut pool, done);
}

#[test]
fn test_resident_export_is_mapped_in_2_mib_pages_even_from_small_folios() {
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap();
    // 8 MiB written 4 KiB at a time: the page cache holds it in 4 KiB folios.
    let sectors = 4 * HUGE_PAGE / 512;
    let file = patterned_file(sectors);
    let mut s = spec(file.path());
    s.resident = true;
    let exports = open(&[s]);
    let map = exports[0].read_map().expect("resident");
    assert_eq!(
        map.huge_eligible(),
        4 * HUGE_PAGE,
        "the mapping is 2 MiB-aligned"
    );
    let huge = map.huge_bytes().expect("smaps");
    if thp.contains("[never]") {
        assert_eq!(huge, 0, "transparent huge pages are off: {thp}");
    } else {
        assert_eq!(huge, 4 * HUGE_PAGE, "re-read into 2 MiB folios ({thp})");
    }
    // The data read back through the new mapping is the file's.
    let mut pool = pool();
    let mut engine = uring(Arc::clone(&exports), &pool);
    let sectors_read = [0, 4095, 4096, sectors - 2];
    let reads = sectors_read
        .iter()
        .zip(1..)
        .map(|(sector, tag)| req(&mut pool, IoOp::Read, *sector, 1024, 0, tag))
        .collect();
    let done = submit_all(&mut engine, reads);
    for (c, sector) in done.iter().zip(sectors_read) {
        assert_patterned(&pool, c, 0, sector, 1024);
    }
    recycle(&mut pool, done);
    assert_eq!(engine.stats().mapped, 4);
}

#[test]
fn test_mapped_exports_fail_requests_past_a_shrunk_end_and_recover() {
    // Resident (locked), and mapped reads (not locked).
    for resident in [true, false] {
        mapped_export_fails_requests_past_a_shrunk_end_and_recovers(resident);
    }
}

fn mapped_export_fails_requests_past_a_shrunk_end_and_recovers(resident: bool) {
    let file = temp_file(64);
    let mut s = spec(file.path());
    // Writes through the mapping too (a pwritev2 past the end would grow the file again).
    (s.resident, s.mapped_reads, s.mapped_writes) = (resident, !resident, true);
    let exports = open(&[s]);
    assert_eq!(exports[0].read_map().map(FileMap::locked), Some(resident));
    let mut pool = pool();
    let mut engine = uring(Arc::clone(&exports), &pool);
    file.as_file().set_len(8 * 512).unwrap();
    let reqs = vec![
        req(&mut pool, IoOp::Read, 6, 512, 0, 1),
        req(&mut pool, IoOp::Read, 7, 1024, 0, 2),
        req(&mut pool, IoOp::Write, 32, 512, 0, 3),
        req(&mut pool, IoOp::Read, 40, 512, 0, 4),
    ];
    let done = submit_all(&mut engine, reqs);
    let ok: Vec<bool> = done.iter().map(|c| c.result.is_ok()).collect();
    assert_eq!(ok, [true, false, false, false], "{done:?}");
    assert!(done[1..]
        .iter()
        .all(|c| c.result.unwrap_err().is_media_error()));
    recycle(&mut pool, done);
    let faults = |map: Option<&FileMap>| map.map_or(0, FileMap::faults);
    // Two reads fault on the read mapping, the write on the write mapping.
    assert!(faults(exports[0].read_map()) >= 2);
    assert!(faults(exports[0].write_map()) >= 1);
    // The file grows back: the same requests succeed, and the write reaches the file.
    file.as_file().set_len(64 * 512).unwrap();
    let reqs = vec![
        req(&mut pool, IoOp::Read, 7, 1024, 0, 2),
        req(&mut pool, IoOp::Write, 32, 512, 0, 3),
    ];
    submit_ok(&mut engine, &mut pool, reqs);
    assert!(file_bytes(&file, 32 * 512, 512).iter().all(|b| *b == 3));
    // The pages mapped back after the faults joined their neighbours again: each mapping is
    // one area, as before (a split one could no longer use 2 MiB pages there).
    for map in [exports[0].read_map(), exports[0].write_map()] {
        assert_eq!(
            map.and_then(FileMap::areas),
            Some(1),
            "resident = {resident}"
        );
    }
}

#[test]
fn test_resident_export_needs_memory_and_no_direct_io() {
    let file = temp_file(8);
    let mut s = spec(file.path());
    (s.resident, s.direct_io) = (true, true);
    let err = Export::open(&s).unwrap_err();
    assert!(err.to_string().contains("choose one"), "{err}");
    // A sparse file larger than the machine's memory is refused before mlock.
    let big = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
    big.as_file().set_len(1 << 43).unwrap();
    let mut s = spec(big.path());
    s.resident = true;
    let err = Export::open(&s).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("resident needs 8388608 MiB") && text.contains("MemAvailable"),
        "{text}"
    );
}

#[test]
fn test_uring_ring_uses_single_issuer_mode() {
    let file = temp_file(8);
    let pool = pool();
    let engine = UringEngine::new(
        open(&[spec(file.path())]),
        Arc::clone(pool.arena()),
        UringConfig::default(),
    )
    .unwrap();
    assert!(engine.ring_mode().single_issuer, "{:?}", engine.ring_mode());
}

#[test]
fn test_engine_moves_to_another_thread_before_first_use() {
    let file = temp_file(8);
    let mut pool = pool();
    let mut engine = uring(open(&[spec(file.path())]), &pool);
    let write = req(&mut pool, IoOp::Write, 1, 512, 0, 0x77);
    let done = std::thread::spawn(move || submit_all(&mut engine, vec![write]))
        .join()
        .unwrap();
    assert!(done[0].result.is_ok());
    assert!(file_bytes(&file, 512, 512).iter().all(|b| *b == 0x77));
}

#[test]
fn test_submit_commit_reap_do_not_allocate() {
    let file = temp_file(64);
    let mut s = spec(file.path());
    s.direct_io = true;
    let exports = open(&[s]);
    let mut pool = pool();
    for mut engine in [
        uring(Arc::clone(&exports), &pool),
        sync(Arc::clone(&exports), &pool),
    ] {
        let mut out: Vec<IoCompletion> = Vec::with_capacity(64);
        let mut round = |engine: &mut Engine, pool: &mut ChunkPool| {
            for i in 0..8u8 {
                engine
                    .submit(req(pool, IoOp::Write, 2 * u64::from(i), 1024, 0, i))
                    .unwrap();
            }
            engine
                .submit(req(pool, IoOp::Read, 20, 1024, 1, 8))
                .unwrap(); // bounced
            engine.submit(req(pool, IoOp::Flush, 0, 0, 0, 9)).unwrap();
            engine.commit(Instant::now()).unwrap();
            while engine.in_flight() > 0 {
                engine.wait(1).unwrap();
                engine.reap(&mut |c| out.push(c));
            }
            assert_eq!(out.len(), 10);
            assert!(out.iter().all(|c| c.result.is_ok()));
            out.drain(..).for_each(|c| pool.free(c.chunk));
        };
        round(&mut engine, &mut pool); // warm-up: enables the ring
        ALLOCATIONS.with(|n| n.set(0));
        COUNTING.with(|c| c.set(true));
        for _ in 0..4 {
            round(&mut engine, &mut pool);
        }
        COUNTING.with(|c| c.set(false));
        assert_eq!(ALLOCATIONS.with(Cell::get), 0, "{:?}", engine.stats());
        assert!(engine.stats().bounced >= 4);
    }
}

/// A loop device over a temporary file, detached on drop.
struct LoopDevice {
    path: PathBuf,
    backing: NamedTempFile,
}

impl LoopDevice {
    fn new(sectors: u64, block_size: u32) -> LoopDevice {
        let backing = temp_file(sectors);
        let path = losetup(backing.path(), block_size);
        LoopDevice { path, backing }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        drop(Detach(self.path.clone()));
    }
}

#[test]
fn test_block_device_export_is_exclusive_and_round_trips() {
    // 4096-byte logical blocks: 512-byte requests cannot use O_DIRECT and take the buffered lane.
    let dev = LoopDevice::new(2048, 4096);
    let mut s = spec(&dev.path);
    (s.offset_sectors, s.direct_io) = (1024, true);
    let exports = open(&[s.clone()]);
    assert_eq!(exports[0].sectors(), 1024);
    let align = exports[0]
        .dio_align()
        .expect("block devices report STATX_DIOALIGN");
    assert_eq!(align.offset_align, 4096);
    let second = Export::open(&s).unwrap_err();
    assert!(
        second.to_string().contains(&dev.path.display().to_string()),
        "{second}"
    );
    let mut pool = pool();
    let mut engine = uring(Arc::clone(&exports), &pool);
    let small = req(&mut pool, IoOp::Write, 1023, 512, 0, 0x3C);
    let big = req(&mut pool, IoOp::Write, 0, 4096, 0, 0x3B);
    let flush = req(&mut pool, IoOp::Flush, 0, 0, 0, 0x3D);
    submit_ok(&mut engine, &mut pool, vec![small, big, flush]);
    assert_eq!((engine.stats().buffered, engine.stats().bounced), (1, 0));
    // A direct read of the block holding the buffered write sees it.
    let done = submit_all(
        &mut engine,
        vec![req(&mut pool, IoOp::Read, 1016, 4096, 0, 0x3E)],
    );
    let block = data(&pool, &done[0], 0, 4096);
    assert!(block[..3584].iter().all(|b| *b == 0) && block[3584..].iter().all(|b| *b == 0x3C));
    assert!(file_bytes(&dev.backing, 2047 * 512, 512)
        .iter()
        .all(|b| *b == 0x3C));
    assert!(file_bytes(&dev.backing, 1024 * 512, 4096)
        .iter()
        .all(|b| *b == 0x3B));
}

// ---- Oracle: the io_uring engine must agree with the synchronous engine. ----

#[derive(Clone, Debug)]
struct Op {
    export: u16,
    op: IoOp,
    sector: u64,
    sectors: u32,
    buf_offset: u32,
    fill: u8,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let op = prop_oneof![4 => Just(IoOp::Read), 4 => Just(IoOp::Write), 1 => Just(IoOp::Flush)];
    let buf_offset = prop_oneof![Just(0u32), Just(512), Just(1), Just(100)];
    (0u16..4, op, 0u64..44, 1u32..8, buf_offset, any::<u8>()).prop_map(
        |(export, op, sector, sectors, buf_offset, fill)| Op {
            export,
            op,
            sector,
            sectors,
            buf_offset,
            fill,
        },
    )
}

/// Drops requests whose range overlaps a write in the same batch (their order is undefined).
fn without_conflicts(batch: Vec<Op>) -> Vec<Op> {
    let mut kept: Vec<Op> = Vec::new();
    for op in batch {
        let end = op.sector + u64::from(op.sectors);
        let conflict = kept.iter().any(|k| {
            let overlap = k.export == op.export
                && k.sector < end
                && op.sector < k.sector + u64::from(k.sectors);
            overlap && (k.op == IoOp::Write || op.op == IoOp::Write)
        });
        if !conflict {
            kept.push(op);
        }
    }
    kept
}

struct Side {
    files: Vec<NamedTempFile>,
    pool: ChunkPool,
    engine: Engine,
}

fn side(uring_side: bool, seed: &[u8]) -> Side {
    let files: Vec<NamedTempFile> = (0..3).map(|_| temp_file(48)).collect();
    for f in &files {
        f.as_file().write_all_at(seed, 0).unwrap();
    }
    let mut specs: Vec<ExportSpec> = files.iter().map(|f| spec(f.path())).collect();
    (
        specs[0].offset_sectors,
        specs[0].length_sectors,
        specs[0].direct_io,
    ) = (4, Some(40), true);
    (specs[1].offset_sectors, specs[1].durability) = (2, Durability::Sync);
    // Resident: reads and write-back writes are copies through the mapping (the sync oracle
    // ignores the mapping and uses pread/pwrite).
    (specs[2].offset_sectors, specs[2].length_sectors) = (1, Some(42));
    specs[2].resident = true;
    let exports = open(&specs);
    let pool = pool();
    let engine = if uring_side {
        uring(exports, &pool)
    } else {
        sync(exports, &pool)
    };
    Side {
        files,
        pool,
        engine,
    }
}

type Outcome = (u64, Result<(), aoe_xdp::storage::engine::IoError>, Vec<u8>);

/// Runs one batch; returns submit outcomes and completions with the bytes read.
fn run_batch(
    side: &mut Side,
    batch: &[Op],
    base: u64,
) -> (Vec<Result<(), SubmitError>>, Vec<Outcome>) {
    let mut submits = Vec::new();
    for (i, op) in batch.iter().enumerate() {
        let len = if op.op == IoOp::Flush {
            0
        } else {
            op.sectors * 512
        };
        let mut r = req(
            &mut side.pool,
            op.op,
            op.sector,
            len,
            op.buf_offset,
            op.fill,
        );
        (r.export, r.user_data) = (op.export, base + i as u64);
        submits.push(side.engine.submit(r).map_err(|e| {
            side.pool.free(e.req.chunk);
            e.error
        }));
    }
    let done = drain(&mut side.engine);
    let outcomes = done
        .into_iter()
        .map(|c| {
            let op = &batch[usize::try_from(c.user_data - base).unwrap()];
            let bytes = if op.op == IoOp::Read && c.result.is_ok() {
                data(&side.pool, &c, op.buf_offset, op.sectors * 512).to_vec()
            } else {
                Vec::new()
            };
            let outcome = (c.user_data, c.result, bytes);
            side.pool.free(c.chunk);
            outcome
        })
        .collect();
    (submits, outcomes)
}

/// Deterministic pseudo-random file contents (xorshift64).
fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn prop_uring_engine_matches_sync_oracle(
        batches in proptest::collection::vec(proptest::collection::vec(arb_op(), 1..12), 1..6),
        seed in any::<u64>(),
    ) {
        let seed = seeded_bytes(seed, 48 * 512);
        let mut oracle = side(false, &seed);
        let mut subject = side(true, &seed);
        for (b, batch) in batches.into_iter().enumerate() {
            let batch = without_conflicts(batch);
            let base = b as u64 * 100;
            let expected = run_batch(&mut oracle, &batch, base);
            let actual = run_batch(&mut subject, &batch, base);
            prop_assert_eq!(&actual.0, &expected.0);
            prop_assert_eq!(&actual.1, &expected.1);
        }
        for (o, s) in oracle.files.iter().zip(&subject.files) {
            prop_assert_eq!(file_bytes(o, 0, 48 * 512), file_bytes(s, 0, 48 * 512));
        }
        let (os, ss) = (oracle.engine.stats(), subject.engine.stats());
        prop_assert_eq!((os.submitted, os.completed, os.errors, os.rejected, os.bounced), (ss.submitted, ss.completed, ss.errors, ss.rejected, ss.bounced));
        // Merging saves data I/Os; group syncs (each for at least one write of the `sync`
        // export or FLUSH, each of which the oracle does as an I/O of its own) never
        // outnumber what they cover.
        prop_assert!(ss.ios - ss.syncs <= os.ios);
        prop_assert!(ss.syncs <= ss.sync_covered);
    }
}

#[test]
fn test_mapped_writes_are_copies_through_the_mapping() {
    let file = temp_file(64);
    let mapped = ExportSpec {
        mapped_writes: true,
        ..spec(file.path())
    };
    let exports = open(std::slice::from_ref(&mapped));
    let map = exports[0]
        .write_map()
        .expect("a mapped-writes export has a mapping");
    assert!(map.writable() && exports[0].write_map().is_some());
    assert!(!map.locked(), "not resident: not locked");
    assert!(
        exports[0].read_map().is_none(),
        "reads of a non-resident export use preadv2"
    );
    let mut pool = pool();
    let mut engine = uring(Arc::clone(&exports), &pool);
    let writes = vec![
        req(&mut pool, IoOp::Write, 12, 1024, 512, 3),
        req(&mut pool, IoOp::Write, 8, 1024, 512, 1),
        req(&mut pool, IoOp::Write, 63, 512, 1, 4),
    ];
    submit_ok(&mut engine, &mut pool, writes);
    assert_fills(&file, &[(8, 1024, 1), (12, 1024, 3), (63, 512, 4)]);
    // Reads (not resident) still go through preadv2.
    let done = submit_all(&mut engine, vec![req(&mut pool, IoOp::Read, 8, 1024, 0, 9)]);
    assert!(data(&pool, &done[0], 0, 1024).iter().all(|b| *b == 1));
    recycle(&mut pool, done);
    let stats = engine.stats();
    assert_eq!(
        (stats.mapped, stats.ios, stats.inline),
        (3, 1, 1),
        "{stats:?}"
    );
    // Without mapped_writes (the default), and with durability = "sync", read-only or
    // direct I/O, an export that is not resident has no mapping.
    let mut others = vec![spec(file.path()), synced_spec(file.path())];
    others.push(ExportSpec {
        durability: Durability::Sync,
        ..mapped.clone()
    });
    others.push(ExportSpec {
        read_only: true,
        ..mapped.clone()
    });
    for other in others {
        let export = Export::open(&other).unwrap();
        assert!(
            export.read_map().is_none() && export.write_map().is_none(),
            "{other:?}"
        );
    }
}

#[test]
fn test_writeback_writes_without_mapped_writes_are_pwritev2() {
    let file = temp_file(64);
    let exports = open(&[spec(file.path())]);
    let mut pool = pool();
    let mut engine = uring(Arc::clone(&exports), &pool);
    let writes = vec![
        req(&mut pool, IoOp::Write, 12, 1024, 512, 3),
        req(&mut pool, IoOp::Write, 30, 1024, 512, 1),
        req(&mut pool, IoOp::Write, 63, 512, 1, 4),
    ];
    submit_ok(&mut engine, &mut pool, writes);
    assert_fills(&file, &[(30, 1024, 1), (12, 1024, 3), (63, 512, 4)]);
    let stats = engine.stats();
    assert_eq!(
        (stats.mapped, stats.inline, stats.ios, stats.errors),
        (0, 3, 3, 0),
        "{stats:?}"
    );
}

#[test]
fn test_writeback_buffered_writes_complete_inline() {
    let file = temp_file(64);
    let mut pool = pool();
    // Without a mapping (as when none could be made): one pwritev2 per run.
    let export = Export::open(&spec(file.path())).unwrap().without_map();
    let mut engine = uring(Arc::new([export]), &pool);
    // Three back-to-back writes (submitted out of order) and one elsewhere.
    for (sector, fill) in [(12, 3), (8, 1), (10, 2), (40, 4)] {
        assert!(engine
            .submit(req(&mut pool, IoOp::Write, sector, 1024, 512, fill))
            .is_ok());
    }
    let mut done = Vec::new();
    assert_eq!(
        engine.reap(&mut |c| done.push(c)),
        0,
        "nothing before commit"
    );
    engine.commit(Instant::now()).unwrap();
    // Done during the commit: ready without waiting, one pwritev2 per run.
    assert_eq!(engine.reap(&mut |c| done.push(c)), 4);
    assert_eq!(engine.in_flight(), 0);
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    recycle(&mut pool, done);
    assert_eq!((engine.stats().ios, engine.stats().merged), (2, 2));
    for (sector, fill) in [(8, 1), (10, 2), (12, 3), (40, 4)] {
        let bytes = file_bytes(&file, sector * 512, 1024);
        assert!(bytes.iter().all(|b| *b == fill), "sector {sector}");
    }
}

/// A slow disk: a FUSE file whose reads take [`SLOW_READ`], behind a loop device, whose page
/// cache reads a whole 4 KiB page in before a 1 KiB write into it.
const SLOW_READ: Duration = Duration::from_millis(400);

/// An 8 MiB slow disk (byte `i` is `i % 251`) behind a loop device of `block_size`-byte blocks:
/// its contents, the file system, the device and its detaching guard. 8 MiB, so that the FUSE
/// file's own readahead around page 0 stays far from the pages the tests write (2 MiB in).
fn slow_disk(block_size: u32) -> (Vec<u8>, FaultFs, PathBuf, Detach) {
    let original: Vec<u8> = (0..8u64 << 20).map(|i| (i % 251) as u8).collect();
    let fs = FaultFs::mount_slow_reads(original.clone(), SLOW_READ);
    let dev = losetup(&fs.disk(), block_size);
    let detach = Detach(dev.clone());
    (original, fs, dev, detach)
}

/// A write into a page the page cache does not hold (the kernel must read the page from the
/// disk first) goes through io_uring, where the read waits in an io-wq thread, instead of
/// holding up the worker's thread in `pwritev2`, or in a page fault through the
/// `mapped-writes` mapping: a read of a cached page submitted with it is answered at once,
/// the write once the disk read it, with its data and the page's other 3 KiB intact; the
/// next write into that page, now cached, is done inline again. Without the check, `commit`
/// took the whole disk read (checked by hand: 400 ms; 8 s through the mapping, whose fault
/// read ahead page after page).
#[test]
fn test_writes_into_uncached_pages_go_through_the_ring() {
    for mapped_writes in [false, true] {
        write_into_an_uncached_page(mapped_writes);
    }
}

fn write_into_an_uncached_page(mapped_writes: bool) {
    let (original, fs, dev, detach) = slow_disk(512);
    let spec = ExportSpec {
        mapped_writes,
        ..spec(&dev)
    };
    let mut pool = pool();
    let mut engine = uring(open(&[spec]), &pool);
    assert_eq!(
        engine.exports()[0].write_map().is_some(),
        mapped_writes,
        "a block device export maps its writes when asked"
    );
    // Page 0 cached: one slow read.
    assert!(engine
        .submit(req(&mut pool, IoOp::Read, 0, 1024, 0, 1))
        .is_ok());
    recycle(&mut pool, drain(&mut engine));
    // 1 KiB into the middle of page 512 (sector 4098), and a read of cached page 0.
    let (sector, at) = (4098u64, 4098 * 512);
    assert!(engine
        .submit(req(&mut pool, IoOp::Write, sector, 1024, 0, 0x5A))
        .is_ok());
    assert!(engine
        .submit(req(&mut pool, IoOp::Read, 4, 1024, 0, 2))
        .is_ok());
    let started = Instant::now();
    engine.commit(started).unwrap();
    let commit_took = started.elapsed();
    assert!(
        commit_took < SLOW_READ / 4,
        "mapped-writes {mapped_writes}: the commit waited for the disk ({commit_took:?})"
    );
    let mut done: Vec<(IoCompletion, Duration)> = Vec::new();
    while done.len() < 2 {
        engine.wait(1).unwrap();
        engine.reap(&mut |c| done.push((c, started.elapsed())));
    }
    let (read, read_took) = &done[0];
    assert_eq!(read.user_data, 2, "the cached read is answered first");
    assert!(read.result.is_ok());
    assert!(
        *read_took < SLOW_READ / 4,
        "the cached read waited {read_took:?}"
    );
    assert_eq!(data(&pool, read, 0, 1024), &original[2048..3072]);
    let (write, write_took) = &done[1];
    assert!(write.result.is_ok(), "{:?}", write.result);
    assert!(
        *write_took >= SLOW_READ / 2,
        "the write did not wait for the disk's read ({write_took:?})"
    );
    recycle(&mut pool, done.into_iter().map(|(c, _)| c).collect());
    let stats = engine.stats();
    assert_eq!((stats.uncached_writes, stats.errors), (1, 0));
    // The page is cached now: the next write into it is done inline (or through the mapping).
    let (inline, mapped) = (stats.inline, stats.mapped);
    let started = Instant::now();
    assert!(engine
        .submit(req(&mut pool, IoOp::Write, sector + 2, 1024, 0, 0x6B))
        .is_ok());
    recycle(&mut pool, drain(&mut engine));
    assert!(started.elapsed() < SLOW_READ / 4);
    let stats = engine.stats();
    assert_eq!(stats.uncached_writes, 1);
    assert_eq!(
        (stats.inline - inline, stats.mapped - mapped),
        if mapped_writes { (0, 1) } else { (1, 0) }
    );
    // Durable, then on the disk: both writes and the rest of the page around them.
    flush_and_detach(engine, &mut pool, detach);
    let bytes = fs.bytes();
    let page = (at as usize & !4095)..(at as usize & !4095) + 4096;
    let mut expected = original[page.clone()].to_vec();
    let offset = at as usize - page.start;
    expected[offset..offset + 1024].fill(0x5A);
    expected[offset + 1024..offset + 2048].fill(0x6B);
    assert!(
        bytes[page.clone()] == expected[..],
        "mapped-writes {mapped_writes}: the page on the disk"
    );
    assert!(bytes[..page.start] == original[..page.start]);
    assert!(bytes[page.end..] == original[page.end..]);
}

/// A direct write drops the pages it covers from the page cache (`O_DIRECT`), and the engine
/// forgets them: on a slow disk with 4 KiB logical blocks (so a 1 KiB write is buffered and a
/// 4 KiB one direct), a 1 KiB write into a page written inline before, after a 4 KiB direct
/// write of that page, goes through the ring again (the kernel reads the page back on an
/// io-wq thread) instead of waiting 400 ms for it in `commit`.
#[test]
fn test_a_direct_write_makes_the_engine_forget_the_pages_it_covers() {
    let (_, fs, dev, detach) = slow_disk(4096);
    let spec = ExportSpec {
        direct_io: true,
        ..spec(&dev)
    };
    let exports = open(&[spec]);
    let align = exports[0]
        .dio_align()
        .expect("a loop device supports O_DIRECT");
    assert_eq!(
        align.offset_align, 4096,
        "the loop device's logical block size"
    );
    let mut pool = pool();
    let mut engine = uring(exports, &pool);
    let page = 4096u64; // sector of the page at 2 MiB
                        // One clock for every commit: the engine's sample of the pages it saw cached (once a
                        // second by that clock) never runs after the first write, so only the forgetting counts.
    let clock = Instant::now();
    let write = |engine: &mut Engine, pool: &mut ChunkPool, sector, len, fill| {
        timed_write(engine, pool, (sector, len, fill), clock)
    };
    // The page is not cached: through the ring, which waits for the disk.
    assert_through_the_ring(write(&mut engine, &mut pool, page + 2, 1024, 0x5A));
    // Cached now: inline, and the page is remembered.
    let (_, took) = write(&mut engine, &mut pool, page + 4, 1024, 0x6B);
    assert!(
        took < SLOW_READ / 4,
        "the write into a cached page took {took:?}"
    );
    let stats = engine.stats();
    assert_eq!((stats.uncached_writes, stats.buffered > 0), (1, true));
    // The whole page, directly: the kernel writes the dirty page back and drops it.
    let (_, took) = write(&mut engine, &mut pool, page, 4096, 0x7C);
    assert!(took < SLOW_READ / 4, "the direct write took {took:?}");
    let file = std::fs::File::open(&dev).unwrap();
    let cached = aoe_xdp::sys::pagecache::cached_pages(&file, page * 512, 4096).unwrap();
    assert_eq!(
        cached.cached, 0,
        "the direct write left the page in the page cache"
    );
    fs.drop_page_cache();
    // Into the dropped page: through the ring again, `commit` does not wait.
    assert_through_the_ring(write(&mut engine, &mut pool, page + 6, 1024, 0x8D));
    assert_eq!(engine.stats().uncached_writes, 2);
    flush_and_detach(engine, &mut pool, detach);
    let at = usize::try_from(page * 512).unwrap();
    let mut expected = vec![0x7C; 4096];
    expected[3072..].fill(0x8D);
    assert!(
        fs.bytes()[at..at + 4096] == expected[..],
        "the page on the disk"
    );
}

/// A page evicted in a way the kernel does not count in `/proc/vmstat` (here
/// `POSIX_FADV_DONTNEED`; on a machine like this one, DAMON's `pageout` too) is noticed by the
/// engine's sample of the pages it saw cached, once a second by the clock `commit` is given:
/// a write into it less than a second after the last sample is done inline and waits for the
/// disk in `commit` (the hazard), one after that goes through the ring.
#[test]
fn test_a_sample_notices_a_page_evicted_without_a_count() {
    let (original, fs, dev, detach) = slow_disk(512);
    let mut pool = pool();
    let mut engine = uring(open(&[spec(&dev)]), &pool);
    let page = 4096u64; // sector of the page at 2 MiB
    let clock = Instant::now();
    // Not cached: the ring. Cached then: inline, and remembered.
    assert_through_the_ring(timed_write(
        &mut engine,
        &mut pool,
        (page + 2, 1024, 0x5A),
        clock,
    ));
    let (_, took) = timed_write(&mut engine, &mut pool, (page + 4, 1024, 0x6B), clock);
    assert!(
        took < SLOW_READ / 4,
        "the write into a cached page took {took:?}"
    );
    let device = std::fs::File::open(&dev).unwrap();
    let evict = || {
        device.sync_data().unwrap();
        rustix::fs::fadvise(&device, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let cached = aoe_xdp::sys::pagecache::cached_pages(&device, page * 512, 4096).unwrap();
        assert_eq!(cached.cached, 0, "the page is still cached");
        fs.drop_page_cache();
    };
    // Half a second after the last sample: the engine believes the page cached.
    evict();
    let half = clock + Duration::from_millis(500);
    let (commit_took, _) = timed_write(&mut engine, &mut pool, (page + 6, 1024, 0x7C), half);
    assert!(
        commit_took >= SLOW_READ / 2,
        "the inline write did not wait for the disk ({commit_took:?})"
    );
    assert_eq!(
        (engine.stats().uncached_writes, engine.stats().seen_resets),
        (1, 0)
    );
    // A second after it: the sample finds the page gone, and the write goes to the ring.
    evict();
    let later = clock + Duration::from_secs(1);
    assert_through_the_ring(timed_write(
        &mut engine,
        &mut pool,
        (page + 2, 1024, 0x8D),
        later,
    ));
    let stats = engine.stats();
    assert_eq!(
        (
            stats.uncached_writes,
            stats.seen_resets,
            stats.seen_sample_misses
        ),
        (2, 1, 1)
    );
    flush_and_detach(engine, &mut pool, detach);
    let at = usize::try_from(page * 512).unwrap();
    let mut expected = original[at..at + 4096].to_vec();
    expected[1024..2048].fill(0x8D);
    expected[2048..3072].fill(0x6B);
    expected[3072..].fill(0x7C);
    assert!(
        fs.bytes()[at..at + 4096] == expected[..],
        "the page on the disk"
    );
}

/// Submits a write (`sector`, `len` bytes, filled with `fill`), commits it with `clock` as the
/// engine's idea of now, and waits for it; returns how long `commit` took and how long the
/// whole write did.
fn timed_write(
    engine: &mut Engine,
    pool: &mut ChunkPool,
    (sector, len, fill): (u64, u32, u8),
    clock: Instant,
) -> (Duration, Duration) {
    assert!(engine
        .submit(req(pool, IoOp::Write, sector, len, 0, fill))
        .is_ok());
    let started = Instant::now();
    engine.commit(clock).unwrap();
    let commit_took = started.elapsed();
    let done = drain(engine);
    assert_eq!(done.len(), 1);
    assert!(done[0].result.is_ok(), "{:?}", done[0].result);
    recycle(pool, done);
    (commit_took, started.elapsed())
}

/// A write on the slow disk that went through the ring, given how long its `commit` took and
/// how long the write did: `commit` did not wait, the write waited for the disk's read.
fn assert_through_the_ring((commit_took, took): (Duration, Duration)) {
    assert!(
        commit_took < SLOW_READ / 4,
        "commit waited {commit_took:?} for the disk"
    );
    assert!(
        took >= SLOW_READ / 2,
        "the write did not read the disk ({took:?})"
    );
}

/// Flushes the engine's writes to the slow disk, then lets go of the engine and the loop
/// device (their data is then in the FUSE file).
fn flush_and_detach(mut engine: Engine, pool: &mut ChunkPool, detach: Detach) {
    assert!(engine.submit(req(pool, IoOp::Flush, 0, 0, 0, 3)).is_ok());
    recycle(pool, drain(&mut engine));
    drop(engine);
    drop(detach);
}

/// A file of `sectors` sectors whose sector `i` is filled with `i as u8`, synced to disk.
fn patterned_file(sectors: u64) -> NamedTempFile {
    let file = temp_file(sectors);
    for i in 0..sectors {
        let sector = [u8::try_from(i % 256).unwrap(); 512];
        file.as_file().write_all_at(&sector, i * 512).unwrap();
    }
    file.as_file().sync_all().unwrap();
    file
}

fn assert_patterned(pool: &ChunkPool, c: &IoCompletion, buf_offset: u32, sector: u64, len: u32) {
    assert!(c.result.is_ok(), "{c:?}");
    for (i, block) in data(pool, c, buf_offset, len).chunks(512).enumerate() {
        let want = u8::try_from((sector + i as u64) % 256).unwrap();
        assert!(
            block.iter().all(|b| *b == want),
            "sector {}",
            sector + i as u64
        );
    }
}

#[test]
fn test_cached_reads_complete_inline_and_match_the_ring_path() {
    let file = patterned_file(64);
    let requests = [(20, 1), (16, 2), (18, 3), (50, 4)];
    for inline in [true, false] {
        let mut pool = pool();
        let exports = open(&[spec(file.path())]);
        let mut uring =
            UringEngine::new(exports, Arc::clone(pool.arena()), UringConfig::default()).unwrap();
        uring.set_inline_reads(inline);
        let mut engine = Engine::Uring(uring);
        for (sector, tag) in requests {
            let read = req(&mut pool, IoOp::Read, sector, 1024, 512, tag);
            assert!(engine.submit(read).is_ok());
        }
        engine.commit(Instant::now()).unwrap();
        let mut done = Vec::new();
        if inline {
            // The pages are cached (just written): done during the commit, no waiting.
            assert_eq!(engine.reap(&mut |c| done.push(c)), 4);
        }
        done.extend(drain(&mut engine));
        done.sort_by_key(|c| c.user_data);
        assert_eq!(done.len(), 4);
        for (c, (sector, tag)) in done.iter().zip(requests) {
            assert_eq!(c.user_data, u64::from(tag));
            assert_patterned(&pool, c, 512, sector, 1024);
        }
        recycle(&mut pool, done);
        let stats = engine.stats();
        assert_eq!((stats.ios, stats.merged, stats.inline_misses), (2, 2, 0));
    }
}

#[test]
fn test_a_batch_of_lone_reads_goes_through_the_ring_and_a_few_go_inline() {
    let file = patterned_file(256);
    // (first sector, requests in one commit, sectors apart): lone reads are 8 sectors apart,
    // a run is back to back.
    let cases = [
        ("3 lone reads", 3, 8, 3, 3),
        ("4 lone reads", 4, 8, 4, 0),
        ("16 lone reads", 16, 8, 16, 0),
        ("a run of 16", 16, 2, 1, 16),
    ];
    for (name, count, step, ios, inline) in cases {
        let mut pool = pool();
        let mut engine = uring(open(&[spec(file.path())]), &pool);
        let sectors: Vec<u64> = (0..count).map(|i| 10 + i * step).collect();
        for (tag, sector) in sectors.iter().enumerate() {
            let tag = u8::try_from(tag).expect("fewer than 256 requests");
            let read = req(&mut pool, IoOp::Read, *sector, 1024, 512, tag);
            assert!(engine.submit(read).is_ok(), "[{name}] submit");
        }
        let mut done = drain(&mut engine);
        done.sort_by_key(|c| c.user_data);
        assert_eq!(done.len(), sectors.len(), "[{name}] completions");
        for (c, sector) in done.iter().zip(&sectors) {
            assert!(c.result.is_ok(), "[{name}] sector {sector}: {:?}", c.result);
            assert_patterned(&pool, c, 512, *sector, 1024);
        }
        recycle(&mut pool, done);
        let stats = engine.stats();
        assert_eq!(
            (stats.ios, stats.inline, stats.inline_misses, stats.errors),
            (ios, inline, 0, 0),
            "[{name}] kernel I/Os, inline requests, misses, errors"
        );
    }
}

#[test]
fn test_reads_missing_the_page_cache_go_through_the_ring() {
    let file = patterned_file(64);
    let mut pool = pool();
    let mut engine = uring(open(&[spec(file.path())]), &pool);
    // Drop the (clean, synced) pages: a RWF_NOWAIT read then answers EAGAIN. DONTNEED is a
    // hint: a page still sitting in another CPU's LRU batch stays cached, and the read is
    // then served inline. So drop and read until one read missed; each read must be right.
    let mut attempts = 0;
    while engine.stats().inline_misses == 0 && attempts < 50 {
        attempts += 1;
        rustix::fs::fadvise(file.as_file(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
        assert!(engine
            .submit(req(&mut pool, IoOp::Read, 30, 1024, 512, 7))
            .is_ok());
        let done = drain(&mut engine);
        assert_eq!(done.len(), 1);
        assert_patterned(&pool, &done[0], 512, 30, 1024);
        recycle(&mut pool, done);
        if engine.stats().inline_misses == 0 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let stats = engine.stats();
    assert_eq!(
        (stats.inline_misses, stats.errors),
        (1, 0),
        "no read missed the page cache in {attempts} attempts"
    );
    // The miss went through the ring: one kernel I/O more than the inline hits before it.
    assert_eq!(stats.ios, attempts);
}

#[test]
fn test_file_system_without_nowait_reads_uses_the_ring() {
    // tmpfs answers RWF_NOWAIT reads with EOPNOTSUPP.
    let file = NamedTempFile::new_in("/dev/shm").unwrap();
    for i in 0..64u64 {
        let sector = [u8::try_from(i).unwrap(); 512];
        file.as_file().write_all_at(&sector, i * 512).unwrap();
    }
    let mut pool = pool();
    let exports = open(&[spec(file.path())]);
    let uring = UringEngine::new(exports, Arc::clone(pool.arena()), UringConfig::default());
    let mut engine = Engine::Uring(uring.unwrap());
    for (sector, tag) in [(4, 1), (40, 2)] {
        assert!(engine
            .submit(req(&mut pool, IoOp::Read, sector, 1024, 512, tag))
            .is_ok());
        let done = drain(&mut engine);
        assert_eq!(done.len(), 1);
        assert_patterned(&pool, &done[0], 512, sector, 1024);
        recycle(&mut pool, done);
        let Engine::Uring(uring) = &engine else {
            unreachable!()
        };
        assert!(
            !uring.inline_reads(0),
            "still tried inline after EOPNOTSUPP"
        );
    }
    let stats = engine.stats();
    assert_eq!((stats.ios, stats.inline_misses, stats.errors), (2, 0, 0));
}

// ---- Group commit: `durability = "sync"` writes share data syncs. ----

#[test]
fn test_sync_writes_wait_for_one_shared_data_sync() {
    let file = temp_file(256);
    let mut pool = pool();
    let mut engine = uring(open(&[synced_spec(file.path())]), &pool);
    // 32 scattered 1 KiB writes (no two adjacent: 32 pwritev2 calls).
    for i in 0..32u8 {
        let write = req(&mut pool, IoOp::Write, u64::from(i) * 4, 1024, 512, i + 1);
        engine.submit(write).unwrap();
    }
    engine.commit(Instant::now()).unwrap();
    let Engine::Uring(uring_engine) = &engine else {
        unreachable!()
    };
    // Written, not yet acknowledged: all of them wait for the one sync now in flight.
    assert_eq!(uring_engine.waiting_for_sync(), 32);
    assert_eq!(engine.in_flight(), 32);
    assert_eq!(data_ios_and_syncs(&engine), (32, 1));
    let done = drain(&mut engine);
    assert_eq!(done.len(), 32);
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    recycle(&mut pool, done);
    let stats = engine.stats();
    assert_eq!(
        (stats.syncs, stats.sync_covered, stats.completed),
        (1, 32, 32)
    );
    for i in 0..32u8 {
        let bytes = file_bytes(&file, u64::from(i) * 4 * 512, 1024);
        assert!(bytes.iter().all(|b| *b == i + 1), "write {i}");
    }
}

/// Submits and commits 4 writes of `len` bytes, `stride` sectors apart (the commit starts a
/// sync), then, without reaping, 4 more and a FLUSH (user data 99): they gather for the next
/// sync.
fn write_during_a_sync(engine: &mut Engine, pool: &mut ChunkPool, (stride, len): (u64, u32)) {
    for (batch, flush) in [(0..4u8, false), (4..8u8, true)] {
        for i in batch {
            let write = req(pool, IoOp::Write, u64::from(i) * stride, len, 0, i + 1);
            engine.submit(write).unwrap();
        }
        if flush {
            engine.submit(req(pool, IoOp::Flush, 0, 0, 0, 99)).unwrap();
        }
        engine.commit(Instant::now()).unwrap();
    }
}

#[test]
fn test_writes_during_a_sync_gather_for_the_next_one() {
    let file = temp_file(64);
    let mut pool = pool();
    let mut engine = uring(open(&[synced_spec(file.path())]), &pool);
    // Nothing reaped in between: the first sync is still in flight as far as the engine
    // knows, so the next writes and a FLUSH are written and gather, with no second sync yet.
    write_during_a_sync(&mut engine, &mut pool, (2, 512));
    assert_eq!(data_ios_and_syncs(&engine), (8, 1));
    let done = drain(&mut engine);
    assert_eq!(done.len(), 9);
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    recycle(&mut pool, done);
    let stats = engine.stats();
    assert_eq!((stats.syncs, stats.sync_covered), (2, 9), "{stats:?}");
}

#[test]
fn test_each_export_syncs_on_its_own_and_writeback_flushes_share_a_sync() {
    let (a, b) = (temp_file(64), temp_file(64));
    let mut pool = pool();
    let exports = open(&[synced_spec(a.path()), spec(b.path())]);
    let mut engine = uring(exports, &pool);
    let mut write_a = req(&mut pool, IoOp::Write, 1, 512, 0, 0xA1);
    write_a.export = 0;
    let mut write_b = req(&mut pool, IoOp::Write, 1, 512, 0, 0xB1);
    write_b.export = 1;
    let flushes: Vec<IoRequest> = (0..3)
        .map(|i| {
            let mut flush = req(&mut pool, IoOp::Flush, 0, 0, 0, 10 + i);
            flush.export = 1;
            flush
        })
        .collect();
    engine.submit(write_a).unwrap();
    engine.submit(write_b).unwrap();
    for flush in flushes {
        engine.submit(flush).unwrap();
    }
    engine.commit(Instant::now()).unwrap();
    // One sync for the `sync` export's write, one for the three FLUSHes of the other.
    assert_eq!(data_ios_and_syncs(&engine), (2, 2));
    let done = drain(&mut engine);
    assert_eq!(done.len(), 5);
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    assert_eq!(engine.stats().sync_covered, 4);
    assert!(file_bytes(&a, 512, 512).iter().all(|x| *x == 0xA1));
    assert!(file_bytes(&b, 512, 512).iter().all(|x| *x == 0xB1));
}

#[test]
fn test_direct_io_sync_writes_go_through_the_ring_and_share_a_sync() {
    let file = temp_file(64);
    let mut pool = pool();
    let s = ExportSpec {
        direct_io: true,
        ..synced_spec(file.path())
    };
    let exports = open(&[s]);
    assert!(exports[0].dio_align().is_some(), "/var/tmp takes O_DIRECT");
    let mut engine = uring(exports, &pool);
    for i in 0..6u8 {
        let write = req(&mut pool, IoOp::Write, u64::from(i) * 8, 1024, 512, i + 1);
        engine.submit(write).unwrap();
    }
    engine.commit(Instant::now()).unwrap();
    // Six O_DIRECT writes in the ring, none seen complete yet, so no sync.
    assert_eq!(data_ios_and_syncs(&engine), (6, 0));
    let done = drain(&mut engine);
    assert!(done.iter().all(|c| c.result.is_ok()), "{done:?}");
    // Their completions may be seen one by one, each time starting a sync when none is in
    // flight: between one and six syncs, covering all six.
    let stats = engine.stats();
    assert_eq!((stats.inline, stats.sync_covered), (0, 6), "{stats:?}");
    assert!((1..=6).contains(&stats.syncs), "{stats:?}");
    for i in 0..6u8 {
        let bytes = file_bytes(&file, u64::from(i) * 8 * 512, 1024);
        assert!(bytes.iter().all(|b| *b == i + 1), "write {i}");
    }
}

/// Fills `fs` with a file of its own until it is full; returns the file.
fn fill(fs: &SmallTmpfs) -> PathBuf {
    let filler = fs.path().join("filler");
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "status=none"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "dd stops when the file system is full");
    filler
}

#[test]
fn test_a_failed_sync_fails_every_waiting_write_and_the_export_keeps_serving() {
    // A loop device over a sparse file on a full tmpfs: writes land in the device's page
    // cache, and the data sync fails when writing them back finds no room.
    let tmpfs = SmallTmpfs::new(4096);
    let backing = tmpfs.path().join("disk");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let dev = losetup(&backing, 512);
    let detach = Detach(dev.clone());
    let filler = fill(&tmpfs);
    let mut pool = pool();
    let mut engine = uring(open(&[synced_spec(&dev)]), &pool);
    // Gathered for the next sync while the first is in flight: failed with it all the same.
    write_during_a_sync(&mut engine, &mut pool, (64, 1024));
    let done = drain(&mut engine);
    assert_eq!(done.len(), 9);
    assert!(
        done.iter().all(|c| c.result.is_err()),
        "nothing acknowledged after a failed sync: {done:?}"
    );
    recycle(&mut pool, done);
    let stats = engine.stats();
    assert_eq!(
        (stats.syncs, stats.sync_failures, stats.errors),
        (1, 1, 9),
        "{stats:?}"
    );
    // Room again: the export keeps serving, and the next write is acknowledged once durable.
    std::fs::remove_file(filler).unwrap();
    let write = req(&mut pool, IoOp::Write, 8, 1024, 0, 0x77);
    let done = submit_all(&mut engine, vec![write]);
    assert_eq!(done[0].result, Ok(()), "{:?}", engine.stats());
    assert!(file_bytes_at(&backing, 8 * 512, 1024)
        .iter()
        .all(|b| *b == 0x77));
    drop(engine);
    drop(detach);
}

fn file_bytes_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

/// A small ext4 file system on a loop device, mounted on a temporary directory; unmounted
/// and detached on drop.
/// Field order is drop order: unmounted, then the image goes, then the loop device.
struct SmallExt4 {
    dir: MountPoint,
    _image: NamedTempFile,
    _detach: Detach,
}

impl SmallExt4 {
    fn new(mib: u64) -> SmallExt4 {
        let image = temp_file(mib << 11);
        let dev = losetup(image.path(), 512);
        let detach = Detach(dev.clone());
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-O", "^has_journal"])
            .arg(&dev)
            .output()
            .expect("mkfs.ext4 must be installed (e2fsprogs)");
        assert!(mkfs.status.success(), "{mkfs:?}");
        let dir = MountPoint::new();
        let mount = Command::new("mount")
            .arg(&dev)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(mount.status.success(), "{mount:?}");
        SmallExt4 {
            dir,
            _image: image,
            _detach: detach,
        }
    }
}

#[test]
fn test_a_full_file_system_fails_each_request_of_a_merged_write_with_its_own_errno() {
    // O_DIRECT writes into a sparse file larger than the file system: merged runs of 32
    // adjacent 4 KiB writes until the space runs out. The run that hits the end comes back
    // short; every request it did not cover is retried on its own and fails with ENOSPC
    // (ATA ABRT), as a lone write there would, never with the EIO of a short count (UNC).
    let fs = SmallExt4::new(4);
    let path = fs.dir.path().join("disk");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let s = ExportSpec {
        direct_io: true,
        ..spec(&path)
    };
    let exports = open(&[s]);
    assert!(exports[0].dio_align().is_some(), "ext4 takes O_DIRECT");
    let mut pool = pool();
    let mut engine = uring(exports, &pool);
    let (mut failed, mut written) = (Vec::new(), Vec::new());
    for batch in 0..32u64 {
        let writes: Vec<IoRequest> = (0..32u64)
            .map(|i| {
                let sector = (batch * 32 + i) * 8;
                let mut write = req(&mut pool, IoOp::Write, sector, 4096, 0, 0x5A);
                write.user_data = sector;
                write
            })
            .collect();
        let done = submit_all(&mut engine, writes);
        for c in &done {
            match c.result {
                Ok(()) => written.push(c.user_data),
                Err(error) => failed.push((c.user_data, error.errno)),
            }
        }
        recycle(&mut pool, done);
        if !failed.is_empty() {
            break;
        }
    }
    assert!(!failed.is_empty(), "the file system never filled up");
    assert!(
        failed.iter().all(|(_, errno)| *errno == libc::ENOSPC),
        "every failed request has the full file system's own errno: {failed:?}"
    );
    let stats = engine.stats();
    assert!(stats.retried > 0, "the short run was retried: {stats:?}");
    for sector in written {
        let bytes = file_bytes_at(&path, sector * 512, 4096);
        assert!(
            bytes.iter().all(|b| *b == 0x5A),
            "acknowledged write at {sector}"
        );
    }
}

/// Drops every cached page of `file` (it must be clean: synced).
fn drop_cached(file: &NamedTempFile) {
    file.as_file().sync_all().unwrap();
    rustix::fs::fadvise(file.as_file(), 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

/// Reads sectors `[first, first + count)` of export 0 in 1 KiB requests, `depth` at a time,
/// each in reverse order within its batch (as requests in flight may be served), checking the
/// data of a `patterned_file`.
fn read_through(engine: &mut Engine, pool: &mut ChunkPool, first: u64, count: u64, depth: u64) {
    let mut sector = first;
    while sector < first + count {
        let batch: Vec<u64> = (0..depth)
            .map(|i| sector + 2 * i)
            .filter(|s| *s < first + count)
            .rev()
            .collect();
        let reads = batch
            .iter()
            .zip(1..)
            .map(|(s, tag)| req(pool, IoOp::Read, *s, 1024, 0, tag))
            .collect();
        // Completions come sorted by tag: in `batch` order.
        let done = submit_all(engine, reads);
        for (c, s) in done.iter().zip(&batch) {
            assert_patterned(pool, c, 0, *s, 1024);
        }
        recycle(pool, done);
        sector += 2 * depth;
    }
}

#[test]
fn test_reads_fill_the_page_cache_in_small_folios_and_streams_are_read_ahead() {
    const MIB: u64 = 1 << 20;
    let sectors = 32 * MIB / 512;
    let file = patterned_file(sectors);
    let cached = |file: &NamedTempFile, from: u64, len: u64| {
        let len = usize::try_from(len).unwrap();
        aoe_xdp::sys::pagecache::cached_pages(file.as_file(), from, len).unwrap()
    };
    // What the kernel's own readahead does with 4 MiB read sequentially in 1 KiB reads: on
    // this kernel it fills the cache in large folios (the cost this test is about).
    drop_cached(&file);
    let plain = std::fs::File::open(file.path()).unwrap();
    let mut buf = [0u8; 1024];
    for offset in (0..4 * MIB).step_by(1024) {
        plain.read_exact_at(&mut buf, offset).unwrap();
    }
    let kernel = cached(&file, 0, 4 * MIB);
    assert!(
        kernel.in_large_folios > kernel.cached / 2,
        "the kernel's readahead made large folios here: {kernel:?}"
    );

    // The same reads through an export with its defaults: its own readahead, with either
    // engine.
    let exports = open(&[spec(file.path())]);
    assert!(
        exports[0].own_readahead(),
        "no read mapping: readahead of our own"
    );
    let mut pool = pool();
    for uring_engine in [true, false] {
        drop_cached(&file);
        assert!(cached(&file, 0, 8 * MIB).cached < 64, "dropped");
        let mut engine = if uring_engine {
            uring(Arc::clone(&exports), &pool)
        } else {
            sync(Arc::clone(&exports), &pool)
        };
        read_through(&mut engine, &mut pool, 0, 4 * MIB / 512, 16);
        let readaheads = engine.stats().readaheads;
        assert!(
            (4..=16).contains(&readaheads),
            "about one window per half window read (io_uring: {uring_engine}): {readaheads}"
        );
        // Read ahead past the last read (the kernel reads a window in the background: give
        // it a moment), and all of it in one-page folios.
        let deadline = Instant::now() + Duration::from_secs(5);
        let ahead = loop {
            let ahead = cached(&file, 4 * MIB, MIB / 2);
            if ahead.cached == 128 || Instant::now() > deadline {
                break ahead;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(ahead.cached, 128, "the half MiB after the reads is cached");
        let ours = cached(&file, 0, 6 * MIB);
        assert!(ours.cached >= 1024, "the 4 MiB read: {ours:?}");
        assert_eq!(
            ours.in_large_folios, 0,
            "io_uring: {uring_engine}: {ours:?}"
        );
    }

    // Random reads (2-3 MiB apart) ask for nothing, and bring in just their pages.
    drop_cached(&file);
    let mut engine = uring(Arc::clone(&exports), &pool);
    let scattered: Vec<u64> = (0..10u64)
        .map(|i| (i * 5 * MIB / 2 + i * 4096) / 512)
        .collect();
    for chunk in scattered.chunks(4) {
        let reads = chunk
            .iter()
            .zip(1..)
            .map(|(s, tag)| req(&mut pool, IoOp::Read, *s, 1024, 0, tag))
            .collect();
        let done = submit_all(&mut engine, reads);
        for (c, s) in done.iter().zip(chunk) {
            assert_patterned(&pool, c, 0, *s, 1024);
        }
        recycle(&mut pool, done);
    }
    assert_eq!(engine.stats().readaheads, 0);
    let random = cached(&file, 0, 32 * MIB);
    assert!(random.cached <= 2 * scattered.len(), "{random:?}");
}

#[test]
fn test_mapped_exports_keep_the_kernels_readahead() {
    let file = temp_file(64);
    for (resident, mapped_reads, own) in [
        (false, false, true),
        (false, true, false),
        (true, false, false),
    ] {
        let mut s = spec(file.path());
        (s.resident, s.mapped_reads) = (resident, mapped_reads);
        let exports = open(&[s]);
        assert_eq!(
            exports[0].own_readahead(),
            own,
            "resident {resident}, mapped {mapped_reads}"
        );
    }
}

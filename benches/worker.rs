//! One worker-like iteration over a loopback frame source: a burst of received 1 KiB READ or
//! WRITE frames lands in chunks of the engine's arena (where AF_XDP would put them), each goes
//! through the target core into the storage engine, the batch is committed once, completions
//! are reaped and each reply is finished in its own frame, as `dataplane::worker` does. The
//! storage is a real file under /var/tmp (page cache, writeback) driven by the real io_uring
//! engine (buffered reads tried inline with `RWF_NOWAIT`, and with every read through the ring
//! for comparison), with the synchronous engine alongside; no network is involved.
//!
//! `worker_iteration` reports wall time; `worker_cpu` the same iterations in thread CPU time
//! (user + kernel, `CLOCK_THREAD_CPUTIME_ID`), which time slices lost to other processes on a
//! busy machine do not inflate: compare engines with it.

use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aoe_xdp::aoe::{DeviceParams, IoPlan, Outcome, Request, SharedState, Target, MIN_FRAME_LEN};
use aoe_xdp::dataplane::io::io_request;
use aoe_xdp::initiator::frames::{self, AtaCmd};
use aoe_xdp::storage::engine::{Engine, IoOp};
use aoe_xdp::storage::export::{Export, ExportSpec};
use aoe_xdp::storage::sync_engine::SyncEngine;
use aoe_xdp::storage::uring_engine::{UringConfig, UringEngine};
use aoe_xdp::sys::frame::RX_BURST_MAX;
use aoe_xdp::sys::layout::PACKET_OFFSET as FRAME_OFFSET;
use aoe_xdp::sys::mem::{Arena, ChunkPool};
use aoe_xdp::wire::ATA_FRAME_HEADER_LEN;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tempfile::NamedTempFile;

#[path = "../tests/common/host.rs"]
mod host;

use host::{route, PORT};

const SECTORS_PER_REQUEST: u8 = 2;
const DATA_LEN: usize = SECTORS_PER_REQUEST as usize * 512;
/// Backing file size: 4 MiB, all of it in the page cache.
const FILE_SECTORS: u64 = 8 * 1024;
/// The dataplane's largest RX burst.
const BURST_MAX: usize = RX_BURST_MAX;
const CHUNK_SIZE: usize = 4096;

/// Which engine a bench worker drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The io_uring engine as the target runs it.
    Uring,
    /// The io_uring engine with inline reads off: every read goes through the ring.
    UringRingReads,
    /// The synchronous engine.
    Sync,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Uring => "uring",
            Kind::UringRingReads => "uring_ring_reads",
            Kind::Sync => "sync",
        }
    }
}

/// The loopback frame source: request frames at pseudo-random 1 KiB-aligned sectors (so
/// consecutive requests of a burst rarely merge) or at ascending ones, replayed in order.
struct Loopback {
    frames: Vec<Vec<u8>>,
    next: usize,
}

impl Loopback {
    fn new(op: IoOp, sequential: bool, count: usize) -> Loopback {
        let route = route(0);
        let mut state = 0x2545_F491_u32;
        let frames = (0..count)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let lba = match sequential {
                    true => (i as u64 * 2) % FILE_SECTORS,
                    false => u64::from(state) % (FILE_SECTORS / 2) * 2,
                };
                let (cmd, data): (AtaCmd, &[u8]) = match op {
                    IoOp::Write => (
                        AtaCmd::write(lba, SECTORS_PER_REQUEST, true),
                        &[0x5A; DATA_LEN],
                    ),
                    _ => (AtaCmd::read(lba, SECTORS_PER_REQUEST, true), &[]),
                };
                let mut buf = vec![0u8; 2048];
                let tag = u32::try_from(i).expect("few frames");
                let len = frames::ata(&mut buf, &route, tag, &cmd, data);
                buf.truncate(len);
                buf
            })
            .collect();
        Loopback { frames, next: 0 }
    }

    fn next_frame(&mut self) -> &[u8] {
        let frame = &self.frames[self.next];
        self.next = (self.next + 1) % self.frames.len();
        frame
    }
}

/// A worker's state: target core, engine, frame memory, request slots.
struct Worker {
    target: Target,
    engine: Engine,
    pool: ChunkPool,
    plans: Vec<Option<IoPlan>>,
    source: Loopback,
    /// Bytes "transmitted": the sum of reply lengths (keeps the replies observable).
    tx_bytes: u64,
    // Dropped last: the engine holds the file open.
    _file: NamedTempFile,
}

fn backing_file() -> NamedTempFile {
    let file = NamedTempFile::new_in("/var/tmp").expect("temporary file in /var/tmp");
    let block = vec![0xC3u8; 1 << 20];
    for mib in 0..(FILE_SECTORS * 512) >> 20 {
        file.as_file()
            .write_all_at(&block, mib << 20)
            .expect("fill the backing file");
    }
    file
}

impl Worker {
    fn new(op: IoOp, sequential: bool, kind: Kind) -> Worker {
        let file = backing_file();
        let spec = ExportSpec {
            mapped_writes: true,
            ..ExportSpec::whole_file(file.path())
        };
        let exports: Arc<[Export]> = Arc::new([Export::open(&spec).expect("open the export")]);
        let pool = ChunkPool::new(Arc::new(
            Arena::new(CHUNK_SIZE, 2 * BURST_MAX).expect("arena"),
        ))
        .expect("pool");
        let arena = Arc::clone(pool.arena());
        let engine = if kind == Kind::Sync {
            Engine::Sync(SyncEngine::new(Arc::clone(&exports), arena).expect("sync engine"))
        } else {
            let mut engine = UringEngine::new(Arc::clone(&exports), arena, UringConfig::default())
                .expect("io_uring engine");
            engine.set_inline_reads(kind == Kind::Uring);
            Engine::Uring(engine)
        };
        let params = DeviceParams {
            buffer_count: 64,
            ..DeviceParams::new(1, 0, FILE_SECTORS, 0)
        };
        Worker {
            target: Target::new([(Arc::new(params), Arc::new(SharedState::default()))]),
            engine,
            pool,
            plans: vec![None; BURST_MAX],
            source: Loopback::new(op, sequential, 1024),
            tx_bytes: 0,
            _file: file,
        }
    }

    /// One iteration: RX burst of `burst` frames → target → submit; commit once; wait for and
    /// reap every completion, finishing each reply in its frame. Returns the replies sent.
    fn iteration(&mut self, burst: usize) -> usize {
        for slot in 0..burst {
            let mut chunk = self.pool.alloc().expect("a free frame");
            let frame = self.source.next_frame();
            let buf = &mut self.pool.bytes_mut(&mut chunk)[FRAME_OFFSET..];
            buf[..frame.len()].copy_from_slice(frame);
            let len = frame.len();
            let request = Request::parse(&buf[..len]).expect("an AoE request");
            let mut addressed = self.target.addressed(&request, &PORT);
            let device = self
                .target
                .next_addressed(&mut addressed)
                .expect("addressed to device 0");
            let Outcome::Io(plan) = self.target.handle(device, &request, buf, &PORT) else {
                panic!("expected storage work");
            };
            let buf_offset = u32::try_from(FRAME_OFFSET + plan.data_offset).expect("in chunk");
            let request = io_request(&plan, chunk, buf_offset, slot as u64);
            self.plans[slot] = Some(plan);
            if let Err(refused) = self.engine.submit(request) {
                panic!("engine refused a request: {}", refused.error);
            }
        }
        self.engine.commit(Instant::now()).expect("commit");
        let mut replies = 0;
        let Worker {
            engine,
            target,
            pool,
            plans,
            tx_bytes,
            ..
        } = self;
        while replies < burst {
            engine.wait(1).expect("wait");
            engine.reap(&mut |done| {
                let slot = usize::try_from(done.user_data).expect("slot index");
                let plan = plans[slot].take().expect("a pending plan");
                let mut chunk = done.chunk;
                assert!(done.result.is_ok(), "I/O failed: {:?}", done.result);
                let buf = &mut pool.bytes_mut(&mut chunk)[FRAME_OFFSET..];
                *tx_bytes += target.complete(buf, &plan, Ok(())) as u64;
                pool.free(chunk);
                replies += 1;
            });
        }
        replies
    }
}

/// This thread's CPU time so far (user + kernel).
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let nanos = u32::try_from(t.tv_nsec).expect("tv_nsec < 10^9");
    Duration::new(u64::try_from(t.tv_sec).expect("non-negative"), nanos)
}

/// Every (engine, workload, burst) point: `cpu` measures thread CPU time instead of wall time.
fn bench_points(c: &mut Criterion, group_name: &str, cpu: bool) {
    let mut group = c.benchmark_group(group_name);
    for kind in [Kind::Uring, Kind::UringRingReads, Kind::Sync] {
        for (op_name, op, sequential, reply_len) in [
            (
                "read_1k",
                IoOp::Read,
                false,
                ATA_FRAME_HEADER_LEN + DATA_LEN,
            ),
            (
                "seq_read_1k",
                IoOp::Read,
                true,
                ATA_FRAME_HEADER_LEN + DATA_LEN,
            ),
            ("write_1k", IoOp::Write, false, MIN_FRAME_LEN),
        ] {
            if kind == Kind::UringRingReads && op == IoOp::Write {
                continue; // the same engine as `Uring` for writes
            }
            for burst in [1, 8, BURST_MAX] {
                let mut worker = Worker::new(op, sequential, kind);
                assert_eq!(worker.iteration(burst), burst);
                assert_eq!(worker.tx_bytes, (burst * reply_len) as u64);
                group.throughput(Throughput::Elements(burst as u64));
                let id = BenchmarkId::new(format!("{}/{op_name}", kind.name()), burst);
                group.bench_with_input(id, &burst, |b, &burst| {
                    if cpu {
                        b.iter_custom(|iters| {
                            let start = thread_cpu_time();
                            for _ in 0..iters {
                                black_box(worker.iteration(burst));
                            }
                            thread_cpu_time() - start
                        })
                    } else {
                        b.iter(|| black_box(worker.iteration(burst)))
                    }
                });
            }
        }
    }
    group.finish();
}

fn bench_iteration(c: &mut Criterion) {
    bench_points(c, "worker_iteration", false);
}

fn bench_iteration_cpu(c: &mut Criterion) {
    bench_points(c, "worker_cpu", true);
}

criterion_group!(benches, bench_iteration, bench_iteration_cpu);
criterion_main!(benches);

//! The ring against the real kernel: round trips through a temporary file, segments handed
//! back in order and on `Full`, refused segments, `Drop` waiting for I/O, and the CPUs of the
//! io-wq threads.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use super::{Full, Ring, RingOptions, Seg, RWF_DSYNC};
use crate::sys::mem::{Arena, ChunkPool};

fn setup(chunks: usize) -> (Ring, ChunkPool, std::fs::File) {
    let arena = Arc::new(Arena::new(4096, chunks).unwrap());
    let pool = ChunkPool::new(Arc::clone(&arena)).unwrap();
    let mut ring = Ring::new(8, RingOptions::default()).unwrap();
    ring.register_arena(&arena).unwrap();
    let file = tempfile::tempfile_in("/var/tmp").unwrap();
    file.set_len(1 << 16).unwrap();
    ring.register_files(&[file.as_raw_fd()]).unwrap();
    (ring, pool, file)
}

/// Pushes a `READ_FIXED` of `len` bytes at offset 0 of file 0 into a fresh chunk of `pool`,
/// and submits it.
fn read_from_start(ring: &mut Ring, pool: &mut ChunkPool, len: u32, user_data: u64) {
    let seg = Seg {
        chunk: pool.alloc().unwrap(),
        offset: 0,
        len,
    };
    ring.push_read_fixed(0, 0, seg, user_data).unwrap();
    ring.submit().unwrap();
}

fn wait_one(ring: &mut Ring) -> (u64, i32, Vec<Seg>) {
    ring.submit_and_wait(1).unwrap();
    let mut out = None;
    assert_eq!(
        ring.reap(|ud, res, segs| out = Some((ud, res, segs.collect()))),
        1
    );
    out.unwrap()
}

/// The CPUs the io-wq threads of the calling thread may run on: `(thread, list)` per
/// `iou-wrk-<tid>` thread of this process.
fn io_worker_cpus() -> Vec<(String, String)> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let name = format!("iou-wrk-{tid}");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            (comm.trim() == name).then_some(())?;
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                .trim()
                .to_string();
            Some((path.display().to_string(), cpus))
        })
        .collect()
}

#[test]
fn test_io_worker_cpus_apply_to_the_threads_that_run_blocking_io() {
    let cpu = core_affinity::get_core_ids().unwrap().last().unwrap().id;
    // As in the dataplane: the ring is built on one thread and driven by another, and
    // io-wq belongs to the thread that submits.
    let (mut ring, mut pool, _file) = setup(1);
    std::thread::spawn(move || {
        ring.set_io_worker_cpus(&[cpu])
            .expect("a fresh ring accepts io-wq affinity");
        // Synced buffered writes block, so the kernel runs them on io-wq threads.
        let mut chunk = Some(pool.alloc().unwrap());
        for round in 0..4u64 {
            let seg = Seg {
                chunk: chunk.take().unwrap(),
                offset: 0,
                len: 512,
            };
            ring.push_write_fixed(0, round * 512, seg, RWF_DSYNC, round)
                .unwrap();
            let (_, res, mut segs) = wait_one(&mut ring);
            assert_eq!(res, 512);
            chunk = Some(segs.pop().unwrap().chunk);
        }
        let workers = io_worker_cpus();
        assert!(!workers.is_empty(), "no io-wq thread ran the synced writes");
        for (thread, cpus) in &workers {
            assert_eq!(cpus, &cpu.to_string(), "{thread}");
        }
        pool.free(chunk.unwrap());
    })
    .join()
    .unwrap();
}

#[test]
fn test_write_fixed_then_read_fixed_round_trip() {
    let (mut ring, mut pool, mut file) = setup(2);
    let mut chunk = pool.alloc().unwrap();
    pool.bytes_mut(&mut chunk)[512..1024].fill(0x5A);
    let seg = Seg {
        chunk,
        offset: 512,
        len: 512,
    };
    ring.push_write_fixed(0, 1024, seg, RWF_DSYNC, 7).unwrap();
    assert_eq!(ring.in_flight(), 1);
    let (ud, res, mut segs) = wait_one(&mut ring);
    assert_eq!((ud, res, segs.len()), (7, 512, 1));
    let mut disk = [0u8; 512];
    file.seek(SeekFrom::Start(1024)).unwrap();
    file.read_exact(&mut disk).unwrap();
    assert!(disk.iter().all(|b| *b == 0x5A));
    pool.free(segs.pop().unwrap().chunk);
}

#[test]
fn test_readv_returns_segments_in_order() {
    let (mut ring, mut pool, mut file) = setup(4);
    let mut data = vec![0u8; 3 * 512];
    for (i, b) in data.iter_mut().enumerate() {
        *b = u8::try_from(i % 251).unwrap();
    }
    file.write_all(&data).unwrap();
    let segs: Vec<Seg> = (0..3)
        .map(|_| Seg {
            chunk: pool.alloc().unwrap(),
            offset: 1024,
            len: 512,
        })
        .collect();
    ring.push_readv(0, 0, segs.into_iter(), 99).unwrap();
    let (ud, res, segs) = wait_one(&mut ring);
    assert_eq!((ud, res), (99, 3 * 512));
    assert_eq!(ring.in_flight(), 0);
    for (i, seg) in segs.into_iter().enumerate() {
        assert_eq!(seg.chunk.index(), i);
        assert_eq!(
            &pool.bytes(&seg.chunk)[1024..1536],
            &data[i * 512..(i + 1) * 512]
        );
        pool.free(seg.chunk);
    }
}

#[test]
fn test_fsync_and_error_results_are_reported() {
    let (mut ring, mut pool, _file) = setup(1);
    ring.push_fsync(0, true, 3).unwrap();
    let (ud, res, segs) = wait_one(&mut ring);
    assert_eq!((ud, res, segs.len()), (3, 0, 0));
    // File index 5 is not registered: the kernel answers -EBADF, and the chunk comes back.
    let seg = Seg {
        chunk: pool.alloc().unwrap(),
        offset: 0,
        len: 512,
    };
    ring.push_read_fixed(5, 0, seg, 4).unwrap();
    let (ud, res, segs) = wait_one(&mut ring);
    assert_eq!((ud, res, segs.len()), (4, -libc::EBADF, 1));
}

#[test]
fn test_full_hands_back_the_segment() {
    let (mut ring, mut pool, _file) = setup(1);
    for i in 0..ring.capacity() as u64 {
        ring.push_fsync(0, false, i).unwrap();
    }
    assert!(!ring.has_room(1));
    let seg = Seg {
        chunk: pool.alloc().unwrap(),
        offset: 0,
        len: 512,
    };
    let Err(Full(seg)) = ring.push_read_fixed(0, 0, seg, 1) else {
        panic!("accepted")
    };
    assert_eq!(seg.chunk.index(), 0);
    ring.submit_and_wait(ring.capacity()).unwrap();
    assert_eq!(ring.reap(|_, res, _| assert_eq!(res, 0)), 8);
    pool.free(seg.chunk);
}

#[test]
#[should_panic(expected = "not registered")]
fn test_foreign_chunk_is_refused() {
    let (mut ring, _pool, _file) = setup(1);
    let mut other = ChunkPool::new(Arc::new(Arena::new(4096, 1).unwrap())).unwrap();
    let seg = Seg {
        chunk: other.alloc().unwrap(),
        offset: 0,
        len: 512,
    };
    let _ = ring.push_read_fixed(0, 0, seg, 1);
}

#[test]
#[should_panic(expected = "bad segment")]
fn test_segment_past_chunk_end_is_refused() {
    let (mut ring, mut pool, _file) = setup(1);
    let seg = Seg {
        chunk: pool.alloc().unwrap(),
        offset: 4096 - 256,
        len: 512,
    };
    let _ = ring.push_read_fixed(0, 0, seg, 1);
}

#[test]
fn test_drop_waits_for_in_flight_io() {
    let (mut ring, mut pool, _file) = setup(2);
    read_from_start(&mut ring, &mut pool, 4096, 1);
    drop(ring); // must block until the read is done, then release the arena
    assert_eq!(Arc::strong_count(pool.arena()), 1);
}

/// A ring with a pipe's read end as registered file 0, in the set-up `opts` asks for.
fn pipe_ring(opts: RingOptions) -> (Ring, ChunkPool, std::io::PipeWriter) {
    let arena = Arc::new(Arena::new(4096, 2).unwrap());
    let pool = ChunkPool::new(Arc::clone(&arena)).unwrap();
    let mut ring = Ring::new(8, opts).unwrap();
    ring.register_arena(&arena).unwrap();
    let (read, write) = std::io::pipe().unwrap();
    ring.register_files(&[read.as_raw_fd()]).unwrap();
    // The registration holds its own reference to the read end.
    drop(read);
    (ring, pool, write)
}

fn readable(fd: std::os::fd::BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    let mut fds = [crate::sys::wake::pollin(fd)];
    crate::sys::wake::poll_fds(&mut fds, timeout).unwrap() == 1
        && fds[0].revents & libc::POLLIN != 0
}

/// A read of an empty pipe completes only when another thread writes it: the armed eventfd
/// wakes the sleeper then, in both the default set-up (`DEFER_TASKRUN`, where the completion
/// is work queued for the submitter) and without it (the completion is posted directly).
#[test]
fn test_the_armed_completion_fd_wakes_a_sleeper_when_its_io_completes() {
    let modes = [
        RingOptions::default(),
        RingOptions {
            single_issuer: false,
            defer_taskrun: false,
            ..RingOptions::default()
        },
    ];
    for opts in modes {
        let (mut ring, mut pool, mut pipe) = pipe_ring(opts);
        // A first sleep that ends at once leaves notifications off, as they are between sleeps.
        assert!(ring.arm_completion_fd().unwrap().is_some());
        ring.disarm_completion_fd();
        read_from_start(&mut ring, &mut pool, 8, 11);
        let mode = ring.mode();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            pipe.write_all(b"12345678").unwrap();
            pipe
        });
        let started = std::time::Instant::now();
        let fd = ring
            .arm_completion_fd()
            .unwrap()
            .expect("nothing completed yet: sleep");
        assert!(
            readable(fd, std::time::Duration::from_secs(5)),
            "{mode:?}: the completion wrote the eventfd"
        );
        let slept = started.elapsed();
        ring.disarm_completion_fd();
        let _pipe = writer.join().unwrap();
        assert!(
            slept >= std::time::Duration::from_millis(20),
            "{mode:?}: slept until the write, {slept:?}"
        );
        // The completion is there for the next enter (which runs deferred work) and reap.
        ring.submit().unwrap();
        let mut got = Vec::new();
        ring.reap(|ud, res, segs| {
            got.push((ud, res));
            segs.for_each(|seg| pool.free(seg.chunk));
        });
        assert_eq!(got, [(11, 8)], "{mode:?}");
    }
}

/// Disarmed, the ring leaves the eventfd alone (an awake thread costs no eventfd write per
/// completion); arming with a completion already waiting says so instead of sleeping.
#[test]
fn test_the_completion_fd_is_quiet_while_disarmed_and_arming_sees_a_ready_completion() {
    let (mut ring, mut pool, mut pipe) = pipe_ring(RingOptions::default());
    read_from_start(&mut ring, &mut pool, 4, 1);
    // Registers the eventfd; then disarmed.
    assert!(ring.arm_completion_fd().unwrap().is_some());
    ring.disarm_completion_fd();
    pipe.write_all(b"abcd").unwrap();
    ring.submit_and_wait(1).unwrap();
    assert_eq!(
        ring.reap(|_, res, segs| {
            assert_eq!(res, 4);
            segs.for_each(drop);
        }),
        1
    );
    let fd = ring.completion_fd.as_ref().unwrap().as_fd();
    assert!(
        !readable(fd, std::time::Duration::ZERO),
        "a completion while disarmed wrote the eventfd"
    );
    // A completion that is ready before the arm: no sleep.
    read_from_start(&mut ring, &mut pool, 4, 2);
    pipe.write_all(b"efgh").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(10));
    assert!(
        ring.arm_completion_fd().unwrap().is_none(),
        "arming missed a completion that was ready"
    );
    assert_eq!(
        ring.reap(|ud, res, segs| {
            assert_eq!((ud, res), (2, 4));
            segs.for_each(drop);
        }),
        1
    );
}

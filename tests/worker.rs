//! The dataplane's `Worker` through its port seam, without root and without a network: request
//! frames go in on a `LoopbackPort` (optionally behind a `FaultyPort`), the worker runs its real
//! loop over the real target core and a real io_uring engine on a real file under /var/tmp,
//! and the replies come out of the port. Each test checks the replies, the file, and that every
//! frame is back in its port's free list afterwards.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aoe_xdp::aoe::{DeviceParams, SharedState, Target};
use aoe_xdp::dataplane::port::{
    FaultCall, FaultConfig, FaultyPort, LoopbackPort, NetPort, PortError, WireEvent, WireLog,
};
use aoe_xdp::dataplane::queues::Queues;
use aoe_xdp::dataplane::worker::{Unit, Worker};
use aoe_xdp::initiator::frames::{self, AtaCmd, Reply};
use aoe_xdp::state_dir::StateDir;
use aoe_xdp::storage::engine::Engine;
use aoe_xdp::storage::export::{Export, ExportSpec};
use aoe_xdp::storage::uring_engine::{UringConfig, UringEngine};
use aoe_xdp::sys::mem::Arena;
use aoe_xdp::sys::xdp::xsk::COPY_MODE_TX_BATCH;
use aoe_xdp::wire::ata::status as ata_status;
use tempfile::{NamedTempFile, TempDir};

#[path = "common/host.rs"]
mod host;

use host::{route, HOST, PORT, TARGET_MAC};

/// Sectors of each backing file.
const SECTORS: u64 = 2048;
/// Frames of each loopback port.
const FRAMES: u32 = 64;
/// Requests of a port in flight at most.
const CAPACITY: usize = 16;
/// The Linux initiator's largest window: frames in flight to one target MAC.
const WINDOW: u32 = 64;
/// Longest a test waits for its replies.
const PATIENCE: Duration = Duration::from_secs(10);

/// Backing files, the state directory and the target's view of the devices.
struct Disks {
    files: Vec<NamedTempFile>,
    exports: Arc<[Export]>,
    _state: TempDir,
    state_dir: Arc<StateDir>,
    devices: Vec<(Arc<DeviceParams>, Arc<SharedState>)>,
}

impl Disks {
    /// `count` devices e1.0, e1.1, ... on zero-filled files.
    fn new(count: u8) -> Disks {
        let mut files = Vec::new();
        let mut exports = Vec::new();
        let mut devices = Vec::new();
        for slot in 0..count {
            let file = NamedTempFile::new_in("/var/tmp").unwrap();
            file.as_file().set_len(SECTORS * 512).unwrap();
            let export = Export::open(&ExportSpec::whole_file(file.path())).unwrap();
            let params = DeviceParams::new(1, slot, export.sectors(), u16::from(slot));
            devices.push((Arc::new(params), Arc::new(SharedState::default())));
            exports.push(export);
            files.push(file);
        }
        let state = TempDir::new().unwrap();
        let state_dir = Arc::new(StateDir::open(state.path()).unwrap());
        Disks {
            files,
            exports: exports.into(),
            _state: state,
            state_dir,
            devices,
        }
    }

    /// A target core over every device (each worker has its own, sharing the state).
    fn target(&self) -> Target {
        Target::new(self.devices.iter().cloned())
    }

    /// A worker `index` over `units`, with an io_uring engine that serves `arenas` (the frame
    /// memory of every port of the dataplane).
    fn worker<P: NetPort>(
        &self,
        index: usize,
        units: Vec<Unit<P>>,
        arenas: &[Arc<Arena>],
        queues: &Arc<Queues>,
    ) -> Worker<P> {
        let engine =
            UringEngine::with_arenas(Arc::clone(&self.exports), arenas, UringConfig::default())
                .unwrap();
        Worker::new(index, Engine::Uring(engine), units, Arc::clone(queues))
    }

    fn read_file(&self, device: usize, lba: u64, sectors: usize) -> Vec<u8> {
        let mut data = vec![0u8; sectors * 512];
        self.files[device]
            .as_file()
            .read_exact_at(&mut data, lba * 512)
            .unwrap();
        data
    }

    /// Asserts that device 0 holds `blocks`, block `i` at sector `2 * i`.
    #[track_caller]
    fn assert_blocks(&self, blocks: &[Vec<u8>]) {
        for (i, block) in blocks.iter().enumerate() {
            assert_eq!(&self.read_file(0, i as u64 * 2, 2), block);
        }
    }
}

fn read_request(slot: u8, tag: u32, lba: u64, count: u8) -> Vec<u8> {
    ata_request(slot, tag, AtaCmd::read(lba, count, true), &[])
}

fn write_request(slot: u8, tag: u32, lba: u64, data: &[u8]) -> Vec<u8> {
    let count = u8::try_from(data.len() / 512).unwrap();
    ata_request(slot, tag, AtaCmd::write(lba, count, true), data)
}

/// The frame of ATA command `cmd` (with `data`) to slot `slot`.
fn ata_request(slot: u8, tag: u32, cmd: AtaCmd, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let len = frames::ata(&mut buf, &route(slot), tag, &cmd, data);
    buf.truncate(len);
    buf
}

/// `count` blocks of 1 KiB, each a different [`pattern`].
fn blocks(count: u8) -> Vec<Vec<u8>> {
    (0..count).map(|i| pattern(i, 1024)).collect()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            u8::try_from(i % 251)
                .unwrap()
                .wrapping_mul(31)
                .wrapping_add(seed)
        })
        .collect()
}

/// (tag, ATA status, data) of an ATA reply.
fn ata_reply(frame: &[u8]) -> (u32, u8, Vec<u8>) {
    let reply = Reply::parse(frame).expect("an AoE reply");
    assert_eq!(reply.dst, HOST, "replies go back to the initiator");
    assert_eq!(reply.src, TARGET_MAC);
    let (ata, data) = reply.ata().expect("an ATA reply");
    (reply.aoe.tag, ata.cmd_status, data.to_vec())
}

/// Polls `workers` (each with its own target) until `done` says so; every reply sent on the
/// loopback ports is collected, in order.
fn run_until<P: NetPort>(
    workers: &mut [(Worker<P>, Target)],
    take_sent: impl Fn(&mut Worker<P>) -> Vec<Vec<u8>>,
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + PATIENCE;
    let mut sent = Vec::new();
    loop {
        for (worker, target) in workers.iter_mut() {
            worker.poll(target, Instant::now()).expect("port error");
            sent.extend(take_sent(worker));
        }
        if done(&sent) {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "no progress: {} replies so far",
            sent.len()
        );
    }
}

fn loopback_sent(worker: &mut Worker<LoopbackPort>) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for unit in worker.units_mut() {
        while let Some(frame) = unit.port_mut().pop_sent() {
            sent.push(frame);
        }
    }
    sent
}

fn faulty_sent(worker: &mut Worker<FaultyPort<LoopbackPort>>) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for unit in worker.units_mut() {
        while let Some(frame) = unit.port_mut().inner_mut().pop_sent() {
            sent.push(frame);
        }
    }
    sent
}

/// Polls a faulty worker for 200 ms and until it is idle, collecting what it sends (the
/// answers to duplicates that trail the originals).
fn settle(
    (worker, target): &mut (Worker<FaultyPort<LoopbackPort>>, Target),
    sent: &mut Vec<Vec<u8>>,
) {
    let until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < until || worker.busy() {
        worker.poll(target, Instant::now()).unwrap();
        sent.extend(faulty_sent(worker));
    }
}

/// One worker with one loopback port behind the faults of `config`, serving device 0.
fn faulty(disks: &Disks, config: FaultConfig) -> FaultyWorker {
    let port = FaultyPort::new(LoopbackPort::new(FRAMES).unwrap(), config);
    let arenas: Vec<_> = port.io_arenas().cloned().collect();
    let unit = Unit::new(0, port, PORT, CAPACITY, Arc::clone(&disks.state_dir));
    let queues = Arc::new(Queues::new(vec![0], &[CAPACITY]));
    (
        disks.worker(0, vec![unit], &arenas, &queues),
        disks.target(),
    )
}

/// A worker whose port injects faults, and its target.
type FaultyWorker = (Worker<FaultyPort<LoopbackPort>>, Target);

/// One device, and one worker whose port injects `config`'s faults.
fn one_faulty(config: FaultConfig) -> (Disks, [FaultyWorker; 1]) {
    let disks = Disks::new(1);
    let worker = faulty(&disks, config);
    (disks, [worker])
}

/// One worker with one loopback port serving every device of `disks`.
fn single(disks: &Disks) -> (Worker<LoopbackPort>, Target) {
    let port = LoopbackPort::new(FRAMES).unwrap();
    let arenas: Vec<_> = port.io_arenas().cloned().collect();
    let unit = Unit::new(0, port, PORT, CAPACITY, Arc::clone(&disks.state_dir));
    let queues = Arc::new(Queues::new(vec![0; disks.devices.len()], &[CAPACITY]));
    (
        disks.worker(0, vec![unit], &arenas, &queues),
        disks.target(),
    )
}

/// One worker over two ports made by `port(id)` (two NICs), serving device 0.
fn two_ports<P: NetPort>(disks: &Disks, port: impl Fn(u16) -> P) -> (Worker<P>, Target) {
    let units: Vec<_> = (0..2u16)
        .map(|id| Unit::new(id, port(id), PORT, CAPACITY, Arc::clone(&disks.state_dir)))
        .collect();
    let arenas: Vec<_> = units
        .iter()
        .flat_map(|unit| unit.port().io_arenas().cloned())
        .collect();
    let queues = Arc::new(Queues::new(vec![0], &[CAPACITY, CAPACITY]));
    (disks.worker(0, units, &arenas, &queues), disks.target())
}

/// The loopback port of the first worker's first unit.
fn port(workers: &mut [(Worker<LoopbackPort>, Target)]) -> &mut LoopbackPort {
    workers[0].0.units_mut()[0].port_mut()
}

/// Every frame of a loopback port is free (nothing leaked, nothing still lent).
fn assert_all_free(port: &LoopbackPort) {
    let counts = port.frame_counts();
    assert_eq!(
        counts.free,
        counts.total(),
        "frames not returned: {counts:?}"
    );
}

#[test]
fn test_a_write_then_a_read_through_the_loopback_port() {
    let disks = Disks::new(1);
    let (worker, target) = single(&disks);
    let mut workers = [(worker, target)];
    let data = pattern(7, 1024);
    port(&mut workers).push_rx(&write_request(0, 0x11, 100, &data));
    let sent = run_until(&mut workers, loopback_sent, |sent| !sent.is_empty());
    let (tag, status, _) = ata_reply(&sent[0]);
    assert_eq!((tag, status & ata_status::ERR), (0x11, 0));
    assert_eq!(
        disks.read_file(0, 100, 2),
        data,
        "the write reached the file"
    );

    port(&mut workers).push_rx(&read_request(0, 0x12, 100, 2));
    let sent = run_until(&mut workers, loopback_sent, |sent| !sent.is_empty());
    let (tag, status, read) = ata_reply(&sent[0]);
    assert_eq!((tag, status & ata_status::ERR), (0x12, 0));
    assert_eq!(read, data, "the read returns what was written");
    assert_eq!(sent.len(), 1);
    assert!(!workers[0].0.busy());
    assert_all_free(port(&mut workers));
}

#[test]
fn test_one_poll_takes_as_many_frames_as_the_port_batches() {
    // A unit with room for a whole window (the Linux initiator's 64 frames).
    let disks = Disks::new(1);
    let wire = LoopbackPort::new(2 * WINDOW).unwrap();
    let arenas: Vec<_> = wire.io_arenas().cloned().collect();
    let unit = Unit::new(0, wire, PORT, WINDOW as usize, Arc::clone(&disks.state_dir));
    let queues = Arc::new(Queues::new(vec![0; 1], &[WINDOW as usize]));
    let mut workers = [(
        disks.worker(0, vec![unit], &arenas, &queues),
        disks.target(),
    )];
    // An AF_PACKET port (the default here) takes the whole window in one iteration; an
    // AF_XDP port only as many as one copy-mode TX kick sends.
    for (batch, tag_base) in [(WINDOW as usize, 0u32), (COPY_MODE_TX_BATCH, 0x1000)] {
        port(&mut workers).set_rx_batch(batch);
        for i in 0..WINDOW {
            port(&mut workers).push_rx(&read_request(0, tag_base + i, u64::from(i) * 2, 2));
        }
        let (worker, target) = &mut workers[0];
        worker.poll(target, Instant::now()).unwrap();
        assert_eq!(
            port(&mut workers).rx_pending(),
            WINDOW as usize - batch,
            "one poll with a batch of {batch}"
        );
        let sent = run_until(&mut workers, loopback_sent, |sent| {
            sent.len() >= WINDOW as usize
        });
        let mut tags: Vec<u32> = sent.iter().map(|frame| ata_reply(frame).0).collect();
        tags.sort_unstable();
        assert_eq!(tags, (tag_base..tag_base + WINDOW).collect::<Vec<_>>());
    }
    assert_all_free(port(&mut workers));
}

#[test]
fn test_a_full_tx_ring_holds_replies_back_and_loses_none() {
    let disks = Disks::new(1);
    let (worker, target) = single(&disks);
    let mut workers = [(worker, target)];
    port(&mut workers).set_tx_room(0);
    for tag in 0..8u32 {
        port(&mut workers).push_rx(&read_request(0, tag, u64::from(tag) * 2, 2));
    }
    // The worker answers all eight, but none can leave while the ring stays full.
    let deadline = Instant::now() + PATIENCE;
    while port(&mut workers).tx_queued() < 8 {
        let (worker, target) = &mut workers[0];
        worker.poll(target, Instant::now()).unwrap();
        assert!(Instant::now() < deadline, "replies were not queued");
    }
    assert!(loopback_sent(&mut workers[0].0).is_empty());
    assert!(port(&mut workers).stats().tx_full > 0);
    // Room for two per flush: every reply still comes out, each exactly once.
    port(&mut workers).set_tx_room(2);
    let sent = run_until(&mut workers, loopback_sent, |sent| sent.len() >= 8);
    let mut tags: Vec<u32> = sent.iter().map(|frame| ata_reply(frame).0).collect();
    tags.sort_unstable();
    assert_eq!(tags, (0..8).collect::<Vec<_>>());
    assert_all_free(port(&mut workers));
}

#[test]
fn test_a_port_error_stops_the_poll_and_the_request_is_still_answered() {
    let (disks, [(mut worker, mut target)]) = one_faulty(FaultConfig::default());
    let data = pattern(3, 1024);
    let port = worker.units_mut()[0].port_mut();
    port.inner_mut().push_rx(&write_request(0, 0x21, 8, &data));
    port.fail_next(FaultCall::FlushTx);
    let error = worker
        .poll(&mut target, Instant::now())
        .expect_err("the injected flush failure is reported");
    assert!(
        matches!(error, PortError::Injected { call: "flush_tx" }),
        "{error}"
    );
    assert_eq!(worker.units_mut()[0].port().stats().failed, 1);
    // The failure cost no request: the next polls answer it.
    let mut workers = [(worker, target)];
    let sent = run_until(&mut workers, faulty_sent, |sent| !sent.is_empty());
    let (tag, status, _) = ata_reply(&sent[0]);
    assert_eq!((tag, status & ata_status::ERR), (0x21, 0));
    assert_eq!(disks.read_file(0, 8, 2), data);
}

#[test]
fn test_duplicated_and_reordered_frames_are_each_answered() {
    let config = FaultConfig {
        seed: 42,
        duplicate_pct: 50,
        reorder_pct: 50,
        ..FaultConfig::default()
    };
    let (disks, mut workers) = one_faulty(config);
    // Writes of distinct data to distinct places, then reads of them: a duplicate write is
    // the same write again, so the file ends the same whatever the order.
    let blocks = blocks(12);
    {
        let wire = workers[0].0.units_mut()[0].port_mut().inner_mut();
        for (i, block) in blocks.iter().enumerate() {
            let i = u32::try_from(i).unwrap();
            wire.push_rx(&write_request(0, 0x100 + i, u64::from(i) * 2, block));
        }
    }
    let distinct = |sent: &[Vec<u8>]| {
        let mut tags: Vec<u32> = sent.iter().map(|frame| ata_reply(frame).0).collect();
        tags.sort_unstable();
        tags.dedup();
        tags.len()
    };
    let mut sent = run_until(&mut workers, faulty_sent, |sent| {
        distinct(sent) == blocks.len()
    });
    // Let the duplicates of the last requests finish too.
    settle(&mut workers[0], &mut sent);
    let stats = workers[0].0.units_mut()[0].port().stats();
    assert!(stats.duplicated > 0 && stats.reordered > 0, "{stats:?}");
    assert!(sent
        .iter()
        .all(|frame| ata_reply(frame).1 & ata_status::ERR == 0));
    {
        let wire = workers[0].0.units_mut()[0].port_mut().inner_mut();
        for i in 0..blocks.len() {
            let i = u32::try_from(i).unwrap();
            wire.push_rx(&read_request(0, 0x200 + i, u64::from(i) * 2, 2));
        }
    }
    let mut reads = run_until(&mut workers, faulty_sent, |sent| {
        distinct(sent) == blocks.len()
    });
    settle(&mut workers[0], &mut reads);
    for frame in &reads {
        let (tag, status, data) = ata_reply(frame);
        assert_eq!(status & ata_status::ERR, 0);
        let block = usize::try_from(tag - 0x200).unwrap();
        assert_eq!(data, blocks[block], "read {block} after duplicated writes");
    }
    disks.assert_blocks(&blocks);
    let port = workers[0].0.units_mut()[0].port_mut();
    let stats = port.stats();
    let answered = sent.len() + reads.len();
    assert_eq!(
        answered as u64,
        2 * blocks.len() as u64 + stats.duplicated,
        "every frame, duplicate or not, is answered once"
    );
    assert_all_free(port.inner());
}

#[test]
fn test_a_request_for_a_device_another_worker_owns_is_served_by_that_worker() {
    let disks = Disks::new(2);
    // Worker 0 has the port; worker 1 owns device 1 (e1.1), worker 0 owns device 0.
    let port = LoopbackPort::new(FRAMES).unwrap();
    let arenas: Vec<_> = port.io_arenas().cloned().collect();
    let queues = Arc::new(Queues::new(vec![0, 1], &[CAPACITY]));
    let unit = Unit::new(0, port, PORT, CAPACITY, Arc::clone(&disks.state_dir));
    let mut owner = disks.worker(1, Vec::new(), &arenas, &queues);
    owner.set_shared(true);
    let mut workers = [
        (
            disks.worker(0, vec![unit], &arenas, &queues),
            disks.target(),
        ),
        (owner, disks.target()),
    ];
    let data = pattern(9, 1024);
    {
        let wire = workers[0].0.units_mut()[0].port_mut();
        wire.push_rx(&write_request(1, 0x31, 40, &data));
        wire.push_rx(&write_request(0, 0x32, 40, &pattern(1, 1024)));
    }
    let sent = run_until(&mut workers, loopback_sent, |sent| sent.len() >= 2);
    let mut tags: Vec<(u32, u8)> = sent
        .iter()
        .map(|frame| {
            let (tag, status, _) = ata_reply(frame);
            (tag, status & ata_status::ERR)
        })
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, [(0x31, 0), (0x32, 0)]);
    assert_eq!(disks.read_file(1, 40, 2), data, "device 1 has its write");
    assert_eq!(disks.read_file(0, 40, 2), pattern(1, 1024));
    let (remote, local) = (workers[1].0.stats(), workers[0].0.stats());
    assert_eq!((remote.jobs, remote.remote_jobs), (1, 1), "{remote:?}");
    assert_eq!((local.jobs, local.remote_jobs), (1, 0), "{local:?}");
    assert_all_free(workers[0].0.units_mut()[0].port());
}

#[test]
fn test_dropped_frames_go_unanswered_and_their_retransmissions_are_served() {
    let config = FaultConfig {
        seed: 7,
        drop_pct: 40,
        ..FaultConfig::default()
    };
    let (disks, mut workers) = one_faulty(config);
    let blocks = blocks(16);
    // As an initiator does: send, wait, and send again what was not answered.
    let mut answered = std::collections::BTreeSet::new();
    for round in 0..20 {
        let missing: Vec<usize> = (0..blocks.len())
            .filter(|i| !answered.contains(i))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(round < 19, "blocks {missing:?} never answered");
        let wire = workers[0].0.units_mut()[0].port_mut().inner_mut();
        for &i in &missing {
            let tag = u32::try_from(i).unwrap();
            wire.push_rx(&write_request(0, tag, tag as u64 * 2, &blocks[i]));
        }
        let mut sent = Vec::new();
        settle(&mut workers[0], &mut sent);
        for frame in &sent {
            let (tag, status, _) = ata_reply(frame);
            assert_eq!(status & ata_status::ERR, 0);
            answered.insert(usize::try_from(tag).unwrap());
        }
    }
    let port = workers[0].0.units_mut()[0].port();
    assert!(port.stats().dropped > 0, "{:?}", port.stats());
    disks.assert_blocks(&blocks);
    assert_all_free(port.inner());
}

/// One worker over two ports (two NICs): in one poll the first port's requests are answered
/// and its replies sent before the second port's are read, so that one path's replies do not
/// wait while the other path's burst is served (the worker used to read every port first and
/// send at the end). Reads and writes, both ports, nothing lost.
#[test]
fn test_each_port_is_answered_before_the_next_is_read() {
    let disks = Disks::new(1);
    let log = WireLog::default();
    let (mut worker, mut target) = two_ports(&disks, |id| {
        let mut port = LoopbackPort::new(FRAMES).unwrap();
        port.record_into(id, Arc::clone(&log));
        port
    });
    let data = pattern(3, 1024);
    for (id, unit) in (0u32..).zip(worker.units_mut()) {
        let port = unit.port_mut();
        let base = 0x40 + 4 * id;
        let lba = 64 * u64::from(id);
        port.push_rx(&write_request(0, base, lba, &data));
        port.push_rx(&read_request(0, base + 1, 8, 2));
        port.push_rx(&write_request(0, base + 2, lba + 2, &data));
    }
    worker.poll(&mut target, Instant::now()).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            WireEvent::Received { port: 0, frames: 3 },
            WireEvent::Sent { port: 0, frames: 3 },
            WireEvent::Received { port: 1, frames: 3 },
            WireEvent::Sent { port: 1, frames: 3 },
        ],
        "page-cached requests complete within the poll, port by port"
    );
    for (id, unit) in (0u32..).zip(worker.units_mut()) {
        let port = unit.port_mut();
        let base = 0x40 + 4 * id;
        let mut tags = Vec::new();
        while let Some(reply) = port.pop_sent() {
            let (tag, status, _) = ata_reply(&reply);
            assert_eq!(status & ata_status::ERR, 0);
            tags.push(tag);
        }
        tags.sort_unstable();
        assert_eq!(
            tags,
            [base, base + 1, base + 2],
            "port {id} answers its own"
        );
        assert_all_free(port);
    }
    for id in 0..2u64 {
        assert_eq!(disks.read_file(0, 64 * id, 2), data);
        assert_eq!(disks.read_file(0, 64 * id + 2, 2), data);
    }
}

/// A port that fails while the worker has another: `give_up_port` gives it up (the worker
/// receives and transmits on it no more) and the other port serves on; the last port's
/// failure is returned instead.
#[test]
fn test_a_failed_port_is_given_up_and_the_other_serves_on() {
    let disks = Disks::new(1);
    let (mut worker, mut target) = two_ports(&disks, |_| {
        FaultyPort::new(LoopbackPort::new(FRAMES).unwrap(), FaultConfig::default())
    });
    worker.units_mut()[0]
        .port_mut()
        .fail_next(FaultCall::FlushTx);
    let error = worker
        .poll(&mut target, Instant::now())
        .expect_err("the injected flush failure is reported");
    assert!(!worker.gave_up_a_port());
    worker.give_up_port(error).expect("another port works");
    assert!(worker.gave_up_a_port());

    let data = pattern(9, 1024);
    let given_up = worker.units_mut()[0].port_mut().inner_mut();
    given_up.push_rx(&write_request(0, 0x30, 16, &data));
    worker.units_mut()[1]
        .port_mut()
        .inner_mut()
        .push_rx(&write_request(0, 0x31, 24, &data));
    let mut workers = [(worker, target)];
    let sent = run_until(&mut workers, faulty_sent, |sent| !sent.is_empty());
    assert_eq!(sent.len(), 1, "only the working port answers");
    let (tag, status, _) = ata_reply(&sent[0]);
    assert_eq!((tag, status & ata_status::ERR), (0x31, 0));
    assert_eq!(disks.read_file(0, 24, 2), data);
    assert_eq!(
        disks.read_file(0, 16, 2),
        vec![0; 1024],
        "nothing taken from the given-up port"
    );

    // The last working port fails: that error is the worker's.
    let (worker, target) = &mut workers[0];
    worker.units_mut()[1]
        .port_mut()
        .fail_next(FaultCall::FlushTx);
    let error = worker.poll(target, Instant::now()).expect_err("reported");
    assert!(matches!(
        worker.give_up_port(error),
        Err(PortError::Injected { call: "flush_tx" })
    ));
}

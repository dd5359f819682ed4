//! The target or a link stops under load: `kill -9`, SIGTERM, an interface down and up; no
//! acknowledged write is lost and the other path keeps serving.

use std::time::{Duration, Instant};

use aoe_xdp::initiator::client::{Client, Found};

use crate::fixture::{discover_one, Net, Setup, SECTORS};
use crate::patterns::pattern;

/// Rounds of [`kill_9_during_writes`], and the sectors each round writes (each once).
const KILL_ROUNDS: u64 = 3;
const KILL_ROUND_SECTORS: u64 = SECTORS / KILL_ROUNDS;

/// A thread that writes 2-sector blocks with `client` at `first_lba`, `first_lba + 2`, ...
/// (`blocks` of them, each once, seeds from `seed`) until a write fails, FLUSHing after every
/// 16 when `flushing`; counts the acknowledged ones in `acked`. Returns (lba, seed) of the
/// acknowledged writes and how many of them a completed FLUSH covers.
pub fn spawn_writer(
    mut client: Client,
    device: Found,
    (first_lba, blocks, seed): (u64, u64, u64),
    flushing: bool,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<(Vec<(u64, u64)>, usize)> {
    std::thread::spawn(move || {
        let (mut done, mut flushed) = (Vec::new(), 0);
        for i in 0..blocks {
            let (lba, seed) = (first_lba + 2 * i, seed + i);
            if client
                .write(&device, lba, &pattern(lba, 2, seed), false)
                .is_err()
            {
                break;
            }
            done.push((lba, seed));
            acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if flushing && done.len() % 16 == 0 {
                if client.flush(&device).is_err() {
                    break;
                }
                flushed = done.len();
            }
        }
        (done, flushed)
    })
}

/// Waits until `acked` reaches `count` (at most 10 s).
pub fn wait_acked(acked: &std::sync::atomic::AtomicU64, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reads back every (lba, seed) of `writes` through path `path` of a running target.
pub fn assert_read_back(net: &Net, path: usize, writes: &[(u64, u64)], what: &str) {
    let mut client = net.client(path);
    let device = discover_one(&mut client);
    for &(lba, seed) in writes {
        let data = client.read(&device, lba, 2, false).expect("read back");
        assert!(
            data == pattern(lba, 2, seed),
            "acknowledged write at LBA {lba} (seed {seed}) lost after {what}"
        );
    }
}

/// `kill -9` in the middle of a stream of writes, [`KILL_ROUNDS`] times, each time restarting
/// the target on the same file: every write acknowledged in `sync` mode reads back, and with
/// `writeback` every write acknowledged before a FLUSH that completed. Each sector is written
/// once, so a write in flight at the kill (acknowledged or not, it may have reached the file)
/// never hides an older acknowledged one.
fn kill_9_during_writes(durability: &str) {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let Some((net, dir)) = Setup::new(&format!("dp-kill-{}", &durability[..4]))
        .target("socket = \"xdp\"")
        .device_with(&format!("durability = \"{durability}\""))
        .build()
    else {
        return;
    };
    let flushing = durability == "writeback";
    let mut must_read_back: Vec<(u64, u64)> = Vec::new();
    for round in 0..KILL_ROUNDS {
        let target = dir.start(&net.target_ns);
        let mut client = net.client(0).with_retry(Duration::from_millis(100), 3);
        let device = discover_one(&mut client);
        let acked = Arc::new(AtomicU64::new(0));
        let blocks = KILL_ROUND_SECTORS / 2;
        let stream = (round * KILL_ROUND_SECTORS, blocks, 1000 * round);
        let writer = spawn_writer(client, device, stream, flushing, Arc::clone(&acked));
        // Kill it with about a third of the round's writes acknowledged, more in flight.
        wait_acked(&acked, blocks / 3);
        target.kill();
        // The program went with the process (its BPF link closed): nothing steers AoE into a
        // socket that no longer exists, and the next start needs no cleanup.
        let name = &net.target_end(0).name;
        let link = net.target_ns.ip(&["link", "show", name]).unwrap();
        assert!(
            !link.contains("xdp"),
            "XDP program left after kill -9: {link}"
        );
        let (done, flushed) = writer.join().expect("writer thread");
        assert!(
            (done.len() as u64) < blocks,
            "round {round}: the kill came after the last write ({} acknowledged)",
            done.len()
        );
        let covered = if flushing { flushed } else { done.len() };
        assert!(
            covered > 0,
            "round {round}: nothing acknowledged before the kill"
        );
        must_read_back.extend_from_slice(&done[..covered]);
    }
    // After the last kill: a fresh target on the same file reads back every one of them.
    let _target = dir.start(&net.target_ns);
    assert_read_back(&net, 0, &must_read_back, "kill -9");
}

/// 8 MiB: room for writes that go on for the moment a stop or a link change takes.
pub const ROOMY_SECTORS: u64 = 16384;

/// Two paths (`vt0`, `vt1`) to an AF_XDP target exporting one device of [`ROOMY_SECTORS`].
fn two_paths_with_room(tag: &str) -> Setup {
    Setup::new(tag)
        .paths(2)
        .target("socket = \"xdp\"")
        .sectors(ROOMY_SECTORS)
}

/// SIGTERM while two initiators write over two paths: the target drains, exits 0 within the
/// stop limit and leaves no XDP program; every request that reached a worker was answered (no
/// request left in flight, and no frame held: a request keeps its frame until its reply is
/// sent); both paths were served up to the stop, and every acknowledged write reads back after
/// a restart.
#[test]
fn test_sigterm_under_load_on_two_paths() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    two_paths_with_room("dp-term").serve(|net, dir, target| {
        let half = ROOMY_SECTORS / 2;
        let acked = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let writers: Vec<_> = (0..2u64)
            .map(|path| {
                let index = usize::try_from(path).unwrap();
                let mut client = net.client(index).with_retry(Duration::from_millis(100), 3);
                let device = discover_one(&mut client);
                let stream = (path * half, half / 2, 5000 * path);
                spawn_writer(client, device, stream, false, Arc::clone(&acked[index]))
            })
            .collect();
        // Both paths carry writes when the stop comes.
        for count in &acked {
            wait_acked(count, 200);
        }
        let log = target.stop();
        assert!(log.contains("stopped cleanly"), "{log}");
        assert!(log.contains("frames_held=0"), "{log}");
        assert!(!log.contains("requests still in flight"), "{log}");
        for name in ["vt0", "vt1"] {
            let link = net.target_ns.ip(&["link", "show", name]).unwrap();
            assert!(!link.contains("xdp"), "XDP program left on {name}: {link}");
        }
        let mut acknowledged = Vec::new();
        for (path, writer) in writers.into_iter().enumerate() {
            let (done, _) = writer.join().expect("writer thread");
            assert!(
                !done.is_empty() && (done.len() as u64) < half / 2,
                "path {path}: {} writes acknowledged, the stop must come in the middle",
                done.len()
            );
            acknowledged.extend(done);
        }
        let _target = dir.start(&net.target_ns);
        assert_read_back(net, 0, &acknowledged, "SIGTERM");
    });
}

#[test]
fn test_kill_9_loses_no_acknowledged_sync_write() {
    kill_9_during_writes("sync");
}

#[test]
fn test_kill_9_loses_no_write_covered_by_a_completed_flush() {
    kill_9_during_writes("writeback");
}

/// An interface going down and up under load: the other path keeps serving without an error
/// throughout, and the first one serves again once it is back up.
#[test]
fn test_interface_down_and_up_under_load() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    two_paths_with_room("dp-downup").serve(|net, _dir, _target| {
        let mut first = net.client(0);
        let device = discover_one(&mut first);
        // Patient as an initiator is (the Linux driver retransmits for far longer): every write
        // waits for a data sync of the disk (`durability = "sync"`), which took over 300 ms
        // once in CI while other tests wrote (the write and its two retransmits were answered
        // only after a 3 x 100 ms client had given up).
        let mut second = net.client(1).with_retry(Duration::from_millis(250), 8);
        let second_device = discover_one(&mut second);
        let acked = Arc::new(AtomicU64::new(0));
        let blocks = ROOMY_SECTORS / 2;
        let writer = spawn_writer(
            second,
            second_device,
            (0, blocks, 77),
            false,
            Arc::clone(&acked),
        );
        wait_acked(&acked, 100);
        net.target_ns.link_down("vt0").unwrap();
        let before = acked.load(Ordering::Relaxed);
        let impatient = |client: Client| client.with_retry(Duration::from_millis(100), 2);
        let mut first = impatient(first);
        assert!(
            first.read(&device, 0, 2, false).is_err(),
            "an interface that is down does not answer"
        );
        std::thread::sleep(Duration::from_millis(200));
        let during = acked.load(Ordering::Relaxed) - before;
        net.target_ns.link_up("vt0").unwrap();
        assert!(
            during > 0,
            "the other path stopped serving while vt0 was down"
        );
        // Back up: the first path serves again (a link that comes up may drop the first frames).
        let deadline = Instant::now() + Duration::from_secs(5);
        let lba = ROOMY_SECTORS - 2;
        while first
            .write(&device, lba, &pattern(lba, 2, 1), false)
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "vt0 did not serve again after coming up"
            );
        }
        assert!(first.read(&device, lba, 2, false).expect("read over vt0") == pattern(lba, 2, 1));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !writer.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (done, _) = writer.join().expect("writer thread");
        assert_eq!(
            done.len() as u64,
            blocks,
            "every write over the second path was answered"
        );
    });
}

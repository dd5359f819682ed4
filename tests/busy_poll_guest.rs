//! Busy polling on a driver that ties a NAPI to its receive queue: the worker runs the queue's
//! receive path itself. veth (every other test's wire) ties none, so this test boots a guest:
//! Debian's stock kernel in QEMU (TCG, see `xtask/src/guest.rs`, included here) whose
//! virtio-net NIC sits on a tap bridged to a veth; the real `aoe-xdp` binary serves in the
//! guest on that NIC (native XDP, an AF_XDP socket in copy mode), and our initiator
//! (`aoe-bench load`) drives it from the host side of the veth: two machines, each with its
//! own receive path.
//!
//! The guest's kernel (Linux 6.1 as Debian 12 ships it) ties an AF_XDP socket to its queue's
//! NAPI only when the first frame arrives, not at bind (Linux 6.13 and later do it at bind,
//! for drivers that register their queues' NAPIs): the port looks again then. The target runs
//! six times in one boot ([`RUNS`]: busy polling on and off, `idle = "spin"` and `"poll"`,
//! the NIC's interrupt deferral (`napi_defer_hard_irqs`, `gro_flush_timeout`, which
//! preferred busy polling wants: Documentation/networking/napi.rst) on and off), each under `aoe-bench load` (random 1 KiB reads), while the guest traces its
//! NAPI polls that received frames (`napi:napi_poll`) and sorts the frames by where the poll
//! ran: in a softirq, or in a task's own system call (the worker's busy polling). In two more
//! runs `perf record -g` (the host's perf, 6.1 like the guest) samples the guest meanwhile, and
//! the samples in the NIC's receive poll (`virtnet_poll`) are sorted by what called it:
//! `napi_busy_loop` (the worker's call) or `net_rx_action` (a softirq).
//! Asserted: every read answered, every run over native XDP and AF_XDP, every frame seen by
//! the trace; with busy polling the log says the socket was tied to a NAPI at the first
//! frame, and says how to set the deferral where the NIC lacks it; a spinning worker on a
//! deferring NIC received at least 70 % of the frames itself (98-99 % here), more than
//! without the deferral (0-6 %); without busy polling none; perf agrees (with busy polling
//! most `virtnet_poll` samples under `napi_busy_loop`, without none). Printed, not asserted: the rates
//! and latencies (TCG says nothing about speed) and the default idle mode's share, which
//! depends on how often the worker sleeps.
//!
//! Needs root, `qemu-system-x86_64`, `busybox-static`, `linux-perf` and the first time the package registry
//! (the kernel, cached in `target/kernel-initiator/`, shared with the other guest tests).
//! Prints "skipping: ..." without them, or fails with `AOE_XDP_REQUIRE_PRIV=1`. Hazards: QEMU
//! is killed by its pid when the test ends or passes its hard timeout; the namespaces (with
//! the tap and the bridge) are deleted last; no IP address anywhere, IPv6 off.

#[path = "../xtask/src/guest.rs"]
#[allow(
    dead_code,
    reason = "the aoe initiator's init and the host-root boot are not used here"
)]
mod guest;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netns_rig::Netns;

/// QEMU is killed this long after boot whatever happens.
const HARD_TIMEOUT: Duration = Duration::from_secs(300);
/// Seconds of load per run.
const LOAD_SECONDS: u32 = 3;
/// One run of the target in the guest, under `aoe-bench load` at queue depth `depth`.
struct Spec {
    label: &'static str,
    /// `busy-poll-usecs` (0: off).
    busy_poll_usecs: u32,
    /// `idle`.
    idle: &'static str,
    /// The NIC's `napi_defer_hard_irqs` and `gro_flush_timeout` (ns): what preferred busy
    /// polling asks of it (Documentation/networking/napi.rst); 20 ms rather than the usual
    /// 200 us because under TCG one turn of the worker's loop can take longer than 200 us,
    /// and the host may stop the whole guest for milliseconds, after which the kernel's timer
    /// hands the queue back to softirqs (`idle = "spin"`: with 200 us 31-45 % of the frames
    /// busy polled; with 2 ms 94-95 % alone on the machine, 37 % beside a compile).
    deferral: (u32, u32),
    depth: u32,
    /// Whether `perf record -g` samples the guest's CPU meanwhile (2 s).
    profile: bool,
}

/// The runs, in order.
const RUNS: [Spec; 6] = [
    // What preferred busy polling is for: a worker that never sleeps, a NIC that defers.
    Spec {
        label: "busy",
        busy_poll_usecs: 20,
        idle: "spin",
        deferral: (2, 20_000_000),
        depth: 16,
        profile: false,
    },
    // The default idle mode: the worker sleeps when it runs out of work.
    Spec {
        label: "busypoll",
        busy_poll_usecs: 20,
        idle: "poll",
        deferral: (2, 20_000_000),
        depth: 16,
        profile: false,
    },
    // The target's defaults on a NIC with its defaults (no deferral).
    Spec {
        label: "nodefer",
        busy_poll_usecs: 20,
        idle: "poll",
        deferral: (0, 0),
        depth: 16,
        profile: false,
    },
    Spec {
        label: "plain",
        busy_poll_usecs: 0,
        idle: "poll",
        deferral: (0, 0),
        depth: 16,
        profile: false,
    },
    // `busy` and `plain` again under `perf record -g` (which slows a TCG guest several
    // times over, so the shares above come from runs without it).
    Spec {
        label: "busyperf",
        busy_poll_usecs: 20,
        idle: "spin",
        deferral: (2, 20_000_000),
        depth: 16,
        profile: true,
    },
    Spec {
        label: "plainperf",
        busy_poll_usecs: 0,
        idle: "poll",
        deferral: (0, 0),
        depth: 16,
        profile: true,
    },
];

/// The guest's `/init`: [`guest::init_prologue`] (the modules, not `aoe`: the guest is the
/// target here; its NIC up), a 16 MiB backing file, then each run: the NIC's interrupt
/// deferral set, the
/// target started, the counters reported (`@@ before-LABEL`), a line from the host awaited
/// (sent when its load is done), the counters reported again (`@@ after-LABEL`), the target
/// stopped with SIGINT and its log printed (`log-LABEL: ...`).
fn init(binary: &str) -> String {
    let nic = guest::GUEST_IF;
    let prologue = guest::init_prologue("busy-poll (tests/busy_poll_guest.rs)");
    let mut runs = String::new();
    for spec in &RUNS {
        let (defer, timeout) = spec.deferral;
        let profile = if spec.profile { "perf" } else { "-" };
        runs.push_str(&format!(
            "run {} {} {} {defer} {timeout} {profile}\n",
            spec.label, spec.busy_poll_usecs, spec.idle
        ));
    }
    format!(
        r#"{prologue}dd if=/dev/zero of=/tmp/disk.img bs=1M count=16 2>/dev/null || fail "backing file"
# The NAPI polls that received frames, traced (the event filtered to work > 0, so that a
# spinning worker's empty polls do not flood the buffer): the receive path.
T=/sys/kernel/tracing
mount -t tracefs tracefs $T || fail "mount tracefs"
echo 16384 > $T/buffer_size_kb || fail "trace buffer"
echo 'work > 0' > $T/events/napi/napi_poll/filter || fail "napi_poll filter"
echo 1 > $T/events/napi/napi_poll/enable || fail "napi_poll event"
# Frames received by NAPI polls in softirq context and in a task's own call (busy polling),
# and the events the buffer lost.
polls() {{
    awk '/napi_poll:/ {{
        for (i = 1; i <= NF; i++) {{
            if ($i ~ /^\[[0-9]+\]$/) flags = $(i + 1)
            if ($i == "work") work = $(i + 1)
        }}
        if (substr(flags, 3, 1) == "s") soft += work; else task += work
    }}
    END {{ print soft + 0, task + 0 }}' $T/trace
    awk '/entries-in-buffer/ {{ split($0, a, ":"); split(a[2], b, "/"); print b[2] - b[1] + 0 }}' $T/trace | head -n 1
}}
# Samples of `perf record -g` whose call stack holds the NIC's receive poll (virtnet_poll):
# all of them, those run by a task's busy poll (napi_busy_loop), those run in a softirq
# (net_rx_action).
stacks() {{
    perf script -i "$1" -F comm,ip,sym 2>/dev/null | awk '
        function done() {{ if (rx) {{ n++; if (busy) b++; else if (soft) s++ }}; rx = busy = soft = 0 }}
        NF == 0 {{ done(); next }}
        /virtnet_poll/ {{ rx = 1 }}
        /napi_busy_loop/ {{ busy = 1 }}
        /net_rx_action/ {{ soft = 1 }}
        END {{ done(); print n + 0, b + 0, s + 0 }}'
}}
# Whether perf (pid $1) runs its workload, `sleep`: it is recording then.
recording() {{
    for p in /proc/[0-9]*; do
        [ "$(cat $p/comm 2>/dev/null)" = sleep ] || continue
        awk -v parent=$1 '/^PPid:/ {{ exit $2 != parent }}' $p/status 2>/dev/null && return 0
    done
    return 1
}}
run() {{
    echo $4 > /sys/class/net/{nic}/napi_defer_hard_irqs || fail "napi_defer_hard_irqs"
    echo $5 > /sys/class/net/{nic}/gro_flush_timeout || fail "gro_flush_timeout"
    cat > /tmp/$1.toml <<EOF
[target]
interfaces = ["{nic}"]
state-directory = "/tmp/state-$1"
control-socket = "/run/aoe-$1.sock"
busy-poll-usecs = $2
idle = "$3"

[[device]]
path = "/tmp/disk.img"
shelf = 1
slot = 0
EOF
    {binary} --config /tmp/$1.toml > /tmp/$1.log 2>&1 &
    pid=$!
    i=0
    until grep -q "serving;" /tmp/$1.log; do
        i=$((i + 1))
        if [ $i -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
            sed "s/^/log-$1: /" /tmp/$1.log
            fail "the target did not start ($1)"
        fi
        sleep 0.1
    done
    echo > $T/trace
    perfpid=""
    if [ "$6" = perf ]; then
        perf record -q -g -a -F 499 -o /tmp/perf-$1.data -- sleep 2 > /tmp/perf-$1.log 2>&1 &
        perfpid=$!
        # perf takes a while to start under TCG: it records once its `sleep` runs, and the
        # load, which starts after the next line, lasts longer than those 2 s.
        i=0
        until recording $perfpid; do
            i=$((i + 1))
            [ $i -gt 600 ] && fail "perf did not start: $(cat /tmp/perf-$1.log)"
            sleep 0.05
        done
    fi
    say "before-$1"
    read -r reply
    say "after-$1 $(polls | tr '\n' ' ')"
    if [ -n "$perfpid" ]; then
        wait $perfpid
        sed "s/^/perf-log-$1: /" /tmp/perf-$1.log
        say "perf-$1 $(stacks /tmp/perf-$1.data)"
    fi
    kill -INT $pid
    wait $pid
    say "exit-$1 $?"
    sed "s/^/log-$1: /" /tmp/$1.log
}}
{runs}say "end"
poweroff -f
"#
    )
}

/// The kernel, or `None` after saying why the test cannot run.
fn prerequisites() -> Option<guest::Kernel> {
    let tools = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
        ("strip", "binutils"),
        ("perf", "linux-perf"),
        ("apt-get", "apt"),
        ("dpkg", "dpkg"),
    ];
    guest::kernel_for_test("the busy-poll guest test", &tools)
}

/// The guest's initramfs in `work`: busybox, the modules, the target (stripped: the release
/// build carries debug information; at its path in `work`, with its libraries), the init.
fn initramfs(kernel: &guest::Kernel, work: &Path) -> PathBuf {
    let mut initramfs = guest::Initramfs::new(kernel).unwrap_or_else(|e| panic!("{e:#}"));
    let stripped = work.join("aoe-xdp");
    let strip = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(env!("CARGO_BIN_EXE_aoe-xdp"))
        .status()
        .expect("run strip");
    assert!(strip.success(), "strip failed: {strip}");
    let binary = stripped.to_str().expect("UTF-8 path");
    for binary in [binary, "/usr/bin/perf"] {
        initramfs
            .host_binary(binary)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    initramfs.init(&init(binary));
    let image = work.join("initramfs.cpio");
    initramfs.write(&image).unwrap_or_else(|e| panic!("{e:#}"));
    image
}

/// What one run measured.
#[derive(Debug)]
struct Run {
    label: &'static str,
    /// Reads answered (all of them: no errors).
    requests: u64,
    /// Their median latency (µs).
    p50_us: f64,
    /// Frames the guest's NAPI polls received in softirq context.
    softirq_frames: u64,
    /// Frames received by NAPI polls in a task's own system call: busy polling.
    task_frames: u64,
    /// Trace events the buffer lost (then the figures are short).
    lost: u64,
}

impl Run {
    /// The share of received frames that the worker's busy polling received.
    fn busy_polled(&self) -> f64 {
        self.task_frames as f64 / (self.task_frames + self.softirq_frames).max(1) as f64
    }
}

/// (softirq frames, task frames, lost events) from an `@@ after-` value.
fn polls(value: &str) -> (u64, u64, u64) {
    let fields: Vec<u64> = value
        .split_whitespace()
        .map(|f| {
            f.parse()
                .unwrap_or_else(|_| panic!("unexpected polls {value:?}"))
        })
        .collect();
    match fields[..] {
        [soft, task, lost] => (soft, task, lost),
        _ => panic!("unexpected polls {value:?}"),
    }
}

#[test]
fn busy_polling_runs_the_receive_path_in_the_worker() {
    let Some(kernel) = prerequisites() else {
        return;
    };
    let started = Instant::now();
    // Declared first, so that they go last: after QEMU has stopped.
    let host_ns = Netns::unique("bph").unwrap();
    let guest_ns = Netns::unique("bpg").unwrap();
    guest::tap_wire(&host_ns, "aoe0", &guest_ns).unwrap_or_else(|e| panic!("{e:#}"));
    let work = tempfile::Builder::new()
        .prefix("aoe-xdp-busy-poll-")
        .tempdir()
        .expect("temporary directory");
    let image = initramfs(&kernel, work.path());
    let mut vm = guest::Guest::boot(
        &kernel,
        &guest::GuestSpec {
            netns: guest_ns.name(),
            tap: Some("tap0"),
            host_root: false,
            cpus: 1,
            append: "",
            initramfs: &image,
            log_dir: work.path(),
            memory_mib: 512,
            core: None,
            hard_timeout: HARD_TIMEOUT,
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let mut runs = Vec::new();
    for spec in &RUNS {
        let label = spec.label;
        vm.wait_for(&format!("before-{label}"), Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", vm.tail(80)));
        let load = Command::new("ip")
            .args(["netns", "exec", host_ns.name()])
            .arg(env!("CARGO_BIN_EXE_aoe-bench"))
            .args(["load", "-i", "aoe0", "-t", "1.0"])
            .args(["--depth", &spec.depth.to_string()])
            .args(["--duration", &LOAD_SECONDS.to_string()])
            .args(["--json", "--no-progress", "--timeout-ms", "1000"])
            .output()
            .expect("run aoe-bench load");
        vm.send_line("measured").unwrap_or_else(|e| panic!("{e:#}"));
        let after = vm
            .wait_for(&format!("after-{label}"), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", vm.tail(80)));
        assert!(
            load.status.success(),
            "aoe-bench load ({label}): {}\n{}",
            String::from_utf8_lossy(&load.stderr),
            vm.tail(80)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&load.stdout).expect("aoe-bench load --json");
        let requests = report["requests"].as_u64().expect("requests");
        assert_eq!(report["errors"], 0, "{label}: {report}");
        assert!(requests > 0, "{label}: {report}");
        let (softirq_frames, task_frames, lost) = polls(&after);
        runs.push(Run {
            label,
            requests,
            p50_us: report["lat_us"]["p50"].as_f64().expect("p50"),
            softirq_frames,
            task_frames,
            lost,
        });
    }
    vm.wait_for("end", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", vm.tail(80)));
    let status = vm
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let console = vm.console();
    let report = || format!("{runs:?}\n{}", vm.tail(120));
    assert!(status.success(), "QEMU exited with {status}\n{}", report());
    let results = guest::results(&console);
    for label in RUNS.iter().map(|spec| spec.label) {
        assert!(
            results
                .iter()
                .any(|(k, v)| k == &format!("exit-{label}") && v == "0"),
            "the target did not stop cleanly ({label})\n{}",
            report()
        );
    }
    let log = |label: &str| -> String {
        console
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("log-{label}: ")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for run in &runs {
        eprintln!(
            "{:<8} {:>6} reads (p50 {:>6.0} us), frames received: {:>6} in softirqs, {:>6} by \
             busy polling ({:.0} %), {} trace events lost",
            run.label,
            run.requests,
            run.p50_us,
            run.softirq_frames,
            run.task_frames,
            run.busy_polled() * 100.0,
            run.lost
        );
    }
    eprintln!(
        "Linux {} in the guest; {:?}",
        kernel.release,
        started.elapsed()
    );
    let [busy, busypoll, nodefer, plain, busyperf, plainperf] = &runs[..] else {
        panic!("six runs: {runs:?}");
    };
    for run in &runs {
        let text = log(run.label);
        assert!(
            text.contains("AF_XDP socket ready") && text.contains("mode=Native"),
            "{}: not served over AF_XDP with native XDP\n{text}",
            run.label
        );
        assert_eq!(run.lost, 0, "the trace lost events: {run:?}");
        // Every frame was received by some NAPI poll (replies to discovery and the like
        // add a few).
        assert!(
            run.softirq_frames + run.task_frames >= run.requests,
            "{run:?}"
        );
    }
    let hint = "the NIC does not defer its interrupts";
    for run in [busy, busypoll, nodefer, busyperf] {
        let text = log(run.label);
        assert!(
            text.contains("tied the socket to its queue's NAPI at the first frame"),
            "{}: busy polling found no NAPI\n{text}",
            run.label
        );
        assert_eq!(text.contains(hint), run.label == "nodefer", "{text}");
    }
    for run in [plain, plainperf] {
        assert!(
            !log(run.label).contains("busy polling"),
            "{}",
            log(run.label)
        );
        assert_eq!(run.task_frames, 0, "{run:?}");
    }
    // With the NIC's interrupts deferred a spinning worker receives nearly every frame itself
    // (98-99 % here); without the deferral a few (0-6 %). With `idle = "poll"` the worker
    // sleeps now and then, and a frame that arrives meanwhile waits for the kernel's timer:
    // printed above, not asserted (21-55 % busy polled here, at a much higher p50).
    assert!(
        busy.busy_polled() >= 0.7,
        "with busy polling the guest still received many frames in softirqs: {busy:?}"
    );
    assert!(busy.busy_polled() > nodefer.busy_polled(), "{runs:?}");
    assert!(busypoll.task_frames > 0, "{busypoll:?}");
    // The same seen by `perf record -g`: samples in the NIC's receive poll, by who ran it.
    let profile = |label: &str| -> [u64; 3] {
        let key = format!("perf-{label}");
        let value = results
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no `@@ {key}`\n{}", report()));
        let fields: Vec<u64> = value
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        fields
            .try_into()
            .unwrap_or_else(|_| panic!("unexpected `@@ {key} {value}`"))
    };
    let ([busy_rx, busy_polled, busy_soft], [plain_rx, plain_polled, plain_soft]) =
        (profile(busyperf.label), profile(plainperf.label));
    eprintln!(
        "perf record -g, samples in virtnet_poll: busy polling {busy_rx} ({busy_polled} under \
         napi_busy_loop in the worker's call, {busy_soft} under net_rx_action), without \
         {plain_rx} ({plain_polled}, {plain_soft})"
    );
    assert!(
        busy_polled > 0 && busy_polled > busy_soft,
        "perf: the receive poll ran mostly in softirqs despite busy polling: {busy_rx} samples, \
         {busy_polled} busy polled, {busy_soft} in softirqs"
    );
    assert!(
        plain_rx > 0 && plain_polled == 0,
        "perf without busy polling: {plain_rx} samples, {plain_polled} busy polled"
    );
}

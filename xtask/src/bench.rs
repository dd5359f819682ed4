//! `cargo xtask bench`: aoe-xdp against vblade and a bare AF_XDP reflector, in one run.
//!
//! Method (the same for every system, so that ratios within one run mean something; between
//! runs on this kind of VM the noise is about ±25%):
//! - two network namespaces joined by a fresh veth pair (one queue each, MTU 1500) per system;
//! - every system is started first and paused (`SIGSTOP`); each point is then measured on
//!   every system in turn (the first one rotating from point to point), the one measured
//!   running alone: the figures compared in a row were taken within seconds of each other;
//! - one 256 MiB backing file under /var/tmp, written, synced and read once with
//!   `cat > /dev/null` so that it sits in the page cache; aoe-xdp runs with
//!   `durability = "writeback"`, `mapped-writes = true`, `mapped-reads = true` (but the
//!   `xdp-defaults` system, which shows the defaults: `durability = "sync"`, no mappings, so
//!   its writes are measured with the disk's data syncs) and vblade without `-s`/`-d`: for the
//!   others the disk is not what is measured; written in 2 MiB blocks, the file sits in 2 MiB page-cache
//!   folios (the state `resident = true` brings a file to at start-up, re-reading it if need
//!   be: a file in smaller folios would be changed under the other systems by the resident
//!   system's start), and on ext4 (Linux 6.18) every 1 KiB buffered write then walks all buffer heads of
//!   its folio (`ext4_block_write_begin`, `block_commit_write`): several microseconds of kernel
//!   time per random `pwrite` (vblade's bound, and aoe-xdp's without `mapped-writes`; with it,
//!   aoe-xdp copies write-back writes through a shared mapping, pays a write fault only for a
//!   page written back since, and would write back whole folios to a disk);
//! - before each system's point the file is synced and read through again (cold pages nobody
//!   maps are paged out even without memory pressure on this VM: DAMON runs a `pageout`
//!   scheme); a write point then first dirties the whole file through the system itself (see
//!   [`prepare`]); `fincore` after each point checks that the file stayed cached;
//! - the target pinned to core 0 (`taskset -c 0`; aoe-xdp also `worker-cores = [0]`,
//!   `idle = "spin"`), the initiator `aoe-bench load` pinned to core 1;
//! - 1 KiB requests (MTU 1500 carries two sectors): random reads at queue depth 1, 16, 64;
//!   random and sequential reads and writes at depth 16 and 64. Each point has a warm-up, then
//!   `--seconds` of measurement;
//! - CPU per request: the target's utime + stime (`/proc/PID/stat`, ticks of `getconf CLK_TCK`)
//!   over the measurement window, as a share of one core, divided by the request rate; plus
//!   `perf stat -e instructions` where the VM exposes the counter.
//!
//! - after the counted rounds, a pass of its own under `perf record -g` on the target
//!   ([`profile`]): where its CPU goes, and how much of it is the initiator's receive path that
//!   veth runs in the target's sends (perf disturbs what it samples, so this pass is not
//!   counted);
//!
//! - one more point, random reads at depth 16 offered at a fixed rate ([`FIXED_RATE`] per
//!   second, `aoe-bench load --rate`), below every system's maximum: there CPU per request is
//!   the work a request costs, not the polling of a saturated busy-polling target.
//!
//! Systems: aoe-xdp on AF_XDP (also with `idle = "poll"`, with `idle = "poll"` and a nap of
//! [`NAP_US`] after work: `xdp-nap`, with `resident = true`, and with the device's defaults:
//! `xdp-defaults`), aoe-xdp on its AF_PACKET fallback (`socket = "packet"`; a row
//! that cannot run is reported as "n/a: reason"), Debian's `vblade -b 64`, and the reflector
//! `aoe-bench reflect` (answers from the frame without storage: the ceiling of the path).
//! `--system baseline --baseline PATH` adds another aoe-xdp binary (e.g. a build of the
//! previous commit, which must know every key of that configuration) with the `xdp`
//! configuration, for an A/B comparison within one run; a
//! system named twice is measured twice (e.g. `--system xdp --system baseline --system
//! baseline --system xdp`, so that drift on a shared machine cancels out). `--workload LABEL`
//! (repeatable, a prefix of the points' labels) measures only some points.
//!
//! Output: a table on stdout, `target/bench/results.json` (raw), `target/bench/qd.svg` (IOPS
//! and latency against queue depth), `target/bench/summary.md`, per-system target logs under
//! `target/bench/logs/`; `--update-readme` rewrites README.md between the bench markers.
//!
//! Everything created (namespaces, processes, the scratch directory) is removed at the end,
//! also on failure or Ctrl-C: each is a guard, and only processes started here are signalled.

mod kernel;
mod profile;
mod report;

pub use profile::Profile;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::deps;
use crate::netns::{veth_pair, Daemon, Netns};
use crate::util::{cargo, output, run, target_dir, workspace_root, ScratchDir};

/// Size of the backing file.
const DISK_BYTES: u64 = 256 << 20;
/// Link MTU: two 512-byte sectors per request.
const MTU: u16 = 1500;
/// Sectors per request.
const REQUEST_SECTORS: u32 = 2;
/// `idle-nap-us` of the `xdp-nap` system: at the fixed load ([`FIXED_RATE`] requests/s, one
/// every 25 µs) each nap gathers about eight requests.
pub const NAP_US: u32 = 200;

/// Requests per second of the fixed-load point: well below every system's maximum here.
pub const FIXED_RATE: u32 = 40_000;
/// Core of the target.
const TARGET_CORE: u32 = 0;
/// Core of the initiator.
const INITIATOR_CORE: u32 = 1;
/// Buffer count advertised by every target (the Linux initiator's maximum).
const BUFFER_COUNT: u32 = 64;
/// Target and initiator interface names (one pair per system, in its own namespaces).
const TARGET_IF: &str = "vt";
const CLIENT_IF: &str = "vc";
/// Background load above which the run is flagged as disturbed.
pub const BACKGROUND_WARN_CORES: f64 = 0.25;
/// Where the CPU window starts after the warm-up began, to let the load settle.
const CPU_WINDOW_DELAY: Duration = Duration::from_millis(250);

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seconds measured per point, after the warm-up.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=600))]
    seconds: u32,
    /// Times every point is measured on every system; each row shows the round with the
    /// median rate (all rounds are kept in results.json).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Warm-up seconds before each point.
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Do not sample the target with `perf record` (by default every point is profiled to
    /// show where the target's CPU goes).
    #[arg(long)]
    no_profile: bool,
    /// Smoke run: 1 s per point, queue depth 16 only.
    #[arg(long, conflicts_with = "seconds")]
    quick: bool,
    /// Replace README.md's performance section (between the bench markers) with the summary.
    #[arg(long)]
    update_readme: bool,
    /// Measure nothing: render the table, plot and summary again from target/bench/results.json.
    #[arg(long)]
    from_results: bool,
    /// The aoe-bench binary used as load generator and reflector [default: the release build].
    #[arg(long, value_name = "PATH")]
    loadgen: Option<PathBuf>,
    /// Measure only the points whose label starts with this (repeatable), e.g. `--workload
    /// "rand read"` or `--workload "seq write QD64"` [default: every point].
    #[arg(long = "workload", value_name = "LABEL")]
    workloads: Vec<String>,
    /// Run only these systems (repeatable) [default: all but `baseline`].
    #[arg(long = "system", value_enum)]
    systems: Vec<SystemKind>,
    /// An aoe-xdp binary (e.g. a build of the previous commit) measured as system `baseline`
    /// with the same configuration as `xdp`: an A/B comparison within one run.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Measure only sequential reads and writes through the Linux kernel's `aoe` driver in a
    /// QEMU guest, aoe-xdp against vblade (see bench/kernel.rs; a few minutes), and print a
    /// table; every other option is ignored.
    #[arg(long)]
    kernel_initiator: bool,
}

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// aoe-xdp on AF_XDP.
    Xdp,
    /// aoe-xdp on its AF_PACKET fallback.
    Packet,
    /// Debian's vblade.
    Vblade,
    /// `aoe-bench reflect`: AF_XDP, no storage, no protocol state.
    Reflector,
    /// Another aoe-xdp binary (`--baseline`) on AF_XDP, configured as `xdp`.
    Baseline,
    /// aoe-xdp on AF_XDP with `idle = "poll"` (sleeps when there is no work).
    #[value(name = "xdp-poll")]
    #[serde(rename = "xdp-poll")]
    XdpPoll,
    /// aoe-xdp on AF_XDP with the device `resident = true` (locked in memory, copies through a
    /// shared mapping instead of a system call per request).
    #[value(name = "xdp-resident")]
    #[serde(rename = "xdp-resident")]
    XdpResident,
    /// aoe-xdp on AF_XDP with the device's defaults: `durability = "sync"` (writes
    /// acknowledged once durable, by group commit) and neither `mapped-reads` nor
    /// `mapped-writes` (a system call, or an io_uring request, per read and per write).
    #[value(name = "xdp-defaults")]
    #[serde(rename = "xdp-defaults")]
    XdpDefaults,
    /// aoe-xdp on AF_XDP with `idle = "poll"` and `idle-nap-us = NAP_US` (naps after work,
    /// and wakes once per nap under a steady load).
    #[value(name = "xdp-nap")]
    #[serde(rename = "xdp-nap")]
    XdpNap,
}

impl SystemKind {
    const ALL: [SystemKind; 8] = [
        SystemKind::Xdp,
        SystemKind::XdpResident,
        SystemKind::XdpDefaults,
        SystemKind::XdpPoll,
        SystemKind::XdpNap,
        SystemKind::Packet,
        SystemKind::Vblade,
        SystemKind::Reflector,
    ];

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            SystemKind::Xdp => "aoe-xdp (XDP)",
            SystemKind::Packet => "aoe-xdp (AF_PACKET)",
            SystemKind::Vblade => "vblade",
            SystemKind::Reflector => "reflector",
            SystemKind::Baseline => "aoe-xdp (XDP, baseline)",
            SystemKind::XdpPoll => "aoe-xdp (XDP, idle=poll)",
            SystemKind::XdpResident => "aoe-xdp (XDP, resident)",
            SystemKind::XdpDefaults => "aoe-xdp (XDP, defaults)",
            SystemKind::XdpNap => "aoe-xdp (XDP, idle=poll, nap)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            SystemKind::Xdp => "xdp",
            SystemKind::Packet => "packet",
            SystemKind::Vblade => "vblade",
            SystemKind::Reflector => "reflector",
            SystemKind::Baseline => "baseline",
            SystemKind::XdpPoll => "xdp-poll",
            SystemKind::XdpResident => "xdp-resident",
            SystemKind::XdpDefaults => "xdp-defaults",
            SystemKind::XdpNap => "xdp-nap",
        }
    }
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// ATA READ.
    Read,
    /// ATA WRITE.
    Write,
}

/// Where successive requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Uniformly random sectors.
    Random,
    /// Ascending sectors.
    Sequential,
}

/// One measurement point's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Direction.
    pub op: Op,
    /// Access pattern.
    pub pattern: Pattern,
    /// Requests outstanding.
    pub depth: u32,
    /// Requests offered per second (`None`: as many as the window allows). A fixed load
    /// below every system's maximum measures CPU per request of a target that is not
    /// saturated (a busy-polling target at saturation shows 100 % of a core whatever it does).
    #[serde(default)]
    pub rate: Option<u32>,
}

impl Workload {
    const fn new(op: Op, pattern: Pattern, depth: u32) -> Workload {
        Workload {
            op,
            pattern,
            depth,
            rate: None,
        }
    }

    const fn at_rate(op: Op, pattern: Pattern, depth: u32, rate: u32) -> Workload {
        Workload {
            op,
            pattern,
            depth,
            rate: Some(rate),
        }
    }

    /// "rand read QD16".
    pub fn label(&self) -> String {
        let pattern = match self.pattern {
            Pattern::Random => "rand",
            Pattern::Sequential => "seq",
        };
        let op = match self.op {
            Op::Read => "read",
            Op::Write => "write",
        };
        match self.rate {
            None => format!("{pattern} {op} QD{}", self.depth),
            Some(rate) => format!("{pattern} {op} QD{} @{}k/s", self.depth, rate / 1000),
        }
    }
}

/// The points of a run, reads first (writes dirty the page cache).
fn workloads(quick: bool) -> Vec<Workload> {
    use Op::{Read, Write};
    use Pattern::{Random, Sequential};
    let depths: &[u32] = if quick { &[16] } else { &[16, 64] };
    let mut list = Vec::new();
    if !quick {
        list.push(Workload::new(Read, Random, 1));
        list.push(Workload::at_rate(Read, Random, 16, FIXED_RATE));
    }
    for (op, pattern) in [
        (Read, Random),
        (Read, Sequential),
        (Write, Random),
        (Write, Sequential),
    ] {
        list.extend(depths.iter().map(|&d| Workload::new(op, pattern, d)));
    }
    list
}

/// The points of `all` whose label starts with one of `prefixes` (all of them if there are
/// none); an error names the labels if nothing matches.
fn selected(all: Vec<Workload>, prefixes: &[String]) -> Result<Vec<Workload>> {
    if prefixes.is_empty() {
        return Ok(all);
    }
    let labels: Vec<String> = all.iter().map(Workload::label).collect();
    let chosen: Vec<Workload> = all
        .into_iter()
        .filter(|w| prefixes.iter().any(|p| w.label().starts_with(p.as_str())))
        .collect();
    if chosen.is_empty() {
        bail!(
            "no point matches --workload {prefixes:?}; the points are: {}",
            labels.join(", ")
        );
    }
    Ok(chosen)
}

/// Latency percentiles of a load run, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

/// What `aoe-bench load --json` reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadResult {
    /// Requests completed in the measurement window.
    pub requests: u64,
    /// Payload bytes moved.
    pub bytes: u64,
    /// Length of the measurement window.
    pub duration_s: f64,
    /// Requests per second.
    pub iops: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Latency percentiles.
    pub lat_us: Latency,
    /// Requests sent again after a timeout.
    pub retransmits: u64,
    /// Requests answered with an error or never answered.
    pub errors: u64,
    /// Reads whose data did not match.
    pub verify_failures: u64,
    /// Per-path details, as the load generator reports them.
    #[serde(default)]
    pub paths: Vec<serde_json::Value>,
}

/// The target's CPU use during one point.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct CpuSample {
    /// utime + stime over the window, in seconds.
    pub cpu_s: f64,
    /// Length of the window.
    pub wall_s: f64,
    /// Cores busy on average (`cpu_s / wall_s`).
    pub utilisation: f64,
    /// Microseconds of CPU per request (`utilisation / iops`).
    pub us_per_request: f64,
    /// Instructions per request, where `perf stat -e instructions` works.
    pub instructions_per_request: Option<f64>,
}

/// One measured point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// What was run.
    pub workload: Workload,
    /// The load generator's report, when it produced one.
    pub load: Option<LoadResult>,
    /// The target's CPU use.
    pub cpu: Option<CpuSample>,
    /// Why the point has no result.
    pub error: Option<String>,
    /// Where the target's CPU went (`perf record`), where perf can sample.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Share of the backing file in the page cache when the point ended (`fincore`).
    #[serde(default)]
    pub cached: Option<f64>,
}

/// One system's run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SystemRun {
    /// Which system.
    pub system: SystemKind,
    /// "ok", "n/a: reason" or "failed: reason".
    pub status: String,
    /// What the target said about itself (socket and attach modes).
    pub notes: Vec<String>,
    /// One point per workload: the round with the median rate.
    pub points: Vec<Point>,
    /// Every round's points, in run order.
    #[serde(default)]
    pub samples: Vec<Point>,
    /// Cores busy with other work just before this system started: on a shared machine the
    /// systems see different background load, which distorts their ratios.
    #[serde(default)]
    pub background_cores: f64,
}

fn one() -> u32 {
    1
}

/// Facts about the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    /// UTC time of the start.
    pub date: String,
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Measured seconds per point.
    pub seconds: u32,
    /// Warm-up seconds per point.
    pub warmup: u32,
    /// `--quick`.
    pub quick: bool,
    /// Rounds: each row is the round with the median rate.
    #[serde(default = "one")]
    pub rounds: u32,
    /// Link MTU.
    pub mtu: u16,
    /// Bytes per request.
    pub request_bytes: u32,
    /// Target and initiator cores.
    pub target_core: u32,
    /// Core of the load generator.
    pub initiator_core: u32,
    /// The backing store.
    pub backing: String,
    /// How CPU was measured.
    pub cpu_method: String,
    /// `getconf CLK_TCK`.
    pub clk_tck: u64,
}

/// Everything a run produced (target/bench/results.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    /// Facts about the run.
    pub meta: Meta,
    /// One entry per system, in run order.
    pub systems: Vec<SystemRun>,
}

impl Results {
    /// The run of `system`, if it produced data.
    pub fn ok_run(&self, system: SystemKind) -> Option<&SystemRun> {
        self.systems
            .iter()
            .find(|r| r.system == system && r.status == "ok")
    }

    /// `system`'s load result and CPU sample at `workload`.
    pub fn point(
        &self,
        system: SystemKind,
        workload: &Workload,
    ) -> Option<(&LoadResult, Option<&CpuSample>)> {
        let point = self
            .ok_run(system)?
            .points
            .iter()
            .find(|p| p.workload == *workload)?;
        Some((point.load.as_ref()?, point.cpu.as_ref()))
    }

    /// Every workload measured by any system, in run order.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut list: Vec<Workload> = Vec::new();
        for point in self.systems.iter().flat_map(|s| &s.points) {
            if !list.contains(&point.workload) {
                list.push(point.workload);
            }
        }
        list
    }
}

/// Paths and settings shared by every system's run.
struct Env {
    aoe_xdp: PathBuf,
    baseline: Option<PathBuf>,
    loadgen: PathBuf,
    scratch: PathBuf,
    disk: PathBuf,
    logs: PathBuf,
    seconds: u32,
    warmup: u32,
    clk_tck: u64,
    perf: bool,
    profile: bool,
    stop: Arc<AtomicBool>,
}

/// Runs the bench (or re-renders the last one) and writes the reports.
pub fn bench(args: &BenchArgs) -> Result<()> {
    if args.kernel_initiator {
        return kernel::bench();
    }
    let out_dir = workspace_root().join("target/bench");
    let results_path = out_dir.join("results.json");
    let results = if args.from_results {
        let text = fs::read_to_string(&results_path)
            .with_context(|| format!("reading {}", results_path.display()))?;
        serde_json::from_str(&text).context("parsing results.json")?
    } else {
        let results = measure(args, &out_dir)?;
        fs::write(&results_path, serde_json::to_string_pretty(&results)?)?;
        results
    };
    let table = report::table(&results);
    println!("\n{table}");
    println!("{}", report::targets(&results));
    println!("{}", report::profiles(&results));
    report::plot(&results, &out_dir.join("qd.svg"))?;
    let summary = report::summary(&results);
    fs::write(
        out_dir.join("summary.md"),
        format!("# aoe-xdp benchmark\n\n{summary}"),
    )?;
    println!(
        "wrote {0}/results.json, {0}/qd.svg, {0}/summary.md",
        out_dir.display()
    );
    if args.update_readme {
        let readme = workspace_root().join("README.md");
        let text = fs::read_to_string(&readme)?;
        fs::write(&readme, report::replace_section(&text, &summary)?)?;
        println!("updated the performance section of {}", readme.display());
    }
    Ok(())
}

fn measure(args: &BenchArgs, out_dir: &Path) -> Result<Results> {
    if args.systems.contains(&SystemKind::Baseline) && args.baseline.is_none() {
        bail!("--system baseline needs --baseline PATH");
    }
    deps::ensure_packages()?;
    deps::ensure(deps::BENCH_PACKAGES)?;
    run(cargo().args(["build", "--release", "--bins"]))?;
    let bin = target_dir().join("release");
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let scratch = ScratchDir(PathBuf::from(format!(
        "/var/tmp/aoe-bench-{}",
        std::process::id()
    )));
    fs::create_dir_all(&scratch.0)?;
    let logs = out_dir.join("logs");
    fs::create_dir_all(&logs)?;
    let clk_tck: u64 = output(Command::new("getconf").arg("CLK_TCK"))?
        .parse()
        .context("getconf CLK_TCK")?;
    let perf = perf_instructions_supported();
    let profile = !args.no_profile && profile::supported(&scratch.0);
    let env = Env {
        aoe_xdp: bin.join("aoe-xdp"),
        baseline: args.baseline.clone(),
        loadgen: args
            .loadgen
            .clone()
            .unwrap_or_else(|| bin.join("aoe-bench")),
        disk: scratch.0.join("disk.img"),
        scratch: scratch.0.clone(),
        logs,
        seconds: if args.quick { 1 } else { args.seconds },
        warmup: args.warmup,
        clk_tck,
        perf,
        profile,
        stop,
    };
    let rounds = if args.quick { 1 } else { args.rounds };
    let meta = meta(&env, args.quick, rounds)?;
    println!(
        "aoe-xdp bench: {} s per point after {} s warm-up; backing: {}; CPU: {}",
        meta.seconds, meta.warmup, meta.backing, meta.cpu_method
    );
    make_disk(&env.disk)?;
    let systems = if args.systems.is_empty() {
        SystemKind::ALL.to_vec()
    } else {
        args.systems.clone()
    };
    let workloads = selected(workloads(args.quick), &args.workloads)?;
    let background = background_cores(Duration::from_secs(1))?;
    println!("other load before the start: {background:.2} cores");
    if background > BACKGROUND_WARN_CORES {
        println!("warning: the machine is busy with other work; every figure suffers");
    }
    // Every system is started (and paused) first; then each point is measured on every
    // system in turn, so that the systems compared in one row were measured within seconds
    // of each other (drift of the machine between systems was the larger part of the noise).
    let mut lives = Vec::new();
    for (index, system) in systems.into_iter().enumerate() {
        let mut live = start_system(&env, system, index)?;
        live.run.background_cores = background;
        println!("{:<26} {}", system.label(), live.run.status);
        lives.push(live);
    }
    for round in 0..rounds as usize {
        for (index, workload) in workloads.iter().enumerate() {
            println!(
                "\n=== {} (round {} of {rounds})",
                workload.label(),
                round + 1
            );
            // Rotate who goes first, so that no system always follows the same one.
            let count = lives.len();
            for turn in 0..count {
                let live = &mut lives[(index + round + turn) % count];
                if let Some(point) = live.turn(&env, workload, false)? {
                    println!(
                        "  {:<26} {}",
                        live.run.system.label(),
                        report::point_line(&point)
                    );
                    live.run.samples.push(point);
                }
            }
        }
    }
    // perf disturbs what it samples (its start-up alone takes a good part of a second of
    // CPU), so the profiles come from a pass of their own, after the counted rounds.
    let mut profiles = vec![Vec::new(); lives.len()];
    if env.profile {
        for workload in &workloads {
            println!(
                "\n=== {} (profile: perf record, not counted)",
                workload.label()
            );
            for (live, profiles) in lives.iter_mut().zip(&mut profiles) {
                if let Some(point) = live.turn(&env, workload, true)? {
                    println!(
                        "  {:<26} {}",
                        live.run.system.label(),
                        report::profile_line(point.profile.as_ref())
                    );
                    profiles.push((*workload, point.profile));
                }
            }
        }
    }
    let runs = lives
        .into_iter()
        .zip(profiles)
        .map(|(live, profiles)| {
            let mut run = live.finish();
            run.points = medians(&run.samples, &workloads);
            for point in &mut run.points {
                point.profile = profiles
                    .iter()
                    .find(|(w, _)| *w == point.workload)
                    .and_then(|(_, p)| p.clone());
            }
            run
        })
        .collect();
    Ok(Results {
        meta,
        systems: runs,
    })
}

fn meta(env: &Env, quick: bool, rounds: u32) -> Result<Meta> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cpu_method = if env.perf {
        format!(
            "utime+stime from /proc/PID/stat (CLK_TCK {}) and perf stat -e instructions",
            env.clk_tck
        )
    } else {
        format!(
            "utime+stime from /proc/PID/stat (CLK_TCK {}); perf stat -e instructions is not \
             supported here",
            env.clk_tck
        )
    };
    Ok(Meta {
        date: output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))?,
        kernel: output(Command::new("uname").arg("-r"))?,
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seconds: env.seconds,
        warmup: env.warmup,
        quick,
        rounds,
        mtu: MTU,
        request_bytes: REQUEST_SECTORS * 512,
        target_core: TARGET_CORE,
        initiator_core: INITIATOR_CORE,
        backing: format!(
            "{} MiB file in /var/tmp, written in 2 MiB blocks (2 MiB page-cache folios), in the page cache; aoe-xdp durability = \"writeback\" \
             with mapped-writes = true and mapped-reads = true (copies into and out of the page \
             cache; see the README for what that costs a disk), except the \"defaults\" \
             system (durability = \"sync\": every write acknowledged after a data sync of the \
             disk, shared by the writes that completed before it; pwritev2, and preadv2 or \
             io_uring reads), vblade buffered (not durable): only the defaults' writes measure \
             the disk",
            DISK_BYTES >> 20
        ),
        cpu_method,
        clk_tck: env.clk_tck,
    })
}

/// Writes the backing file with a non-zero pattern (no holes: a write never allocates
/// blocks) in 2 MiB blocks (so the page cache holds it in 2 MiB folios), syncs it, and reads
/// it through once so every page is cached and clean.
fn make_disk(path: &Path) -> Result<()> {
    let block: Vec<u8> = (0..2u32 << 20)
        .map(|i| u8::try_from((i.wrapping_mul(31) >> 3) & 0xFF).unwrap_or(0xA5) | 1)
        .collect();
    let mut file = fs::File::create(path)?;
    for _ in 0..DISK_BYTES >> 21 {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    drop(file);
    run(Command::new("cat").arg(path).stdout(Stdio::null()))?;
    Ok(())
}

/// Brings the page cache to the state a point starts from: the whole file cached; another
/// system's writes are synced first (so that no write-back runs during this point); a write point then starts
/// with every page of the file dirty, written once sequentially through the system itself —
/// the steady state of a target that takes writes (the kernel writes a dirty page back 30 s
/// after it was dirtied, and the first write to a page after that costs more: the ext4
/// write path, or a write fault for a resident device).
fn prepare(env: &Env, client_ns: &Netns, workload: &Workload) -> Result<()> {
    run(Command::new("sync").arg(&env.disk))?;
    // Pages nobody has mapped are evicted when cold even without memory pressure on some
    // machines (this VM runs DAMON with a `pageout` scheme for unmapped page cache): read the
    // file through once, so that every point starts with all of it cached.
    run(Command::new("cat").arg(&env.disk).stdout(Stdio::null()))?;
    if workload.op != Op::Write {
        return Ok(());
    }
    let mut cmd = client_ns.exec_pinned(INITIATOR_CORE, &env.loadgen);
    cmd.args(["load", "-i", CLIENT_IF, "-t", "1.0", "--op", "write"])
        .args([
            "--pattern",
            "sequential",
            "--depth",
            "64",
            "--no-progress",
            "--json",
        ])
        .args(["--size", &REQUEST_SECTORS.to_string()])
        .args(["--bytes", &DISK_BYTES.to_string()])
        .stdout(Stdio::null());
    run(&mut cmd).context("dirtying the file before a write point")
}

/// Per workload, the sample with the median rate (a failed sample counts as the slowest).
fn medians(samples: &[Point], workloads: &[Workload]) -> Vec<Point> {
    workloads
        .iter()
        .filter_map(|workload| {
            let mut of: Vec<&Point> = samples.iter().filter(|p| p.workload == *workload).collect();
            of.sort_by(|a, b| {
                let rate = |p: &Point| p.load.as_ref().map_or(-1.0, |l| l.iops);
                rate(a).total_cmp(&rate(b))
            });
            of.get(of.len() / 2).map(|p| (*p).clone())
        })
        .collect()
}

/// A started (or failed) system and its own namespaces. Field order is drop order: the
/// daemon goes before its namespaces.
struct Live {
    run: SystemRun,
    daemon: Option<Daemon>,
    log: PathBuf,
    log_copy: PathBuf,
    client_ns: Netns,
    _target_ns: Netns,
}

impl Live {
    /// Resumes the system, measures `workload` on it (`profiled`: under `perf record`) and
    /// pauses it again; `None` for a system that is not running.
    fn turn(&mut self, env: &Env, workload: &Workload, profiled: bool) -> Result<Option<Point>> {
        let Some(daemon) = self.daemon.as_mut() else {
            return Ok(None);
        };
        if env.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        daemon.resume()?;
        let point = prepare(env, &self.client_ns, workload)
            .and_then(|()| measure_point(env, &self.client_ns, daemon, workload, profiled));
        daemon.pause()?;
        point.map(Some)
    }
}

/// Starts the `index`th system in fresh namespaces and pauses it. Errors only for an
/// interruption or a broken environment; a system that cannot run gets a status.
fn start_system(env: &Env, system: SystemKind, index: usize) -> Result<Live> {
    let id = std::process::id();
    // A system named twice gets two namespace pairs (and logs).
    let key = format!("{}-{index}", system.key());
    let target_ns = Netns::new(format!("aoebench-{id}-{key}-t"))?;
    let client_ns = Netns::new(format!("aoebench-{id}-{key}-c"))?;
    veth_pair(&target_ns, TARGET_IF, &client_ns, CLIENT_IF, MTU)?;
    let mut run = SystemRun {
        system,
        status: "ok".into(),
        notes: Vec::new(),
        points: Vec::new(),
        samples: Vec::new(),
        background_cores: 0.0,
    };
    let log = env.scratch.join(format!("{key}.log"));
    let log_copy = env.logs.join(format!("{key}.log"));
    let started = start(env, system, &target_ns, &client_ns, &log, &key);
    let _ = fs::copy(&log, &log_copy);
    let daemon = match started {
        Ok((mut daemon, notes)) => {
            run.notes = notes;
            daemon.pause()?;
            Some(daemon)
        }
        Err(error) => {
            let reason = summarize(&format!("{error:#}"));
            run.status = match system {
                SystemKind::Packet => format!("n/a: {reason}"),
                _ => format!("failed: {reason}"),
            };
            None
        }
    };
    Ok(Live {
        run,
        daemon,
        log,
        log_copy,
        client_ns,
        _target_ns: target_ns,
    })
}

impl Live {
    /// Stops the system; notes how it exited.
    fn finish(mut self) -> SystemRun {
        let Some(mut daemon) = self.daemon.take() else {
            return self.run;
        };
        let status = daemon.stop();
        let _ = fs::copy(&self.log, &self.log_copy);
        let (system, mut run) = (self.run.system, self.run);
        match (system, status) {
            (
                SystemKind::Xdp
                | SystemKind::XdpPoll
                | SystemKind::XdpResident
                | SystemKind::XdpDefaults
                | SystemKind::XdpNap
                | SystemKind::Packet
                | SystemKind::Baseline,
                Ok(s),
            ) if !s.success() => {
                run.notes
                    .push(format!("aoe-xdp exited with {s} at SIGTERM"));
            }
            (_, Err(error)) => run.notes.push(format!("{error:#}")),
            _ => {}
        }
        run
    }
}

/// The first line of an error, and its last line when there are several (a failed start
/// carries the target's log, whose last line usually says why).
fn summarize(text: &str) -> String {
    let first = first_line(text);
    match text.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some(last) if last != first => format!("{first} … {last}"),
        _ => first,
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// Starts the system pinned to the target core and waits until it answers; returns it with
/// the notes it logged about its transport.
fn start(
    env: &Env,
    system: SystemKind,
    target_ns: &Netns,
    client_ns: &Netns,
    log: &Path,
    key: &str,
) -> Result<(Daemon, Vec<String>)> {
    let mut daemon = match system {
        SystemKind::Xdp
        | SystemKind::XdpPoll
        | SystemKind::XdpResident
        | SystemKind::XdpDefaults
        | SystemKind::XdpNap
        | SystemKind::Packet
        | SystemKind::Baseline => {
            let config = write_config(env, system, key)?;
            let binary = match (system, &env.baseline) {
                (SystemKind::Baseline, Some(path)) => path,
                (SystemKind::Baseline, None) => bail!("--system baseline needs --baseline PATH"),
                _ => &env.aoe_xdp,
            };
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, binary);
            cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
            let mut daemon = Daemon::spawn("aoe-xdp", cmd, log)?;
            daemon.wait_for_log("serving", Duration::from_secs(15))?;
            daemon
        }
        SystemKind::Vblade => {
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, "vblade");
            cmd.args(["-b", &BUFFER_COUNT.to_string(), "1", "0", TARGET_IF])
                .arg(&env.disk);
            Daemon::spawn("vblade", cmd, log)?
        }
        SystemKind::Reflector => {
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, &env.loadgen);
            cmd.args(["reflect", "-i", TARGET_IF]);
            Daemon::spawn("aoe-bench reflect", cmd, log)?
        }
    };
    let notes = transport_notes(&daemon.log_text());
    if system == SystemKind::Packet {
        if let Some(reason) = packet_fallback_reason(&daemon.log_text()) {
            bail!("{reason}");
        }
    }
    wait_until_answering(env, client_ns, &mut daemon)?;
    Ok((daemon, notes))
}

/// Why an aoe-xdp started with `socket = "packet"` is not measuring AF_PACKET, from its log.
fn packet_fallback_reason(log: &str) -> Option<String> {
    let fell_back = log.contains("is not available yet")
        || log.contains("XDP program attached")
        || log.contains("AF_XDP socket ready");
    fell_back.then(|| {
        "socket = \"packet\" is not functional in this build (aoe-xdp served on AF_XDP \
         instead)"
            .to_owned()
    })
}

/// The log lines that say which transport and attach mode a target uses.
fn transport_notes(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains("XDP program attached")
                || l.contains("socket ready")
                || l.contains("AF_PACKET")
                || l.contains("synchronous I/O")
                || l.contains("resident:")
        })
        .map(|l| {
            // Drop the timestamp and level tracing puts first.
            let start = l.find("aoe_xdp").unwrap_or(0);
            l[start..].trim().to_owned()
        })
        .collect()
}

/// Polls with `aoe-bench discover` until the target answers (10 s at most).
fn wait_until_answering(env: &Env, client_ns: &Netns, daemon: &mut Daemon) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = client_ns
            .exec(&env.loadgen)
            .args(["discover", "-i", CLIENT_IF, "--wait-ms", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if answered {
            return Ok(());
        }
        if let Some(status) = daemon.exited()? {
            bail!(
                "exited with {status} before answering: {}",
                first_line(&daemon.log_text())
            );
        }
        if Instant::now() > deadline || env.stop.load(Ordering::Relaxed) {
            bail!("no answer to a broadcast Query Config within 10 s");
        }
    }
}

fn write_config(env: &Env, system: SystemKind, key: &str) -> Result<PathBuf> {
    let socket = if system == SystemKind::Packet {
        "packet"
    } else {
        "xdp"
    };
    let (idle, nap_us) = match system {
        SystemKind::XdpPoll => ("poll", 0),
        SystemKind::XdpNap => ("poll", NAP_US),
        _ => ("spin", 0),
    };
    let resident = system == SystemKind::XdpResident;
    // Every configuration copies to and from the page cache through mappings (the data lives
    // there), but the one that shows the defaults; resident reads through its own.
    let mapped = system != SystemKind::XdpDefaults;
    let durability = if mapped { "writeback" } else { "sync" };
    let mapped_reads = mapped && !resident;
    let dir = env.scratch.display();
    let text = format!(
        "[target]\n\
         interfaces = [\"{TARGET_IF}\"]\n\
         worker-cores = [{TARGET_CORE}]\n\
         idle = \"{idle}\"\n\
         idle-nap-us = {nap_us}\n\
         socket = \"{socket}\"\n\
         state-directory = \"{dir}/state-{key}\"\n\
         control-socket = \"{dir}/ctl-{key}.sock\"\n\
         log-level = \"info\"\n\n\
         [[device]]\n\
         name = \"bench\"\n\
         path = \"{disk}\"\n\
         shelf = 1\n\
         slot = 0\n\
         durability = \"{durability}\"\n\
         mapped-writes = {mapped}\n\
         mapped-reads = {mapped_reads}\n\
         resident = {resident}\n\
         queue-length = {BUFFER_COUNT}\n",
        disk = env.disk.display()
    );
    let path = env.scratch.join(format!("{key}.toml"));
    fs::write(&path, text)?;
    Ok(path)
}

/// Runs the load generator once against the running target; a failing run becomes a point
/// with an error, not an error of the bench.
fn measure_point(
    env: &Env,
    client_ns: &Netns,
    target: &mut Daemon,
    workload: &Workload,
    profiled: bool,
) -> Result<Point> {
    let mut point = Point {
        workload: *workload,
        load: None,
        cpu: None,
        error: None,
        profile: None,
        cached: None,
    };
    let stdout = env.scratch.join("load.json");
    let log = env.scratch.join("load.log");
    let mut cmd = client_ns.exec_pinned(INITIATOR_CORE, &env.loadgen);
    cmd.args(["load", "-i", CLIENT_IF, "-t", "1.0"]).args([
        "--op",
        match workload.op {
            Op::Read => "read",
            Op::Write => "write",
        },
        "--pattern",
        match workload.pattern {
            Pattern::Random => "random",
            Pattern::Sequential => "sequential",
        },
        "--size",
        &REQUEST_SECTORS.to_string(),
        "--depth",
        &workload.depth.to_string(),
        "--duration",
        &env.seconds.to_string(),
        "--warmup",
        &env.warmup.to_string(),
        "--json",
        "--no-progress",
    ]);
    if let Some(rate) = workload.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let started = Instant::now();
    let mut load = Daemon::spawn_split("aoe-bench load", cmd, &stdout, &log)?;
    // The CPU window opens once the warm-up is under way and closes when the load ends;
    // utilisation over it, divided by the measured rate, is the cost per request.
    let window_start = started + Duration::from_secs(env.warmup.into()) + CPU_WINDOW_DELAY;
    let deadline = window_start + Duration::from_secs(u64::from(env.seconds) + 30);
    let mut first: Option<(u64, Instant)> = None;
    let mut perf = None;
    let mut recording = None;
    let status = loop {
        if let Some(status) = load.exited()? {
            break status;
        }
        let now = Instant::now();
        if first.is_none() && now >= window_start {
            first = Some((cpu_ticks(target.pid())?, now));
            if env.perf {
                perf = Some(start_perf(env, target.pid())?);
            }
            if profiled {
                let seconds = f64::from(env.seconds) - 0.5;
                recording = Some(profile::start(
                    &env.scratch,
                    target.pid(),
                    seconds,
                    INITIATOR_CORE,
                )?);
            }
        }
        if env.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if now > deadline {
            load.stop()?;
            point.error = Some("load generator did not finish in time".into());
            return Ok(point);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let last = (cpu_ticks(target.pid())?, Instant::now());
    point.profile = recording.and_then(profile::finish);
    point.cached = cached_share(&env.disk);
    if !status.success() {
        point.error = Some(format!(
            "aoe-bench load exited with {status}: {}",
            last_line(&load.log_text())
        ));
        return Ok(point);
    }
    let text = fs::read_to_string(&stdout)?;
    let result: LoadResult = match serde_json::from_str(&text) {
        Ok(result) => result,
        Err(error) => {
            point.error = Some(format!("unreadable load report ({error}): {}", text.trim()));
            return Ok(point);
        }
    };
    if let Some((ticks, at)) = first {
        let instructions = perf.and_then(finish_perf);
        point.cpu = Some(cpu_sample(
            (ticks, at),
            last,
            env.clk_tck,
            result.iops,
            instructions,
        ));
    }
    if let Some(status) = target.exited()? {
        point.error = Some(format!("the target exited with {status}"));
    }
    point.load = Some(result);
    Ok(point)
}

/// Share of `path` in the page cache (`fincore`), or `None` when it cannot be read.
fn cached_share(path: &Path) -> Option<f64> {
    let text = output(
        Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES,SIZE"])
            .arg(path),
    )
    .ok()?;
    parse_fincore(&text)
}

/// "RES SIZE" in bytes → RES / SIZE.
fn parse_fincore(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (resident, size) = (fields.next()??, fields.next()??);
    (size > 0).then(|| resident as f64 / size as f64)
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or("").trim().to_owned()
}

/// CPU cost from two samples of (ticks, time) and the measured request rate.
fn cpu_sample(
    first: (u64, Instant),
    last: (u64, Instant),
    clk_tck: u64,
    iops: f64,
    instructions: Option<(u64, f64)>,
) -> CpuSample {
    let cpu_s = last.0.saturating_sub(first.0) as f64 / clk_tck as f64;
    let wall_s = last.1.duration_since(first.1).as_secs_f64().max(1e-6);
    let utilisation = cpu_s / wall_s;
    let per_second = iops.max(1e-9);
    CpuSample {
        cpu_s,
        wall_s,
        utilisation,
        us_per_request: utilisation / per_second * 1e6,
        instructions_per_request: instructions
            .map(|(count, seconds)| count as f64 / (per_second * seconds.max(1e-6))),
    }
}

/// Cores busy (all but idle and iowait time in `/proc/stat`) on average over `period`.
fn background_cores(period: Duration) -> Result<f64> {
    let sample = || -> Result<(u64, u64)> {
        let stat = fs::read_to_string("/proc/stat")?;
        parse_cpu_line(&stat).context("unexpected /proc/stat")
    };
    let (busy0, total0) = sample()?;
    std::thread::sleep(period);
    let (busy1, total1) = sample()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = total1.saturating_sub(total0).max(1) as f64;
    Ok(busy1.saturating_sub(busy0) as f64 / total * cpus as f64)
}

/// (busy, total) ticks of the `cpu` line of `/proc/stat`: user nice system idle iowait irq
/// softirq steal (guest time is already inside user).
fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    if ticks.len() < 8 {
        return None;
    }
    let total: u64 = ticks.iter().sum();
    let idle = ticks[3] + ticks[4];
    Some((total - idle, total))
}

/// utime + stime of process `pid`, in clock ticks (all its threads, dead ones included).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_ticks(&stat).with_context(|| format!("unexpected {path}: {stat}"))
}

/// utime (field 14) + stime (field 15) of a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last ')'.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// True when `perf stat -e instructions` counts (it is `<not supported>` on many VMs).
fn perf_instructions_supported() -> bool {
    Command::new("perf")
        .args(["stat", "-x,", "-e", "instructions", "true"])
        .output()
        .is_ok_and(|o| parse_perf_count(&String::from_utf8_lossy(&o.stderr)).is_some())
}

/// The instruction count in `perf stat -x,` output, if it was counted.
fn parse_perf_count(csv: &str) -> Option<u64> {
    csv.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(',').collect();
        let event = fields.get(2)?;
        if event.starts_with("instructions") {
            fields.first()?.trim().parse().ok()
        } else {
            None
        }
    })
}

/// `perf stat` attached to the target for about the measurement window.
struct PerfRun {
    daemon: Daemon,
    started: Instant,
}

fn start_perf(env: &Env, pid: u32) -> Result<PerfRun> {
    let seconds = f64::from(env.seconds) - 0.5;
    let mut cmd = Command::new("perf");
    cmd.args(["stat", "-x,", "-e", "instructions", "-p", &pid.to_string()])
        .args(["--", "sleep", &format!("{:.2}", seconds.max(0.3))]);
    let daemon = Daemon::spawn("perf stat", cmd, &env.scratch.join("perf.log"))?;
    Ok(PerfRun {
        daemon,
        started: Instant::now(),
    })
}

/// Waits for `perf stat` and returns (instructions, seconds counted).
fn finish_perf(mut perf: PerfRun) -> Option<(u64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while perf.daemon.exited().ok()?.is_none() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let seconds = perf.started.elapsed().as_secs_f64();
    parse_perf_count(&perf.daemon.log_text()).map(|count| (count, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fincore_output_is_the_cached_share() {
        assert_eq!(parse_fincore("268435456 268435456\n"), Some(1.0));
        assert_eq!(parse_fincore("67108864 268435456"), Some(0.25));
        assert_eq!(parse_fincore("0 0"), None);
        assert_eq!(parse_fincore("fincore: cannot open"), None);
    }

    #[test]
    fn stat_ticks_are_utime_plus_stime_even_with_odd_names() {
        let stat = "4242 (aoe (x) bench) S 1 4242 4242 0 -1 4194560 150 0 0 0 \
                    731 269 0 0 20 0 2 0 1000 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(731 + 269));
        assert_eq!(parse_stat_ticks("4242 (short) S 1 2"), None);
    }

    #[test]
    fn machine_load_counts_everything_but_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(parse_cpu_line(stat), Some((160, 1000)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3\n"), None);
    }

    #[test]
    fn perf_counts_are_read_and_unsupported_counters_are_not() {
        assert_eq!(
            parse_perf_count("<not supported>,,instructions,0,100.00,,\n"),
            None
        );
        assert_eq!(
            parse_perf_count("12345678,,instructions:u,1000,100.00,,\n"),
            Some(12_345_678)
        );
    }

    #[test]
    fn cpu_cost_is_utilisation_over_rate() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        // 100 ticks of 10 ms over 2 s: half a core; at 50 000 IOPS that is 10 µs a request.
        let sample = cpu_sample(
            (1000, t0),
            (1100, t1),
            100,
            50_000.0,
            Some((4_000_000, 2.0)),
        );
        assert!((sample.utilisation - 0.5).abs() < 1e-9);
        assert!((sample.us_per_request - 10.0).abs() < 1e-6);
        assert_eq!(sample.instructions_per_request, Some(40.0));
    }

    #[test]
    fn workload_filter_keeps_the_points_with_a_matching_label() {
        let all = workloads(false);
        let reads = selected(all.clone(), &["rand read QD6".into(), "seq write".into()]).unwrap();
        let labels: Vec<String> = reads.iter().map(Workload::label).collect();
        assert_eq!(
            labels,
            ["rand read QD64", "seq write QD16", "seq write QD64"]
        );
        assert_eq!(selected(all.clone(), &[]).unwrap(), all);
        let err = selected(all, &["mixed".into()]).unwrap_err().to_string();
        assert!(err.contains("rand read QD1,"), "{err}");
    }

    #[test]
    fn quick_runs_depth_16_only_and_reads_come_first() {
        let quick = workloads(true);
        assert_eq!(quick.len(), 4);
        assert!(quick.iter().all(|w| w.depth == 16));
        assert!(quick.iter().all(|w| w.rate.is_none()));
        let full = workloads(false);
        assert_eq!(full.len(), 10);
        assert_eq!(full[0], Workload::new(Op::Read, Pattern::Random, 1));
        let first_write = full.iter().position(|w| w.op == Op::Write).unwrap();
        assert!(full[first_write..].iter().all(|w| w.op == Op::Write));
        assert_eq!(
            full[1].label(),
            format!("rand read QD16 @{}k/s", FIXED_RATE / 1000)
        );
        assert_eq!(full[2].label(), "rand read QD16");
        assert_eq!(full[9].label(), "seq write QD64");
    }

    #[test]
    fn failed_starts_keep_the_last_log_line() {
        let error =
            "aoe-xdp exited with exit status: 1 before it was ready:\nline\nerror: no such key\n\n";
        assert_eq!(
            summarize(error),
            "aoe-xdp exited with exit status: 1 before it was ready: … error: no such key"
        );
        assert_eq!(summarize("just one line"), "just one line");
    }

    #[test]
    fn packet_rows_notice_a_fallback_to_af_xdp() {
        let fallback =
            "WARN aoe_xdp::dataplane: socket = \"packet\" is not available yet; using AF_XDP";
        assert!(packet_fallback_reason(fallback).is_some());
        assert!(packet_fallback_reason("INFO aoe_xdp: AF_PACKET socket ready\nserving").is_none());
    }
}

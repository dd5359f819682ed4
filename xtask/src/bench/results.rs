//! What a run produced (`target/bench/results.json`): per system, its points and the CPU
//! they cost; and the choice of the round shown for each point.

use serde::{Deserialize, Serialize};

use super::profile::Profile;
use super::rig::Topology;
use super::system::SystemKind;
use super::workload::Workload;
use crate::loadgen::Report as LoadReport;

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
    /// The target core's busy share over the window (`/proc/stat`: everything but idle,
    /// iowait and steal, whoever ran: the target, NAPI threads, softirqs; results before
    /// 2026-12-06T16Z counted steal as busy). Absent in older results.
    #[serde(default)]
    pub core_utilisation: Option<f64>,
    /// Microseconds of the target core per request (`core_utilisation / iops`).
    #[serde(default)]
    pub core_us_per_request: Option<f64>,
    /// Share of the window the host took from the target's core (its `steal` ticks): the
    /// VM's neighbours, not the system measured. Absent in older results.
    #[serde(default)]
    pub core_steal: Option<f64>,
    /// The same for the initiator's core.
    #[serde(default)]
    pub initiator_steal: Option<f64>,
    /// Major page faults the target's processes took in the window: each waited for a page
    /// of theirs (code, or a mapped file) to be read back from disk. Absent in older results.
    #[serde(default)]
    pub major_faults: Option<u64>,
}

impl CpuSample {
    /// The CPU per request the report leads with: the whole target core's, or the target
    /// processes' own where the core was not measured (older results).
    pub fn lead_us_per_request(&self) -> f64 {
        self.core_us_per_request.unwrap_or(self.us_per_request)
    }
}

/// Share of a core's demand the host may deny during a point before it is measured again.
pub(super) const REMEASURE_STEAL: f64 = 0.10;
/// Most times one point is measured again; the last measurement counts whatever its steal.
pub(super) const REMEASURE_MAX: u32 = 2;

/// One measured point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// What was run.
    pub workload: Workload,
    /// The load generator's report, when it produced one.
    pub load: Option<LoadReport>,
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
    /// The NAPI threads of the two-machine rig over the window (none on the plain rig).
    #[serde(default)]
    pub napi: Vec<NapiSample>,
}

impl Point {
    /// How much of what the cores asked for the host denied during the point: the larger of
    /// the initiator core's steal (the load generator never sleeps, so its steal is the share
    /// of the time the host took) and the target core's steal over its busy time plus steal (a
    /// target that sleeps asks for less, and would otherwise look less disturbed).
    pub fn host_denied(&self) -> Option<f64> {
        let cpu = self.cpu.as_ref()?;
        let initiator = cpu.initiator_steal?;
        let target = cpu.core_steal?;
        let asked = cpu.core_utilisation? + target;
        Some(initiator.max(if asked > 0.0 { target / asked } else { 0.0 }))
    }
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
    /// Points measured again because the host denied the cores more than 10 % of what they
    /// asked for (their steal); only the last measurement is kept.
    #[serde(default)]
    pub remeasured: u32,
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
    /// How the two sides share the machine (older results: the plain rig).
    #[serde(default)]
    pub topology: Topology,
    /// `--napi-fifo`: the NAPI threads ran at SCHED_FIFO 1.
    #[serde(default)]
    pub napi_fifo: bool,
    /// The VM's idle vCPUs polled this long (ns) before they halted (`guest_halt_poll_ns`,
    /// set for the run), and what the machine had; `None`: the machine's own setting
    /// (older results: 0 on the VMs they came from).
    #[serde(default)]
    pub halt_poll_ns: Option<(u64, u64)>,
    /// The load generator and the AF_XDP reflector yielded their core after a round that
    /// found nothing (older results: they spun without yielding).
    #[serde(default)]
    pub yielding_pollers: bool,
    /// aoe-xdp's polling workers and the AF_XDP reflector waited for frames in an io_uring
    /// that busy-polls the target end's NAPI after 5 µs of polling their rings (older
    /// results: they polled their rings only).
    #[serde(default)]
    pub napi_wait: bool,
    /// aoe-xdp's AF_PACKET mode waited so too (older results: only AF_XDP did).
    #[serde(default)]
    pub packet_napi_wait: bool,
    /// aoe-xdp's systems ran with the default idle mode (`idle = "poll"`, a 50 µs spin) and
    /// the `xdp-spin` system with `idle = "spin"` (older results: every system but
    /// `xdp-poll` and `xdp-nap` spun).
    #[serde(default)]
    pub poll_default: bool,
    /// veth pairs (NICs) between target and initiator.
    #[serde(default = "one")]
    pub nics: u32,
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
    ) -> Option<(&LoadReport, Option<&CpuSample>)> {
        let point = self
            .ok_run(system)?
            .points
            .iter()
            .find(|p| p.workload == *workload)?;
        Some((point.load.as_ref()?, point.cpu.as_ref()))
    }

    /// `value` of `system`'s point at `workload` in every round, in run order (`None`: that
    /// round produced no such value).
    pub fn round_values(
        &self,
        system: SystemKind,
        workload: &Workload,
        value: impl Fn(&Point) -> Option<f64>,
    ) -> Vec<Option<f64>> {
        self.ok_run(system).map_or_else(Vec::new, |run| {
            run.samples
                .iter()
                .filter(|p| p.workload == *workload)
                .map(value)
                .collect()
        })
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

/// Per workload, the sample with the median rate (a failed sample counts as the slowest).
pub(super) fn medians(samples: &[Point], workloads: &[Workload]) -> Vec<Point> {
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

/// One NAPI thread over a point's measurement window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NapiSample {
    /// The thread's name (`napi/IF-ID`).
    pub name: String,
    /// The core it is meant to run on.
    pub core: u32,
    /// The CPUs it may run on (`Cpus_allowed_list` of `/proc/PID/status`).
    pub allowed: String,
    /// The CPU it last ran on (field 39 of `/proc/PID/stat`).
    pub last_cpu: Option<u32>,
    /// Its CPU time over the window, as a share of one core.
    pub utilisation: f64,
}

impl NapiSample {
    /// True when the thread may run on its own side's core only.
    pub fn pinned(&self) -> bool {
        self.allowed == self.core.to_string() && self.last_cpu.is_none_or(|c| c == self.core)
    }
}

#[cfg(test)]
mod tests {
    use super::{CpuSample, Point};
    use crate::bench::workload::{Op, Pattern, Workload};

    fn point(core_utilisation: f64, core_steal: f64, initiator_steal: f64) -> Point {
        Point {
            workload: Workload {
                op: Op::Read,
                pattern: Pattern::Random,
                depth: 16,
                rate: None,
            },
            load: None,
            cpu: Some(CpuSample {
                cpu_s: 1.0,
                wall_s: 1.0,
                utilisation: 0.5,
                us_per_request: 1.0,
                instructions_per_request: None,
                core_utilisation: Some(core_utilisation),
                core_us_per_request: Some(1.0),
                core_steal: Some(core_steal),
                initiator_steal: Some(initiator_steal),
                major_faults: Some(0),
            }),
            error: None,
            profile: None,
            cached: None,
            napi: Vec::new(),
        }
    }

    #[test]
    fn a_point_is_measured_again_when_the_host_denied_a_core_much_of_its_demand() {
        let denied = |p: &Point| p.host_denied().unwrap();
        // A target busy 45 % of the time that lost 5 % to the host was denied 10 % of its
        // demand; the initiator (never asleep) 3 %.
        assert!((denied(&point(0.45, 0.05, 0.03)) - 0.10).abs() < 1e-9);
        // The initiator's steal counts as it is.
        assert!((denied(&point(0.9, 0.0, 0.2)) - 0.2).abs() < 1e-9);
        // An idle target with no steal: nothing denied.
        assert_eq!(denied(&point(0.0, 0.0, 0.0)), 0.0);
        // Older results: no steal figures, no verdict.
        let mut old = point(0.5, 0.0, 0.0);
        old.cpu.as_mut().unwrap().core_steal = None;
        assert_eq!(old.host_denied(), None);
    }
}

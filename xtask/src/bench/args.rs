//! The command line of `cargo xtask bench`.

use std::path::PathBuf;

use super::rig::Topology;
use super::system::SystemKind;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Seconds measured per point, after the warm-up.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub seconds: u32,
    /// Times every point is measured on every system; each row shows the round with the
    /// median rate (all rounds are kept in results.json).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Warm-up seconds before each point.
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Do not sample the target with `perf record` (by default every point is profiled to
    /// show where the target's CPU goes).
    #[arg(long)]
    pub no_profile: bool,
    /// Smoke run: 1 s per point, queue depth 16 only.
    #[arg(long, conflicts_with = "seconds")]
    pub quick: bool,
    /// Replace README.md's performance section (between the bench markers) with the summary.
    #[arg(long)]
    pub update_readme: bool,
    /// Measure nothing: render the table, plot and summary again from target/bench/results.json.
    #[arg(long)]
    pub from_results: bool,
    /// The aoe-bench binary used as load generator and reflector [default: the release build].
    #[arg(long, value_name = "PATH")]
    pub loadgen: Option<PathBuf>,
    /// Measure only the points whose label starts with this (repeatable), e.g. `--workload
    /// "rand read"` or `--workload "seq write QD64"` [default: every point].
    #[arg(long = "workload", value_name = "LABEL")]
    pub workloads: Vec<String>,
    /// Run only these systems (repeatable) [default: all but `baseline`].
    #[arg(long = "system", value_enum)]
    pub systems: Vec<SystemKind>,
    /// An aoe-xdp binary (e.g. a build of the previous commit) measured as system `baseline`
    /// with the same configuration as `xdp`: an A/B comparison within one run.
    #[arg(long, value_name = "PATH")]
    pub baseline: Option<PathBuf>,
    /// How target and initiator share the machine: `two-machine` (each side's receive path in
    /// NAPI threads pinned to its own core: as between two machines) or `plain` (one veth
    /// pair as it comes: a send runs the peer's receive path in the sender's call).
    #[arg(long, value_enum, default_value_t = Topology::TwoMachine)]
    pub topology: Topology,
    /// Two-machine topology: run the NAPI threads at SCHED_FIFO priority 1, so that receive
    /// work preempts a spinning thread on its core at once, as receive in softirq context does
    /// on a machine with a NIC (by default they compete under the fair scheduler).
    #[arg(long)]
    pub napi_fifo: bool,
    /// In a KVM guest that idles through the haltpoll cpuidle driver: an idle vCPU polls
    /// this long before it halts, for the run (`guest_halt_poll_ns`, put back after), so that
    /// a system whose core idles between frames (vblade) is woken by a flag rather than by an
    /// IPI the host must deliver to a halted vCPU: as on a machine whose idle cores sleep
    /// lightly. 0: the machine's own setting.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub halt_poll_us: u32,
    /// veth pairs between target and initiator: one target serves them all, `aoe-bench load`
    /// spreads over all of them (vblade and the reflectors run one process per interface),
    /// on the same two cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
    pub nics: u32,
    /// Link MTU: 1500 (2 sectors per request) or 9000 (jumbo frames: 17 sectors).
    #[arg(long, default_value = "1500", value_parser = mtu_parser())]
    pub mtu: u16,
    /// Measure only sequential reads and writes through the Linux kernel's `aoe` driver in a
    /// QEMU guest, aoe-xdp against vblade (see bench/kernel.rs; a few minutes), and print a
    /// table; every other option is ignored.
    #[arg(long)]
    pub kernel_initiator: bool,
}

/// `--mtu`: one of the two MTUs the bench knows.
fn mtu_parser() -> impl clap::builder::TypedValueParser<Value = u16> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["1500", "9000"])
        .map(|mtu| mtu.parse::<u16>().expect("a listed value"))
}

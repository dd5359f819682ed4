//! The command line of `cargo xtask bench`.

use std::path::PathBuf;

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
    /// Measure only sequential reads and writes through the Linux kernel's `aoe` driver in a
    /// QEMU guest, aoe-xdp against vblade (see bench/kernel.rs; a few minutes), and print a
    /// table; every other option is ignored.
    #[arg(long)]
    pub kernel_initiator: bool,
}

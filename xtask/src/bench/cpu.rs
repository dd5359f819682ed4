//! What the target's CPU did: its core's busy time from `/proc/stat`, its processes' utime +
//! stime from `/proc/PID/stat`, instructions from `perf stat`, and the machine's other load.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::results::CpuSample;
use crate::netns::Daemon;

/// Clock ticks the target used up to an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ticks {
    /// utime + stime of the target's processes.
    pub process: u64,
    /// Busy ticks of the target's core, whoever ran there (the target, NAPI threads,
    /// softirqs, interrupts); not the host's steal.
    pub core: u64,
    /// Ticks the host took from the target's core (`steal` of its `/proc/stat` line: the
    /// vCPU wanted to run and the host ran something else).
    pub core_steal: u64,
    /// The same for the initiator's core.
    pub initiator_steal: u64,
    /// Major page faults of the target's processes (a page of theirs read back from disk).
    pub major_faults: u64,
}

/// CPU cost from two samples of (ticks, time) and the measured request rate.
pub(super) fn cpu_sample(
    first: (Ticks, Instant),
    last: (Ticks, Instant),
    clk_tck: u64,
    iops: f64,
    instructions: Option<(u64, f64)>,
) -> CpuSample {
    let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / clk_tck as f64;
    let cpu_s = seconds(first.0.process, last.0.process);
    let core_s = seconds(first.0.core, last.0.core);
    let wall_s = last.1.duration_since(first.1).as_secs_f64().max(1e-6);
    let utilisation = cpu_s / wall_s;
    let core_utilisation = core_s / wall_s;
    let steal = |from: u64, to: u64| seconds(from, to) / wall_s;
    let per_second = iops.max(1e-9);
    CpuSample {
        cpu_s,
        wall_s,
        utilisation,
        us_per_request: utilisation / per_second * 1e6,
        instructions_per_request: instructions
            .map(|(count, seconds)| count as f64 / (per_second * seconds.max(1e-6))),
        core_utilisation: Some(core_utilisation),
        core_us_per_request: Some(core_utilisation / per_second * 1e6),
        core_steal: Some(steal(first.0.core_steal, last.0.core_steal)),
        initiator_steal: Some(steal(first.0.initiator_steal, last.0.initiator_steal)),
        major_faults: Some(last.0.major_faults.saturating_sub(first.0.major_faults)),
    }
}

/// Ticks of one line of `/proc/stat` (user nice system idle iowait irq softirq steal; guest
/// time is already inside user).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StatTicks {
    /// Everything but idle, iowait and steal: work done on the CPU, whoever did it.
    pub busy: u64,
    /// What the host took: the vCPU was runnable and the host ran something else (a VM's
    /// neighbours). Not work of ours, and not time anything of ours could use.
    pub steal: u64,
    /// All eight fields.
    pub total: u64,
}

/// The ticks of CPU `core` (its `cpuN` line of `/proc/stat`).
pub(super) fn core_ticks(core: u32) -> Result<StatTicks> {
    let stat = fs::read_to_string("/proc/stat")?;
    parse_core_line(&stat, core).with_context(|| format!("no cpu{core} line in /proc/stat"))
}

/// The machine over `period`: (cores busy on average, share of all CPU time the host stole).
pub(super) fn background_cores(period: Duration) -> Result<(f64, f64)> {
    let sample = || -> Result<StatTicks> {
        let stat = fs::read_to_string("/proc/stat")?;
        parse_cpu_line(&stat).context("unexpected /proc/stat")
    };
    let first = sample()?;
    std::thread::sleep(period);
    let last = sample()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = last.total.saturating_sub(first.total).max(1) as f64;
    let share = |from: u64, to: u64| to.saturating_sub(from) as f64 / total;
    Ok((
        share(first.busy, last.busy) * cpus as f64,
        share(first.steal, last.steal),
    ))
}

/// The ticks of the `cpu` line of `/proc/stat` (all CPUs).
pub(super) fn parse_cpu_line(stat: &str) -> Option<StatTicks> {
    parse_line(stat, "cpu ")
}

/// The ticks of the `cpuN` line of `/proc/stat`.
pub(super) fn parse_core_line(stat: &str, core: u32) -> Option<StatTicks> {
    parse_line(stat, &format!("cpu{core} "))
}

/// The ticks of the line of `/proc/stat` that starts with `prefix`.
fn parse_line(stat: &str, prefix: &str) -> Option<StatTicks> {
    let line = stat.lines().find(|l| l.starts_with(prefix))?;
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
    let (idle, steal) = (ticks[3] + ticks[4], ticks[7]);
    Some(StatTicks {
        busy: total - idle - steal,
        steal,
        total,
    })
}

/// (utime + stime in clock ticks, major page faults) of process `pid` (all its threads, dead
/// ones included).
pub(super) fn process_ticks(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_ticks(&stat)
        .zip(parse_major_faults(&stat))
        .with_context(|| format!("unexpected {path}: {stat}"))
}

/// utime (field 14) + stime (field 15) of a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last ')'.
pub(super) fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// majflt (field 12) of a `/proc/PID/stat` line.
pub(super) fn parse_major_faults(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(9)?.parse().ok()
}

/// True when `perf stat -e instructions` counts (it is `<not supported>` on many VMs).
pub(super) fn perf_instructions_supported() -> bool {
    Command::new("perf")
        .args(["stat", "-x,", "-e", "instructions", "true"])
        .output()
        .is_ok_and(|o| parse_perf_count(&String::from_utf8_lossy(&o.stderr)).is_some())
}

/// The instruction count in `perf stat -x,` output, if it was counted.
pub(super) fn parse_perf_count(csv: &str) -> Option<u64> {
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
pub(super) struct PerfRun {
    daemon: Daemon,
    started: Instant,
}

/// Starts `perf stat` on `pid` for about `seconds` of measurement; its log goes to `scratch`.
pub(super) fn start_perf(scratch: &Path, seconds: u32, pid: u32) -> Result<PerfRun> {
    let seconds = f64::from(seconds) - 0.5;
    let mut cmd = Command::new("perf");
    cmd.args(["stat", "-x,", "-e", "instructions", "-p", &pid.to_string()])
        .args(["--", "sleep", &format!("{:.2}", seconds.max(0.3))]);
    let daemon = Daemon::spawn("perf stat", cmd, &scratch.join("perf.log"))?;
    Ok(PerfRun {
        daemon,
        started: Instant::now(),
    })
}

/// Waits for `perf stat` and returns (instructions, seconds counted).
pub(super) fn finish_perf(mut perf: PerfRun) -> Option<(u64, f64)> {
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
    fn stat_ticks_are_utime_plus_stime_even_with_odd_names() {
        let stat = "4242 (aoe (x) bench) S 1 4242 4242 0 -1 4194560 150 0 0 0 \
                    731 269 0 0 20 0 2 0 1000 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(731 + 269));
        assert_eq!(parse_stat_ticks("4242 (short) S 1 2"), None);
        assert_eq!(parse_major_faults(stat), Some(0));
        let faulted = "7 (w) S 1 7 7 0 -1 4194560 150 0 37 0 731 269 0 0 20 0 2 0 1000 0 0";
        assert_eq!(parse_major_faults(faulted), Some(37));
        assert_eq!(parse_major_faults("4242 (short) S 1 2"), None);
    }

    #[test]
    fn busy_time_is_everything_but_idle_iowait_and_the_hosts_steal() {
        let stat = "cpu  100 5 50 800 40 3 2 30 0 0\ncpu0 50 2 25 400 20 1 1 7 0 0\n";
        let ticks = |busy, steal, total| Some(StatTicks { busy, steal, total });
        assert_eq!(parse_cpu_line(stat), ticks(160, 30, 1030));
        assert_eq!(parse_cpu_line("cpu0 1 2 3\n"), None);
        assert_eq!(parse_core_line(stat, 0), ticks(79, 7, 506));
        assert_eq!(parse_core_line(stat, 1), None);
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
        // The core was busy 160 ticks: 16 µs a request. The host took 20 ticks of it (10 %)
        // and 50 of the initiator's core (25 %).
        let ticks = |process, core, core_steal, initiator_steal, major_faults| Ticks {
            process,
            core,
            core_steal,
            initiator_steal,
            major_faults,
        };
        let sample = cpu_sample(
            (ticks(1000, 5000, 300, 700, 4), t0),
            (ticks(1100, 5160, 320, 750, 9), t1),
            100,
            50_000.0,
            Some((4_000_000, 2.0)),
        );
        assert!((sample.utilisation - 0.5).abs() < 1e-9);
        assert!((sample.us_per_request - 10.0).abs() < 1e-6);
        assert_eq!(sample.instructions_per_request, Some(40.0));
        assert!((sample.core_us_per_request.unwrap() - 16.0).abs() < 1e-6);
        assert!((sample.core_utilisation.unwrap() - 0.8).abs() < 1e-9);
        assert!((sample.core_steal.unwrap() - 0.1).abs() < 1e-9);
        assert!((sample.initiator_steal.unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(sample.major_faults, Some(5));
    }
}

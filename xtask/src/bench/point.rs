//! One point on one running system: the page cache brought to its starting state, the load
//! generator run, the target's CPU sampled over the measurement window.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cpu::{core_ticks, cpu_sample, finish_perf, process_ticks, start_perf, Ticks};
use super::napi::{self, NapiThread};
use super::profile;
use super::results::Point;
use super::rig::{Env, Link, DISK_BYTES, INITIATOR_CORE, TARGET_CORE};
use super::workload::{Op, Workload};
use crate::loadgen::{self, Report as LoadReport};
use crate::netns::{Daemon, Netns};
use crate::util::{output, run};

/// A running system as a point sees it: where the initiator runs, the interfaces, the
/// target's processes and the NAPI threads of the two-machine rig (none on the plain one).
pub(super) struct Target<'a> {
    pub client_ns: &'a Netns,
    pub link: &'a Link,
    pub daemons: &'a mut [Daemon],
    pub napi: &'a [NapiThread],
}

impl Target<'_> {
    /// `aoe-bench load` from every initiator interface (one path each).
    fn load<'c>(
        &self,
        cmd: &'c mut std::process::Command,
        op: &str,
        depth: u32,
    ) -> &'c mut std::process::Command {
        let interfaces: Vec<&str> = self.link.client.iter().map(String::as_str).collect();
        let sectors = self.link.request_sectors().into();
        loadgen::load(cmd, &interfaces, "1.0", op, depth, sectors)
    }

    /// utime + stime of every target process, and the target core's busy time.
    fn ticks(&self) -> Result<Ticks> {
        let (mut process, mut major_faults) = (0, 0);
        for daemon in self.daemons.iter() {
            let (ticks, faults) = process_ticks(daemon.pid())?;
            process += ticks;
            major_faults += faults;
        }
        let core = core_ticks(TARGET_CORE)?;
        Ok(Ticks {
            process,
            core: core.busy,
            core_steal: core.steal,
            initiator_steal: core_ticks(INITIATOR_CORE)?.steal,
            major_faults,
        })
    }
}

/// Where the CPU window starts after the warm-up began, to let the load settle.
const CPU_WINDOW_DELAY: Duration = Duration::from_millis(250);

/// Brings the page cache to the state a point starts from: the whole file cached; another
/// system's writes are synced first (so that no write-back runs during this point); a write point then starts
/// with every page of the file dirty, written once sequentially through the system itself —
/// the steady state of a target that takes writes (the kernel writes a dirty page back 30 s
/// after it was dirtied, and the first write to a page after that costs more: the ext4
/// write path, or a write fault for a resident device).
pub(super) fn prepare(env: &Env, target: &Target, workload: &Workload) -> Result<()> {
    run(Command::new("sync").arg(&env.disk))?;
    // Pages nobody has mapped are evicted when cold even without memory pressure on some
    // machines (this VM runs DAMON with a `pageout` scheme for unmapped page cache): read the
    // file through once, so that every point starts with all of it cached.
    run(Command::new("cat").arg(&env.disk).stdout(Stdio::null()))?;
    if workload.op != Op::Write {
        return Ok(());
    }
    let mut cmd = target.client_ns.exec_pinned(INITIATOR_CORE, &env.loadgen);
    target
        .load(&mut cmd, "write", 64)
        .args(["--pattern", "sequential"])
        .args(["--bytes", &DISK_BYTES.to_string()])
        .stdout(Stdio::null());
    run(&mut cmd).context("dirtying the file before a write point")
}

/// Runs the load generator once against the running target; a failing run becomes a point
/// with an error, not an error of the bench.
pub(super) fn measure_point(
    env: &Env,
    target: &mut Target,
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
        napi: Vec::new(),
    };
    let pid = target.daemons[0].pid();
    let stdout = env.scratch.join("load.json");
    let log = env.scratch.join("load.log");
    let (op, depth) = (workload.op.name(), workload.depth);
    let mut cmd = target.client_ns.exec_pinned(INITIATOR_CORE, &env.loadgen);
    target
        .load(&mut cmd, op, depth)
        .args(["--pattern", workload.pattern.name()])
        .args(["--duration", &env.seconds.to_string()])
        .args(["--warmup", &env.warmup.to_string()]);
    if let Some(rate) = workload.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let started = Instant::now();
    let mut load = Daemon::spawn_split("aoe-bench load", cmd, &stdout, &log)?;
    // The CPU window opens once the warm-up is under way and closes when the load ends;
    // utilisation over it, divided by the measured rate, is the cost per request.
    let window_start = started + Duration::from_secs(env.warmup.into()) + CPU_WINDOW_DELAY;
    let deadline = window_start + Duration::from_secs(u64::from(env.seconds) + 30);
    let mut first: Option<(Ticks, Instant)> = None;
    let mut napi_first = Vec::new();
    let mut perf = None;
    let mut recording = None;
    let status = loop {
        if let Some(status) = load.exited()? {
            break status;
        }
        let now = Instant::now();
        if first.is_none() && now >= window_start {
            first = Some((target.ticks()?, now));
            napi_first = napi_ticks(target.napi)?;
            if env.perf {
                perf = Some(start_perf(&env.scratch, env.seconds, pid)?);
            }
            if profiled {
                let seconds = f64::from(env.seconds) - 0.5;
                recording = Some(profile::start(&env.scratch, pid, seconds, INITIATOR_CORE)?);
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
    let last = (target.ticks()?, Instant::now());
    if let Some((_, at)) = first {
        let wall_s = last.1.duration_since(at).as_secs_f64();
        point.napi = napi::samples(target.napi, &napi_first, wall_s, env.clk_tck);
    }
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
    let result: LoadReport = match serde_json::from_str(&text) {
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
    for daemon in target.daemons.iter_mut() {
        if let Some(status) = daemon.exited()? {
            point.error = Some(format!("the target exited with {status}"));
        }
    }
    point.load = Some(result);
    Ok(point)
}

/// utime + stime of each NAPI thread, in the order of `threads`.
fn napi_ticks(threads: &[NapiThread]) -> Result<Vec<u64>> {
    threads
        .iter()
        .map(|thread| napi::read_back(thread).map(|(_, _, ticks)| ticks))
        .collect()
}

/// Share of `path` in the page cache (`fincore`), or `None` when it cannot be read.
pub(super) fn cached_share(path: &Path) -> Option<f64> {
    let text = output(
        Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES,SIZE"])
            .arg(path),
    )
    .ok()?;
    parse_fincore(&text)
}

/// "RES SIZE" in bytes → RES / SIZE.
pub(super) fn parse_fincore(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (resident, size) = (fields.next()??, fields.next()??);
    (size > 0).then(|| resident as f64 / size as f64)
}

pub(super) fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or("").trim().to_owned()
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
}

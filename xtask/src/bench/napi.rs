//! The two-machine emulation: each veth end receives in NAPI kernel threads pinned to its own
//! side's core, so that each side pays for its own receive path (see
//! `/work/shared/platform-notes.md`, "Measuring as between two machines", and issue 17).
//!
//! Per end: `ethtool -K IF gro on tso off` (veth runs NAPI for every frame only with GRO on;
//! with TSO on, frames that AF_XDP or packet sockets send skip NAPI and are received inline
//! in the sender's call), `echo 1 > /sys/class/net/IF/threaded` (NAPI in a kernel thread
//! `napi/IF-ID` instead of the softirq of whoever raised it), then every such thread pinned to
//! the side's core (`taskset -pc`). Kernel threads are named in one name space for the whole
//! machine: the bench's interface names carry the system's index, so a prefix finds one
//! pair's threads. The threads are read back at every point (affinity, CPU time, the core
//! they last ran on), so a run shows that the rig is what it claims.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cpu::parse_stat_ticks;
use super::results::NapiSample;
use crate::netns::Netns;
use crate::util::run;

/// How long the threads may take to appear after `threaded` is set.
const APPEAR_TIMEOUT: Duration = Duration::from_secs(3);

/// A NAPI kernel thread of one of the bench's interfaces, pinned to `core`.
#[derive(Clone, Debug)]
pub(super) struct NapiThread {
    pub pid: u32,
    pub name: String,
    pub core: u32,
}

/// Makes `interface` in `ns` one machine's NIC whose receive path runs on `core` (at
/// SCHED_FIFO 1 with `fifo`); returns its NAPI threads, pinned.
pub(super) fn emulate_nic(
    ns: &Netns,
    interface: &str,
    core: u32,
    fifo: bool,
) -> Result<Vec<NapiThread>> {
    run(ns
        .exec("ethtool")
        .args(["-K", interface, "gro", "on", "tso", "off"])
        .stdout(Stdio::null()))?;
    run(ns
        .exec("sh")
        .arg("-c")
        .arg(format!("echo 1 > /sys/class/net/{interface}/threaded")))?;
    let deadline = Instant::now() + APPEAR_TIMEOUT;
    loop {
        let threads = threads_of(interface, core)?;
        if !threads.is_empty() {
            pin(&threads, fifo)?;
            return Ok(threads);
        }
        if Instant::now() > deadline {
            bail!(
                "no napi/{interface}-* kernel thread within {} s of `threaded` (link up?)",
                APPEAR_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The NAPI threads of `interface` now (a target attaching XDP may make new ones), pinned to
/// `core` (and at SCHED_FIFO 1 with `fifo`).
pub(super) fn repin(interface: &str, core: u32, fifo: bool) -> Result<Vec<NapiThread>> {
    let threads = threads_of(interface, core)?;
    pin(&threads, fifo)?;
    Ok(threads)
}

fn pin(threads: &[NapiThread], fifo: bool) -> Result<()> {
    for thread in threads {
        let pid = thread.pid.to_string();
        run(std::process::Command::new("taskset")
            .args(["-pc", &thread.core.to_string(), &pid])
            .stdout(Stdio::null()))
        .with_context(|| format!("pinning {} (pid {})", thread.name, thread.pid))?;
        if fifo {
            run(std::process::Command::new("chrt")
                .args(["-f", "-p", "1", &pid])
                .stdout(Stdio::null()))
            .with_context(|| format!("SCHED_FIFO for {} (pid {})", thread.name, thread.pid))?;
        }
    }
    Ok(())
}

/// Every kernel thread whose name starts with `napi/{interface}-`.
fn threads_of(interface: &str, core: u32) -> Result<Vec<NapiThread>> {
    let prefix = format!("napi/{interface}-");
    let mut threads = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(name) = fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let name = name.trim();
        if name.starts_with(&prefix) {
            threads.push(NapiThread {
                pid,
                name: name.to_owned(),
                core,
            });
        }
    }
    threads.sort_by_key(|t| t.pid);
    Ok(threads)
}

/// What a thread looks like now: (allowed CPUs, last CPU, utime + stime ticks).
pub(super) fn read_back(thread: &NapiThread) -> Result<(String, Option<u32>, u64)> {
    let dir = format!("/proc/{}", thread.pid);
    let status = fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("{} (pid {}) is gone", thread.name, thread.pid))?;
    let stat = fs::read_to_string(format!("{dir}/stat"))?;
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map_or_else(String::new, |v| v.trim().to_owned());
    let ticks = parse_stat_ticks(&stat).context("unexpected /proc/PID/stat")?;
    Ok((allowed, parse_last_cpu(&stat), ticks))
}

/// The CPU a task last ran on: field 39 of `/proc/PID/stat`.
pub(super) fn parse_last_cpu(stat: &str) -> Option<u32> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // The fields after the name start at field 3.
    rest.split_whitespace().nth(39 - 3)?.parse().ok()
}

/// The window's sample of each thread from its ticks at the start (`first`, in the order of
/// `threads`) and its state now.
pub(super) fn samples(
    threads: &[NapiThread],
    first: &[u64],
    wall_s: f64,
    clk_tck: u64,
) -> Vec<NapiSample> {
    threads
        .iter()
        .zip(first)
        .filter_map(|(thread, &start)| {
            let (allowed, last_cpu, ticks) = read_back(thread).ok()?;
            let cpu_s = ticks.saturating_sub(start) as f64 / clk_tck as f64;
            Some(NapiSample {
                name: thread.name.clone(),
                core: thread.core,
                allowed,
                last_cpu,
                utilisation: cpu_s / wall_s.max(1e-6),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_cpu_is_field_39_even_with_odd_names() {
        let mut stat = String::from("77 (napi/vt0a-8193) S");
        for field in 4..=52 {
            stat.push_str(&format!(" {}", if field == 39 { 1 } else { 0 }));
        }
        assert_eq!(parse_last_cpu(&stat), Some(1));
        assert_eq!(parse_last_cpu("77 (x) S 1 2"), None);
    }

    #[test]
    fn a_thread_is_pinned_when_it_may_run_on_its_core_only() {
        let sample = |allowed: &str, last_cpu| NapiSample {
            name: "napi/vt0a-8193".into(),
            core: 0,
            allowed: allowed.into(),
            last_cpu,
            utilisation: 0.5,
        };
        assert!(sample("0", Some(0)).pinned());
        assert!(!sample("0-1", Some(0)).pinned());
        assert!(!sample("0", Some(1)).pinned());
    }
}

//! `cargo xtask bench`: aoe-xdp against vblade and two bare reflectors (AF_XDP and AF_PACKET:
//! the faster of them at a point is the machine's limit there), in one run.
//!
//! Method (the same for every system, so that ratios within one run mean something; between
//! runs on this kind of VM the noise is about ±25%):
//! - two network namespaces joined by a fresh veth pair (one queue each, MTU 1500; `--nics 2`:
//!   two pairs, `--mtu 9000`: jumbo frames) per system, set up as between two machines unless
//!   `--topology plain`: each end's receive path in a NAPI kernel thread pinned to its own
//!   side's core ([`napi`]), read back at every point;
//! - in a KVM guest idling through the haltpoll cpuidle driver, idle vCPUs poll for
//!   `--halt-poll-us` (200) before they halt, for the run ([`haltpoll`]): a system whose core
//!   idles between frames (vblade) is then woken by a flag, not by an IPI to a halted vCPU;
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
//! - CPU per request: the target core's busy time (its line of `/proc/stat`: all but idle and
//!   iowait, so NAPI threads and softirqs on it count) over the measurement window, divided by
//!   the request rate; beside it the target processes' utime + stime (`/proc/PID/stat`, ticks
//!   of `getconf CLK_TCK`) and `perf stat -e instructions` where the VM exposes the counter.
//!   The core figure also counts whatever else runs on that core: on a shared machine it is
//!   only as good as the machine is idle.
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
//! (repeatable, a prefix of the points' labels) measures only some points. `--napi-fifo` runs
//! the two-machine rig's NAPI threads at SCHED_FIFO 1 (receive preempts a spinning thread, as
//! softirq receive does on a NIC box; by default they share the core under the fair scheduler).
//!
//! Output: a table on stdout, `target/bench/results.json` (raw), `target/bench/qd.svg` (IOPS
//! and latency against queue depth), `target/bench/summary.md`, per-system target logs under
//! `target/bench/logs/` (emptied at the start of each run); `--update-readme` rewrites
//! README.md between the bench markers.
//!
//! Everything created (namespaces, processes, the scratch directory) is removed at the end,
//! also on failure or Ctrl-C: each is a guard, and only processes started here are signalled.
mod args;
mod cpu;
mod haltpoll;
mod kernel;
mod live;
mod napi;
mod point;
mod profile;
mod report;
mod results;
mod rig;
mod run;
mod system;
mod workload;

pub use args::BenchArgs;

use std::fs;

use anyhow::{Context, Result};

use crate::util::workspace_root;

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
        let results = run::measure(args, &out_dir)?;
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
        let markers = report::readme_markers(&results.meta)?;
        fs::write(&readme, report::replace_section(&text, markers, &summary)?)?;
        println!(
            "updated the {} performance section of {}",
            results.meta.topology.name(),
            readme.display()
        );
    }
    Ok(())
}

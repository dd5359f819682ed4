//! A measuring run: the build, the rig and the disk set up, every system started, each point
//! measured on every system in turn for every round, then the profile pass.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::args::BenchArgs;
use super::cpu::{background_cores, perf_instructions_supported};
use super::haltpoll::{HaltPoll, GUEST_HALT_POLL_NS};
use super::live::start_system;
use super::profile;
use super::report;
use super::results::{medians, Meta, Results, REMEASURE_MAX, REMEASURE_STEAL};
use super::rig::{
    request_sectors, Env, Topology, BACKGROUND_WARN_CORES, DISK_BYTES, INITIATOR_CORE, TARGET_CORE,
};
use super::system::SystemKind;
use super::workload::{selected, workloads};
use crate::deps;
use crate::util::{cargo, output, run, target_dir, ScratchDir};

pub(super) fn measure(args: &BenchArgs, out_dir: &Path) -> Result<Results> {
    if args.systems.contains(&SystemKind::Baseline) && args.baseline.is_none() {
        bail!("--system baseline needs --baseline PATH");
    }
    if args.napi_fifo && args.topology != Topology::TwoMachine {
        bail!("--napi-fifo needs the two-machine topology (plain veth has no NAPI threads)");
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
    // Only this run's logs: one left by an earlier run (another system index) misleads.
    if logs.exists() {
        fs::remove_dir_all(&logs).with_context(|| format!("remove {}", logs.display()))?;
    }
    fs::create_dir_all(&logs)?;
    let clk_tck: u64 = output(Command::new("getconf").arg("CLK_TCK"))?
        .parse()
        .context("getconf CLK_TCK")?;
    // Held to the end of the run: the setting is the machine's, put back when dropped.
    let halt_poll = match args.halt_poll_us {
        0 => None,
        us => HaltPoll::set(Path::new(GUEST_HALT_POLL_NS), u64::from(us) * 1000)?,
    };
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
        topology: args.topology,
        napi_fifo: args.napi_fifo,
        halt_poll: halt_poll.as_ref().map(|h| (h.current(), h.previous())),
        nics: args.nics,
        mtu: args.mtu,
        stop,
    };
    let rounds = if args.quick { 1 } else { args.rounds };
    let meta = meta(&env, args.quick, rounds)?;
    match &halt_poll {
        Some(h) => println!(
            "idle vCPUs poll {} us before they halt for this run (guest_halt_poll_ns {} → {}, put back after)",
            h.current() / 1000,
            h.previous(),
            h.current()
        ),
        None if args.halt_poll_us > 0 => {
            println!("no {GUEST_HALT_POLL_NS}: the machine's idle loop stays as it is")
        }
        None => {}
    }
    println!(
        "aoe-xdp bench: {} topology, {} NIC(s), MTU {} ({} B requests); {} s per point after \
         {} s warm-up; backing: {}; CPU: {}",
        meta.topology.name(),
        meta.nics,
        meta.mtu,
        meta.request_bytes,
        meta.seconds,
        meta.warmup,
        meta.backing,
        meta.cpu_method
    );
    make_disk(&env.disk)?;
    let systems = if args.systems.is_empty() {
        SystemKind::ALL.to_vec()
    } else {
        args.systems.clone()
    };
    let workloads = selected(workloads(args.quick), &args.workloads)?;
    let (background, steal) = background_cores(Duration::from_secs(1))?;
    println!(
        "other load before the start: {background:.2} cores; the host took {:.1} % of the CPU \
         time (steal)",
        steal * 100.0
    );
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
        for note in live.run.notes.iter().filter(|n| n.starts_with("rig:")) {
            println!("{:<26} {note}", "");
        }
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
                let mut measured = live.turn(&env, workload, false)?;
                let mut again = 0;
                while let Some(point) = &measured {
                    println!(
                        "  {:<26} {}",
                        live.run.system.label(),
                        report::point_line(point)
                    );
                    let Some(denied) = point.host_denied().filter(|&d| d > REMEASURE_STEAL) else {
                        break;
                    };
                    if again == REMEASURE_MAX {
                        break;
                    }
                    again += 1;
                    live.run.remeasured += 1;
                    println!(
                        "  {:<26} the host denied {:.0} % of a core's demand: measured again",
                        "",
                        denied * 100.0
                    );
                    measured = live.turn(&env, workload, false)?;
                }
                if let Some(point) = measured {
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

pub(super) fn meta(env: &Env, quick: bool, rounds: u32) -> Result<Meta> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let perf = if env.perf {
        "and perf stat -e instructions"
    } else {
        "(perf stat -e instructions is not supported here)"
    };
    let cpu_method = format!(
        "the target core's busy time (cpu{TARGET_CORE} of /proc/stat: all but idle, iowait \
         and the host's steal, NAPI threads and softirqs included) per request, beside the target processes' own \
         utime+stime from /proc/PID/stat (CLK_TCK {}) {perf}",
        env.clk_tck
    );
    Ok(Meta {
        date: output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))?,
        kernel: output(Command::new("uname").arg("-r"))?,
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        seconds: env.seconds,
        warmup: env.warmup,
        quick,
        rounds,
        mtu: env.mtu,
        topology: env.topology,
        napi_fifo: env.napi_fifo,
        halt_poll_ns: env.halt_poll,
        yielding_pollers: true,
        napi_wait: true,
        packet_napi_wait: true,
        poll_default: true,
        nics: env.nics,
        request_bytes: request_sectors(env.mtu) * 512,
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
pub(super) fn make_disk(path: &Path) -> Result<()> {
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

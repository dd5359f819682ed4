//! `cargo xtask soak`: the real target under a long, verified load, watched for leaks.
//!
//! Two network namespaces joined by two veth pairs (MTU `--mtu`, 1500 by default; each request
//! carries as many sectors as a frame holds, so at 9000 every write request and read reply
//! is a jumbo frame, in XDP mode in several AF_XDP buffers); aoe-xdp (release build, its
//! defaults but for the interfaces, the state and statistics paths, and `socket` from
//! `--socket`) exports two 64 MiB devices on both interfaces. Two initiators, `aoe-bench load
//! --op mixed --verify --depth 64`, one per path and device, run for `--minutes` (each writes
//! its whole range first, then mixes reads and writes and checks every byte it reads back).
//! Every [`SAMPLE`] the target's resident memory and open descriptors are sampled. At the
//! end it checks:
//! - zero verification failures and zero failed requests on both initiators;
//! - resident memory and descriptors flat: the last sample within [`RSS_SLACK_KIB`] of the one
//!   taken once the load ran, and the same number of descriptors;
//! - the target's per-device counters agree with the initiators: at least the requests they
//!   counted plus their pre-write, at most that plus their retransmissions (a retransmitted
//!   request may be carried out twice);
//! - the target stops on SIGTERM with status 0, with no request left in flight and every
//!   frame back with its port (`frames_held=0` in its last log line; the level is also in
//!   `ctl stats` per port while it runs).
//!
//! Needs root. Not part of `cargo xtask test` (it runs for minutes); only traffic on its own
//! veths; every namespace and process is a guard, removed on the way out, also on failure.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::deps;
use crate::loadgen::{self, Report};
use crate::netns::{veth_pair, Daemon, Netns};
use crate::util::{cargo, output, run, target_dir, ScratchDir};

/// Size of each device.
const DEVICE_MIB: u64 = 64;
/// How often the target is sampled.
const SAMPLE: Duration = Duration::from_secs(5);
/// How much resident memory may grow between the first sample under load and the last.
const RSS_SLACK_KIB: u64 = 4096;

/// Options of `cargo xtask soak`.
#[derive(clap::Args)]
pub struct SoakArgs {
    /// Minutes of load after the pre-write.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    minutes: u32,
    /// MTU of both veth pairs; each request carries as many sectors as one frame holds (2 at
    /// 1500, 17 at 9000: jumbo frames, received in several AF_XDP buffers).
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(1500..=9000))]
    mtu: u16,
    /// The target's `socket` setting: "auto" (its default: AF_XDP where it works), "xdp" or
    /// "packet" (the AF_PACKET fallback).
    #[arg(long, default_value = "auto", value_parser = ["auto", "xdp", "packet"])]
    socket: String,
}

/// One sample of the target process.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    /// Frames the target's workers hold or have queued to send, summed over ports (from
    /// `ctl stats`): bounded by the requests in flight, and not growing.
    frames_held: u64,
}

/// How much more the most frames held in the second half of the run may be than in the
/// first (requests in flight vary; a leak grows without bound).
const FRAMES_HELD_SLACK: u64 = 128;

fn sample(pid: u32, start: Instant, socket: &Path, bin: &Path) -> Result<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let stats: Value = serde_json::from_str(&output(
        Command::new(bin.join("aoe-xdp"))
            .args(["ctl", "--socket"])
            .arg(socket)
            .args(["stats", "--json"]),
    )?)?;
    let frames_held = stats["ports"]
        .as_array()
        .context("no ports in the stats")?
        .iter()
        .filter_map(|port| port["frames_held"].as_u64())
        .sum();
    Ok(Sample {
        at: start.elapsed(),
        rss_kib,
        fds,
        frames_held,
    })
}

/// Runs the soak.
pub fn soak(args: &SoakArgs) -> Result<()> {
    deps::ensure_packages()?;
    run(cargo().args(["build", "--release", "--bins"]))?;
    let bin = target_dir().join("release");
    let scratch = ScratchDir(format!("/var/tmp/aoe-soak-{}", std::process::id()).into());
    fs::create_dir_all(&scratch.0)?;
    let dir = &scratch.0;
    let pid = std::process::id();
    let target_ns = Netns::new(format!("aoe-soak-{pid}-t"))?;
    let client_ns = Netns::new(format!("aoe-soak-{pid}-c"))?;
    for path in 0..2 {
        veth_pair(
            &target_ns,
            &format!("st{path}"),
            &client_ns,
            &format!("sc{path}"),
            args.mtu,
        )?;
    }
    let mut devices = String::new();
    for slot in 0..2 {
        let disk = dir.join(format!("disk{slot}.img"));
        fs::File::create(&disk)?.set_len(DEVICE_MIB << 20)?;
        devices.push_str(&format!(
            "[[device]]\npath = \"{}\"\nshelf = 1\nslot = {slot}\n\n",
            disk.display()
        ));
    }
    let socket = dir.join("ctl.sock");
    let config = dir.join("aoe-xdp.toml");
    fs::write(
        &config,
        format!(
            "[target]\ninterfaces = [\"st0\", \"st1\"]\nsocket = \"{}\"\n\
             state-directory = \"{}\"\ncontrol-socket = \"{}\"\n\n{devices}",
            args.socket,
            dir.join("state").display(),
            socket.display()
        ),
    )?;
    let mut target = Daemon::spawn(
        "aoe-xdp",
        {
            let mut cmd = target_ns.exec(bin.join("aoe-xdp"));
            cmd.arg("--config").arg(&config);
            cmd
        },
        &dir.join("target.log"),
    )?;
    target.wait_for_log("serving; SIGINT or SIGTERM stops", Duration::from_secs(15))?;
    let seconds = u64::from(args.minutes) * 60;
    let sectors = u64::from(loadgen::request_sectors(args.mtu));
    // Whole requests: the pre-write covers the range exactly.
    let range = (DEVICE_MIB << 20) / 512 / sectors * sectors;
    let mut loads = Vec::new();
    for path in 0..2 {
        let mut cmd = client_ns.exec(bin.join("aoe-bench"));
        let (interface, target) = (format!("sc{path}"), format!("1.{path}"));
        loadgen::load(&mut cmd, &[&interface], &target, "mixed", 64, sectors)
            .arg("--verify")
            .args(["--range-sectors", &range.to_string()])
            .args(["--duration", &seconds.to_string()]);
        let name = format!("initiator {path}");
        let report = dir.join(format!("load{path}.json"));
        loads.push((
            Daemon::spawn_split(&name, cmd, &report, &dir.join(format!("load{path}.log")))?,
            report,
        ));
    }
    println!(
        "soak: 2 initiators, mixed verified I/O of {sectors} sectors at QD 64 on two paths \
         (MTU {}, socket = \"{}\") for {} min",
        args.mtu, args.socket, args.minutes
    );
    let start = Instant::now();
    let mut samples = Vec::new();
    while loads
        .iter_mut()
        .any(|(d, _)| matches!(d.exited(), Ok(None)))
    {
        std::thread::sleep(SAMPLE);
        let s = sample(target.pid(), start, &socket, &bin)?;
        println!(
            "  {:>5} s  RSS {:>7} KiB  fds {}  frames held {}",
            s.at.as_secs(),
            s.rss_kib,
            s.fds,
            s.frames_held
        );
        samples.push(s);
        ensure!(
            start.elapsed() < Duration::from_secs(seconds + 600),
            "the initiators did not finish"
        );
    }
    let mut reports = Vec::new();
    for (mut load, path) in loads {
        let status = load.stop()?;
        let text = fs::read_to_string(&path)?;
        ensure!(
            status.success(),
            "{path:?}: initiator failed with {status}: {}",
            load.log_text()
        );
        reports.push(serde_json::from_str::<Report>(&text).context("initiator JSON")?);
    }
    let stats: Value = serde_json::from_str(&output(
        target_ns
            .exec(bin.join("aoe-xdp"))
            .arg("--stats")
            .arg(&socket)
            .arg("--json"),
    )?)?;
    print_drops(&stats)?;
    // The target's own tables (service times per device, the workers' disk I/O), for what
    // the numbers above do not say (a retransmission's stall, say).
    let tables = output(
        target_ns
            .exec(bin.join("aoe-xdp"))
            .arg("--stats")
            .arg(&socket),
    )?;
    println!("{}", tables.trim_end());
    let status = target.stop()?;
    ensure!(status.success(), "aoe-xdp exited with {status} at SIGTERM");
    // Frame accounting at exit: every frame back with its port (a request holds its frame
    // until its reply is sent).
    let log = target.log_text();
    ensure!(
        log.contains("frames_held=0") && !log.contains("requests still in flight"),
        "frames or requests left at exit:\n{log}"
    );
    println!("target: every frame returned at exit (frames_held=0)");
    check(&reports, &stats, &samples, range / sectors)
}

/// Prints, per port, the frames the target dropped or could not take (what an initiator's
/// retransmissions may come from): no free frame, no slab for a jumbo frame (or one too long),
/// the kernel's drops for a full RX ring or an empty fill ring, and its TX drops.
fn print_drops(stats: &Value) -> Result<()> {
    // A missing counter is an error, not a 0: the line must not claim drops it did not read.
    let count = |v: &Value, key: &str| v[key].as_u64().with_context(|| format!("no {key}"));
    for port in stats["ports"].as_array().context("no ports in the stats")? {
        let (jumbo, kernel) = (&port["jumbo"], &port["kernel"]);
        println!(
            "port {}: no frame {}, jumbo no slab {} (upgrade {}), too long {}; kernel RX drops \
             {}, fill ring empty {}, TX drops {}",
            port["name"].as_str().context("no port name")?,
            count(port, "no_frame")?,
            count(jumbo, "rx_no_slab")?,
            count(jumbo, "upgrade_no_slab")?,
            count(jumbo, "rx_too_long")?,
            count(kernel, "rx_dropped")?,
            count(kernel, "fill_empty")?,
            count(kernel, "tx_dropped")?,
        );
    }
    Ok(())
}

/// The checks of the module docs; prints what it compared.
fn check(reports: &[Report], stats: &Value, samples: &[Sample], prewrite: u64) -> Result<()> {
    let number = |v: &Value, key: &str| v[key].as_u64().with_context(|| format!("no {key}"));
    for (path, report) in reports.iter().enumerate() {
        let (requests, errors) = (report.requests, report.errors);
        let (failures, retransmits) = (report.verify_failures, report.retransmits);
        let device = stats["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == format!("e1.{path}")))
            .with_context(|| format!("no device e1.{path} in the statistics"))?;
        let served = number(device, "read_cmds")? + number(device, "write_cmds")?;
        println!(
            "initiator {path}: {requests} requests, {errors} errors, {failures} verification \
             failures, {retransmits} retransmissions; target served {served} (pre-write \
             {prewrite})"
        );
        ensure!(
            failures == 0 && errors == 0,
            "initiator {path}: failures or errors"
        );
        ensure!(
            served >= requests + prewrite && served <= requests + prewrite + retransmits,
            "initiator {path}: the target's counters disagree with the initiator's"
        );
    }
    // The first sample under load (the pre-write has started) against the last.
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!("no samples: the run was shorter than {SAMPLE:?}");
    };
    println!(
        "target: RSS {} -> {} KiB, fds {} -> {}",
        first.rss_kib, last.rss_kib, first.fds, last.fds
    );
    ensure!(
        last.rss_kib <= first.rss_kib + RSS_SLACK_KIB,
        "resident memory grew by {} KiB",
        last.rss_kib - first.rss_kib
    );
    ensure!(last.fds == first.fds, "open descriptors changed");
    let (early, late) = samples.split_at(samples.len() / 2);
    let most = |samples: &[Sample]| samples.iter().map(|s| s.frames_held).max().unwrap_or(0);
    println!(
        "target: most frames held {} in the first half, {} in the second",
        most(early),
        most(late)
    );
    ensure!(
        most(late) <= most(early) + FRAMES_HELD_SLACK,
        "frames held grew: a leak"
    );
    println!("soak passed");
    Ok(())
}

//! A system started in namespaces of its own, paused between its turns: starting it, waiting
//! until it answers, a turn at one point, and stopping it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::napi::{self, NapiThread};
use super::point::{measure_point, prepare, Target};
use super::results::{Point, SystemRun};
use super::rig::{request_sectors, Env, Link, Topology, BUFFER_COUNT, INITIATOR_CORE, TARGET_CORE};
use super::system::{write_config, Program, SystemKind};
use super::workload::Workload;
use crate::netns::{veth_pair, Daemon, Netns};

/// A started (or failed) system and its own namespaces. Field order is drop order: the
/// daemons go before their namespaces.
pub(super) struct Live {
    pub run: SystemRun,
    /// The target's processes: one, or one per interface for the programs that serve one
    /// interface each (vblade, the reflectors). Empty when the system did not start.
    daemons: Vec<Daemon>,
    link: Link,
    napi: Vec<NapiThread>,
    log: PathBuf,
    log_copy: PathBuf,
    client_ns: Netns,
    _target_ns: Netns,
}

impl Live {
    /// Resumes the system, measures `workload` on it (`profiled`: under `perf record`) and
    /// pauses it again; `None` for a system that is not running.
    pub(super) fn turn(
        &mut self,
        env: &Env,
        workload: &Workload,
        profiled: bool,
    ) -> Result<Option<Point>> {
        if self.daemons.is_empty() {
            return Ok(None);
        }
        if env.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        for daemon in &mut self.daemons {
            daemon.resume()?;
        }
        let mut target = Target {
            client_ns: &self.client_ns,
            link: &self.link,
            daemons: &mut self.daemons,
            napi: &self.napi,
        };
        let point = prepare(env, &target, workload)
            .and_then(|()| measure_point(env, &mut target, workload, profiled));
        for daemon in &mut self.daemons {
            daemon.pause()?;
        }
        point.map(Some)
    }
}

/// Starts the `index`th system in fresh namespaces and pauses it. Errors only for an
/// interruption or a broken environment; a system that cannot run gets a status.
pub(super) fn start_system(env: &Env, system: SystemKind, index: usize) -> Result<Live> {
    let id = std::process::id();
    // A system named twice gets two namespace pairs (and logs).
    let key = format!("{}-{index}", system.key());
    let target_ns = Netns::new(format!("aoebench-{id}-{key}-t"))?;
    let client_ns = Netns::new(format!("aoebench-{id}-{key}-c"))?;
    let link = Link::new(index, env.nics, env.mtu);
    let mut napi = Vec::new();
    for (target_if, client_if) in link.target.iter().zip(&link.client) {
        veth_pair(&target_ns, target_if, &client_ns, client_if, link.mtu)?;
        if env.topology == Topology::TwoMachine {
            napi.extend(napi::emulate_nic(
                &target_ns,
                target_if,
                TARGET_CORE,
                env.napi_fifo,
            )?);
            napi.extend(napi::emulate_nic(
                &client_ns,
                client_if,
                INITIATOR_CORE,
                env.napi_fifo,
            )?);
        }
    }
    let mut run = SystemRun {
        system,
        status: "ok".into(),
        notes: Vec::new(),
        points: Vec::new(),
        samples: Vec::new(),
        background_cores: 0.0,
        remeasured: 0,
    };
    let log = env.scratch.join(format!("{key}.log"));
    let log_copy = env.logs.join(format!("{key}.log"));
    let sides = Sides {
        target_ns: &target_ns,
        client_ns: &client_ns,
        link: &link,
    };
    let started = start(env, system, &sides, &log, &key);
    let _ = fs::copy(&log, &log_copy);
    let daemons = match started {
        Ok((mut daemons, notes)) => {
            run.notes = notes;
            for daemon in &mut daemons {
                daemon.pause()?;
            }
            daemons
        }
        Err(error) => {
            let reason = summarize(&format!("{error:#}"));
            run.status = match system {
                SystemKind::Packet => format!("n/a: {reason}"),
                _ => format!("failed: {reason}"),
            };
            Vec::new()
        }
    };
    if env.topology == Topology::TwoMachine {
        // Attaching XDP may give an interface new NAPI threads: find and pin them all again.
        napi = repin_all(&link, env.napi_fifo)?;
        run.notes.push(napi_note(&napi));
    }
    Ok(Live {
        run,
        daemons,
        link,
        napi,
        log,
        log_copy,
        client_ns,
        _target_ns: target_ns,
    })
}

/// Every NAPI thread of `link`, each pinned to its side's core.
fn repin_all(link: &Link, fifo: bool) -> Result<Vec<NapiThread>> {
    let mut threads = Vec::new();
    for (target_if, client_if) in link.target.iter().zip(&link.client) {
        threads.extend(napi::repin(target_if, TARGET_CORE, fifo)?);
        threads.extend(napi::repin(client_if, INITIATOR_CORE, fifo)?);
    }
    Ok(threads)
}

/// "NAPI threads pinned: napi/vt0a-8193 → CPU 0, …" for the system's notes.
fn napi_note(threads: &[NapiThread]) -> String {
    let listed: Vec<String> = threads
        .iter()
        .map(|t| format!("{} (pid {}) → CPU {}", t.name, t.pid, t.core))
        .collect();
    format!("rig: NAPI threads pinned: {}", listed.join(", "))
}

impl Live {
    /// Stops the system; notes how it exited.
    pub(super) fn finish(mut self) -> SystemRun {
        let program = self.run.system.program();
        let daemons = std::mem::take(&mut self.daemons);
        if daemons.is_empty() {
            return self.run;
        }
        for mut daemon in daemons {
            match (program, daemon.stop()) {
                (Program::AoeXdp, Ok(s)) if !s.success() => {
                    self.run
                        .notes
                        .push(format!("aoe-xdp exited with {s} at SIGTERM"));
                }
                (_, Err(error)) => self.run.notes.push(format!("{error:#}")),
                _ => {}
            }
        }
        let _ = fs::copy(&self.log, &self.log_copy);
        self.run
    }
}

/// The first line of an error, and its last line when there are several (a failed start
/// carries the target's log, whose last line usually says why).
pub(super) fn summarize(text: &str) -> String {
    let first = first_line(text);
    match text.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some(last) if last != first => format!("{first} … {last}"),
        _ => first,
    }
}

pub(super) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// The namespaces and interfaces a system runs on.
pub(super) struct Sides<'a> {
    pub target_ns: &'a Netns,
    pub client_ns: &'a Netns,
    pub link: &'a Link,
}

/// Starts the system pinned to the target core and waits until it answers on every
/// interface; returns its processes with the notes it logged about its transport.
pub(super) fn start(
    env: &Env,
    system: SystemKind,
    sides: &Sides,
    log: &Path,
    key: &str,
) -> Result<(Vec<Daemon>, Vec<String>)> {
    let mut daemons = match system.program() {
        Program::AoeXdp => vec![start_aoe_xdp(env, system, sides, log, key)?],
        program => {
            let mut daemons = Vec::new();
            for (nic, interface) in sides.link.target.iter().enumerate() {
                // The first process logs where a system's log goes; the others beside it.
                let log = match nic {
                    0 => log.to_path_buf(),
                    _ => log.with_extension(format!("{interface}.log")),
                };
                daemons.push(start_per_interface(
                    env,
                    program,
                    sides.target_ns,
                    interface,
                    &log,
                )?);
            }
            daemons
        }
    };
    let text = daemons[0].log_text();
    let notes = transport_notes(&text);
    if system == SystemKind::Packet {
        if let Some(reason) = packet_fallback_reason(&text) {
            bail!("{reason}");
        }
    }
    for interface in &sides.link.client {
        wait_until_answering(env, sides.client_ns, interface, &mut daemons)?;
    }
    Ok((daemons, notes))
}

fn start_aoe_xdp(
    env: &Env,
    system: SystemKind,
    sides: &Sides,
    log: &Path,
    key: &str,
) -> Result<Daemon> {
    let config = write_config(env, system, &sides.link.target, key)?;
    let binary = match (system, &env.baseline) {
        (SystemKind::Baseline, Some(path)) => path,
        (SystemKind::Baseline, None) => bail!("--system baseline needs --baseline PATH"),
        _ => &env.aoe_xdp,
    };
    let mut cmd = sides.target_ns.exec_pinned(TARGET_CORE, binary);
    cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
    let mut daemon = Daemon::spawn("aoe-xdp", cmd, log)?;
    daemon.wait_for_log("serving", Duration::from_secs(15))?;
    Ok(daemon)
}

/// One process of a program that serves one interface (vblade, the reflectors) on
/// `interface`; the processes of one system share a log.
fn start_per_interface(
    env: &Env,
    program: Program,
    target_ns: &Netns,
    interface: &str,
    log: &Path,
) -> Result<Daemon> {
    match program {
        Program::Vblade => {
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, "vblade");
            cmd.args(["-b", &BUFFER_COUNT.to_string(), "1", "0", interface])
                .arg(&env.disk);
            Daemon::spawn("vblade", cmd, log)
        }
        Program::Reflector => {
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, &env.loadgen);
            cmd.args(["reflect", "-i", interface]);
            let daemon = Daemon::spawn("aoe-bench reflect", cmd, log)?;
            reflector_ready(daemon, request_sectors(env.mtu))
        }
        Program::PacketReflector => {
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, &env.loadgen);
            cmd.args(["reflect", "--socket", "packet", "-i", interface]);
            let daemon = Daemon::spawn("aoe-bench reflect --socket packet", cmd, log)?;
            reflector_ready(daemon, request_sectors(env.mtu))
        }
        Program::AoeXdp => unreachable!("aoe-xdp serves every interface from one process"),
    }
}

/// Waits for a reflector's ready line ("..., N sectors per request, ...") and fails unless it
/// answers the `sectors` every request of the run carries (an AF_XDP reflector whose kernel
/// cannot bind multi-buffer sockets answers at most 7).
fn reflector_ready(mut daemon: Daemon, sectors: u32) -> Result<Daemon> {
    const READY: &str = " sectors per request";
    daemon.wait_for_log(READY, Duration::from_secs(15))?;
    let log = daemon.log_text();
    let answered = advertised_sectors(&log);
    if answered.is_none_or(|answered| answered < sectors) {
        bail!(
            "the reflector answers {} sectors per request, the run's requests carry {sectors}: \
             {}",
            answered.map_or("an unknown number of".to_owned(), |n| n.to_string()),
            log.lines().find(|l| l.contains(READY)).unwrap_or_default()
        );
    }
    Ok(daemon)
}

/// The sector count in a reflector's ready line ("..., 17 sectors per request, ...").
fn advertised_sectors(log: &str) -> Option<u32> {
    let line = log.lines().find(|l| l.contains(" sectors per request"))?;
    let before = &line[..line.find(" sectors per request")?];
    before.rsplit([' ', ',']).next()?.parse().ok()
}

/// Why an aoe-xdp started with `socket = "packet"` is not measuring AF_PACKET, from its log.
pub(super) fn packet_fallback_reason(log: &str) -> Option<String> {
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
pub(super) fn transport_notes(log: &str) -> Vec<String> {
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

/// Polls with `aoe-bench discover` on `interface` until the target answers (10 s at most).
pub(super) fn wait_until_answering(
    env: &Env,
    client_ns: &Netns,
    interface: &str,
    daemons: &mut [Daemon],
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = client_ns
            .exec(&env.loadgen)
            .args(["discover", "-i", interface, "--wait-ms", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if answered {
            return Ok(());
        }
        for daemon in daemons.iter_mut() {
            if let Some(status) = daemon.exited()? {
                bail!(
                    "exited with {status} before answering: {}",
                    first_line(&daemon.log_text())
                );
            }
        }
        if Instant::now() > deadline || env.stop.load(Ordering::Relaxed) {
            bail!("no answer to a broadcast Query Config on {interface} within 10 s");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn reflector_ready_lines_give_their_sector_count() {
        let xdp = "reflecting on vt0a: 1 RX queue(s), XDP native, AF_XDP copy mode, 17 sectors \
                   per request, buffer count 64";
        assert_eq!(advertised_sectors(xdp), Some(17));
        let packet = "log line\nreflecting on vt0a: AF_PACKET (sleeps when idle), MTU 1500, 2 \
                      sectors per request, buffer count 64";
        assert_eq!(advertised_sectors(packet), Some(2));
        assert_eq!(advertised_sectors("reflecting on vt0a"), None);
    }

    #[test]
    fn packet_rows_notice_a_fallback_to_af_xdp() {
        let fallback =
            "WARN aoe_xdp::dataplane: socket = \"packet\" is not available yet; using AF_XDP";
        assert!(packet_fallback_reason(fallback).is_some());
        assert!(packet_fallback_reason("INFO aoe_xdp: AF_PACKET socket ready\nserving").is_none());
    }
}

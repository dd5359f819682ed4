//! A system started in namespaces of its own, paused between its turns: starting it, waiting
//! until it answers, a turn at one point, and stopping it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::point::{measure_point, prepare};
use super::results::{Point, SystemRun};
use super::rig::{Env, BUFFER_COUNT, CLIENT_IF, MTU, TARGET_CORE, TARGET_IF};
use super::system::{write_config, Program, SystemKind};
use super::workload::Workload;
use crate::netns::{veth_pair, Daemon, Netns};

/// A started (or failed) system and its own namespaces. Field order is drop order: the
/// daemon goes before its namespaces.
pub(super) struct Live {
    pub run: SystemRun,
    daemon: Option<Daemon>,
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
        let Some(daemon) = self.daemon.as_mut() else {
            return Ok(None);
        };
        if env.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        daemon.resume()?;
        let point = prepare(env, &self.client_ns, workload)
            .and_then(|()| measure_point(env, &self.client_ns, daemon, workload, profiled));
        daemon.pause()?;
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
    veth_pair(&target_ns, TARGET_IF, &client_ns, CLIENT_IF, MTU)?;
    let mut run = SystemRun {
        system,
        status: "ok".into(),
        notes: Vec::new(),
        points: Vec::new(),
        samples: Vec::new(),
        background_cores: 0.0,
    };
    let log = env.scratch.join(format!("{key}.log"));
    let log_copy = env.logs.join(format!("{key}.log"));
    let started = start(env, system, &target_ns, &client_ns, &log, &key);
    let _ = fs::copy(&log, &log_copy);
    let daemon = match started {
        Ok((mut daemon, notes)) => {
            run.notes = notes;
            daemon.pause()?;
            Some(daemon)
        }
        Err(error) => {
            let reason = summarize(&format!("{error:#}"));
            run.status = match system {
                SystemKind::Packet => format!("n/a: {reason}"),
                _ => format!("failed: {reason}"),
            };
            None
        }
    };
    Ok(Live {
        run,
        daemon,
        log,
        log_copy,
        client_ns,
        _target_ns: target_ns,
    })
}

impl Live {
    /// Stops the system; notes how it exited.
    pub(super) fn finish(mut self) -> SystemRun {
        let Some(mut daemon) = self.daemon.take() else {
            return self.run;
        };
        let status = daemon.stop();
        let _ = fs::copy(&self.log, &self.log_copy);
        let (program, mut run) = (self.run.system.program(), self.run);
        match (program, status) {
            (Program::AoeXdp, Ok(s)) if !s.success() => {
                run.notes
                    .push(format!("aoe-xdp exited with {s} at SIGTERM"));
            }
            (_, Err(error)) => run.notes.push(format!("{error:#}")),
            _ => {}
        }
        run
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

/// Starts the system pinned to the target core and waits until it answers; returns it with
/// the notes it logged about its transport.
pub(super) fn start(
    env: &Env,
    system: SystemKind,
    target_ns: &Netns,
    client_ns: &Netns,
    log: &Path,
    key: &str,
) -> Result<(Daemon, Vec<String>)> {
    let mut daemon = match system.program() {
        Program::AoeXdp => {
            let config = write_config(env, system, key)?;
            let binary = match (system, &env.baseline) {
                (SystemKind::Baseline, Some(path)) => path,
                (SystemKind::Baseline, None) => bail!("--system baseline needs --baseline PATH"),
                _ => &env.aoe_xdp,
            };
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, binary);
            cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
            let mut daemon = Daemon::spawn("aoe-xdp", cmd, log)?;
            daemon.wait_for_log("serving", Duration::from_secs(15))?;
            daemon
        }
        Program::Vblade => {
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, "vblade");
            cmd.args(["-b", &BUFFER_COUNT.to_string(), "1", "0", TARGET_IF])
                .arg(&env.disk);
            Daemon::spawn("vblade", cmd, log)?
        }
        Program::Reflector => {
            let mut cmd = target_ns.exec_pinned(TARGET_CORE, &env.loadgen);
            cmd.args(["reflect", "-i", TARGET_IF]);
            Daemon::spawn("aoe-bench reflect", cmd, log)?
        }
    };
    let notes = transport_notes(&daemon.log_text());
    if system == SystemKind::Packet {
        if let Some(reason) = packet_fallback_reason(&daemon.log_text()) {
            bail!("{reason}");
        }
    }
    wait_until_answering(env, client_ns, &mut daemon)?;
    Ok((daemon, notes))
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

/// Polls with `aoe-bench discover` until the target answers (10 s at most).
pub(super) fn wait_until_answering(
    env: &Env,
    client_ns: &Netns,
    daemon: &mut Daemon,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = client_ns
            .exec(&env.loadgen)
            .args(["discover", "-i", CLIENT_IF, "--wait-ms", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if answered {
            return Ok(());
        }
        if let Some(status) = daemon.exited()? {
            bail!(
                "exited with {status} before answering: {}",
                first_line(&daemon.log_text())
            );
        }
        if Instant::now() > deadline || env.stop.load(Ordering::Relaxed) {
            bail!("no answer to a broadcast Query Config within 10 s");
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
    fn packet_rows_notice_a_fallback_to_af_xdp() {
        let fallback =
            "WARN aoe_xdp::dataplane: socket = \"packet\" is not available yet; using AF_XDP";
        assert!(packet_fallback_reason(fallback).is_some());
        assert!(packet_fallback_reason("INFO aoe_xdp: AF_PACKET socket ready\nserving").is_none());
    }
}

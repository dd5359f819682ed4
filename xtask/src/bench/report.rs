//! What `cargo xtask bench` shows and writes: the table, the targets of the issue, the
//! markdown summary, the queue-depth plot (SVG) and the README section. Everything here is a
//! pure function of [`Results`] (except the plot, which writes its file), so a run can be
//! rendered again with `--from-results`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::profile::Profile;
use super::results::{CpuSample, Meta, Point, Results, SystemRun, REMEASURE_MAX, REMEASURE_STEAL};
use super::rig::{Topology, BACKGROUND_WARN_CORES};
use super::system::{SystemKind, NAP_US};
use super::workload::{Op, Pattern, Workload};

/// Marks the start of the generated section of the two-machine topology in README.md (the
/// first one).
pub const README_START: &str = "<!-- bench:start -->";
/// Marks its end.
pub const README_END: &str = "<!-- bench:end -->";
/// The same for the plain topology's section, below it.
pub const README_PLAIN_START: &str = "<!-- bench-plain:start -->";
/// Marks its end.
pub const README_PLAIN_END: &str = "<!-- bench-plain:end -->";

/// The README markers of a run's section: one section per topology, of the default link
/// (one NIC, MTU 1500); runs on other links are not put in the README.
pub fn readme_markers(meta: &Meta) -> Result<(&'static str, &'static str)> {
    if meta.nics != 1 || meta.mtu != 1500 {
        bail!(
            "--update-readme takes a run on one NIC at MTU 1500 (this one: {} NIC(s), MTU {})",
            meta.nics,
            meta.mtu
        );
    }
    Ok(match meta.topology {
        Topology::TwoMachine => (README_START, README_END),
        Topology::Plain => (README_PLAIN_START, README_PLAIN_END),
    })
}
/// aoe-xdp (XDP) must reach this share of the machine's limit (the faster bare reflector) at
/// QD 16 and 64 (issue 17).
pub const RATE_TARGET: f64 = 0.9;
/// aoe-xdp on its AF_PACKET fallback must reach this share of the machine's limit at QD 16
/// and 64 (issue 17).
pub const PACKET_RATE_TARGET: f64 = 0.75;
/// aoe-xdp (XDP)'s CPU per request must be at most this share of vblade's.
pub const CPU_TARGET: f64 = 0.35;
/// At the fixed offered load, its CPU per request must be at most this share of vblade's.
pub const IDLE_CPU_TARGET: f64 = 0.4;
/// Below this share of the backing file cached at the end of a point, the point is flagged.
const CACHED_MIN: f64 = 0.99;

/// One progress line for a finished point.
pub fn point_line(point: &Point) -> String {
    let label = point.workload.label();
    let Some(load) = &point.load else {
        return format!(
            "{label:<16} error: {}",
            point.error.as_deref().unwrap_or("?")
        );
    };
    let mut line = format!(
        "{label:<16} {:>9} IOPS {:>7.1} MB/s  p50 {:>7.1} µs  p99 {:>7.1} µs",
        thousands(load.iops),
        load.mb_per_s,
        load.lat_us.p50,
        load.lat_us.p99
    );
    if let Some(cpu) = &point.cpu {
        if let Some(core) = cpu.core_utilisation {
            let _ = write!(
                line,
                "  core {:>4.0}% {:>6.2} µs/req",
                core * 100.0,
                cpu.lead_us_per_request()
            );
        }
        let _ = write!(
            line,
            "  process {:>4.0}% {:>6.2} µs/req",
            cpu.utilisation * 100.0,
            cpu.us_per_request
        );
        if let (Some(target), Some(initiator)) = (cpu.core_steal, cpu.initiator_steal) {
            let _ = write!(
                line,
                "  steal {:.0}%/{:.0}%",
                target * 100.0,
                initiator * 100.0
            );
        }
        if let Some(faults) = cpu.major_faults.filter(|&f| f > 0) {
            let _ = write!(line, "  majflt {faults}");
        }
    }
    for napi in &point.napi {
        let _ = write!(
            line,
            "  {} CPU {}{} {:.0}%",
            napi.name,
            napi.allowed,
            napi.last_cpu
                .map_or_else(String::new, |c| format!(" (on {c})")),
            napi.utilisation * 100.0
        );
    }
    let problems = problems(point);
    if !problems.is_empty() {
        let _ = write!(line, "  [{problems}]");
    }
    line
}

/// One progress line for a profiled point.
pub fn profile_line(profile: Option<&Profile>) -> String {
    let Some(p) = profile else {
        return "no profile (perf record failed)".into();
    };
    format!(
        "{:>5} samples: user {:>3.0}%, file I/O {:>3.0}%, other syscalls {:>3.0}%, RX softirq \
         {:>3.0}%, other kernel {:>3.0}%",
        p.samples,
        p.user * 100.0,
        p.file_io * 100.0,
        p.other_syscalls * 100.0,
        p.rx_softirq * 100.0,
        p.other_kernel * 100.0
    )
}

/// Retransmits, errors, verify failures and point errors, or "".
fn problems(point: &Point) -> String {
    let mut parts = Vec::new();
    if let Some(load) = &point.load {
        for (count, what) in [
            (load.retransmits, "retransmits"),
            (load.errors, "errors"),
            (load.verify_failures, "verify failures"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {what}"));
            }
        }
    }
    for napi in point.napi.iter().filter(|n| !n.pinned()) {
        parts.push(format!(
            "{} not pinned to CPU {} (allowed {}, ran on {:?})",
            napi.name, napi.core, napi.allowed, napi.last_cpu
        ));
    }
    if let Some(cached) = point.cached.filter(|c| *c < CACHED_MIN) {
        parts.push(format!("file {:.0}% cached", cached * 100.0));
    }
    if let Some(error) = &point.error {
        let mut error = error.replace('|', "/").replace('\n', " ");
        error.truncate(100);
        parts.push(error);
    }
    parts.join(", ")
}

/// `12345.6` → "12,346".
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |r| format!("{r:.2}×"))
}

/// [`ratio`], with a third decimal where two would round to the target itself (0.897 is
/// not 0.90).
fn judged_ratio(value: Option<f64>, target: f64) -> String {
    match value {
        Some(v) if format!("{v:.2}") == format!("{target:.2}") => format!("{v:.3}×"),
        _ => ratio(value),
    }
}

/// `a / b` when both exist and `b` is positive.
fn divide(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn iops(results: &Results, system: SystemKind, workload: &Workload) -> Option<f64> {
    results.point(system, workload).map(|(load, _)| load.iops)
}

fn cpu_per_request(results: &Results, system: SystemKind, workload: &Workload) -> Option<f64> {
    results
        .point(system, workload)
        .and_then(|(_, cpu)| cpu.map(|c| c.lead_us_per_request()))
}

fn profile<'a>(
    results: &'a Results,
    system: SystemKind,
    workload: &Workload,
) -> Option<&'a Profile> {
    results
        .ok_run(system)?
        .points
        .iter()
        .find(|p| p.workload == *workload)?
        .profile
        .as_ref()
}

/// CPU per request without the receive softirq (see [`Profile::rx_softirq`]), where the point
/// was profiled.
fn cpu_without_softirq(results: &Results, system: SystemKind, workload: &Workload) -> Option<f64> {
    let cpu = cpu_per_request(results, system, workload)?;
    Some(profile(results, system, workload)?.without_rx_softirq(cpu))
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "—".into(), |s| format!("{:.0}%", s * 100.0))
}

/// A markdown table whose columns are padded, so it also reads well in a terminal.
fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::from("|");
        for (cell, width) in cells.zip(&widths) {
            let pad = width - cell.chars().count();
            let _ = write!(out, " {cell}{} |", " ".repeat(pad));
        }
        out.push('\n');
        out
    };
    let mut out = line(&mut header.iter().copied());
    out.push('|');
    for width in &widths {
        let _ = write!(out, "{}|", "-".repeat(width + 2));
    }
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// The machine's limit at `workload`: the rate of the faster bare reflector.
fn limit(results: &Results, workload: &Workload) -> Option<f64> {
    SystemKind::REFLECTORS
        .iter()
        .filter_map(|&system| iops(results, system, workload))
        .reduce(f64::max)
}

/// A point's rate.
fn rate_of(point: &Point) -> Option<f64> {
    point.load.as_ref().map(|l| l.iops)
}

/// A point's CPU per request (see [`CpuSample::lead_us_per_request`]).
fn cpu_of(point: &Point) -> Option<f64> {
    point.cpu.as_ref().map(CpuSample::lead_us_per_request)
}

/// The mean over the rounds of `value` of `system`'s point at `workload` (its median round's
/// where the run kept no rounds).
fn round_mean(
    results: &Results,
    system: SystemKind,
    workload: &Workload,
    value: fn(&Point) -> Option<f64>,
) -> Option<f64> {
    let values: Vec<f64> = results
        .round_values(system, workload, value)
        .into_iter()
        .flatten()
        .collect();
    if values.is_empty() {
        let run = results.ok_run(system)?;
        return run
            .points
            .iter()
            .find(|p| p.workload == *workload)
            .and_then(value);
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// What the rate targets judge: `system`'s mean rate over the rounds over the faster
/// reflector's mean rate. Every round counts (a median round, or the faster of two medians,
/// jumps with one measurement when measurements vary as much as on this rig).
fn rate_over_limit(results: &Results, system: SystemKind, workload: &Workload) -> Option<f64> {
    let limit = SystemKind::REFLECTORS
        .iter()
        .filter_map(|&reflector| round_mean(results, reflector, workload, rate_of))
        .reduce(f64::max);
    divide(round_mean(results, system, workload, rate_of), limit)
}

/// What the CPU targets judge: `system`'s mean CPU per request over the rounds over vblade's.
fn cpu_over_vblade(results: &Results, system: SystemKind, workload: &Workload) -> Option<f64> {
    divide(
        round_mean(results, system, workload, cpu_of),
        round_mean(results, SystemKind::Vblade, workload, cpu_of),
    )
}

/// `system`'s rate over the machine's limit in each round: the round's rate over the faster
/// reflector's in the same round (rounds where a figure is missing are left out). The systems
/// of a round are measured within seconds of each other, so these pair like with like.
fn round_ratios(results: &Results, system: SystemKind, workload: &Workload) -> Vec<f64> {
    let reflectors: Vec<Vec<Option<f64>>> = SystemKind::REFLECTORS
        .iter()
        .map(|&r| results.round_values(r, workload, rate_of))
        .collect();
    results
        .round_values(system, workload, rate_of)
        .into_iter()
        .enumerate()
        .filter_map(|(round, rate)| {
            let limit = reflectors
                .iter()
                .filter_map(|rates| rates.get(round).copied().flatten())
                .reduce(f64::max);
            divide(rate, limit)
        })
        .collect()
}

/// The range of per-round ratios (`—` with fewer than two rounds).
fn spread(ratios: &[f64]) -> String {
    let low = ratios.iter().copied().reduce(f64::min);
    let high = ratios.iter().copied().reduce(f64::max);
    match (low, high) {
        (Some(low), Some(high)) if ratios.len() >= 2 => format!("{low:.2}–{high:.2}×"),
        _ => "—".into(),
    }
}

/// How many of the points that missed `target` had a round that reached it.
fn misses_within_spread(misses: &[Vec<f64>], target: f64) -> usize {
    misses
        .iter()
        .filter(|rounds| rounds.iter().any(|&r| r >= target))
        .count()
}

/// The sentence under a rate-target table about the rounds' spread.
fn spread_note(missed: usize, within: usize, target: f64) -> String {
    if missed == 0 {
        return String::new();
    }
    format!(
        " Of the {missed} missed, {within} had a round at or above {target:.2}× (\"per round\": \
         each round's rate over the faster reflector's in that round; on this rig one system's \
         rate moves by up to ±25 % from one measurement to the next, so a miss whose rounds \
         straddle the target is within the noise)."
    )
}

/// Every system's figures at every point, with the ratios to vblade and to the machine's
/// limit (the faster reflector); CPU per request is the whole target core's where measured,
/// then the target processes' own; systems that did not run are listed under the table with
/// the reason.
pub fn table(results: &Results) -> String {
    let header = [
        "workload",
        "system",
        "IOPS",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "core busy",
        "core µs/req",
        "process µs/req",
        "IOPS ÷ vblade",
        "÷ limit",
        "CPU ÷ vblade",
        "RX softirq",
        "CPU excl. softirq ÷ vblade",
        "problems",
    ];
    let mut rows = Vec::new();
    for workload in results.workloads() {
        let vblade = iops(results, SystemKind::Vblade, &workload);
        let limit = limit(results, &workload);
        let vblade_cpu = cpu_per_request(results, SystemKind::Vblade, &workload);
        let vblade_without = cpu_without_softirq(results, SystemKind::Vblade, &workload);
        for run in results.systems.iter().filter(|r| r.status == "ok") {
            let Some(point) = run.points.iter().find(|p| p.workload == workload) else {
                continue;
            };
            let mut row = vec![workload.label(), run.system.label().to_owned()];
            match &point.load {
                Some(load) => {
                    let cpu = point.cpu.as_ref();
                    row.extend([
                        thousands(load.iops),
                        format!("{:.1}", load.mb_per_s),
                        format!("{:.1}", load.lat_us.p50),
                        format!("{:.1}", load.lat_us.p99),
                        cpu.and_then(|c| c.core_utilisation)
                            .map_or("—".into(), |u| format!("{:.0}%", u * 100.0)),
                        cpu.and_then(|c| c.core_us_per_request)
                            .map_or("—".into(), |u| format!("{u:.2}")),
                        cpu.map_or("—".into(), |c| format!("{:.2}", c.us_per_request)),
                        ratio(divide(Some(load.iops), vblade)),
                        ratio(divide(Some(load.iops), limit)),
                        ratio(divide(cpu.map(|c| c.lead_us_per_request()), vblade_cpu)),
                        percent(point.profile.as_ref().map(|p| p.rx_softirq)),
                        ratio(divide(
                            cpu_without_softirq(results, run.system, &workload),
                            vblade_without,
                        )),
                    ]);
                }
                None => row.extend((0..12).map(|_| "—".to_owned())),
            }
            row.push(problems(point));
            rows.push(row);
        }
    }
    let mut out = markdown_table(&header, &rows);
    for run in results.systems.iter().filter(|r| r.status != "ok") {
        let _ = writeln!(out, "\n{}: {}", run.system.label(), run.status);
    }
    out
}

/// The targets, each with its ratio in this run and whether it is met, for aoe-xdp on
/// XDP and (when measured) for its resident configuration.
pub fn targets(results: &Results) -> String {
    let mut out = format!(
        "Targets (issue 17): aoe-xdp (XDP) reaches ≥ {RATE_TARGET:.2}× the machine's limit (the \
         faster bare reflector) for random and sequential reads and writes at QD 16 and 64, \
         and its CPU per request (the whole target core's) is ≤ {CPU_TARGET:.2}× vblade's. \
         Judged on means over the rounds (unlike the table above, whose rows are median \
         rounds): \"÷ limit\" is the mean rate over the faster reflector's mean rate, \"CPU ÷ \
         vblade's\" the mean CPU per request over vblade's.\n",
    );
    let measured = |system| results.systems.iter().any(|run| run.system == system);
    let systems = [
        SystemKind::Xdp,
        SystemKind::XdpResident,
        SystemKind::XdpDefaults,
    ];
    for system in systems
        .into_iter()
        .filter(|s| *s == SystemKind::Xdp || measured(*s))
    {
        out.push_str(&targets_of(results, system));
    }
    let packet_ran = results
        .systems
        .iter()
        .any(|run| run.system == SystemKind::Packet && run.status == "ok");
    if packet_ran {
        out.push_str(&packet_targets(results));
    }
    out.push_str(&fixed_load(results));
    out
}

/// The points the saturation targets are judged at: QD 16 and 64, no fixed rate.
fn judged_workloads(results: &Results) -> Vec<Workload> {
    results
        .workloads()
        .into_iter()
        .filter(|w| w.depth >= 16 && w.rate.is_none())
        .collect()
}

/// A target's verdict at one point (`None`: a figure is missing).
fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not assessed",
    }
}

/// The AF_PACKET fallback's rate target at each QD 16-64 point.
fn packet_targets(results: &Results) -> String {
    let system = SystemKind::Packet;
    let rate_head = format!("≥ {PACKET_RATE_TARGET:.2}");
    let header = ["workload", "÷ limit", "per round", &rate_head];
    let mut rows = Vec::new();
    let (mut met, mut count) = (0, 0);
    let mut misses = Vec::new();
    for workload in &judged_workloads(results) {
        let rate = rate_over_limit(results, system, workload);
        let rounds = round_ratios(results, system, workload);
        let ok = rate.map(|r| r >= PACKET_RATE_TARGET);
        count += 1;
        met += usize::from(ok == Some(true));
        rows.push(vec![
            workload.label(),
            judged_ratio(rate, PACKET_RATE_TARGET),
            spread(&rounds),
            verdict(ok).to_owned(),
        ]);
        if ok == Some(false) {
            misses.push(rounds);
        }
    }
    let mut out = format!(
        "\n{} (target: ≥ {PACKET_RATE_TARGET:.2}× the machine's limit):\n\n",
        system.label()
    );
    out.push_str(&markdown_table(&header, &rows));
    let _ = writeln!(
        out,
        "\nRate target met at {met} of {count} points.{}",
        spread_note(
            misses.len(),
            misses_within_spread(&misses, PACKET_RATE_TARGET),
            PACKET_RATE_TARGET
        )
    );
    out
}

/// [`targets`] for one configuration of aoe-xdp.
fn targets_of(results: &Results, system: SystemKind) -> String {
    let rate_head = format!("≥ {RATE_TARGET:.2}");
    let cpu_head = format!("≤ {CPU_TARGET:.2}");
    let without_head = format!("≤ {CPU_TARGET:.2} excl.");
    let header = [
        "workload",
        "÷ limit",
        "per round",
        &rate_head,
        "CPU ÷ vblade's",
        &cpu_head,
        "excl. RX softirq",
        &without_head,
    ];
    let mut rows = Vec::new();
    let (mut rate_met, mut cpu_met, mut without_met, mut count) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    for workload in &judged_workloads(results) {
        let rate = rate_over_limit(results, system, workload);
        let rounds = round_ratios(results, system, workload);
        let cpu = cpu_over_vblade(results, system, workload);
        let without = divide(
            cpu_without_softirq(results, system, workload),
            cpu_without_softirq(results, SystemKind::Vblade, workload),
        );
        let rate_ok = rate.map(|r| r >= RATE_TARGET);
        let cpu_ok = cpu.map(|r| r <= CPU_TARGET);
        let without_ok = without.map(|r| r <= CPU_TARGET);
        count += 1;
        rate_met += usize::from(rate_ok == Some(true));
        cpu_met += usize::from(cpu_ok == Some(true));
        without_met += usize::from(without_ok == Some(true));
        rows.push(vec![
            workload.label(),
            judged_ratio(rate, RATE_TARGET),
            spread(&rounds),
            verdict(rate_ok).to_owned(),
            judged_ratio(cpu, CPU_TARGET),
            verdict(cpu_ok).to_owned(),
            judged_ratio(without, CPU_TARGET),
            verdict(without_ok).to_owned(),
        ]);
        if rate_ok == Some(false) {
            misses.push(rounds);
        }
    }
    let mut out = format!("\n{}:\n\n", system.label());
    out.push_str(&markdown_table(&header, &rows));
    let _ = writeln!(
        out,
        "\nRate target met at {rate_met} of {count} points; CPU target met at {cpu_met} of \
         {count} points (at saturation, where a busy-polling target shows a whole core: its \
         CPU per request there is just 1 ÷ its rate); {without_met} of {count} without the \
         receive softirq that veth runs in the target's sends (the initiator's receive path; \
         see \"Where the target's CPU goes\").{}",
        spread_note(
            misses.len(),
            misses_within_spread(&misses, RATE_TARGET),
            RATE_TARGET
        )
    );
    out
}

/// CPU per request at the fixed offered load, each system against vblade.
fn fixed_load(results: &Results) -> String {
    let Some(workload) = results.workloads().into_iter().find(|w| w.rate.is_some()) else {
        return String::new();
    };
    let vblade = round_mean(results, SystemKind::Vblade, &workload, cpu_of);
    let rows: Vec<Vec<String>> = results
        .systems
        .iter()
        .filter(|run| run.status == "ok")
        .map(|run| {
            let cpu = round_mean(results, run.system, &workload, cpu_of);
            let versus = divide(cpu, vblade);
            let without = divide(
                cpu_without_softirq(results, run.system, &workload),
                cpu_without_softirq(results, SystemKind::Vblade, &workload),
            );
            let is_target = matches!(
                run.system,
                SystemKind::Xdp
                    | SystemKind::XdpPoll
                    | SystemKind::XdpSpin
                    | SystemKind::XdpResident
                    | SystemKind::XdpDefaults
                    | SystemKind::XdpNap
            );
            vec![
                run.system.label().to_owned(),
                thousands(round_mean(results, run.system, &workload, rate_of).unwrap_or(0.0)),
                cpu.map_or_else(|| "–".into(), |c| format!("{c:.2}")),
                judged_ratio(versus, IDLE_CPU_TARGET),
                match (is_target, versus) {
                    (true, Some(r)) if r <= IDLE_CPU_TARGET => "met".into(),
                    (true, Some(_)) => "NOT met".into(),
                    _ => String::new(),
                },
                ratio(without),
            ]
        })
        .collect();
    let mut out = format!(
        "\nCPU per request at a fixed offered load ({}, below every system's maximum), where \
         it measures work rather than polling (means over the rounds):\n\n",
        workload.label()
    );
    out.push_str(&markdown_table(
        &[
            "system",
            "IOPS",
            "CPU µs/req",
            "÷ vblade",
            "≤ 0.40",
            "excl. RX softirq ÷ vblade",
        ],
        &rows,
    ));
    out
}

/// `a::b::C::f` → `C::f`: the last two parts of a function's path.
fn short(symbol: &str) -> &str {
    let mut cut = symbol.len();
    for _ in 0..2 {
        match symbol[..cut].rfind("::") {
            Some(at) => cut = at,
            None => return symbol,
        }
    }
    &symbol[cut + 2..]
}

/// Where each system's CPU went (`perf record`) at the saturating random points (QD 64).
pub fn profiles(results: &Results) -> String {
    let workloads: Vec<Workload> = results
        .workloads()
        .into_iter()
        .filter(|w| w.depth == 64 && w.pattern == Pattern::Random && w.rate.is_none())
        .collect();
    let profiled = |w: &Workload| {
        results
            .systems
            .iter()
            .any(|run| profile(results, run.system, w).is_some())
    };
    if !workloads.iter().any(profiled) {
        return String::new();
    }
    let mut out = String::from(
        "\nWhere the target's CPU goes (`perf record -g` on the target process, cpu-clock \
         samples sorted by call stack, in a pass of its own after the counted rounds: perf \
         disturbs what it samples). RX softirq is `net_rx_action` run in the target's \
         context. ",
    );
    out.push_str(match results.meta.topology {
        Topology::Plain => {
            "On a plain veth pair a send delivers the frame to the peer inside the sender's \
             system call, so this is the initiator's receive path (`tpacket_rcv` copying the \
             reply into its ring), which between two machines runs on the initiator's CPU. It \
             costs every system about the same per reply and pulls every CPU ratio towards 1; \
             the columns \"excl. softirq\" leave it out.\n"
        }
        Topology::TwoMachine => {
            "As between two machines each side's receive path runs in its own NAPI thread, so \
             this is near 0 %: the target's receive work shows in the core's busy time, not in \
             the target process.\n"
        }
    });
    let header = [
        "system",
        "samples",
        "user",
        "file I/O",
        "other syscalls",
        "RX softirq",
        "other kernel",
        "CPU µs/req",
        "excl. softirq",
        "busiest functions",
    ];
    for workload in workloads.iter().filter(|w| profiled(w)) {
        let rows: Vec<Vec<String>> = results
            .systems
            .iter()
            .filter_map(|run| {
                let p = profile(results, run.system, workload)?;
                let cpu = cpu_per_request(results, run.system, workload);
                let top: Vec<String> = p
                    .top
                    .iter()
                    .take(3)
                    .map(|(f, share)| format!("`{}` {:.0}%", short(f), share * 100.0))
                    .collect();
                Some(vec![
                    run.system.label().to_owned(),
                    p.samples.to_string(),
                    percent(Some(p.user)),
                    percent(Some(p.file_io)),
                    percent(Some(p.other_syscalls)),
                    percent(Some(p.rx_softirq)),
                    percent(Some(p.other_kernel)),
                    cpu.map_or_else(|| "—".into(), |c| format!("{c:.2}")),
                    cpu.map_or_else(|| "—".into(), |c| format!("{:.2}", p.without_rx_softirq(c))),
                    top.join(", "),
                ])
            })
            .collect();
        let _ = writeln!(out, "\n{}:\n", workload.label());
        out.push_str(&markdown_table(&header, &rows));
    }
    out
}

/// The markdown summary (without a title): set-up, method, table, targets, how to regenerate.
pub fn summary(results: &Results) -> String {
    let meta = &results.meta;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured {} on {} ({} CPUs), Linux {}, with `cargo xtask bench{}`: {} round(s); in \
         each, every point is measured on every system in turn ({} s after a {} s warm-up), \
         and each row shows the round with the median rate.\n",
        meta.date,
        meta.cpu_model,
        meta.cpus,
        meta.kernel,
        if meta.quick { " --quick" } else { "" },
        meta.rounds,
        meta.seconds,
        meta.warmup
    );
    out.push_str(&setup(meta));
    let _ = writeln!(
        out,
        "- Backing store: {}. Write points start with every page of the file dirty (synced, \
         then written once sequentially through the system itself): the steady state of a \
         target taking writes.",
        meta.backing
    );
    let idle = if meta.poll_default {
        format!(
            "(`worker-cores = [{}]`, the default `idle = \"poll\"`: the worker polls for 50 µs \
             after its last work, then sleeps in poll(2) until a frame arrives or another \
             worker wakes it), and with `socket = \"xdp\"`, `idle = \"spin\"` (\"idle=spin\": \
             the worker polls a whole core even when idle, so at low load its CPU per request \
             is mostly polling), and with `socket = \"xdp\"`, `idle-spin-us = 5` and a nap of \
             {} µs after the spin (\"nap\": `idle-nap-us`, under a steady load one wake-up \
             per nap instead of one per request)",
            meta.target_core, NAP_US
        )
    } else {
        format!(
            "(`worker-cores = [{}]`, `idle = \"spin\"`: the worker polls a whole core even when \
             idle, so at low load its CPU per request is mostly polling), and with `socket = \
             \"xdp\"`, `idle = \"poll\"` (sleeps in poll(2) after 5 µs without work), and so \
             with a nap of {} µs after the spin (\"nap\": `idle-nap-us`, under a steady load one \
             wake-up per nap instead of one per request)",
            meta.target_core, NAP_US
        )
    };
    let packet_reflector_idle = if meta.packet_napi_wait {
        "on veth, whose NAPI runs with GRO on, it polls its ring for 5 µs, then busy-polls that \
         NAPI for 45 µs before it sleeps, as aoe-xdp's worker does in AF_PACKET mode"
    } else {
        "sleeping when idle"
    };
    let _ = writeln!(
        out,
        "- Systems: aoe-xdp with `socket = \"xdp\"` and with `socket = \"packet\"` \
         {idle}, and with `socket = \"xdp\"`, `resident = true` (the device locked in memory, reads \
         copied through a locked mapping), and with `socket = \"xdp\"` and neither \
         `mapped-reads` nor `mapped-writes` and with `durability = \"sync\"` (\"defaults\": a \
         system call or an io_uring request per read and per write, every write acknowledged \
         once durable, by a data sync shared with the writes completed before it); Debian's `vblade -b 64`; the bare AF_XDP reflector `aoe-bench reflect` (no storage: the \
         ceiling of the path) and the bare AF_PACKET reflector `aoe-bench reflect --socket \
         packet` (a `TPACKET_V2` ring and `sendmmsg`, {packet_reflector_idle}): the faster of the \
         two at a point is \
         \"the machine's limit\" there. One point offers a fixed load (`aoe-bench load --rate`) below \
         every system's maximum, where CPU per request measures work rather than polling."
    );
    out.push_str(&cpu_method(meta));
    for run in &results.systems {
        for note in &run.notes {
            let _ = writeln!(out, "- {} reported: `{note}`", run.system.label());
        }
    }
    let disturbed: Vec<String> = results
        .systems
        .iter()
        .filter(|r| r.status == "ok" && r.background_cores > BACKGROUND_WARN_CORES)
        .map(|r| format!("{} ({:.2} cores)", r.system.label(), r.background_cores))
        .collect();
    if !disturbed.is_empty() {
        let _ = writeln!(
            out,
            "- **Disturbed run:** other work kept the machine busy just before: {}. Those \
             figures suffer (latency tails most) and their ratios are unreliable.",
            disturbed.join(", ")
        );
    }
    for note in [steal_note(results), fault_note(results)]
        .into_iter()
        .flatten()
    {
        out.push_str(&note);
    }
    let _ = writeln!(
        out,
        "- Noise: runs on this VM differ by about ±25%, and so do one system's measurements \
         within a run, from one to the next (1 s measurements of one system at one point \
         ranged over 0.6-1.5× their mean on 2026-12-06). Only ratios within one run count; \
         the systems compared in a row were measured within seconds of each other (all are \
         started first and paused with SIGSTOP while another one is measured), and the \
         target tables give each ratio's range over the rounds. More rounds narrow it \
         (`--seconds 1 --rounds 10`).\n"
    );
    out.push_str(&table(results));
    out.push('\n');
    out.push_str(&targets(results));
    out.push_str(&profiles(results));
    let _ = writeln!(
        out,
        "\nPlot: `target/bench/qd.svg` (random-read IOPS and latency against queue depth); raw \
         numbers: `target/bench/results.json` (every round). Regenerate (as root, about 40 \
         minutes on a 2-vCPU VM: 38 on 2026-12-08): `cargo xtask bench`; `cargo xtask bench --update-readme` also rewrites this section; `cargo \
         xtask bench --quick` is a 1-minute smoke run."
    );
    out
}

/// The summary's set-up line: the topology, the links, the cores.
fn setup(meta: &Meta) -> String {
    let pairs = match meta.nics {
        1 => "a veth pair".to_owned(),
        n => format!(
            "{n} veth pairs (one target serving all of them; `aoe-bench load` spreads over every \
             path; vblade and the reflectors run one process per interface)"
        ),
    };
    let topology = match meta.topology {
        Topology::TwoMachine => {
            "As between two machines: on every veth end `ethtool -K IF gro on tso off` and \
             `threaded` NAPI, each end's `napi/IF-*` kernel thread pinned to its own side's core \
             (read back at every point), so that each side pays for its own receive path (the \
             target's XDP program and AF_XDP copy, or its packet socket's receive, on the \
             target's core; the initiator's on the initiator's)."
        }
        Topology::Plain => {
            "Plain veth (`--topology plain`): a send runs the peer's receive path inside the \
             sender's system call, so the target's receive work is charged to the initiator's \
             core and the initiator's to the target's."
        }
    };
    let halt_poll = match meta.halt_poll_ns {
        Some((ns, machine)) => format!(
            " The VM's idle vCPUs polled {} µs before they halted (`guest_halt_poll_ns`, {machine} \
             on this machine otherwise, put back after the run), so that a system whose core \
             idles between frames (vblade) is woken by a flag rather than by an IPI that the \
             host must deliver to a halted vCPU: as on a machine whose idle cores sleep \
             lightly (with 0, vblade's p50 at queue depth 1 was about twice as long).",
            ns / 1000
        ),
        None => String::new(),
    };
    let fifo = if meta.napi_fifo {
        " `--napi-fifo`: the NAPI threads ran at SCHED_FIFO 1, so receive work preempted any \
         thread on its core at once, as softirq receive does on a machine with a NIC."
    } else {
        ""
    };
    let pollers = match (meta.yielding_pollers, meta.napi_wait) {
        (true, true) if meta.topology == Topology::TwoMachine => {
            let sockets = if meta.packet_napi_wait {
                "their socket is tied to no NAPI (an AF_XDP socket on veth, a packet socket \
                 anywhere: aoe-xdp in either mode)"
            } else {
                "the socket is tied to no NAPI on veth (AF_XDP mode only)"
            };
            format!(
                " The load generator polls without sleeping and yields its core after a round \
                 that found nothing, so that its side's NAPI thread runs at once, as softirq \
                 receive would, rather than up to a scheduler tick (4 ms) later; aoe-xdp's \
                 workers do the same for 5 µs after their last work (`idle-yield`, on by \
                 default), and so does the AF_XDP reflector. Then, as {sockets}, both wait for \
                 frames in an io_uring that busy-polls the target end's NAPI for the rest of \
                 their 50 µs spin (aoe-xdp's default `idle-spin-us`; `busy-poll-usecs = 0` \
                 turns it off, and `idle = \"spin\"` or a nap do without) before they sleep: a \
                 frame that comes meanwhile is received in their own thread, with no wake-up \
                 of the NAPI thread."
            )
        }
        (true, false) if meta.topology == Topology::TwoMachine => {
            " The load generator (and the AF_XDP reflector) poll without sleeping and yield \
             their core after a round that found nothing, so that their side's NAPI thread runs \
             at once, as softirq receive would, rather than up to a scheduler tick (4 ms) \
             later; aoe-xdp's workers do the same (`idle-yield`, on by default)."
                .to_owned()
        }
        _ => String::new(),
    };
    format!(
        "- Set-up: two network namespaces joined by {pairs} (MTU {}, one queue), one initiator \
         (`aoe-bench load`) for every system; {} B requests (the most one {}-byte frame \
         carries). Target pinned to core {}, initiator to core {}. {topology}{halt_poll}{fifo}{pollers}\n",
        meta.mtu, meta.request_bytes, meta.mtu, meta.target_core, meta.initiator_core
    )
}

/// Share of a point's time above which the host's steal is worth a line in the summary.
const STEAL_NOTE: f64 = 0.05;

/// Every kept measurement that has CPU figures, with its system's run and its point.
fn cpu_samples(results: &Results) -> impl Iterator<Item = (&SystemRun, &Point, &CpuSample)> {
    results.systems.iter().flat_map(|run| {
        run.samples
            .iter()
            .filter_map(move |point| Some((run, point, point.cpu.as_ref()?)))
    })
}

/// The first of `values` with the largest figure, as (figure, "system at workload").
fn largest<T: PartialOrd + Copy>(values: &[(T, &SystemRun, &Point)]) -> Option<(T, String)> {
    let (most, run, point) =
        values
            .iter()
            .copied()
            .reduce(|best, next| if next.0 > best.0 { next } else { best })?;
    Some((
        most,
        format!("{} at {}", run.system.label(), point.workload.label()),
    ))
}

/// The summary's line on the host's steal, when it took more than [`STEAL_NOTE`] of either
/// core at some point: how often, and the worst point.
fn steal_note(results: &Results) -> Option<String> {
    let steals: Vec<(f64, &SystemRun, &Point)> = cpu_samples(results)
        .filter_map(|(run, point, cpu)| {
            Some((cpu.core_steal?.max(cpu.initiator_steal?), run, point))
        })
        .collect();
    let stolen = steals
        .iter()
        .filter(|(steal, ..)| *steal > STEAL_NOTE)
        .count();
    let (most, at) = largest(&steals)?;
    let remeasured: u32 = results.systems.iter().map(|r| r.remeasured).sum();
    let again = if remeasured > 0 {
        format!(
            " {remeasured} measurements were discarded and the point measured again because \
             the host denied more than {:.0} % of a core's demand (at most {REMEASURE_MAX} \
             times per point; the last measurement counts).",
            REMEASURE_STEAL * 100.0
        )
    } else {
        String::new()
    };
    (stolen > 0 || remeasured > 0).then(|| {
        format!(
            "- **Host steal:** at {stolen} of {} kept measurements the host took more \
             than {:.0} % of the target's or the initiator's core (the VM's neighbours ran; \
             the worst: {:.0} %, {at}). Steal is not counted as the target's CPU, but it slows \
             both sides, and sleepers most (each wake-up waits for the host).{again}\n",
            steals.len(),
            STEAL_NOTE * 100.0,
            most * 100.0
        )
    })
}

/// The summary's line on major page faults of the target's processes during measurements,
/// when there were any: how many points, how many faults, the worst point.
fn fault_note(results: &Results) -> Option<String> {
    let faults: Vec<(u64, &SystemRun, &Point)> = cpu_samples(results)
        .filter_map(|(run, point, cpu)| Some((cpu.major_faults.filter(|&f| f > 0)?, run, point)))
        .collect();
    let total: u64 = faults.iter().map(|(count, ..)| count).sum();
    let (most, at) = largest(&faults)?;
    Some(format!(
        "- **Major page faults:** at {} measured points the target's processes waited \
         for the disk to read back a page of theirs ({total} faults in all; the most: {most}, \
         {at}): memory the machine had evicted (their code, say) while they were paused. Those \
         points' latency tails suffer.\n",
        faults.len()
    ))
}

/// The summary's line on how CPU per request is measured.
fn cpu_method(meta: &Meta) -> String {
    let charged = match meta.topology {
        Topology::TwoMachine => {
            "The core figure includes the target's NAPI thread and softirqs: all the receive \
             and send work a target machine would do. The \"RX softirq\" columns come from a \
             profile of the target process alone."
        }
        Topology::Plain => {
            "On plain veth each side's send runs the other side's receive path: the target's \
             receive work (XDP, or delivery to a packet socket) is charged to the initiator's \
             core and not counted; the initiator's receive path is charged to the target and \
             counted (see \"Where the target's CPU goes\", and the columns \"excl. softirq\")."
        }
    };
    format!(
        "- CPU per request: {}; divided by the request rate (older results without the core \
         figure show the process figure in the ratios). {charged}\n",
        meta.cpu_method
    )
}

/// `readme` with the text between the `markers` (start, end) replaced by `body`.
pub fn replace_section(
    readme: &str,
    (start_marker, end_marker): (&str, &str),
    body: &str,
) -> Result<String> {
    let (Some(start), Some(end)) = (readme.find(start_marker), readme.find(end_marker)) else {
        bail!("README.md has no {start_marker} … {end_marker} section");
    };
    if end < start {
        bail!("README.md: {end_marker} comes before {start_marker}");
    }
    let head = &readme[..start + start_marker.len()];
    let tail = &readme[end..];
    Ok(format!("{head}\n{}\n{tail}", body.trim_end()))
}

/// Line colours by system, fixed so the plot reads the same in every run.
fn colour(system: SystemKind) -> RGBColor {
    match system {
        SystemKind::Xdp => RGBColor(0x1f, 0x77, 0xb4),
        SystemKind::Packet => RGBColor(0x2c, 0xa0, 0x2c),
        SystemKind::Vblade => RGBColor(0xd6, 0x27, 0x28),
        SystemKind::Reflector => RGBColor(0x7f, 0x7f, 0x7f),
        SystemKind::PacketReflector => RGBColor(0xbc, 0xbd, 0x22),
        SystemKind::Baseline => RGBColor(0xff, 0x7f, 0x0e),
        SystemKind::XdpPoll => RGBColor(0x17, 0xbe, 0xcf),
        SystemKind::XdpSpin => RGBColor(0x0b, 0x5e, 0x67),
        SystemKind::XdpResident => RGBColor(0x94, 0x67, 0xbd),
        SystemKind::XdpDefaults => RGBColor(0x8c, 0x56, 0x4b),
        SystemKind::XdpNap => RGBColor(0xe3, 0x77, 0xc2),
    }
}

/// (log2 of the depth, iops, p50, p99) of each system's random reads.
type Curve = (SystemKind, Vec<(f64, f64, f64, f64)>);

fn random_read_curves(results: &Results) -> Vec<Curve> {
    results
        .systems
        .iter()
        .filter(|r| r.status == "ok")
        .map(|run| {
            let mut points: Vec<(f64, f64, f64, f64)> = run
                .points
                .iter()
                .filter(|p| {
                    p.workload.op == Op::Read
                        && p.workload.pattern == Pattern::Random
                        && p.workload.rate.is_none()
                })
                .filter_map(|p| {
                    let load = p.load.as_ref()?;
                    Some((
                        f64::from(p.workload.depth).log2(),
                        load.iops,
                        load.lat_us.p50,
                        load.lat_us.p99,
                    ))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (run.system, points)
        })
        .filter(|(_, points)| !points.is_empty())
        .collect()
}

/// Writes an SVG with random-read IOPS (left) and latency (right: p50 solid, p99 dashed)
/// against queue depth (log scale), one line per system.
pub fn plot(results: &Results, path: &Path) -> Result<()> {
    let curves = random_read_curves(results);
    let max_iops = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(1.0, f64::max);
    let max_latency = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.3))
        .fold(1.0, f64::max);
    let min_latency = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.2))
        .fold(max_latency, f64::min)
        .max(0.1);
    let root = SVGBackend::new(path, (1100, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(550);

    let caption = "random 1 KiB reads: IOPS";
    let mut iops_chart = depth_chart(&left, caption, 70, 0.0..max_iops * 1.15)?;
    draw_depth_mesh(&mut iops_chart, "IOPS", &|v| thousands(*v))?;
    for (system, points) in &curves {
        let line: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        draw_line(&mut iops_chart, *system, line.clone())?;
        iops_chart
            .draw_series(
                line.iter()
                    .map(|&p| Circle::new(p, 4, colour(*system).filled())),
            )
            .map_err(|e| anyhow!("{e}"))?;
    }
    draw_legend(&mut iops_chart)?;

    let caption = "latency (p50 solid, p99 dashed)";
    let latency_range = (min_latency * 0.7..max_latency * 1.4).log_scale();
    let mut latency_chart = depth_chart(&right, caption, 60, latency_range)?;
    draw_depth_mesh(&mut latency_chart, "µs (log scale)", &|v| {
        format!("{v:.0}")
    })?;
    for (system, points) in &curves {
        let style = colour(*system).stroke_width(2);
        let p50: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.2)).collect();
        let p99: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.3)).collect();
        draw_line(&mut latency_chart, *system, p50.clone())?;
        latency_chart
            .draw_series(DashedLineSeries::new(p99.clone(), 6, 4, style))
            .map_err(|e| anyhow!("{e}"))?;
        latency_chart
            .draw_series(
                p50.iter()
                    .chain(&p99)
                    .map(|&p| Circle::new(p, 3, colour(*system).filled())),
            )
            .map_err(|e| anyhow!("{e}"))?;
    }
    draw_legend(&mut latency_chart)?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// A chart of the depth figure: x is the queue depth on a log2 axis (-0.3..6.3 holds depths 1
/// to 64), y spans `y_range`.
type DepthChart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// A [`DepthChart`] on `area` under `caption`, `y_label_area` pixels left for the y labels.
fn depth_chart<'a, 'b, Y: AsRangedCoord<Value = f64>>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    y_label_area: u32,
    y_range: Y,
) -> Result<DepthChart<'a, 'b, Y::CoordDescType>> {
    ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(y_label_area)
        .build_cartesian_2d(-0.3f64..6.3, y_range)
        .map_err(|e| anyhow!("{e}"))
}

/// The mesh of a [`DepthChart`]: x labelled with the depths themselves (1, 2, 4, … 64), y
/// described as `y_desc` and labelled by `y_label`.
fn draw_depth_mesh<Y: Ranged<ValueType = f64> + ValueFormatter<f64>>(
    chart: &mut DepthChart<'_, '_, Y>,
    y_desc: &str,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<()> {
    chart
        .configure_mesh()
        .x_desc("queue depth")
        .y_desc(y_desc)
        .x_labels(7)
        .x_label_formatter(&|x| format!("{:.0}", x.exp2()))
        .y_label_formatter(y_label)
        .draw()
        .map_err(|e| anyhow!("{e}"))
}

/// `line` as `system`'s solid line, named in the legend.
fn draw_line<Y: Ranged<ValueType = f64>>(
    chart: &mut DepthChart<'_, '_, Y>,
    system: SystemKind,
    line: Vec<(f64, f64)>,
) -> Result<()> {
    let style = colour(system).stroke_width(2);
    chart
        .draw_series(LineSeries::new(line, style))
        .map_err(|e| anyhow!("{e}"))?
        .label(system.label())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    Ok(())
}

/// The legend of a [`DepthChart`], upper left on a translucent white box.
fn draw_legend<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut DepthChart<'a, 'b, Y>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::super::results::{medians, CpuSample, Meta, SystemRun};
    use super::*;
    use crate::loadgen::report::{Latency, Report as LoadReport};

    /// The row of `table` for `workload` served by aoe-xdp over AF_XDP.
    fn xdp_row<'a>(table: &'a str, workload: &str) -> &'a str {
        table
            .lines()
            .find(|l| l.contains(workload) && l.contains("aoe-xdp (XDP)"))
            .unwrap_or_else(|| panic!("no aoe-xdp (XDP) row for {workload}:\n{table}"))
    }

    fn load(iops: f64) -> LoadReport {
        LoadReport {
            requests: 3,
            bytes: 3072,
            duration_s: 3.0,
            iops,
            mb_per_s: iops * 1024.0 / 1e6,
            lat_us: Latency {
                p50: 1e6 / iops,
                p99: 2e6 / iops,
                p999: 3e6 / iops,
                max: 4e6 / iops,
            },
            retransmits: 0,
            errors: 0,
            verify_failures: 0,
            paths: Vec::new(),
        }
    }

    fn run(system: SystemKind, iops: f64, us_per_request: f64) -> SystemRun {
        let points = [1, 16, 64]
            .into_iter()
            .map(|depth| Point {
                workload: Workload {
                    op: Op::Read,
                    pattern: Pattern::Random,
                    depth,
                    rate: None,
                },
                load: Some(load(iops * f64::from(depth).sqrt())),
                cpu: Some(CpuSample {
                    cpu_s: 1.0,
                    wall_s: 1.0,
                    utilisation: 1.0,
                    us_per_request,
                    instructions_per_request: None,
                    core_utilisation: None,
                    core_us_per_request: None,
                    core_steal: None,
                    initiator_steal: None,
                    major_faults: None,
                }),
                error: None,
                profile: Some(Profile {
                    samples: 1000,
                    rx_softirq: 0.5,
                    user: 0.5,
                    top: vec![("aoe_xdp::dataplane::worker::run".into(), 0.25)],
                    ..Profile::default()
                }),
                cached: Some(1.0),
                napi: Vec::new(),
            })
            .collect();
        SystemRun {
            system,
            status: "ok".into(),
            notes: Vec::new(),
            points,
            samples: Vec::new(),
            background_cores: 0.0,
            remeasured: 0,
        }
    }

    fn results() -> Results {
        let mut packet = run(SystemKind::Packet, 1.0, 1.0);
        packet.status = "n/a: socket = \"packet\" is not functional in this build".into();
        packet.points.clear();
        Results {
            meta: Meta {
                date: "2025-01-01T00:00:00Z".into(),
                kernel: "6.18".into(),
                cpu_model: "test".into(),
                cpus: 2,
                seconds: 3,
                warmup: 1,
                quick: false,
                rounds: 1,
                mtu: 1500,
                topology: Topology::Plain,
                napi_fifo: false,
                halt_poll_ns: None,
                yielding_pollers: true,
                napi_wait: true,
                packet_napi_wait: true,
                poll_default: true,
                nics: 1,
                request_bytes: 1024,
                target_core: 0,
                initiator_core: 1,
                backing: "file".into(),
                cpu_method: "stat".into(),
                clk_tck: 100,
            },
            systems: vec![
                run(SystemKind::Xdp, 90_000.0, 5.0),
                packet,
                run(SystemKind::Vblade, 30_000.0, 20.0),
                run(SystemKind::Reflector, 100_000.0, 4.0),
            ],
        }
    }

    #[test]
    fn fixed_load_cpu_is_judged_against_vblade_and_kept_out_of_the_saturation_targets() {
        let mut results = results();
        let fixed = Workload {
            op: Op::Read,
            pattern: Pattern::Random,
            depth: 16,
            rate: Some(40_000),
        };
        for (run, us) in results.systems.iter_mut().zip([2.0, 0.0, 10.0, 1.0]) {
            if run.status != "ok" {
                continue;
            }
            let mut point = run.points[1].clone();
            point.workload = fixed;
            point.cpu.as_mut().unwrap().us_per_request = us;
            run.points.push(point);
        }
        let text = targets(&results);
        assert!(text.contains("rand read QD16 @40k/s"), "{text}");
        let xdp = text
            .lines()
            .find(|l| l.starts_with("| aoe-xdp (XDP)"))
            .unwrap();
        // 2 µs / 10 µs.
        assert!(xdp.contains("0.20×") && xdp.contains("met"), "{xdp}");
        let vblade = text.lines().find(|l| l.starts_with("| vblade")).unwrap();
        assert!(!vblade.contains("met"), "{vblade}");
        // The saturation table still has its 2 points (QD16, QD64), not the fixed-load one.
        assert!(
            text.contains("at 0 of 2 points") || text.contains("of 2 points"),
            "{text}"
        );
    }

    #[test]
    fn the_packet_fallback_is_judged_against_its_own_rate_target() {
        let mut results = results();
        // Against the reflector's 400k (QD 16) and 800k (QD 64): 0.80× met, 0.70× not.
        let mut packet = run(SystemKind::Packet, 80_000.0, 6.0);
        packet.points[2].load.as_mut().unwrap().iops = 560_000.0;
        results.systems[1] = packet;
        let text = targets(&results);
        let table = text
            .split("aoe-xdp (AF_PACKET) (target: ≥ 0.75×")
            .nth(1)
            .expect("a table for the AF_PACKET mode");
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| rand")).collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(
            rows[0].contains("0.80×") && rows[0].contains("| met"),
            "{table}"
        );
        assert!(
            rows[1].contains("0.70×") && rows[1].contains("NOT met"),
            "{table}"
        );
        assert!(table.contains("met at 1 of 2 points"), "{table}");
        // Without an AF_PACKET run (here: not functional) there is no such table.
        assert!(!targets(&self::results()).contains("(target: ≥ 0.75×"));
    }

    #[test]
    fn table_has_ratios_to_vblade_and_reflector_and_lists_missing_systems() {
        let table = table(&results());
        let xdp16 = xdp_row(&table, "rand read QD16");
        // 90k / 30k, 90k / 100k, 5 µs / 20 µs.
        assert!(xdp16.contains("3.00×"), "{xdp16}");
        assert!(xdp16.contains("0.90×"), "{xdp16}");
        assert!(xdp16.contains("0.25×"), "{xdp16}");
        assert!(xdp16.contains("360,000"), "{xdp16}");
        assert!(table.contains("aoe-xdp (AF_PACKET): n/a: socket"));
        // Every row has as many cells as the header.
        let cells: Vec<usize> = table
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.matches('|').count())
            .collect();
        assert!(cells.windows(2).all(|w| w[0] == w[1]), "{table}");
    }

    #[test]
    fn each_row_is_the_round_with_the_median_rate() {
        let workload = |depth| Workload {
            op: Op::Read,
            pattern: Pattern::Random,
            depth,
            rate: None,
        };
        let sample = |depth, iops: Option<f64>| Point {
            workload: workload(depth),
            load: iops.map(load),
            cpu: None,
            error: iops.is_none().then(|| "failed".to_owned()),
            profile: None,
            cached: None,
            napi: Vec::new(),
        };
        let samples = [
            sample(16, Some(10.0)),
            sample(64, Some(5.0)),
            sample(16, Some(30.0)),
            sample(64, None),
            sample(16, Some(20.0)),
            sample(64, Some(7.0)),
        ];
        let rows = medians(&samples, &[workload(16), workload(64), workload(1)]);
        let rates: Vec<Option<f64>> = rows
            .iter()
            .map(|p| p.load.as_ref().map(|l| l.iops))
            .collect();
        // A failed round counts as the slowest; a workload never measured has no row.
        assert_eq!(rates, [Some(20.0), Some(5.0)]);
    }

    /// The summary's line that holds `marker`.
    fn summary_line(results: &Results, marker: &str) -> String {
        let text = summary(results);
        text.lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no line with {marker:?}:\n{text}"))
            .to_owned()
    }

    #[test]
    fn the_summary_names_points_where_the_host_stole_the_cpu() {
        let mut results = results();
        let steal = |results: &mut Results, system: usize, target, initiator| {
            let run = &mut results.systems[system];
            run.samples = run.points.clone();
            for point in &mut run.samples {
                let cpu = point.cpu.as_mut().unwrap();
                cpu.core_steal = Some(target);
                cpu.initiator_steal = Some(initiator);
            }
        };
        // Older results (no steal figures) and a quiet host: no line.
        assert!(!summary(&results).contains("Host steal"));
        steal(&mut results, 0, 0.01, 0.04);
        assert!(!summary(&results).contains("Host steal"));
        // The initiator's core counts too; the worst point is named.
        steal(&mut results, 2, 0.02, 0.30);
        let line = summary_line(&results, "Host steal");
        assert!(line.contains("at 3 of 6 kept measurements"), "{line}");
        assert!(!line.contains("measured again"), "{line}");
        results.systems[2].remeasured = 4;
        let text = summary(&results);
        assert!(
            text.contains("4 measurements were discarded and the point measured again"),
            "{text}"
        );
        assert!(
            line.contains("the worst: 30 %, vblade at rand read QD1"),
            "{line}"
        );
    }

    #[test]
    fn the_summary_counts_major_page_faults_of_the_target() {
        let mut results = results();
        assert!(!summary(&results).contains("Major page faults"));
        for (system, faults) in [(0, [0, 3, 0]), (2, [0, 0, 12])] {
            let run = &mut results.systems[system];
            run.samples = run.points.clone();
            for (point, faults) in run.samples.iter_mut().zip(faults) {
                point.cpu.as_mut().unwrap().major_faults = Some(faults);
            }
        }
        let line = summary_line(&results, "Major page faults");
        assert!(line.contains("at 2 measured points"), "{line}");
        assert!(
            line.contains("15 faults in all; the most: 12, vblade at rand read QD64"),
            "{line}"
        );
    }

    #[test]
    fn the_set_up_says_how_long_idle_vcpus_polled_where_the_run_set_it() {
        let mut results = results();
        results.meta.topology = Topology::TwoMachine;
        assert!(!setup(&results.meta).contains("guest_halt_poll_ns"));
        results.meta.halt_poll_ns = Some((200_000, 0));
        let text = setup(&results.meta);
        assert!(
            text.contains("polled 200 µs before they halted (`guest_halt_poll_ns`, 0 on this"),
            "{text}"
        );
    }

    #[test]
    fn the_resident_configuration_is_judged_separately_when_measured() {
        let mut results = results();
        assert!(!targets(&results).contains("aoe-xdp (XDP, resident):"));
        results
            .systems
            .push(run(SystemKind::XdpResident, 95_000.0, 1.0));
        let text = targets(&results);
        let (plain, resident) = text
            .split_once("aoe-xdp (XDP, resident):")
            .expect("a section for the resident configuration");
        assert!(plain.contains("aoe-xdp (XDP):"), "{text}");
        // 95k / 100k and 1 µs / 20 µs; XDP's own verdicts are unchanged (90k, 5 µs).
        assert!(
            resident.contains("0.95×") && resident.contains("0.05×"),
            "{text}"
        );
        assert!(plain.contains("0.90×") && plain.contains("0.25×"), "{text}");
    }

    #[test]
    fn targets_are_judged_at_depth_16_and_64_only() {
        let mut results = results();
        let text = targets(&results);
        assert!(!text.contains("QD1 "), "{text}");
        assert!(text.contains("Rate target met at 2 of 2 points"), "{text}");
        assert!(text.contains("CPU target met at 2 of 2 points"), "{text}");
        // Slower than 85% of the reflector: not met.
        results.systems[0] = run(SystemKind::Xdp, 80_000.0, 9.0);
        let text = targets(&results);
        assert!(text.contains("Rate target met at 0 of 2"), "{text}");
        assert!(text.contains("CPU target met at 0 of 2"), "{text}");
        assert!(text.contains("NOT met"));
        // Without a reflector there is nothing to compare with.
        results.systems.pop();
        assert!(targets(&results).contains("not assessed"));
        // A system started on a busy machine is called out in the summary.
        assert!(!summary(&results).contains("Disturbed"));
        results.systems[1].background_cores = 1.5;
        assert!(
            !summary(&results).contains("Disturbed"),
            "n/a rows are not measured"
        );
        results.systems[2].background_cores = 1.5;
        assert!(summary(&results).contains(
            "Disturbed run:** other work kept the machine busy just before: vblade (1.50 cores)"
        ));
    }

    /// `system`'s run with one QD 16 random-read sample per rate, as rounds, and the sample
    /// with the median rate as its point.
    fn rounds_of(system: SystemKind, rates: &[f64]) -> SystemRun {
        let mut run = run(system, 1.0, 1.0);
        let template = run.points[1].clone();
        run.samples = rates
            .iter()
            .map(|&iops| Point {
                load: Some(load(iops)),
                ..template.clone()
            })
            .collect();
        run.points = medians(&run.samples, &[template.workload]);
        run
    }

    #[test]
    fn each_round_is_paired_with_the_faster_reflector_of_that_round() {
        let mut results = results();
        // Means: xdp 81.7k against the AF_XDP reflector's 100k (0.82×, a miss; the median
        // rounds would give 80k ÷ 100k), but in the second round xdp outran both reflectors
        // of that round (95k against 90k and 60k).
        results.systems = vec![
            rounds_of(SystemKind::Xdp, &[70_000.0, 95_000.0, 80_000.0]),
            rounds_of(SystemKind::Vblade, &[30_000.0, 30_000.0, 30_000.0]),
            rounds_of(SystemKind::Reflector, &[100_000.0, 90_000.0, 110_000.0]),
            rounds_of(
                SystemKind::PacketReflector,
                &[50_000.0, 60_000.0, 120_000.0],
            ),
        ];
        let workload = results.systems[0].points[0].workload;
        let ratios = round_ratios(&results, SystemKind::Xdp, &workload);
        let expected = [0.7, 95.0 / 90.0, 80.0 / 120.0];
        assert_eq!(ratios.len(), 3);
        for (got, want) in ratios.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{ratios:?}");
        }
        let text = targets(&results);
        let row = text
            .lines()
            .find(|l| l.starts_with("| rand read QD16"))
            .unwrap();
        assert!(
            row.contains("| 0.82×") && row.contains("| 0.67–1.06× |"),
            "{row}"
        );
        assert!(row.contains("NOT met"), "{row}");
        assert!(
            text.contains("Of the 1 missed, 1 had a round at or above 0.90×"),
            "{text}"
        );
        // CPU per request is judged on means too: 6, 2 and 7 µs against vblade's 10 in every
        // round is 0.50× (the median round, 6 µs, would say 0.60×).
        for (sample, us) in results.systems[0].samples.iter_mut().zip([6.0, 2.0, 7.0]) {
            sample.cpu.as_mut().unwrap().us_per_request = us;
        }
        for sample in &mut results.systems[1].samples {
            sample.cpu.as_mut().unwrap().us_per_request = 10.0;
        }
        let cpu = cpu_over_vblade(&results, SystemKind::Xdp, &workload).unwrap();
        assert!((cpu - 0.5).abs() < 1e-9, "{cpu}");
        // Every round below the target: the miss is not put down to noise.
        results.systems[0] = rounds_of(SystemKind::Xdp, &[70_000.0, 80_000.0, 75_000.0]);
        let text = targets(&results);
        assert!(text.contains("Of the 1 missed, 0 had a round"), "{text}");
        // One round only: no range to show.
        results.systems[0] = rounds_of(SystemKind::Xdp, &[95_000.0]);
        assert_eq!(round_ratios(&results, SystemKind::Xdp, &workload).len(), 1);
        let text = targets(&results);
        let row = text
            .lines()
            .find(|l| l.starts_with("| rand read QD16"))
            .unwrap();
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[3], "—", "{row}");
        assert!(!text.contains("missed"), "{text}");
    }

    #[test]
    fn readme_section_is_replaced_between_the_markers_only() {
        let two = (README_START, README_END);
        let plain = (README_PLAIN_START, README_PLAIN_END);
        let readme = format!(
            "# x\n\n## Performance\n{README_START}\nold\n{README_END}\n\
             {README_PLAIN_START}\nold plain\n{README_PLAIN_END}\nafter\n"
        );
        let new = replace_section(&readme, two, "new table\n").unwrap();
        assert_eq!(
            new,
            format!(
                "# x\n\n## Performance\n{README_START}\nnew table\n{README_END}\n\
                 {README_PLAIN_START}\nold plain\n{README_PLAIN_END}\nafter\n"
            )
        );
        assert_eq!(replace_section(&new, two, "new table").unwrap(), new);
        let both = replace_section(&new, plain, "plain table").unwrap();
        assert!(both.contains(&format!(
            "{README_PLAIN_START}\nplain table\n{README_PLAIN_END}"
        )));
        assert!(replace_section("# no markers", two, "x").is_err());
        // Each topology has its section; runs on other links have none.
        let mut meta = results().meta;
        assert_eq!(readme_markers(&meta).unwrap(), plain);
        meta.topology = Topology::TwoMachine;
        assert_eq!(readme_markers(&meta).unwrap(), two);
        meta.nics = 2;
        assert!(readme_markers(&meta).is_err());
    }

    #[test]
    fn plot_is_an_svg_with_every_system_that_ran() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qd.svg");
        plot(&results(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        for label in ["aoe-xdp (XDP)", "vblade", "reflector", "queue depth"] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert!(!svg.contains("AF_PACKET"));
    }

    #[test]
    fn cpu_without_the_receive_softirq_is_shown_beside_the_cpu_with_it() {
        let mut results = results();
        // xdp: 5 µs, 50% softirq → 2.5; vblade: 20 µs, 75% softirq → 5: 0.25× with the
        // softirq, 0.5× without.
        for point in &mut results.systems[2].points {
            point.profile.as_mut().unwrap().rx_softirq = 0.75;
        }
        let text = table(&results);
        let row = xdp_row(&text, "rand read QD64");
        assert!(row.contains("| 50% "), "{row}");
        assert!(row.contains("| 0.25× "), "{row}");
        assert!(row.contains("| 0.50× "), "{row}");
        let verdicts = targets(&results);
        assert!(verdicts.contains("CPU target met at 2 of 2"), "{verdicts}");
        assert!(
            verdicts.contains("0 of 2 without the receive softirq"),
            "{verdicts}"
        );
        let shown = profiles(&results);
        assert!(shown.contains("rand read QD64"), "{shown}");
        assert!(shown.contains("`worker::run` 25%"), "{shown}");
        // Without profiles the section is left out and the columns are empty.
        for run in &mut results.systems {
            for point in &mut run.points {
                point.profile = None;
            }
        }
        assert_eq!(profiles(&results), "");
        assert!(targets(&results).contains("0 of 2 without"));
        assert!(!table(&results).contains("0.50×"));
    }

    #[test]
    fn a_point_that_ended_with_the_file_partly_evicted_is_flagged() {
        let mut results = results();
        results.systems[0].points[2].cached = Some(0.9);
        let text = table(&results);
        let row = xdp_row(&text, "rand read QD64");
        assert!(row.contains("file 90% cached"), "{row}");
        assert!(!text
            .lines()
            .any(|l| l.contains("rand read QD16") && l.contains("cached")));
    }

    #[test]
    fn function_paths_are_shortened_to_type_and_name() {
        assert_eq!(
            short("aoe_xdp::dataplane::port::Port::fit_reply"),
            "Port::fit_reply"
        );
        assert_eq!(short("a::b"), "a::b");
        assert_eq!(short("__pi_memcpy"), "__pi_memcpy");
    }

    #[test]
    fn a_ratio_that_would_round_to_its_target_gets_a_third_decimal() {
        assert_eq!(judged_ratio(Some(0.897), 0.9), "0.897×");
        assert_eq!(judged_ratio(Some(0.903), 0.9), "0.903×");
        assert_eq!(judged_ratio(Some(0.89), 0.9), "0.89×");
        assert_eq!(judged_ratio(Some(0.351), 0.35), "0.351×");
        assert_eq!(judged_ratio(None, 0.9), "—");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}

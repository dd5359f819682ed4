//! The measurement points: what load each one offers, and which of them a run measures.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Requests per second of the fixed-load point: well below every system's maximum here.
pub const FIXED_RATE: u32 = 40_000;

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// ATA READ.
    Read,
    /// ATA WRITE.
    Write,
}

/// Where successive requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Uniformly random sectors.
    Random,
    /// Ascending sectors.
    Sequential,
}

impl Op {
    /// The name `aoe-bench load --op` takes (and results.json holds).
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

impl Pattern {
    /// The name `aoe-bench load --pattern` takes (and results.json holds).
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Random => "random",
            Pattern::Sequential => "sequential",
        }
    }
}

/// One measurement point's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Direction.
    pub op: Op,
    /// Access pattern.
    pub pattern: Pattern,
    /// Requests outstanding.
    pub depth: u32,
    /// Requests offered per second (`None`: as many as the window allows). A fixed load
    /// below every system's maximum measures CPU per request of a target that is not
    /// saturated (a busy-polling target at saturation shows 100 % of a core whatever it does).
    #[serde(default)]
    pub rate: Option<u32>,
}

impl Workload {
    pub const fn new(op: Op, pattern: Pattern, depth: u32) -> Workload {
        Workload {
            op,
            pattern,
            depth,
            rate: None,
        }
    }

    const fn at_rate(op: Op, pattern: Pattern, depth: u32, rate: u32) -> Workload {
        Workload {
            rate: Some(rate),
            ..Workload::new(op, pattern, depth)
        }
    }

    /// "rand read QD16".
    pub fn label(&self) -> String {
        let pattern = match self.pattern {
            Pattern::Random => "rand",
            Pattern::Sequential => "seq",
        };
        let op = self.op.name();
        match self.rate {
            None => format!("{pattern} {op} QD{}", self.depth),
            Some(rate) => format!("{pattern} {op} QD{} @{}k/s", self.depth, rate / 1000),
        }
    }
}

/// The points of a run, reads first (writes dirty the page cache).
pub(super) fn workloads(quick: bool) -> Vec<Workload> {
    use Op::{Read, Write};
    use Pattern::{Random, Sequential};
    let depths: &[u32] = if quick { &[16] } else { &[16, 64] };
    let mut list = Vec::new();
    if !quick {
        list.push(Workload::new(Read, Random, 1));
        list.push(Workload::at_rate(Read, Random, 16, FIXED_RATE));
    }
    for (op, pattern) in [
        (Read, Random),
        (Read, Sequential),
        (Write, Random),
        (Write, Sequential),
    ] {
        list.extend(depths.iter().map(|&d| Workload::new(op, pattern, d)));
    }
    list
}

/// The points of `all` whose label starts with one of `prefixes` (all of them if there are
/// none); an error names the labels if nothing matches.
pub(super) fn selected(all: Vec<Workload>, prefixes: &[String]) -> Result<Vec<Workload>> {
    if prefixes.is_empty() {
        return Ok(all);
    }
    let labels: Vec<String> = all.iter().map(Workload::label).collect();
    let chosen: Vec<Workload> = all
        .into_iter()
        .filter(|w| prefixes.iter().any(|p| w.label().starts_with(p.as_str())))
        .collect();
    if chosen.is_empty() {
        bail!(
            "no point matches --workload {prefixes:?}; the points are: {}",
            labels.join(", ")
        );
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_filter_keeps_the_points_with_a_matching_label() {
        let all = workloads(false);
        let reads = selected(all.clone(), &["rand read QD6".into(), "seq write".into()]).unwrap();
        let labels: Vec<String> = reads.iter().map(Workload::label).collect();
        assert_eq!(
            labels,
            ["rand read QD64", "seq write QD16", "seq write QD64"]
        );
        assert_eq!(selected(all.clone(), &[]).unwrap(), all);
        let err = selected(all, &["mixed".into()]).unwrap_err().to_string();
        assert!(err.contains("rand read QD1,"), "{err}");
    }

    #[test]
    fn quick_runs_depth_16_only_and_reads_come_first() {
        let quick = workloads(true);
        assert_eq!(quick.len(), 4);
        assert!(quick.iter().all(|w| w.depth == 16));
        assert!(quick.iter().all(|w| w.rate.is_none()));
        let full = workloads(false);
        assert_eq!(full.len(), 10);
        assert_eq!(full[0], Workload::new(Op::Read, Pattern::Random, 1));
        let first_write = full.iter().position(|w| w.op == Op::Write).unwrap();
        assert!(full[first_write..].iter().all(|w| w.op == Op::Write));
        assert_eq!(
            full[1].label(),
            format!("rand read QD16 @{}k/s", FIXED_RATE / 1000)
        );
        assert_eq!(full[2].label(), "rand read QD16");
        assert_eq!(full[9].label(), "seq write QD64");
    }
}

//! The result of a load run, as `aoe-bench load --json` prints it.
//!
//! Contract: this file is the one definition of the report. `cargo xtask bench` and
//! `cargo xtask soak` read it with the same types: xtask includes this file with
//! `#[path]` (it does not depend on this crate), so it may use nothing but `serde`.

use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// Requests completed on one path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathReport {
    /// Local interface.
    pub interface: String,
    /// Target MAC, `aa:bb:..`.
    pub target_mac: String,
    /// The device, `SHELF.SLOT`.
    pub device: String,
    /// Requests completed successfully in the measured phase.
    pub requests: u64,
}

/// The result of a run (the measured phase only). Serialized as `aoe-bench load --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Requests completed successfully.
    pub requests: u64,
    /// Bytes they moved.
    pub bytes: u64,
    /// Seconds from the end of the warmup to the last reply.
    pub duration_s: f64,
    /// `requests / duration_s`.
    pub iops: f64,
    /// `bytes / duration_s / 10^6`.
    pub mb_per_s: f64,
    /// Latency of successful requests, first transmission to reply.
    pub lat_us: Latency,
    /// Retransmissions (each with a new tag).
    pub retransmits: u64,
    /// Requests that failed: AoE or ATA error, malformed or short reply, no reply after every
    /// try.
    pub errors: u64,
    /// Sectors read back that differ from what was last written (with `verify`).
    pub verify_failures: u64,
    /// Per path (absent from reports written before it existed).
    #[serde(default)]
    pub paths: Vec<PathReport>,
}

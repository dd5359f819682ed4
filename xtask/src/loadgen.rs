//! `aoe-bench load`, the load generator the bench and the soak drive: its command line and
//! its JSON report.
//!
//! The report's types are the generator's own (`src/initiator/load/report.rs`), compiled in
//! here with `#[path]`: xtask does not depend on the aoe-xdp crate (it builds it), and that
//! file uses nothing but serde, so one definition serves the writer and both readers.

use std::process::Command;

#[path = "../../src/initiator/load/report.rs"]
pub mod report;

pub use report::Report;

/// Bytes of the Ethernet, AoE and ATA headers in front of a request's sectors.
const HEADERS_LEN: u16 = 36;

/// Sectors per request at `mtu`: as many as one frame carries (as `aoe-bench load` counts).
pub fn request_sectors(mtu: u16) -> u32 {
    u32::from(mtu.saturating_sub(HEADERS_LEN) / 512)
}

/// Adds to `cmd` (the `aoe-bench` binary) a load from `interfaces` (one path each) to device
/// `target` ("SHELF.SLOT"): `op` requests of `sectors` sectors, `depth` in flight per path,
/// the report as JSON on stdout and no progress lines. The caller adds when to stop, and the
/// rest.
pub fn load<'a>(
    cmd: &'a mut Command,
    interfaces: &[&str],
    target: &str,
    op: &str,
    depth: u32,
    sectors: u64,
) -> &'a mut Command {
    cmd.arg("load");
    for interface in interfaces {
        cmd.args(["-i", interface]);
    }
    cmd.args(["-t", target, "--op", op])
        .args(["--depth", &depth.to_string()])
        .args(["--size", &sectors.to_string()])
        .args(["--json", "--no-progress"])
}

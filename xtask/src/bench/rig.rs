//! The bench's rig: the cores, the link and the disk every system is measured on, and the
//! paths and settings a run shares (`Env`).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Size of the backing file.
pub(super) const DISK_BYTES: u64 = 256 << 20;
/// Link MTU: two 512-byte sectors per request.
pub(super) const MTU: u16 = 1500;
/// Sectors per request.
pub(super) const REQUEST_SECTORS: u32 = 2;
/// Core of the target.
pub(super) const TARGET_CORE: u32 = 0;
/// Core of the initiator.
pub(super) const INITIATOR_CORE: u32 = 1;
/// Buffer count advertised by every target (the Linux initiator's maximum).
pub(super) const BUFFER_COUNT: u32 = 64;
/// Target and initiator interface names (one pair per system, in its own namespaces).
pub(super) const TARGET_IF: &str = "vt";
pub(super) const CLIENT_IF: &str = "vc";
/// Background load above which the run is flagged as disturbed.
pub const BACKGROUND_WARN_CORES: f64 = 0.25;

/// Paths and settings shared by every system's run.
pub(super) struct Env {
    pub aoe_xdp: PathBuf,
    pub baseline: Option<PathBuf>,
    pub loadgen: PathBuf,
    pub scratch: PathBuf,
    pub disk: PathBuf,
    pub logs: PathBuf,
    pub seconds: u32,
    pub warmup: u32,
    pub clk_tck: u64,
    pub perf: bool,
    pub profile: bool,
    pub stop: Arc<AtomicBool>,
}

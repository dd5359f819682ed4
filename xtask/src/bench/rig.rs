//! The bench's rig: the cores, the links and the disk every system is measured on, and the
//! paths and settings a run shares (`Env`).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(super) use crate::loadgen::request_sectors;

/// Size of the backing file.
pub(super) const DISK_BYTES: u64 = 256 << 20;
/// Link MTU by default: two 512-byte sectors per request.
pub(super) const MTU: u16 = 1500;
/// Core of the target.
pub(super) const TARGET_CORE: u32 = 0;
/// Core of the initiator.
pub(super) const INITIATOR_CORE: u32 = 1;
/// Buffer count advertised by every target (the Linux initiator's maximum).
pub(super) const BUFFER_COUNT: u32 = 64;
/// Background load above which the run is flagged as disturbed.
pub const BACKGROUND_WARN_CORES: f64 = 0.25;

/// How the two sides share the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// As between two machines: each veth end receives in a NAPI kernel thread pinned to its
    /// own side's core (`gro on`, `tso off`, `threaded`), so each side pays for its own
    /// receive path.
    #[value(name = "two-machine")]
    TwoMachine,
    /// One plain veth pair: a send runs the peer's receive path inside the sender's system
    /// call (the target's XDP and AF_XDP copy on the initiator's core, the initiator's packet
    /// receive in the target's sends). What every run before this option measured.
    #[default]
    Plain,
}

impl Topology {
    /// The name on the command line and in results.json.
    pub fn name(self) -> &'static str {
        match self {
            Topology::TwoMachine => "two-machine",
            Topology::Plain => "plain",
        }
    }
}

/// The interfaces of one system: `nics` veth pairs, each end in its side's namespace. Names
/// carry the system's index, so that the NAPI threads (`napi/IFACE-ID`, one name space for
/// the whole machine) of different systems' pairs are told apart.
#[derive(Clone, Debug)]
pub(super) struct Link {
    /// The target's ends, one per NIC.
    pub target: Vec<String>,
    /// The initiator's ends, in the same order.
    pub client: Vec<String>,
    /// MTU of every end.
    pub mtu: u16,
}

impl Link {
    /// The pairs of the `index`th system: `vt{index}a`–`vc{index}a`, then `…b`.
    pub fn new(index: usize, nics: u32, mtu: u16) -> Link {
        let names = |side: &str| -> Vec<String> {
            (b'a'..)
                .take(nics as usize)
                .map(|nic| format!("v{side}{index}{}", char::from(nic)))
                .collect()
        };
        Link {
            target: names("t"),
            client: names("c"),
            mtu,
        }
    }

    /// Sectors per request on this link.
    pub fn request_sectors(&self) -> u32 {
        request_sectors(self.mtu)
    }
}

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
    pub topology: Topology,
    pub napi_fifo: bool,
    /// `guest_halt_poll_ns` for the run and what the machine had, where it was set.
    pub halt_poll: Option<(u64, u64)>,
    pub nics: u32,
    pub mtu: u16,
    pub stop: Arc<AtomicBool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_carries_two_sectors_at_1500_and_seventeen_at_9000() {
        assert_eq!(request_sectors(MTU), 2);
        assert_eq!(request_sectors(9000), 17);
    }

    #[test]
    fn each_system_and_nic_has_its_own_interface_names() {
        let link = Link::new(12, 2, MTU);
        assert_eq!(link.target, ["vt12a", "vt12b"]);
        assert_eq!(link.client, ["vc12a", "vc12b"]);
        // The NAPI thread's name ("napi/" + name + "-" + id) stays readable in a 15-byte comm.
        assert!(format!("napi/{}-", link.target[1]).len() <= 11);
    }
}

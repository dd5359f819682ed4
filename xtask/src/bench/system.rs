//! The systems under test and the aoe-xdp configuration each one runs with.

use std::fs;
use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::rig::{Env, BUFFER_COUNT, TARGET_CORE};

/// `idle-nap-us` of the `xdp-nap` system: at the fixed load ([`FIXED_RATE`](super::workload::FIXED_RATE) requests/s, one
/// every 25 µs) each nap gathers about eight requests.
pub const NAP_US: u32 = 200;

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SystemKind {
    /// aoe-xdp on AF_XDP.
    Xdp,
    /// aoe-xdp on its AF_PACKET fallback.
    Packet,
    /// Debian's vblade.
    Vblade,
    /// `aoe-bench reflect`: AF_XDP, no storage, no protocol state.
    Reflector,
    /// `aoe-bench reflect --socket packet`: AF_PACKET (a `TPACKET_V2` ring, `sendmmsg`), no
    /// storage, no protocol state.
    #[value(name = "packet-reflector")]
    #[serde(rename = "packet-reflector")]
    PacketReflector,
    /// Another aoe-xdp binary (`--baseline`) on AF_XDP, configured as `xdp`.
    Baseline,
    /// aoe-xdp on AF_XDP with `idle = "poll"` and `idle-spin-us = 5` (sleeps 5 µs after its
    /// last work; the default spin is 50 µs). Not in the default set.
    #[value(name = "xdp-poll")]
    #[serde(rename = "xdp-poll")]
    XdpPoll,
    /// aoe-xdp on AF_XDP with `idle = "spin"` (polls its core all the time).
    #[value(name = "xdp-spin")]
    #[serde(rename = "xdp-spin")]
    XdpSpin,
    /// aoe-xdp on AF_XDP with the device `resident = true` (locked in memory, copies through a
    /// shared mapping instead of a system call per request).
    #[value(name = "xdp-resident")]
    #[serde(rename = "xdp-resident")]
    XdpResident,
    /// aoe-xdp on AF_XDP with the device's defaults: `durability = "sync"` (writes
    /// acknowledged once durable, by group commit) and neither `mapped-reads` nor
    /// `mapped-writes` (a system call, or an io_uring request, per read and per write).
    #[value(name = "xdp-defaults")]
    #[serde(rename = "xdp-defaults")]
    XdpDefaults,
    /// aoe-xdp on AF_XDP with `idle = "poll"`, `idle-spin-us = 5` and `idle-nap-us = NAP_US`
    /// (naps after work, and wakes once per nap under a steady load).
    #[value(name = "xdp-nap")]
    #[serde(rename = "xdp-nap")]
    XdpNap,
}

/// What a system runs: an aoe-xdp binary (configured by `write_config`), vblade, or a
/// reflector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// aoe-xdp (this build, or `--baseline`).
    AoeXdp,
    /// Debian's vblade.
    Vblade,
    /// `aoe-bench reflect`.
    Reflector,
    /// `aoe-bench reflect --socket packet`.
    PacketReflector,
}

impl SystemKind {
    pub const ALL: [SystemKind; 9] = [
        SystemKind::Xdp,
        SystemKind::XdpResident,
        SystemKind::XdpDefaults,
        SystemKind::XdpSpin,
        SystemKind::XdpNap,
        SystemKind::Packet,
        SystemKind::Vblade,
        SystemKind::Reflector,
        SystemKind::PacketReflector,
    ];

    /// The bare reflectors: the faster of them at a point is the machine's limit there.
    pub const REFLECTORS: [SystemKind; 2] = [SystemKind::Reflector, SystemKind::PacketReflector];

    /// The program the system runs.
    pub fn program(self) -> Program {
        match self {
            SystemKind::Xdp
            | SystemKind::XdpPoll
            | SystemKind::XdpSpin
            | SystemKind::XdpResident
            | SystemKind::XdpDefaults
            | SystemKind::XdpNap
            | SystemKind::Packet
            | SystemKind::Baseline => Program::AoeXdp,
            SystemKind::Vblade => Program::Vblade,
            SystemKind::Reflector => Program::Reflector,
            SystemKind::PacketReflector => Program::PacketReflector,
        }
    }

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            SystemKind::Xdp => "aoe-xdp (XDP)",
            SystemKind::Packet => "aoe-xdp (AF_PACKET)",
            SystemKind::Vblade => "vblade",
            SystemKind::Reflector => "reflector (AF_XDP)",
            SystemKind::PacketReflector => "reflector (AF_PACKET)",
            SystemKind::Baseline => "aoe-xdp (XDP, baseline)",
            SystemKind::XdpPoll => "aoe-xdp (XDP, 5 µs spin)",
            SystemKind::XdpSpin => "aoe-xdp (XDP, idle=spin)",
            SystemKind::XdpResident => "aoe-xdp (XDP, resident)",
            SystemKind::XdpDefaults => "aoe-xdp (XDP, defaults)",
            SystemKind::XdpNap => "aoe-xdp (XDP, nap)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            SystemKind::Xdp => "xdp",
            SystemKind::Packet => "packet",
            SystemKind::Vblade => "vblade",
            SystemKind::Reflector => "reflector",
            SystemKind::PacketReflector => "packet-reflector",
            SystemKind::Baseline => "baseline",
            SystemKind::XdpPoll => "xdp-poll",
            SystemKind::XdpSpin => "xdp-spin",
            SystemKind::XdpResident => "xdp-resident",
            SystemKind::XdpDefaults => "xdp-defaults",
            SystemKind::XdpNap => "xdp-nap",
        }
    }
}

/// Writes the configuration of aoe-xdp system `system` serving `interfaces`; returns its path.
pub(super) fn write_config(
    env: &Env,
    system: SystemKind,
    interfaces: &[String],
    key: &str,
) -> Result<PathBuf> {
    let socket = if system == SystemKind::Packet {
        "packet"
    } else {
        "xdp"
    };
    // The idle mode: the default (`idle = "poll"`, a 50 µs spin) but where a system is about
    // another one.
    let idle = match system {
        SystemKind::XdpSpin => "idle = \"spin\"\n".to_string(),
        SystemKind::XdpPoll => "idle = \"poll\"\nidle-spin-us = 5\n".to_string(),
        SystemKind::XdpNap => {
            format!("idle = \"poll\"\nidle-spin-us = 5\nidle-nap-us = {NAP_US}\n")
        }
        _ => String::new(),
    };
    let resident = system == SystemKind::XdpResident;
    // Every configuration copies to and from the page cache through mappings (the data lives
    // there), but the one that shows the defaults; resident reads through its own.
    let mapped = system != SystemKind::XdpDefaults;
    let durability = if mapped { "writeback" } else { "sync" };
    let mapped_reads = mapped && !resident;
    let dir = env.scratch.display();
    let interfaces: Vec<String> = interfaces.iter().map(|i| format!("\"{i}\"")).collect();
    let interfaces = interfaces.join(", ");
    let text = format!(
        "[target]\n\
         interfaces = [{interfaces}]\n\
         worker-cores = [{TARGET_CORE}]\n\
         {idle}\
         socket = \"{socket}\"\n\
         state-directory = \"{dir}/state-{key}\"\n\
         control-socket = \"{dir}/ctl-{key}.sock\"\n\
         log-level = \"info\"\n\n\
         [[device]]\n\
         name = \"bench\"\n\
         path = \"{disk}\"\n\
         shelf = 1\n\
         slot = 0\n\
         durability = \"{durability}\"\n\
         mapped-writes = {mapped}\n\
         mapped-reads = {mapped_reads}\n\
         resident = {resident}\n\
         queue-length = {BUFFER_COUNT}\n",
        disk = env.disk.display()
    );
    let path = env.scratch.join(format!("{key}.toml"));
    fs::write(&path, text)?;
    Ok(path)
}

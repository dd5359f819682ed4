//! Configuration: TOML text → `RawConfig` (serde shapes) → `Config` (validated runtime types).
//!
//! Contract:
//! - `Config` exists only if every rule holds; the runtime types never derive `Deserialize`,
//!   so nothing reaches the dataplane without passing `validate.rs`.
//! - Every problem is reported, not just the first, each as "file:line: key: what; fix"
//!   (`ConfigError`). TOML syntax and type errors are the exception: the parser stops at the
//!   first, which is then the only one.
//! - Interface globs are checked for syntax only; resolving them against the machine's
//!   interfaces is the dataplane's job (interfaces come and go). Worker cores are checked
//!   against the machine's online CPUs.
//! - Backing files are not touched by validation; `Config::check_backing` and
//!   `DeviceConfig::probe` inspect them (existence, type, size, writability) separately.
//!
//! Hazards: the default durability is `sync` because the Linux initiator never sends FLUSH
//! CACHE — an acknowledged write must already be on stable storage. MAC ACLs are not a
//! security feature (MACs can be forged).

mod acl;
mod address;
mod backing;
mod device;
mod problems;
mod raw;
mod system;
mod target;
mod types;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use backing::{Backing, BackingError, BackingKind, BackingProblem};
pub use raw::{unspanned, RawConfig, RawDevice, RawTarget};
pub(crate) use system::affinity;
pub use types::{
    parse_mac, Advertisement, Durability, IdleMode, InterfacePattern, InterfacePatternError,
    Interfaces, KeywordError, LogLevel, MacAddr, MacAddrParseError, MacList, PacketRing,
    SocketKind, XdpMode, INTERFACE_NAME_LEN_MAX,
};

/// Default values and limits of the configuration keys.
pub mod defaults {
    /// `umem-frames`: 4096 frames of 4096 bytes = 16 MiB per worker.
    pub const UMEM_FRAMES: u32 = 4096;
    /// Smallest `umem-frames`.
    pub const UMEM_FRAMES_MIN: u32 = 64;
    /// Largest `umem-frames` (4 GiB of 4096-byte frames).
    pub const UMEM_FRAMES_MAX: u32 = 1 << 20;
    /// `frame-size`.
    pub const FRAME_SIZE: u32 = 4096;
    /// `rx-ring-size`, `tx-ring-size`, `fill-ring-size`, `completion-ring-size`
    /// (libxdp's XSK_RING_*__DEFAULT_NUM_DESCS).
    pub const RING_SIZE: u32 = 2048;
    /// Smallest ring size.
    pub const RING_SIZE_MIN: u32 = 64;
    /// Largest ring size.
    pub const RING_SIZE_MAX: u32 = 65536;
    /// `uring-entries`.
    pub const URING_ENTRIES: u32 = 256;
    /// Largest `uring-entries` (the kernel's IORING_MAX_ENTRIES).
    pub const URING_ENTRIES_MAX: u32 = 32768;
    /// `idle-spin-us`: how long a worker in poll mode keeps polling without work before it
    /// sleeps in `poll()`. At queue depth 1 the spin decides whether the next request finds
    /// the worker awake: 13-18k requests/s with 5 µs, 54-104k with 20 µs, 60-133k with 50 µs
    /// (2026-12-02, a busy VM, plain veth, interleaved runs); on the two-machine rig
    /// (2026-12-06) 5 µs gave 13.3k (p50 72 µs) where 50 µs gave 21.3k (p50 47 µs) and
    /// spinning 18.4k (p50 48 µs). The price is CPU at moderate loads: at 40k random reads/s
    /// (one every 25 µs) a worker with 50 µs never sleeps, like a spinning one (the core 24-25
    /// µs busy per request against 19 with 5 µs); with no spin at all it used as much as with
    /// 5 µs (2026-11-22): the cost there is the wake-ups, syscalls and veth work per request.
    /// An adaptive spin (`idle-spin-adaptive`) saves core but costs rate here: off by default.
    pub const IDLE_SPIN_US: u32 = 50;
    /// Largest `idle-spin-us` (1 s).
    pub const IDLE_SPIN_US_MAX: i64 = 1_000_000;
    /// `idle-nap-us`: off. A nap trades latency for CPU (each request that arrives during
    /// one waits for its end), which only the user can weigh.
    pub const IDLE_NAP_US: u32 = 0;
    /// Largest `idle-nap-us` (100 ms).
    pub const IDLE_NAP_US_MAX: i64 = 100_000;
    /// `busy-poll-budget` (what DPDK's AF_XDP driver uses).
    pub const BUSY_POLL_BUDGET: u16 = 64;
    /// `busy-poll-usecs`.
    pub const BUSY_POLL_USECS: u32 = 20;
    /// Largest `busy-poll-usecs`.
    pub const BUSY_POLL_USECS_MAX: i64 = 1_000_000;
    /// `state-directory`.
    pub const STATE_DIRECTORY: &str = "/var/lib/aoe-xdp";
    /// `control-socket`.
    pub const CONTROL_SOCKET: &str = "/run/aoe-xdp.sock";
    /// `merge-max-segments` (ggaoed merges up to 32 iovecs).
    pub const MERGE_MAX_SEGMENTS: u32 = 32;
    /// Largest `merge-max-segments` (IOV_MAX).
    pub const MERGE_MAX_SEGMENTS_MAX: i64 = 1024;
    /// `merge-delay-us`.
    pub const MERGE_DELAY_US: u32 = 0;
    /// Largest `merge-delay-us`: far below the initiator's retransmit timeout.
    pub const MERGE_DELAY_US_MAX: i64 = 100_000;
    /// `queue-length` of a device: the Linux initiator's window limit (`aoe_maxout`).
    pub const QUEUE_LENGTH: u16 = 64;
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Process-wide settings (`[target]`).
    pub target: TargetConfig,
    /// Named ACLs (`[acls]`), resolved to MAC lists.
    pub acls: BTreeMap<String, MacList>,
    /// Exported devices in file order; shelf.slot and names are unique.
    pub devices: Vec<DeviceConfig>,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// Interfaces to listen on (`All`: every up, non-loopback Ethernet interface).
    pub interfaces: Interfaces,
    /// Cores that run one pinned worker each; non-empty, distinct, online at validation.
    pub worker_cores: Vec<usize>,
    /// Frames per worker UMEM; a power of two ≥ fill_ring_size + tx_ring_size.
    pub umem_frames: u32,
    /// Bytes per UMEM frame: 2048 or 4096.
    pub frame_size: u32,
    /// AF_XDP RX ring descriptors; a power of two.
    pub rx_ring_size: u32,
    /// AF_XDP TX ring descriptors; a power of two.
    pub tx_ring_size: u32,
    /// AF_XDP fill ring descriptors; a power of two. Also the most frames a port keeps with
    /// the kernel: it starts with fewer and deepens after a burst (`FILL_TARGET_START`).
    pub fill_ring_size: u32,
    /// AF_XDP completion ring descriptors; a power of two ≥ tx_ring_size.
    pub completion_ring_size: u32,
    /// io_uring submission queue entries per worker; a power of two.
    pub uring_entries: u32,
    /// What an idle worker does.
    pub idle: IdleMode,
    /// With `IdleMode::Poll`: microseconds a worker keeps polling after its last work before
    /// it sleeps.
    pub idle_spin_us: u32,
    /// With `IdleMode::Poll`: microseconds a worker naps after that spin and looks for work
    /// again before it sleeps until a frame arrives (0 = no nap): under a steady moderate
    /// load it then wakes once per nap rather than once per request.
    pub idle_nap_us: u32,
    /// With `IdleMode::Poll`: whether `idle_spin_us` is the longest spin, the spin shrinking
    /// while sleeps follow it anyway and growing back when a longer spin would have found the
    /// work (see `dataplane::worker::AdaptiveSpin`).
    pub idle_spin_adaptive: bool,
    /// Whether a polling worker (`IdleMode::Spin`, or `IdleMode::Poll` during its spin)
    /// yields its core to other runnable threads on it after each poll that found nothing.
    pub idle_yield: bool,
    /// SO_BUSY_POLL_BUDGET, ≥ 1.
    pub busy_poll_budget: u16,
    /// SO_BUSY_POLL in µs; 0 = no busy polling (and no SO_PREFER_BUSY_POLL).
    pub busy_poll_usecs: u32,
    /// Socket kind.
    pub socket: SocketKind,
    /// XDP attach mode (meaningless with `SocketKind::Packet`, which then has the default).
    pub xdp_mode: XdpMode,
    /// Receive ring layout of the AF_PACKET fallback.
    pub packet_ring: PacketRing,
    /// Directory for persistent per-device AoE state.
    pub state_directory: PathBuf,
    /// Control socket path (≤ 107 bytes).
    pub control_socket: PathBuf,
    /// Where the metrics endpoint listens (`metrics-listen`); off when `None`.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Log level from the file (the command line and RUST_LOG take precedence).
    pub log_level: LogLevel,
    /// Most requests merged into one vectored I/O, 1..=1024.
    pub merge_max_segments: u32,
    /// Longest a request is held back hoping to merge, in µs (0 = never).
    pub merge_delay_us: u32,
    /// Whether devices send an unsolicited Query Config response at start-up.
    pub advertise: bool,
    /// Serve requests addressed to any destination MAC. Off (the default): only those to the
    /// receiving interface's own MAC or to broadcast; requests for other hosts, which a bridge
    /// port, hub or promiscuous port also sees, are refused (and counted per port).
    pub accept_any_destination: bool,
}

/// One exported AoE device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Unique name (logs, statistics, state files): `[A-Za-z0-9._-]{1,32}`.
    pub name: String,
    /// Backing regular file or block device (not checked by validation; see `probe`).
    pub path: PathBuf,
    /// AoE shelf (major), 0..=65534 except 4095.
    pub shelf: u16,
    /// AoE slot (minor), 0..=254.
    pub slot: u8,
    /// Writes are refused with ATA ABORT; the backing store is opened read-only.
    pub read_only: bool,
    /// Open the backing store with O_DIRECT.
    pub direct_io: bool,
    /// When writes are acknowledged.
    pub durability: Durability,
    /// The window is locked in memory; reads are copies through a shared mapping (never
    /// with `direct_io`).
    pub resident: bool,
    /// Write-back writes are copies through a shared mapping of the file rather than
    /// `pwritev2` (only with `durability = "writeback"`, never with `direct_io`).
    pub mapped_writes: bool,
    /// Reads are copies through a shared mapping of the file (not locked) rather than
    /// `preadv2`/io_uring; a read of a page that is not in memory waits for the disk on the
    /// worker's thread (never with `direct_io` or `resident`, which maps already).
    pub mapped_reads: bool,
    /// Sectors (512 bytes) skipped at the start of the backing store.
    pub offset_sectors: u64,
    /// Sectors exported; `None` = everything after the offset (known only from `probe`).
    pub length_sectors: Option<u64>,
    /// Where the device is exported (`All`: every interface of the target).
    pub interfaces: Interfaces,
    /// If non-empty, only these MACs are served.
    pub accept: MacList,
    /// MACs never served, checked after `accept`.
    pub deny: MacList,
    /// How the device announces itself at start-up.
    pub advertisement: Advertisement,
    /// Advertised AoE Buffer Count: outstanding requests per initiator, ≥ 1.
    pub queue_length: u16,
    /// ATA IDENTIFY model: printable ASCII, ≤ 40 characters.
    pub model: String,
    /// ATA IDENTIFY serial number: printable ASCII, ≤ 20 characters.
    pub serial: String,
}

impl DeviceConfig {
    /// True if a request from `mac` may be served: on `accept` (or `accept` empty) and not
    /// on `deny`.
    pub fn allows(&self, mac: &MacAddr) -> bool {
        (self.accept.is_empty() || self.accept.contains(mac)) && !self.deny.contains(mac)
    }

    /// Inspects the backing store: kind, size and exported extent, or every problem found.
    pub fn probe(&self) -> Result<Backing, Vec<BackingError>> {
        backing::probe(self)
    }

    /// The sectors the device exports as its backing store is now, without opening it (what
    /// a running target, which holds its block devices exclusively, can ask); `None` where the
    /// store cannot be looked at, the device's extent no longer fits in it, or a `resident`
    /// window would no longer fit in memory.
    pub fn export_sectors_now(&self) -> Option<u64> {
        backing::export_sectors_now(self)
    }
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// As [`Config::load`], and every device's backing file or block device probed as at
    /// start-up: what a running target checks before it takes a new configuration. Every
    /// problem is one message.
    pub fn load_for_serving(path: &Path) -> Result<Config, Vec<String>> {
        let config = Config::load(path).map_err(|error| match error {
            Error::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            Error::Read { ref source, .. } => vec![format!("{error}: {source}")],
        })?;
        let problems: Vec<String> = config
            .devices
            .iter()
            .filter_map(|device| device.probe().err())
            .flatten()
            .map(|problem| problem.to_string())
            .collect();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// Parses and validates TOML `text`; `origin` (a file name) prefixes every message.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, Error> {
        Config::from_toml_with(text, origin, &system::System::probe())
    }

    pub(crate) fn from_toml_with(
        text: &str,
        origin: &str,
        system: &system::System,
    ) -> Result<Config, Error> {
        let located = |mut errors: Vec<ConfigError>| {
            for error in &mut errors {
                error.locate(Some(text), origin);
            }
            Error::Invalid(errors)
        };
        let raw = RawConfig::from_toml(text)
            .map_err(|err| located(vec![ConfigError::from_toml(&err)]))?;
        validate::validate(raw, system).map_err(located)
    }

    /// Validates a configuration built in code (e.g. from the command line); messages carry
    /// `origin` but no line.
    pub fn from_raw(raw: RawConfig, origin: &str) -> Result<Config, Error> {
        validate::validate(raw, &system::System::probe()).map_err(|mut errors| {
            for error in &mut errors {
                error.locate(None, origin);
            }
            Error::Invalid(errors)
        })
    }

    /// Checks every device's backing store; returns every problem (empty = all good).
    pub fn check_backing(&self) -> Vec<BackingError> {
        self.devices
            .iter()
            .filter_map(|device| device.probe().err())
            .flatten()
            .collect()
    }

    /// The device exported as `shelf`.`slot`, if any.
    pub fn device(&self, shelf: u16, slot: u8) -> Option<&DeviceConfig> {
        self.devices
            .iter()
            .find(|device| device.shelf == shelf && device.slot == slot)
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = Error;

    /// Validates against this machine; messages carry no file name or line (use
    /// `Config::from_toml` or `Config::load` for those).
    fn try_from(raw: RawConfig) -> Result<Config, Error> {
        Config::from_raw(raw, "")
    }
}

/// One problem in a configuration: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name (or "command line"); empty if unknown.
    origin: String,
    /// 1-based line of `span`, once located.
    line: Option<usize>,
    /// Byte range in the source text; `None` for problems with defaults.
    span: Option<Range<usize>>,
    /// "key: what is wrong; how to fix it".
    message: String,
    /// Another place involved (e.g. the first device with the same shelf.slot).
    see_also: Option<(String, Range<usize>)>,
    /// 1-based line of `see_also`, once located.
    see_also_line: Option<usize>,
}

impl ConfigError {
    fn new(span: Option<Range<usize>>, message: String) -> ConfigError {
        ConfigError {
            origin: String::new(),
            line: None,
            // Values built in code carry the empty span 0..0: no location.
            span: span.filter(|span| !span.is_empty()),
            message,
            see_also: None,
            see_also_line: None,
        }
    }

    fn from_toml(err: &toml::de::Error) -> ConfigError {
        let mut message = err
            .message()
            .trim()
            .replace('\n', "; ")
            .replace("expected i64", "expected an integer");
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            let top_level = message.contains("expected one of `target`");
            if top_level && raw::field_names::<RawTarget>().contains(&field) {
                message.push_str("; settings of the whole target go under [target]");
            } else if top_level && raw::field_names::<RawDevice>().contains(&field) {
                message.push_str("; device settings go under a [[device]] table");
            }
        } else if message.starts_with("missing field") {
            message.push_str("; add it");
        }
        ConfigError::new(err.span(), message)
    }

    /// Fills in the origin and, given the source text, the line numbers.
    fn locate(&mut self, text: Option<&str>, origin: &str) {
        origin.clone_into(&mut self.origin);
        let line_of = |span: &Range<usize>| {
            text.map(|text| {
                let end = span.start.min(text.len());
                text.as_bytes()[..end]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1
            })
        };
        self.line = self.span.as_ref().and_then(line_of);
        self.see_also_line = self
            .see_also
            .as_ref()
            .filter(|(_, span)| !span.is_empty())
            .and_then(|(_, span)| line_of(span));
    }

    /// What is wrong and how to fix it, starting with the key.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The 1-based line of the offending value, if known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The file name (or "command line"), if known.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.origin.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{}:{line}: ", self.origin)?,
            (false, None) => write!(f, "{}: ", self.origin)?,
            (true, Some(line)) => write!(f, "line {line}: ")?,
            (true, None) => {}
        }
        f.write_str(&self.message)?;
        if let (Some((label, _)), Some(line)) = (&self.see_also, self.see_also_line) {
            write!(f, " ({label} is at line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// The configuration has problems; each one is listed.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<ConfigError>),
}

impl Error {
    /// The individual problems (empty for `Read`).
    pub fn problems(&self) -> &[ConfigError] {
        match self {
            Error::Read { .. } => &[],
            Error::Invalid(problems) => problems,
        }
    }
}

/// Displays one problem per line.
struct ProblemList<'a>(&'a [ConfigError]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

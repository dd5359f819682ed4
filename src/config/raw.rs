//! The configuration file as serde sees it: TOML shapes only, no meaning.
//!
//! Contract: these types accept any value of the right TOML type and keep its source span
//! (`Spanned`), so that `validate.rs` can report every semantic problem with its line instead
//! of stopping at the first. Numbers are `i64` (TOML's integer) so that out-of-range values
//! get a message that names the allowed range rather than serde's "expected u16". Keywords are
//! strings for the same reason. Unknown keys are rejected here (`deny_unknown_fields`), with
//! serde naming the key and the keys it expected.
//!
//! `examples_cover_every_key` in `mod.rs` checks that `config/aoe-xdp.toml` mentions every
//! field below, so a new key cannot go undocumented.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    /// Settings of the target as a whole (`[target]`).
    #[serde(default)]
    pub target: RawTarget,
    /// Named MAC access lists (`[acls]`): name = list of MACs or other ACL names.
    #[serde(default)]
    pub acls: BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    /// Exported devices (`[[device]]`), in file order.
    #[serde(default, rename = "device")]
    pub devices: Vec<Spanned<RawDevice>>,
}

/// `[target]`: process-wide settings. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTarget {
    /// Interface names or globs to listen on; default: every up, non-loopback Ethernet
    /// interface.
    pub interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    /// CPU core ids to run one pinned worker each on; default: every online core the process
    /// may run on (its affinity mask).
    pub worker_cores: Option<Spanned<Vec<Spanned<i64>>>>,
    /// Frames in each worker's UMEM; a power of two.
    pub umem_frames: Option<Spanned<i64>>,
    /// Bytes per UMEM frame: 2048 or 4096.
    pub frame_size: Option<Spanned<i64>>,
    /// Descriptors in each AF_XDP RX ring; a power of two.
    pub rx_ring_size: Option<Spanned<i64>>,
    /// Descriptors in each AF_XDP TX ring; a power of two.
    pub tx_ring_size: Option<Spanned<i64>>,
    /// Descriptors in each AF_XDP fill ring; a power of two.
    pub fill_ring_size: Option<Spanned<i64>>,
    /// Descriptors in each AF_XDP completion ring; a power of two.
    pub completion_ring_size: Option<Spanned<i64>>,
    /// Submission queue entries of each worker's io_uring; a power of two.
    pub uring_entries: Option<Spanned<i64>>,
    /// What an idle worker does: "spin" or "poll".
    pub idle: Option<Spanned<String>>,
    /// With idle = "poll": microseconds of polling after the last work before sleeping.
    pub idle_spin_us: Option<Spanned<i64>>,
    /// With idle = "poll": microseconds of a nap after the spin, before sleeping until a frame.
    pub idle_nap_us: Option<Spanned<i64>>,
    /// With idle = "poll": whether idle-spin-us is the longest spin, the spin adapting below it.
    pub idle_spin_adaptive: Option<Spanned<bool>>,
    /// Whether a worker yields its core after a poll that found nothing.
    pub idle_yield: Option<Spanned<bool>>,
    /// SO_BUSY_POLL_BUDGET: packets per busy-poll round.
    pub busy_poll_budget: Option<Spanned<i64>>,
    /// SO_BUSY_POLL: microseconds a socket call busy-polls the NIC; 0 turns busy polling off.
    pub busy_poll_usecs: Option<Spanned<i64>>,
    /// Socket kind: "auto", "xdp" or "packet".
    pub socket: Option<Spanned<String>>,
    /// XDP attach mode: "auto", "native" or "generic".
    pub xdp_mode: Option<Spanned<String>>,
    /// AF_PACKET receive ring layout: "v2" or "v3".
    pub packet_ring: Option<Spanned<String>>,
    /// Directory for persistent per-device AoE state (config string, mask list, reservations).
    pub state_directory: Option<Spanned<String>>,
    /// Path of the control unix socket (`aoe-xdp ctl`, `aoe-xdp --stats`).
    pub control_socket: Option<Spanned<String>>,
    /// Address of the Prometheus/OpenMetrics endpoint, e.g. "127.0.0.1:9469"; none if unset.
    pub metrics_listen: Option<Spanned<String>>,
    /// Log level: "error", "warn", "info", "debug" or "trace".
    pub log_level: Option<Spanned<String>>,
    /// Most contiguous requests merged into one vectored disk I/O.
    pub merge_max_segments: Option<Spanned<i64>>,
    /// Microseconds to hold a request back hoping to merge it with the next; 0 = never wait.
    pub merge_delay_us: Option<Spanned<i64>>,
    /// Whether devices announce themselves (unsolicited Query Config response) at start-up.
    pub advertise: Option<Spanned<bool>>,
    /// Serve requests whatever their destination MAC, not only those to the receiving
    /// interface's own MAC or to broadcast.
    pub accept_any_destination: Option<Spanned<bool>>,
}

/// `[[device]]`: one exported AoE device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDevice {
    /// Name used in logs, statistics and state files; default "e<shelf>.<slot>".
    pub name: Option<Spanned<String>>,
    /// Backing regular file or block device.
    pub path: Spanned<String>,
    /// AoE major address, 0..=65534.
    pub shelf: Spanned<i64>,
    /// AoE minor address, 0..=254.
    pub slot: Spanned<i64>,
    /// Refuse writes (ATA ABORT) and open the backing store read-only.
    pub read_only: Option<Spanned<bool>>,
    /// Open the backing store with O_DIRECT (bypass the page cache).
    pub direct_io: Option<Spanned<bool>>,
    /// When writes are acknowledged: "sync" or "writeback".
    pub durability: Option<Spanned<String>>,
    /// Keep the exported window locked in memory and copy through a shared mapping.
    pub resident: Option<Spanned<bool>>,
    /// Write-back writes are copies through a shared mapping instead of `pwritev2`.
    pub mapped_writes: Option<Spanned<bool>>,
    /// Reads are copies through a shared mapping (not locked) instead of `preadv2`/io_uring.
    pub mapped_reads: Option<Spanned<bool>>,
    /// 512-byte sectors skipped at the start of the backing store.
    pub offset: Option<Spanned<i64>>,
    /// 512-byte sectors exported; default: everything after `offset`.
    pub length: Option<Spanned<i64>>,
    /// Interface names or globs to export on; default: every interface of the target.
    pub interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    /// MACs or ACL names allowed to use the device; empty or absent = everyone.
    pub accept: Option<Spanned<Vec<Spanned<String>>>>,
    /// MACs or ACL names refused, checked after `accept`.
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    /// Broadcast the start-up advertisement even when `accept` is set.
    pub broadcast: Option<Spanned<bool>>,
    /// Outstanding requests advertised to initiators (AoE Buffer Count), 1..=65535.
    pub queue_length: Option<Spanned<i64>>,
    /// ATA IDENTIFY model string (≤ 40 printable ASCII characters).
    pub model: Option<Spanned<String>>,
    /// ATA IDENTIFY serial number (≤ 20 printable ASCII characters).
    pub serial: Option<Spanned<String>>,
}

impl RawConfig {
    /// Parses TOML text. Syntax and type errors stop at the first one (that is how the TOML
    /// parser works); their span is kept in the error.
    pub fn from_toml(text: &str) -> Result<RawConfig, toml::de::Error> {
        toml::from_str(text)
    }
}

impl RawDevice {
    /// A device with only the mandatory keys, for configurations built from the command line.
    pub fn new(shelf: i64, slot: i64, path: String) -> RawDevice {
        RawDevice {
            name: None,
            path: unspanned(path),
            shelf: unspanned(shelf),
            slot: unspanned(slot),
            read_only: None,
            direct_io: None,
            durability: None,
            resident: None,
            mapped_writes: None,
            mapped_reads: None,
            offset: None,
            length: None,
            interfaces: None,
            accept: None,
            deny: None,
            broadcast: None,
            queue_length: None,
            model: None,
            serial: None,
        }
    }
}

/// Wraps a value that did not come from a file (it has no line).
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// The keys (as written in TOML) of a struct deserialized with serde derive: the field list
/// serde passes to `deserialize_struct`, captured by a deserializer that reads nothing.
pub(crate) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields captured"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The probe always fails after capturing the fields; the error carries nothing.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

//! Rust mirror of `bpf/aoe_shared.h`: what user space and the XDP program agree on.
//!
//! Contract: every item here has the same value or layout as its C counterpart. The C header is
//! the source of truth; change both together and rebuild the object (`cargo xtask build-bpf`).
//! Struct layouts are checked at compile time below (size and field offsets); the map name
//! constants are checked at load time by [`super::loader`], which fails if a map is missing.

use std::mem::{offset_of, size_of};

/// Compile-time checks that `$ty` is `$size` bytes with each field at its offset (the C
/// layout in the header).
macro_rules! assert_c_layout {
    ($ty:ty, $size:expr, { $($field:ident: $offset:expr),* $(,)? }) => {
        const _: () = assert!(size_of::<$ty>() == $size);
        $(const _: () = assert!(offset_of!($ty, $field) == $offset);)*
    };
}

/// `AOE_ETH_P_AOE`: the AoE ethertype (the one definition is [`crate::wire::ETHERTYPE_AOE`]).
pub use crate::wire::ETHERTYPE_AOE as ETH_P_AOE;
/// `AOE_ETH_P_8021Q`: the one VLAN tag type the program looks behind.
pub const ETH_P_8021Q: u16 = 0x8100;
/// `AOE_VERSION`: the AoE version (high nibble of the first AoE byte) the program accepts.
pub const AOE_VERSION: u8 = 1;
/// `AOE_FLAG_RESPONSE`: the response flag (low nibble of the first AoE byte).
pub const AOE_FLAG_RESPONSE: u8 = 0x08;
/// `AOE_COMMON_HEADER_LEN`: AoE frames shorter than Ethernet header + this pass to the kernel.
pub const AOE_COMMON_HEADER_LEN: usize = crate::wire::AOE_HEADER_LEN;
/// `AOE_XSKS_MAP_MAX_ENTRIES`: the highest RX queue id + 1 that can have a socket (and
/// counters: `aoe_counters` has one entry per queue too).
pub const XSKS_MAP_MAX_ENTRIES: u32 = 256;

/// Name of the XDP program (the C function) in the object; the kernel reports it as the
/// program name, which is how a leftover attachment is recognised.
pub const PROGRAM_NAME: &str = "aoe_xdp";
/// Name of the `BPF_MAP_TYPE_XSKMAP` (queue id -> AF_XDP socket fd).
pub const XSKS_MAP_NAME: &str = "xsks_map";
/// Name of the `BPF_MAP_TYPE_PERCPU_ARRAY` holding [`XdpCounters`], one entry per RX queue.
pub const COUNTERS_MAP_NAME: &str = "aoe_counters";
/// Name of the single-entry `BPF_MAP_TYPE_ARRAY` holding [`XdpConfig`].
pub const CONFIG_MAP_NAME: &str = "aoe_config";

/// `struct aoe_xdp_config`: what the loader tells the program about its interface, written
/// before the program is attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// The interface's own MAC: requests to it or to broadcast are redirected.
    pub mac: [u8; 6],
    /// Non-zero: requests are redirected whatever their destination MAC.
    pub accept_any_destination: u8,
    /// Zero.
    pub reserved: u8,
}

// Layout of `struct aoe_xdp_config` in aoe_shared.h: six bytes, two more, no padding.
assert_c_layout!(XdpConfig, 8, {
    mac: 0,
    accept_any_destination: 6,
    reserved: 7,
});

impl XdpConfig {
    /// Size of the C struct, i.e. the map's value size.
    pub const SIZE: usize = size_of::<Self>();

    /// The value as the kernel stores it (C layout; bytes only, so no endianness).
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        bytes[..6].copy_from_slice(&self.mac);
        bytes[6] = self.accept_any_destination;
        bytes[7] = self.reserved;
        bytes
    }
}

/// `struct aoe_xdp_counters`: one per CPU and RX queue; every frame increments exactly one
/// field of its queue's entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// AoE requests redirected to the AF_XDP socket of their RX queue.
    pub redirected: u64,
    /// Frames that are not AoE (other ethertype, or more than one VLAN tag).
    pub passed_non_aoe: u64,
    /// AoE responses (response flag set), e.g. from another target on the wire.
    pub passed_response: u64,
    /// AoE frames with a truncated common header or a version other than 1.
    pub passed_malformed: u64,
    /// AoE requests that arrived on a queue with no socket in the XSKMAP.
    pub passed_no_xsk: u64,
    /// AoE requests addressed to another host's MAC or a multicast group (passed to the
    /// kernel, not served).
    pub passed_foreign_dst: u64,
}

// Layout of `struct aoe_xdp_counters` in aoe_shared.h: six __u64, no padding.
assert_c_layout!(XdpCounters, 48, {
    redirected: 0,
    passed_non_aoe: 8,
    passed_response: 16,
    passed_malformed: 24,
    passed_no_xsk: 32,
    passed_foreign_dst: 40,
});

impl XdpCounters {
    /// Size of the C struct, i.e. the map's value size per CPU.
    pub const SIZE: usize = size_of::<Self>();

    /// Decodes one CPU's value as the kernel stores it (native endian, C layout).
    ///
    /// Returns `None` if `bytes` is not exactly [`Self::SIZE`] long (an object built from a
    /// different header).
    pub fn from_ne_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::SIZE {
            return None;
        }
        let field = |index: usize| {
            let start = index * 8;
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[start..start + 8]);
            u64::from_ne_bytes(word)
        };
        Some(Self {
            redirected: field(0),
            passed_non_aoe: field(1),
            passed_response: field(2),
            passed_malformed: field(3),
            passed_no_xsk: field(4),
            passed_foreign_dst: field(5),
        })
    }

    /// Field-wise sum, used to fold the per-CPU values into one total.
    #[must_use]
    pub fn saturating_add(self, other: Self) -> Self {
        Self {
            redirected: self.redirected.saturating_add(other.redirected),
            passed_non_aoe: self.passed_non_aoe.saturating_add(other.passed_non_aoe),
            passed_response: self.passed_response.saturating_add(other.passed_response),
            passed_malformed: self.passed_malformed.saturating_add(other.passed_malformed),
            passed_no_xsk: self.passed_no_xsk.saturating_add(other.passed_no_xsk),
            passed_foreign_dst: self
                .passed_foreign_dst
                .saturating_add(other.passed_foreign_dst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `struct name { ... };` in the header between the braces, trimmed.
    fn header_struct(name: &str) -> impl Iterator<Item = &'static str> + Clone {
        include_str!("../../../bpf/aoe_shared.h")
            .split(&format!("struct {name} {{"))
            .nth(1)
            .and_then(|rest| rest.split("};").next())
            .unwrap_or_else(|| panic!("struct {name} missing from aoe_shared.h"))
            .lines()
            .map(str::trim)
    }

    /// The header's `#define`s must match the constants above; parse them from the header itself
    /// so a change on either side fails here.
    #[test]
    fn test_header_constants_match() {
        let header = include_str!("../../../bpf/aoe_shared.h");
        let define = |name: &str| -> u64 {
            let line = header
                .lines()
                .find(|line| line.split_whitespace().nth(1) == Some(name))
                .unwrap_or_else(|| panic!("#define {name} missing from aoe_shared.h"));
            let value = line.split_whitespace().nth(2).unwrap();
            match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
                None => value.parse().unwrap(),
            }
        };
        assert_eq!(define("AOE_ETH_P_AOE"), u64::from(ETH_P_AOE));
        assert_eq!(define("AOE_ETH_P_8021Q"), u64::from(ETH_P_8021Q));
        assert_eq!(define("AOE_VERSION"), u64::from(AOE_VERSION));
        assert_eq!(define("AOE_FLAG_RESPONSE"), u64::from(AOE_FLAG_RESPONSE));
        assert_eq!(
            define("AOE_COMMON_HEADER_LEN"),
            AOE_COMMON_HEADER_LEN as u64
        );
        assert_eq!(
            define("AOE_XSKS_MAP_MAX_ENTRIES"),
            u64::from(XSKS_MAP_MAX_ENTRIES)
        );
    }

    /// The struct in the header lists the same fields in the same order, all `__u64`.
    #[test]
    fn test_header_struct_fields_match() {
        let body = header_struct("aoe_xdp_counters");
        let fields: Vec<&str> = body
            .clone()
            .filter(|line| line.starts_with("__u64"))
            .map(|line| {
                line.trim_start_matches("__u64")
                    .trim()
                    .trim_end_matches(';')
            })
            .collect();
        assert_eq!(
            fields,
            [
                "redirected",
                "passed_non_aoe",
                "passed_response",
                "passed_malformed",
                "passed_no_xsk",
                "passed_foreign_dst"
            ]
        );
        let declared = body.filter(|line| line.ends_with(';')).count();
        assert_eq!(
            declared,
            fields.len(),
            "a field that is not __u64 was added"
        );
    }

    /// `struct aoe_xdp_config` in the header: the MAC array, then two bytes.
    #[test]
    fn test_header_config_struct_matches() {
        let fields: Vec<&str> = header_struct("aoe_xdp_config")
            .filter(|line| line.starts_with("__u"))
            .collect();
        assert_eq!(
            fields,
            [
                "__u8 mac[6];",
                "__u8 accept_any_destination;",
                "__u8 reserved;"
            ]
        );
        let config = XdpConfig {
            mac: [2, 0, 0, 0, 0, 9],
            accept_any_destination: 1,
            reserved: 0,
        };
        assert_eq!(config.to_bytes(), [2, 0, 0, 0, 0, 9, 1, 0]);
    }

    #[test]
    fn test_counters_decode_and_sum() {
        let mut bytes = [0u8; XdpCounters::SIZE];
        for (index, value) in [1u64, 2, 3, 4, 5, 6].into_iter().enumerate() {
            bytes[index * 8..index * 8 + 8].copy_from_slice(&value.to_ne_bytes());
        }
        let one = XdpCounters::from_ne_bytes(&bytes).unwrap();
        assert_eq!(one.passed_response, 3);
        let two = one.saturating_add(one);
        assert_eq!(
            two,
            XdpCounters {
                redirected: 2,
                passed_non_aoe: 4,
                passed_response: 6,
                passed_malformed: 8,
                passed_no_xsk: 10,
                passed_foreign_dst: 12,
            }
        );
        assert_eq!(XdpCounters::from_ne_bytes(&bytes[..47]), None);
    }
}

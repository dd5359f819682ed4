//! Validated runtime value types of the configuration.
//!
//! Contract: every value here has passed validation; none of them derives `Deserialize`
//! (the raw serde types live in `raw.rs`). Parsing from text goes through `FromStr`, whose
//! error is a short phrase (what was expected), which `validate.rs` prefixes with the key.

use std::fmt;
use std::str::FromStr;

/// Linux `IFNAMSIZ` minus the terminating NUL: the longest interface name.
pub const INTERFACE_NAME_LEN_MAX: usize = 15;

pub use crate::wire::MacAddr;

/// The error of [`parse_mac`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address")]
pub struct MacAddrParseError;

/// Parses a MAC address in any common spelling.
///
/// Accepts the common spellings, in either case: `aa:bb:cc:dd:ee:ff`, `a:b:c:d:e:f`
/// (`ether_aton`), `aa-bb-cc-dd-ee-ff`, `aabb.ccdd.eeff` and `aabbccddeeff` (vblade `-m`).
pub fn parse_mac(text: &str) -> Result<MacAddr, MacAddrParseError> {
    let groups: Vec<&str> = if text.contains(':') {
        text.split(':').collect()
    } else if text.contains('-') {
        text.split('-').collect()
    } else if text.contains('.') {
        text.split('.').collect()
    } else {
        vec![text]
    };
    let group_len = match groups.len() {
        6 => 1..=2,
        3 => 4..=4,
        1 => 12..=12,
        _ => return Err(MacAddrParseError),
    };
    // Dotted groups are exactly four digits; only colon/dash groups may drop a zero.
    let mut octets = [0u8; 6];
    let mut octet_index = 0;
    for group in groups {
        if !group_len.contains(&group.len()) || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MacAddrParseError);
        }
        let digits = if group.len() == 1 {
            format!("0{group}")
        } else {
            group.to_owned()
        };
        for pair in digits.as_bytes().chunks(2) {
            let pair = std::str::from_utf8(pair).map_err(|_| MacAddrParseError)?;
            octets[octet_index] = u8::from_str_radix(pair, 16).map_err(|_| MacAddrParseError)?;
            octet_index += 1;
        }
    }
    assert_eq!(octet_index, 6, "group lengths add up to six octets");
    Ok(MacAddr(octets))
}

/// A sorted set of MAC addresses (an access list after name resolution).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacList {
    /// Sorted, without duplicates, so that lookups are a binary search.
    macs: Vec<MacAddr>,
}

impl MacList {
    /// Entries allowed per list after resolution: ggaoed's limit, and what fits a Mac Mask List.
    pub const LEN_MAX: usize = 255;

    /// Builds a list from any MACs, sorting and removing duplicates.
    pub fn new(mut macs: Vec<MacAddr>) -> MacList {
        macs.sort_unstable();
        macs.dedup();
        MacList { macs }
    }

    /// True if `mac` is on the list.
    pub fn contains(&self, mac: &MacAddr) -> bool {
        self.macs.binary_search(mac).is_ok()
    }

    /// True if the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty()
    }

    /// Number of distinct MACs.
    pub fn len(&self) -> usize {
        self.macs.len()
    }

    /// The MACs in ascending order.
    pub fn as_slice(&self) -> &[MacAddr] {
        &self.macs
    }
}

/// An interface name or a shell-style glob (`*`, `?`, `[a-z]`, `[!0-9]`) over interface names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePattern {
    pattern: String,
}

/// Why a string is not an [`InterfacePattern`]; the message completes "interface pattern … ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfacePatternError {
    /// The pattern is the empty string.
    #[error("is empty")]
    Empty,
    /// The pattern contains a character Linux forbids in interface names.
    #[error("contains {0:?}, which Linux does not allow in interface names")]
    ForbiddenChar(char),
    /// The pattern is `.` or `..`.
    #[error("is a reserved name")]
    Reserved,
    /// A `[` without its `]`, or an empty class.
    #[error("has an unterminated or empty [...] class")]
    BadClass,
    /// Every name the pattern matches is longer than Linux allows.
    #[error("only matches names longer than {INTERFACE_NAME_LEN_MAX} characters")]
    TooLong,
}

impl InterfacePattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// True if the pattern has no glob metacharacters: it names exactly one interface.
    pub fn is_literal(&self) -> bool {
        !self.pattern.contains(['*', '?', '['])
    }

    /// True if the interface `name` matches the pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.pattern.as_bytes(), name.as_bytes())
    }
}

impl fmt::Display for InterfacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl FromStr for InterfacePattern {
    type Err = InterfacePatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(InterfacePatternError::Empty);
        }
        if text == "." || text == ".." {
            return Err(InterfacePatternError::Reserved);
        }
        // The kernel's dev_valid_name() rejects '/', ':' and whitespace.
        if let Some(c) = text
            .chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(InterfacePatternError::ForbiddenChar(c));
        }
        let mut min_len = 0;
        let bytes = text.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b'*' => index += 1,
                b'[' => {
                    index = class_end(bytes, index).ok_or(InterfacePatternError::BadClass)?;
                    min_len += 1;
                }
                _ => {
                    index += 1;
                    min_len += 1;
                }
            }
        }
        if min_len > INTERFACE_NAME_LEN_MAX {
            return Err(InterfacePatternError::TooLong);
        }
        Ok(InterfacePattern {
            pattern: text.to_owned(),
        })
    }
}

/// Index just past the `]` closing the class that opens at `bytes[start] == b'['`, if any.
/// A `]` right after `[` or `[!` is a member, as in fnmatch(3).
fn class_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut index = start + 1;
    if matches!(bytes.get(index), Some(b'!' | b'^')) {
        index += 1;
    }
    let members_start = index;
    while index < bytes.len() {
        if bytes[index] == b']' && index > members_start {
            return Some(index + 1);
        }
        index += 1;
    }
    None
}

/// True if `class` (the bytes between `[` and `]`, negation marker included) admits `c`.
fn class_matches(class: &[u8], c: u8) -> bool {
    let (negated, members) = match class.first() {
        Some(b'!' | b'^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut index = 0;
    let mut found = false;
    while index < members.len() {
        if index + 2 < members.len() && members[index + 1] == b'-' {
            found |= (members[index]..=members[index + 2]).contains(&c);
            index += 3;
        } else {
            found |= members[index] == c;
            index += 1;
        }
    }
    found != negated
}

/// fnmatch(3)-style matching without escapes; `pattern` was validated by `from_str`.
/// Iterative with one backtrack point per `*`: linear in practice on names ≤ 15 bytes.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => {
                class_end(pattern, p).filter(|end| class_matches(&pattern[p + 1..end - 1], name[n]))
            }
            Some(c) if *c == name[n] => Some(p + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                n += 1;
            }
            (None, Some((star_p, star_n))) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Which interfaces something applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// For the target: every up, non-loopback Ethernet interface. For a device: every
    /// interface the target listens on.
    All,
    /// Interfaces matching any of these patterns (never empty).
    Only(Vec<InterfacePattern>),
}

impl Interfaces {
    /// True if the interface `name` is selected. With [`Interfaces::All`] the caller decides
    /// what "all" means (up Ethernet interfaces, or the target's interfaces).
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Interfaces::All => true,
            Interfaces::Only(patterns) => patterns.iter().any(|p| p.matches(name)),
        }
    }
}

impl fmt::Display for Interfaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interfaces::All => f.write_str("all"),
            Interfaces::Only(patterns) => {
                for (index, pattern) in patterns.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(pattern.as_str())?;
                }
                Ok(())
            }
        }
    }
}

/// Declares a keyword enum with `FromStr`, `Display` and the list of keywords for messages.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// The keywords accepted in the configuration, in declaration order.
            pub const KEYWORDS: &'static [&'static str] = &[$($text),+];

            /// The configuration keyword of this value.
            pub fn as_str(&self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = KeywordError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(KeywordError { expected: Self::KEYWORDS }),
                }
            }
        }
    };
}

/// A keyword that is not one of the accepted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("use one of {}", quoted_list(.expected))]
pub struct KeywordError {
    /// The accepted keywords.
    pub expected: &'static [&'static str],
}

/// `"a", "b" or "c"`.
pub(crate) fn quoted_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

keyword_enum! {
    /// When a write is acknowledged to the initiator.
    pub enum Durability {
        /// After the data is on stable storage: after a data sync (`fdatasync`) that started
        /// once the write had completed (group commit). The Linux initiator never sends
        /// FLUSH CACHE, so this is the only setting under which an ack survives a power loss.
        Sync = "sync",
        /// As soon as the data is in the page cache: faster, but a crash of the target host
        /// loses writes the initiator believes are done.
        Writeback = "writeback",
    }
}

keyword_enum! {
    /// What a worker does when it has nothing to do.
    pub enum IdleMode {
        /// Keep polling the rings: one core at 100 % per worker, even when idle.
        Spin = "spin",
        /// Keep polling for `idle-spin-us` after the last work, then sleep in poll(2) on the
        /// worker's sockets and its wake-up until there is work (the default).
        Poll = "poll",
    }
}

keyword_enum! {
    /// Which kind of packet socket carries AoE frames.
    pub enum SocketKind {
        /// AF_XDP, falling back to AF_PACKET on interfaces where XDP cannot be attached.
        Auto = "auto",
        /// AF_XDP only; an interface without XDP support is an error.
        Xdp = "xdp",
        /// AF_PACKET only (no XDP program is attached).
        Packet = "packet",
    }
}

keyword_enum! {
    /// Receive ring layout of the AF_PACKET fallback.
    pub enum PacketRing {
        /// `TPACKET_V2`: one slot per frame, handed over at once (lowest latency).
        V2 = "v2",
        /// `TPACKET_V3`: frames packed into 4 KiB blocks, handed over when a block is full or
        /// after 1 ms (fewer wake-ups under heavy load, up to 1 ms more latency per window).
        V3 = "v3",
    }
}

keyword_enum! {
    /// How the XDP program is attached.
    pub enum XdpMode {
        /// Native (driver) mode, falling back to generic mode.
        Auto = "auto",
        /// Native (driver) mode only.
        Native = "native",
        /// Generic (skb) mode: works on every interface, always copies.
        Generic = "generic",
    }
}

keyword_enum! {
    /// The most verbose log level emitted (unless RUST_LOG or --log-level says otherwise).
    pub enum LogLevel {
        /// Errors only.
        Error = "error",
        /// Errors and warnings.
        Warn = "warn",
        /// Start-up, shutdown and configuration changes.
        Info = "info",
        /// Per-interface and per-device events.
        Debug = "debug",
        /// Everything, including per-request events.
        Trace = "trace",
    }
}

/// How a device announces itself when it is attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertisement {
    /// No unsolicited Query Config response (`advertise = false` in `[target]`).
    Off,
    /// One broadcast Query Config response per interface.
    Broadcast,
    /// One unicast Query Config response per MAC (the device's `accept` list).
    Unicast(MacList),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(text: &str) -> MacAddr {
        parse_mac(text).unwrap()
    }

    #[test]
    fn test_mac_spellings() {
        let expected = MacAddr([0x00, 0x1b, 0x21, 0x0a, 0xbc, 0xde]);
        for text in [
            "00:1b:21:0a:bc:de",
            "00:1B:21:0A:BC:DE",
            "0:1b:21:a:bc:de",
            "00-1b-21-0a-bc-de",
            "001b.210a.bcde",
            "001B210ABCDE",
        ] {
            assert_eq!(mac(text), expected, "{text}");
        }
        assert_eq!(expected.to_string(), "00:1b:21:0a:bc:de");
    }

    #[test]
    fn test_mac_rejections() {
        for text in [
            "",
            "00:1b:21:0a:bc",
            "00:1b:21:0a:bc:de:ff",
            "00:1b:21:0a:bc:dg",
            "000:1b:21:0a:bc:de",
            "00:1b-21:0a:bc:de",
            "001b210abcd",
            "001b.210a.bcd",
            "1b.210a.bcde0",
            "admins",
        ] {
            assert_eq!(parse_mac(text), Err(MacAddrParseError), "{text}");
        }
        assert!(mac("ff:ff:ff:ff:ff:ff").is_multicast());
        assert!(mac("01:00:5e:00:00:01").is_multicast());
        assert!(!mac("02:00:00:00:00:01").is_multicast());
        assert_eq!(mac("00:00:00:00:00:00").0, [0; 6]);
    }

    #[test]
    fn test_mac_list_sorted_dedup() {
        let list = MacList::new(vec![
            mac("02:00:00:00:00:02"),
            mac("02:00:00:00:00:01"),
            mac("02:00:00:00:00:02"),
        ]);
        assert_eq!(list.len(), 2);
        assert_eq!(list.as_slice()[0], mac("02:00:00:00:00:01"));
        assert!(list.contains(&mac("02:00:00:00:00:02")));
        assert!(!list.contains(&mac("02:00:00:00:00:03")));
    }

    fn pattern(text: &str) -> InterfacePattern {
        text.parse().unwrap()
    }

    #[test]
    fn test_glob_matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("eth0", "eth0", true),
            ("eth0", "eth1", false),
            ("eth*", "eth", true),
            ("eth*", "eth12", true),
            ("eth*", "veth0", false),
            ("*eth*", "veth-aoe0", true),
            ("veth-aoe*", "veth-aoe3", true),
            ("eth?", "eth1", true),
            ("eth?", "eth10", false),
            ("eth[0-3]", "eth2", true),
            ("eth[0-3]", "eth4", false),
            ("eth[!0-3]", "eth4", true),
            ("eth[!0-3]", "eth2", false),
            ("e*h*1", "eth0eth1", true),
            ("e*h*1", "eth0eth2", false),
            ("*", "anything", true),
        ];
        for (glob, name, expected) in cases {
            assert_eq!(pattern(glob).matches(name), *expected, "{glob} vs {name}");
        }
        assert!(pattern("eth0").is_literal());
        assert!(!pattern("eth[01]").is_literal());
    }

    #[test]
    fn test_pattern_rejections() {
        use InterfacePatternError as E;
        assert_eq!("".parse::<InterfacePattern>(), Err(E::Empty));
        assert_eq!("..".parse::<InterfacePattern>(), Err(E::Reserved));
        assert_eq!(
            "eth 0".parse::<InterfacePattern>(),
            Err(E::ForbiddenChar(' '))
        );
        assert_eq!(
            "eth0:1".parse::<InterfacePattern>(),
            Err(E::ForbiddenChar(':'))
        );
        assert_eq!(
            "a/b".parse::<InterfacePattern>(),
            Err(E::ForbiddenChar('/'))
        );
        assert_eq!("eth[0".parse::<InterfacePattern>(), Err(E::BadClass));
        assert_eq!("eth[]".parse::<InterfacePattern>(), Err(E::BadClass));
        assert_eq!(
            "abcdefghijklmnop".parse::<InterfacePattern>(),
            Err(E::TooLong)
        );
        // Fifteen characters plus stars still fits.
        assert!("abcdefghijklmno*".parse::<InterfacePattern>().is_ok());
    }

    #[test]
    fn test_keywords() {
        assert_eq!("writeback".parse::<Durability>(), Ok(Durability::Writeback));
        let err = "fast".parse::<Durability>().unwrap_err();
        assert_eq!(err.to_string(), r#"use one of "sync" or "writeback""#);
        let err = "loud".parse::<LogLevel>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"use one of "error", "warn", "info", "debug" or "trace""#
        );
        assert_eq!(SocketKind::Packet.to_string(), "packet");
    }
}

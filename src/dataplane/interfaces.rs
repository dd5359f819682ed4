//! Network interfaces as the dataplane sees them: name, index, MAC, MTU and RX queue count,
//! read from sysfs (`/sys/class/net/<name>/...`) in the current network namespace.

use std::fs;

use crate::config::Interfaces;
use crate::sys::interface;
use crate::wire::MacAddr;

/// `ARPHRD_ETHER`: the sysfs `type` of an Ethernet interface.
const ARPHRD_ETHER: u32 = 1;
/// `IFF_UP` in the sysfs `flags` word.
const IFF_UP: u32 = 0x1;

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name, e.g. `eth0`.
    pub name: String,
    /// Kernel interface index.
    pub ifindex: u32,
    /// Hardware address: the source of our replies on this interface.
    pub mac: MacAddr,
    /// MTU in bytes.
    pub mtu: u32,
    /// Number of RX queues; one AF_XDP socket is bound to each.
    pub rx_queues: u32,
    /// Administratively up.
    pub up: bool,
}

/// Why interfaces could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// sysfs could not be read.
    #[error("cannot list network interfaces in /sys/class/net: {0}")]
    List(std::io::Error),
    /// An interface attribute is missing or malformed.
    #[error("interface {name}: cannot read {attribute} from sysfs")]
    Attribute {
        /// Interface name.
        name: String,
        /// Attribute file.
        attribute: &'static str,
    },
    /// Nothing matched.
    #[error(
        "no Ethernet interface matches {patterns}; check `interfaces` (ip link shows what exists)"
    )]
    NoneMatched {
        /// The configured patterns.
        patterns: String,
    },
}

fn read_attr(name: &str, attribute: &'static str) -> Result<String, InterfaceError> {
    interface::attribute(name, attribute).map_err(|_| InterfaceError::Attribute {
        name: name.to_owned(),
        attribute,
    })
}

fn parse_num(text: &str, name: &str, attribute: &'static str) -> Result<u32, InterfaceError> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.ok_or(InterfaceError::Attribute {
        name: name.to_owned(),
        attribute,
    })
}

/// Reads one interface from sysfs; `None` if it is not Ethernet.
pub fn read_interface(name: &str) -> Result<Option<Interface>, InterfaceError> {
    let kind = parse_num(&read_attr(name, "type")?, name, "type")?;
    if kind != ARPHRD_ETHER || name == "lo" {
        return Ok(None);
    }
    let mac = read_attr(name, "address")?
        .parse::<MacAddr>()
        .map_err(|_| InterfaceError::Attribute {
            name: name.to_owned(),
            attribute: "address",
        })?;
    let flags = parse_num(&read_attr(name, "flags")?, name, "flags")?;
    let rx_queues = interface::rx_queue_count(name).unwrap_or(1);
    Ok(Some(Interface {
        name: name.to_owned(),
        ifindex: parse_num(&read_attr(name, "ifindex")?, name, "ifindex")?,
        mac,
        mtu: parse_num(&read_attr(name, "mtu")?, name, "mtu")?,
        rx_queues,
        up: flags & IFF_UP != 0,
    }))
}

/// The Ethernet interfaces selected by `patterns`: with [`Interfaces::All`], every Ethernet
/// interface that is up; with patterns, every Ethernet interface whose name matches.
pub fn resolve(patterns: &Interfaces) -> Result<Vec<Interface>, InterfaceError> {
    let mut names: Vec<String> = fs::read_dir(interface::SYSFS_NET)
        .map_err(InterfaceError::List)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut found = Vec::new();
    for name in names {
        let selected = match patterns {
            Interfaces::All => true,
            Interfaces::Only(_) => patterns.matches(&name),
        };
        if !selected {
            continue;
        }
        let interface = match read_interface(&name) {
            Ok(interface) => interface,
            // Being deleted (or still being created): listed, but its attributes cannot be
            // read. It is not there; its link event comes when it is.
            Err(error) => {
                tracing::debug!(%error, "skipped an interface that cannot be read");
                None
            }
        };
        if let Some(interface) = interface {
            if interface.up || !matches!(patterns, Interfaces::All) {
                found.push(interface);
            }
        }
    }
    if found.is_empty() {
        let patterns = match patterns {
            Interfaces::All => "all (no Ethernet interface is up)".to_owned(),
            Interfaces::Only(list) => list
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect::<Vec<_>>()
                .join(", "),
        };
        return Err(InterfaceError::NoneMatched { patterns });
    }
    Ok(found)
}

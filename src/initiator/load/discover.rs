//! Finding the paths to a device: every (interface, target MAC) that answers for its address.
//!
//! One blocking call per interface, before the run; it sleeps between polls (it is not on the
//! data path).

use std::time::{Duration, Instant};

use super::LoadError;
use crate::initiator::frames::{self, Reply, Route};
use crate::sys::packet::burst::{BurstConfig, BurstSocket};
use crate::wire::{ConfigCommand, MacAddr};

/// A target that answered a discovery on one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// The target's MAC on this interface.
    pub mac: MacAddr,
    /// Advertised buffer count.
    pub buffer_count: u16,
    /// Advertised sectors per request (0: the initiator assumes 2).
    pub sector_count: u8,
}

/// Tag of discovery queries (top bit clear; any value works, replies are matched on it).
const DISCOVERY_TAG: u32 = 0x4C44_0001;

/// Interval between discovery queries.
const DISCOVERY_REPEAT: Duration = Duration::from_millis(100);

/// Finds every target MAC that answers for `shelf.slot` on `interface` within `wait`: a
/// Query Config read (repeated every 100 ms) sent to the broadcast MAC but addressed to `shelf.slot` (as the Linux
/// driver does for a known device), so targets that serve every address (the reflector) answer
/// as that device. Sorted by MAC.
pub fn discover(
    interface: &str,
    local_mac: MacAddr,
    shelf: u16,
    slot: u8,
    wait: Duration,
) -> Result<Vec<Discovered>, LoadError> {
    let socket_error = |source| LoadError::Socket {
        interface: interface.to_owned(),
        source,
    };
    let mut socket = BurstSocket::open(
        interface,
        BurstConfig {
            batch: 16,
            frame_size: 9216,
        },
    )
    .map_err(socket_error)?;
    let route = Route {
        dst: MacAddr::BROADCAST,
        src: local_mac,
        vlan_tci: None,
        shelf,
        slot,
    };
    let deadline = Instant::now() + wait;
    let mut next_query = Instant::now();
    let mut found: Vec<Discovered> = Vec::new();
    while Instant::now() < deadline {
        if Instant::now() >= next_query {
            // Repeated every 100 ms: a target that was still starting (or a lost frame) is
            // found anyway. Answers are deduplicated by MAC.
            let buf = socket.tx_buffer().expect("flushed after every query");
            let len = frames::query_config(buf, &route, DISCOVERY_TAG, ConfigCommand::Read, b"");
            socket.tx_commit(len);
            while socket.tx_pending() > 0 {
                socket.flush().map_err(socket_error)?;
            }
            next_query += DISCOVERY_REPEAT;
        }
        let count = socket.recv_batch().map_err(socket_error)?;
        for index in 0..count {
            let Some(reply) = Reply::parse(socket.rx_frame(index)) else {
                continue;
            };
            let Some(cfg) = reply.query_config() else {
                continue;
            };
            if reply.aoe.tag != DISCOVERY_TAG
                || reply.aoe.major != shelf
                || reply.aoe.minor != slot
                || reply.error().is_some()
                || found.iter().any(|f| f.mac == reply.src)
            {
                continue;
            }
            found.push(Discovered {
                mac: reply.src,
                buffer_count: cfg.buffer_count,
                sector_count: cfg.sector_count,
            });
        }
        if count == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    found.sort_by_key(|f| f.mac);
    Ok(found)
}

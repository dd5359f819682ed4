//! One target port and one initiator host, without a network (the worker tests and the
//! benches): their MACs, the port the target core sees, and the route from the host to a
//! device of shelf 1.

use aoe_xdp::aoe::PortInfo;
use aoe_xdp::initiator::frames::Route;
use aoe_xdp::wire::MacAddr;

/// The target port's MAC.
pub const TARGET_MAC: MacAddr = MacAddr([0x02, 0xAA, 0, 0, 0, 1]);
/// The initiator's MAC.
pub const HOST: MacAddr = MacAddr([0x02, 0xBB, 0, 0, 0, 1]);
/// The target port: index 0, MTU 1500.
pub const PORT: PortInfo = PortInfo {
    index: 0,
    mac: TARGET_MAC,
    mtu: 1500,
};

/// From [`HOST`] to e1.`slot` behind [`TARGET_MAC`], untagged.
pub fn route(slot: u8) -> Route {
    Route {
        dst: TARGET_MAC,
        src: HOST,
        vlan_tci: None,
        shelf: 1,
        slot,
    }
}

//! AoE frames for the port tests (`packet_port`, `xdp_reflect`): minimal requests built by
//! hand, and what a reflected reply must look like; and the other hosts' addresses the
//! destination-filter tests (`dataplane` too) send to.

use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(2);
/// How long to watch for a frame that must NOT arrive.
pub const QUIET: Duration = Duration::from_millis(300);
pub use aoe_xdp::wire::ETHERTYPE_AOE as ETH_P_AOE;
/// AoE version 1, request.
pub const REQUEST: u8 = 0x10;
/// AoE version 1, response flag set.
pub const RESPONSE: u8 = 0x18;
/// A unicast address (locally administered) that no interface of the tests has: another
/// host's.
pub const FOREIGN_MAC: [u8; 6] = [0x02, 0xAE, 0x00, 0x00, 0x00, 0x01];
/// A multicast group (IPv4's 224.0.0.66 mapped to Ethernet).
pub const GROUP_MAC: [u8; 6] = [0x01, 0x00, 0x5E, 0x00, 0x00, 0x42];

/// A minimal AoE Query Config frame: 32 bytes untagged, 36 with a VLAN tag (both runts).
pub fn aoe_frame(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    ver_flags: u8,
    tag: u32,
) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    if let Some(id) = vlan {
        frame.extend_from_slice(&0x8100u16.to_be_bytes());
        frame.extend_from_slice(&id.to_be_bytes());
    }
    frame.extend_from_slice(&ETH_P_AOE.to_be_bytes());
    frame.push(ver_flags);
    frame.push(0); // error
    frame.extend_from_slice(&7u16.to_be_bytes()); // major
    frame.push(3); // minor
    frame.push(1); // command: Query Config
    frame.extend_from_slice(&tag.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]); // bufcnt, fw, scnt, ver|ccmd, strlen
    frame
}

/// Offset of the AoE header in a frame (behind at most one VLAN tag).
pub fn aoe_offset(frame: &[u8]) -> usize {
    if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    }
}

pub fn is_aoe(frame: &[u8]) -> bool {
    let offset = aoe_offset(frame);
    frame.len() >= offset && frame[offset - 2..offset] == ETH_P_AOE.to_be_bytes()
}

pub fn aoe_tag(frame: &[u8]) -> u32 {
    let at = aoe_offset(frame) + 6;
    u32::from_be_bytes(frame[at..at + 4].try_into().unwrap())
}

/// Swaps a frame's destination and source MAC addresses in place.
pub fn swap_macs(frame: &mut [u8]) {
    let mut macs = [0u8; 12];
    macs.copy_from_slice(&frame[..12]);
    frame[..6].copy_from_slice(&macs[6..]);
    frame[6..12].copy_from_slice(&macs[..6]);
}

/// What A should send back for `request`: MACs swapped, response flag set.
pub fn expected_reply(request: &[u8]) -> Vec<u8> {
    let mut reply = request.to_vec();
    swap_macs(&mut reply);
    reply[aoe_offset(request)] |= 0x08;
    reply
}

/// Recognisable "sector data" byte `i`.
pub fn pattern(i: usize) -> u8 {
    u8::try_from(i % 251).unwrap()
}

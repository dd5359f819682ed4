//! AF_XDP: the XDP program and its loader, the BPF ABI shared with it, the XSK socket with its
//! UMEM and TX ring, and the destination rule both ports apply.
//!
//! The rule from xsk-rs — a frame handed to the fill or TX ring must not be touched until it
//! comes back on the RX or completion ring — is turned into types: [`crate::sys::frame::FramePool`]
//! owns every frame and asserts each ownership transition, and the rest of the crate sees only
//! safe, move-only [`crate::sys::frame::Frame`] handles through [`xsk::XskPort`].

pub mod abi;
pub mod loader;
mod txring;
pub mod umem;
pub mod xsk;

/// Which destination MAC addresses a port serves AoE requests for. The XDP program
/// (`bpf/aoe_xdp.bpf.c`, configured by [`loader::XdpProgram::attach`]) and the AF_PACKET port
/// ([`crate::sys::packet::PacketPort::bind`]) apply this same rule.
///
/// A port may see frames meant for other hosts (a bridge port, a hub, a promiscuous or mirror
/// port, a hypervisor's tap). Executing them would let two targets that export the same
/// shelf.slot on one segment both carry out one initiator's writes. Ours are the interface's
/// own address and broadcast, where initiators send Query Config to find targets. Multicast
/// is not: AoE r11 defines no use of it, initiators send requests to a target's unicast
/// address, and a request to a group reaches every target listening to it, as a foreign
/// unicast one reaches every port that sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DstFilter {
    /// Requests to this MAC (the interface's own, the source of our replies) or to
    /// broadcast. The default.
    Own([u8; 6]),
    /// Requests to any destination (`accept-any-destination = true`).
    Any,
}

impl DstFilter {
    /// The broadcast address.
    pub const BROADCAST: [u8; 6] = [0xFF; 6];

    /// True if a request whose Ethernet destination is `dst` is to be served.
    pub fn accepts(&self, dst: [u8; 6]) -> bool {
        match self {
            DstFilter::Own(mac) => dst == *mac || dst == Self::BROADCAST,
            DstFilter::Any => true,
        }
    }

    /// The XDP program's configuration for this rule.
    pub fn xdp_config(&self) -> abi::XdpConfig {
        match self {
            DstFilter::Own(mac) => abi::XdpConfig {
                mac: *mac,
                ..abi::XdpConfig::default()
            },
            DstFilter::Any => abi::XdpConfig {
                accept_any_destination: 1,
                ..abi::XdpConfig::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DstFilter;

    #[test]
    fn test_dst_filter_takes_own_mac_and_broadcast_only() {
        let own = [0x02, 0, 0, 0, 0, 0x01];
        let filter = DstFilter::Own(own);
        assert!(filter.accepts(own));
        assert!(filter.accepts([0xFF; 6]));
        for (dst, what) in [
            ([0x02, 0, 0, 0, 0, 0x02], "another host"),
            ([0x03, 0, 0, 0, 0, 0x01], "own MAC with the group bit"),
            ([0x01, 0x00, 0x5E, 0, 0, 0x01], "IPv4 multicast group"),
            ([0x33, 0x33, 0, 0, 0, 0x01], "IPv6 multicast group"),
            ([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE], "almost broadcast"),
            ([0; 6], "all zeros"),
        ] {
            assert!(!filter.accepts(dst), "{what} accepted");
            assert!(DstFilter::Any.accepts(dst), "{what} refused by Any");
        }
    }

    #[test]
    fn test_dst_filter_xdp_config() {
        let own = [0x02, 0, 0, 0, 0, 0x01];
        assert_eq!(
            DstFilter::Own(own).xdp_config().to_bytes(),
            [0x02, 0, 0, 0, 0, 0x01, 0, 0]
        );
        assert_eq!(DstFilter::Any.xdp_config().to_bytes()[6], 1);
    }
}

//! Kernel-bypass plumbing: the XDP program, AF_XDP sockets and their UMEM.
//!
//! This is the only module allowed to use `unsafe`. It talks to memory the kernel writes
//! concurrently (the UMEM and the four AF_XDP rings) and to raw syscalls (`bpf`, `setsockopt`,
//! `sendto`/`recvfrom` kicks), where the compiler cannot check who owns a frame at a given
//! moment. The rule from xsk-rs — a frame handed to the fill or TX ring must not be touched until
//! it comes back on the RX or completion ring — is turned into types here: [`frame::FramePool`]
//! owns every frame and asserts each ownership transition, and the rest of the crate sees only
//! safe, move-only [`frame::Frame`] handles through [`socket::XskPort`]. Every `unsafe` block
//! carries a `// SAFETY:` comment; each file's `//!` doc states its contract and hazards.
//!
//! The same goes for memory that io_uring reads and writes ([`mem`], [`uring`]): chunks are
//! move-only tokens that the ring holds while an I/O is in flight and hands back on completion.
#![allow(
    unsafe_code,
    reason = "kernel-shared memory and raw syscalls live here; see module docs"
)]

pub mod abi;
pub mod burst;
pub mod filemap;
pub mod frame;
pub mod loader;
pub mod mem;
pub mod packet;
pub mod raw;
pub mod socket;
mod txring;
pub mod umem;
pub mod uring;

/// Which destination MAC addresses a port serves AoE requests for. The XDP program
/// (`bpf/aoe_xdp.bpf.c`, configured by [`loader::XdpProgram::attach`]) and the AF_PACKET port
/// ([`packet::PacketPort::bind`]) apply this same rule.
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

/// Asks the CPU to start loading the cache line at `addr` (a hint: never faults, whatever
/// `addr` is; a no-op where the architecture has no such instruction here).
#[inline(always)]
pub fn prefetch(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint that never faults, for any address; SSE is part of the
    // x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// [`prefetch`] for every cache line of `[start, start + len)`.
#[inline]
pub fn prefetch_range(start: *const u8, len: usize) {
    const LINE: usize = 64;
    let lines = (start as usize % LINE).saturating_add(len).div_ceil(LINE);
    let first = start.wrapping_sub(start as usize % LINE);
    for line in 0..lines {
        prefetch(first.wrapping_add(line * LINE));
    }
}

#[cfg(test)]
mod tests {
    use super::{prefetch_range, DstFilter};

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

    #[test]
    fn test_prefetch_range_takes_any_start_and_length() {
        let buf = vec![7u8; 4096];
        for (offset, len) in [(0, 0), (1, 1), (63, 2), (5, 1000), (64, 4032)] {
            prefetch_range(buf[offset..].as_ptr(), len);
        }
        // A hint never dereferences: the null page and the top of the address space are fine.
        prefetch_range(std::ptr::null(), 4096);
        prefetch_range((usize::MAX - 10) as *const u8, 128);
        assert!(buf.iter().all(|&b| b == 7));
    }
}

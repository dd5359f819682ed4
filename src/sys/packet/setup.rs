//! Building the socket: creating it, the options that must precede the rings, requesting and
//! mapping the rings, binding, and the hints that name the likely fix when a step fails.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::config::{ring_bytes, v2_block_size, v2_geometry, PacketConfig, RingVersion};
use super::filter::{aoe_request_filter, attach_filter};
use super::ring::{BlockCursor, Rings, RxRing, SlotCursor, TxLayout, TX_V2, TX_V3};
use super::{PacketError, ETH_P_ALL, ETH_P_AOE, PAGE_SIZE, TPACKET_V2, TPACKET_V3};
use crate::sys::mem::Mapping;
use crate::sys::syscall::{bind_packet, set_int, set_option, socklen};

/// Creates the socket (receiving nothing yet) and sets the filter and socket options that must
/// precede the rings. Errors carry the failing step.
pub(super) fn open_socket(config: &PacketConfig) -> Result<OwnedFd, (&'static str, io::Error)> {
    // Protocol 0: the socket receives nothing until `bind_socket`, after the filter and the
    // rings are in place.
    // SAFETY: plain socket(2); the result is checked and then owned.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(("socket(AF_PACKET, SOCK_RAW)", io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    attach_filter(fd.as_fd(), &aoe_request_filter()).map_err(|e| ("SO_ATTACH_FILTER", e))?;
    let version = match config.ring {
        RingVersion::V3 { .. } => TPACKET_V3,
        RingVersion::V2 { .. } => TPACKET_V2,
    };
    let options = [
        (libc::PACKET_VERSION, version, "PACKET_VERSION"),
        (libc::PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS"),
        // A malformed TX slot is skipped instead of stopping the ring.
        (libc::PACKET_LOSS, 1, "PACKET_LOSS"),
    ];
    for (option, value, name) in options {
        set_int(fd.as_fd(), libc::SOL_PACKET, option, value).map_err(|e| (name, e))?;
    }
    if config.vlan {
        // Not strictly needed (the filter drops outgoing frames too), but it spares the kernel
        // a clone of every frame this host sends on the interface.
        set_int(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1,
        )
        .map_err(|e| ("PACKET_IGNORE_OUTGOING", e))?;
    }
    Ok(fd)
}

/// The loud warning that this interface runs without XDP.
pub(super) fn log_fallback(interface: &str, ifindex: u32, config: &PacketConfig) {
    let ring = match config.ring {
        RingVersion::V3 {
            retire_timeout_ms, ..
        } => format!(
            "TPACKET_V3 rings (up to {retire_timeout_ms} ms added latency per window under \
             light load)"
        ),
        RingVersion::V2 { .. } => "TPACKET_V2 rings".to_owned(),
    };
    tracing::warn!(
        interface,
        ifindex,
        rx_ring_bytes = ring_bytes(&config.ring),
        tx_slots = config.tx_ring_size,
        frames = config.frame_count,
        protocol = if config.vlan {
            "ETH_P_ALL"
        } else {
            "ETH_P_AOE"
        },
        "AF_PACKET fallback on {interface}: {ring}, one copy per frame each way (XDP not in use)"
    );
}

pub(super) fn interface_index(interface: &str) -> Result<u32, PacketError> {
    crate::sys::interface::index(interface).map_err(|_| PacketError::NoInterface {
        interface: interface.to_owned(),
    })
}

/// Sets up both rings (after `PACKET_VERSION`) and maps them. Errors carry the failing step.
pub(super) fn setup_rings(
    fd: BorrowedFd<'_>,
    config: &PacketConfig,
) -> Result<Rings, (&'static str, io::Error)> {
    let (rx, rx_len) = request_rx_ring(fd, &config.ring).map_err(|e| ("PACKET_RX_RING", e))?;
    let tx_slot_size = config.tx_slot_size();
    let tx_layout = request_tx_ring(fd, &config.ring, config.tx_ring_size, tx_slot_size)
        .map_err(|e| ("PACKET_TX_RING", e))?;
    let tx_len = config.tx_ring_size as usize * tx_slot_size;
    let map =
        Mapping::new(rx_len + tx_len, libc::MAP_SHARED, Some(fd)).map_err(|e| ("mmap rings", e))?;
    Ok(Rings {
        map,
        rx,
        tx_layout,
        tx_offset: rx_len,
        tx_slot_count: config.tx_ring_size,
        tx_slot_size,
        tx_head: 0,
    })
}

/// `PACKET_RX_RING`; returns the ring's cursor and its size in bytes.
pub(super) fn request_rx_ring(
    fd: BorrowedFd<'_>,
    ring: &RingVersion,
) -> io::Result<(RxRing, usize)> {
    match *ring {
        RingVersion::V3 {
            block_size,
            block_count,
            retire_timeout_ms,
        } => {
            let page = u32::try_from(PAGE_SIZE).expect("4096 fits");
            // tp_frame_size/tp_frame_nr mean nothing for a V3 RX ring, but the kernel still
            // checks frame_nr == (block_size / frame_size) * block_nr.
            let request = libc::tpacket_req3 {
                tp_block_size: block_size,
                tp_block_nr: block_count,
                tp_frame_size: page,
                tp_frame_nr: block_size / page * block_count,
                tp_retire_blk_tov: retire_timeout_ms,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            set_struct(fd, libc::PACKET_RX_RING, &request)?;
            let rx = RxRing::V3(BlockCursor {
                block_size: block_size as usize,
                block_count,
                block: 0,
                left: 0,
                offset: 0,
            });
            Ok((rx, block_size as usize * block_count as usize))
        }
        RingVersion::V2 {
            slot_size,
            slot_count,
        } => {
            let (per_block, blocks, slots) = v2_geometry(slot_size, slot_count);
            let block_size = v2_block_size(slot_size);
            let request = libc::tpacket_req {
                tp_block_size: block_size,
                tp_block_nr: blocks,
                tp_frame_size: slot_size,
                tp_frame_nr: per_block * blocks,
            };
            set_struct(fd, libc::PACKET_RX_RING, &request)?;
            let rx = RxRing::V2(SlotCursor {
                slot_size: slot_size as usize,
                slot_count: slots,
                slot: 0,
            });
            Ok((rx, block_size as usize * blocks as usize))
        }
    }
}

/// `PACKET_TX_RING` of `slots` fixed-size slots, one per kernel block; returns the slot layout.
pub(super) fn request_tx_ring(
    fd: BorrowedFd<'_>,
    ring: &RingVersion,
    slots: u32,
    slot_size: usize,
) -> io::Result<TxLayout> {
    let slot_size = u32::try_from(slot_size).expect("16 KiB fits");
    let request = libc::tpacket_req {
        tp_block_size: slot_size,
        tp_block_nr: slots,
        tp_frame_size: slot_size,
        tp_frame_nr: slots,
    };
    match ring {
        RingVersion::V3 { .. } => {
            // The V3 request is longer; its retire timeout, private area and features must be
            // zero for a TX ring (packet_set_ring rejects them).
            let request = libc::tpacket_req3 {
                tp_block_size: request.tp_block_size,
                tp_block_nr: request.tp_block_nr,
                tp_frame_size: request.tp_frame_size,
                tp_frame_nr: request.tp_frame_nr,
                tp_retire_blk_tov: 0,
                tp_sizeof_priv: 0,
                tp_feature_req_word: 0,
            };
            set_struct(fd, libc::PACKET_TX_RING, &request)?;
            Ok(TX_V3)
        }
        RingVersion::V2 { .. } => {
            set_struct(fd, libc::PACKET_TX_RING, &request)?;
            Ok(TX_V2)
        }
    }
}

pub(super) fn bind_socket(fd: BorrowedFd<'_>, ifindex: u32, all: bool) -> io::Result<()> {
    bind_packet(fd, ifindex, if all { ETH_P_ALL } else { ETH_P_AOE })
}

pub(super) fn set_struct<T>(fd: BorrowedFd<'_>, option: libc::c_int, value: &T) -> io::Result<()> {
    set_option(fd, libc::SOL_PACKET, option, value)
}

/// Reads and clears the socket's pending error (`SO_ERROR`), if any.
pub(super) fn take_socket_error(fd: BorrowedFd<'_>) -> Option<io::Error> {
    let mut value: libc::c_int = 0;
    let mut len = socklen::<libc::c_int>();
    // SAFETY: the buffer is a live c_int of the length passed; the fd is open.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    (ret == 0 && value != 0).then(|| io::Error::from_raw_os_error(value))
}

pub(super) fn setup_hint(call: &'static str, errno: Option<i32>) -> &'static str {
    match (call, errno) {
        (_, Some(libc::EPERM | libc::EACCES)) => {
            "permission denied: AF_PACKET needs CAP_NET_RAW, run as root"
        }
        (_, Some(libc::ENODEV | libc::ENXIO)) => "no such interface in this network namespace",
        ("PACKET_RX_RING" | "PACKET_TX_RING" | "mmap rings", Some(libc::ENOMEM)) => {
            "the kernel could not allocate the ring: use a smaller ring (fewer or smaller \
             RX blocks or slots, a smaller tx_ring_size)"
        }
        (_, Some(libc::EAGAIN)) | ("mmap frame area", Some(libc::ENOMEM)) => {
            "out of memory or over the locked-memory limit: run as root or raise \
             RLIMIT_MEMLOCK (ulimit -l), or use fewer frames"
        }
        ("PACKET_RX_RING" | "PACKET_TX_RING", Some(libc::EINVAL)) => {
            "the kernel rejected the ring geometry (the TPACKET_V3 TX ring needs Linux 4.11+; \
             block sizes must be multiples of the page size)"
        }
        (_, Some(libc::ENOPROTOOPT | libc::EINVAL)) => {
            "the kernel does not support this option (Linux 4.20+ needed)"
        }
        _ => "unexpected error from the kernel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_setup_hints_name_the_fix() {
        assert!(
            setup_hint("socket(AF_PACKET, SOCK_RAW)", Some(libc::EPERM)).contains("run as root")
        );
        assert!(setup_hint("PACKET_RX_RING", Some(libc::ENOMEM)).contains("smaller ring"));
        assert!(setup_hint("mmap rings", Some(libc::EAGAIN)).contains("RLIMIT_MEMLOCK"));
        assert!(setup_hint("PACKET_TX_RING", Some(libc::EINVAL)).contains("4.11"));
        assert!(setup_hint("bind", Some(libc::ENODEV)).contains("no such interface"));
    }
    #[test]
    fn test_missing_interface_is_named() {
        let error = interface_index("aoex-no-such-if").unwrap_err();
        assert!(matches!(error, PacketError::NoInterface { .. }));
        assert!(error.to_string().contains("aoex-no-such-if"), "{error}");
    }
}

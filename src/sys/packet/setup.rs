//! Building the two sockets: the receiving one (the filter and options that must precede its
//! ring, requesting and mapping the ring, binding) and the sending one, and the hints that name
//! the likely fix when a step fails.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::config::{ring_bytes, v2_block_size, v2_geometry, PacketConfig, RingVersion};
use super::filter::{aoe_request_filter, attach_filter};
use super::ring::{BlockCursor, Ring, RxRing, SlotCursor};
use super::{PacketError, ETH_P_ALL, ETH_P_AOE, PAGE_SIZE, TPACKET_V2, TPACKET_V3};
use crate::sys::mem::Mapping;
use crate::sys::syscall::{bind_packet, set_int, set_option, socklen};

/// A new AF_PACKET `SOCK_RAW` socket of protocol 0: it receives nothing until it is bound to a
/// protocol, and sends only once it is bound to an interface.
fn new_socket() -> Result<OwnedFd, (&'static str, io::Error)> {
    // SAFETY: plain socket(2); the result is checked and then owned.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(("socket(AF_PACKET, SOCK_RAW)", io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Creates the receiving socket (receiving nothing until `bind_socket`, after the filter and
/// the ring are in place) and sets the filter and socket options that must precede the ring.
/// Errors carry the failing step.
pub(super) fn open_rx_socket(config: &PacketConfig) -> Result<OwnedFd, (&'static str, io::Error)> {
    let fd = new_socket()?;
    attach_filter(fd.as_fd(), &aoe_request_filter()).map_err(|e| ("SO_ATTACH_FILTER", e))?;
    let version = match config.ring {
        RingVersion::V3 { .. } => TPACKET_V3,
        RingVersion::V2 { .. } => TPACKET_V2,
    };
    set_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VERSION, version)
        .map_err(|e| ("PACKET_VERSION", e))?;
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

/// Creates the sending socket: protocol 0 (the kernel hands it no frame), `PACKET_QDISC_BYPASS`
/// (frames go straight to the driver), a send budget of `send_buffer` bytes if the kernel
/// allows it, bound to interface `ifindex`. Errors carry the failing step.
pub(super) fn open_tx_socket(
    interface: &str,
    ifindex: u32,
    send_buffer: usize,
) -> Result<OwnedFd, (&'static str, io::Error)> {
    let fd = new_socket()?;
    set_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
        .map_err(|e| ("PACKET_QDISC_BYPASS", e))?;
    // Room in the socket's send budget for a whole batch of the longest frames while their skbs
    // are alive. Needs CAP_NET_ADMIN; without it the default (net.core.wmem_default) applies
    // and a full budget only defers frames to the next flush (EAGAIN).
    let send_buffer = i32::try_from(send_buffer).unwrap_or(i32::MAX);
    let sndbuf = set_int(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        send_buffer,
    );
    if let Err(error) = sndbuf {
        tracing::debug!(interface, %error, "SO_SNDBUFFORCE refused, default send buffer");
    }
    // Protocol 0 again: bound to the interface (so sends need no address) without joining its
    // receive path.
    bind_packet(fd.as_fd(), ifindex, 0).map_err(|e| ("bind (sending socket)", e))?;
    Ok(fd)
}

/// The loud warning that this interface runs without XDP.
pub(super) fn log_fallback(interface: &str, ifindex: u32, config: &PacketConfig) {
    let ring = match config.ring {
        RingVersion::V3 {
            retire_timeout_ms, ..
        } => format!(
            "a TPACKET_V3 ring (up to {retire_timeout_ms} ms added latency per window under \
             light load)"
        ),
        RingVersion::V2 { .. } => "a TPACKET_V2 ring".to_owned(),
    };
    tracing::warn!(
        interface,
        ifindex,
        rx_ring_bytes = ring_bytes(&config.ring),
        tx_batch_max = config.send_batch_max(),
        frames = config.frame_count,
        protocol = if config.vlan {
            "ETH_P_ALL"
        } else {
            "ETH_P_AOE"
        },
        "AF_PACKET fallback on {interface}: {ring} to receive, sendmmsg to send, one copy per \
         frame each way (XDP not in use)"
    );
}

pub(super) fn interface_index(interface: &str) -> Result<u32, PacketError> {
    crate::sys::interface::index(interface).map_err(|_| PacketError::NoInterface {
        interface: interface.to_owned(),
    })
}

/// Sets up the RX ring (after `PACKET_VERSION`) and maps it. Errors carry the failing step.
pub(super) fn setup_ring(
    fd: BorrowedFd<'_>,
    config: &PacketConfig,
) -> Result<Ring, (&'static str, io::Error)> {
    let (rx, len) = request_rx_ring(fd, &config.ring).map_err(|e| ("PACKET_RX_RING", e))?;
    let map = Mapping::new(len, libc::MAP_SHARED, Some(fd)).map_err(|e| ("mmap ring", e))?;
    Ok(Ring { map, rx })
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
        ("PACKET_RX_RING" | "mmap ring", Some(libc::ENOMEM)) => {
            "the kernel could not allocate the ring: use a smaller ring (fewer or smaller \
             RX blocks or slots)"
        }
        (_, Some(libc::EAGAIN)) | ("mmap frame area", Some(libc::ENOMEM)) => {
            "out of memory or over the locked-memory limit: run as root or raise \
             RLIMIT_MEMLOCK (ulimit -l), or use fewer frames"
        }
        ("PACKET_RX_RING", Some(libc::EINVAL)) => {
            "the kernel rejected the ring geometry (block sizes must be multiples of the page \
             size)"
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
        assert!(setup_hint("mmap ring", Some(libc::EAGAIN)).contains("RLIMIT_MEMLOCK"));
        assert!(setup_hint("PACKET_RX_RING", Some(libc::EINVAL)).contains("page size"));
        assert!(setup_hint("bind", Some(libc::ENODEV)).contains("no such interface"));
    }
    #[test]
    fn test_missing_interface_is_named() {
        let error = interface_index("aoex-no-such-if").unwrap_err();
        assert!(matches!(error, PacketError::NoInterface { .. }));
        assert!(error.to_string().contains("aoex-no-such-if"), "{error}");
    }
}

//! A plain AF_PACKET raw socket for control traffic and clients: one frame per syscall.
//!
//! Not the data path (see [`crate::sys::xdp::xsk::XskPort`]): the blocking initiator, the demo and
//! the tests use it to talk AoE to a target. It sees every ethertype on the interface it is
//! bound to (callers filter), skips copies of its own transmissions, and puts back a VLAN tag
//! the kernel stripped on receive (as libpcap does), so frames look as they did on the wire.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys::interface;
use crate::sys::syscall::{bind_packet, poll_one, set_int, socklen, SyscallError};

/// A raw packet socket bound to one interface (in the caller's network namespace).
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: u32,
}

/// `ETH_P_ALL`: every ethertype.
const ETH_P_ALL: u16 = 0x0003;
const _: () = assert!(libc::ETH_P_ALL == 0x0003);

fn last_error(call: &'static str) -> io::Error {
    SyscallError::last(call).into()
}

impl RawSocket {
    /// Opens a socket on `interface` (needs CAP_NET_RAW: run as root).
    pub fn open(interface: &str) -> io::Result<RawSocket> {
        let index = interface::index(interface)?;
        // Protocol 0: receive nothing until bound to the interface below.
        // SAFETY: plain socket(2) call; the returned fd is checked and then owned.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(last_error(
                "socket(AF_PACKET) (needs CAP_NET_RAW: run as root)",
            ));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        bind_packet(fd.as_fd(), index, ETH_P_ALL).map_err(|io_error| {
            io::Error::from(SyscallError {
                call: "bind(AF_PACKET)",
                io_error,
            })
        })?;
        set_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, 1).map_err(|io_error| {
            io::Error::from(SyscallError {
                call: "setsockopt(PACKET_AUXDATA)",
                io_error,
            })
        })?;
        Ok(RawSocket { fd, ifindex: index })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends one Ethernet frame (exactly these bytes: no padding is added).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the buffer is valid for `frame.len()` bytes; the fd is open.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        match usize::try_from(sent) {
            Ok(n) if n == frame.len() => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short send on packet socket",
            )),
            Err(_) => Err(last_error("send(AF_PACKET)")),
        }
    }

    /// Receives the next incoming frame into `buf` (growing nothing: a longer frame is cut),
    /// for which `wanted` is true; `Ok(None)` after `timeout`.
    pub fn recv_into(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> io::Result<Option<usize>> {
        let deadline = Instant::now() + timeout;
        if buf.len() < 16384 {
            buf.resize(16384, 0);
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match poll_one(self.fd.as_fd(), libc::POLLIN, left) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            let Some(received) = self.recv_raw(&mut buf[4..])? else {
                continue;
            };
            if received.outgoing {
                continue;
            }
            // The frame was received at offset 4 so that a stripped VLAN tag can be put back
            // in front of the ethertype without moving more than the 12 address bytes.
            let len = match received.vlan {
                Some((tpid, tci)) if received.len >= 12 => {
                    buf.copy_within(4..16, 0);
                    buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                    buf[14..16].copy_from_slice(&tci.to_be_bytes());
                    received.len + 4
                }
                _ => {
                    buf.copy_within(4..4 + received.len, 0);
                    received.len
                }
            };
            if wanted(&buf[..len]) {
                return Ok(Some(len));
            }
        }
    }

    /// The next incoming frame for which `wanted` is true, or `Ok(None)` after `timeout`.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        Ok(self.recv_into(&mut buf, timeout, wanted)?.map(|len| {
            buf.truncate(len);
            buf
        }))
    }
    /// One `recvmsg`, or `None` if nothing was ready.
    fn recv_raw(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain old data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = std::ptr::from_mut(&mut from).cast();
        msg.msg_namelen = socklen::<libc::sockaddr_ll>();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: every pointer in `msg` refers to a live local buffer of the stated size.
        let len = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        let Ok(len) = usize::try_from(len) else {
            let error = io::Error::last_os_error();
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                return Ok(None);
            }
            return Err(error);
        };
        // MSG_TRUNC is not set: a frame longer than the buffer is cut to it.
        let len = len.min(buf.len());
        let mut vlan = None;
        // SAFETY: `msg` was filled by recvmsg; the CMSG_* macros walk its control buffer within
        // `msg_controllen`, and PACKET_AUXDATA carries a `tpacket_auxdata` (read unaligned).
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET
                    && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                {
                    let aux = std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<libc::tpacket_auxdata>(),
                    );
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                            aux.tp_vlan_tpid
                        } else {
                            0x8100
                        };
                        vlan = Some((tpid, aux.tp_vlan_tci));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Some(Received {
            len,
            outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
            vlan,
        }))
    }
}

/// What one `recvmsg` on a packet socket returned.
struct Received {
    /// Bytes in the buffer.
    len: usize,
    /// Sent by this host (a copy of our own transmission).
    outgoing: bool,
    /// VLAN (tpid, tci) the kernel stripped from the frame, if any.
    vlan: Option<(u16, u16)>,
}

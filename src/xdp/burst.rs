//! [`BurstSocket`]: a non-blocking AF_PACKET socket that moves frames in batches, one
//! `recvmmsg`/`sendmmsg` per batch, for the load generator.
//!
//! Contract: the socket is bound to one interface and to the AoE ethertype only (so the kernel
//! neither hands it other traffic nor clones our own transmissions back to it, which an
//! `ETH_P_ALL` socket would cost per frame), with `PACKET_QDISC_BYPASS` on. All buffers are
//! allocated in [`BurstSocket::open`]: `batch` receive buffers and `batch` transmit staging
//! buffers of `frame_size` bytes each, with their `iovec`/`mmsghdr` arrays pointing into them.
//! The data path does not allocate and never blocks:
//!
//! ```text
//! let n = socket.recv_batch()?;              // one recvmmsg(MSG_DONTWAIT); 0 if nothing
//! for i in 0..n { handle(socket.rx_frame(i)); }
//! while let Some(buf) = socket.tx_buffer() { // next free staging buffer
//!     let len = encode(buf);
//!     socket.tx_commit(len);
//! }
//! socket.flush()?;                           // one sendmmsg for everything staged
//! ```
//!
//! Hazards:
//! - Frames are copied into the staging buffers (one memcpy of at most one frame per request);
//!   that keeps the API safe: the kernel only ever reads memory the socket owns.
//! - A frame longer than `frame_size` is cut on receive.
//! - `flush` may send only part of the staged frames (socket buffer full): the rest stay staged
//!   for the next call, and `tx_buffer` returns `None` until there is room.
//! - VLAN tags stripped by the kernel are not restored (the load generator speaks untagged).
//! - The `iovec`s hold raw pointers into the socket's own heap buffers, which never move or
//!   grow; the type is therefore neither `Send` nor `Sync` (it does not need to be).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::raw::ifindex;

/// `htons(ETH_P_AOE)`: the socket receives AoE frames only.
const ETH_P_AOE_BE: u16 = 0x88A2u16.to_be();

/// Receive buffer the socket asks for (with `SO_RCVBUFFORCE`, which root may exceed
/// `rmem_max` with): room for a few thousand replies while the initiator is busy sending.
const RCVBUF_BYTES: i32 = 8 << 20;
/// Send buffer (`SO_SNDBUFFORCE`): a few full batches of jumbo frames.
const SNDBUF_BYTES: i32 = 8 << 20;

/// Geometry of a [`BurstSocket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurstConfig {
    /// Frames per `recvmmsg` and staging buffers for `sendmmsg`.
    pub batch: usize,
    /// Bytes per buffer: the largest frame sent or received (MTU + 14, more with VLAN tags).
    pub frame_size: usize,
}

impl Default for BurstConfig {
    /// 64 frames of up to 9216 bytes (jumbo frames): 1.2 MiB of buffers.
    fn default() -> Self {
        BurstConfig {
            batch: 64,
            frame_size: 9216,
        }
    }
}

/// A batched, non-blocking packet socket on one interface.
pub struct BurstSocket {
    fd: OwnedFd,
    ifindex: u32,
    frame_size: usize,
    /// `batch * frame_size` bytes; buffer `i` starts at `i * frame_size`.
    rx_bufs: Vec<u8>,
    /// One iovec per receive buffer (points into `rx_bufs`).
    rx_iovs: Vec<libc::iovec>,
    /// One message per receive buffer (points at `rx_iovs[i]`); `msg_len` is the frame length.
    rx_msgs: Vec<libc::mmsghdr>,
    /// Frames in the receive buffers from the last `recv_batch`.
    rx_count: usize,
    tx_bufs: Vec<u8>,
    /// One iovec per staging buffer; `iov_len` is set on commit.
    tx_iovs: Vec<libc::iovec>,
    tx_msgs: Vec<libc::mmsghdr>,
    /// Staged frames are `tx_head..tx_tail`; `tx_head > 0` only after a partial send.
    tx_head: usize,
    tx_tail: usize,
}

impl std::fmt::Debug for BurstSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurstSocket")
            .field("ifindex", &self.ifindex)
            .field("batch", &self.rx_msgs.len())
            .field("frame_size", &self.frame_size)
            .finish_non_exhaustive()
    }
}

fn last_error(call: &str) -> io::Error {
    let error = io::Error::last_os_error();
    io::Error::new(error.kind(), format!("{call}: {error}"))
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).expect("small struct")
}

fn set_int(fd: &OwnedFd, level: i32, option: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the size passed; the fd is open.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            std::ptr::from_ref(&value).cast::<c_void>(),
            socklen::<libc::c_int>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `batch` messages, message `i` pointing at `iovs[i]` (which must not move afterwards).
fn messages(iovs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovs.iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value (no name, no control).
            let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg
        })
        .collect()
}

/// `batch` iovecs covering consecutive `frame_size` pieces of `bufs`.
fn iovecs(bufs: &mut [u8], frame_size: usize) -> Vec<libc::iovec> {
    bufs.chunks_exact_mut(frame_size)
        .map(|chunk| libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        })
        .collect()
}

impl BurstSocket {
    /// Opens a non-blocking socket on `interface` for AoE frames (needs CAP_NET_RAW).
    pub fn open(interface: &str, config: BurstConfig) -> io::Result<BurstSocket> {
        if config.batch == 0 || config.frame_size < 64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "burst socket needs batch >= 1 and frame_size >= 64",
            ));
        }
        let index = ifindex(interface)?;
        // SAFETY: plain socket(2) call; the returned fd is checked and then owned.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(last_error(
                "socket(AF_PACKET) (needs CAP_NET_RAW: run as root)",
            ));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Bigger buffers first, so that nothing queued before bind is dropped for lack of room.
        // Root may force them past rmem_max/wmem_max; otherwise ask for what the limit allows.
        if set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF_BYTES).is_err() {
            set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF_BYTES)
                .map_err(|_| last_error("setsockopt(SO_RCVBUF)"))?;
        }
        if set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SNDBUF_BYTES).is_err() {
            set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SNDBUF_BYTES)
                .map_err(|_| last_error("setsockopt(SO_SNDBUF)"))?;
        }
        // Skip the qdisc layer on transmit (as pktgen does): we do our own batching.
        set_int(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
            .map_err(|_| last_error("setsockopt(PACKET_QDISC_BYPASS)"))?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = u16::try_from(libc::AF_PACKET).expect("AF_PACKET fits u16");
        addr.sll_protocol = ETH_P_AOE_BE;
        addr.sll_ifindex =
            i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed; the fd is open.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                socklen::<libc::sockaddr_ll>(),
            )
        };
        if ret != 0 {
            return Err(last_error("bind(AF_PACKET)"));
        }
        let bytes = config.batch * config.frame_size;
        let mut rx_bufs = vec![0u8; bytes];
        let mut tx_bufs = vec![0u8; bytes];
        let mut rx_iovs = iovecs(&mut rx_bufs, config.frame_size);
        let mut tx_iovs = iovecs(&mut tx_bufs, config.frame_size);
        let rx_msgs = messages(&mut rx_iovs);
        let tx_msgs = messages(&mut tx_iovs);
        Ok(BurstSocket {
            fd,
            ifindex: index,
            frame_size: config.frame_size,
            rx_bufs,
            rx_iovs,
            rx_msgs,
            rx_count: 0,
            tx_bufs,
            tx_iovs,
            tx_msgs,
            tx_head: 0,
            tx_tail: 0,
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Frames per batch.
    pub fn batch(&self) -> usize {
        self.rx_msgs.len()
    }

    /// Receives up to one batch of frames without blocking (one `recvmmsg`); returns how many
    /// are now readable with [`Self::rx_frame`] (0 if none were waiting). The previous batch's
    /// frames are overwritten.
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        self.rx_count = 0;
        let frame_size = self.frame_size;
        for iov in &mut self.rx_iovs {
            iov.iov_len = frame_size;
        }
        let vlen = libc::c_uint::try_from(self.rx_msgs.len()).expect("batch fits c_uint");
        // SAFETY: each message points at one iovec of `rx_iovs`, each iovec at `frame_size`
        // bytes of `rx_bufs`; all three live in `self` (heap buffers that never move) and are
        // exclusively borrowed for the call. No name or control buffers are passed.
        let received = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.rx_msgs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match usize::try_from(received) {
            Ok(count) => {
                self.rx_count = count;
                Ok(count)
            }
            Err(_) => {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                    _ => Err(last_error("recvmmsg(AF_PACKET)")),
                }
            }
        }
    }

    /// Frame `index` of the last [`Self::recv_batch`].
    pub fn rx_frame(&self, index: usize) -> &[u8] {
        assert!(
            index < self.rx_count,
            "rx frame {index} of {}",
            self.rx_count
        );
        let len = (self.rx_msgs[index].msg_len as usize).min(self.frame_size);
        let start = index * self.frame_size;
        &self.rx_bufs[start..start + len]
    }

    /// The next free staging buffer (`frame_size` bytes, holding stale bytes), or `None` when
    /// every buffer is staged (call [`Self::flush`]).
    pub fn tx_buffer(&mut self) -> Option<&mut [u8]> {
        if self.tx_tail == self.tx_msgs.len() {
            return None;
        }
        let start = self.tx_tail * self.frame_size;
        Some(&mut self.tx_bufs[start..start + self.frame_size])
    }

    /// Stages the first `len` bytes of the buffer [`Self::tx_buffer`] returned.
    pub fn tx_commit(&mut self, len: usize) {
        assert!(self.tx_tail < self.tx_msgs.len(), "commit without a buffer");
        assert!(
            (1..=self.frame_size).contains(&len),
            "frame length {len} out of 1..={}",
            self.frame_size
        );
        self.tx_iovs[self.tx_tail].iov_len = len;
        self.tx_tail += 1;
    }

    /// Frames staged and not yet sent.
    pub fn tx_pending(&self) -> usize {
        self.tx_tail - self.tx_head
    }

    /// Sends the staged frames with one `sendmmsg` (without blocking); returns how many left.
    /// Frames the kernel did not take (socket buffer full) stay staged for the next call.
    pub fn flush(&mut self) -> io::Result<usize> {
        let pending = self.tx_pending();
        if pending == 0 {
            return Ok(0);
        }
        let vlen = libc::c_uint::try_from(pending).expect("batch fits c_uint");
        // SAFETY: messages `tx_head..tx_tail` each point at one iovec of `tx_iovs`, whose
        // `iov_len` was set by `tx_commit` to at most `frame_size` bytes of `tx_bufs`; all live
        // in `self` (heap buffers that never move). The kernel only reads them. The socket is
        // bound, so no destination address is needed.
        let sent = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                self.tx_msgs.as_mut_ptr().add(self.tx_head),
                vlen,
                libc::MSG_DONTWAIT,
            )
        };
        let sent = match usize::try_from(sent) {
            Ok(sent) => sent,
            Err(_) => {
                let error = io::Error::last_os_error();
                return match error.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                    // ENOBUFS: the device queue is full; like EAGAIN, try again later.
                    _ if error.raw_os_error() == Some(libc::ENOBUFS) => Ok(0),
                    _ => Err(last_error("sendmmsg(AF_PACKET)")),
                };
            }
        };
        self.tx_head += sent;
        if self.tx_head == self.tx_tail {
            self.tx_head = 0;
            self.tx_tail = 0;
        }
        Ok(sent)
    }
}

//! [`BurstSocket`]: a non-blocking AF_PACKET socket for the load generator that receives
//! through a `TPACKET_V2` ring (no syscall at all per received frame) and sends in batches
//! (one `sendmmsg` per batch).
//!
//! Contract: the socket is bound to one interface and to the AoE ethertype only (so the kernel
//! neither hands it other traffic nor clones our own transmissions back to it, which an
//! `ETH_P_ALL` socket would cost per frame), with `PACKET_QDISC_BYPASS` on. Everything is
//! allocated in [`BurstSocket::open`]: the RX ring (8 MiB, mapped shared with the kernel: the
//! kernel copies each received frame into the next free ring slot and flips the slot's status
//! to "user"), `batch` transmit staging buffers of `frame_size` bytes with their
//! `iovec`/`mmsghdr` arrays pointing into them. The data path does not allocate and blocks
//! only where asked to ([`BurstSocket::wait_rx`]):
//!
//! ```text
//! let n = socket.recv_batch()?;              // ring slots the kernel filled; no syscall
//! for i in 0..n { handle(socket.rx_frame(i)); }
//! while let Some(buf) = socket.tx_buffer() { // next free staging buffer
//!     let len = encode(buf);
//!     socket.tx_commit(len);
//! }
//! socket.flush()?;                           // one sendmmsg for everything staged
//! if n == 0 { socket.wait_rx(timeout)?; }    // idle: sleep in poll(2) until a frame comes
//! ```
//!
//! A reflector answers a frame in a copy of it: [`BurstSocket::tx_copy_of_rx`] copies received
//! frame `i` into the next staging buffer, where the reply is built in place.
//!
//! Hazards:
//! - Frames are copied into the staging buffers (one memcpy of at most one frame per request);
//!   that keeps the API safe: the kernel only ever reads memory the socket owns.
//! - A frame longer than `frame_size` is cut on receive. When the ring is full (the
//!   application stopped reading), the kernel drops frames: size the ring above the requests in
//!   flight on the socket (4096 slots at MTU 1500, 512 with jumbo frames).
//! - Ring slots handed out by `recv_batch` go back to the kernel at the next `recv_batch`
//!   (which needs `&mut self`, so no frame borrowed from the previous batch survives it).
//! - `flush` may send only part of the staged frames (socket buffer full): the rest stay staged
//!   for the next call, and `tx_buffer` returns `None` until there is room.
//! - VLAN tags stripped by the kernel are not restored (the load generator speaks untagged).
//! - The `iovec`s and the ring hold raw pointers into the socket's own buffers, which never move
//!   or grow; the type is therefore neither `Send` nor `Sync` (it does not need to be).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::setup::take_socket_error;
use crate::sys::interface;
use crate::sys::syscall::{bind_packet, poll_one, set_int, socklen, SyscallError};

/// `ETH_P_AOE`: the socket receives AoE frames only.
use crate::wire::ETHERTYPE_AOE as ETH_P_AOE;

/// `TPACKET_V2` in `enum tpacket_versions` (V1 = 0, V2 = 1, V3 = 2).
const TPACKET_V2: libc::c_int = 1;
/// Bytes of the RX ring.
const RING_BYTES: usize = 8 << 20;
/// Bytes of one ring block (a power of two, a multiple of the page size, and of the slot size).
const RING_BLOCK_MIN: usize = 128 << 10;
/// Where the kernel puts the frame in a `TPACKET_V2` slot, at most: the 32-byte header and a
/// `sockaddr_ll`, aligned to 16, plus 16 bytes of room for the MAC header (`tpacket_rcv`'s
/// `netoff = TPACKET_ALIGN(tp_hdrlen + max(maclen, 16))`).
const RING_FRAME_OFFSET_MAX: usize = 96;
/// Send buffer (`SO_SNDBUFFORCE`): a few full batches of jumbo frames.
const SNDBUF_BYTES: i32 = 8 << 20;

/// Geometry of a [`BurstSocket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurstConfig {
    /// Most frames one `recv_batch` hands out, and staging buffers for `sendmmsg`.
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
    ring: RxRing,
    /// Most slots one `recv_batch` hands out.
    batch: usize,
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
            .field("batch", &self.batch)
            .field("ring_slots", &self.ring.slot_count)
            .field("frame_size", &self.frame_size)
            .finish_non_exhaustive()
    }
}

fn last_error(call: &'static str) -> io::Error {
    SyscallError::last(call).into()
}

/// The receive ring: `slot_count` slots of `slot_size` bytes, each a `tpacket2_hdr` followed by
/// the frame, mapped shared with the kernel.
///
/// Ownership of a slot is its `tp_status` word: `TP_STATUS_KERNEL` (0) = the kernel may fill
/// it, `TP_STATUS_USER` = filled, ours until we store `TP_STATUS_KERNEL` back. Slots are filled
/// and returned in ring order.
struct RxRing {
    base: NonNull<u8>,
    len: usize,
    slot_size: usize,
    slot_count: usize,
    /// Next slot to look at.
    head: usize,
    /// Slots handed out by the last `next_batch` (the ones before `head`).
    held: usize,
}

impl RxRing {
    fn new(fd: &OwnedFd, frame_size: usize) -> io::Result<RxRing> {
        let slot_size = (frame_size + RING_FRAME_OFFSET_MAX).next_power_of_two();
        let block_size = slot_size.max(RING_BLOCK_MIN);
        let len = RING_BYTES.max(block_size);
        let slot_count = len / slot_size;
        let ring_value = |value: usize| {
            libc::c_uint::try_from(value)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ring too large"))
        };
        set_int(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            TPACKET_V2,
        )
        .map_err(|_| last_error("setsockopt(PACKET_VERSION, TPACKET_V2)"))?;
        let request = libc::tpacket_req {
            tp_block_size: ring_value(block_size)?,
            tp_block_nr: ring_value(len / block_size)?,
            tp_frame_size: ring_value(slot_size)?,
            tp_frame_nr: ring_value(slot_count)?,
        };
        // SAFETY: the option value is a live tpacket_req of the size passed; the fd is open.
        let ret = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                std::ptr::from_ref(&request).cast::<c_void>(),
                socklen::<libc::tpacket_req>(),
            )
        };
        if ret != 0 {
            return Err(last_error("setsockopt(PACKET_RX_RING)"));
        }
        // SAFETY: maps the ring the kernel just allocated for this socket; the kernel checks
        // the length against it. The result is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(last_error("mmap(PACKET_RX_RING)"));
        }
        Ok(RxRing {
            base: NonNull::new(base.cast::<u8>()).expect("mmap succeeded"),
            len,
            slot_size,
            slot_count,
            head: 0,
            held: 0,
        })
    }

    /// The status word of `slot`.
    fn status(&self, slot: usize) -> &AtomicU32 {
        assert!(slot < self.slot_count);
        // SAFETY: the slot lies inside the mapping (checked above), which lives as long as
        // `self`; each slot starts with a `tpacket2_hdr`, 16-aligned (the mapping is
        // page-aligned and the slot size a power of two ≥ 16), whose first field is the u32
        // `tp_status` that the kernel and we only ever access atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(slot * self.slot_size).cast()) }
    }

    /// Gives the slots handed out by the last `next_batch` back to the kernel.
    fn release(&mut self) {
        for back in (1..=self.held).rev() {
            let slot = (self.head + self.slot_count - back) % self.slot_count;
            // Release: our reads of the slot's frame happen before the kernel may refill it
            // (pairs with the kernel's read of tp_status in `packet_lookup_frame`).
            self.status(slot)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
        self.held = 0;
    }

    /// True if the next slot holds a received frame.
    fn ready(&self) -> bool {
        // Acquire: as in `next_batch`.
        self.status(self.head).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    fn next_batch(&mut self, max: usize) -> usize {
        self.release();
        while self.held < max.min(self.slot_count) {
            // Acquire: pairs with the kernel's smp_wmb() before it sets TP_STATUS_USER in
            // `tpacket_rcv`, so the header and frame it wrote are visible.
            let status = self.status(self.head).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                break;
            }
            self.head = (self.head + 1) % self.slot_count;
            self.held += 1;
        }
        self.held
    }

    fn frame(&self, index: usize, frame_size: usize) -> &[u8] {
        assert!(index < self.held, "rx frame {index} of {}", self.held);
        let slot = (self.head + self.slot_count - self.held + index) % self.slot_count;
        let start = slot * self.slot_size;
        // SAFETY: the slot is held (status TP_STATUS_USER, observed with Acquire), so the
        // kernel does not write it until `next_batch` gives it back, which needs `&mut self`
        // and so cannot overlap this borrow. The header is read unaligned-safe and the frame
        // bounds are clamped to the slot before slicing.
        unsafe {
            let header = std::ptr::read_unaligned(
                self.base.as_ptr().add(start).cast::<libc::tpacket2_hdr>(),
            );
            let offset = usize::from(header.tp_mac).min(self.slot_size);
            let len = (header.tp_snaplen as usize)
                .min(self.slot_size - offset)
                .min(frame_size);
            std::slice::from_raw_parts(self.base.as_ptr().add(start + offset), len)
        }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no borrow of it outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// `batch` messages, message `i` pointing at `iovs[i]` (which must not move afterwards). Also
/// the AF_PACKET port's [`Sender`](super::sender::Sender) arrays.
pub(super) fn messages(iovs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
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
        let index = interface::index(interface)?;
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
        // The ring before bind, so that every frame after bind lands in it. Root may force the
        // send buffer past wmem_max; otherwise ask for what the limit allows.
        let ring = RxRing::new(&fd, config.frame_size)?;
        if set_int(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            SNDBUF_BYTES,
        )
        .is_err()
        {
            set_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, SNDBUF_BYTES)
                .map_err(|_| last_error("setsockopt(SO_SNDBUF)"))?;
        }
        // Skip the qdisc layer on transmit (as pktgen does): we do our own batching.
        set_int(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1)
            .map_err(|_| last_error("setsockopt(PACKET_QDISC_BYPASS)"))?;
        bind_packet(fd.as_fd(), index, ETH_P_AOE).map_err(|io_error| {
            io::Error::from(SyscallError {
                call: "bind(AF_PACKET)",
                io_error,
            })
        })?;
        let mut tx_bufs = vec![0u8; config.batch * config.frame_size];
        let mut tx_iovs = iovecs(&mut tx_bufs, config.frame_size);
        let tx_msgs = messages(&mut tx_iovs);
        Ok(BurstSocket {
            fd,
            ifindex: index,
            frame_size: config.frame_size,
            ring,
            batch: config.batch,
            tx_bufs,
            tx_iovs,
            tx_msgs,
            tx_head: 0,
            tx_tail: 0,
        })
    }

    /// The socket, for polling.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Frames per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Gives the previous batch's ring slots back to the kernel and takes up to `batch`
    /// received frames from the ring, without a syscall; returns how many are now readable
    /// with [`Self::rx_frame`] (0 if none arrived).
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        Ok(self.ring.next_batch(self.batch))
    }

    /// Frame `index` of the last [`Self::recv_batch`].
    pub fn rx_frame(&self, index: usize) -> &[u8] {
        self.ring.frame(index, self.frame_size)
    }

    /// Gives the last batch's ring slots back to the kernel and sleeps in `poll(2)` until a
    /// frame is in the ring or `timeout` passes (a signal ends the wait early); true if a frame
    /// is ready. An error the socket reports (`ENETDOWN` when the interface goes down) is
    /// returned, and cleared.
    ///
    /// Slots are given back first because the kernel reports the socket readable while the
    /// slot it filled last is still ours: a wait holding the last batch would return at once.
    pub fn wait_rx(&mut self, timeout: Duration) -> io::Result<bool> {
        self.ring.release();
        if self.ring.ready() {
            return Ok(true);
        }
        match poll_one(self.fd.as_fd(), libc::POLLIN, timeout) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(io_error) => {
                return Err(SyscallError {
                    call: "poll",
                    io_error,
                }
                .into())
            }
            Ok(revents) if revents & libc::POLLERR != 0 => {
                if let Some(io_error) = take_socket_error(self.fd.as_fd()) {
                    return Err(SyscallError {
                        call: "poll",
                        io_error,
                    }
                    .into());
                }
            }
            Ok(_) => {}
        }
        Ok(self.ring.ready())
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

    /// The next free staging buffer with frame `index` of the last [`Self::recv_batch`] copied
    /// to its start, and that frame's length; `None` when every buffer is staged (call
    /// [`Self::flush`]). Bytes after the frame are stale.
    pub fn tx_copy_of_rx(&mut self, index: usize) -> Option<(&mut [u8], usize)> {
        if self.tx_tail == self.tx_msgs.len() {
            return None;
        }
        let frame = self.ring.frame(index, self.frame_size);
        let start = self.tx_tail * self.frame_size;
        let buf = &mut self.tx_bufs[start..start + self.frame_size];
        buf[..frame.len()].copy_from_slice(frame);
        Some((buf, frame.len()))
    }

    /// Stages the first `len` bytes of the buffer [`Self::tx_buffer`] (or
    /// [`Self::tx_copy_of_rx`]) returned.
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

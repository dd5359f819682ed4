//! [`Sender`]: the port's second AF_PACKET socket, which only transmits: one `sendmmsg` hands
//! the kernel the queued frames straight from the frame area (see the module docs of
//! [`super`] for why a socket of its own and not a TX ring).
//!
//! Contract: the `mmsghdr`/`iovec` arrays are allocated once, one entry per frame one call can
//! send ([`Sender::batch_max`]); [`Sender::send`] points them at the oldest queued frames and
//! makes the call. The kernel copies each message into an skb of its own before `sendmmsg`
//! returns (`packet_snd`), so the frames it took are no longer referenced afterwards: the
//! caller frees them at once. The `iovec`s keep stale addresses between calls; nothing reads
//! them then.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::burst::messages;
use super::config::SEND_BATCH_MAX;
use crate::sys::frame_area::FrameArea;

/// A bound, send-only AF_PACKET socket and the message arrays of one `sendmmsg`.
///
/// Field order is drop order (nothing depends on it: the arrays only point into themselves and
/// into the owner's frame area, and only during [`Sender::send`]).
pub(super) struct Sender {
    fd: OwnedFd,
    /// One iovec per message, pointed at a queued frame's bytes by each `send`.
    iovs: Vec<libc::iovec>,
    /// Message `i` points at `iovs[i]` (set once: the vector never grows or moves its buffer).
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside are addresses only: `msgs[i]` points into `iovs`' heap buffer,
// which moves with the struct (a move of the `Vec` does not move its buffer), and each iovec
// points into the owner's frame area, which moves with the owner. They are dereferenced only
// by the kernel during `send`, which takes `&mut self` and rewrites every iovec it passes
// first. No `&self` method touches them, so a `Sender` on another thread is as good as here.
unsafe impl Send for Sender {}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("fd", &self.fd)
            .field("batch_max", &self.msgs.len())
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender on `fd` (an AF_PACKET socket bound to an interface) that sends up to
    /// `batch_max` frames per call (at least 1, at most [`SEND_BATCH_MAX`]).
    pub(super) fn new(fd: OwnedFd, batch_max: usize) -> Sender {
        assert!(
            (1..=SEND_BATCH_MAX).contains(&batch_max),
            "batch of {batch_max} messages"
        );
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovs = vec![empty; batch_max];
        let msgs = messages(&mut iovs);
        Sender { fd, iovs, msgs }
    }

    /// Most frames one [`Self::send`] hands to the kernel.
    pub(super) fn batch_max(&self) -> usize {
        self.msgs.len()
    }

    /// One `sendmmsg(MSG_DONTWAIT)` of the oldest queued frames of `frames` (at most
    /// [`Self::batch_max`]); returns how many the kernel took, in queue order. The kernel stops
    /// at the first message that fails: it returns that message's error only when it is the
    /// first (a later one's error is lost, the count says where it stopped).
    pub(super) fn send(&mut self, frames: &FrameArea) -> io::Result<usize> {
        let count = frames.tx_queued().len().min(self.msgs.len());
        if count == 0 {
            return Ok(0);
        }
        for (n, iov) in self.iovs[..count].iter_mut().enumerate() {
            let bytes = frames.queued_bytes(n);
            *iov = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
        }
        let vlen = libc::c_uint::try_from(count).expect("at most SEND_BATCH_MAX");
        // SAFETY: messages `0..count` each point at one iovec of `self.iovs` (set in `new`; the
        // buffer has not moved), which was just pointed at the bytes `queued_bytes` returned for
        // queued frame `n`: inside that frame's chunk or slab of the frame area, which lives as
        // long as `frames` is borrowed, i.e. past this call. The kernel only reads them (the
        // `*mut` of `iov_base` is the C type's), and copies each message before `sendmmsg`
        // returns. No name (the socket is bound to its interface) and no control data.
        let sent = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
            )
        };
        let sent = usize::try_from(sent).map_err(|_| io::Error::last_os_error())?;
        assert!(sent <= count, "sendmmsg sent {sent} of {count} messages");
        Ok(sent)
    }
}

//! A thin, safe wrapper over the `io-uring` crate for the storage engine.
//!
//! Contract: every buffer the kernel may touch is a chunk of an [`Arena`] registered with the
//! ring, and the ring takes the chunk's token by value when the I/O is pushed ([`Seg`]) and
//! returns it only with the completion ([`Ring::reap`]). So while the kernel may read or write
//! the bytes, no safe code can borrow them, and the memory cannot be unmapped: the ring keeps
//! an `Arc<Arena>` of each registered arena. Vectored I/O uses an iovec array owned by the
//! ring, one region of `max_segments` entries per operation slot, reused only after that
//! operation's completion has been reaped.
//!
//! Hazards:
//! - Dropping the ring waits (blocking) for every in-flight I/O. If it cannot (the enter
//!   syscall fails, e.g. when dropped on a thread other than the single issuer), it leaks the
//!   arenas and iovecs rather than unmap memory the kernel may still write.
//! - With `single_issuer`, the ring is created disabled and enabled by the first thread that
//!   submits; only that thread may submit afterwards (others get `EEXIST`).
//! - With `defer_taskrun`, completions appear only after an enter with GETEVENTS, which
//!   [`Ring::submit`] always does while I/O is in flight: call it once per loop iteration.
//! - Completion order is not submission order; an FSYNC does not order against writes in
//!   flight with it.
//!
//! One noun a file (as firecracker's `vmm/src/io_uring/`):
//! - `setup.rs`: what is asked for ([`RingOptions`]), what the kernel accepted ([`SetupMode`]),
//!   and the fallback through the set-up flags.
//! - `ring.rs`: the [`Ring`] itself: its state, drop order, `io_uring_enter`, and `Drop`.
//! - `register.rs`: the arenas and files registered with the ring, and where a segment is.
//! - `submission.rs`: the submission side: [`Seg`], [`Full`], the `push_*` calls, and the
//!   parking of segments while their operation is in flight.
//! - `completion.rs`: the completion side: [`Ring::reap`] and the [`Segs`] it hands back.
//! - `notify.rs`: the eventfd that wakes a thread sleeping while its I/O is in flight.
//! - `io_worker.rs`: io-wq, the kernel threads that run blocking I/O, and their CPUs.
//! - `error.rs`: [`RingError`].
//!
//! [`Arena`]: crate::sys::mem::Arena

mod completion;
mod error;
mod io_worker;
mod notify;
mod register;
mod ring;
mod setup;
mod submission;
#[cfg(test)]
mod tests;

pub use completion::Segs;
pub use error::RingError;
pub use ring::{Ring, Seg};
pub use setup::{RingOptions, SetupMode, SEGMENTS_MAX};
pub use submission::{Full, RWF_DSYNC};

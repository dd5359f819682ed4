//! Request and completion types shared by the engines, and [`Engine`], which delegates to the
//! io_uring engine or the synchronous oracle.
//!
//! Contract:
//! - [`Engine::submit`] either takes ownership of the request (a completion will come back with
//!   its chunk, exactly once) or hands it back in [`RequestError`]; a request is never lost.
//!   `is_throttling_err()` means "stop taking RX and retry later", never "drop".
//! - [`Engine::commit`] pushes everything queued to the kernel in one batch; [`Engine::reap`]
//!   never blocks; [`Engine::wait`] blocks. None of them allocates. Call `commit` once per loop
//!   iteration even with nothing queued: with `DEFER_TASKRUN` it is also what lets the kernel
//!   post completions, and it releases requests held for `merge_delay`.
//! - Every request is checked against its export's window before it is queued, and the byte
//!   range is asserted again right before the I/O is issued.
//! - Errors never panic: a failed I/O becomes an error completion ([`IoError`]).
//!
//! Hazard: requests queued in the same batch have no mutual order (as on the wire); a FLUSH
//! covers writes that completed before it was submitted, not writes in flight with it.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use crate::storage::export::Export;
use crate::storage::sync_engine::SyncEngine;
use crate::storage::uring_engine::UringEngine;

pub use super::io::{
    Arenas, EngineError, EngineStats, IoCompletion, IoError, IoOp, IoRequest, RequestError,
    SubmitError,
};

/// A storage engine: io_uring for production, synchronous as oracle and fallback.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one engine per worker, built once and never moved on the I/O path; boxing would add an indirection per call"
)]
pub enum Engine {
    /// pread/pwrite at submit time.
    Sync(SyncEngine),
    /// io_uring with fixed buffers and request merging.
    Uring(UringEngine),
}

impl Engine {
    /// Queues one request or hands it back.
    pub fn submit(&mut self, req: IoRequest) -> Result<(), RequestError> {
        match self {
            Engine::Sync(e) => e.submit(req),
            Engine::Uring(e) => e.submit(req),
        }
    }

    /// Pushes queued requests to the kernel in one batch, merging first.
    pub fn commit(&mut self, now: Instant) -> Result<(), EngineError> {
        match self {
            Engine::Sync(e) => e.commit(now),
            Engine::Uring(e) => e.commit(now),
        }
    }

    /// Hands every ready completion to `out`, without blocking. Returns how many.
    pub fn reap(&mut self, out: &mut impl FnMut(IoCompletion)) -> usize {
        match self {
            Engine::Sync(e) => e.reap(out),
            Engine::Uring(e) => e.reap(out),
        }
    }

    /// Blocks until at least `min` completions are ready or nothing is in flight.
    pub fn wait(&mut self, min: usize) -> Result<(), EngineError> {
        match self {
            Engine::Sync(e) => e.wait(min),
            Engine::Uring(e) => e.wait(min),
        }
    }

    /// Before the calling thread sleeps with requests in flight: the eventfd that becomes
    /// readable when one completes, with everything held pushed to the kernel first, or
    /// `None` when it must not sleep on the engine (a completion is ready, nothing is in the
    /// kernel, or the synchronous engine, whose requests are done when submitted). Call
    /// [`Self::disarm_completion_fd`] after the sleep.
    pub fn arm_completion_fd(&mut self) -> Result<Option<BorrowedFd<'_>>, EngineError> {
        match self {
            Engine::Sync(_) => Ok(None),
            Engine::Uring(e) => e.arm_completion_fd(),
        }
    }

    /// After a sleep armed by [`Self::arm_completion_fd`].
    pub fn disarm_completion_fd(&mut self) {
        if let Engine::Uring(e) = self {
            e.disarm_completion_fd();
        }
    }

    /// Restricts the io_uring engine's async worker threads to `cpus` (no-op for the
    /// synchronous engine, which does its I/O on the caller's thread).
    pub fn set_io_worker_cpus(&mut self, cpus: &[usize]) -> Result<(), EngineError> {
        match self {
            Engine::Sync(_) => Ok(()),
            Engine::Uring(engine) => engine.set_io_worker_cpus(cpus),
        }
    }

    /// How long `commit` may hold a request back for a neighbour (zero: never, and then
    /// `commit` ignores its clock argument).
    pub fn merge_delay(&self) -> std::time::Duration {
        match self {
            Engine::Uring(e) => e.merge_delay(),
            Engine::Sync(_) => std::time::Duration::ZERO,
        }
    }

    /// How many requests the engine holds before `submit` throttles.
    pub fn capacity(&self) -> usize {
        match self {
            Engine::Uring(e) => e.capacity(),
            Engine::Sync(e) => e.capacity(),
        }
    }

    /// Requests accepted and not yet reaped.
    pub fn in_flight(&self) -> usize {
        match self {
            Engine::Sync(e) => e.in_flight(),
            Engine::Uring(e) => e.in_flight(),
        }
    }

    /// Data syncs in flight in io_uring's blocking-I/O threads (the synchronous engine syncs
    /// on the caller's thread: none).
    pub fn syncs_in_flight(&self) -> usize {
        match self {
            Engine::Sync(_) => 0,
            Engine::Uring(e) => e.syncs_in_flight(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        match self {
            Engine::Sync(e) => e.stats(),
            Engine::Uring(e) => e.stats(),
        }
    }

    /// The exports, by index.
    pub fn exports(&self) -> &Arc<[Export]> {
        match self {
            Engine::Sync(e) => e.exports(),
            Engine::Uring(e) => e.exports(),
        }
    }
}

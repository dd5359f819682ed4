//! The load generator: many tagged AoE requests in flight on every path to one or more
//! devices, from one busy-polling thread.
//!
//! Contract: [`run`] drives the devices over the given paths (one path = one local interface
//! and one target MAC answering for one device; each device has its own request stream, all
//! inside `0..range_sectors`) until a duration or a byte count is reached, then
//! drains the requests in flight and returns a [`Report`]. Each path keeps a [`window::Window`] of at
//! most `min(depth, buffer count)` requests in flight; a request is retransmitted with a new
//! tag after `timeout` and fails after `tries` transmissions (counted as an error). Replies with
//! a stale tag, or from another device or target, are ignored. With `verify` (one device), the
//! whole range is first written sequentially with
//! self-describing sectors ([`verify::stamp`]); then every write stamps a new generation and
//! every read is compared byte for byte with what the [`verify::Ledger`] says the sectors hold.
//!
//! Lean by construction: one [`BurstSocket`](crate::sys::packet::burst::BurstSocket) per interface (replies read from its receive ring
//! without a syscall, one `sendmmsg` per loop round for all paths on it), every buffer, slot and
//! the latency histogram allocated before the first request, one clock read per round, no
//! sleeping (the loop busy-polls; pin it to a core; a round that moved nothing yields the core
//! to the threads that share it, such as this side's own threaded-NAPI receive path).
//! Nothing allocates per request (only the progress line, once a second). The progress line's "busy" is the share of time spent in
//! rounds that moved a request; the rest is polling.
//!
//! Hazards:
//! - Latency is measured from a request's first transmission to its reply's reception in the
//!   round that received it, so it includes up to one round of batching delay.
//! - A timeout on a path cuts its window to one request and slow-starts it again (see
//!   [`window::Window`]), as the Linux driver does; the timeout itself is fixed (`--timeout-ms`), not
//!   adapted to the measured round trip as the driver's is.
//! - With `verify`, requests never overlap while in flight (sectors are locked); a generated
//!   request that overlaps one in flight is replaced by another, or issuing waits a round.
//!
//! Files: `config.rs` (what to run, and whether it can be), `runner.rs` (the loop and its
//! phases), `state.rs` (what a run tracks; a request from issue to reply, retry or failure),
//! `request.rs` (a request's frame, and why one fails), `port.rs` (an interface's socket),
//! `report.rs` (the JSON report, one definition shared with xtask).

pub mod config;
pub mod discover;
pub mod reflect;
pub mod report;
pub mod verify;
pub mod window;
pub mod workload;

mod napi;
mod port;
mod request;
mod runner;
mod state;

use std::io;

pub use self::config::{Device, LoadConfig, PathSpec, Stop, VERIFY_SECTORS_MAX};
pub use self::discover::{discover, Discovered};
pub use self::report::{Latency, PathReport, Report};
pub use self::runner::run;

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration is unusable.
    #[error("invalid load: {0}")]
    Config(String),
    /// A socket failed.
    #[error("packet socket on {interface}")]
    Socket {
        /// Interface.
        interface: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

//! aoe-xdp: an ATA-over-Ethernet target that bypasses the kernel network stack.
//!
//! Layers, top to bottom (dependencies point downward only):
//!
//! ```text
//!   main.rs / bin/*     CLI, logging, signal handling (anyhow lives only here)
//!   control/            statistics socket: reads snapshots, never worker state
//!   dataplane/          pinned workers: RX burst -> target -> storage -> TX
//!   config              RawConfig (serde) -> Config (validated)
//!   target/             AoE/ATA semantics, sans-IO: request frame -> storage ops + replies
//!   storage/            io_uring engine, synchronous oracle engine, merging, exports
//!   wire/               typed, bounds-checked views over frame bytes; no I/O, no alloc
//!   xdp/                the only module with `unsafe`: UMEM, XSK sockets, io_uring ring, BPF
//! ```
//!
//! Invariants: `wire/` and `target/` do no I/O and read no clock (`now` is a parameter);
//! the per-frame data path does not allocate; no read or write leaves an export's range.
#![deny(unsafe_code)]

pub mod config;
pub mod dataplane;
pub mod initiator;
pub mod service;
pub mod state_dir;
pub mod storage;
pub mod target;
pub mod wire;
pub mod xdp;

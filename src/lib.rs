//! aoe-xdp: an ATA-over-Ethernet target that bypasses the kernel network stack.
//!
//! Layers, top to bottom (dependencies point downward only):
//!
//! ```text
//!   main.rs, cli/, bin/* CLI (`aoe-xdp ctl` in cli/), logging, signals (anyhow lives only here)
//!   service.rs          the real worker on in-memory ports, one frame at a time (conformance
//!                       tests, the fuzzer)
//!   dataplane/          pinned workers: RX burst -> aoe -> storage -> TX over the port seam
//!                       (`port::NetPort`: the AF_XDP and AF_PACKET ports, a loopback and a
//!                       fault-injecting port); `io.rs` where worker and storage meet; queues,
//!                       interfaces, statistics, the control socket (`ctl.rs`), metrics, and the
//!                       supervisor that follows link events, reloads and resizes
//!   config/             RawConfig (serde) -> Config (validated)
//!   initiator/          the initiator side: request frames, a client, the load generator
//!   aoe/                AoE/ATA semantics, sans-IO: a frame classified once (`aoe::Request`) ->
//!                       storage ops + replies; `aoe::control` is AoE's control commands
//!   storage/            exports, io_uring engine, synchronous oracle engine, merging
//!   state_dir.rs        persistent device state on disk
//!   wire/               typed, bounds-checked views over frame bytes; no I/O, no alloc
//!   sys/                the one folder exempt from `deny(unsafe_code)`: what talks to the kernel —
//!                       buffer memory, frame layout and ownership, private frame areas, io_uring,
//!                       file mappings, AF_XDP (`sys/xdp/`), AF_PACKET (`sys/packet/`), syscall
//!                       helpers, interface facts
//! ```
//!
//! Invariants: `wire/` and `aoe/` do no I/O and read no clock (`now` is a parameter);
//! the per-frame data path does not allocate; no read or write leaves an export's range.
#![deny(unsafe_code)]

pub mod aoe;
pub mod config;
pub mod dataplane;
pub mod initiator;
pub mod service;
pub mod state_dir;
pub mod storage;
pub mod sys;
pub mod wire;

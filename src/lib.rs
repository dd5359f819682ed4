//! aoe-xdp: an ATA-over-Ethernet target that bypasses the kernel network stack.
//!
//! Layers, top to bottom (dependencies point downward only):
//!
//! ```text
//!   main.rs / bin/*     CLI, logging, signal handling (anyhow lives only here)
//!   dataplane/          pinned workers: RX burst -> aoe -> storage -> TX; ports, interfaces,
//!                       statistics and the statistics socket (`control-socket`)
//!   service.rs          a synchronous, single-threaded target for tests, the fuzzer and demos
//!   config/             RawConfig (serde) -> Config (validated)
//!   initiator/          the initiator side: request frames, a client, the load generator
//!   aoe/                AoE/ATA semantics, sans-IO: request frame -> storage ops + replies;
//!                       `aoe::control` is AoE's Query/Set Config command
//!   storage/            exports, io_uring engine, synchronous oracle engine, merging
//!   state_dir.rs        persistent device state on disk
//!   wire/               typed, bounds-checked views over frame bytes; no I/O, no alloc
//!   sys/                the one folder exempt from `deny(unsafe_code)`: what talks to the kernel —
//!                       buffer memory, frame layout and ownership, io_uring, file mappings, AF_XDP
//!                       (`sys/xdp/`), AF_PACKET (`sys/packet/`), syscall helpers, interface facts
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

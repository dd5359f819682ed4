//! The initiator side of AoE: building requests and reading replies.
//!
//! [`frames`] is pure (no I/O, no allocation): it writes request frames into caller buffers
//! and decodes reply frames. The demo, the conformance tests, the fuzzer and the load
//! generator all speak AoE through it.

pub mod client;
pub mod frames;
pub mod load;

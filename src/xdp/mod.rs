//! The only module allowed to use `unsafe` (placeholder).
#![allow(
    unsafe_code,
    reason = "kernel-shared memory and raw syscalls live here; see module docs"
)]

pub mod mem;
pub mod uring;

//! Storage: exports (windows of files or block devices) and the engines that serve them.
//!
//! ```text
//!   aoe/ ──IoRequest──▶ Engine::submit ──▶ commit (merge, one io_uring_enter) ──▶ kernel
//!           ◀─IoCompletion── Engine::reap ◀──────────────────────────────────────── CQEs
//! ```
//!
//! - [`export`]: opens and validates exports; the only place sectors become file offsets.
//! - [`io`]: what every engine speaks: request/completion types, errors, counters, validation.
//! - [`engine`]: the [`engine::Engine`] enum over the two engines (re-exports [`io`]'s types).
//! - [`uring_engine`]: io_uring with fixed buffers, registered files and merging.
//! - [`sync_engine`]: pread/pwrite, the test oracle and fallback.
//! - [`merge`]: pure merge planning.
//! - [`readahead`]: pure readahead planning for exports whose kernel readahead is off.
//! - [`cached`]: pure bookkeeping of the pages a buffered write found in the page cache.
//! - [`group`]: pure group-commit bookkeeping (one data sync acknowledges many writes).
//! - [`stall`]: pure bookkeeping of inline writes the kernel held up (dirty-page throttling):
//!   when an export's writes go through the ring instead.
//!
//! Invariants: no I/O outside an export's window (checked at submit, asserted at issue); a
//! submitted request is completed exactly once or handed back; the submit/commit/reap path
//! does not allocate; this module stays under `deny(unsafe_code)` (memory and ring live in
//! `sys::mem` and `sys::uring`).

pub mod cached;
pub mod engine;
pub mod export;
pub mod group;
pub mod io;
pub mod merge;
pub mod readahead;
pub mod stall;
pub mod sync_engine;
pub mod uring_engine;

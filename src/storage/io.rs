//! What every engine speaks: requests and completions, their errors and counters, the arenas a
//! request's chunk may come from, and the window check every request passes before it is
//! queued (see [`super::engine`] for the contract).

use std::sync::Arc;

use crate::storage::export::{Export, Lane, Route, SECTOR_SIZE};
use crate::sys::mem::{Arena, Chunk, MemError};
use crate::sys::uring::RingError;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// Read `len` bytes from `sector` into the chunk.
    Read,
    /// Write `len` bytes from the chunk to `sector`.
    Write,
    /// Make completed writes durable (`fdatasync`); `len` is 0.
    Flush,
}

/// One storage request. The chunk travels with it and comes back in the completion.
#[derive(Debug)]
pub struct IoRequest {
    /// Index into the engine's exports.
    pub export: u16,
    /// Operation.
    pub op: IoOp,
    /// First sector, relative to the export's window.
    pub sector: u64,
    /// Bytes: a positive multiple of 512, or 0 for FLUSH.
    pub len: u32,
    /// The memory: a chunk of the engine's arena.
    pub chunk: Chunk,
    /// Offset of the data inside the chunk.
    pub buf_offset: u32,
    /// Caller's tag, returned in the completion.
    pub user_data: u64,
}

/// A finished request.
#[derive(Debug)]
pub struct IoCompletion {
    /// The request's tag.
    pub user_data: u64,
    /// The request's chunk, returned.
    pub chunk: Chunk,
    /// Outcome.
    pub result: Result<(), IoError>,
}

/// A failed I/O, as an errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("I/O failed: {}", std::io::Error::from_raw_os_error(*errno))]
pub struct IoError {
    /// The positive errno.
    pub errno: i32,
}

impl IoError {
    /// The errno of a short read or write that could not be completed.
    pub const SHORT: IoError = IoError { errno: libc::EIO };

    /// True for errors that mean the medium failed (the target answers ATA UNC); other errors
    /// are answered with ABRT.
    pub fn is_media_error(&self) -> bool {
        matches!(
            self.errno,
            libc::EIO
                | libc::ENODATA
                | libc::EILSEQ
                | libc::EBADMSG
                | libc::EREMOTEIO
                | libc::EUCLEAN
        )
    }
}

impl From<rustix::io::Errno> for IoError {
    fn from(errno: rustix::io::Errno) -> Self {
        IoError {
            errno: errno.raw_os_error(),
        }
    }
}

/// Why a request was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Every request slot is taken: stop taking RX, reap, retry.
    #[error("request queue is full")]
    QueueFull,
    /// Every bounce chunk is taken: stop taking RX, reap, retry.
    #[error("no bounce buffer is free")]
    BounceFull,
    /// The export index is unknown.
    #[error("export {0} does not exist")]
    NoSuchExport(u16),
    /// The sectors lie (partly) outside the export's window.
    #[error("{len} bytes at sector {sector} lie outside the export")]
    OutOfRange {
        /// Requested sector.
        sector: u64,
        /// Requested length.
        len: u32,
    },
    /// `len` is not a positive multiple of 512 (or not 0 for FLUSH).
    #[error("length {0} is invalid for this operation")]
    BadLength(u32),
    /// `buf_offset + len` does not fit in the chunk.
    #[error("{len} bytes at buffer offset {offset} exceed the chunk")]
    BadBuffer {
        /// `buf_offset`.
        offset: u32,
        /// `len`.
        len: u32,
    },
    /// The chunk belongs to another arena.
    #[error("chunk does not belong to the engine's arena")]
    ForeignChunk,
}

/// A refused request, handed back to the caller.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct RequestError {
    /// The request, untouched.
    pub req: IoRequest,
    /// Why.
    pub error: SubmitError,
}

impl RequestError {
    /// True when the engine is merely full: stop taking new work and retry after reaping.
    pub fn is_throttling_err(&self) -> bool {
        matches!(self.error, SubmitError::QueueFull | SubmitError::BounceFull)
    }
}

/// Counters, next to what they count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Requests accepted by `submit`.
    pub submitted: u64,
    /// Completions handed out by `reap`.
    pub completed: u64,
    /// I/O operations issued to the kernel (SQEs or syscalls).
    pub ios: u64,
    /// Requests that travelled inside another request's I/O (8 merged requests count 7).
    pub merged: u64,
    /// Requests copied through a bounce chunk for memory alignment.
    pub bounced: u64,
    /// Requests on a direct export sent to the buffered descriptor for offset alignment.
    pub buffered: u64,
    /// Completions carrying an error.
    pub errors: u64,
    /// Requests handed back by `submit`.
    pub rejected: u64,
    /// Reads tried inline (`RWF_NOWAIT`) that missed the page cache and went through the ring.
    pub inline_misses: u64,
    /// Requests of resident exports copied through the mapping (no I/O operation).
    #[serde(default)]
    pub mapped: u64,
    /// Requests carried out by a system call on the worker's thread (`preadv2` with
    /// `RWF_NOWAIT`, write-back `pwritev2`) rather than through the ring.
    #[serde(default)]
    pub inline: u64,
    /// Group syncs issued (one `fdatasync` for every write of a `sync` export, and every
    /// FLUSH, that had completed or arrived before it; see `uring_engine`).
    #[serde(default)]
    pub syncs: u64,
    /// Requests acknowledged by a group sync (writes of `sync` exports and FLUSHes):
    /// `sync_covered / syncs` is how many one sync carried on average.
    #[serde(default)]
    pub sync_covered: u64,
    /// Group syncs that failed; each failed every request waiting for a sync of its export.
    #[serde(default)]
    pub sync_failures: u64,
    /// Requests issued again on their own after a merged I/O came back short, so that each
    /// gets an outcome of its own.
    #[serde(default)]
    pub retried: u64,
    /// Windows read ahead of sequential streams (`POSIX_FADV_WILLNEED`) for exports whose
    /// kernel readahead is off (see `storage::readahead`).
    #[serde(default)]
    pub readaheads: u64,
    /// Buffered writes sent through the ring rather than written on the worker's thread
    /// because a page they needed was not in the page cache (see `storage::cached`).
    #[serde(default)]
    pub uncached_writes: u64,
    /// Times the worker forgot the pages it had seen in the page cache (see
    /// `storage::cached`), after the kernel counted an eviction or when a sample found one
    /// gone: each is followed by a one-byte read per page a write needs, as at start.
    #[serde(default)]
    pub seen_resets: u64,
    /// Of `seen_resets`, those after a sample of a table's pages found one gone (an eviction
    /// the kernel does not count in `/proc/vmstat`, such as DAMON's `pageout`).
    #[serde(default)]
    pub seen_sample_misses: u64,
    /// Inline write runs that held the worker for 2 ms or more (the kernel paused them:
    /// dirty-page throttling, most likely); each sends its device's buffered writes through
    /// the ring for a while (see `storage::stall`).
    #[serde(default)]
    pub inline_stalls: u64,
    /// Buffered writes sent through the ring because an inline write of their device had
    /// stalled shortly before (see `inline_stalls`).
    #[serde(default)]
    pub paused_writes: u64,
}

/// Errors building or driving an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Arena set-up failed.
    #[error("engine memory")]
    Mem(#[from] MemError),
    /// Ring set-up or submission failed.
    #[error("io_uring")]
    Ring(#[from] RingError),
    /// The configuration is unusable.
    #[error("invalid engine configuration: {0}")]
    Config(&'static str),
}

/// A request that passed validation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checked {
    /// Absolute file offset of the first byte.
    pub file_offset: u64,
    /// Descriptor and bounce decision.
    pub route: Route,
}

/// The frame memories an engine serves: requests may carry a chunk of any of them (a worker's
/// engine serves the requests of every port, each port with its own frame memory).
#[derive(Debug, Clone)]
pub struct Arenas(Box<[Arc<Arena>]>);

impl Arenas {
    /// The set of `arenas` (at least one).
    pub fn new(arenas: &[Arc<Arena>]) -> Result<Arenas, EngineError> {
        if arenas.is_empty() {
            return Err(EngineError::Config("an engine needs at least one arena"));
        }
        Ok(Arenas(arenas.into()))
    }

    /// The arena `chunk` belongs to.
    pub fn of(&self, chunk: &Chunk) -> Option<&Arena> {
        self.0.iter().map(|a| &**a).find(|a| a.owns(chunk))
    }

    /// The arenas, in registration order.
    pub fn all(&self) -> &[Arc<Arena>] {
        &self.0
    }

    /// The largest chunk size of the set.
    pub fn max_chunk_size(&self) -> usize {
        self.0.iter().map(|a| a.chunk_size()).max().unwrap_or(0)
    }

    /// The bytes of `chunk`. Panics on a foreign chunk ([`check`] refuses those first).
    pub fn bytes<'a>(&'a self, chunk: &'a Chunk) -> &'a [u8] {
        self.of(chunk).expect("checked chunk").bytes(chunk)
    }

    /// The bytes of `chunk`, writable. Panics on a foreign chunk.
    pub fn bytes_mut<'a>(&'a self, chunk: &'a mut Chunk) -> &'a mut [u8] {
        self.of(chunk).expect("checked chunk").bytes_mut(chunk)
    }
}

/// Validates `req` against the exports and `arenas`. Does not look at `read_only`: refused
/// writes are accepted and completed with `EROFS`.
pub(crate) fn check(
    exports: &[Export],
    arenas: &Arenas,
    req: &IoRequest,
) -> Result<Checked, SubmitError> {
    let export = exports
        .get(usize::from(req.export))
        .ok_or(SubmitError::NoSuchExport(req.export))?;
    let arena = arenas.of(&req.chunk).ok_or(SubmitError::ForeignChunk)?;
    if req.op == IoOp::Flush {
        let route = Route {
            lane: Lane::Buffered,
            bounce: false,
        };
        return if req.len == 0 {
            Ok(Checked {
                file_offset: 0,
                route,
            })
        } else {
            Err(SubmitError::BadLength(req.len))
        };
    }
    if req.len == 0 || u64::from(req.len) % SECTOR_SIZE != 0 {
        return Err(SubmitError::BadLength(req.len));
    }
    let end = req.buf_offset.checked_add(req.len);
    if end.is_none_or(|end| end as usize > arena.chunk_size()) {
        return Err(SubmitError::BadBuffer {
            offset: req.buf_offset,
            len: req.len,
        });
    }
    let out_of_range = SubmitError::OutOfRange {
        sector: req.sector,
        len: req.len,
    };
    let file_offset = export
        .byte_range(req.sector, req.len.into())
        .ok_or(out_of_range)?;
    let mem_addr = arena.base_ptr().addr() + arena.offset(&req.chunk) + req.buf_offset as usize;
    Ok(Checked {
        file_offset,
        route: export.route(file_offset, req.len, mem_addr),
    })
}

/// Asserts, right before I/O, that `len` bytes at `file_offset` are `sector`'s bytes inside
/// `export`'s window (defence in depth behind [`check`]).
pub(crate) fn assert_in_window(export: &Export, sector: u64, len: u64, file_offset: u64) {
    assert_eq!(
        export.byte_range(sector, len),
        Some(file_offset),
        "I/O of {len} bytes at sector {sector} outside the window of {}",
        export.path().display()
    );
}

/// Error completion for a write to a read-only export.
pub(crate) const READ_ONLY: IoError = IoError { errno: libc::EROFS };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_media_errors_are_classified() {
        assert!(IoError { errno: libc::EIO }.is_media_error());
        assert!(IoError {
            errno: libc::ENODATA
        }
        .is_media_error());
        assert!(IoError::SHORT.is_media_error());
        assert!(!IoError {
            errno: libc::ENOSPC
        }
        .is_media_error());
        assert!(!READ_ONLY.is_media_error());
        assert!(IoError { errno: libc::EIO }
            .to_string()
            .contains("Input/output error"));
    }
}

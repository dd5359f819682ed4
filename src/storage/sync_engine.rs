//! The synchronous engine: each request is executed with pread/pwritev2/fdatasync inside
//! `submit`, and its completion waits in a preallocated queue until `reap`.
//!
//! It is the test oracle for the io_uring engine (same validation, same routing, same bounce
//! rule, same results) and the fallback where io_uring is unavailable.
//!
//! Hazards: `submit` blocks for the duration of the I/O; short transfers are retried from where
//! they stopped, and a transfer that makes no progress (end of file) fails with `EIO`.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use rustix::io::{Errno, ReadWriteFlags};

use crate::storage::export::{Durability, Export, Lane};
use crate::storage::io::{
    assert_in_window, check, Arenas, Checked, EngineError, EngineStats, IoCompletion, IoError,
    IoOp, IoRequest, RequestError, SubmitError, READ_ONLY,
};
use crate::storage::readahead::Readahead;
use crate::sys::mem::{Arena, ChunkPool};

/// Completions the engine holds before `submit` reports the queue full.
pub const SYNC_QUEUE_DEPTH: usize = 256;

/// pread/pwrite engine.
#[derive(Debug)]
pub struct SyncEngine {
    exports: Arc<[Export]>,
    arena: Arenas,
    /// One aligned chunk: requests execute one at a time.
    bounce: ChunkPool,
    ready: VecDeque<IoCompletion>,
    capacity: usize,
    stats: EngineStats,
    /// Per export whose kernel readahead is off: its sequential streams.
    readahead: Box<[Option<Readahead>]>,
}

impl SyncEngine {
    /// An engine over `exports` for requests whose chunks come from `pool_arena`.
    pub fn new(exports: Arc<[Export]>, pool_arena: Arc<Arena>) -> Result<SyncEngine, EngineError> {
        SyncEngine::with_arenas(exports, &[pool_arena], SYNC_QUEUE_DEPTH)
    }

    /// As [`SyncEngine::new`], holding at most `capacity` unreaped completions.
    pub fn with_capacity(
        exports: Arc<[Export]>,
        pool_arena: Arc<Arena>,
        capacity: usize,
    ) -> Result<SyncEngine, EngineError> {
        SyncEngine::with_arenas(exports, &[pool_arena], capacity)
    }

    /// As [`SyncEngine::with_capacity`], for requests whose chunks come from any of `arenas`.
    pub fn with_arenas(
        exports: Arc<[Export]>,
        arenas: &[Arc<Arena>],
        capacity: usize,
    ) -> Result<SyncEngine, EngineError> {
        let arenas = Arenas::new(arenas)?;
        if capacity == 0 {
            return Err(EngineError::Config("capacity must be at least 1"));
        }
        let bounce_size = arenas.max_chunk_size().max(4096);
        let bounce = ChunkPool::new(Arc::new(Arena::new(bounce_size, 1)?))?;
        let ready = VecDeque::with_capacity(capacity);
        let stats = EngineStats::default();
        let readahead = exports.iter().map(Export::readahead).collect();
        Ok(SyncEngine {
            exports,
            arena: arenas,
            bounce,
            ready,
            capacity,
            stats,
            readahead,
        })
    }

    /// Executes `req` now; its completion is ready for `reap`.
    pub fn submit(&mut self, mut req: IoRequest) -> Result<(), RequestError> {
        if self.ready.len() >= self.capacity {
            return Err(self.reject(req, SubmitError::QueueFull));
        }
        let checked = match check(&self.exports, &self.arena, &req) {
            Ok(checked) => checked,
            Err(error) => return Err(self.reject(req, error)),
        };
        self.stats.submitted += 1;
        let result = self.execute(&mut req, checked);
        self.stats.errors += u64::from(result.is_err());
        let IoRequest {
            user_data, chunk, ..
        } = req;
        self.ready.push_back(IoCompletion {
            user_data,
            chunk,
            result,
        });
        Ok(())
    }

    /// Nothing to do: requests run in `submit`.
    pub fn commit(&mut self, _now: Instant) -> Result<(), EngineError> {
        Ok(())
    }

    /// Hands out every queued completion.
    pub fn reap(&mut self, out: &mut impl FnMut(IoCompletion)) -> usize {
        let count = self.ready.len();
        self.stats.completed += count as u64;
        self.ready.drain(..).for_each(out);
        count
    }

    /// Never blocks: every accepted request has completed.
    pub fn wait(&mut self, _min: usize) -> Result<(), EngineError> {
        Ok(())
    }

    /// How many requests the engine holds before `submit` throttles.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Completions not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.ready.len()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The exports, by index.
    pub fn exports(&self) -> &Arc<[Export]> {
        &self.exports
    }

    fn reject(&mut self, req: IoRequest, error: SubmitError) -> RequestError {
        self.stats.rejected += 1;
        RequestError { req, error }
    }

    fn execute(&mut self, req: &mut IoRequest, checked: Checked) -> Result<(), IoError> {
        let export = &self.exports[usize::from(req.export)];
        match req.op {
            IoOp::Flush => {
                // A data sync of its own: counted as the io_uring engine counts its syncs.
                self.stats.ios += 1;
                self.stats.syncs += 1;
                let result = rustix::fs::fdatasync(export.fd(Lane::Buffered));
                self.stats.sync_covered += u64::from(result.is_ok());
                self.stats.sync_failures += u64::from(result.is_err());
                Ok(result?)
            }
            IoOp::Write if export.read_only() => Err(READ_ONLY),
            IoOp::Read | IoOp::Write => {
                assert_in_window(export, req.sector, req.len.into(), checked.file_offset);
                self.stats.buffered +=
                    u64::from(checked.route.lane == Lane::Buffered && export.dio_align().is_some());
                self.stats.ios += 1;
                if req.op == IoOp::Read && checked.route.lane == Lane::Buffered {
                    self.read_ahead(req.export, checked.file_offset, req.len.into());
                }
                self.transfer(req, checked)
            }
        }
    }

    /// As the io_uring engine's: asks the kernel to read the next window of a sequential
    /// stream (`POSIX_FADV_WILLNEED` starts the reads and returns).
    fn read_ahead(&mut self, export: u16, offset: u64, len: u64) {
        let Some(streams) = self.readahead[usize::from(export)].as_mut() else {
            return;
        };
        let Some(window) = streams.on_read(offset, len) else {
            return;
        };
        let fd = self.exports[usize::from(export)].fd(Lane::Buffered);
        let len = std::num::NonZeroU64::new(window.end - window.start);
        // Best effort: a failure only costs the wait for the disk it would have spared.
        let _ = rustix::fs::fadvise(fd, window.start, len, rustix::fs::Advice::WillNeed);
        self.stats.readaheads += 1;
    }

    /// Moves the bytes, through the bounce chunk when the route says so.
    fn transfer(&mut self, req: &mut IoRequest, checked: Checked) -> Result<(), IoError> {
        let export = &self.exports[usize::from(req.export)];
        let fd = export.fd(checked.route.lane);
        let flags = match export.durability() {
            Durability::Sync => ReadWriteFlags::DSYNC,
            Durability::Writeback => ReadWriteFlags::empty(),
        };
        let (offset, len) = (req.buf_offset as usize, req.len as usize);
        let data = &mut self.arena.bytes_mut(&mut req.chunk)[offset..offset + len];
        if !checked.route.bounce {
            return match req.op {
                IoOp::Read => read_all(fd, data, checked.file_offset),
                _ => write_all(fd, data, checked.file_offset, flags),
            };
        }
        self.stats.bounced += 1;
        let mut chunk = self
            .bounce
            .alloc()
            .expect("the single bounce chunk is free between requests");
        let bounce = &mut self.bounce.bytes_mut(&mut chunk)[..len];
        let result = match req.op {
            IoOp::Read => {
                read_all(fd, bounce, checked.file_offset).map(|()| data.copy_from_slice(bounce))
            }
            _ => {
                bounce.copy_from_slice(data);
                write_all(fd, bounce, checked.file_offset, flags)
            }
        };
        self.bounce.free(chunk);
        result
    }
}

/// Reads all of `buf` at `offset`; a read that returns 0 (end of file) fails with `EIO`.
fn read_all(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<(), IoError> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => return Err(IoError::SHORT),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `offset` with `flags` (`RWF_DSYNC` for `Durability::Sync`).
pub(crate) fn write_all(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    offset: u64,
    flags: ReadWriteFlags,
) -> Result<(), IoError> {
    let mut done = 0;
    while done < buf.len() {
        let slice = [std::io::IoSlice::new(&buf[done..])];
        match rustix::io::pwritev2(fd, &slice, offset + done as u64, flags) {
            Ok(0) => return Err(IoError::SHORT),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

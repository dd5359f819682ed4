//! A synchronous, single-threaded driver of the target core: frames in, replies out, storage
//! through a real [`Engine`]. The demo, the conformance tests and the fuzzer use it; the XDP
//! dataplane runs the same steps (addressed → handle → I/O → complete → persist) in its own
//! batched loop.
//!
//! Frames are copied into chunks of a [`ChunkPool`] at [`FRAME_OFFSET`], the same place AF_XDP
//! puts received packets, so that the sector data of an untagged ATA frame starts 512-aligned
//! and O_DIRECT needs no bounce buffer.

use std::sync::Arc;
use std::time::Instant;

use crate::aoe::{IoFailure, IoKind, IoPlan, Outcome, PortInfo, Target, ATA_FRAME_HEADER_LEN};
use crate::state_dir::{StateDir, StateDirError};
use crate::storage::engine::{Engine, EngineError, IoCompletion, IoError, IoOp, IoRequest};
use crate::storage::export::Export;
use crate::sys::mem::{Chunk, ChunkPool};

/// Where a frame starts inside its chunk: 512 − 36, so ATA data is 512-aligned.
pub const FRAME_OFFSET: usize = 512 - ATA_FRAME_HEADER_LEN;

/// Why a frame could not be processed (never a protocol error: those are AoE/ATA replies).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No free chunk to work in.
    #[error("no free frame buffer")]
    NoBuffer,
    /// The frame is larger than a chunk.
    #[error("frame of {0} bytes does not fit a buffer")]
    TooLong(usize),
    /// The state directory could not be written.
    #[error(transparent)]
    State(#[from] StateDirError),
    /// The storage engine failed as a whole.
    #[error("storage engine: {0}")]
    Engine(EngineError),
}

/// The target core wired to a storage engine and a state directory.
pub struct LocalTarget {
    target: Target,
    engine: Engine,
    pool: ChunkPool,
    state_dir: Option<StateDir>,
    exports: Arc<[Export]>,
}

impl LocalTarget {
    /// Assembles a driver. `pool` must be the pool whose arena `engine` was built over.
    pub fn new(
        target: Target,
        engine: Engine,
        pool: ChunkPool,
        exports: Arc<[Export]>,
        state_dir: Option<StateDir>,
    ) -> Self {
        LocalTarget {
            target,
            engine,
            pool,
            state_dir,
            exports,
        }
    }

    /// The target core.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The storage engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The exports.
    pub fn exports(&self) -> &Arc<[Export]> {
        &self.exports
    }

    /// Processes one received frame, appending every reply to `replies`.
    pub fn process(
        &mut self,
        frame: &[u8],
        port: &PortInfo,
        replies: &mut Vec<Vec<u8>>,
    ) -> Result<(), ServiceError> {
        let mut addressed = self.target.addressed(frame, port);
        while let Some(device) = self.target.next_addressed(&mut addressed) {
            let chunk = self.pool.alloc().ok_or(ServiceError::NoBuffer)?;
            let (chunk, result) = self.process_one(device, frame, port, chunk, replies);
            self.pool.free(chunk);
            result?;
        }
        Ok(())
    }

    /// Handles `frame` for one device in `chunk`; always gives the chunk back.
    fn process_one(
        &mut self,
        device: u16,
        frame: &[u8],
        port: &PortInfo,
        mut chunk: Chunk,
        replies: &mut Vec<Vec<u8>>,
    ) -> (Chunk, Result<(), ServiceError>) {
        let buf = &mut self.pool.bytes_mut(&mut chunk)[FRAME_OFFSET..];
        if frame.len() > buf.len() {
            return (chunk, Err(ServiceError::TooLong(frame.len())));
        }
        buf[..frame.len()].copy_from_slice(frame);
        let len = match self.target.handle(device, buf, frame.len(), port) {
            Outcome::Drop => return (chunk, Ok(())),
            Outcome::Reply { len, persist } => {
                if persist {
                    if let Err(e) = self.persist(device) {
                        return (chunk, Err(e));
                    }
                }
                len
            }
            Outcome::Io(plan) => match self.run_io(chunk, &plan) {
                (c, Ok(len)) => {
                    chunk = c;
                    len
                }
                (c, Err(e)) => return (c, Err(e)),
            },
        };
        let buf = &self.pool.bytes(&chunk)[FRAME_OFFSET..];
        replies.push(buf[..len].to_vec());
        (chunk, Ok(()))
    }

    /// Performs `plan` through the engine (submit, commit, wait, reap) and completes the reply.
    fn run_io(&mut self, chunk: Chunk, plan: &IoPlan) -> (Chunk, Result<usize, ServiceError>) {
        let buf_offset = u32::try_from(FRAME_OFFSET + plan.data_offset).expect("inside a chunk");
        let request = io_request(plan, chunk, buf_offset, 0);
        let (mut chunk, result) = match self.engine.submit(request) {
            // Handed back, never lost: the request is answered ABRT.
            Err(refused) => (refused.req.chunk, Err(IoFailure::Aborted)),
            Ok(()) => match self.wait_one() {
                Ok(done) => (done.chunk, done.result.map_err(to_failure)),
                Err(e) => panic!("storage engine failed with a request in flight: {e}"),
            },
        };
        let buf = &mut self.pool.bytes_mut(&mut chunk)[FRAME_OFFSET..];
        let len = self.target.complete(buf, plan, result);
        (chunk, Ok(len))
    }

    fn wait_one(&mut self) -> Result<IoCompletion, ServiceError> {
        let mut done = None;
        while done.is_none() {
            self.engine
                .commit(Instant::now())
                .map_err(ServiceError::Engine)?;
            self.engine.wait(1).map_err(ServiceError::Engine)?;
            self.engine.reap(&mut |c| done = Some(c));
        }
        Ok(done.expect("loop ends with a completion"))
    }

    fn persist(&self, device: u16) -> Result<(), ServiceError> {
        if let Some(dir) = &self.state_dir {
            let params = self.target.params(device);
            let (state, _) = self.target.shared_state(device).snapshot();
            dir.save(params.shelf, params.slot, &state)?;
        }
        Ok(())
    }
}

/// The storage request that carries out `plan` on `chunk` (data at `buf_offset`): the one
/// translation from the target's plan to the engine's request, shared with the dataplane.
pub fn io_request(plan: &IoPlan, chunk: Chunk, buf_offset: u32, user_data: u64) -> IoRequest {
    IoRequest {
        export: plan.export,
        op: match plan.kind {
            IoKind::Read => IoOp::Read,
            IoKind::Write => IoOp::Write,
            IoKind::Flush => IoOp::Flush,
        },
        sector: plan.sector,
        len: u32::try_from(plan.byte_len()).expect("a frame's data fits u32"),
        chunk,
        buf_offset,
        user_data,
    }
}

/// How a failed I/O is reported in ATA terms: medium errors as UNC, the rest as ABRT.
pub fn to_failure(error: IoError) -> IoFailure {
    if error.is_media_error() {
        IoFailure::Media
    } else {
        IoFailure::Aborted
    }
}

//! Where the worker meets the storage: the target's [`IoPlan`] becomes the engine's
//! [`IoRequest`], and the engine's [`IoError`] becomes the target's [`IoFailure`].

use crate::aoe::{IoFailure, IoKind, IoPlan};
use crate::storage::engine::{IoError, IoOp, IoRequest};
use crate::sys::mem::Chunk;

/// The storage request that carries out `plan` on `chunk` (data at `buf_offset`, tagged with
/// `user_data`): the one translation from the target's plan to the engine's request.
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

/// How a failed I/O is reported in ATA terms: medium errors as UNC, the rest as ABRT (the
/// errno table is in `docs/DESIGN.md`).
pub fn to_failure(error: IoError) -> IoFailure {
    if error.is_media_error() {
        IoFailure::Media
    } else {
        IoFailure::Aborted
    }
}

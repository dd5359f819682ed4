//! The UMEM and its frames: the mapping and its io_uring arenas, the frame and slab counts, and
//! the frames the application holds: their bytes ([`XskPort::data`], [`XskPort::data_mut`])
//! and addresses, frames and slabs allocated or released without a ring, a small request moved
//! into a slab ([`XskPort::upgrade`]), and a frame lent to a storage I/O as a chunk token.
//!
//! Contract: every access checks the handle against the pool (`packet_addr`), so only frames
//! in state `Rx`, which no ring holds, are ever read or written here; a lent frame has no
//! handle until it is reclaimed.

use std::ptr::NonNull;
use std::sync::Arc;

use super::XskPort;
use crate::sys::frame::{Frame, FrameCounts, FrameState};
use crate::sys::layout::{
    FRAME_CAPACITY, FRAME_SIZE, PACKET_OFFSET, SLAB_CAPACITY, SLAB_CHUNKS, SLAB_SIZE,
};
use crate::sys::mem::{Arena, Chunk};
use crate::sys::xdp::umem::UmemArea;

/// UMEM address of the first byte of slab `index` (pool index, `>= frames`).
pub(super) fn slab_addr(frames: u32, index: u32) -> usize {
    debug_assert!(index >= frames);
    (frames as usize + (index - frames) as usize * SLAB_CHUNKS) * FRAME_SIZE
}

impl XskPort {
    /// The UMEM as an arena for io_uring registration: chunk `i` is frame `i`.
    pub fn io_arena(&self) -> &Arc<Arena> {
        self.lender.arena()
    }

    /// The jumbo slabs as a second io_uring arena (chunk `j` = slab `j`, [`SLAB_SIZE`] bytes,
    /// packet at chunk + 476, payload at chunk + 512), or `None` if the port has no slabs
    /// (bound without multi-buffer support). A slab frame's [`Self::lend`] returns a chunk of
    /// this arena.
    pub fn slab_arena(&self) -> Option<&Arc<Arena>> {
        self.lender.slab_arena()
    }

    /// Longest frame (Ethernet header to payload end, without FCS) this port can receive and
    /// transmit: a slab's capacity with multi-buffer, otherwise what one chunk holds.
    pub fn max_frame_len(&self) -> usize {
        if self.multi_buffer {
            SLAB_CAPACITY
        } else {
            FRAME_CAPACITY
        }
    }

    /// True if bound with `XDP_USE_SG` (jumbo frames work).
    pub fn multi_buffer(&self) -> bool {
        self.multi_buffer
    }

    /// Frames per ownership state (they always sum to the frame count; slabs are counted in
    /// [`Self::slab_counts`]).
    pub fn frame_counts(&self) -> FrameCounts {
        self.pool.counts()
    }

    /// Slabs per ownership state (`fill` is always 0).
    pub fn slab_counts(&self) -> FrameCounts {
        self.pool.slab_counts()
    }

    /// Start of the UMEM mapping (for registering it as one io_uring fixed buffer).
    pub fn umem_base_ptr(&self) -> NonNull<u8> {
        self.umem.base_ptr()
    }

    /// Length of the UMEM mapping in bytes: the frames, then the slabs
    /// (`(frame_count + 3 * slab_count) * frame_size`).
    pub fn umem_len(&self) -> usize {
        self.umem.len()
    }

    /// Size of one frame (chunk).
    pub fn frame_size(&self) -> usize {
        FRAME_SIZE
    }
}

impl XskPort {
    /// True if `frame` is a jumbo slab.
    pub fn is_slab(&self, frame: &Frame) -> bool {
        self.pool.is_slab(frame.index())
    }

    /// Makes sure `frame` can hold `needed` bytes from its packet start: returns it unchanged
    /// if it already can, otherwise copies its received bytes (`frame.len()`, the request
    /// headers) into a free slab, releases the original frame and returns the slab frame (same
    /// `len`, same offsets). `Err(frame)` gives the frame back when no slab is free: keep it and
    /// retry later (slabs come back with TX completions), never drop the request.
    ///
    /// Panics if `needed` exceeds [`Self::max_frame_len`].
    pub fn upgrade(&mut self, frame: Frame, needed: usize) -> Result<Frame, Frame> {
        if self.frame_capacity(&frame) >= needed {
            return Ok(frame);
        }
        assert!(
            needed <= self.max_frame_len(),
            "upgrade to {needed} bytes: this port carries at most {}",
            self.max_frame_len()
        );
        let Some(slab) = self.pool.take_free_slab() else {
            self.jumbo.upgrade_no_slab += 1;
            return Err(frame);
        };
        let len = frame.len();
        let from = self.packet_addr(&frame);
        let to = slab_addr(self.pool.frame_count(), slab) + PACKET_OFFSET;
        {
            // SAFETY: `frame` is held by the application (checked in `packet_addr`) and `slab`
            // was just taken from the free list (state Rx, no handle yet): neither is on a ring,
            // they are different chunks, and no other slice of either exists.
            let (src, dst) = unsafe { (self.umem.span(from, len), self.umem.span_mut(to, len)) };
            dst.copy_from_slice(src);
        }
        self.pool.release(frame);
        self.jumbo.upgrades += 1;
        Ok(self.pool.handle(slab, len))
    }

    /// A free frame for building a packet from scratch (e.g. an advertisement), or `None` if
    /// every frame is in use.
    pub fn alloc(&mut self) -> Option<Frame> {
        let index = self.pool.take_free(FrameState::Rx)?;
        self.descs[index as usize] = self.umem.canonical(index);
        Some(self.pool.handle(index, 0))
    }

    /// A free slab for building a jumbo frame from scratch, or `None` if none is free.
    pub fn alloc_slab(&mut self) -> Option<Frame> {
        let slab = self.pool.take_free_slab()?;
        Some(self.pool.handle(slab, 0))
    }

    /// Gives a frame back without sending it (e.g. a dropped request).
    pub fn release(&mut self, frame: Frame) {
        self.pool.release(frame);
    }

    /// Lends a held frame to a storage I/O: returns the chunk token the engine needs to read
    /// into or write from the frame. The frame stays held by the application (it is not on any
    /// ring) until [`Self::reclaim`] gives the handle back; without a handle it cannot be
    /// transmitted or released meanwhile.
    pub fn lend(&mut self, frame: Frame) -> Chunk {
        self.lender.lend(&self.pool, frame)
    }

    /// Takes back a chunk lent by [`Self::lend`] and returns the frame's handle.
    pub fn reclaim(&mut self, chunk: Chunk) -> Frame {
        self.lender.reclaim(&self.pool, chunk)
    }

    /// Offset of `frame`'s packet start inside the chunk [`Self::lend`] returns for it
    /// (chunk + 476 for frames and slabs alike, unless the kernel moved the packet).
    pub fn offset_in_chunk(&self, frame: &Frame) -> usize {
        let addr = self.packet_addr(frame);
        if self.pool.is_slab(frame.index()) {
            addr - slab_addr(self.pool.frame_count(), frame.index())
        } else {
            addr % FRAME_SIZE
        }
    }

    /// UMEM address of `frame`'s first packet byte (checks the handle).
    fn packet_addr(&self, frame: &Frame) -> usize {
        self.pool.check(frame);
        let index = frame.index();
        if self.pool.is_slab(index) {
            slab_addr(self.pool.frame_count(), index) + PACKET_OFFSET
        } else {
            self.descs[index as usize].addr()
        }
    }

    /// Offset of `frame`'s first packet byte from the UMEM start; the frame's bytes are
    /// `umem_base_ptr() + offset .. + frame_capacity(frame)`. With a fixed-buffer registration of
    /// the whole UMEM, io_uring can read a disk block straight to `offset + 36` (chunk + 512).
    ///
    /// While an io_uring operation targets the frame, keep the handle (the frame stays owned by
    /// the application, so the kernel's AF_XDP side will not touch it), do not call
    /// [`Self::data`]/[`Self::data_mut`] on it, and transmit or release it only after the
    /// completion arrived.
    pub fn umem_offset(&self, frame: &Frame) -> usize {
        self.packet_addr(frame)
    }

    /// Bytes `frame` can hold, from its packet start to the end of its chunk (of its slab for
    /// a slab frame).
    pub fn frame_capacity(&self, frame: &Frame) -> usize {
        let addr = self.packet_addr(frame);
        if self.pool.is_slab(frame.index()) {
            slab_addr(self.pool.frame_count(), frame.index()) + SLAB_SIZE - addr
        } else {
            UmemArea::capacity_at(addr)
        }
    }

    /// The received packet (`frame.len()` bytes; a jumbo packet is contiguous in its slab).
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        let addr = self.packet_addr(frame);
        assert!(frame.len() <= self.frame_capacity(frame));
        // SAFETY: `check` (in `packet_addr`) proved the frame or slab is held by the
        // application (state Rx), so the kernel does not touch it, and the shared borrow of the
        // unique handle rules out a concurrent `data_mut` of the same frame. The range stays in
        // the frame's chunk or slab (asserted above).
        unsafe { self.umem.span(addr, frame.len()) }
    }

    /// The whole frame buffer, from the packet start to the end of the chunk or slab
    /// ([`Self::frame_capacity`] bytes), for building a reply in place. The first `frame.len()`
    /// bytes are the received packet.
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let addr = self.packet_addr(frame);
        let capacity = self.frame_capacity(frame);
        // SAFETY: as in `data`, plus the exclusive borrow of the unique handle guarantees no
        // other slice of this frame exists while this one lives.
        unsafe { self.umem.span_mut(addr, capacity) }
    }
}

//! [`FrameArea`]: frames in memory that only this process maps, laid out like the AF_XDP UMEM
//! (see [`super::layout`]) and owned through a [`FramePool`]. The AF_PACKET port copies
//! received packets from its kernel ring into these frames and has the kernel copy queued ones
//! out (`sendmmsg`); the in-memory loopback port of the dataplane's tests copies them from and
//! to plain byte buffers. Both hand out the same
//! [`Frame`] handles, lend frames to io_uring through the same [`Lender`], and queue frames for
//! transmission the same way, so this is written once.
//!
//! Contract: the kernel never sees this memory except through io_uring, which only touches a
//! frame while its chunk token is lent (then no handle exists), and during a send call that
//! copies queued frames out (the owner passes it [`FrameArea::queued_bytes`]). A frame's bytes
//! are reachable only through its handle (`data`/`data_mut`), or by the owner while the frame
//! is in state `Tx` (queued, handle consumed): [`FrameArea::queued_bytes`], and
//! [`FrameArea::packet_ptr`] for a copy from a kernel ring into a frame just taken.

use std::io;
use std::sync::Arc;

use super::frame::RxBurst;
use super::frame::{pad_for_wire, Frame, FrameCounts, FramePool, FrameState, JumboStats, Lender};
use super::layout::{FRAME_CAPACITY, FRAME_SIZE, PACKET_OFFSET, SLAB_CAPACITY, SLAB_SIZE};
use super::mem::{Arena, Chunk, Mapping};

/// Frames (and jumbo slabs) in private anonymous memory, with their pool, lender and TX queue.
///
/// Field order is drop order: the lender's arenas hold the mapping alive through their own
/// `Arc`, so the area is unmapped only when the last of them goes.
pub struct FrameArea {
    /// The frame area; shared only with the lender's arenas, which keep it mapped for io_uring.
    area: Arc<Mapping>,
    /// The frame area as io_uring arenas and each frame's chunk token.
    lender: Lender,
    pool: FramePool,
    /// Frames and slabs in state `Tx`, as (index, wire length), in transmit order. Capacity =
    /// frame count + slab count, so it never grows.
    tx_queued: Vec<(u32, usize)>,
    /// Longest frame the owner carries.
    max_frame_len: usize,
    jumbo: JumboStats,
}

impl std::fmt::Debug for FrameArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameArea")
            .field("counts", &self.pool.counts())
            .field("slab_counts", &self.pool.slab_counts())
            .field("tx_queued", &self.tx_queued.len())
            .finish_non_exhaustive()
    }
}

/// Why [`FrameArea::take_rx`] found no room for a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// Every frame is in use.
    NoFrame,
    /// The packet needs a slab and every slab is in use.
    NoSlab,
    /// The packet is longer than the owner carries.
    TooLong,
}

impl FrameArea {
    /// Maps `frame_count` frames and `slab_count` slabs (page-aligned, populated) for an owner
    /// that carries frames of up to `max_frame_len` bytes (at most a slab's capacity, or a
    /// frame's when there are no slabs).
    pub fn new(frame_count: u32, slab_count: u32, max_frame_len: usize) -> io::Result<FrameArea> {
        let capacity = if slab_count > 0 {
            SLAB_CAPACITY
        } else {
            FRAME_CAPACITY
        };
        assert!(
            max_frame_len <= capacity,
            "frames of {max_frame_len} bytes do not fit"
        );
        let frames_len = frame_count as usize * FRAME_SIZE;
        let area = Mapping::new(
            frames_len + slab_count as usize * SLAB_SIZE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            None,
        )?;
        let area = Arc::new(area);
        // SAFETY: the area is a private anonymous mapping of `frame_count` whole frames,
        // page-aligned; the `Arc<Mapping>` given as keep-alive owns it, so it stays mapped as
        // long as the arena. The chunk tokens are minted once, into the lender, and lent only
        // for frames the application holds, so nothing else touches a lent chunk.
        let io_arena = unsafe {
            Arena::from_raw_kept(
                area.ptr.as_ptr(),
                FRAME_SIZE,
                frame_count as usize,
                Box::new(Arc::clone(&area)),
            )
        }
        .map_err(|e| io::Error::other(format!("frame arena: {e}")))?;
        let slab_arena = if slab_count > 0 {
            // SAFETY: the slabs follow the frames in the same private mapping (its length
            // covers them), page-aligned; the keep-alive owns the mapping. Slab tokens are lent
            // only for slabs the application holds.
            let arena = unsafe {
                Arena::from_raw_kept(
                    area.ptr.as_ptr().add(frames_len),
                    SLAB_SIZE,
                    slab_count as usize,
                    Box::new(Arc::clone(&area)),
                )
            }
            .map_err(|e| io::Error::other(format!("slab arena: {e}")))?;
            Some(arena)
        } else {
            None
        };
        Ok(FrameArea {
            area,
            lender: Lender::with_slabs(io_arena, slab_arena),
            pool: FramePool::with_slabs(frame_count, slab_count),
            tx_queued: Vec::with_capacity((frame_count + slab_count) as usize),
            max_frame_len,
            jumbo: JumboStats::default(),
        })
    }

    /// An empty burst of this area's frames (made once, reused every iteration).
    pub fn new_burst(&self) -> RxBurst {
        RxBurst::new(self.pool.id())
    }

    /// Empties `burst` (every frame of its previous use taken) for a new receive.
    pub(crate) fn reset_burst(&self, burst: &mut RxBurst) {
        burst.reset(self.pool.id());
    }

    /// Frames per ownership state (frames only; see [`Self::slab_counts`]).
    pub fn counts(&self) -> FrameCounts {
        self.pool.counts()
    }

    /// Slabs per ownership state.
    pub fn slab_counts(&self) -> FrameCounts {
        self.pool.slab_counts()
    }

    /// True if `frame` is a jumbo slab.
    pub fn is_slab(&self, frame: &Frame) -> bool {
        self.pool.is_slab(frame.index())
    }

    /// The frame area as an arena for io_uring registration: chunk `i` is frame `i`.
    pub fn io_arena(&self) -> &Arc<Arena> {
        self.lender.arena()
    }

    /// The jumbo slabs as a second io_uring arena, if there are any.
    pub fn slab_arena(&self) -> Option<&Arc<Arena>> {
        self.lender.slab_arena()
    }

    /// Lends a held frame to a storage I/O: while lent it has no handle.
    pub fn lend(&mut self, frame: Frame) -> Chunk {
        self.lender.lend(&self.pool, frame)
    }

    /// Takes back a chunk lent by [`Self::lend`] and returns the frame's handle.
    pub fn reclaim(&mut self, chunk: Chunk) -> Frame {
        self.lender.reclaim(&self.pool, chunk)
    }

    /// Start of the frame area.
    pub fn base_ptr(&self) -> std::ptr::NonNull<u8> {
        self.area.ptr
    }

    /// Length of the frame area in bytes.
    pub fn len(&self) -> usize {
        self.area.len
    }

    /// Never true: an area has at least one frame's worth of bytes once mapped.
    pub fn is_empty(&self) -> bool {
        self.area.len == 0
    }

    /// Offset of `frame`'s first packet byte from the area start (chunk + [`PACKET_OFFSET`],
    /// or slab + [`PACKET_OFFSET`] behind the frames). While an io_uring operation targets
    /// the frame, keep the handle and do not call [`Self::data`]/[`Self::data_mut`] on it.
    pub fn umem_offset(&self, frame: &Frame) -> usize {
        self.pool.check(frame);
        self.packet_offset(frame.index())
    }

    fn packet_offset(&self, index: u32) -> usize {
        let frames = self.pool.frame_count();
        if index >= frames {
            frames as usize * FRAME_SIZE + (index - frames) as usize * SLAB_SIZE + PACKET_OFFSET
        } else {
            index as usize * FRAME_SIZE + PACKET_OFFSET
        }
    }

    /// Address of the packet start of frame `index`, for a copy between a kernel ring and a
    /// frame the caller owns without a handle (just taken by [`Self::take_rx`], or queued).
    pub(crate) fn packet_ptr(&self, index: u32) -> *mut u8 {
        self.area.at(self.packet_offset(index))
    }

    /// Offset of `frame`'s packet start in the chunk [`Self::lend`] returns for it (always
    /// [`PACKET_OFFSET`]).
    pub fn offset_in_chunk(&self, frame: &Frame) -> usize {
        self.pool.check(frame);
        PACKET_OFFSET
    }

    fn capacity_of(&self, index: u32) -> usize {
        if self.pool.is_slab(index) {
            SLAB_CAPACITY
        } else {
            FRAME_CAPACITY
        }
    }

    /// Bytes `frame` can hold, from its packet start to the end of its chunk or slab.
    pub fn frame_capacity(&self, frame: &Frame) -> usize {
        self.pool.check(frame);
        self.capacity_of(frame.index())
    }

    /// Longest frame the owner receives and transmits.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Counters of the jumbo path kept here: `upgrades`, `upgrade_no_slab`.
    pub fn jumbo_stats(&self) -> JumboStats {
        self.jumbo
    }

    /// `frame` unchanged if it holds `needed` bytes, else its received bytes copied into a
    /// free slab (the frame is released); `Err(frame)` when no slab is free. Panics if
    /// `needed` exceeds [`Self::max_frame_len`].
    pub fn upgrade(&mut self, frame: Frame, needed: usize) -> Result<Frame, Frame> {
        if self.frame_capacity(&frame) >= needed {
            return Ok(frame);
        }
        assert!(
            needed <= self.max_frame_len,
            "upgrade to {needed} bytes: this port carries at most {}",
            self.max_frame_len
        );
        let Some(slab) = self.pool.take_free_slab() else {
            self.jumbo.upgrade_no_slab += 1;
            return Err(frame);
        };
        let len = frame.len();
        let src = self.area.at(self.umem_offset(&frame));
        let dst = self.packet_ptr(slab);
        // SAFETY: the frame is held by the application (checked) and the slab was just taken
        // (state Rx, no handle): both are ours, in disjoint chunks of the area, and `len` fits
        // both (the frame's received length is at most a chunk's capacity).
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        self.pool.release(frame);
        self.jumbo.upgrades += 1;
        Ok(self.pool.handle(slab, len))
    }

    /// A free frame for building a packet from scratch (e.g. an advertisement), or `None` if
    /// every frame is in use.
    pub fn alloc(&mut self) -> Option<Frame> {
        let index = self.pool.take_free(FrameState::Rx)?;
        Some(self.pool.handle(index, 0))
    }

    /// Gives a frame back without sending it (e.g. a dropped request).
    pub fn release(&mut self, frame: Frame) {
        self.pool.release(frame);
    }

    /// The received packet (`frame.len()` bytes).
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        let offset = self.umem_offset(frame);
        assert!(frame.len() <= self.frame_capacity(frame));
        // SAFETY: `check` (in `umem_offset`) proved the frame is held by the application; the
        // area is private to this process and the kernel never touches a held frame (io_uring
        // only while the frame is lent, a send only while it is queued: no handle exists
        // then), and the shared borrow of the unique
        // handle rules out a concurrent `data_mut` of the same frame. The range ends inside
        // the frame's chunk, which is inside the mapping.
        unsafe { std::slice::from_raw_parts(self.area.at(offset), frame.len()) }
    }

    /// The whole frame buffer, from the packet start to the end of the chunk or slab
    /// ([`Self::frame_capacity`] bytes), for building a reply in place. The first `frame.len()`
    /// bytes are the received packet.
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let offset = self.umem_offset(frame);
        let capacity = self.frame_capacity(frame);
        // SAFETY: as in `data`, plus the exclusive borrow of the unique handle guarantees no
        // other slice of this frame exists while this one lives.
        unsafe { std::slice::from_raw_parts_mut(self.area.at(offset), capacity) }
    }

    /// Takes a free frame (or, for a packet longer than a frame, a slab) to receive a packet
    /// of `wire_len` bytes into: its index, now in state `Rx` without a handle. The caller
    /// copies the packet to [`Self::packet_ptr`] and then makes the handle with
    /// [`Self::received`].
    pub(crate) fn take_rx(&mut self, wire_len: usize) -> Result<u32, NoRoom> {
        if wire_len > self.max_frame_len {
            return Err(NoRoom::TooLong);
        }
        if wire_len <= FRAME_CAPACITY {
            self.pool.take_free(FrameState::Rx).ok_or(NoRoom::NoFrame)
        } else {
            self.pool.take_free_slab().ok_or(NoRoom::NoSlab)
        }
    }

    /// The handle of frame `index` (from [`Self::take_rx`]) holding a `len`-byte packet.
    pub(crate) fn received(&self, index: u32, len: usize) -> Frame {
        self.pool.handle(index, len)
    }

    /// Copies `packet` into a free frame or slab and returns its handle: a received packet
    /// that came as bytes (the in-memory port).
    pub fn receive(&mut self, packet: &[u8]) -> Result<Frame, NoRoom> {
        let index = self.take_rx(packet.len())?;
        let dst = self.packet_ptr(index);
        // SAFETY: frame `index` just moved Free -> Rx and has no handle yet, so nobody else
        // uses it; `packet.len()` fits its capacity (checked by `take_rx` against the max
        // frame length, which fits a slab, and a frame for packets up to its capacity); the
        // source is a distinct Rust slice.
        unsafe { std::ptr::copy_nonoverlapping(packet.as_ptr(), dst, packet.len()) };
        Ok(self.received(index, packet.len()))
    }

    /// Queues the first `len` bytes of `frame` for transmission, zero-padded to 60 bytes.
    /// Never fails: the queue has room for every frame.
    pub fn transmit(&mut self, mut frame: Frame, len: usize) {
        let wire_len = pad_for_wire(self.data_mut(&mut frame), len);
        self.pool.queue_tx(frame, wire_len, &mut self.tx_queued);
    }

    /// The frames queued for transmission, oldest first, as (index, wire length).
    pub(crate) fn tx_queued(&self) -> &[(u32, usize)] {
        &self.tx_queued
    }

    /// The bytes of the `n`-th queued frame (its wire length).
    pub fn queued_bytes(&self, n: usize) -> &[u8] {
        let (index, len) = self.tx_queued[n];
        assert!(len <= self.capacity_of(index));
        // SAFETY: the frame is queued (state Tx, its handle consumed): only its owner, this
        // area, reaches its bytes, and the shared borrow of `self` rules out any write to it
        // (`transmit`, `sent` and every `_mut` path need `&mut self`). The range ends inside
        // the frame's chunk or slab.
        unsafe { std::slice::from_raw_parts(self.packet_ptr(index), len) }
    }

    /// The oldest `count` queued frames were copied out (by the kernel, or into a buffer) or
    /// dropped: they are free again.
    pub fn sent(&mut self, count: usize) {
        for &(index, _) in &self.tx_queued[..count] {
            self.pool
                .transition(index, FrameState::Tx, FrameState::Completion);
            self.pool.put_free(index, FrameState::Completion);
        }
        self.tx_queued.drain(..count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_received_bytes_go_out_unchanged_and_every_frame_returns() {
        let mut area = FrameArea::new(4, 1, 9018).unwrap();
        let start = area.counts();
        let packet: Vec<u8> = (0..100u8).collect();
        let frame = area.receive(&packet).unwrap();
        assert_eq!(area.data(&frame), &packet[..]);
        area.transmit(frame, 100);
        let jumbo: Vec<u8> = (0..9018).map(|i| (i % 251) as u8).collect();
        let slab = area.receive(&jumbo).unwrap();
        assert!(area.is_slab(&slab));
        area.transmit(slab, jumbo.len());
        assert_eq!(area.queued_bytes(0), &packet[..]);
        assert_eq!(area.queued_bytes(1), &jumbo[..]);
        area.sent(2);
        assert_eq!(area.counts(), start);
        assert_eq!(area.slab_counts().free, 1);
    }

    #[test]
    fn test_short_frames_are_padded_and_full_areas_say_why() {
        let mut area = FrameArea::new(1, 0, 1514).unwrap();
        assert_eq!(area.receive(&[0u8; 1515]).unwrap_err(), NoRoom::TooLong);
        let frame = area.receive(&[7u8; 20]).unwrap();
        assert_eq!(area.receive(&[7u8; 20]).unwrap_err(), NoRoom::NoFrame);
        area.transmit(frame, 20);
        let wire = area.queued_bytes(0);
        assert_eq!(wire.len(), 60);
        assert!(wire[..20].iter().all(|&b| b == 7) && wire[20..].iter().all(|&b| b == 0));
        area.sent(1);
        let frame = area.alloc().expect("the sent frame is free again");
        area.release(frame);
    }
}

//! The UMEM: one shared anonymous mapping split into [`FRAME_SIZE`]-byte chunks, registered with
//! the kernel for AF_XDP. Where a packet sits in a chunk is [`crate::sys::layout`].
//!
//! io_uring: the whole mapping can be registered as one fixed buffer
//! (`XskPort::umem_base_ptr`, `XskPort::umem_len`); a frame's bytes are at
//! `base + umem offset` (see `XskPort::umem_offset`).

use std::num::NonZeroU32;
use std::ptr::NonNull;

use xsk_rs::config::{FrameSize, QueueSize, UmemConfig};
use xsk_rs::FrameDesc;

use crate::sys::layout::{FRAME_HEADROOM, FRAME_SIZE, PACKET_OFFSET, XDP_PACKET_HEADROOM};

/// Errors creating the UMEM.
#[derive(Debug, thiserror::Error)]
pub enum UmemError {
    /// A ring size is not a power of two, or the frame count is zero.
    #[error("invalid UMEM geometry: {what}")]
    Geometry {
        /// What is wrong.
        what: &'static str,
    },
    /// mmap or `XDP_UMEM_REG` failed.
    #[error("cannot create the UMEM ({bytes} bytes): {hint}")]
    Create {
        /// Size of the mapping.
        bytes: usize,
        /// Likely cause and fix.
        hint: &'static str,
        /// What xsk-rs reported.
        #[source]
        source: xsk_rs::umem::UmemCreateError,
    },
}

/// The UMEM mapping plus what is needed to address frames in it without going through xsk-rs'
/// per-call slice construction.
///
/// Frame `i` is the chunk at `i * FRAME_SIZE`; its canonical descriptor points at
/// `i * FRAME_SIZE + PACKET_OFFSET`.
pub(crate) struct UmemArea {
    umem: xsk_rs::Umem,
    /// Start of the mapping. Valid while `umem` (which holds the mapping) lives.
    base: NonNull<u8>,
    len: usize,
    /// One descriptor per frame, as `Umem::new` made them (the only way to make one).
    canonical: Vec<FrameDesc>,
}

// SAFETY: `base` is only a cached address of the mapping that `umem` owns (xsk-rs' `Umem` is
// `Send`); moving the whole struct to another thread moves the mapping's owner with it, and every
// access through `base` is gated by `&self`/`&mut self` plus frame ownership (see `frame.rs`).
unsafe impl Send for UmemArea {}

impl UmemArea {
    /// Maps `frame_count` chunks (frames and slab chunks) and registers them with the kernel.
    pub(crate) fn new(
        frame_count: u32,
        fill_ring_size: u32,
        comp_ring_size: u32,
    ) -> Result<Self, UmemError> {
        let count = NonZeroU32::new(frame_count).ok_or(UmemError::Geometry {
            what: "zero frames",
        })?;
        let geometry = |what| UmemError::Geometry { what };
        let config = UmemConfig::builder()
            .frame_size(FrameSize::new(4096).map_err(|_| geometry("frame size"))?)
            .frame_headroom(220)
            .fill_queue_size(
                QueueSize::new(fill_ring_size).map_err(|_| geometry("fill ring size not 2^n"))?,
            )
            .comp_queue_size(
                QueueSize::new(comp_ring_size)
                    .map_err(|_| geometry("completion ring size not 2^n"))?,
            )
            .build()
            .map_err(|_| geometry("headroom leaves no room for data"))?;
        assert_eq!(config.frame_size().get() as usize, FRAME_SIZE);
        assert_eq!(config.frame_headroom() as usize, FRAME_HEADROOM);
        assert_eq!(config.xdp_headroom() as usize, XDP_PACKET_HEADROOM);
        let bytes = usize::try_from(frame_count)
            .unwrap_or(usize::MAX)
            .saturating_mul(FRAME_SIZE);
        let (umem, mut canonical) =
            xsk_rs::Umem::new(config, count, false).map_err(|source| UmemError::Create {
                bytes,
                hint: "out of locked memory: run as root (CAP_IPC_LOCK) or raise RLIMIT_MEMLOCK \
                       (ulimit -l), or use fewer frames",
                source,
            })?;
        assert_eq!(canonical.len(), frame_count as usize);
        for (index, desc) in canonical.iter().enumerate() {
            assert_eq!(
                desc.addr(),
                index * FRAME_SIZE + PACKET_OFFSET,
                "xsk-rs frame layout changed"
            );
        }
        let first = &mut canonical[0];
        let first_addr = first.addr();
        // SAFETY: `first` is a descriptor of this UMEM and no frame has been handed to the
        // kernel yet (no socket exists), so nothing else accesses this frame; the slice is only
        // used for its start address.
        let packet = unsafe { umem.data_mut(first) }.contents_mut().as_mut_ptr();
        // SAFETY: `packet` points `first_addr` bytes into the mapping (xsk-rs computes it as
        // mapping start + addr), so stepping back stays inside the same allocation.
        let base = unsafe { packet.sub(first_addr) };
        let base = NonNull::new(base).expect("mmap never returns null on success");
        Ok(Self {
            umem,
            base,
            len: bytes,
            canonical,
        })
    }

    /// The xsk-rs handle (for binding sockets and ring operations).
    pub(crate) fn xsk(&self) -> &xsk_rs::Umem {
        &self.umem
    }

    /// The canonical descriptor of frame `index` (packet at chunk + [`PACKET_OFFSET`]).
    pub(crate) fn canonical(&self, index: u32) -> FrameDesc {
        self.canonical[index as usize]
    }

    /// Start of the mapping.
    pub(crate) fn base_ptr(&self) -> NonNull<u8> {
        self.base
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The frame index of a UMEM address, asserting it is inside the mapping.
    pub(crate) fn index_of(&self, addr: usize) -> u32 {
        assert!(
            addr < self.len,
            "descriptor address {addr:#x} outside the UMEM ({:#x})",
            self.len
        );
        u32::try_from(addr / FRAME_SIZE).expect("index < frame_count, a u32")
    }

    /// Bytes from `addr` to the end of its chunk.
    pub(crate) fn capacity_at(addr: usize) -> usize {
        FRAME_SIZE - addr % FRAME_SIZE
    }

    /// The bytes `[addr, addr + len)`.
    ///
    /// # Safety
    ///
    /// The range must lie inside one frame that user space owns (not on the fill or TX ring),
    /// and nothing may write to it while the returned slice lives.
    pub(crate) unsafe fn bytes(&self, addr: usize, len: usize) -> &[u8] {
        debug_assert!(len <= Self::capacity_at(addr));
        // SAFETY: in bounds of the mapping (addr + len stays in addr's chunk, which is inside
        // the mapping), and the caller guarantees no concurrent writer.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(addr), len) }
    }

    /// The bytes `[addr, addr + len)`, which may span consecutive chunks (a slab).
    ///
    /// # Safety
    ///
    /// Every chunk the range touches must be owned by user space (not on any ring), and nothing
    /// may write to the range while the returned slice lives.
    pub(crate) unsafe fn span(&self, addr: usize, len: usize) -> &[u8] {
        assert!(addr.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in bounds of the mapping (checked above); no concurrent writer by contract.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(addr), len) }
    }

    /// The bytes `[addr, addr + len)`, writable, possibly spanning consecutive chunks.
    ///
    /// # Safety
    ///
    /// As [`Self::span`], and nothing else may read or write the range while the returned slice
    /// lives.
    #[expect(
        clippy::mut_from_ref,
        reason = "the UMEM is shared memory; exclusivity comes from frame ownership"
    )]
    pub(crate) unsafe fn span_mut(&self, addr: usize, len: usize) -> &mut [u8] {
        assert!(addr.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in bounds (checked above); exclusivity is the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(addr), len) }
    }
}

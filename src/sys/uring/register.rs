//! What is registered with a [`Ring`]: arenas as fixed buffers (the only memory a segment may
//! be in), files (operations name them by index), and finding which arena a segment is in.
//!
//! Contract: arenas are registered once per ring; the ring keeps an `Arc` of each for as long
//! as the registration exists, and gives every chunk of every arena one `held` entry.
//!
//! Hazard: a segment outside the registered arenas, or past the end of its chunk, is a broken
//! invariant of the caller and panics (in `locate`), before anything reaches the kernel.

use std::os::fd::RawFd;
use std::sync::Arc;

use super::ring::{Held, Registered, Ring, Seg, NONE};
use super::RingError;
use crate::sys::mem::Arena;

impl Ring {
    /// Registers one arena as fixed buffer 0.
    pub fn register_arena(&mut self, arena: &Arc<Arena>) -> Result<(), RingError> {
        self.register_arenas(std::slice::from_ref(arena))
    }

    /// Registers arenas as fixed buffers `0..arenas.len()`, once per ring.
    pub fn register_arenas(&mut self, arenas: &[Arc<Arena>]) -> Result<(), RingError> {
        if !self.arenas.is_empty() {
            return Err(RingError::AlreadyRegistered);
        }
        assert!(arenas.len() <= usize::from(u16::MAX), "too many arenas");
        let iovecs: Vec<libc::iovec> = arenas
            .iter()
            .map(|a| libc::iovec {
                iov_base: a.base_ptr().cast(),
                iov_len: a.len(),
            })
            .collect();
        // SAFETY: each iovec covers exactly one live arena mapping; the ring keeps an
        // `Arc<Arena>` of each for as long as the ring (and thus the registration) exists, and
        // `Drop` waits for in-flight I/O before those Arcs are released.
        unsafe { self.ring.submitter().register_buffers(&iovecs) }.map_err(|source| {
            RingError::RegisterBuffers {
                count: arenas.len(),
                source,
            }
        })?;
        let total: usize = arenas.iter().map(|a| a.chunk_count()).sum();
        assert!(total < NONE as usize, "too many chunks for one ring");
        self.held = (0..total)
            .map(|_| Held {
                seg: None,
                next: NONE,
            })
            .collect();
        let mut first_held = 0u32;
        for arena in arenas {
            self.arenas.push(Registered {
                arena: Arc::clone(arena),
                first_held,
            });
            first_held += u32::try_from(arena.chunk_count()).expect("checked by total");
        }
        Ok(())
    }

    /// Registers files; operations name them by index in `fds`.
    pub fn register_files(&mut self, fds: &[RawFd]) -> Result<(), RingError> {
        self.ring
            .submitter()
            .register_files(fds)
            .map_err(|source| RingError::RegisterFiles {
                count: fds.len(),
                source,
            })
    }

    /// Finds `seg`'s arena: (fixed buffer index, address of its first byte, `held` index).
    pub(super) fn locate(&self, seg: &Seg) -> (u16, *mut u8, u32) {
        let index = self
            .arenas
            .iter()
            .position(|r| r.arena.owns(&seg.chunk))
            .expect("chunk of an arena not registered with this ring");
        let Registered { arena, first_held } = &self.arenas[index];
        let end = (seg.offset as usize).checked_add(seg.len as usize);
        assert!(
            seg.len > 0 && end.is_some_and(|e| e <= arena.chunk_size()),
            "bad segment {seg:?}"
        );
        let offset = arena.offset(&seg.chunk) + seg.offset as usize;
        let addr = arena.base_ptr().wrapping_add(offset);
        let held = first_held + u32::try_from(seg.chunk.index()).expect("index < chunk_count");
        (
            u16::try_from(index).expect("checked at registration"),
            addr,
            held,
        )
    }
}

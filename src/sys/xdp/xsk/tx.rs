//! The transmit path: frames queued for sending ([`XskPort::transmit`]), moved onto our mapping
//! of the TX ring with `sendto` kicks ([`XskPort::flush_tx`]; a slab as a chain of descriptors),
//! and returned from the completion ring ([`XskPort::reap_completions`]).
//!
//! Contract: a frame goes Tx -> Completion when it is put on the TX ring and back to Free when
//! the kernel returns it; a slab is free after its last descriptor comes back.

use super::frames::slab_addr;
use super::{BindMode, XskError, XskPort};
use crate::sys::frame::{pad_for_wire, Frame, FrameState};
use crate::sys::layout::{FRAME_SIZE, PACKET_OFFSET, SLAB_CHUNKS};

/// Number of chunks a packet of `len` bytes occupies in a slab.
fn slab_descs(len: usize) -> usize {
    (PACKET_OFFSET + len).div_ceil(FRAME_SIZE)
}

impl XskPort {
    /// Queues the first `len` bytes of `frame` for transmission (sent by the next
    /// [`Self::flush_tx`]). Frames shorter than 60 bytes are zero-padded to 60. Never fails: the
    /// queue has room for every frame.
    pub fn transmit(&mut self, mut frame: Frame, len: usize) {
        let wire_len = pad_for_wire(self.data_mut(&mut frame), len);
        self.pool.queue_tx(frame, wire_len, &mut self.tx_queued);
    }

    /// Moves queued frames onto the TX ring (as many as fit) and kicks the kernel with `sendto`
    /// if it asked for a wakeup. Returns the number moved; the rest stay queued for the next
    /// call.
    ///
    /// Zero-copy: one kick (it only schedules the driver). Copy mode: the kernel sends at most 32
    /// frames per `sendto` (`TX_BATCH_SIZE` in net/xdp/xsk.c) and leaves the rest on the ring, so
    /// this kicks until the ring is drained or a kick makes no progress (device busy; the next
    /// call retries) — one `sendto` per 32 frames.
    pub fn flush_tx(&mut self) -> Result<usize, XskError> {
        let mut room = self.txring.free() as usize;
        let frames = self.pool.frame_count();
        let mut count = 0;
        for &(index, len) in &self.tx_queued {
            // Each packet goes on the ring whole: one descriptor per chunk it spans.
            let slab = self.pool.is_slab(index).then(|| slab_addr(frames, index));
            let needed = slab.map_or(1, |_| slab_descs(len));
            if needed > room {
                break;
            }
            // The handle was given up in `transmit`; from here the kernel owns the frame.
            self.pool
                .transition(index, FrameState::Tx, FrameState::Completion);
            match slab {
                None => self.txring.push(self.descs[index as usize].addr(), len, 0),
                Some(base) => {
                    let mut addr = base + PACKET_OFFSET;
                    let mut left = len;
                    for piece in 0..needed {
                        let chunk_left = FRAME_SIZE - addr % FRAME_SIZE;
                        let take = left.min(chunk_left);
                        let last = piece + 1 == needed;
                        let options = if last { 0 } else { libc::XDP_PKT_CONTD };
                        self.txring.push(addr, take, options);
                        addr += take;
                        left -= take;
                    }
                    debug_assert_eq!(left, 0);
                    self.slab_pending[(index - frames) as usize] =
                        u8::try_from(needed).expect("a slab spans 3 chunks");
                }
            }
            room -= needed;
            count += 1;
        }
        if count > 0 {
            self.txring.submit();
            self.tx_queued.drain(..count);
        }
        let size = self.txring.size();
        let mut free = self.txring.free();
        if (count == 0 && free == size) || !self.txring.needs_wakeup() {
            return Ok(count);
        }
        loop {
            self.tx.wakeup().map_err(|source| XskError::Syscall {
                call: "sendto (TX kick)",
                source,
            })?;
            let before = free;
            free = self.txring.free();
            let drained = free == size;
            if drained || free == before || self.bind_mode == BindMode::ZeroCopy {
                return Ok(count);
            }
        }
    }

    /// Returns frames the kernel has finished sending to the free list. Returns how many.
    pub fn reap_completions(&mut self) -> usize {
        let mut total = 0;
        loop {
            // SAFETY: the descriptors are overwritten with frames of this UMEM from the
            // completion ring; the transition below asserts each was on the TX ring.
            let done = unsafe { self.comp.consume(&mut self.scratch) };
            let frames = self.pool.frame_count();
            for slot in 0..done {
                let chunk = self.umem.index_of(self.scratch[slot].addr());
                if chunk < frames {
                    self.pool.put_free(chunk, FrameState::Completion);
                    continue;
                }
                // A slab comes back once per descriptor; it is free after the last one.
                let slab = (chunk - frames) as usize / SLAB_CHUNKS;
                let index = frames + u32::try_from(slab).expect("slab index fits u32");
                let pending = &mut self.slab_pending[slab];
                assert!(
                    *pending > 0,
                    "completion for slab {index} that was not sent"
                );
                *pending -= 1;
                if *pending == 0 {
                    self.pool.put_free(index, FrameState::Completion);
                }
            }
            total += done;
            if done < self.scratch.len() {
                return total;
            }
        }
    }
}

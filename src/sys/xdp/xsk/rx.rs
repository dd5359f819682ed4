//! The receive path: frames posted to the fill ring ([`XskPort::refill`], with its adaptive
//! fill target), received frames taken off the RX ring ([`XskPort::rx_burst_into`]), a
//! multi-buffer packet copied into a slab fragment by fragment, and the wait for traffic.
//!
//! Contract: a frame goes Free -> Fill when posted and Fill -> Rx when the kernel returns it,
//! each transition asserted by the pool; no syscall on the burst itself, one `poll` kick only
//! when the kernel asks for a fill-ring wakeup.

use std::time::Duration;

use xsk_rs::FrameDesc;

use super::frames::slab_addr;
use super::{XskError, XskPort};
use crate::sys::frame::{Frame, FrameState, RxBurst, RX_BURST_MAX};
use crate::sys::layout::{PACKET_OFFSET, SLAB_CAPACITY};

/// A multi-buffer packet being copied into a slab.
#[derive(Clone, Copy, Debug)]
pub(super) struct Partial {
    /// The slab receiving it; `None` if none was free (the packet is dropped).
    slab: Option<u32>,
    /// Bytes copied so far.
    len: usize,
    /// The packet outgrew the slab (dropped).
    too_long: bool,
}

impl XskPort {
    /// Posts free frames to the fill ring until the kernel holds [`Self::fill_target`] frames
    /// for receiving (or the free list is empty), and kicks the kernel if it asked for a
    /// wakeup; where busy polling reaches the queue's NAPI, runs it once (see
    /// [`BusyPollReach`](super::BusyPollReach)). Returns the number of frames posted.
    ///
    /// The target starts at [`FILL_TARGET_START`](super::FILL_TARGET_START) and doubles (up to
    /// `fill_ring_size`) when the kernel, given the whole target last time, now holds less than
    /// a quarter of it: a burst came close to finding the ring empty, which drops frames.
    pub fn refill(&mut self) -> Result<usize, XskError> {
        let held = self.pool.count(FrameState::Fill);
        if self.fill_held >= self.fill_target
            && held < self.fill_target / 4
            && self.fill_target < self.fill_max
        {
            self.fill_target = (self.fill_target * 2).min(self.fill_max);
            tracing::info!(
                interface = %self.interface,
                queue = self.queue_id,
                frames = self.fill_target,
                "a burst nearly emptied the fill ring: deepened"
            );
        }
        let posted = self.post_fill(self.fill_target)?;
        self.busy_poll_rx()?;
        Ok(posted)
    }

    /// Posts free frames until the kernel holds `target` (or the free list is empty).
    fn post_fill(&mut self, target: u32) -> Result<usize, XskError> {
        let held = self.pool.count(FrameState::Fill);
        let wanted = target
            .saturating_sub(held)
            .min(self.pool.count(FrameState::Free));
        let room = self.fill.nb_free(wanted);
        let count = wanted.min(room) as usize;
        if count > 0 {
            for slot in 0..count {
                let index = self
                    .pool
                    .take_free(FrameState::Fill)
                    .expect("counted as free");
                self.scratch[slot] = self.umem.canonical(index);
            }
            // SAFETY: every descriptor in `scratch[..count]` is a frame of this UMEM that just
            // moved Free -> Fill, so no one else uses it and it is on no other ring.
            let posted = unsafe { self.fill.produce(&self.scratch[..count]) };
            assert_eq!(
                posted, count,
                "fill ring had room for {room} but took {posted}"
            );
        }
        self.fill_held = self.pool.count(FrameState::Fill);
        if self.fill.needs_wakeup() {
            self.fill
                .wakeup(self.rx.fd_mut(), 0)
                .map_err(|source| XskError::Syscall {
                    call: "poll (fill wakeup)",
                    source,
                })?;
        }
        Ok(count)
    }

    /// Frames `refill` keeps with the kernel for receiving now (see [`Self::refill`]).
    pub fn fill_target(&self) -> u32 {
        self.fill_target
    }

    /// Hands the kernel every free frame, up to `fill-ring-size`, before the worker stops
    /// polling for a while (a sleep or a nap): a burst meanwhile then finds room.
    pub fn fill_all(&mut self) -> Result<(), XskError> {
        self.post_fill(self.fill_max).map(drop)
    }

    /// Waits until the RX ring has frames or `timeout` passes; true if frames are ready.
    ///
    /// First gives the kernel the whole fill ring (`fill_ring_size` frames, if free): a burst
    /// that wakes a sleeping worker finds room, and once the worker runs again `refill` lets
    /// the ring drain back to [`Self::fill_target`] (hot frames).
    pub fn wait_rx(&mut self, timeout: Duration) -> Result<bool, XskError> {
        self.fill_all()?;
        let millis = crate::sys::syscall::poll_millis(timeout);
        self.rx.poll(millis).map_err(|source| XskError::Syscall {
            call: "poll",
            source,
        })
    }

    /// Takes up to `max` (at most [`RX_BURST_MAX`]) received frames off the RX ring. No syscall.
    pub fn rx_burst(&mut self, max: usize) -> RxBurst {
        let mut burst = self.new_burst();
        self.rx_burst_into(&mut burst, max);
        burst
    }

    /// An empty burst for [`Self::rx_burst_into`] (made once, reused every iteration).
    pub fn new_burst(&self) -> RxBurst {
        RxBurst::new(self.pool.id())
    }

    /// As [`Self::rx_burst`], into `burst`, which must be empty (every frame of its previous
    /// use taken): nothing is zeroed or moved per call.
    pub fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize) {
        burst.reset(self.pool.id());
        let max = max.min(RX_BURST_MAX);
        if max == 0 {
            return;
        }
        // SAFETY: the descriptors are overwritten with frames of this UMEM that the kernel
        // returns on the RX ring; the state transition below asserts each was on the fill ring.
        let received = unsafe { self.rx.consume(&mut self.scratch[..max]) };
        if received > 0 && self.busy_poll_pending {
            self.learn_busy_poll_napi();
        }
        for slot in 0..received {
            let desc = self.scratch[slot];
            let index = self.umem.index_of(desc.addr());
            assert!(
                !self.pool.is_slab(index),
                "the kernel returned slab chunk {index} on the RX ring"
            );
            self.pool
                .transition(index, FrameState::Fill, FrameState::Rx);
            if self.rx_partial.is_none() && !desc.has_more_frames() {
                // The kernel wrote the frame on the core that ran the XDP program: start
                // fetching its headers now, so the misses of a whole burst overlap instead of
                // stalling each request in turn (the first read of a frame was ~10 % of a
                // busy worker).
                crate::sys::cpu::prefetch(self.umem.base_ptr().as_ptr().wrapping_add(desc.addr()));
                self.descs[index as usize] = desc;
                burst.push(self.pool.handle(index, desc.lengths().data()));
            } else {
                assert!(self.multi_buffer, "multi-buffer frame without XDP_USE_SG");
                if let Some(frame) = self.rx_fragment(index, &desc) {
                    burst.push(frame);
                }
            }
        }
    }

    /// Copies one fragment of a multi-buffer packet (frame `index`, just moved to Rx) into the
    /// packet's slab and frees the fragment; returns the slab frame after the last fragment.
    fn rx_fragment(&mut self, index: u32, desc: &FrameDesc) -> Option<Frame> {
        let frames = self.pool.frame_count();
        let pool = &mut self.pool;
        let partial = self.rx_partial.get_or_insert_with(|| Partial {
            slab: pool.take_free_slab(),
            len: 0,
            too_long: false,
        });
        let piece = desc.lengths().data();
        if let Some(slab) = partial.slab {
            if partial.len + piece <= SLAB_CAPACITY && !partial.too_long {
                let to = slab_addr(frames, slab) + PACKET_OFFSET + partial.len;
                // SAFETY: the fragment's chunk was just returned by the kernel (state Rx, no
                // handle) and the slab is held for this packet (state Rx, no handle yet): both
                // are ours, they are disjoint, and no other slice of either exists. The piece
                // stays in its chunk (the kernel bounds it) and in the slab (checked above).
                let (src, dst) = unsafe {
                    (
                        self.umem.bytes(desc.addr(), piece),
                        self.umem.span_mut(to, piece),
                    )
                };
                dst.copy_from_slice(src);
                partial.len += piece;
            } else {
                partial.too_long = true;
            }
        }
        self.pool.put_free(index, FrameState::Rx);
        if desc.has_more_frames() {
            return None;
        }
        let done = self.rx_partial.take().expect("set above");
        match done.slab {
            Some(slab) if !done.too_long => {
                self.jumbo.bounce_frames += 1;
                self.jumbo.bounce_bytes += done.len as u64;
                Some(self.pool.handle(slab, done.len))
            }
            Some(slab) => {
                self.pool.put_free(slab, FrameState::Rx);
                self.jumbo.rx_too_long += 1;
                None
            }
            None => {
                self.jumbo.rx_no_slab += 1;
                None
            }
        }
    }
}

//! [`FaultyPort`]: wraps a port and makes its network misbehave, as smoltcp's
//! `phy::FaultInjector` does for its devices: received frames are dropped, duplicated or
//! reordered (from a seeded pseudo-random sequence, so a failing case repeats), the TX side
//! stays full for a number of flushes, and a chosen call fails once. The worker sees only a
//! [`NetPort`]; the frames are the inner port's throughout.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use super::{KernelCounters, NetPort, PortError};
use crate::sys::frame::{Frame, JumboStats, RxBurst, RX_BURST_MAX};
use crate::sys::mem::{Arena, Chunk};

/// What a [`FaultyPort`] does to the traffic. Rates are in percent of received frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// Seed of the pseudo-random sequence (any value; 0 is replaced by a fixed one).
    pub seed: u64,
    /// Received frames dropped before the worker sees them.
    pub drop_pct: u8,
    /// Received frames delivered twice (the copy right behind the original).
    pub duplicate_pct: u8,
    /// Received frames swapped with the one received before them.
    pub reorder_pct: u8,
}

/// Which call a [`FaultyPort`] fails once (see [`FaultyPort::fail_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCall {
    /// `flush_tx`.
    FlushTx,
    /// `refill`.
    Refill,
    /// `wait_rx`.
    WaitRx,
}

/// What a [`FaultyPort`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Received frames dropped.
    pub dropped: u64,
    /// Received frames duplicated.
    pub duplicated: u64,
    /// Duplicates not made because the inner port had no free frame.
    pub no_frame: u64,
    /// Received frames swapped with their predecessor.
    pub reordered: u64,
    /// `flush_tx` calls answered "TX ring full" (nothing moved).
    pub tx_full: u64,
    /// Calls failed on request.
    pub failed: u64,
}

/// A port whose traffic misbehaves: see the module docs.
pub struct FaultyPort<P: NetPort> {
    inner: P,
    config: FaultConfig,
    rng: u64,
    /// Frames received from the inner port and not yet handed to the worker (duplicates and
    /// reordering may make a burst longer than the worker asked for).
    pending: VecDeque<Frame>,
    /// The inner port's burst, reused.
    scratch: RxBurst,
    /// Flushes still to answer "TX ring full".
    tx_full_flushes: u32,
    fail: Option<FaultCall>,
    stats: FaultStats,
}

impl<P: NetPort> FaultyPort<P> {
    /// Wraps `inner` with the faults of `config`.
    pub fn new(inner: P, config: FaultConfig) -> FaultyPort<P> {
        FaultyPort {
            scratch: inner.new_burst(),
            inner,
            rng: if config.seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                config.seed
            },
            config,
            pending: VecDeque::with_capacity(2 * RX_BURST_MAX),
            tx_full_flushes: 0,
            fail: None,
            stats: FaultStats::default(),
        }
    }

    /// The wrapped port.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped port, e.g. to put frames on its wire.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    /// The next `count` flushes move nothing, as when the TX ring is full.
    pub fn hold_tx(&mut self, count: u32) {
        self.tx_full_flushes = count;
    }

    /// The next call of `call` fails with [`PortError::Injected`].
    pub fn fail_next(&mut self, call: FaultCall) {
        self.fail = Some(call);
    }

    /// What was done so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// True with probability `pct` percent (xorshift64*).
    fn roll(&mut self, pct: u8) -> bool {
        if pct == 0 {
            return false;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let value = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32;
        value % 100 < u64::from(pct)
    }

    fn failing(&mut self, call: FaultCall) -> Result<(), PortError> {
        if self.fail != Some(call) {
            return Ok(());
        }
        self.fail = None;
        self.stats.failed += 1;
        Err(PortError::Injected {
            call: match call {
                FaultCall::FlushTx => "flush_tx",
                FaultCall::Refill => "refill",
                FaultCall::WaitRx => "wait_rx",
            },
        })
    }

    /// Takes a burst from the inner port through the faults into `pending`.
    fn receive_inner(&mut self, max: usize) {
        self.inner.rx_burst_into(&mut self.scratch, max);
        while let Some(frame) = self.scratch.next() {
            if self.roll(self.config.drop_pct) {
                self.stats.dropped += 1;
                self.inner.release(frame);
                continue;
            }
            let copy = if self.roll(self.config.duplicate_pct) {
                self.duplicate(&frame)
            } else {
                None
            };
            self.pending.push_back(frame);
            let count = self.pending.len();
            if count >= 2 && self.roll(self.config.reorder_pct) {
                self.stats.reordered += 1;
                self.pending.swap(count - 1, count - 2);
            }
            if let Some(copy) = copy {
                self.pending.push_back(copy);
            }
        }
    }

    fn duplicate(&mut self, frame: &Frame) -> Option<Frame> {
        let Some(mut copy) = self.inner.alloc() else {
            self.stats.no_frame += 1;
            return None;
        };
        let len = frame.len();
        if len > self.inner.frame_capacity(&copy) {
            // A jumbo frame: no slab to copy it into here.
            self.stats.no_frame += 1;
            self.inner.release(copy);
            return None;
        }
        let (data, buf) = (self.inner.data(frame), self.inner.data_mut(&mut copy));
        buf[..len].copy_from_slice(data);
        copy.set_len(len);
        self.stats.duplicated += 1;
        Some(copy)
    }
}

impl<P: NetPort> Drop for FaultyPort<P> {
    fn drop(&mut self) {
        for frame in self.pending.drain(..) {
            self.inner.release(frame);
        }
    }
}

impl<P: NetPort> NetPort for FaultyPort<P> {
    forward_frame_methods!(self => self.inner, self.inner);
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn new_burst(&self) -> RxBurst {
        self.inner.new_burst()
    }
    fn rx_batch_max(&self) -> usize {
        self.inner.rx_batch_max()
    }
    fn rx_burst_into(&mut self, burst: &mut RxBurst, max: usize) {
        let max = max.min(RX_BURST_MAX);
        if self.pending.len() < max {
            self.receive_inner(max - self.pending.len());
        }
        burst.clear();
        for _ in 0..max {
            let Some(frame) = self.pending.pop_front() else {
                break;
            };
            burst.push(frame);
        }
    }
    fn flush_tx(&mut self) -> Result<usize, PortError> {
        self.failing(FaultCall::FlushTx)?;
        if self.tx_full_flushes > 0 {
            self.tx_full_flushes -= 1;
            self.stats.tx_full += 1;
            return Ok(0);
        }
        self.inner.flush_tx()
    }
    fn reap_completions(&mut self) -> usize {
        self.inner.reap_completions()
    }
    fn refill(&mut self) -> Result<usize, PortError> {
        self.failing(FaultCall::Refill)?;
        self.inner.refill()
    }
    fn wait_rx(&mut self, timeout: Duration) -> Result<bool, PortError> {
        self.failing(FaultCall::WaitRx)?;
        if !self.pending.is_empty() {
            return Ok(true);
        }
        self.inner.wait_rx(timeout)
    }
    fn prepare_nap(&mut self) -> Result<(), PortError> {
        self.inner.prepare_nap()
    }
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        // Frames held back for later (reordering) are not on the inner port's fd.
        if self.pending.is_empty() {
            self.inner.poll_fd()
        } else {
            None
        }
    }
    fn kernel_counters(&self) -> Result<KernelCounters, PortError> {
        self.inner.kernel_counters()
    }
    fn frames_held(&self) -> u32 {
        // The frames waiting here are the inner port's, held until the worker takes them.
        self.inner.frames_held()
    }
    fn foreign_dst(&self) -> std::io::Result<u64> {
        self.inner.foreign_dst()
    }
}

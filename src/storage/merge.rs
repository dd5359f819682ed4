//! Merge planning: which queued requests can travel as one vectored I/O.
//!
//! Pure logic, no I/O, no allocation. [`plan`] sorts the queued requests in place by
//! (export, lane, direction, sector, arrival) and [`Runs`] then yields maximal runs of
//! requests that are back to back on disk: same export, same descriptor lane, same direction
//! (never FLUSH), each starting at the sector where the previous one ends, at most
//! `max_segments` long. Every request lands in exactly one run.
//!
//! Hazard: sorting reorders requests within a batch. That is harmless because requests in the
//! same batch are in flight together and have no defined order on the kernel side either
//! (an initiator never relies on the order of concurrently outstanding commands), and arrival
//! order (`seq`) breaks ties so the plan is deterministic.

use crate::storage::export::{Lane, SECTOR_SIZE};
use crate::storage::io::IoOp;

/// A queued request, as far as merging is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Export index.
    pub export: u16,
    /// Direction.
    pub op: IoOp,
    /// Descriptor lane (direct and buffered I/O never share a request).
    pub lane: Lane,
    /// First sector.
    pub sector: u64,
    /// Length in bytes (a multiple of 512).
    pub len: u32,
    /// Arrival order, unique per engine.
    pub seq: u64,
    /// The engine's slot for this request.
    pub slot: u32,
    /// Never merged with a neighbour: a retry on its own after a short merged I/O, so that
    /// it gets an outcome of its own.
    pub alone: bool,
}

/// A run of requests `pending[start..end]` that form one I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First index (inclusive).
    pub start: usize,
    /// Last index (exclusive); `end > start`.
    pub end: usize,
}

impl Run {
    /// Number of requests in the run.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Always false: runs are never empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Sorts `pending` and returns its runs of at most `max_segments` (>= 1) requests.
pub fn plan(pending: &mut [Pending], max_segments: usize) -> Runs<'_> {
    assert!(max_segments >= 1, "max_segments must be at least 1");
    sort(pending);
    Runs {
        pending,
        next: 0,
        max_segments,
    }
}

/// Sorts `pending` into planning order (in place, no allocation).
pub fn sort(pending: &mut [Pending]) {
    pending.sort_unstable_by_key(|p| (p.export, p.lane, op_rank(p.op), p.sector, p.seq));
}

/// End (exclusive) of the run that starts at `start` in a [`sort`]ed slice.
pub fn run_end(pending: &[Pending], start: usize, max_segments: usize) -> usize {
    assert!(start < pending.len() && max_segments >= 1, "bad run start");
    let mut end = start + 1;
    while end < pending.len()
        && end - start < max_segments
        && joins(&pending[end - 1], &pending[end])
    {
        end += 1;
    }
    end
}

/// Iterator over the runs of a planned batch.
#[derive(Debug)]
pub struct Runs<'a> {
    pending: &'a [Pending],
    next: usize,
    max_segments: usize,
}

impl Iterator for Runs<'_> {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        let start = self.next;
        if start >= self.pending.len() {
            return None;
        }
        let end = run_end(self.pending, start, self.max_segments);
        self.next = end;
        Some(Run { start, end })
    }
}

/// Whether `b` continues `a` on disk in the same I/O.
pub fn joins(a: &Pending, b: &Pending) -> bool {
    !a.alone
        && !b.alone
        && a.export == b.export
        && a.lane == b.lane
        && a.op == b.op
        && a.op != IoOp::Flush
        && a.sector.checked_add(u64::from(a.len) / SECTOR_SIZE) == Some(b.sector)
}

fn op_rank(op: IoOp) -> u8 {
    match op {
        IoOp::Read => 0,
        IoOp::Write => 1,
        IoOp::Flush => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(export: u16, op: IoOp, sector: u64, len: u32, seq: u64) -> Pending {
        let slot = u32::try_from(seq).unwrap();
        Pending {
            export,
            op,
            lane: Lane::Buffered,
            sector,
            len,
            seq,
            slot,
            alone: false,
        }
    }

    fn runs(pending: &mut [Pending], max: usize) -> Vec<(usize, usize)> {
        plan(pending, max).map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn test_adjacent_writes_out_of_order_merge_into_one_run() {
        let mut p: Vec<_> = (0..8)
            .rev()
            .map(|i| req(0, IoOp::Write, 10 + 2 * i, 1024, i))
            .collect();
        assert_eq!(runs(&mut p, 32), vec![(0, 8)]);
        assert!(p.windows(2).all(|w| w[0].sector < w[1].sector));
    }

    #[test]
    fn test_gap_direction_export_and_lane_split_runs() {
        let mut p = vec![
            req(0, IoOp::Write, 0, 512, 0),
            req(0, IoOp::Write, 2, 512, 1), // gap at sector 1
            req(0, IoOp::Read, 1, 512, 2),  // other direction
            req(1, IoOp::Write, 1, 512, 3), // other export
        ];
        let mut direct = req(0, IoOp::Write, 3, 512, 4);
        direct.lane = Lane::Direct;
        p.push(direct);
        assert_eq!(runs(&mut p, 32).len(), 5);
    }

    #[test]
    fn test_segment_cap_splits_long_runs() {
        let mut p: Vec<_> = (0..40).map(|i| req(0, IoOp::Read, i, 512, i)).collect();
        assert_eq!(runs(&mut p, 32), vec![(0, 32), (32, 40)]);
        assert_eq!(runs(&mut p, 1).len(), 40);
    }

    #[test]
    fn test_flushes_and_overlaps_never_merge() {
        let mut p = vec![
            req(0, IoOp::Flush, 0, 0, 0),
            req(0, IoOp::Flush, 0, 0, 1),
            req(0, IoOp::Write, 4, 512, 2),
            req(0, IoOp::Write, 4, 512, 3),
        ];
        let r = runs(&mut p, 32);
        assert_eq!(r.len(), 4);
        assert_eq!((p[0].seq, p[1].seq), (2, 3), "ties keep arrival order");
    }

    #[test]
    fn test_sector_overflow_does_not_join() {
        let mut p = vec![
            req(0, IoOp::Read, u64::MAX, 1024, 0),
            req(0, IoOp::Read, 0, 512, 1),
        ];
        assert_eq!(runs(&mut p, 32).len(), 2);
    }

    fn arb_pending() -> impl Strategy<Value = Pending> {
        let op = prop_oneof![Just(IoOp::Read), Just(IoOp::Write), Just(IoOp::Flush)];
        let lane = prop_oneof![Just(Lane::Direct), Just(Lane::Buffered)];
        (0u16..3, op, lane, 0u64..48, 1u32..5).prop_map(|(export, op, lane, sector, n)| {
            let len = if op == IoOp::Flush { 0 } else { n * 512 };
            Pending {
                export,
                op,
                lane,
                sector,
                len,
                seq: 0,
                slot: 0,
                alone: false,
            }
        })
    }

    proptest! {
        #[test]
        fn prop_plan_is_a_valid_maximal_partition(
            mut p in proptest::collection::vec(arb_pending(), 0..80),
            max in 1usize..10,
        ) {
            for (i, x) in p.iter_mut().enumerate() {
                x.seq = i as u64;
                x.slot = u32::try_from(i).unwrap();
            }
            let original = p.clone();
            let runs: Vec<Run> = plan(&mut p, max).collect();
            // Exactly once: runs tile 0..n and the multiset of requests is unchanged.
            let mut at = 0;
            for r in &runs {
                prop_assert_eq!(r.start, at);
                prop_assert!(!r.is_empty() && r.len() <= max);
                at = r.end;
            }
            prop_assert_eq!(at, p.len());
            let mut seen: Vec<u32> = p.iter().map(|x| x.slot).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..original.len()).map(|i| u32::try_from(i).unwrap()).collect::<Vec<_>>());
            for x in &p {
                prop_assert_eq!(*x, original[x.slot as usize]);
            }
            for r in &runs {
                let run = &p[r.start..r.end];
                // Never across exports, lanes, directions or gaps; never a merged flush.
                prop_assert!(run.windows(2).all(|w| joins(&w[0], &w[1])));
                prop_assert!(run.len() == 1 || run[0].op != IoOp::Flush);
            }
            // Maximal: two neighbouring runs that could join are split only by the cap.
            for w in runs.windows(2) {
                if joins(&p[w[0].end - 1], &p[w[1].start]) {
                    prop_assert_eq!(w[0].len(), max);
                }
            }
        }
    }
}

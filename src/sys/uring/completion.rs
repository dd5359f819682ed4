//! The completion side of a [`Ring`]: [`Ring::reap`] hands each completion to the caller with
//! the segments its operation carried ([`Segs`]), and frees the operation's slot.
//!
//! Contract: the handler must take every segment (asserted), so each chunk token leaves the
//! ring exactly once, with its completion; only then is the slot (and its iovec region) free
//! for the next push. Completions come in the kernel's order, not in submission order.

use super::ring::{Held, Ring, Seg, NONE};

impl Ring {
    /// Hands each ready completion to `f` as `(user_data, result, segments)`; `f` must take
    /// every segment (in push order). Never blocks. Returns the number of completions.
    pub fn reap(&mut self, mut f: impl FnMut(u64, i32, &mut Segs<'_>)) -> usize {
        let Ring {
            ring,
            ops,
            free_ops,
            held,
            ..
        } = self;
        let mut count = 0;
        for cqe in ring.completion() {
            let index = u32::try_from(cqe.user_data()).expect("ring user_data is an op index");
            let op = &mut ops[index as usize];
            assert!(op.busy, "completion for idle op slot {index}");
            op.busy = false;
            let mut segs = Segs {
                held,
                next: op.head,
                remaining: op.count,
            };
            f(op.user_data, cqe.result(), &mut segs);
            assert_eq!(
                segs.remaining, 0,
                "completion handler left chunks in the ring"
            );
            free_ops.push(index);
            count += 1;
        }
        count
    }
}

/// The segments of one completed operation, in push order.
#[derive(Debug)]
pub struct Segs<'a> {
    held: &'a mut [Held],
    next: u32,
    remaining: u32,
}

impl Iterator for Segs<'_> {
    type Item = Seg;

    fn next(&mut self) -> Option<Seg> {
        if self.remaining == 0 {
            return None;
        }
        let slot = &mut self.held[self.next as usize];
        let seg = slot.seg.take().expect("parked segment missing");
        (self.next, slot.next) = (slot.next, NONE);
        self.remaining -= 1;
        Some(seg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining as usize, Some(self.remaining as usize))
    }
}

impl ExactSizeIterator for Segs<'_> {}

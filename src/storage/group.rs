//! Group commit: the bookkeeping that lets one data sync acknowledge many writes.
//!
//! Sans-IO: the engine tells a [`GroupCommit`] what happened (a write completed, a FLUSH
//! arrived, a sync was issued, a sync finished) and it says what may be acknowledged. One
//! group per export, so writes of different exports never wait for each other's syncs.
//!
//! Contract:
//! - [`GroupCommit::join`] takes a request that needs a sync before it may be acknowledged:
//!   a write of a `sync` export whose own I/O has completed, or a FLUSH that has arrived.
//! - At most one sync is in flight. [`GroupCommit::wants_sync`] is true when something is
//!   waiting and none is; the engine then issues one and calls [`GroupCommit::start_sync`].
//!   Requests that join while it is in flight gather for the next one (pipelined).
//! - [`GroupCommit::finish_sync`] with success acknowledges exactly the requests that joined
//!   before the sync started: an `fdatasync` covers the writes that completed before it was
//!   issued, not those that completed during it. With a failure it fails *every* waiting
//!   request, those gathered for the next sync too: after a failed `fsync` the kernel may have
//!   dropped the dirty pages and will not report the error a second time.
//! - The invariant "no request is acknowledged unless a sync that started after it joined has
//!   finished" is checked on every acknowledgement in debug builds (and so in every test).
//! - Allocation-free after [`GroupCommit::with_capacity`] as long as at most that many
//!   requests wait at once (the engine bounds it by its queue depth).

use std::collections::VecDeque;

/// One request waiting for a sync, with the logical time it joined.
#[derive(Debug)]
struct Waiter<T> {
    joined: u64,
    item: T,
}

/// The group commit state of one export.
#[derive(Debug)]
pub struct GroupCommit<T> {
    waiting: VecDeque<Waiter<T>>,
    /// The logical clock: ticks on every join and every sync start.
    clock: u64,
    /// When the sync in flight started, if one is.
    in_flight: Option<u64>,
}

impl<T> GroupCommit<T> {
    /// A group with room for `capacity` waiting requests before it allocates.
    pub fn with_capacity(capacity: usize) -> GroupCommit<T> {
        GroupCommit {
            waiting: VecDeque::with_capacity(capacity),
            clock: 0,
            in_flight: None,
        }
    }

    /// Adds a request that may be acknowledged only after a sync started from now on.
    pub fn join(&mut self, item: T) {
        self.clock += 1;
        self.waiting.push_back(Waiter {
            joined: self.clock,
            item,
        });
    }

    /// True when requests wait and no sync is in flight: the caller should issue one.
    pub fn wants_sync(&self) -> bool {
        self.in_flight.is_none() && !self.waiting.is_empty()
    }

    /// True while a sync is in flight.
    pub fn syncing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Records that a sync was issued (it covers every request that joined before now).
    pub fn start_sync(&mut self) {
        assert!(self.in_flight.is_none(), "a second sync in flight");
        self.clock += 1;
        self.in_flight = Some(self.clock);
    }

    /// Records the end of the sync in flight and hands every request it settles to `out`,
    /// in joining order, with `result` (success: the requests it covers; failure: all of
    /// them). Returns how many.
    pub fn finish_sync<E: Copy>(
        &mut self,
        result: Result<(), E>,
        mut out: impl FnMut(T, Result<(), E>),
    ) -> usize {
        let started = self.in_flight.take().expect("no sync in flight");
        let mut count = 0;
        while let Some(waiter) = self.waiting.front() {
            if result.is_ok() && waiter.joined > started {
                break;
            }
            let waiter = self.waiting.pop_front().expect("front exists");
            debug_assert!(
                result.is_err() || waiter.joined < started,
                "acknowledged a request (joined at {}) that the sync (started at {started}) \
                 does not cover",
                waiter.joined
            );
            out(waiter.item, result);
            count += 1;
        }
        count
    }

    /// Requests waiting (covered by the sync in flight or gathered for the next).
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settle(group: &mut GroupCommit<u32>, result: Result<(), i32>) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        group.finish_sync(result, |item, r| out.push((item, r.is_ok())));
        out
    }

    #[test]
    fn test_sync_acknowledges_what_joined_before_it_and_gathers_the_rest() {
        let mut group = GroupCommit::with_capacity(8);
        assert!(!group.wants_sync());
        group.join(1);
        group.join(2);
        assert!(group.wants_sync());
        group.start_sync();
        assert!(!group.wants_sync(), "one sync at a time");
        group.join(3);
        assert_eq!(settle(&mut group, Ok(())), [(1, true), (2, true)]);
        assert_eq!(group.len(), 1);
        assert!(group.wants_sync(), "3 gathered for the next sync");
        group.start_sync();
        assert_eq!(settle(&mut group, Ok(())), [(3, true)]);
        assert!(group.is_empty() && !group.wants_sync());
    }

    #[test]
    fn test_failed_sync_fails_every_waiting_request_including_the_next_batch() {
        let mut group = GroupCommit::with_capacity(8);
        group.join(1);
        group.start_sync();
        group.join(2);
        group.join(3);
        assert_eq!(
            settle(&mut group, Err(libc::EIO)),
            [(1, false), (2, false), (3, false)]
        );
        assert!(group.is_empty());
        group.join(4);
        group.start_sync();
        assert_eq!(settle(&mut group, Ok(())), [(4, true)], "keeps serving");
    }

    #[derive(Clone, Debug)]
    enum Event {
        Join,
        Start,
        Finish(bool),
    }

    proptest! {
        /// Any interleaving: every request is settled exactly once, an acknowledged request
        /// joined before the start of the sync that acknowledged it, and a failed sync leaves
        /// nothing waiting.
        #[test]
        fn prop_every_request_is_settled_once_and_only_by_a_later_sync(
            events in proptest::collection::vec(
                prop_oneof![
                    3 => Just(Event::Join),
                    1 => Just(Event::Start),
                    1 => any::<bool>().prop_map(Event::Finish),
                ],
                0..200,
            )
        ) {
            let mut group = GroupCommit::with_capacity(4);
            let mut next = 0u32;
            // Per request: the number of syncs started when it joined.
            let mut joined_after = Vec::new();
            let mut started = 0u32;
            let mut settled = vec![false; 0];
            for event in events {
                match event {
                    Event::Join => {
                        group.join(next);
                        joined_after.push(started);
                        settled.push(false);
                        next += 1;
                    }
                    Event::Start if group.wants_sync() => {
                        group.start_sync();
                        started += 1;
                    }
                    Event::Finish(ok) if group.syncing() => {
                        let result = if ok { Ok(()) } else { Err(()) };
                        group.finish_sync(result, |item, r| {
                            let item = item as usize;
                            assert!(!settled[item], "settled twice");
                            settled[item] = true;
                            if r.is_ok() {
                                // The sync that finished is number `started`; it must have
                                // started after the request joined.
                                assert!(joined_after[item] < started);
                            }
                        });
                        if !ok {
                            prop_assert!(group.is_empty());
                        }
                    }
                    _ => {}
                }
            }
            let waiting = settled.iter().filter(|s| !**s).count();
            prop_assert_eq!(waiting, group.len());
        }
    }
}

//! [`Window`]: the outstanding requests of one path, in a preallocated slot table.
//!
//! Contract: a window has `limit` slots (≤ [`SLOTS_MAX`]); at most `limit` requests are in
//! flight, never more, and at most [`Window::allowed`] of them: a congestion window as the
//! Linux driver keeps one. It starts at `limit`; a timeout ([`Window::on_timeout`]) cuts it
//! to 1 and sets the slow-start threshold to half of what it was; every completed request
//! then widens it by one up to that threshold, and beyond it by one per window's worth of
//! completions, back up to `limit`. A target that drops requests under load is thus offered
//! less, not the full window again after every timeout. Every request carries a tag `generation << SLOT_BITS | slot` (top bit
//! clear: the Linux driver leaves it to userland tools, and so do we); the slot's generation is
//! bumped on every issue and every retransmit, so a reply whose tag names a free slot or an old
//! generation (a late answer to a retransmitted request, a duplicate) is recognized as stale
//! and ignored. A retransmit keeps its slot but gets a new tag. Nothing allocates after
//! [`Window::new`]; lookups are O(1), [`Window::expired`] is O(limit).
//!
//! Times are nanoseconds from an origin the caller chooses; the window reads no clock.

/// Bits of the tag that name the slot.
pub const SLOT_BITS: u32 = 12;
/// Most slots a window can have.
pub const SLOTS_MAX: usize = 1 << SLOT_BITS;
/// Bits of the tag that carry the generation (below the reserved top bit).
const GENERATION_BITS: u32 = 31 - SLOT_BITS;
const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

const _: () = assert!(SLOT_BITS + GENERATION_BITS == 31);

/// A request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflight<T> {
    /// What the caller attached to the request.
    pub request: T,
    /// When it was first sent.
    pub first_sent_ns: u64,
    /// When it was last (re)sent.
    pub sent_ns: u64,
    /// Transmissions so far (1 after issue).
    pub tries: u32,
}

#[derive(Clone, Copy, Debug)]
struct Slot<T> {
    generation: u32,
    inflight: Option<Inflight<T>>,
}

/// The slot table of one path.
#[derive(Debug)]
pub struct Window<T> {
    slots: Vec<Slot<T>>,
    /// Indexes of free slots (a stack: the most recently freed slot is reused first, which
    /// keeps its staging data warm in cache).
    free: Vec<u16>,
    /// Requests allowed in flight (1..=limit).
    allowed: usize,
    /// Below it, each completion widens `allowed` by one (slow start).
    threshold: usize,
    /// Completions since `allowed` last grew (above the threshold).
    acked: usize,
}

/// The generation after `generation`: 1..=GENERATION_MASK, skipping 0, so that tag 0 (which
/// unsolicited advertisements carry) never names a request in flight.
fn next_generation(generation: u32) -> u32 {
    if generation >= GENERATION_MASK {
        1
    } else {
        generation + 1
    }
}

/// The tag of `slot` at `generation`.
fn tag_of(slot: usize, generation: u32) -> u32 {
    let slot = u32::try_from(slot).expect("slot < SLOTS_MAX");
    (generation & GENERATION_MASK) << SLOT_BITS | slot
}

impl<T: Copy> Window<T> {
    /// A window of `limit` slots (clamped to 1..=[`SLOTS_MAX`]).
    pub fn new(limit: usize) -> Window<T> {
        let limit = limit.clamp(1, SLOTS_MAX);
        Window {
            slots: (0..limit)
                .map(|_| Slot {
                    generation: 0,
                    inflight: None,
                })
                .collect(),
            free: (0..limit)
                .rev()
                .map(|slot| u16::try_from(slot).expect("slot < SLOTS_MAX"))
                .collect(),
            allowed: limit,
            threshold: limit,
            acked: 0,
        }
    }

    /// Requests allowed in flight now (the congestion window, 1..=[`Window::limit`]).
    pub fn allowed(&self) -> usize {
        self.allowed
    }

    /// A request timed out: allow one request in flight, and remember half the window as the
    /// slow-start threshold. Only the first timeout of a burst halves it (as in the Linux
    /// driver: a window already at 1 stays, its threshold too).
    pub fn on_timeout(&mut self) {
        if self.allowed > 1 {
            self.threshold = (self.allowed / 2).max(1);
            self.allowed = 1;
            self.acked = 0;
        }
    }

    /// Slots in the window (the most requests ever in flight at once).
    pub fn limit(&self) -> usize {
        self.slots.len()
    }

    /// Requests in flight.
    pub fn outstanding(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// True if another request may be issued.
    pub fn has_space(&self) -> bool {
        !self.free.is_empty() && self.outstanding() < self.allowed
    }

    /// Takes a free slot for `request` sent at `now_ns`; returns `(slot, tag)`, or `None` if
    /// the window is full.
    pub fn issue(&mut self, request: T, now_ns: u64) -> Option<(usize, u32)> {
        let slot = usize::from(self.free.pop()?);
        let entry = &mut self.slots[slot];
        assert!(entry.inflight.is_none(), "free slot {slot} is in flight");
        entry.generation = next_generation(entry.generation);
        entry.inflight = Some(Inflight {
            request,
            first_sent_ns: now_ns,
            sent_ns: now_ns,
            tries: 1,
        });
        Some((slot, tag_of(slot, entry.generation)))
    }

    /// The slot a reply with `tag` answers, if the tag is current (not stale).
    pub fn lookup(&self, tag: u32) -> Option<usize> {
        let slot = (tag & SLOT_MASK) as usize;
        let generation = (tag >> SLOT_BITS) & GENERATION_MASK;
        let entry = self.slots.get(slot)?;
        (tag >> 31 == 0 && entry.inflight.is_some() && entry.generation == generation)
            .then_some(slot)
    }

    /// Completes the request a reply with `tag` answers and frees its slot; `None` for a stale
    /// or unknown tag (the reply must then be ignored).
    pub fn complete(&mut self, tag: u32) -> Option<Inflight<T>> {
        let slot = self.lookup(tag)?;
        if self.allowed < self.slots.len() {
            if self.allowed < self.threshold {
                self.allowed += 1;
            } else {
                self.acked += 1;
                if self.acked >= self.allowed {
                    self.allowed += 1;
                    self.acked = 0;
                }
            }
        }
        Some(self.release(slot))
    }

    /// Frees `slot` (in flight) without a reply, e.g. after the last retransmit timed out.
    pub fn release(&mut self, slot: usize) -> Inflight<T> {
        let inflight = self.slots[slot]
            .inflight
            .take()
            .unwrap_or_else(|| panic!("slot {slot} released but not in flight"));
        self.free
            .push(u16::try_from(slot).expect("slot < SLOTS_MAX"));
        inflight
    }

    /// The request in `slot`, if in flight.
    pub fn get(&self, slot: usize) -> Option<&Inflight<T>> {
        self.slots.get(slot)?.inflight.as_ref()
    }

    /// Gives the in-flight request in `slot` a new tag for its retransmission at `now_ns` (the
    /// old tag becomes stale); returns the new tag.
    pub fn retag(&mut self, slot: usize, now_ns: u64) -> u32 {
        let entry = &mut self.slots[slot];
        let inflight = entry
            .inflight
            .as_mut()
            .unwrap_or_else(|| panic!("slot {slot} retransmitted but not in flight"));
        inflight.sent_ns = now_ns;
        inflight.tries += 1;
        entry.generation = next_generation(entry.generation);
        tag_of(slot, entry.generation)
    }

    /// Slots whose request was last sent `timeout_ns` or longer before `now_ns`.
    pub fn expired(&self, now_ns: u64, timeout_ns: u64) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(slot, entry)| {
                entry
                    .inflight
                    .filter(|inflight| now_ns.saturating_sub(inflight.sent_ns) >= timeout_ns)
                    .map(|_| slot)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_window_never_exceeds_limit() {
        let mut window = Window::<u32>::new(4);
        let tags: Vec<u32> = (0..4)
            .map(|i| window.issue(i, 0).expect("room").1)
            .collect();
        assert_eq!(window.outstanding(), 4);
        assert!(!window.has_space());
        assert_eq!(window.issue(9, 0), None);
        // Tags are distinct and top bit clear.
        let mut sorted = tags.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4);
        assert!(tags.iter().all(|tag| tag >> 31 == 0));
        assert_eq!(window.complete(tags[2]).expect("current").request, 2);
        assert_eq!(window.outstanding(), 3);
        assert!(window.issue(5, 1).is_some());
        assert_eq!(window.issue(6, 1), None);
    }

    #[test]
    fn test_stale_tag_ignored() {
        let mut window = Window::<u32>::new(2);
        let (slot, tag) = window.issue(7, 0).unwrap();
        assert_eq!(window.complete(tag).unwrap().request, 7);
        // A duplicate reply: the slot is free now.
        assert_eq!(window.complete(tag), None);
        // The slot is reused with a new generation; the old tag stays stale.
        let (again, new_tag) = window.issue(8, 1).unwrap();
        assert_eq!(again, slot);
        assert_ne!(new_tag, tag);
        assert_eq!(window.complete(tag), None);
        assert_eq!(window.outstanding(), 1);
        // Unknown slot numbers and the reserved top bit are ignored too.
        assert_eq!(window.complete(new_tag | 1 << 31), None);
        assert_eq!(window.complete(tag_of(SLOTS_MAX - 1, 1)), None);
        assert_eq!(window.complete(new_tag).unwrap().request, 8);
    }

    #[test]
    fn test_retransmit_gets_new_tag() {
        let mut window = Window::<u32>::new(2);
        let (slot, tag) = window.issue(3, 100).unwrap();
        assert_eq!(window.expired(150, 100).count(), 0);
        assert_eq!(window.expired(200, 100).collect::<Vec<_>>(), vec![slot]);
        let new_tag = window.retag(slot, 200);
        assert_ne!(new_tag, tag);
        assert_eq!(window.expired(250, 100).count(), 0, "timer restarted");
        // The answer to the first transmission is now stale; the retransmission's completes.
        assert_eq!(window.complete(tag), None);
        let done = window.complete(new_tag).unwrap();
        assert_eq!(
            done,
            Inflight {
                request: 3,
                first_sent_ns: 100,
                sent_ns: 200,
                tries: 2
            }
        );
        assert_eq!(window.outstanding(), 0);
    }

    #[test]
    fn test_generation_wraps_within_tag_bits() {
        let mut window = Window::<()>::new(1);
        let mut last = None;
        for _ in 0..(GENERATION_MASK as usize + 5) {
            let (_, tag) = window.issue((), 0).unwrap();
            assert_eq!(tag >> 31, 0);
            assert_ne!(tag, 0, "tag 0 is never used");
            assert_ne!(Some(tag), last);
            last = Some(tag);
            assert!(window.complete(tag).is_some());
        }
    }

    #[test]
    fn test_timeout_narrows_the_window_and_replies_widen_it_again() {
        let mut window = Window::<u32>::new(8);
        let tags: Vec<u32> = (0..8).map(|i| window.issue(i, 0).unwrap().1).collect();
        window.on_timeout();
        window.on_timeout(); // the same burst of losses: no second halving
        assert_eq!(window.allowed(), 1);
        // Slow start: each completion widens it by one, up to the threshold (8 / 2).
        for &tag in &tags[..3] {
            assert!(!window.has_space());
            window.complete(tag).unwrap();
        }
        assert_eq!((window.allowed(), window.outstanding()), (4, 5));
        assert!(!window.has_space(), "5 in flight, 4 allowed");
        // Above the threshold: one more per window's worth (4) of completions.
        window.complete(tags[3]).unwrap();
        window.complete(tags[4]).unwrap();
        assert_eq!((window.allowed(), window.outstanding()), (4, 3));
        assert!(window.has_space());
        window.issue(9, 1).unwrap();
        assert!(!window.has_space(), "4 in flight, 4 allowed");
        window.complete(tags[5]).unwrap();
        assert_eq!(window.allowed(), 4);
        window.complete(tags[6]).unwrap();
        assert_eq!(window.allowed(), 5);
        // Back to the whole window after enough replies, never beyond it.
        for round in 0..64 {
            let (_, tag) = window.issue(round, 2).unwrap();
            window.complete(tag).unwrap();
        }
        assert_eq!(window.allowed(), 8);
        // A stale reply changes nothing.
        assert_eq!(window.complete(tags[0]), None);
        assert_eq!(window.allowed(), 8);
    }

    #[test]
    fn test_limit_is_clamped() {
        assert_eq!(Window::<()>::new(0).limit(), 1);
        assert_eq!(Window::<()>::new(1 << 20).limit(), SLOTS_MAX);
    }
}

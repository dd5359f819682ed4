//! Which pages of an export were last seen in the page cache, so that a buffered write only
//! asks the kernel about pages it has not seen (pure bookkeeping; the asking is the engine's).
//!
//! A buffered write that covers part of a page the page cache does not hold makes the kernel
//! read that page from the disk first, inside the write's system call; a write through a
//! shared mapping faults every page it touches in from the disk. On the worker's thread that
//! would hold up every other request for a disk read (tens of µs on an SSD, milliseconds on a
//! spinning disk). The io_uring engine therefore asks the kernel (`preadv2(RWF_NOWAIT)` of
//! one byte) whether such a page is cached before it writes inline, and sends the write
//! through the ring when it is not. Asking costs a system call, so the answers are kept:
//! [`SeenPages`] is a direct-mapped table of the pages seen cached, one `u32` tag per slot,
//! at most [`SLOTS_MAX`] slots (256 KiB, every page of a 256 MiB export).
//!
//! The table is a hint, kept honest three ways:
//! - the engine forgets the pages of every write it sends to the disk directly (`O_DIRECT`,
//!   which drops them from the page cache);
//! - every table is cleared when the kernel counted an eviction of page-cache pages: the
//!   supervisor watches `/proc/vmstat` ([`crate::sys::pagecache::evictions`]: reclaim, by
//!   kswapd, direct or a memory cgroup's, and `drop_caches`) and calls [`pages_evicted`], and
//!   each engine clears its tables before its next write asks ([`eviction_epoch`]);
//! - for evictions the kernel does not count there (DAMON's `pageout`, `POSIX_FADV_DONTNEED`,
//!   another process's `O_DIRECT` write), each engine asks again about [`SAMPLE_PAGES`] of
//!   a table's pages at most once every [`SAMPLE_EVERY`], before a write that needs the table
//!   ([`SeenPages::sample`]), and clears the table if one is gone.
//!
//! Hazard: a write into a page evicted since it was seen still reads the disk on the worker's
//! thread, as every write did before the table, until one of those notices: up to a second
//! after an eviction the kernel counts, and after one it does not, until a sample happens on
//! a page gone (likely within a second or two when a good share of the table went; the first
//! write after an idle second takes a sample). And when
//! a buffered write asks about a page while a direct write of it is in flight (forgotten when
//! the direct write is issued, dropped from the cache when it completes).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most slots of one table.
pub const SLOTS_MAX: usize = 1 << 16;

/// Pages of a table asked about again per sample (see the module documentation).
pub const SAMPLE_PAGES: usize = 16;

/// Least time between two samples of an engine's tables.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Most slots one sample looks at for pages to ask about: a sparse table is sampled whole (a
/// 16 MiB export has 4096 pages), a full one in a spread of its slots.
const SAMPLE_SLOTS_MAX: usize = 4096;

/// A step through the slots that visits every one (odd, so coprime with any power of two),
/// and spreads a sample's pages over the table: about 0.618 of 2^32, as Fibonacci hashing.
const SAMPLE_STRIDE: usize = 0x9E37_79B9;

/// Times the supervisor saw the kernel evict page-cache pages (see [`pages_evicted`]). The page
/// cache is the machine's, so this is the process's.
static EVICTIONS: AtomicU64 = AtomicU64::new(0);

/// Tells every engine's tables that the kernel evicted page-cache pages since the last call:
/// each clears its tables before its next write asks about a page.
pub fn pages_evicted() {
    // Relaxed: a hint; an engine that reads the old value clears at its next write.
    EVICTIONS.fetch_add(1, Ordering::Relaxed);
}

/// Changes with every [`pages_evicted`]: an engine that saw another value last clears its tables.
pub fn eviction_epoch() -> u64 {
    EVICTIONS.load(Ordering::Relaxed)
}

/// Pages seen in the page cache, by page number (file offset ÷ page size).
#[derive(Debug)]
pub struct SeenPages {
    /// Per slot: 0 for nothing, else the page's number above the slot bits, plus one.
    tags: Box<[u32]>,
    /// log2 of the slot count.
    bits: u32,
    /// log2 of the page size.
    page_shift: u32,
}

impl SeenPages {
    /// A table for a file of `len` bytes in pages of `page_size` bytes (a power of two).
    pub fn new(len: u64, page_size: u64) -> SeenPages {
        assert!(page_size.is_power_of_two(), "page size {page_size}");
        let page_shift = page_size.trailing_zeros();
        let pages = usize::try_from(len.div_ceil(page_size)).unwrap_or(usize::MAX);
        let slots = pages.clamp(1, SLOTS_MAX).next_power_of_two();
        SeenPages {
            tags: vec![0; slots].into_boxed_slice(),
            bits: slots.trailing_zeros(),
            page_shift,
        }
    }

    /// The page size.
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }

    fn slot_and_tag(&self, page: u64) -> (usize, u32) {
        let slot = usize::try_from(page & ((1 << self.bits) - 1)).expect("below SLOTS_MAX");
        // A page too far out for a tag (2^32 pages per slot) is never recorded.
        let tag = u32::try_from((page >> self.bits) + 1).unwrap_or(0);
        (slot, tag)
    }

    /// Whether `page` was seen cached (and not pushed out of its slot since).
    pub fn contains(&self, page: u64) -> bool {
        let (slot, tag) = self.slot_and_tag(page);
        tag != 0 && self.tags[slot] == tag
    }

    /// Records that `page` was seen cached.
    pub fn insert(&mut self, page: u64) {
        let (slot, tag) = self.slot_and_tag(page);
        self.tags[slot] = tag;
    }

    /// Forgets every page the `len` bytes at file offset `offset` touch (they left the page
    /// cache, or may have).
    pub fn forget(&mut self, offset: u64, len: u64) {
        for page in self.needed(offset, len, true) {
            if self.contains(page) {
                let (slot, _) = self.slot_and_tag(page);
                self.tags[slot] = 0;
            }
        }
    }

    /// Forgets every page.
    pub fn clear(&mut self) {
        self.tags.fill(0);
    }

    /// Up to `out.len()` pages of the table, from the slot `seed` picks on through a spread
    /// of slots (at most [`SAMPLE_SLOTS_MAX`] looked at); returns how many it wrote.
    pub fn sample(&self, seed: u64, out: &mut [u64]) -> usize {
        let slots = self.tags.len();
        let mask = slots - 1;
        let mut slot = usize::try_from(seed & mask as u64).expect("below SLOTS_MAX");
        let mut found = 0;
        for _ in 0..slots.min(SAMPLE_SLOTS_MAX) {
            if found == out.len() {
                break;
            }
            let tag = self.tags[slot];
            if tag != 0 {
                out[found] = (u64::from(tag - 1) << self.bits) | slot as u64;
                found += 1;
            }
            slot = slot.wrapping_add(SAMPLE_STRIDE) & mask;
        }
        found
    }

    /// The pages a buffered write of `len` bytes at file offset `offset` needs cached not to
    /// read the disk: those it covers only in part (its first and last), or, for a copy
    /// through a mapping (`whole`), every page it touches. Increasing, without repeats.
    pub fn needed(&self, offset: u64, len: u64, whole: bool) -> Needed {
        if len == 0 {
            return Needed::empty();
        }
        let (shift, mask) = (self.page_shift, self.page_size() - 1);
        let end = offset + len;
        let (first, last) = (offset >> shift, (end - 1) >> shift);
        if whole {
            return Needed {
                next: first,
                last,
                skip: None,
            };
        }
        let head = offset & mask != 0;
        let tail = end & mask != 0;
        match (head, tail) {
            (false, false) => Needed::empty(),
            (true, false) => Needed::one(first),
            (false, true) => Needed::one(last),
            (true, true) if first == last || first + 1 == last => Needed {
                next: first,
                last,
                skip: None,
            },
            (true, true) => Needed {
                next: first,
                last,
                skip: Some((first + 1, last - 1)),
            },
        }
    }
}

/// Page numbers from [`SeenPages::needed`].
#[derive(Clone, Copy, Debug)]
pub struct Needed {
    next: u64,
    last: u64,
    /// Pages in here are covered whole and left out.
    skip: Option<(u64, u64)>,
}

impl Needed {
    fn empty() -> Needed {
        Needed {
            next: 1,
            last: 0,
            skip: None,
        }
    }

    fn one(page: u64) -> Needed {
        Needed {
            next: page,
            last: page,
            skip: None,
        }
    }
}

impl Iterator for Needed {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if let Some((from, to)) = self.skip {
            if self.next == from {
                self.next = to + 1;
            }
        }
        if self.next > self.last {
            return None;
        }
        let page = self.next;
        self.next += 1;
        Some(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn needed(offset: u64, len: u64, whole: bool) -> Vec<u64> {
        SeenPages::new(1 << 30, PAGE)
            .needed(offset, len, whole)
            .collect()
    }

    #[test]
    fn test_partial_pages_are_needed_whole_ones_are_not() {
        // 1 KiB at the start, middle and end of page 2.
        assert_eq!(needed(2 * PAGE, 1024, false), [2]);
        assert_eq!(needed(2 * PAGE + 1024, 1024, false), [2]);
        assert_eq!(needed(2 * PAGE + 3072, 1024, false), [2]);
        // Whole pages: nothing to read first.
        assert!(needed(2 * PAGE, PAGE, false).is_empty());
        assert!(needed(2 * PAGE, 3 * PAGE, false).is_empty());
        // A write across a page boundary, covering neither page whole.
        assert_eq!(needed(3 * PAGE - 512, 1024, false), [2, 3]);
        // 8.5 KiB from mid-page: the head and tail pages, not the one covered between them.
        assert_eq!(needed(PAGE + 512, 8704, false), [1, 3]);
        // Aligned start, ragged end; ragged start, aligned end.
        assert_eq!(needed(4 * PAGE, PAGE + 1024, false), [5]);
        assert_eq!(needed(4 * PAGE + 1024, 2 * PAGE - 1024, false), [4]);
        assert!(needed(PAGE, 0, false).is_empty());
    }

    #[test]
    fn test_a_mapped_copy_needs_every_page_it_touches() {
        assert_eq!(needed(2 * PAGE, PAGE, true), [2]);
        assert_eq!(needed(PAGE + 512, 8704, true), [1, 2, 3]);
        assert_eq!(needed(0, 3 * PAGE, true), [0, 1, 2]);
        assert!(needed(PAGE, 0, true).is_empty());
    }

    #[test]
    fn test_pages_are_remembered_until_another_takes_their_slot() {
        // A 64 KiB file: 16 slots, one per page.
        let mut pages = SeenPages::new(64 << 10, PAGE);
        assert!(!pages.contains(3));
        pages.insert(3);
        assert!(pages.contains(3));
        assert!(!pages.contains(3 + 16), "another page of the same slot");
        pages.insert(3 + 16);
        assert!(pages.contains(3 + 16));
        assert!(!pages.contains(3), "pushed out of its slot");
        // Page 0 is a page like any other (an empty slot never matches).
        assert!(!pages.contains(0));
        pages.insert(0);
        assert!(pages.contains(0));
    }

    #[test]
    fn test_forget_drops_the_pages_touched_and_clear_drops_all() {
        let mut pages = SeenPages::new(64 << 10, PAGE);
        (0..16).for_each(|page| pages.insert(page));
        // 512 B into page 2 through 512 B into page 4: pages 2, 3 and 4.
        pages.forget(2 * PAGE + 512, 2 * PAGE);
        let seen: Vec<u64> = (0..16).filter(|&page| pages.contains(page)).collect();
        assert_eq!(seen, [0, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        // A page of the same slot that another took is left alone.
        pages.insert(7 + 16);
        pages.forget(7 * PAGE, PAGE);
        assert!(pages.contains(7 + 16));
        pages.forget(0, 0);
        assert!(pages.contains(0));
        pages.clear();
        assert!((0..32).all(|page| !pages.contains(page)));
    }

    #[test]
    fn test_a_sample_finds_the_pages_of_a_sparse_table_and_spreads_over_a_full_one() {
        let mut out = [0u64; SAMPLE_PAGES];
        // A 16 MiB file (4096 slots): three pages, one beyond the slot bits, all found.
        let mut pages = SeenPages::new(16 << 20, PAGE);
        assert_eq!(pages.sample(7, &mut out), 0);
        for page in [5, 4000, 4096 + 9] {
            pages.insert(page);
        }
        for seed in [0, 1, 4095, u64::MAX] {
            let found = pages.sample(seed, &mut out);
            let mut sampled = out[..found].to_vec();
            sampled.sort_unstable();
            assert_eq!(sampled, [5, 4000, 4096 + 9], "seed {seed}");
        }
        // A full table of 65,536 slots: SAMPLE_PAGES pages, each one it holds, far apart.
        let mut pages = SeenPages::new(256 << 20, PAGE);
        (0..SLOTS_MAX as u64).for_each(|page| pages.insert(page));
        assert_eq!(pages.sample(12_345, &mut out), SAMPLE_PAGES);
        assert!(out.iter().all(|&page| pages.contains(page)));
        let mut sorted = out.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), SAMPLE_PAGES, "no page twice");
        assert!(
            sorted.last().unwrap() - sorted[0] > SLOTS_MAX as u64 / 2,
            "{sorted:?}"
        );
    }

    #[test]
    fn test_an_eviction_changes_the_epoch() {
        let before = eviction_epoch();
        pages_evicted();
        assert_ne!(eviction_epoch(), before);
    }

    #[test]
    fn test_the_table_grows_with_the_file_up_to_its_cap() {
        assert_eq!(SeenPages::new(0, PAGE).tags.len(), 1);
        assert_eq!(SeenPages::new(5 * PAGE, PAGE).tags.len(), 8);
        assert_eq!(SeenPages::new(256 << 20, PAGE).tags.len(), SLOTS_MAX);
        assert_eq!(SeenPages::new(1 << 40, PAGE).tags.len(), SLOTS_MAX);
        // Every page of a 256 MiB file has a slot of its own.
        let mut pages = SeenPages::new(256 << 20, PAGE);
        (0..SLOTS_MAX as u64).for_each(|page| pages.insert(page));
        assert!((0..SLOTS_MAX as u64).all(|page| pages.contains(page)));
        // Pages far out still get tags; the farthest ones are never recorded.
        let far = 1u64 << 40;
        pages.insert(far);
        assert!(pages.contains(far));
        assert!(!pages.contains(far + SLOTS_MAX as u64));
        pages.insert(1 << 50);
        assert!(!pages.contains(1 << 50));
    }
}

//! Self-describing sectors and the ledger that says what each sector must hold.
//!
//! [`stamp`] fills a sector with its LBA, a generation and bytes derived from both, so a
//! misplaced, stale or torn sector is recognized (`aoe-bench check` writes the same pattern).
//! [`Ledger`] keeps, per sector of the tested range, the generation last acknowledged and a
//! busy bit: a request locks its sectors while in flight, so no two requests that overlap are
//! ever outstanding together and every read has exactly one correct answer.
//!
//! Hazard: the ledger holds 4 bytes per sector of the range (allocated once in
//! [`Ledger::new`]); callers bound the range.

use crate::wire::SECTOR_SIZE;

/// Fills `sector` (512 bytes) with the pattern of (`lba`, `generation`): the LBA and the
/// generation little-endian in the first 12 bytes, then bytes derived from both.
pub fn stamp(sector: &mut [u8], lba: u64, generation: u32) {
    sector[..8].copy_from_slice(&lba.to_le_bytes());
    sector[8..12].copy_from_slice(&generation.to_le_bytes());
    let seed = (lba.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(generation)).to_le_bytes();
    for (index, byte) in sector[12..].iter_mut().enumerate() {
        *byte = seed[index % 8] ^ index.to_le_bytes()[0];
    }
}

/// The (LBA, generation) a stamped sector claims to be, for error messages.
pub fn claimed(sector: &[u8]) -> (u64, u32) {
    let mut lba = [0u8; 8];
    lba.copy_from_slice(&sector[..8]);
    let mut generation = [0u8; 4];
    generation.copy_from_slice(&sector[8..12]);
    (u64::from_le_bytes(lba), u32::from_le_bytes(generation))
}

/// Marks a sector locked by a request in flight.
const BUSY: u32 = 1 << 31;
/// Generation of a sector whose content is unknown (never written, or a write failed).
pub const UNKNOWN: u32 = 0;

/// Per-sector expected generations and in-flight locks.
#[derive(Debug)]
pub struct Ledger {
    sectors: Vec<u32>,
    /// Scratch sector for comparisons.
    expected: Vec<u8>,
}

impl Ledger {
    /// A ledger for `0..range_sectors`, every sector [`UNKNOWN`] and unlocked.
    pub fn new(range_sectors: usize) -> Ledger {
        Ledger {
            sectors: vec![UNKNOWN; range_sectors],
            expected: vec![0; SECTOR_SIZE],
        }
    }

    fn span(lba: u64, count: u8) -> std::ops::Range<usize> {
        let start = usize::try_from(lba).expect("range bounded at construction");
        start..start + usize::from(count)
    }

    /// Locks `count` sectors at `lba` if none is locked; false (and nothing locked) otherwise.
    pub fn try_lock(&mut self, lba: u64, count: u8) -> bool {
        let span = Self::span(lba, count);
        if self.sectors[span.clone()].iter().any(|g| g & BUSY != 0) {
            return false;
        }
        for sector in &mut self.sectors[span] {
            *sector |= BUSY;
        }
        true
    }

    /// Unlocks the sectors, recording `generation` as their content (a write that was
    /// acknowledged), [`UNKNOWN`] (a write that failed), or `None` to keep what they had.
    pub fn unlock(&mut self, lba: u64, count: u8, generation: Option<u32>) {
        for sector in &mut self.sectors[Self::span(lba, count)] {
            assert!(*sector & BUSY != 0, "unlocking a sector that is not locked");
            *sector = match generation {
                Some(generation) => {
                    assert!(generation & BUSY == 0, "generation uses the busy bit");
                    generation
                }
                None => *sector & !BUSY,
            };
        }
    }

    /// Checks `data` (`count` sectors read at `lba`, which the caller has locked) against the
    /// ledger. Returns the number of sectors that differ and the first of them with what it
    /// claims to be. Sectors of unknown content are skipped.
    pub fn check(&mut self, lba: u64, data: &[u8]) -> (u32, Option<Mismatch>) {
        let mut failures = 0;
        let mut first = None;
        let start = usize::try_from(lba).expect("range bounded at construction");
        for (index, sector) in data.chunks_exact(SECTOR_SIZE).enumerate() {
            let generation = self.sectors[start + index] & !BUSY;
            if generation == UNKNOWN {
                continue;
            }
            let sector_lba = lba + index as u64;
            stamp(&mut self.expected, sector_lba, generation);
            if sector != self.expected.as_slice() {
                failures += 1;
                first.get_or_insert_with(|| Mismatch {
                    lba: sector_lba,
                    expected_generation: generation,
                    found: claimed(sector),
                });
            }
        }
        (failures, first)
    }
}

/// A sector that did not hold what was last written to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The sector.
    pub lba: u64,
    /// The generation last acknowledged for it.
    pub expected_generation: u32,
    /// (LBA, generation) the sector read back claims to be.
    pub found: (u64, u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stamp_is_self_describing() {
        let mut a = vec![0u8; SECTOR_SIZE];
        let mut b = vec![0u8; SECTOR_SIZE];
        stamp(&mut a, 5, 1);
        stamp(&mut b, 5, 2);
        assert_ne!(a, b);
        assert_eq!(claimed(&a), (5, 1));
        stamp(&mut b, 6, 1);
        assert_ne!(a, b);
    }

    #[test]
    fn test_ledger_locks_and_checks() {
        let mut ledger = Ledger::new(8);
        assert!(ledger.try_lock(0, 4));
        assert!(!ledger.try_lock(3, 2), "overlap refused");
        assert!(ledger.try_lock(4, 4));
        ledger.unlock(0, 4, Some(7));
        ledger.unlock(4, 4, None);
        assert!(ledger.try_lock(2, 4));
        let mut data = vec![0u8; 4 * SECTOR_SIZE];
        for (i, sector) in data.chunks_exact_mut(SECTOR_SIZE).enumerate() {
            stamp(sector, 2 + i as u64, 7);
        }
        // Sectors 2, 3 were written with generation 7; 4, 5 are unknown and skipped.
        assert_eq!(ledger.check(2, &data), (0, None));
        stamp(&mut data[..SECTOR_SIZE], 2, 6);
        let (failures, first) = ledger.check(2, &data);
        assert_eq!(failures, 1);
        assert_eq!(
            first,
            Some(Mismatch {
                lba: 2,
                expected_generation: 7,
                found: (2, 6)
            })
        );
        ledger.unlock(2, 4, None);
        assert!(ledger.try_lock(0, 8));
    }
}

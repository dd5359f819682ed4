//! [`Workload`]: which request comes next (read or write, where, how many sectors).
//!
//! Contract: every request lies inside `0..range_sectors` and has `1..=size` sectors, where
//! `size` is what the caller asks for (paths may differ). Sequential requests walk the range
//! and wrap to sector 0 at its end (the last request before the wrap is cut to fit). Random
//! requests start at a uniformly chosen multiple of `size` (aligned, as fio's default
//! `blockalign = bs`); when `size` does not divide the range, the tail after the last whole
//! block is only reached sequentially. Mixed workloads choose reads with probability
//! `read_pct`%. The generator is deterministic for a given seed, does no I/O and never
//! allocates.

/// Reads, writes or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Reads only.
    Read,
    /// Writes only.
    Write,
    /// Reads with probability `read_pct`%, writes otherwise.
    Mixed {
        /// Percentage of reads, 0..=100.
        read_pct: u8,
    },
}

/// Where requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// One after the other, wrapping at the end of the range.
    Sequential,
    /// Uniformly random, aligned to the request size.
    Random,
}

/// One request to issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Io {
    /// A write (else a read).
    pub write: bool,
    /// First sector.
    pub lba: u64,
    /// Sectors, at least 1.
    pub count: u8,
}

impl Io {
    /// Bytes the request moves.
    pub fn bytes(&self) -> u64 {
        u64::from(self.count) * 512
    }
}

/// A request generator over a range of sectors.
#[derive(Clone, Debug)]
pub struct Workload {
    op: Op,
    pattern: Pattern,
    range_sectors: u64,
    cursor: u64,
    rng: SplitMix64,
}

impl Workload {
    /// A generator over `0..range_sectors` (at least 1 sector), seeded with `seed`.
    pub fn new(op: Op, pattern: Pattern, range_sectors: u64, seed: u64) -> Workload {
        assert!(range_sectors > 0, "empty range");
        Workload {
            op,
            pattern,
            range_sectors,
            cursor: 0,
            rng: SplitMix64(seed),
        }
    }

    /// The range the requests stay in.
    pub fn range_sectors(&self) -> u64 {
        self.range_sectors
    }

    /// The next request, of at most `size` (≥ 1) sectors.
    pub fn next_io(&mut self, size: u8) -> Io {
        let size = u64::from(size.max(1));
        let write = match self.op {
            Op::Read => false,
            Op::Write => true,
            Op::Mixed { read_pct } => self.rng.below(100) >= u64::from(read_pct),
        };
        let (lba, count) = match self.pattern {
            Pattern::Sequential => {
                let lba = self.cursor;
                let count = size.min(self.range_sectors - lba);
                self.cursor = if lba + count == self.range_sectors {
                    0
                } else {
                    lba + count
                };
                (lba, count)
            }
            Pattern::Random => {
                let blocks = self.range_sectors / size;
                if blocks == 0 {
                    (0, self.range_sectors)
                } else {
                    (self.rng.below(blocks) * size, size)
                }
            }
        };
        Io {
            write,
            lba,
            count: u8::try_from(count).expect("at most size, a u8"),
        }
    }
}

/// Steele, Lea and Flood's SplitMix64: fast, good enough for picking sectors.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-high; the bias is below 2^-40 for our ranges).
    fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        u64::try_from(wide >> 64).expect("high half of a u64 product fits u64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sequential_wraps() {
        let mut workload = Workload::new(Op::Read, Pattern::Sequential, 10, 1);
        let got: Vec<(u64, u8)> = (0..6)
            .map(|_| workload.next_io(4))
            .map(|io| (io.lba, io.count))
            .collect();
        // 0..4, 4..8, 8..10 (cut), then wrap.
        assert_eq!(got, vec![(0, 4), (4, 4), (8, 2), (0, 4), (4, 4), (8, 2)]);
    }

    #[test]
    fn test_sequential_sizes_may_differ_per_request() {
        let mut workload = Workload::new(Op::Write, Pattern::Sequential, 100, 1);
        let a = workload.next_io(2);
        let b = workload.next_io(7);
        let c = workload.next_io(1);
        assert_eq!((a.lba, a.count, b.lba, b.count, c.lba), (0, 2, 2, 7, 9));
        assert!(a.write && b.write && c.write);
    }

    #[test]
    fn test_random_stays_in_range_and_aligned() {
        let range = 1000;
        let mut workload = Workload::new(Op::Read, Pattern::Random, range, 42);
        let mut seen_high = false;
        for _ in 0..10_000 {
            let io = workload.next_io(7);
            assert_eq!(io.count, 7);
            assert_eq!(io.lba % 7, 0);
            assert!(io.lba + u64::from(io.count) <= range, "{io:?}");
            seen_high |= io.lba >= 900;
        }
        assert!(
            seen_high,
            "random requests never reached the top of the range"
        );
    }

    #[test]
    fn test_random_range_smaller_than_size() {
        let mut workload = Workload::new(Op::Read, Pattern::Random, 3, 42);
        let io = workload.next_io(8);
        assert_eq!((io.lba, io.count), (0, 3));
    }

    #[test]
    fn test_mixed_ratio() {
        let mut workload = Workload::new(Op::Mixed { read_pct: 70 }, Pattern::Random, 1 << 20, 9);
        let reads = (0..10_000).filter(|_| !workload.next_io(2).write).count();
        assert!((6_700..7_300).contains(&reads), "{reads} reads of 10000");
        let mut all_reads = Workload::new(Op::Mixed { read_pct: 100 }, Pattern::Random, 64, 9);
        assert!((0..1000).all(|_| !all_reads.next_io(2).write));
        let mut all_writes = Workload::new(Op::Mixed { read_pct: 0 }, Pattern::Random, 64, 9);
        assert!((0..1000).all(|_| all_writes.next_io(2).write));
    }

    #[test]
    fn test_size_zero_means_one_sector() {
        let mut workload = Workload::new(Op::Read, Pattern::Sequential, 5, 0);
        assert_eq!(workload.next_io(0).count, 1);
    }
}

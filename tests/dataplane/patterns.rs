//! Sector data that names its own address and seed, so misplaced data never matches.

use aoe_xdp::wire::SECTOR_SIZE;

/// A sector whose bytes depend on its address and `seed`: misplaced data never matches.
pub fn sector_pattern(lba: u64, seed: u64) -> Vec<u8> {
    let mut state = lba.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    let mut sector = Vec::with_capacity(SECTOR_SIZE);
    sector.extend_from_slice(&lba.to_be_bytes());
    sector.extend_from_slice(&seed.to_be_bytes());
    while sector.len() < SECTOR_SIZE {
        state = xorshift(state);
        sector.extend_from_slice(&state.to_le_bytes());
    }
    sector
}

/// `count` consecutive sectors of [`sector_pattern`].
pub fn pattern(lba: u64, count: u64, seed: u64) -> Vec<u8> {
    (lba..lba + count)
        .flat_map(|sector| sector_pattern(sector, seed))
        .collect()
}

pub fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The byte offset of sector `lba`.
pub fn byte_offset(lba: u64) -> usize {
    usize::try_from(lba).expect("small device") * SECTOR_SIZE
}

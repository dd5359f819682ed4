//! CPU hints: prefetching a cache line before the data path reads it.

/// Asks the CPU to start loading the cache line at `addr` (a hint: never faults, whatever
/// `addr` is; a no-op where the architecture has no such instruction here).
#[inline(always)]
pub fn prefetch(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint that never faults, for any address; SSE is part of the
    // x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// [`prefetch`] for every cache line of `[start, start + len)`.
#[inline]
pub fn prefetch_range(start: *const u8, len: usize) {
    const LINE: usize = 64;
    let lines = (start as usize % LINE).saturating_add(len).div_ceil(LINE);
    let first = start.wrapping_sub(start as usize % LINE);
    for line in 0..lines {
        prefetch(first.wrapping_add(line * LINE));
    }
}

#[cfg(test)]
mod tests {
    use super::prefetch_range;

    #[test]
    fn test_prefetch_range_takes_any_start_and_length() {
        let buf = vec![7u8; 4096];
        for (offset, len) in [(0, 0), (1, 1), (63, 2), (5, 1000), (64, 4032)] {
            prefetch_range(buf[offset..].as_ptr(), len);
        }
        // A hint never dereferences: the null page and the top of the address space are fine.
        prefetch_range(std::ptr::null(), 4096);
        prefetch_range((usize::MAX - 10) as *const u8, 128);
        assert!(buf.iter().all(|&b| b == 7));
    }
}

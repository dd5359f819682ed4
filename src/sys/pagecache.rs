//! What the page cache holds of a file: which pages, and whether in folios of one page or
//! larger ones. For tests and diagnostics of the storage path, not the data path: it maps the
//! range, reads `/proc/self/pagemap` and `/proc/kpageflags` (page frame numbers need
//! `CAP_SYS_ADMIN`) and unmaps it again. And the kernel's count of page-cache evictions
//! ([`evictions`], read by the supervisor once a second).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// `/proc/kpageflags`: the page is the head of a compound page (a folio larger than a page).
const KPF_COMPOUND_HEAD: u64 = 1 << 15;
/// `/proc/kpageflags`: the page is a tail of a compound page.
const KPF_COMPOUND_TAIL: u64 = 1 << 16;
/// `/proc/self/pagemap`: the page is present.
const PM_PRESENT: u64 = 1 << 63;
/// `/proc/self/pagemap`: the page frame number.
const PM_PFN: u64 = (1 << 55) - 1;

/// A count that grows whenever the kernel's reclaim evicts page-cache pages or its caches are
/// dropped, from `/proc/vmstat`: file pages reclaimed (`pgsteal_file`: by kswapd, by direct
/// reclaim, and by a memory cgroup's limit or forced reclaim, which the other `pgsteal_*`
/// counters leave out) plus writes to `/proc/sys/vm/drop_caches` (`drop_pagecache`, one per
/// write, not per page). `None` where `/proc/vmstat` cannot be read or lacks either counter.
/// Not counted (seen on 6.18): pages DAMON's `pageout` evicts (`pgsteal_file` stayed flat
/// while it took tens of thousands), and pages dropped by `POSIX_FADV_DONTNEED`, truncation
/// or an `O_DIRECT` write.
pub fn evictions() -> Option<u64> {
    evictions_in(&std::fs::read_to_string("/proc/vmstat").ok()?)
}

/// [`evictions`] from the text of `/proc/vmstat`.
pub fn evictions_in(vmstat: &str) -> Option<u64> {
    let counter = |name: &str| {
        vmstat.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            if key == name {
                value.trim().parse::<u64>().ok()
            } else {
                None
            }
        })
    };
    Some(counter("pgsteal_file")?.wrapping_add(counter("drop_pagecache")?))
}

/// The page cache's hold on a byte range of a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedPages {
    /// Pages of the range in the page cache.
    pub cached: usize,
    /// Of those, pages in a folio larger than one page.
    pub in_large_folios: usize,
}

/// What the page cache holds of the `len` bytes at `offset` of `file` (`offset` page-aligned).
/// Pages not in the cache are left alone (never read in).
pub fn cached_pages(file: &File, offset: u64, len: usize) -> io::Result<CachedPages> {
    let page = crate::sys::mem::page_size();
    if offset % page as u64 != 0 || len == 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let pages = len.div_ceil(page);
    let offset = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: a fresh read-only shared mapping of `len` bytes of an open file at a
    // page-aligned offset; nothing else refers to it, and it is unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let result = inspect(addr.cast::<u8>(), pages, page);
    // SAFETY: `addr` is the mapping made above, of `len` bytes, no longer used.
    unsafe { libc::munmap(addr, len) };
    result
}

/// Counts the cached pages of the mapping of `pages` pages at `addr`, and those of them in
/// large folios.
fn inspect(addr: *mut u8, pages: usize, page: usize) -> io::Result<CachedPages> {
    let mut resident = vec![0u8; pages];
    // SAFETY: `addr` is a mapping of `pages` pages and `resident` has one byte per page.
    if unsafe { libc::mincore(addr.cast(), pages * page, resident.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for (index, _) in resident.iter().enumerate().filter(|(_, r)| *r & 1 != 0) {
        // SAFETY: inside the mapping, a page the page cache holds: the read maps it (a minor
        // fault) without reading the disk. `read_volatile` keeps the access.
        unsafe { std::ptr::read_volatile(addr.add(index * page)) };
    }
    let pagemap = File::open("/proc/self/pagemap")?;
    let kpageflags = File::open("/proc/kpageflags")?;
    let mut entries = vec![0u8; pages * 8];
    pagemap.read_exact_at(&mut entries, (addr as usize / page * 8) as u64)?;
    let mut found = CachedPages::default();
    for (index, entry) in entries.chunks_exact(8).enumerate() {
        if resident[index] & 1 == 0 {
            continue;
        }
        let entry = u64::from_ne_bytes(entry.try_into().expect("8 bytes"));
        if entry & PM_PRESENT == 0 {
            // Evicted between mincore and the read, or not mapped: not counted.
            continue;
        }
        let pfn = entry & PM_PFN;
        if pfn == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "no page frame numbers in /proc/self/pagemap (needs CAP_SYS_ADMIN)",
            ));
        }
        let mut flags = [0u8; 8];
        kpageflags.read_exact_at(&mut flags, pfn * 8)?;
        let flags = u64::from_ne_bytes(flags);
        found.cached += 1;
        if flags & (KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL) != 0 {
            found.in_large_folios += 1;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_evictions_add_reclaimed_file_pages_and_cache_drops() {
        let vmstat = "nr_file_pages 180874\npgsteal_kswapd 7\npgsteal_anon 3\n\
                      pgsteal_file 40\ndrop_pagecache 2\ndrop_slab 5\n";
        assert_eq!(evictions_in(vmstat), Some(42));
        // A name that only starts like a counter's is not it.
        assert_eq!(
            evictions_in("pgsteal_file_x 9\npgsteal_file 1\ndrop_pagecache 0\n"),
            Some(1)
        );
        assert_eq!(evictions_in("pgsteal_file 40\n"), None);
        assert_eq!(evictions_in("pgsteal_file x\ndrop_pagecache 1\n"), None);
        assert_eq!(evictions_in(""), None);
    }

    #[test]
    fn test_this_kernel_counts_evictions() {
        assert!(
            evictions().is_some(),
            "pgsteal_file and drop_pagecache in /proc/vmstat"
        );
    }
}

//! Shared mappings of backing files: write-back writes (and the reads of a resident or
//! `mapped-reads` export) are copies between a frame and the page cache through the mapping,
//! with no system call per request.
//!
//! Contract:
//! - [`FileMap::map`] maps a byte window of a file `MAP_SHARED` (read-only or read-write) and,
//!   with `lock`, `mlock`s it: every page is read in at start-up and stays in memory, so a
//!   copy never waits for the disk.
//! - [`FileMap::read`] and [`FileMap::write`] copy bytes at a *file* offset; a range outside
//!   the window is a caller bug and panics (nothing outside the window is ever touched).
//!   Copies through one mapping are serialised by a per-mapping lock (uncontended in the
//!   dataplane: a device's I/O is done by its owner worker only).
//! - A page the kernel cannot provide — the file was truncated under us, a hole could not be
//!   allocated (`ENOSPC`), a hardware memory error — raises `SIGBUS` on the access. A
//!   process-wide handler that knows every live mapping puts an anonymous page in its place so
//!   the copy can finish, and counts a fault on that mapping. The copy then maps the file's
//!   pages back over its range and fails with `EIO`: bytes read from the stand-in page never
//!   reach the caller, bytes written to it are reported lost. The next copy of that range
//!   faults again while the cause lasts, and succeeds once it is gone (file grown back).
//!   `SIGBUS` anywhere else goes to the disposition that was installed before ours.
//!
//! Hazards:
//! - Writes through the mapping are buffered writes: they reach the disk with write-back or
//!   `fdatasync` of the file (which covers pages dirtied through mappings), like `pwrite`.
//! - A locked or read-only mapping asks for 2 MiB pages (`MADV_HUGEPAGE`) before it is
//!   populated: where the page cache holds the file in 2 MiB folios (or reads missing pages in
//!   as such, which the advice makes it do), each 2 MiB is one page-table entry, sparing the
//!   TLB and the page tables. [`FileMap::huge_bytes`] tells how much of it is mapped that way.
//!   A writable one does not (a write fault splits a 2 MiB entry into 4 KiB ones).
//! - An unlocked mapping's copy of a page that is not in memory waits for the disk (the fault
//!   reads it in), on the copying thread.
//! - `mlock` of a large window needs that much free memory (and `CAP_IPC_LOCK` or
//!   `RLIMIT_MEMLOCK`); the caller checks before mapping.
//! - At most [`MAPS_MAX`] mappings exist at once (the handler's table is fixed so that the
//!   handler never allocates or locks).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

use rustix::io::Errno;

use super::mem::parse_maps_line;

/// Most file mappings alive at once.
pub const MAPS_MAX: usize = 64;

/// Size of a page-middle-directory (huge) page on x86-64.
pub const HUGE_PAGE: u64 = 2 << 20;

/// One live mapping, as the `SIGBUS` handler sees it.
struct Entry {
    /// Claimed by a [`FileMap`] (set before `start`/`end` are published, cleared after).
    used: AtomicBool,
    /// First byte of the mapping; 0 while the entry is not published.
    start: AtomicUsize,
    /// One past the last byte of the mapping.
    end: AtomicUsize,
    /// Pages the handler replaced.
    faults: AtomicU64,
}

#[allow(
    clippy::declare_interior_mutable_const,
    reason = "a template for the static table's initialiser, never used as a value"
)]
const EMPTY: Entry = Entry {
    used: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    faults: AtomicU64::new(0),
};

/// The handler's table of live mappings.
static MAPS: [Entry; MAPS_MAX] = [EMPTY; MAPS_MAX];

/// Installs the handler once per process.
static INSTALL: Once = Once::new();

/// The disposition before ours (written once, before the handler can run).
static mut PREVIOUS: Option<libc::sigaction> = None;

/// Page size, read once when the handler is installed.
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// Errors mapping a file.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The `SIGBUS` table is full.
    #[error("more than {MAPS_MAX} resident mappings")]
    TooMany,
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Syscall {
        /// Which call.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A shared mapping of `[start, start + len)` of a file.
pub struct FileMap {
    /// Page-aligned base of the mapping (file offset `map_offset`).
    base: NonNull<u8>,
    /// Mapped bytes (whole pages).
    map_len: usize,
    /// File offset of `base`.
    map_offset: u64,
    /// The window callers may copy: file offsets `[start, end)`.
    start: u64,
    end: u64,
    writable: bool,
    /// `PROT_READ`, plus `PROT_WRITE` when `writable`.
    prot: libc::c_int,
    locked: bool,
    /// Index into [`MAPS`].
    entry: usize,
    /// Serialises copies, so a counted fault belongs to the copy that is running.
    busy: AtomicBool,
    /// The file, to map pages back after a fault.
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory owned by this value until `Drop`; every access
// goes through `read`/`write`, which hold `busy`, so moving or sharing the handle between
// threads cannot create unsynchronised access from this process.
unsafe impl Send for FileMap {}
// SAFETY: as above: `&FileMap` only offers `read`/`write`, serialised by `busy`.
unsafe impl Sync for FileMap {}

impl FileMap {
    /// Maps file offsets `[start, start + len)` of `file` (`len > 0`), writable if `writable`
    /// (the file must then be open for writing), and locks it in memory if `lock`.
    pub fn map(
        file: &File,
        start: u64,
        len: u64,
        writable: bool,
        lock: bool,
    ) -> Result<FileMap, MapError> {
        assert!(len > 0, "an empty window has nothing to map");
        install_handler();
        let page = PAGE.load(Ordering::Relaxed) as u64;
        let end = start.checked_add(len).expect("window end overflows");
        let map_offset = start - start % page;
        let map_len = usize::try_from(end.div_ceil(page) * page - map_offset)
            .expect("window larger than the address space");
        let fd = file.try_clone().map_err(|source| MapError::Syscall {
            call: "dup",
            source,
        })?;
        let entry = claim().ok_or(MapError::TooMany)?;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED); the descriptor is open
        // and the offset page-aligned; the result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                map_offset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            release(entry);
            return Err(syscall("mmap"));
        }
        let base = NonNull::new(addr.cast::<u8>()).expect("mmap returned null");
        let map = FileMap {
            base,
            map_len,
            map_offset,
            start,
            end,
            writable,
            prot,
            locked: lock,
            entry,
            busy: AtomicBool::new(false),
            fd: fd.into(),
        };
        // Release: pairs with the handler's Acquire load of `start`; `end` is visible first.
        MAPS[entry]
            .end
            .store(addr as usize + map_len, Ordering::Release);
        MAPS[entry].start.store(addr as usize, Ordering::Release);
        if map.huge() {
            // SAFETY: advice on the mapping just made; it changes no contents. A kernel
            // without transparent huge pages answers EINVAL: the mapping then stays in 4 KiB
            // pages, which is all the advice could have changed.
            unsafe { libc::madvise(addr, map_len, libc::MADV_HUGEPAGE) };
        }
        // SAFETY: locks the mapping just made; a fault while populating (I/O error) makes
        // mlock fail with ENOMEM/EFAULT rather than deliver SIGBUS.
        if lock && unsafe { libc::mlock(addr, map_len) } != 0 {
            return Err(syscall("mlock"));
        }
        Ok(map)
    }

    /// The window's file offsets.
    pub fn window(&self) -> std::ops::Range<u64> {
        self.start..self.end
    }

    /// Whether the mapping is writable.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether the mapping is locked in memory.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Bytes of the mapping that 2 MiB page-table entries could map: the whole, aligned 2 MiB
    /// pieces of the file inside it, when the kernel placed the mapping so that their
    /// addresses are 2 MiB-aligned too (it does for files whose page cache can hold 2 MiB
    /// folios).
    pub fn huge_eligible(&self) -> u64 {
        let base = self.base.as_ptr() as u64;
        if base % HUGE_PAGE != self.map_offset % HUGE_PAGE {
            return 0;
        }
        let first = self.map_offset.div_ceil(HUGE_PAGE);
        let end = (self.map_offset + self.map_len as u64) / HUGE_PAGE;
        end.saturating_sub(first) * HUGE_PAGE
    }

    /// Bytes of the mapping mapped by 2 MiB page-table entries (`FilePmdMapped` of its areas
    /// in `/proc/self/smaps`), or `None` if that could not be read. A start-up check: it reads
    /// the whole smaps file.
    pub fn huge_bytes(&self) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        Some(pmd_mapped(&smaps, self.addresses()))
    }

    /// How many memory areas the kernel keeps for the mapping (`/proc/self/maps`), or `None`
    /// if that could not be read: one, unless mapping pages back after a fault left it split
    /// (a 2 MiB page needs one area around it). For tests and diagnostics.
    pub fn areas(&self) -> Option<usize> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        Some(areas_inside(&maps, self.addresses()))
    }

    /// Whether the mapping asks for 2 MiB pages (`MADV_HUGEPAGE`): locked or read-only ones
    /// do, writable ones not (see the module docs).
    fn huge(&self) -> bool {
        self.locked || !self.writable
    }

    /// The addresses the mapping occupies.
    fn addresses(&self) -> std::ops::Range<u64> {
        let start = self.base.as_ptr() as u64;
        start..start + self.map_len as u64
    }

    /// Pages replaced after a `SIGBUS` so far.
    pub fn faults(&self) -> u64 {
        MAPS[self.entry].faults.load(Ordering::Relaxed)
    }

    /// Copies `dst.len()` bytes at file offset `at` into `dst`; `EIO` if a page could not
    /// be read (see the module docs).
    pub fn read(&self, at: u64, dst: &mut [u8]) -> Result<(), Errno> {
        let src = self.address(at, dst.len());
        self.copy(at, dst.len(), || {
            // SAFETY: `address` checked that the range lies inside the mapping, which lives
            // as long as `self`; `dst` is a distinct Rust buffer (not our mapping: callers
            // hold `&mut` to it). Another process may write the file meanwhile; the copy
            // then sees either version of each byte, as `pread` would.
            unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) }
        })
    }

    /// Copies `src` to file offset `at`; `EBADF` on a read-only mapping, `EIO` if a page
    /// could not be written (see the module docs).
    pub fn write(&self, at: u64, src: &[u8]) -> Result<(), Errno> {
        if !self.writable {
            return Err(Errno::BADF);
        }
        let dst = self.address(at, src.len());
        self.copy(at, src.len(), || {
            // SAFETY: as in `read`; the mapping is writable and nothing in this process
            // holds a reference into it.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
        })
    }

    /// Starts loading the cache lines of `[at, at + len)`, so that a batch of copies overlaps
    /// its cache and TLB misses instead of taking them one copy at a time. A hint only: a
    /// range outside the window is ignored.
    pub fn prefetch(&self, at: u64, len: usize) {
        if !self.inside(at, len) {
            return;
        }
        let offset = usize::try_from(at - self.map_offset).expect("inside the mapping");
        let start = self.base.as_ptr().wrapping_add(offset);
        super::cpu::prefetch_range(start, len);
    }

    /// Whether the `len` bytes from file offset `at` lie in the window.
    fn inside(&self, at: u64, len: usize) -> bool {
        at >= self.start && at.checked_add(len as u64).is_some_and(|e| e <= self.end)
    }

    /// Address of file offset `at`, after checking that `len` bytes from it lie in the window.
    fn address(&self, at: u64, len: usize) -> *mut u8 {
        assert!(
            self.inside(at, len),
            "copy of {len} bytes at {at} outside the mapped window {}..{}",
            self.start,
            self.end
        );
        let offset = usize::try_from(at - self.map_offset).expect("inside the mapping");
        // SAFETY: `offset + len <= map_len` (the window lies inside the mapping).
        unsafe { self.base.as_ptr().add(offset) }
    }

    /// Runs `copy` of `len` bytes at `at` under the lock and turns a counted fault into `EIO`.
    fn copy(&self, at: u64, len: usize, copy: impl FnOnce()) -> Result<(), Errno> {
        // Acquire: pairs with the Release below, so copies through this mapping never overlap.
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        let faults = &MAPS[self.entry].faults;
        // Relaxed: the handler runs on this thread, synchronously, inside `copy`; the compiler
        // fences keep the compiler from moving the loads across the copy (what a signal
        // handler on the same thread needs, and all it needs).
        let before = faults.load(Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        copy();
        compiler_fence(Ordering::SeqCst);
        let faulted = faults.load(Ordering::Relaxed) != before;
        if faulted {
            self.restore(at, len);
        }
        self.busy.store(false, Ordering::Release);
        if faulted {
            Err(Errno::IO)
        } else {
            Ok(())
        }
    }

    /// Maps the file's pages back over `[at, at + len)` after the handler replaced some.
    fn restore(&self, at: u64, len: usize) {
        let page = PAGE.load(Ordering::Relaxed) as u64;
        let first = (at - self.map_offset) / page * page;
        let last = (at - self.map_offset + len as u64).div_ceil(page) * page;
        let bytes = usize::try_from(last - first).expect("inside the mapping");
        // SAFETY: replaces pages inside our own mapping (MAP_FIXED over a range we own, at a
        // page-aligned address and file offset); no reference into them is alive (the copy
        // that faulted has returned and `busy` is held).
        let addr = unsafe {
            let at = self
                .base
                .as_ptr()
                .add(usize::try_from(first).expect("fits"));
            libc::mmap(
                at.cast(),
                bytes,
                self.prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                self.fd.as_raw_fd(),
                (self.map_offset + first) as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            // The stand-in pages stay, and would be read as data: nothing safe remains.
            panic!(
                "could not map the backing file back after a fault: {}",
                syscall("mmap")
            );
        }
        if self.huge() {
            // SAFETY: advice on pages of our own mapping; it changes no contents. The new
            // area then has the flags of its neighbours, so the kernel merges them back into
            // one (a 2 MiB page needs one area around it), as it was before the fault.
            unsafe { libc::madvise(addr, bytes, libc::MADV_HUGEPAGE) };
        }
        if self.locked {
            // SAFETY: locks pages of our own mapping. Failure (the file is still short) only
            // means those pages are not resident; their next access faults again.
            unsafe { libc::mlock(addr, bytes) };
        }
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // Unpublish before unmapping, so the handler never treats a reused address as ours.
        MAPS[self.entry].start.store(0, Ordering::Release);
        // SAFETY: unmaps the mapping made in `map`; `&mut self` means no copy is running.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
        release(self.entry);
    }
}

impl std::fmt::Debug for FileMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMap")
            .field("window", &(self.start..self.end))
            .field("writable", &self.writable)
            .field("locked", &self.locked)
            .field("faults", &self.faults())
            .finish_non_exhaustive()
    }
}

/// Sum of `FilePmdMapped` over the areas of `smaps` that lie inside `range`.
fn pmd_mapped(smaps: &str, range: std::ops::Range<u64>) -> u64 {
    let mut inside = false;
    let mut bytes = 0;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((from, to)) = first.split_once('-') {
            if let (Ok(from), Ok(to)) = (u64::from_str_radix(from, 16), u64::from_str_radix(to, 16))
            {
                inside = from >= range.start && to <= range.end;
                continue;
            }
        }
        if inside && first == "FilePmdMapped:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            bytes += kib * 1024;
        }
    }
    bytes
}

/// Major page faults of the calling thread so far (`getrusage(RUSAGE_THREAD)`): on a worker,
/// copies through an unlocked mapping that had to wait for a page to be read in. Zero if the
/// kernel does not say.
pub fn thread_major_faults() -> u64 {
    thread_usage().map_or(0, |usage| u64::try_from(usage.ru_majflt).unwrap_or(0))
}

/// Times the calling thread gave up its CPU because it had to wait (a blocking call; not a
/// preemption) so far (`getrusage(RUSAGE_THREAD)`, about 1 µs here). Zero if the kernel does
/// not say.
pub fn thread_voluntary_switches() -> u64 {
    thread_usage().map_or(0, |usage| u64::try_from(usage.ru_nvcsw).unwrap_or(0))
}

fn thread_usage() -> Option<libc::rusage> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_THREAD only reads this thread's
    // counters into it.
    let status = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    // SAFETY: getrusage succeeded, so it filled `usage` (and it was zeroed before anyway).
    (status == 0).then(|| unsafe { usage.assume_init() })
}

/// How many areas of `maps` (`/proc/PID/maps`) lie inside `range`.
fn areas_inside(maps: &str, range: std::ops::Range<u64>) -> usize {
    maps.lines()
        .filter_map(parse_maps_line)
        .filter(|m| {
            let (from, to) = (m.start as u64, (m.start + m.len) as u64);
            from >= range.start && to <= range.end
        })
        .count()
}

fn syscall(call: &'static str) -> MapError {
    MapError::Syscall {
        call,
        source: io::Error::last_os_error(),
    }
}

/// Claims a free entry of [`MAPS`].
fn claim() -> Option<usize> {
    MAPS.iter().position(|e| {
        e.used
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Frees entry `index` (already unpublished).
fn release(index: usize) {
    let entry = &MAPS[index];
    entry.start.store(0, Ordering::Release);
    entry.end.store(0, Ordering::Relaxed);
    entry.faults.store(0, Ordering::Relaxed);
    // Release: the cleared fields are visible to whoever claims the entry next.
    entry.used.store(false, Ordering::Release);
}

/// Installs [`on_sigbus`] for `SIGBUS`, keeping the previous disposition for other faults.
fn install_handler() {
    INSTALL.call_once(|| {
        PAGE.store(crate::sys::mem::page_size(), Ordering::Relaxed);
        // SAFETY: a zeroed sigaction is a valid starting point; the handler is an
        // `extern "C"` function with the SA_SIGINFO signature; `PREVIOUS` is written here,
        // once, before our handler is installed (so before it can read it).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
                PREVIOUS = Some(previous);
            }
        }
    });
}

/// `SIGBUS` handler: a fault inside one of our mappings gets an anonymous page in place of
/// the missing one; anything else goes to the previous disposition. Only async-signal-safe
/// work: atomics, `mmap`, `sigaction`.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; for SIGBUS si_addr
    // is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for entry in &MAPS {
        // Acquire: pairs with the Release publishing the mapping in `FileMap::map`.
        let start = entry.start.load(Ordering::Acquire);
        if start == 0 || addr < start || addr >= entry.end.load(Ordering::Relaxed) {
            continue;
        }
        let at = addr & !(page - 1);
        // SAFETY: replaces one page inside a live mapping of ours (published, not yet
        // unmapped: unmapping needs `&mut FileMap`, and the faulting copy holds `&FileMap`)
        // with an anonymous page, so the faulting instruction can be restarted.
        let replaced = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if replaced != libc::MAP_FAILED {
            entry.faults.fetch_add(1, Ordering::Relaxed);
            return;
        }
        break;
    }
    // SAFETY: `PREVIOUS` was written before this handler was installed and never again.
    let previous = unsafe { (*std::ptr::addr_of!(PREVIOUS)).as_ref() };
    match previous {
        Some(action)
            if action.sa_sigaction != libc::SIG_DFL && action.sa_sigaction != libc::SIG_IGN =>
        {
            if action.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous handler was installed with this signature.
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(action.sa_sigaction) };
                handler(signal, info, context);
            } else {
                // SAFETY: the previous handler was installed with this signature.
                let handler: extern "C" fn(libc::c_int) =
                    unsafe { std::mem::transmute(action.sa_sigaction) };
                handler(signal);
            }
        }
        _ => {
            // Back to the default action: returning restarts the faulting instruction,
            // which now terminates the process (with a core dump) as if we were not here.
            // SAFETY: a zeroed sigaction with SIG_DFL is valid.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    const KIB: u64 = 1024;

    fn file_of(len: u64) -> (tempfile::NamedTempFile, File) {
        let tmp = tempfile::NamedTempFile::new_in("/var/tmp").expect("temp file");
        let file = File::options()
            .read(true)
            .write(true)
            .open(tmp.path())
            .expect("open");
        let pattern: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        file.write_all_at(&pattern, 0).expect("fill");
        (tmp, file)
    }

    #[test]
    fn test_copies_are_coherent_with_pread_and_pwrite() {
        let (_tmp, file) = file_of(64 * KIB);
        // A window that starts and ends inside pages.
        let map = FileMap::map(&file, 1536, 40 * KIB, true, false).expect("map");
        let mut got = [0u8; 1024];
        map.read(4096 + 512, &mut got).expect("read");
        let want: Vec<u8> = (4096 + 512..4096 + 1536).map(|i| (i % 251) as u8).collect();
        assert_eq!(&got[..], &want[..]);

        map.write(8192, &[0xAB; 1024]).expect("write");
        let mut back = [0u8; 1024];
        file.read_exact_at(&mut back, 8192).expect("pread");
        assert_eq!(back, [0xAB; 1024]);

        file.write_all_at(&[0xCD; 512], 1536).expect("pwrite");
        let mut first = [0u8; 512];
        map.read(1536, &mut first).expect("read window start");
        assert_eq!(first, [0xCD; 512]);
        assert_eq!(map.faults(), 0);
    }

    #[test]
    #[should_panic(expected = "outside the mapped window")]
    fn test_copy_outside_the_window_panics() {
        let (_tmp, file) = file_of(64 * KIB);
        let map = FileMap::map(&file, 4096, 8 * KIB, true, false).expect("map");
        let mut buf = [0u8; 512];
        let _ = map.read(4096 + 8 * KIB - 256, &mut buf);
    }

    #[test]
    fn test_prefetch_is_a_hint_inside_or_outside_the_window() {
        let (_tmp, file) = file_of(64 * KIB);
        let map = FileMap::map(&file, 4096, 8 * KIB, false, false).expect("map");
        // Inside, at the window's edges, past it, overflowing: nothing panics or faults.
        for (at, len) in [
            (4096, 1024),
            (4096 + 8 * KIB - 1, 1),
            (0, 64),
            (u64::MAX, 2),
        ] {
            map.prefetch(at, len);
        }
        let mut buf = [0u8; 1024];
        map.read(4096, &mut buf).expect("read");
        let want: Vec<u8> = (4096..4096 + 1024).map(|i| (i % 251) as u8).collect();
        assert_eq!(&buf[..], &want[..]);
        assert_eq!(map.faults(), 0);
    }

    #[test]
    fn test_read_only_mapping_refuses_writes() {
        let (_tmp, file) = file_of(16 * KIB);
        let map = FileMap::map(&file, 0, 16 * KIB, false, false).expect("map");
        assert_eq!(map.write(0, &[1; 512]), Err(Errno::BADF));
        let mut buf = [0u8; 512];
        map.read(0, &mut buf).expect("read");
        assert_eq!(buf[1], 1);
    }

    #[test]
    fn test_truncated_file_gives_eio_not_sigbus_and_recovers() {
        let (_tmp, file) = file_of(64 * KIB);
        let map = FileMap::map(&file, 0, 64 * KIB, true, true).expect("map and lock");
        assert!(map.locked());
        file.set_len(16 * KIB).expect("truncate under the mapping");

        let mut buf = [0x55u8; 1024];
        assert_eq!(map.read(32 * KIB, &mut buf), Err(Errno::IO));
        assert!(map.faults() >= 1, "the fault was counted");
        assert_eq!(map.write(40 * KIB, &[7; 1024]), Err(Errno::IO));
        // A copy that spans the new end fails as a whole.
        assert_eq!(map.read(16 * KIB - 512, &mut buf), Err(Errno::IO));
        // Pages still backed by the file are served, with their data.
        map.read(1024, &mut buf).expect("read below the new end");
        assert_eq!(buf[0], (1024 % 251) as u8);

        // Grown back: the range is served again (the hole reads as zeros), and a write lands
        // in the file rather than in a stand-in page.
        file.set_len(64 * KIB).expect("grow");
        let faults = map.faults();
        map.read(32 * KIB, &mut buf)
            .expect("read after growing back");
        assert_eq!(buf, [0u8; 1024]);
        map.write(40 * KIB, &[9; 1024])
            .expect("write after growing back");
        let mut back = [0u8; 1024];
        file.read_exact_at(&mut back, 40 * KIB).expect("pread");
        assert_eq!(back, [9; 1024]);
        assert_eq!(map.faults(), faults);
    }

    /// Set in the child of [`test_sigbus_elsewhere_still_kills`].
    const CHILD: &str = "AOE_XDP_FILEMAP_SIGBUS_CHILD";

    #[test]
    fn test_sigbus_elsewhere_still_kills() {
        if std::env::var_os(CHILD).is_some() {
            // The child: our handler is installed, but this mapping is not ours.
            let (_tmp, file) = file_of(16 * KIB);
            let _ours = FileMap::map(&file, 0, 16 * KIB, true, false).expect("map");
            let (_tmp2, other) = file_of(16 * KIB);
            // SAFETY: a fresh private mapping of a file we then truncate, to raise SIGBUS.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    16 * 1024,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    other.as_raw_fd(),
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED);
                other.set_len(0).expect("truncate");
                std::ptr::read_volatile(p.cast::<u8>().add(8192));
            }
            std::process::exit(0);
        }
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "sys::filemap::tests::test_sigbus_elsewhere_still_kills",
            ])
            .args(["--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .expect("run the child");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.status.signal(),
            Some(libc::SIGBUS),
            "child: {:?} {}",
            status.status,
            String::from_utf8_lossy(&status.stderr)
        );
    }
}

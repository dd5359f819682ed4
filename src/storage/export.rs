//! Exports: a window of 512-byte sectors inside a regular file or block device.
//!
//! Contract: an [`Export`] is validated once at start-up (the window fits the backing size) and
//! then only maps sectors to file offsets: [`Export::byte_range`] is the single place that turns
//! a request into a file offset, with `checked_add` and a range check, and the engines assert
//! its answer again before any I/O. Nothing outside `[offset, offset + length)` is ever touched.
//!
//! Hazards:
//! - The backing file can shrink after open; reads past its new end come back short and are
//!   completed with an error, never with stale or zero data.
//! - With `direct_io`, two descriptors exist: `O_DIRECT` for requests meeting the device's
//!   offset alignment, buffered for the rest. The kernel keeps them coherent (a direct write
//!   invalidates cached pages, a direct read flushes dirty ones), but concurrent overlapping
//!   I/O through both may observe either order, as with any concurrent overlapping I/O.
//! - Block devices are opened with `O_EXCL` (no mount or second target at the same time); the
//!   second (direct) descriptor is opened without it, which the kernel allows.
//! - tmpfs accepts `O_DIRECT` but reports no `STATX_DIOALIGN`: such exports fall back to
//!   buffered I/O and say so ([`Export::direct_fallback`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, SeekFrom, StatxFlags};

use crate::storage::cached::SeenPages;
use crate::storage::readahead::Readahead;
use crate::sys::filemap::{FileMap, MapError};

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every write completes only once durable: after a data sync that started once the
    /// write had completed (the io_uring engine's group commit; `RWF_DSYNC` in the oracle).
    Sync,
    /// Plain writes; FLUSH makes them durable (`fdatasync`).
    Writeback,
}

/// What to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSpec {
    /// Regular file or block device.
    pub path: PathBuf,
    /// First sector of the window.
    pub offset_sectors: u64,
    /// Window length in sectors; `None` = up to the end of the backing store.
    pub length_sectors: Option<u64>,
    /// Open read-only and refuse writes.
    pub read_only: bool,
    /// Use `O_DIRECT` where the device's alignment allows.
    pub direct_io: bool,
    /// Write acknowledgement policy.
    pub durability: Durability,
    /// Keep the window in memory (`mlock`ed shared mapping) and copy through it.
    pub resident: bool,
    /// `Writeback` writes are copies through a shared mapping rather than `pwritev2` (see
    /// [`Export::write_map`]).
    pub mapped_writes: bool,
    /// Reads are copies through a shared mapping that is not locked (see
    /// [`Export::read_map`]); `resident` maps them anyway.
    pub mapped_reads: bool,
}

impl ExportSpec {
    /// The whole of `path`, writable, buffered, `writeback`, no mappings: the plainest export
    /// (tests and benches change what they need with `..ExportSpec::whole_file(path)`).
    pub fn whole_file(path: impl Into<PathBuf>) -> ExportSpec {
        ExportSpec {
            path: path.into(),
            offset_sectors: 0,
            length_sectors: None,
            read_only: false,
            direct_io: false,
            durability: Durability::Writeback,
            resident: false,
            mapped_writes: false,
            mapped_reads: false,
        }
    }
}

/// Direct I/O alignment from `STATX_DIOALIGN`, in bytes (powers of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DioAlign {
    /// Alignment of memory addresses and lengths.
    pub mem_align: u32,
    /// Alignment of file offsets and lengths.
    pub offset_align: u32,
}

/// Which descriptor serves a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    /// The `O_DIRECT` descriptor.
    Direct,
    /// The buffered descriptor.
    Buffered,
}

/// How one request is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Descriptor to use.
    pub lane: Lane,
    /// The memory does not meet `mem_align`: copy through an aligned bounce chunk.
    pub bounce: bool,
}

/// Errors opening an export. Messages name the path, the sizes and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `open` or `stat` failed.
    #[error("{path}: cannot open (check the path and permissions; a block device in use elsewhere gives EBUSY)")]
    Open {
        /// The export path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Not a regular file or block device.
    #[error("{path}: not a regular file or block device")]
    NotFileOrDevice {
        /// The export path.
        path: PathBuf,
    },
    /// Seeking to the end failed.
    #[error("{path}: cannot determine the size")]
    Size {
        /// The export path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The window does not fit the backing store.
    #[error(
        "{path}: window of {length_sectors} sectors at sector {offset_sectors} needs {needed_bytes} bytes \
         but the backing store has {size_bytes} ({size_sectors} sectors); lower offset_sectors/length_sectors \
         or grow the file"
    )]
    Window {
        /// The export path.
        path: PathBuf,
        /// Requested first sector.
        offset_sectors: u64,
        /// Requested (or derived) length.
        length_sectors: u64,
        /// Bytes the window needs (saturating).
        needed_bytes: u64,
        /// Backing size in bytes.
        size_bytes: u64,
        /// Backing size in whole sectors.
        size_sectors: u64,
    },
    /// `resident` and `direct_io` were both asked for.
    #[error(
        "{path}: resident keeps the data in the page cache, direct-io bypasses it; choose one"
    )]
    ResidentDirect {
        /// The export path.
        path: PathBuf,
    },
    /// A resident window larger than the memory available.
    #[error("{path}: {shortfall}")]
    ResidentTooLarge {
        /// The export path.
        path: PathBuf,
        /// The sizes.
        shortfall: MemoryShortfall,
    },
    /// Mapping or locking a resident window failed.
    #[error("{path}: cannot keep the window resident (mlock needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK)")]
    Resident {
        /// The export path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: MapError,
    },
}

/// An open export.
#[derive(Debug)]
pub struct Export {
    path: PathBuf,
    buffered: File,
    direct: Option<(File, DioAlign)>,
    direct_fallback: bool,
    start_bytes: u64,
    sectors: u64,
    read_only: bool,
    durability: Durability,
    /// Resident exports: the window mapped read-only and locked in memory, for reads.
    read_map: Option<FileMap>,
    /// `mapped_writes`: the window mapped read-write (not locked), for write-back writes.
    /// A mapping of its own, so that write faults never split the read mapping's 2 MiB pages.
    write_map: Option<FileMap>,
    /// The kernel's readahead is off for `buffered`; the engine reads ahead itself.
    own_readahead: bool,
}

impl Export {
    /// Opens and validates an export.
    pub fn open(spec: &ExportSpec) -> Result<Export, ExportError> {
        let path = spec.path.clone();
        let open_err = |source| ExportError::Open {
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(&path).map_err(open_err)?;
        let is_block = meta.file_type().is_block_device();
        if !is_block && !meta.file_type().is_file() {
            return Err(ExportError::NotFileOrDevice { path });
        }
        let excl = if is_block { libc::O_EXCL } else { 0 };
        let buffered = open_file(&path, spec.read_only, excl).map_err(open_err)?;
        let size_bytes =
            rustix::fs::seek(&buffered, SeekFrom::End(0)).map_err(|e| ExportError::Size {
                path: path.clone(),
                source: e.into(),
            })?;
        let (start_bytes, sectors) = window(spec, size_bytes)?;
        let direct = if spec.direct_io {
            open_direct(&path, &buffered, spec.read_only)
        } else {
            None
        };
        let direct_fallback = spec.direct_io && direct.is_none();
        if direct_fallback {
            tracing::warn!(path = %path.display(), "direct I/O unavailable, using buffered I/O");
        }
        let mapped_writes = !spec.read_only
            && spec.durability == Durability::Writeback
            && spec.mapped_writes
            && !spec.direct_io;
        let read_map = if spec.resident {
            Some(map_resident(
                &path,
                &buffered,
                spec,
                is_block,
                start_bytes,
                sectors,
            )?)
        } else if spec.mapped_reads && !spec.direct_io {
            map_for_reads(&path, &buffered, start_bytes, sectors)
        } else {
            None
        };
        let write_map = if mapped_writes {
            map_for_writes(&path, &buffered, start_bytes, sectors)
        } else {
            None
        };
        let own_readahead = read_map.is_none() && advise_random(&path, &buffered);
        Ok(Export {
            path,
            buffered,
            direct,
            direct_fallback,
            start_bytes,
            sectors,
            read_only: spec.read_only,
            durability: spec.durability,
            read_map,
            write_map,
            own_readahead,
        })
    }

    /// Whether the kernel's readahead is off for the buffered descriptor
    /// (`POSIX_FADV_RANDOM`), so that the engine reads ahead of sequential streams itself
    /// (see [`crate::storage::readahead`]): every export without a read mapping.
    pub fn own_readahead(&self) -> bool {
        self.own_readahead
    }

    /// A readahead for this export's buffered reads, if it reads ahead itself
    /// ([`Self::own_readahead`]), bounded by the end of its window.
    pub fn readahead(&self) -> Option<Readahead> {
        self.own_readahead
            .then(|| Readahead::new(self.window_end()))
    }

    /// A table of the pages its buffered writes found in the page cache (see
    /// [`crate::storage::cached`]), for an export whose writes may find a page missing and
    /// read it from the disk first: every writable one but a resident one, whose window is
    /// locked in memory.
    pub fn seen_pages(&self) -> Option<SeenPages> {
        let resident = self.read_map.as_ref().is_some_and(FileMap::locked);
        let page_size = crate::sys::mem::page_size() as u64;
        (!self.read_only && !resident).then(|| SeenPages::new(self.window_end(), page_size))
    }

    /// The file offset where the window ends.
    fn window_end(&self) -> u64 {
        self.start_bytes + self.sectors * SECTOR_SIZE
    }

    /// The mapping, if `Writeback` writes are copies through it (`mapped_writes`: writable
    /// only then). Such a copy costs well under 1 µs where a 1 KiB `pwritev2` into a large
    /// page-cache folio costs 5-13 µs on ext4, but the first write to a clean folio dirties
    /// all of it (`page_mkwrite` works on whole folios), and write-back then writes the whole
    /// folio: up to 2 MiB of disk writes for a 1 KiB write, where `pwritev2` dirties only the
    /// file system blocks it touched.
    pub fn write_map(&self) -> Option<&FileMap> {
        self.write_map.as_ref()
    }

    /// The export without its mapping: every request then uses the descriptors, as when no
    /// mapping could be made (too many mappings, no address space). Tests use it to reach
    /// that path.
    pub fn without_map(mut self) -> Export {
        (self.read_map, self.write_map) = (None, None);
        self
    }

    /// The mapping reads are copies through: a resident export's, locked in memory, or a
    /// `mapped_reads` export's, not locked. A copy of a cached 1 KiB costs a fraction of a
    /// `preadv2`, but a read through an unlocked mapping of a page that is not in memory
    /// waits for the disk on the worker's thread, where `preadv2(RWF_NOWAIT)` hands a miss
    /// to io_uring instead.
    pub fn read_map(&self) -> Option<&FileMap> {
        self.read_map.as_ref()
    }

    /// The backing path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Window length in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Write acknowledgement policy.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Direct I/O alignment, if an `O_DIRECT` descriptor is open.
    pub fn dio_align(&self) -> Option<DioAlign> {
        self.direct.as_ref().map(|(_, align)| *align)
    }

    /// True when `direct_io` was asked for but the file system offers none.
    pub fn direct_fallback(&self) -> bool {
        self.direct_fallback
    }

    /// File offset of `sector`, if it lies inside the window.
    pub fn byte_offset(&self, sector: u64) -> Option<u64> {
        self.byte_range(sector, 0).filter(|_| sector < self.sectors)
    }

    /// File offset of `len` bytes starting at `sector`, if they all lie inside the window.
    pub fn byte_range(&self, sector: u64, len: u64) -> Option<u64> {
        let end_sectors = sector.checked_add(len.div_ceil(SECTOR_SIZE))?;
        if end_sectors > self.sectors {
            return None;
        }
        self.start_bytes
            .checked_add(sector.checked_mul(SECTOR_SIZE)?)
    }

    /// Chooses the descriptor for `len` bytes at file offset `file_offset` from memory at
    /// address `mem_addr`: direct when offset and length meet the offset alignment and the
    /// length meets the memory alignment (a bounce cannot fix a length); a bounce when only the
    /// address is misaligned.
    pub fn route(&self, file_offset: u64, len: u32, mem_addr: usize) -> Route {
        let buffered = Route {
            lane: Lane::Buffered,
            bounce: false,
        };
        let Some((_, a)) = &self.direct else {
            return buffered;
        };
        let len = u64::from(len);
        if !aligned(file_offset, a.offset_align)
            || !aligned(len, a.offset_align)
            || !aligned(len, a.mem_align)
        {
            return buffered;
        }
        Route {
            lane: Lane::Direct,
            bounce: !aligned(mem_addr as u64, a.mem_align),
        }
    }

    /// The descriptor of `lane` (the buffered one when no direct descriptor is open).
    pub fn fd(&self, lane: Lane) -> BorrowedFd<'_> {
        match (&self.direct, lane) {
            (Some((file, _)), Lane::Direct) => file.as_fd(),
            _ => self.buffered.as_fd(),
        }
    }
}

fn aligned(value: u64, align: u32) -> bool {
    value % u64::from(align) == 0
}

/// Opens with `O_NOATIME` when allowed (we own the file or hold `CAP_FOWNER`): a read then
/// skips the access-time check and never dirties the inode for it (about 1% of a cached 1 KiB
/// read's CPU). Without it otherwise (`EPERM`).
fn open_file(path: &Path, read_only: bool, flags: i32) -> io::Result<File> {
    let open = |flags: i32| {
        OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(flags)
            .open(path)
    };
    match open(flags | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(flags),
        other => other,
    }
}

/// Opens the `O_DIRECT` descriptor if `STATX_DIOALIGN` reports support.
fn open_direct(path: &Path, buffered: &File, read_only: bool) -> Option<(File, DioAlign)> {
    let stx = rustix::fs::statx(buffered, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN).ok()?;
    let reported = StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::DIOALIGN);
    let align = DioAlign {
        mem_align: stx.stx_dio_mem_align,
        offset_align: stx.stx_dio_offset_align,
    };
    let usable = |a: u32| a.is_power_of_two() && u64::from(a) <= 4096;
    if !reported || !usable(align.mem_align) || !usable(align.offset_align) {
        return None;
    }
    match open_file(path, read_only, libc::O_DIRECT) {
        Ok(file) => Some((file, align)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "O_DIRECT open failed");
            None
        }
    }
}

/// Turns the kernel's readahead off for `file` (`POSIX_FADV_RANDOM`), for an export whose
/// reads are system calls or io_uring reads rather than copies through a mapping; true if
/// it is off. The engines read ahead of sequential streams themselves
/// ([`crate::storage::readahead`]).
///
/// The kernel's readahead fills the page cache in large folios (up to 2 MiB, as far as the
/// disk's `read_ahead_kb` reaches), and on ext4 every small write into a large folio walks
/// all of the folio's blocks, when written (`ext4_block_write_begin`) and again when written
/// back. Measured on Linux 6.18, ext4 (2026-12-07): a 1 KiB `pwrite` into a file that had
/// been read through sequentially cost 25-38 µs with this VM's `read_ahead_kb` of 8192 and
/// 8 µs with 128, against 3.7-5 µs where the cache held it in one-page folios. Without the
/// kernel's readahead a read brings in just the pages it asked for, and `POSIX_FADV_WILLNEED`
/// (our readahead) reads in one-page folios too. Mapped and resident exports keep the
/// kernel's readahead: their mappings want 2 MiB folios (2 MiB pages). Failure only costs
/// speed (logged).
fn advise_random(path: &Path, file: &File) -> bool {
    match rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Random) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "could not turn the kernel's readahead off: small writes into the large \
                 page-cache folios it makes cost more"
            );
            false
        }
    }
}

/// Maps and locks a resident window (read-only, in 2 MiB pages where it can), after checking
/// that it fits in the available memory (`mlock` of more than that would push the system into
/// reclaim or the OOM killer).
///
/// Where the page cache already held the file in smaller folios, the mapping cannot use
/// 2 MiB pages for them: then (regular files only) the window is synced, its cached pages are
/// dropped (`POSIX_FADV_DONTNEED`: clean, unmapped pages only) and it is mapped again, which
/// reads it back in 2 MiB folios. That costs one read of the window at start-up, as resident
/// does for a file that is not cached at all, and makes random reads through the mapping
/// about 15 % faster (measured 2026-12-02 on an Intel Xeon VM, a file written in 1 MiB
/// blocks: 735-787k against 874-880k 1 KiB reads/s at QD 16).
fn map_resident(
    path: &Path,
    file: &File,
    spec: &ExportSpec,
    is_block: bool,
    start_bytes: u64,
    sectors: u64,
) -> Result<FileMap, ExportError> {
    if spec.direct_io {
        return Err(ExportError::ResidentDirect {
            path: path.to_owned(),
        });
    }
    const MIB: u64 = 1 << 20;
    let bytes = sectors * SECTOR_SIZE;
    if let Some(shortfall) = memory_shortfall(sectors) {
        return Err(ExportError::ResidentTooLarge {
            path: path.to_owned(),
            shortfall,
        });
    }
    let started = std::time::Instant::now();
    let lock = || {
        FileMap::map(file, start_bytes, bytes, false, true).map_err(|source| {
            ExportError::Resident {
                path: path.to_owned(),
                source,
            }
        })
    };
    let mut map = lock()?;
    let eligible = map.huge_eligible();
    let short = |map: &FileMap| map.huge_bytes().is_some_and(|huge| huge < eligible);
    let reread = !is_block && eligible > 0 && huge_pages_enabled() && short(&map);
    if reread {
        drop(map);
        // Dirty pages cannot be dropped; after the sync every cached page of the window is
        // clean, and those nobody else maps or locks are dropped.
        let _ = file.sync_data();
        let _ = rustix::fs::fadvise(
            file,
            start_bytes,
            std::num::NonZeroU64::new(bytes),
            rustix::fs::Advice::DontNeed,
        );
        map = lock()?;
    }
    let huge = map.huge_bytes().unwrap_or(0);
    tracing::info!(
        path = %path.display(),
        mib = bytes.div_ceil(MIB),
        huge_page_mib = huge / MIB,
        reread,
        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "resident: window locked in memory"
    );
    if huge < eligible && huge_pages_enabled() {
        tracing::info!(
            path = %path.display(),
            mapped_mib = huge / MIB,
            possible_mib = eligible / MIB,
            "resident: part of the window is in 4 KiB pages (the page cache of this file \
             system, or memory too fragmented for 2 MiB folios)"
        );
    }
    Ok(map)
}

/// Whether transparent huge pages may be used on request (`madvise` or `always` in
/// `/sys/kernel/mm/transparent_hugepage/enabled`).
fn huge_pages_enabled() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|mode| !mode.contains("[never]"))
}

/// Maps the window of a write-back export for writes (not locked): a 1 KiB write becomes a
/// copy into the page cache instead of a `pwritev2` (on ext4 with large folios, each buffered
/// write walks every buffer head of its folio: 5-20 µs; the copy costs well under 1 µs, and
/// the first write to a page after write-back cleaned it one write fault). Like `pwritev2`,
/// a write to a page that is not cached waits for it to be read. Without a mapping (too many
/// mappings, address space) writes use `pwritev2`, and the log says so.
fn map_for_writes(path: &Path, file: &File, start_bytes: u64, sectors: u64) -> Option<FileMap> {
    match FileMap::map(file, start_bytes, sectors * SECTOR_SIZE, true, false) {
        Ok(map) => Some(map),
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "write-back writes go through pwritev2 (no shared mapping)"
            );
            None
        }
    }
}

/// Maps the window of a `mapped_reads` export for reads (read-only, not locked, in 2 MiB pages
/// where the page cache holds 2 MiB folios): a cached 1 KiB read becomes a copy instead of a
/// `preadv2` or an io_uring read (on a 2-vCPU VM, random 1 KiB reads from a cached file rose
/// from 643-686k to 886-897k a second, measured 2026-12-03 with `cargo xtask bench`). A read
/// of a page that is not cached waits for the disk on the worker's thread (the fault reads it
/// in, with the kernel's read-ahead for mappings). Without a mapping (too many mappings,
/// address space) reads use `preadv2`/io_uring, and the log says so.
fn map_for_reads(path: &Path, file: &File, start_bytes: u64, sectors: u64) -> Option<FileMap> {
    match FileMap::map(file, start_bytes, sectors * SECTOR_SIZE, false, false) {
        Ok(map) => {
            tracing::info!(
                path = %path.display(),
                mib = (sectors * SECTOR_SIZE).div_ceil(1 << 20),
                "mapped reads: reads copy out of a shared mapping of the window (not locked: a \
                 read of a page that is not in memory waits for the disk on the worker)"
            );
            Some(map)
        }
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "reads go through preadv2 and io_uring (no shared mapping)"
            );
            None
        }
    }
}

/// A resident window that does not fit in the available memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "resident needs {needed_mib} MiB in memory but only {available_mib} MiB are available \
     (MemAvailable); export less (length) or set resident = false"
)]
pub struct MemoryShortfall {
    /// Window size in MiB (rounded up).
    pub needed_mib: u64,
    /// MemAvailable in MiB.
    pub available_mib: u64,
}

/// Whether a resident window of `sectors` would not fit in `MemAvailable` (`mlock` of more
/// would push the system into reclaim or the OOM killer); `None` if it fits or is unknown.
pub fn memory_shortfall(sectors: u64) -> Option<MemoryShortfall> {
    const MIB: u64 = 1 << 20;
    let available = mem_available()?;
    let needed = sectors.saturating_mul(SECTOR_SIZE);
    (needed > available).then(|| MemoryShortfall {
        needed_mib: needed.div_ceil(MIB),
        available_mib: available / MIB,
    })
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Validates the window; returns (start in bytes, length in sectors).
fn window(spec: &ExportSpec, size_bytes: u64) -> Result<(u64, u64), ExportError> {
    let size_sectors = size_bytes / SECTOR_SIZE;
    let length_sectors = spec
        .length_sectors
        .unwrap_or_else(|| size_sectors.saturating_sub(spec.offset_sectors));
    let end = spec.offset_sectors.checked_add(length_sectors);
    if length_sectors == 0 || end.is_none_or(|end| end > size_sectors) {
        let needed_bytes = end.unwrap_or(u64::MAX).saturating_mul(SECTOR_SIZE);
        return Err(ExportError::Window {
            path: spec.path.clone(),
            offset_sectors: spec.offset_sectors,
            length_sectors,
            needed_bytes,
            size_bytes,
            size_sectors,
        });
    }
    Ok((spec.offset_sectors * SECTOR_SIZE, length_sectors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn spec(path: &Path) -> ExportSpec {
        ExportSpec {
            mapped_writes: true,
            ..ExportSpec::whole_file(path)
        }
    }

    fn file_of(len: u64) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        file.as_file().set_len(len).unwrap();
        file
    }

    #[test]
    fn test_window_defaults_to_rest_of_file() {
        let file = file_of(100 * 512 + 17);
        let mut s = spec(file.path());
        s.offset_sectors = 10;
        let export = Export::open(&s).unwrap();
        assert_eq!(export.sectors(), 90);
        assert_eq!(export.byte_offset(0), Some(5120));
        assert_eq!(export.byte_offset(89), Some(5120 + 89 * 512));
        assert_eq!(export.byte_offset(90), None);
        assert_eq!(export.byte_range(88, 1024), Some(5120 + 88 * 512));
        assert_eq!(export.byte_range(89, 1024), None);
        assert_eq!(export.byte_range(u64::MAX, 512), None);
        assert_eq!(export.byte_range(0, u64::MAX), None);
    }

    #[test]
    fn test_window_that_does_not_fit_is_rejected_with_sizes() {
        let file = file_of(8 * 512);
        let mut s = spec(file.path());
        s.offset_sectors = 4;
        s.length_sectors = Some(5);
        let err = Export::open(&s).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(
            err,
            ExportError::Window {
                size_sectors: 8,
                length_sectors: 5,
                ..
            }
        ));
        assert!(
            msg.contains("4096") && msg.contains(&file.path().display().to_string()),
            "{msg}"
        );
        s.offset_sectors = 8;
        s.length_sectors = None;
        assert!(matches!(
            Export::open(&s),
            Err(ExportError::Window {
                length_sectors: 0,
                ..
            })
        ));
        s.offset_sectors = u64::MAX;
        s.length_sectors = Some(2);
        assert!(matches!(Export::open(&s), Err(ExportError::Window { .. })));
    }

    #[test]
    fn test_open_rejects_missing_and_directories() {
        let s = spec(Path::new("/var/tmp/aoe-xdp-no-such-file"));
        assert!(matches!(Export::open(&s), Err(ExportError::Open { .. })));
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        assert!(matches!(
            Export::open(&spec(dir.path())),
            Err(ExportError::NotFileOrDevice { .. })
        ));
    }

    #[test]
    fn test_direct_routes_by_alignment() {
        let file = file_of(64 * 512);
        let mut s = spec(file.path());
        s.direct_io = true;
        let export = Export::open(&s).unwrap();
        let Some(align) = export.dio_align() else {
            assert!(export.direct_fallback());
            panic!("/var/tmp offers no direct I/O on this machine");
        };
        let oa = u64::from(align.offset_align);
        let direct = export.route(oa, align.offset_align, 4096);
        assert_eq!(
            direct,
            Route {
                lane: Lane::Direct,
                bounce: false
            }
        );
        if align.mem_align > 1 {
            assert!(export.route(oa, align.offset_align, 4097).bounce);
        }
        if align.offset_align > 512 {
            assert_eq!(export.route(512, 512, 4096).lane, Lane::Buffered);
        }
        assert_ne!(
            export.fd(Lane::Direct).as_raw_fd(),
            export.fd(Lane::Buffered).as_raw_fd()
        );
    }

    #[test]
    fn test_tmpfs_direct_falls_back_to_buffered() {
        let Ok(file) = tempfile::NamedTempFile::new_in("/dev/shm") else {
            return;
        };
        file.as_file().set_len(4096).unwrap();
        let mut s = spec(file.path());
        s.direct_io = true;
        let export = Export::open(&s).unwrap();
        assert!(export.direct_fallback());
        assert_eq!(export.route(0, 4096, 0).lane, Lane::Buffered);
    }

    #[test]
    fn test_read_only_export_opens_read_only() {
        let file = file_of(4096);
        let mut s = spec(file.path());
        s.read_only = true;
        let export = Export::open(&s).unwrap();
        assert!(export.read_only());
        let err = rustix::io::pwrite(export.fd(Lane::Buffered), &[0u8; 512], 0).unwrap_err();
        assert_eq!(err, rustix::io::Errno::BADF);
    }
}

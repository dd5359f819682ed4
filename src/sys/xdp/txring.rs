//! [`TxRing`]: our own mapping of an AF_XDP socket's TX ring.
//!
//! xsk-rs only transmits descriptors it made itself, and those always point at chunk + 476. A
//! jumbo packet in a slab is a chain of descriptors whose second and later entries start at a
//! chunk's first byte, so the TX ring is mapped a second time here (`mmap` of
//! `XDP_PGOFF_TX_RING` on the bound socket) and descriptors are written with any address.
//! xsk-rs' `TxQueue` is then never used to produce: this is the only producer, so its cached
//! producer index is the truth.
//!
//! Older kernels refuse a mapping made after bind: Linux 6.1 (Debian 12's) answers `EBUSY`
//! (`xsk_mmap` wants the socket unbound), where 6.18 maps. Then the ring is found where libxdp
//! mapped it for xsk-rs before the bind: the line of `/proc/self/maps` for this socket's inode
//! at offset `XDP_PGOFF_TX_RING`. That mapping is borrowed, not unmapped here.
//!
//! Contract: the socket fd, and xsk-rs' `TxQueue` (whose socket owns the borrowed mapping),
//! must stay open while the ring lives (the owner drops the ring before both). The caller
//! guarantees every descriptor it pushes describes memory it has handed to the kernel (frame
//! state `Completion`); the ring itself only checks indexes.
//!
//! Hazards: the producer index is published with a release store after the descriptors are
//! written, and the consumer index is read with an acquire load, as the kernel's ring protocol
//! requires (`tools/lib/bpf/xsk.h`). A multi-buffer packet must be published whole: the caller
//! checks [`TxRing::free`] for all its descriptors before pushing the first.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::mem::{map_read_write, parse_maps_line};

/// One mapping of an AF_XDP TX ring.
pub(crate) struct TxRing {
    map: NonNull<u8>,
    map_len: usize,
    /// Whether `map` is our own mapping (unmapped on drop) or libxdp's, borrowed.
    owned: bool,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<libc::xdp_desc>,
    mask: u32,
    size: u32,
    /// Next producer index (published by [`TxRing::submit`]).
    prod: u32,
    /// Last consumer index read from the kernel.
    cons: u32,
}

// SAFETY: the mapping is owned by this value alone (the pointers are addresses inside it), and
// every access goes through `&mut self` or reads atomics; moving it to another thread moves the
// only producer with it.
unsafe impl Send for TxRing {}

impl std::fmt::Debug for TxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxRing")
            .field("size", &self.size)
            .field("prod", &self.prod)
            .field("cons", &self.cons)
            .finish_non_exhaustive()
    }
}

impl TxRing {
    /// Maps the TX ring of the bound AF_XDP socket `fd`, which has `size` entries.
    pub(crate) fn map(fd: RawFd, size: u32) -> io::Result<TxRing> {
        assert!(size.is_power_of_two(), "TX ring size must be 2^n");
        // SAFETY: `xdp_mmap_offsets` is plain integers; all-zero is a valid value.
        let mut offsets: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = crate::sys::syscall::socklen::<libc::xdp_mmap_offsets>();
        // SAFETY: the pointers are to a live, writable `xdp_mmap_offsets` and its length.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                std::ptr::from_mut(&mut offsets).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let off = offsets.tx;
        let desc_off = usize::try_from(off.desc).expect("offset fits usize");
        let map_len = desc_off + size as usize * std::mem::size_of::<libc::xdp_desc>();
        // A shared mapping of the socket's TX ring: it aliases only the kernel's ring, which is
        // exactly the protocol's shared memory.
        let flags = libc::MAP_SHARED | libc::MAP_POPULATE;
        let (ptr, owned) = match map_read_write(map_len, flags, fd, libc::XDP_PGOFF_TX_RING) {
            Ok(ptr) => (ptr, true),
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                (existing_mapping(fd, map_len)?, false)
            }
            Err(error) => return Err(error),
        };
        let map = NonNull::new(ptr).expect("mmap never returns null on success");
        let at = |offset: u64| {
            let offset = usize::try_from(offset).expect("offset fits usize");
            assert!(offset < map_len, "ring offset outside the mapping");
            // SAFETY: `offset` is inside the mapping (checked above).
            unsafe { map.add(offset) }
        };
        let producer = at(off.producer).cast::<AtomicU32>();
        let consumer = at(off.consumer).cast::<AtomicU32>();
        let flags = at(off.flags).cast::<AtomicU32>();
        let descs = at(off.desc).cast::<libc::xdp_desc>();
        // SAFETY: the kernel places the u32 producer index at a 4-aligned offset of the mapping;
        // nobody else produces on this ring (xsk-rs' TxQueue is never used to produce).
        let prod = unsafe { producer.as_ref() }.load(Ordering::Relaxed);
        // SAFETY: as above, for the consumer index the kernel writes.
        let cons = unsafe { consumer.as_ref() }.load(Ordering::Acquire);
        Ok(TxRing {
            map,
            map_len,
            owned,
            producer,
            consumer,
            flags,
            descs,
            mask: size - 1,
            size,
            prod,
            cons,
        })
    }

    /// Free entries, reading the kernel's consumer index.
    pub(crate) fn free(&mut self) -> u32 {
        // SAFETY: `consumer` points at the kernel's consumer index inside our live mapping;
        // Acquire pairs with the kernel's release after it finished reading the descriptors.
        self.cons = unsafe { self.consumer.as_ref() }.load(Ordering::Acquire);
        self.size - self.prod.wrapping_sub(self.cons)
    }

    /// Ring size.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// Writes one descriptor at the producer position (not yet visible to the kernel). The
    /// caller has checked [`Self::free`].
    pub(crate) fn push(&mut self, addr: usize, len: usize, options: u32) {
        assert!(
            self.prod.wrapping_sub(self.cons) < self.size,
            "TX ring overflow"
        );
        let slot = (self.prod & self.mask) as usize;
        let desc = libc::xdp_desc {
            addr: u64::try_from(addr).expect("address fits u64"),
            len: u32::try_from(len).expect("descriptor length fits u32"),
            options,
        };
        // SAFETY: `slot < size`, so the entry lies inside the mapping; the kernel does not read
        // entries at or beyond the published producer index, so this write races with nothing.
        unsafe { self.descs.add(slot).write(desc) };
        self.prod = self.prod.wrapping_add(1);
    }

    /// Publishes every pushed descriptor to the kernel.
    pub(crate) fn submit(&mut self) {
        // SAFETY: `producer` is inside our live mapping; Release orders the descriptor writes
        // before the index the kernel reads with acquire.
        unsafe { self.producer.as_ref() }.store(self.prod, Ordering::Release);
    }

    /// True if the kernel asks for a `sendto` kick (`XDP_RING_NEED_WAKEUP`).
    pub(crate) fn needs_wakeup(&self) -> bool {
        // SAFETY: `flags` is inside our live mapping.
        let flags = unsafe { self.flags.as_ref() }.load(Ordering::Relaxed);
        flags & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        if !self.owned {
            // libxdp's mapping: it unmaps it when xsk-rs' socket is deleted.
            return;
        }
        // SAFETY: exactly the mapping made in `map`; no reference into it outlives `self`.
        let rc = unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
        debug_assert_eq!(rc, 0, "munmap failed: {}", io::Error::last_os_error());
    }
}

/// The TX ring mapping libxdp made for socket `fd` before its bind (at least `len` bytes): the
/// line of `/proc/self/maps` with the socket's inode at offset `XDP_PGOFF_TX_RING`.
fn existing_mapping(fd: RawFd, len: usize) -> io::Result<*mut u8> {
    // SAFETY: `stat` is plain data; all-zero is a valid value.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open (caller's contract) and `stat` is a live, writable buffer.
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let offset = u64::try_from(libc::XDP_PGOFF_TX_RING).expect("the offset is positive");
    maps.lines()
        .filter_map(parse_maps_line)
        .find(|m| m.inode == stat.st_ino && m.offset == offset && m.len >= len)
        .map(|m| m.start as *mut u8)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the kernel refused to map the TX ring after bind (EBUSY) and /proc/self/maps \
                 shows no mapping of it made before",
            )
        })
}

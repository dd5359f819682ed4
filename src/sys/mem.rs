//! Memory the kernel reads and writes: io_uring fixed buffers now, AF_XDP UMEM later.
//!
//! An [`Arena`] is one page-aligned region split into `chunk_count` chunks of `chunk_size`
//! bytes. Access to a chunk's bytes is granted only through its [`Chunk`] token, which is
//! minted exactly once per chunk (when the arena's tokens are handed to a [`ChunkPool`]), is
//! not `Clone`, and carries the id of its arena. The borrow checker then rules out aliasing
//! from safe code: `&Chunk` yields `&[u8]`, `&mut Chunk` yields `&mut [u8]`.
//!
//! Hazards:
//! - The kernel touches a chunk only while its token is held by an in-flight I/O: the io_uring
//!   wrapper ([`crate::sys::uring::Ring`]) takes the token by value when an I/O is pushed and
//!   gives it back only with the completion, so no safe reference to those bytes can exist
//!   meanwhile. An arena built with [`Arena::from_raw`] (the AF_XDP UMEM) extends that rule to
//!   the frames in the fill/RX/TX/completion rings; its owner keeps the tokens while the
//!   kernel owns the frames.
//! - The mapping must outlive every I/O that uses it: users that hand the memory to the kernel
//!   keep an `Arc<Arena>` until the kernel is done (the ring drains in-flight I/O on drop).
//! - Chunk memory is never reinterpreted as a struct; it is plain bytes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Smallest chunk size accepted (one AF_XDP frame).
pub const CHUNK_SIZE_MIN: usize = 2048;

/// Alignment the arena base guarantees (the x86_64 page size).
pub const ARENA_ALIGN: usize = 4096;

/// Source of unique arena ids; 0 is never issued so a zeroed id is always invalid.
static NEXT_ARENA_ID: AtomicU32 = AtomicU32::new(1);

/// Errors building arenas and pools.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// The chunk size is neither a power of two of at least [`CHUNK_SIZE_MIN`] nor a multiple
    /// of [`ARENA_ALIGN`].
    #[error("chunk size {0} is not a power of two >= 2048 nor a multiple of 4096")]
    BadChunkSize(usize),
    /// The chunk count is zero or does not fit a `u32` index.
    #[error("chunk count {0} is not in 1..=u32::MAX")]
    BadChunkCount(usize),
    /// `chunk_size * chunk_count` overflows.
    #[error("arena of {chunk_count} chunks of {chunk_size} bytes is too large")]
    TooLarge {
        /// Requested chunk size.
        chunk_size: usize,
        /// Requested chunk count.
        chunk_count: usize,
    },
    /// The anonymous mapping failed.
    #[error("mmap of {len} bytes failed (check memory limits)")]
    Mmap {
        /// Requested length in bytes.
        len: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A raw base pointer was null or not page-aligned.
    #[error("arena base pointer is null or not 4096-byte aligned")]
    BadPointer,
    /// The arena's chunk tokens were already handed to another pool.
    #[error("the arena's chunks already belong to a pool")]
    AlreadyPooled,
}

/// A page-aligned memory region split into equal power-of-two chunks.
#[derive(Debug)]
pub struct Arena {
    base: NonNull<u8>,
    len: usize,
    chunk_size: usize,
    chunk_count: usize,
    id: u32,
    /// True when `Drop` must `munmap` (memory mapped by [`Arena::new`]).
    owned: bool,
    /// Set once the chunk tokens have been minted; tokens are never minted twice.
    pooled: AtomicBool,
    /// For borrowed memory: whatever keeps the mapping alive (the xsk-rs `Umem`), dropped with
    /// the arena, so the memory outlives every `Arc<Arena>` (and so every registered ring).
    _keep_alive: Option<KeepAlive>,
}

/// The owner of borrowed arena memory, held only to be dropped last.
struct KeepAlive(
    #[expect(dead_code, reason = "held for its Drop only")] Box<dyn std::any::Any + Send + Sync>,
);

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepAlive")
    }
}

// SAFETY: an Arena is a plain memory region with no thread affinity. Its bytes are reachable
// from safe code only through `Chunk` tokens (unique per chunk, `&`/`&mut` discipline), so
// sharing or sending the Arena itself cannot create a data race; the raw base pointer is only
// an address.
unsafe impl Send for Arena {}
// SAFETY: see `Send`; every `&self` method either reads immutable fields or hands out byte
// slices whose exclusivity is guaranteed by the borrowed token.
unsafe impl Sync for Arena {}

impl Arena {
    /// Maps a new zero-filled arena of `chunk_count` chunks of `chunk_size` bytes.
    pub fn new(chunk_size: usize, chunk_count: usize) -> Result<Arena, MemError> {
        let len = checked_len(chunk_size, chunk_count)?;
        // An anonymous private mapping: it aliases nothing.
        let ptr = map_read_write(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
            .map_err(|source| MemError::Mmap { len, source })?;
        let base = NonNull::new(ptr).ok_or(MemError::BadPointer)?;
        Ok(Arena::assemble(base, len, chunk_size, chunk_count, true))
    }

    /// Wraps memory owned elsewhere (the AF_XDP UMEM). It is not unmapped on drop.
    ///
    /// # Safety
    ///
    /// `ptr` must point to `chunk_size * chunk_count` initialized, readable and writable bytes
    /// that stay mapped for the whole life of the returned arena (and of every `Arc` to it).
    /// Nothing but this arena's chunk tokens may grant access to that memory, and the kernel may
    /// write a chunk only while the owner of its token has handed the chunk to the kernel.
    pub unsafe fn from_raw(
        ptr: *mut u8,
        chunk_size: usize,
        chunk_count: usize,
    ) -> Result<Arena, MemError> {
        let len = checked_len(chunk_size, chunk_count)?;
        let base = NonNull::new(ptr).ok_or(MemError::BadPointer)?;
        if base.as_ptr().addr() % ARENA_ALIGN != 0 {
            return Err(MemError::BadPointer);
        }
        Ok(Arena::assemble(base, len, chunk_size, chunk_count, false))
    }

    /// Like [`Arena::from_raw`], holding `keep_alive` (the owner of the mapping) until the
    /// arena is dropped, so the memory cannot be unmapped while any `Arc<Arena>` exists.
    ///
    /// # Safety
    ///
    /// As for [`Arena::from_raw`], except that the lifetime requirement is met by
    /// `keep_alive`: dropping it last must be what unmaps the memory.
    pub unsafe fn from_raw_kept(
        ptr: *mut u8,
        chunk_size: usize,
        chunk_count: usize,
        keep_alive: Box<dyn std::any::Any + Send + Sync>,
    ) -> Result<Arena, MemError> {
        // SAFETY: forwarded contract; `keep_alive` keeps the mapping for the arena's life.
        let mut arena = unsafe { Arena::from_raw(ptr, chunk_size, chunk_count)? };
        arena._keep_alive = Some(KeepAlive(keep_alive));
        Ok(arena)
    }

    fn assemble(
        base: NonNull<u8>,
        len: usize,
        chunk_size: usize,
        chunk_count: usize,
        owned: bool,
    ) -> Arena {
        let id = NEXT_ARENA_ID.fetch_add(1, Ordering::Relaxed);
        assert_ne!(id, 0, "arena id counter wrapped");
        let pooled = AtomicBool::new(false);
        Arena {
            base,
            len,
            chunk_size,
            chunk_count,
            id,
            owned,
            pooled,
            _keep_alive: None,
        }
    }

    /// Address of the first byte (page-aligned). Only an address: dereferencing it is the
    /// kernel's business, under the token rules in the module docs.
    pub fn base_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Length in bytes (`chunk_size * chunk_count`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an arena has at least one chunk.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per chunk: a power of two of at least [`CHUNK_SIZE_MIN`], or a multiple of
    /// [`ARENA_ALIGN`] (the AF_XDP jumbo slabs: three 4096-byte frames).
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunk_count
    }

    /// Process-unique id of this arena, carried by each of its chunk tokens.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Whether `chunk` is a token of this arena.
    pub fn owns(&self, chunk: &Chunk) -> bool {
        chunk.arena_id == self.id
    }

    /// Offset of `chunk`'s first byte from the arena base. Panics on a foreign chunk.
    pub fn offset(&self, chunk: &Chunk) -> usize {
        assert!(
            self.owns(chunk),
            "chunk of arena {} used with arena {}",
            chunk.arena_id,
            self.id
        );
        chunk.index() * self.chunk_size
    }

    /// The bytes of `chunk`. Panics on a foreign chunk.
    pub fn bytes<'a>(&'a self, chunk: &'a Chunk) -> &'a [u8] {
        let offset = self.offset(chunk);
        // SAFETY: `offset + chunk_size <= len` because the token's index is < chunk_count, and
        // the mapping lives as long as `self`. The token is unique per chunk and only shared
        // here (`&Chunk`), so no `&mut` to these bytes exists for 'a; the kernel does not write
        // a chunk while safe code can borrow its token (module docs).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), self.chunk_size) }
    }

    /// The bytes of `chunk`, writable. Panics on a foreign chunk.
    pub fn bytes_mut<'a>(&'a self, chunk: &'a mut Chunk) -> &'a mut [u8] {
        let offset = self.offset(chunk);
        // SAFETY: in bounds and alive as in `bytes`. The token is unique per chunk and
        // exclusively borrowed for 'a, so this is the only reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(offset), self.chunk_size) }
    }

    /// Mints every chunk token, once per arena.
    pub(crate) fn take_chunks(
        &self,
    ) -> Result<impl DoubleEndedIterator<Item = Chunk> + '_, MemError> {
        if self.pooled.swap(true, Ordering::AcqRel) {
            return Err(MemError::AlreadyPooled);
        }
        let count = u32::try_from(self.chunk_count).expect("checked in checked_len");
        Ok((0..count).map(|index| Chunk {
            arena_id: self.id,
            index,
        }))
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // SAFETY: `base`/`len` are exactly the mapping made in `Arena::new`. No reference to it
        // outlives `self` (slices borrow `self`), and every kernel user (io_uring registration)
        // holds an `Arc<Arena>` until its I/O is finished, so this is the last user.
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
        debug_assert_eq!(rc, 0, "munmap failed: {}", std::io::Error::last_os_error());
    }
}

fn checked_len(chunk_size: usize, chunk_count: usize) -> Result<usize, MemError> {
    let shape_ok = chunk_size.is_power_of_two() || chunk_size % ARENA_ALIGN == 0;
    if !shape_ok || chunk_size < CHUNK_SIZE_MIN {
        return Err(MemError::BadChunkSize(chunk_size));
    }
    if chunk_count == 0 || u32::try_from(chunk_count).is_err() {
        return Err(MemError::BadChunkCount(chunk_count));
    }
    chunk_size
        .checked_mul(chunk_count)
        .filter(|len| *len <= isize::MAX as usize)
        .ok_or(MemError::TooLarge {
            chunk_size,
            chunk_count,
        })
}

/// Exclusive right to one chunk of one arena. Not `Clone`; minted only by [`ChunkPool::new`].
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    arena_id: u32,
    index: u32,
}

impl Chunk {
    /// Index of the chunk in its arena.
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// Id of the arena the chunk belongs to.
    pub fn arena_id(&self) -> u32 {
        self.arena_id
    }
}

/// Owner of an arena's chunk tokens: a preallocated free list.
pub struct ChunkPool {
    arena: Arc<Arena>,
    free: Vec<Chunk>,
    /// `is_free[i]` mirrors "token i is in `free`", for pair assertions.
    is_free: Vec<bool>,
}

impl ChunkPool {
    /// Takes all of `arena`'s chunk tokens; fails if another pool already took them.
    pub fn new(arena: Arc<Arena>) -> Result<ChunkPool, MemError> {
        // Reversed so that `alloc` hands out chunk 0 first.
        let free: Vec<Chunk> = arena.take_chunks()?.rev().collect();
        let is_free = vec![true; free.len()];
        Ok(ChunkPool {
            arena,
            free,
            is_free,
        })
    }

    /// Takes a free chunk, if any.
    pub fn alloc(&mut self) -> Option<Chunk> {
        let chunk = self.free.pop()?;
        assert!(
            self.is_free[chunk.index()],
            "free list held a chunk marked in use"
        );
        self.is_free[chunk.index()] = false;
        Some(chunk)
    }

    /// Returns a chunk. Panics if it belongs to another arena or is already free.
    pub fn free(&mut self, chunk: Chunk) {
        assert!(self.arena.owns(&chunk), "chunk freed into the wrong pool");
        assert!(
            !self.is_free[chunk.index()],
            "chunk {} freed twice",
            chunk.index()
        );
        self.is_free[chunk.index()] = true;
        self.free.push(chunk);
    }

    /// The bytes of `chunk` (the full chunk).
    pub fn bytes<'a>(&'a self, chunk: &'a Chunk) -> &'a [u8] {
        self.arena.bytes(chunk)
    }

    /// The bytes of `chunk`, writable (the full chunk).
    pub fn bytes_mut<'a>(&'a self, chunk: &'a mut Chunk) -> &'a mut [u8] {
        self.arena.bytes_mut(chunk)
    }

    /// Offset of `chunk` in the arena (the AF_XDP frame address).
    pub fn addr(&self, chunk: &Chunk) -> u64 {
        self.arena.offset(chunk) as u64
    }

    /// The arena the pool hands out.
    pub fn arena(&self) -> &Arc<Arena> {
        &self.arena
    }

    /// Number of free chunks.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

impl std::fmt::Debug for ChunkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkPool")
            .field("arena", &self.arena.id())
            .field("chunk_count", &self.arena.chunk_count())
            .field("free_count", &self.free_count())
            .finish()
    }
}

/// `mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, offset)`: a new readable and writable
/// mapping at an address the kernel chooses. The caller owns it (and unmaps it).
///
/// # Panics
/// If `flags` has `MAP_FIXED` (which would replace existing mappings).
pub(crate) fn map_read_write(
    len: usize,
    flags: libc::c_int,
    fd: libc::c_int,
    offset: libc::off_t,
) -> io::Result<*mut u8> {
    assert_eq!(
        flags & libc::MAP_FIXED,
        0,
        "MAP_FIXED would replace mappings"
    );
    // SAFETY: without MAP_FIXED and with a null hint the kernel picks a free range: no existing
    // memory is affected. Invalid arguments fail with MAP_FAILED, checked below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            fd,
            offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast::<u8>())
}

/// A memory mapping, unmapped on drop.
pub(crate) struct Mapping {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

// SAFETY: a `Mapping` is the sole owner of its address range (like a `Box<[u8]>`); moving it to
// another thread moves that ownership. All access goes through its owner (a `PacketPort`'s RX ring,
// a `FrameArea`), whose `&self`/`&mut self` and frame ownership rules serialize it.
unsafe impl Send for Mapping {}

// SAFETY: shared references to a `Mapping` only read its address and length (`at` computes a
// pointer; every dereference is done by its owner under its frame rules). The
// frame area's `Arc` is also held by the io_uring arena only to keep the memory mapped.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(len, PROT_READ | PROT_WRITE, flags, fd, 0)`.
    pub(crate) fn new(
        len: usize,
        flags: libc::c_int,
        fd: Option<BorrowedFd<'_>>,
    ) -> io::Result<Mapping> {
        let raw_fd = fd.map_or(-1, |fd| fd.as_raw_fd());
        let ptr = map_read_write(len, flags, raw_fd, 0)?;
        let ptr = NonNull::new(ptr).expect("mmap never returns null on success");
        Ok(Mapping { ptr, len })
    }

    /// Address of byte `offset`.
    pub(crate) fn at(&self, offset: usize) -> *mut u8 {
        assert!(offset < self.len, "offset {offset:#x} outside the mapping");
        // SAFETY: `offset` is inside the mapping (checked above), so the result stays in the
        // same allocation.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The 4-aligned `u32` word at `offset`, as an atomic: a status word the kernel reads and
    /// writes concurrently with single-word accesses.
    pub(crate) fn status_word(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset % 4 == 0 && offset + 4 <= self.len,
            "status word at {offset:#x}"
        );
        // SAFETY: in bounds and 4-aligned (the mapping is page-aligned; checked above), and it
        // lives as long as `self`. Only atomic accesses are made through this view while the
        // kernel may access the word; non-atomic reads of the same word happen only while user
        // space owns the slot or block (the kernel does not write it then).
        unsafe { AtomicU32::from_ptr(self.at(offset).cast()) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns; nothing
        // borrows it any more (borrows are tied to the owner, which is being dropped).
        let ret = unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        debug_assert_eq!(ret, 0, "munmap: {}", io::Error::last_os_error());
    }
}

/// One line of `/proc/PID/maps`: the mapping's addresses, file offset and inode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MapsLine {
    pub start: usize,
    pub len: usize,
    pub offset: u64,
    pub inode: u64,
}

/// `start-end perms offset dev inode [path]`, all numbers but the inode in hexadecimal.
pub(crate) fn parse_maps_line(line: &str) -> Option<MapsLine> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let _perms = fields.next()?;
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    Some(MapsLine {
        start,
        len: end.checked_sub(start)?,
        offset,
        inode,
    })
}

/// The size of a memory page (4096 where `sysconf` cannot say).
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_arena_rejects_bad_geometry() {
        assert!(matches!(
            Arena::new(1000, 4),
            Err(MemError::BadChunkSize(1000))
        ));
        assert!(matches!(
            Arena::new(1024, 4),
            Err(MemError::BadChunkSize(1024))
        ));
        assert!(matches!(
            Arena::new(4096, 0),
            Err(MemError::BadChunkCount(0))
        ));
        assert!(matches!(
            Arena::new(4096 + 2048, 2),
            Err(MemError::BadChunkSize(6144))
        ));
        // Whole pages need not be a power of two (a 3-frame jumbo slab).
        let slabs = Arena::new(3 * 4096, 2).unwrap();
        assert_eq!((slabs.chunk_size(), slabs.len()), (12288, 24576));
        assert!(matches!(
            Arena::new(1 << 62, 8),
            Err(MemError::TooLarge { .. })
        ));
    }

    #[test]
    fn test_arena_is_page_aligned_and_zeroed() {
        let arena = Arc::new(Arena::new(2048, 5).unwrap());
        assert_eq!(arena.base_ptr().addr() % ARENA_ALIGN, 0);
        assert_eq!(arena.len(), 2048 * 5);
        let pool = ChunkPool::new(arena).unwrap();
        assert_eq!(pool.free_count(), 5);
        let mut pool = pool;
        let chunk = pool.alloc().unwrap();
        assert!(pool.bytes(&chunk).iter().all(|b| *b == 0));
        pool.free(chunk);
    }

    #[test]
    fn test_pool_alloc_free_and_bytes_are_disjoint() {
        let arena = Arc::new(Arena::new(4096, 3).unwrap());
        let mut pool = ChunkPool::new(Arc::clone(&arena)).unwrap();
        let mut a = pool.alloc().unwrap();
        let mut b = pool.alloc().unwrap();
        assert_eq!((a.index(), b.index()), (0, 1));
        assert_eq!(pool.addr(&b), 4096);
        pool.bytes_mut(&mut a).fill(0xAA);
        pool.bytes_mut(&mut b).fill(0xBB);
        assert!(pool.bytes(&a).iter().all(|x| *x == 0xAA));
        assert_eq!(pool.bytes(&b).len(), 4096);
        assert!(arena.bytes(&b).iter().all(|x| *x == 0xBB));
        let c = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        pool.free(b);
        pool.free(a);
        pool.free(c);
        assert_eq!(pool.free_count(), 3);
    }

    #[test]
    fn test_tokens_are_minted_once() {
        let arena = Arc::new(Arena::new(2048, 1).unwrap());
        let _pool = ChunkPool::new(Arc::clone(&arena)).unwrap();
        assert!(matches!(
            ChunkPool::new(arena),
            Err(MemError::AlreadyPooled)
        ));
    }

    #[test]
    #[should_panic(expected = "wrong pool")]
    fn test_free_into_wrong_pool_panics() {
        let mut p1 = ChunkPool::new(Arc::new(Arena::new(2048, 1).unwrap())).unwrap();
        let mut p2 = ChunkPool::new(Arc::new(Arena::new(2048, 1).unwrap())).unwrap();
        let c = p1.alloc().unwrap();
        let _ = p2.alloc();
        p2.free(c);
    }

    #[test]
    #[should_panic(expected = "used with arena")]
    fn test_foreign_chunk_bytes_panics() {
        let mut p1 = ChunkPool::new(Arc::new(Arena::new(2048, 1).unwrap())).unwrap();
        let p2 = ChunkPool::new(Arc::new(Arena::new(2048, 1).unwrap())).unwrap();
        let c = p1.alloc().unwrap();
        let _ = p2.bytes(&c);
    }

    #[test]
    fn test_from_raw_checks_pointer_and_does_not_unmap() {
        let owner = Arena::new(4096, 2).unwrap();
        // SAFETY: `owner` maps 8192 bytes and outlives `view`; no tokens of `owner` exist.
        let view = unsafe { Arena::from_raw(owner.base_ptr(), 4096, 2) }.unwrap();
        assert_eq!(view.base_ptr(), owner.base_ptr());
        // SAFETY: the pointer is rejected before any use.
        let misaligned = unsafe { Arena::from_raw(owner.base_ptr().wrapping_add(8), 4096, 1) };
        assert!(matches!(misaligned, Err(MemError::BadPointer)));
        drop(view);
        let mut pool = ChunkPool::new(Arc::new(owner)).unwrap();
        let mut c = pool.alloc().unwrap();
        pool.bytes_mut(&mut c)[0] = 1; // still mapped after `view` dropped
        pool.free(c);
    }

    #[test]
    fn test_parse_maps_line() {
        let line = "7f1c2a400000-7f1c2a411000 rw-s 80000000 00:08 38211   socket:[38211]";
        assert_eq!(
            parse_maps_line(line),
            Some(MapsLine {
                start: 0x7f1c_2a40_0000,
                len: 0x11000,
                offset: 0x8000_0000,
                inode: 38211,
            })
        );
        let anonymous = "7ffd4b1e0000-7ffd4b201000 rw-p 00000000 00:00 0 ";
        assert_eq!(parse_maps_line(anonymous).map(|m| m.inode), Some(0));
        assert_eq!(parse_maps_line("garbage"), None);
        assert_eq!(parse_maps_line("2000-1000 rw-p 0 00:00 0"), None);
    }
}

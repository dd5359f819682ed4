//! What talks to the kernel: the only folder of the crate with `unsafe`.
//!
//! Everything here touches memory the kernel reads or writes concurrently (the UMEM and the
//! four AF_XDP rings, the AF_PACKET RX rings, io_uring's submission and completion queues, file
//! mappings) or makes raw syscalls (`bpf`, `setsockopt`, `mmap`, `sendmmsg`, `sendto`/`recvfrom`
//! kicks), where the compiler cannot check who owns a buffer at a given moment. Each submodule
//! turns its contract into safe types, so the rest of the crate (`#![deny(unsafe_code)]` in
//! `lib.rs`) sees only move-only handles and checked calls. Every `unsafe` block carries a
//! `// SAFETY:` comment; each file's `//!` doc states its contract and hazards.
//!
//! - [`mem`]: page-aligned arenas split into chunks; a [`mem::Chunk`] is a move-only token that
//!   io_uring holds while an I/O is in flight and hands back on completion.
//! - [`layout`]: where a packet and its payload sit in a chunk (both ports).
//! - [`frame`]: frame ownership ([`frame::FramePool`], [`frame::Frame`]) for both ports.
//! - [`frame_area`]: frames in private memory (the AF_PACKET port's, the in-memory port's).
//! - [`xdp`]: AF_XDP — the XDP program's loader and ABI, the XSK socket, UMEM and TX ring, and
//!   the destination rule [`xdp::DstFilter`].
//! - [`packet`]: AF_PACKET — the fallback transport's port (a TPACKET RX ring, `sendmmsg` on a
//!   socket of its own), and the plain and burst sockets the initiator side uses.
//! - [`uring`]: the io_uring ring the storage engine submits through.
//! - [`filemap`]: shared file mappings and the SIGBUS handler that turns a fault into an error.
//! - [`pagecache`]: which pages of a file the page cache holds, in which folio sizes (tests),
//!   and how often the kernel evicted page-cache pages (`/proc/vmstat`, for the supervisor).
//! - [`syscall`]: the small helpers every other file uses: the one error type that names the
//!   failed call, `socklen`, the `sockaddr_ll` bind, the `poll` of one socket.
//! - [`interface`]: facts about a network interface (index, MAC, MTU, RX queues).
//! - [`cpu`]: cache prefetch hints.
//! - [`napi`]: an interface's NAPIs (generic netlink) and a `poll` that busy-polls them first
//!   (io_uring), for drivers that tie no NAPI to a socket (veth).
//! - [`wake`]: a sleeping worker's eventfd wake-up and the `poll` over all it waits on.
#![allow(
    unsafe_code,
    reason = "kernel-shared memory and raw syscalls live here; see module docs"
)]

pub mod cpu;
pub mod filemap;
pub mod frame;
pub mod frame_area;
pub mod interface;
pub mod layout;
pub mod mem;
pub mod napi;
pub mod packet;
pub mod pagecache;
pub mod syscall;
pub mod uring;
pub mod wake;
pub mod xdp;

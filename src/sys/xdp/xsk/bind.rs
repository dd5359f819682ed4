//! Binding an [`XskPort`]: the UMEM, the socket with the four rings (zero-copy first, then copy
//! mode; multi-buffer first at a jumbo MTU), our mapping of the TX ring, the io_uring arenas of
//! the frames and slabs, and the hints that name the likely fix when the kernel refuses; then
//! what the bind got: the interface, queue, bind mode and socket fd.
//!
//! Hazards: the socket is bound in the calling thread's network namespace; a second bind on
//! the same (interface, queue) fails with `EBUSY`; a retry after a refused bind reuses the same
//! UMEM (xsk-rs keeps its fill and completion rings).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use xsk_rs::config::{BindFlags, LibxdpFlags, QueueSize, SocketConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue};

use super::config::validate;
use super::{BindPreference, XskConfig, XskError, XskPort, FILL_TARGET_START};
use crate::sys::frame::{FramePool, JumboStats, Lender, RX_BURST_MAX};
use crate::sys::layout::{FRAME_CAPACITY, FRAME_SIZE, SLAB_CHUNKS, SLAB_SIZE};
use crate::sys::mem::Arena;
use crate::sys::xdp::txring::TxRing;
use crate::sys::xdp::umem::UmemArea;

/// The bind mode in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The NIC DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM.
    Copy,
}

impl XskPort {
    /// Creates a UMEM and binds a socket to `interface` queue `queue_id` (in the calling thread's
    /// network namespace), then fills the fill ring.
    pub fn bind(interface: &str, queue_id: u32, config: &XskConfig) -> Result<XskPort, XskError> {
        validate(config)?;
        // Multi-buffer and slabs only where frames can be longer than a chunk.
        let jumbo = crate::sys::interface::mtu(interface).map_or(true, |mtu| {
            usize::try_from(mtu).map_or(true, |mtu| {
                mtu + crate::wire::VLAN_HEADER_LEN > FRAME_CAPACITY
            })
        });
        let slab_chunks = if jumbo {
            config.slab_count() as usize * SLAB_CHUNKS
        } else {
            0
        };
        let chunks = u32::try_from(config.frame_count as usize + slab_chunks).map_err(|_| {
            XskError::Config {
                what: "too many frames",
            }
        })?;
        let umem = UmemArea::new(chunks, config.fill_ring_size, config.comp_ring_size)?;
        let modes: &[BindMode] = match config.bind {
            BindPreference::Auto => &[BindMode::ZeroCopy, BindMode::Copy],
            BindPreference::ZeroCopy => &[BindMode::ZeroCopy],
            BindPreference::Copy => &[BindMode::Copy],
        };
        // At a jumbo MTU, multi-buffer first (in copy mode rather than zero-copy without it);
        // a kernel or driver without it (before Linux 6.6 in copy mode) gets a port without
        // slabs, limited to one chunk per frame.
        let multi_buffer_options: &[bool] = if jumbo { &[true, false] } else { &[false] };
        let attempts: Vec<(BindMode, bool)> = multi_buffer_options
            .iter()
            .flat_map(|&sg| modes.iter().map(move |&mode| (mode, sg)))
            .collect();
        let if_name = interface
            .parse::<xsk_rs::config::Interface>()
            .map_err(|_| XskError::Config {
                what: "interface name contains a NUL byte",
            })?;
        let mut last_error = None;
        for &(mode, multi_buffer) in &attempts {
            let socket_config = socket_config(config, mode, multi_buffer)?;
            // SAFETY: the UMEM is fresh and not shared with any other socket, so the
            // INHIBIT_PROG_LOAD requirement for shared UMEMs does not apply (and we set that
            // flag anyway: our own XDP program does the redirect). xsk-rs keeps the fill and
            // completion rings it was handed when a bind fails, so a retry on the same UMEM is
            // supported.
            let created =
                unsafe { xsk_rs::Socket::new(socket_config, umem.xsk(), &if_name, queue_id) };
            match created {
                Ok((tx, rx, Some((fill, comp)))) => {
                    if jumbo && !multi_buffer {
                        tracing::warn!(
                            interface,
                            queue_id,
                            "no multi-buffer AF_XDP (XDP_USE_SG): frames limited to one \
                             4 KiB chunk (7 sectors) despite the jumbo MTU"
                        );
                    }
                    tracing::info!(
                        interface,
                        queue_id,
                        ?mode,
                        multi_buffer,
                        "AF_XDP socket bound"
                    );
                    let rings = Rings { tx, rx, fill, comp };
                    let bound = Bound {
                        mode,
                        multi_buffer,
                        interface,
                        queue_id,
                    };
                    let mut port = Self::assemble(umem, rings, config, bound)?;
                    port.refill()?;
                    return Ok(port);
                }
                Ok((_, _, None)) => {
                    unreachable!("a fresh UMEM always gets its own fill and completion rings")
                }
                Err(source) => {
                    let errno = bind_errno(&source);
                    if multi_buffer {
                        tracing::debug!(interface, queue_id, ?mode, ?errno, "XDP_USE_SG refused");
                    }
                    if mode == BindMode::ZeroCopy && modes.len() > 1 {
                        tracing::info!(
                            interface,
                            queue_id,
                            ?errno,
                            "zero-copy bind refused, using copy mode"
                        );
                    }
                    last_error = Some(XskError::Bind {
                        interface: interface.to_owned(),
                        queue_id,
                        mode: if mode == BindMode::ZeroCopy {
                            "zero-copy"
                        } else {
                            "copy mode"
                        },
                        hint: bind_hint(errno),
                        source,
                    });
                }
            }
        }
        Err(last_error.expect("at least one bind mode was tried"))
    }

    fn assemble(
        umem: UmemArea,
        rings: Rings,
        config: &XskConfig,
        bound: Bound<'_>,
    ) -> Result<Self, XskError> {
        let Rings { tx, rx, fill, comp } = rings;
        let frame_count = config.frame_count;
        let slab_count = if bound.multi_buffer {
            config.slab_count()
        } else {
            0
        };
        let descs: Vec<FrameDesc> = (0..frame_count)
            .map(|index| umem.canonical(index))
            .collect();
        let scratch_len =
            (config.fill_ring_size.max(config.comp_ring_size) as usize).max(RX_BURST_MAX);
        let scratch = vec![umem.canonical(0); scratch_len];
        let tx_queued = Vec::with_capacity((frame_count + slab_count) as usize);
        // SAFETY: the UMEM mapping starts with `frame_count` frames of FRAME_SIZE bytes from
        // `base_ptr`, page-aligned; the clone of the xsk-rs `Umem` kept by the arena owns the
        // mapping, so it stays mapped as long as the arena. The arena's chunk tokens are minted
        // once, in the lender, and handed out only for frames the application holds (`lend`),
        // so the kernel's AF_XDP side never owns a chunk whose token is out.
        let io_arena = unsafe {
            Arena::from_raw_kept(
                umem.base_ptr().as_ptr(),
                FRAME_SIZE,
                frame_count as usize,
                Box::new(umem.xsk().clone()),
            )
        }
        .expect("the UMEM is a page-aligned mapping of whole frames");
        let slab_arena = (slab_count > 0).then(|| {
            let offset = frame_count as usize * FRAME_SIZE;
            assert!(offset + slab_count as usize * SLAB_SIZE <= umem.len());
            // SAFETY: the slab region follows the frames inside the same mapping (checked
            // above), page-aligned; the `Umem` clone keeps it mapped. Slabs are never put on the
            // fill ring, and a slab's token is lent only while the application holds the slab.
            unsafe {
                Arena::from_raw_kept(
                    umem.base_ptr().as_ptr().add(offset),
                    SLAB_SIZE,
                    slab_count as usize,
                    Box::new(umem.xsk().clone()),
                )
            }
            .expect("the slab region is a page-aligned run of whole slabs")
        });
        let lender = Lender::with_slabs(io_arena, slab_arena);
        let txring = TxRing::map(rx.fd().as_raw_fd(), config.tx_ring_size).map_err(|source| {
            XskError::Syscall {
                call: "mmap (TX ring)",
                source,
            }
        })?;
        Ok(Self {
            txring,
            lender,
            tx,
            rx,
            fill,
            comp,
            pool: FramePool::with_slabs(frame_count, slab_count),
            descs,
            scratch,
            tx_queued,
            slab_pending: vec![0; slab_count as usize],
            rx_partial: None,
            jumbo: JumboStats::default(),
            multi_buffer: bound.multi_buffer,
            busy_poll: false,
            busy_poll_pending: false,
            wait_napi: None,
            fill_target: FILL_TARGET_START.min(config.fill_ring_size.min(frame_count)),
            fill_max: config.fill_ring_size.min(frame_count),
            fill_held: 0,
            bind_mode: bound.mode,
            interface: bound.interface.to_owned(),
            queue_id: bound.queue_id,
            program_counters: None,
            umem,
        })
    }
}

impl XskPort {
    /// Zero-copy or copy mode.
    pub fn bind_mode(&self) -> BindMode {
        self.bind_mode
    }

    /// The interface name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The RX queue.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// The socket fd, for `XdpProgram::insert_socket` and for `poll`/`epoll`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the socket, which the rings keep open for as long as `self`
        // lives; the returned borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.rx.fd().as_raw_fd()) }
    }
}

/// The rings xsk-rs hands back on a successful bind.
struct Rings {
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
}

/// What a successful bind got.
struct Bound<'a> {
    mode: BindMode,
    multi_buffer: bool,
    interface: &'a str,
    queue_id: u32,
}

fn socket_config(
    config: &XskConfig,
    mode: BindMode,
    multi_buffer: bool,
) -> Result<SocketConfig, XskError> {
    let size = |size| QueueSize::new(size).map_err(|_| XskError::Config { what: "ring size" });
    let mut copy_flag = match mode {
        BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
        BindMode::Copy => BindFlags::XDP_COPY,
    };
    if multi_buffer {
        copy_flag |= BindFlags::XDP_USE_SG;
    }
    Ok(SocketConfig::builder()
        .rx_queue_size(size(config.rx_ring_size)?)
        .tx_queue_size(size(config.tx_ring_size)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(copy_flag | BindFlags::XDP_USE_NEED_WAKEUP)
        .build())
}

/// The kernel errno behind an xsk-rs socket error, if any.
fn bind_errno(error: &xsk_rs::socket::SocketCreateError) -> Option<i32> {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error)
}

fn bind_hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EPERM | libc::EACCES) => {
            "permission denied: run as root (needs CAP_NET_RAW and CAP_NET_ADMIN)"
        }
        Some(libc::ENODEV) => "no such interface in this network namespace",
        Some(libc::EBUSY) => "another AF_XDP socket is already bound to this queue",
        Some(libc::EOPNOTSUPP) => "the driver does not support zero-copy AF_XDP (use copy mode)",
        Some(libc::EINVAL) => "the queue id does not exist on this interface (check ethtool -l)",
        Some(libc::ENOMEM | libc::ENOBUFS) => {
            "out of locked memory: run as root or raise RLIMIT_MEMLOCK (ulimit -l), or use \
             smaller rings"
        }
        _ => "unexpected error from the kernel",
    }
}

#[cfg(test)]
mod tests {
    use super::bind_hint;

    #[test]
    fn test_bind_hints_name_the_fix() {
        assert!(bind_hint(Some(libc::EPERM)).contains("run as root"));
        assert!(bind_hint(Some(libc::EOPNOTSUPP)).contains("copy mode"));
        assert!(bind_hint(Some(libc::EBUSY)).contains("already bound"));
    }
}

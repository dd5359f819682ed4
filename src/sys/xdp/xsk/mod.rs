//! [`XskPort`]: one AF_XDP socket bound to one (interface, RX queue), with its own UMEM.
//!
//! Contract: the port owns the UMEM, the four rings and a [`FramePool`] that owns every frame
//! (see `frame.rs` for the ownership states). The data path is safe and does not allocate:
//!
//! ```text
//! loop {
//!     port.reap_completions();          // TX frames the kernel is done with -> Free
//!     port.refill()?;                   // Free -> fill ring (kicks the kernel if it asks)
//!     for frame in port.rx_burst(32) {  // RX ring -> Frame handles
//!         // read port.data(&frame), build the reply in port.data_mut(&mut frame)
//!         port.transmit(frame, reply_len);   // or port.release(frame)
//!     }
//!     port.flush_tx()?;                 // queued frames -> TX ring, sendto() kicks if needed
//! }
//! ```
//!
//! Binding tries zero-copy first and falls back to copy mode (veth refuses zero-copy with
//! EOPNOTSUPP); [`XskPort::bind_mode`] reports what is in use. The socket is bound with
//! `XDP_USE_NEED_WAKEUP`; in copy mode the kernel always asks for a TX kick and sends at most 32
//! frames per kick, so `flush_tx` costs one `sendto` per 32 frames. An XDP program must redirect
//! the queue's traffic to this socket (`XdpProgram::insert_socket(queue, port.fd())`); the port
//! never loads one itself.
//!
//! Jumbo frames: on an interface whose MTU does not fit one chunk, the UMEM also holds
//! [`XskConfig::slab_count`] slabs of three chunks (see `umem.rs`), and the socket is bound with
//! `XDP_USE_SG` (multi-buffer; in copy mode if zero-copy refuses it). A packet that arrives
//! in several descriptors is copied into a free slab (the one bounce copy, counted in
//! [`XskPort::jumbo_stats`]), its fragment chunks go straight back to the free list, and
//! `rx_burst` yields one [`Frame`] whose [`XskPort::data`] is the whole packet, contiguous. A
//! slab frame is transmitted without a copy as a chain of descriptors (`XDP_PKT_CONTD` on all
//! but the last) written to our own mapping of the TX ring (`txring.rs`: xsk-rs can only
//! describe chunk + 476). [`XskPort::upgrade`] moves a small request into a slab so that a big
//! reply (a 17-sector read) can be built in place; [`XskPort::max_frame_len`] says how long a
//! frame this port can carry. Slabs are a second io_uring arena ([`XskPort::slab_arena`]) and
//! are lent and reclaimed like frames.
//!
//! Hazards:
//! - One port per (interface, queue); a second bind on the same pair fails with EBUSY.
//! - Frames sent shorter than 60 bytes are zero-padded to 60: veth does not pad, and some
//!   initiators (aoeping) ignore runts.
//! - Dropping the port with frames still held by the application is allowed, but the handles
//!   then panic when dropped (release them first).
//! - The socket is bound in the calling thread's network namespace (libxdp resolves the name).
//!
//! One concern a file: the configuration and its checks (`config.rs`), binding (`bind.rs`), the
//! port's state and what it says about itself (`port.rs`), the frames the application holds
//! (`frames.rs`), the receive path (`rx.rs`), the transmit path (`tx.rs`), statistics
//! (`stats.rs`), busy polling (`busy_poll.rs`) and [`XskError`] (`error.rs`).
//!
//! [`FramePool`]: crate::sys::frame::FramePool
//! [`Frame`]: crate::sys::frame::Frame

mod bind;
mod busy_poll;
mod config;
mod error;
mod frames;
mod port;
mod rx;
mod stats;
mod tx;

pub use bind::BindMode;
pub use busy_poll::BusyPoll;
pub use config::{BindPreference, XskConfig, FILL_TARGET_START};
pub use error::XskError;
pub use port::XskPort;
pub use stats::XskStats;

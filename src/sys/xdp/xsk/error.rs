//! [`XskError`]: what can fail in creating, binding or driving an AF_XDP port.
//!
//! A failed bind names the likely cause and fix (`bind.rs`); a failed syscall on the data path
//! names the call.

use std::io;

use super::super::umem::UmemError;

/// Errors creating or driving a port.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// The UMEM could not be created.
    #[error(transparent)]
    Umem(#[from] UmemError),
    /// A configuration value is invalid.
    #[error("invalid XSK configuration: {what}")]
    Config {
        /// What is wrong.
        what: &'static str,
    },
    /// Creating or binding the socket failed.
    #[error("cannot bind AF_XDP socket to {interface} queue {queue_id} ({mode}): {hint}")]
    Bind {
        /// Interface name.
        interface: String,
        /// RX queue.
        queue_id: u32,
        /// The bind mode tried last.
        mode: &'static str,
        /// Likely cause and fix.
        hint: &'static str,
        /// What xsk-rs reported (with the kernel's errno as its source).
        #[source]
        source: xsk_rs::socket::SocketCreateError,
    },
    /// A socket syscall failed.
    #[error("{call} failed on the AF_XDP socket: {source}")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
}

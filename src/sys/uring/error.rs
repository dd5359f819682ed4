//! [`RingError`]: what can fail in setting up a ring, registering with it, and entering it.
//!
//! Submission itself does not fail: a full ring hands the request back
//! ([`Full`](super::Full)), and an I/O error is the completion's result.

use std::io;

/// Errors of ring set-up and submission.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// `io_uring_setup` failed even without optional flags.
    #[error(
        "io_uring_setup({entries}) failed; check sysctl kernel.io_uring_disabled and ulimit -l"
    )]
    Setup {
        /// Requested queue depth.
        entries: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Setting the io-wq CPU affinity failed.
    #[error("setting the io_uring worker CPU affinity failed")]
    IoWorkerAffinity(#[source] io::Error),
    /// Arenas can be registered only once per ring.
    #[error("arenas are already registered with this ring")]
    AlreadyRegistered,
    /// Buffer registration failed.
    #[error("registering {count} arenas as fixed buffers failed (each must be <= 1 GiB)")]
    RegisterBuffers {
        /// Number of arenas.
        count: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// File registration failed.
    #[error("registering {count} files failed")]
    RegisterFiles {
        /// Number of files.
        count: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Enabling a ring created disabled failed.
    #[error("enabling the ring failed")]
    Enable(#[source] io::Error),
    /// `io_uring_enter` failed.
    #[error("io_uring_enter failed")]
    Enter(#[source] io::Error),
    /// Creating or registering the completion eventfd failed.
    #[error("registering an eventfd for completions failed")]
    RegisterEventfd(#[source] io::Error),
}

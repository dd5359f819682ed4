//! Setting a ring up: what the caller asks for ([`RingOptions`]), what the kernel accepted
//! ([`SetupMode`]), and [`build`], which drops optional set-up flags one step at a time until
//! `io_uring_setup` succeeds (older kernels refuse `SINGLE_ISSUER` and `DEFER_TASKRUN` with
//! `EINVAL`).
//!
//! Hazard: a ring set up with `single_issuer` is created disabled (`R_DISABLED`); the ring
//! enables it from the first thread that submits ([`super::Ring::submit`]).

use std::io;

use io_uring::IoUring;

use super::RingError;

/// Largest `max_segments` accepted (the kernel's `UIO_MAXIOV`).
pub const SEGMENTS_MAX: usize = 1024;

/// Ring set-up wishes; the ring falls back to what the kernel accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOptions {
    /// Ask for `IORING_SETUP_SINGLE_ISSUER` (the first submitting thread owns the ring).
    pub single_issuer: bool,
    /// Ask for `IORING_SETUP_DEFER_TASKRUN` (needs `single_issuer`).
    pub defer_taskrun: bool,
    /// Most iovecs one vectored operation may carry.
    pub max_segments: usize,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            single_issuer: true,
            defer_taskrun: true,
            max_segments: 32,
        }
    }
}

/// The set-up flags the kernel accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetupMode {
    /// `IORING_SETUP_SINGLE_ISSUER` (created with `R_DISABLED`, enabled on first submit).
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN`.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN`.
    pub coop_taskrun: bool,
}

/// Builds the ring, dropping optional flags the kernel refuses (`EINVAL`).
pub(super) fn build(entries: u32, opts: RingOptions) -> Result<(IoUring, SetupMode), RingError> {
    let wishes = [
        SetupMode {
            single_issuer: true,
            defer_taskrun: true,
            coop_taskrun: false,
        },
        SetupMode {
            single_issuer: true,
            defer_taskrun: false,
            coop_taskrun: true,
        },
        SetupMode {
            single_issuer: false,
            defer_taskrun: false,
            coop_taskrun: true,
        },
        SetupMode::default(),
    ];
    let allowed = |m: &SetupMode| {
        (opts.single_issuer || !m.single_issuer) && (opts.defer_taskrun || !m.defer_taskrun)
    };
    let mut last = None;
    for mode in wishes.iter().filter(|m| allowed(m)) {
        let mut builder = IoUring::builder();
        if mode.single_issuer {
            builder.setup_single_issuer().setup_r_disabled();
        }
        if mode.defer_taskrun {
            builder.setup_defer_taskrun();
        }
        if mode.coop_taskrun {
            builder.setup_coop_taskrun();
        }
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, *mode)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(source) => return Err(RingError::Setup { entries, source }),
        }
    }
    let source = last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL));
    Err(RingError::Setup { entries, source })
}

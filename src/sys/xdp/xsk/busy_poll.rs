//! Busy polling ([`BusyPoll`]): the socket options that let the application's own calls on the
//! socket drive the driver's NAPI on its core (Linux 5.11+).

use std::os::fd::BorrowedFd;

use super::{XskError, XskPort};
use crate::sys::syscall::set_int;

/// Busy-poll socket options (Linux 5.11+). With busy polling, the application's
/// `recvfrom`/`sendto`/`poll` on this socket drive the driver's NAPI on its own core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusyPoll {
    /// `SO_PREFER_BUSY_POLL`.
    pub prefer: bool,
    /// `SO_BUSY_POLL`: microseconds to busy-poll in a blocking call (0 = off).
    pub usecs: u32,
    /// `SO_BUSY_POLL_BUDGET`: packets per busy-poll round (0 = kernel default).
    pub budget: u32,
}

impl XskPort {
    /// Sets the busy-poll socket options.
    pub fn set_busy_poll(&self, options: BusyPoll) -> Result<(), XskError> {
        set_int_option(
            self.fd(),
            libc::SO_PREFER_BUSY_POLL,
            i32::from(options.prefer),
            "SO_PREFER_BUSY_POLL",
        )?;
        let usecs = i32::try_from(options.usecs).map_err(|_| XskError::Config {
            what: "busy-poll usecs",
        })?;
        set_int_option(self.fd(), libc::SO_BUSY_POLL, usecs, "SO_BUSY_POLL")?;
        if options.budget > 0 {
            let budget = i32::try_from(options.budget).map_err(|_| XskError::Config {
                what: "busy-poll budget",
            })?;
            set_int_option(
                self.fd(),
                libc::SO_BUSY_POLL_BUDGET,
                budget,
                "SO_BUSY_POLL_BUDGET",
            )?;
        }
        Ok(())
    }
}

/// `setsockopt(SOL_SOCKET, option, value)`; a failure names the option.
fn set_int_option(
    fd: BorrowedFd<'_>,
    option: i32,
    value: i32,
    name: &'static str,
) -> Result<(), XskError> {
    set_int(fd, libc::SOL_SOCKET, option, value)
        .map_err(|source| XskError::Syscall { call: name, source })
}

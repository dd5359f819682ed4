//! Link events: a rtnetlink socket (`netlink-sys`) subscribed to `RTMGRP_LINK`, on which the
//! kernel announces every interface that appears, disappears, goes up or down or changes its
//! MTU, in the calling thread's network namespace. The supervisor only needs to know that
//! something changed (it then looks at the interfaces again), so messages are not parsed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use rustix::event::{poll, PollFd, PollFlags};

/// A subscription to the kernel's link events.
#[derive(Debug)]
pub struct LinkWatcher {
    socket: Socket,
    buffer: Vec<u8>,
}

impl LinkWatcher {
    /// Subscribes to link events of the current network namespace.
    pub fn open() -> io::Result<LinkWatcher> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        let groups = u32::try_from(libc::RTMGRP_LINK).expect("a group bit");
        socket.bind(&SocketAddr::new(0, groups))?;
        socket.set_non_blocking(true)?;
        Ok(LinkWatcher {
            socket,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Waits up to `timeout` for link events, or until `nudge` (if any) is readable; true if
    /// link events arrived (all that are queued are consumed). A lost event (the socket's
    /// buffer overflowed) counts as one.
    pub fn wait(&mut self, timeout: Duration, nudge: Option<BorrowedFd<'_>>) -> io::Result<bool> {
        // Without a nudge the second entry (the socket again) is left out of the poll.
        let mut fds = [
            PollFd::new(&self.socket, PollFlags::IN),
            PollFd::from_borrowed_fd(nudge.unwrap_or(self.socket.as_fd()), PollFlags::IN),
        ];
        let count = 1 + usize::from(nudge.is_some());
        let timeout = rustix::event::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut fds[..count], Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(false),
            Err(error) => return Err(error.into()),
        }
        let mut changed = false;
        loop {
            match self.socket.recv(&mut &mut self.buffer[..], 0) {
                Ok(0) => return Ok(changed),
                Ok(_) => changed = true,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(changed),
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Err(error) => return Err(error),
            }
        }
    }
}

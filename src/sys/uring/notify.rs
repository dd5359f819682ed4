//! Sleeping while I/O is in flight: an eventfd registered with the ring
//! (`IORING_REGISTER_EVENTFD`) that the kernel writes when a completion is ready, so a thread
//! can wait for its I/O in `poll(2)` together with its sockets instead of polling the ring.
//!
//! Contract: the eventfd is created and registered on the first [`Ring::arm_completion_fd`]
//! (on the submitting thread: a single-issuer ring accepts registrations only from it), and
//! its notifications are switched on only between that call and [`Ring::disarm_completion_fd`]
//! (`IORING_CQ_EVENTFD_DISABLED` otherwise), so a thread that is awake costs the kernel no
//! eventfd write per completion.
//!
//! The handshake is the sleeper's usual one: switch notifications on, then look once more
//! (run the deferred completion work with an enter, look at the completion queue), and sleep
//! only if that look found nothing. A completion the look misses comes after notifications
//! were on, and writes the eventfd. With `DEFER_TASKRUN` the kernel writes it when it queues
//! the completion work for the submitter (which the next enter runs); otherwise when it posts
//! the completion.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{fence, Ordering};

use rustix::event::{eventfd, EventfdFlags};

use super::ring::Ring;
use super::RingError;

impl Ring {
    /// Before the calling thread sleeps with I/O in flight: switches completion notifications
    /// on and looks once more. Returns the eventfd to wait on, readable once a completion is
    /// ready; or `None` when one is ready already (reap instead of sleeping; notifications are
    /// off again). Call [`Ring::disarm_completion_fd`] after the sleep.
    pub fn arm_completion_fd(&mut self) -> Result<Option<BorrowedFd<'_>>, RingError> {
        if self.completion_fd.is_none() {
            let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)
                .map_err(|errno| RingError::RegisterEventfd(errno.into()))?;
            self.ring
                .submitter()
                .register_eventfd(fd.as_raw_fd())
                .map_err(RingError::RegisterEventfd)?;
            self.completion_fd = Some(fd);
        }
        self.ring.completion().enable_eventfd();
        // Orders the switch before the last look (the kernel queues its completion work,
        // then reads the flag).
        fence(Ordering::SeqCst);
        // With `DEFER_TASKRUN` this runs completion work queued before the switch (which
        // wrote no eventfd) and posts its completions.
        self.enter(0)?;
        if !self.ring.completion().is_empty() {
            self.disarm_completion_fd();
            return Ok(None);
        }
        Ok(self.completion_fd.as_ref().map(AsFd::as_fd))
    }

    /// After the sleep (or instead of it): switches notifications off and clears the
    /// eventfd's count, so the next sleep waits for a new completion.
    pub fn disarm_completion_fd(&mut self) {
        let Some(fd) = &self.completion_fd else {
            return;
        };
        self.ring.completion().disable_eventfd();
        let mut count = [0u8; 8];
        // Non-blocking: EAGAIN when the kernel wrote nothing; any other error leaves at most
        // one early wake-up behind.
        let _ = rustix::io::read(fd, &mut count);
    }
}

//! A sleeping worker's wake-up: an eventfd that another worker writes when it hands the
//! sleeper work (a job for a device it owns, a finished request of one of its ports), and the
//! `poll(2)` over every file descriptor a sleeping worker waits on. [`Nudge`] is the same for
//! the threads that wait on something else (the supervisor on link events, the control
//! socket's thread on its listener) and must also hear of a signal or a stop.
//!
//! The handshake is the usual one for a sleeper and its wakers: the sleeper *arms* (marks
//! itself asleep), then looks once more for work, and only then sleeps; a waker *pushes* its
//! work, then looks at the mark and writes the eventfd only if it is set. With a full fence
//! between the two steps on both sides, either the sleeper's last look sees the work or the
//! waker sees the mark: no work is left waiting for a sleep to time out. A busy worker, whose
//! mark is clear, costs a waker one fence and one load: no system call.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::time::Duration;

use rustix::event::{eventfd, EventfdFlags};

/// One worker's wake-up (see the module).
#[derive(Debug)]
pub struct Wakeup {
    fd: OwnedFd,
    /// Set while the owner is about to sleep or asleep.
    sleeping: AtomicBool,
}

impl Wakeup {
    /// A wake-up with its eventfd (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Wakeup> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Wakeup {
            fd,
            sleeping: AtomicBool::new(false),
        })
    }

    /// The owner, before its last look for work ahead of a sleep: from here on a waker writes
    /// the eventfd.
    pub fn arm(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        // Orders the store before the owner's last look at the queues (see the module).
        fence(Ordering::SeqCst);
    }

    /// The owner, awake again (or not going to sleep after all): clears the mark and the
    /// eventfd's count, so that the next sleep waits for a new wake-up.
    pub fn disarm(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        let mut count = [0u8; 8];
        // Non-blocking: EAGAIN when nobody wrote; any other error leaves at most one early
        // wake-up behind.
        let _ = rustix::io::read(&self.fd, &mut count);
    }

    /// As [`Self::disarm`], but leaves the eventfd's count alone: for an owner whose poll
    /// saw the eventfd unwritten (saves the read). A wake-up written since makes the next
    /// sleep end at once, with nothing to do.
    pub fn disarm_unread(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// A waker, after it pushed work for the owner: wakes the owner if it sleeps.
    pub fn wake(&self) {
        // Orders the caller's push before the load of the mark (see the module).
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::Relaxed) {
            // Non-blocking: it fails only when the count would overflow, i.e. the owner has
            // been woken already.
            let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        }
    }

    /// The eventfd, to wait on beside the owner's sockets.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A wake-up for a thread that sleeps in `poll(2)` on other file descriptors too: a
/// non-blocking socket pair whose one end it polls and to whose other end anyone (a signal
/// handler too) writes a byte. Unlike [`Wakeup`], every nudge is a system call: for rare
/// events (a signal, a reload, a stop, a worker that lost a port).
#[derive(Debug)]
pub struct Nudge {
    read: UnixStream,
    write: UnixStream,
}

impl Nudge {
    /// A nudge with its socket pair (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Nudge> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Nudge { read, write })
    }

    /// Wakes the thread polling [`Nudge::fd`] (now, or at its next poll).
    pub fn nudge(&self) {
        // Non-blocking: a full buffer means the waiter has unread nudges already.
        let _ = (&self.write).write(&[1]);
    }

    /// Nudges at every delivery of `signal`, from its handler (`signal-hook`'s, which only
    /// sends a byte: async-signal-safe). The handler stays for the life of the process.
    pub fn on_signal(&self, signal: libc::c_int) -> io::Result<()> {
        signal_hook::low_level::pipe::register(signal, self.write.try_clone()?).map(|_| ())
    }

    /// The end to poll for `POLLIN`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Consumes the nudges so far: the next poll waits for a new one.
    pub fn clear(&self) {
        let mut bytes = [0u8; 64];
        while matches!((&self.read).read(&mut bytes), Ok(count) if count > 0) {}
    }
}

/// A flag that nudges the thread watching it when raised: a worker that gave up a failed
/// port tells the supervisor so at once.
#[derive(Debug, Default)]
pub struct Alarm {
    raised: AtomicBool,
    nudge: Option<std::sync::Arc<Nudge>>,
}

impl Alarm {
    /// An alarm that nudges `nudge` (if any) when raised.
    pub fn new(nudge: Option<std::sync::Arc<Nudge>>) -> Alarm {
        Alarm {
            raised: AtomicBool::new(false),
            nudge,
        }
    }

    /// Raises the alarm and nudges the watcher.
    pub fn raise(&self) {
        // Release: pairs with the Acquire load of `is_raised`.
        self.raised.store(true, Ordering::Release);
        self.nudge();
    }

    /// Nudges the watcher without raising the alarm (to look at something else).
    pub fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            nudge.nudge();
        }
    }

    /// Whether the alarm was raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }
}

/// Waits until one of `fds` has one of its requested events or `timeout` (rounded up to whole
/// milliseconds, see [`crate::sys::syscall::poll_millis`]) passes (`poll(2)`); the `revents`
/// of each entry say which. An interrupted wait (`EINTR`) returns as a timeout.
pub fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    poll_until(fds, Some(timeout))
}

/// [`poll_fds`], with no timeout when `timeout` is `None`.
pub fn poll_until(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let millis = timeout.map_or(-1, crate::sys::syscall::poll_millis);
    let count = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid, writable array of `count` pollfd entries for the duration of
    // the call; an fd that is not open is reported as POLLNVAL, not undefined behaviour.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), count, millis) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(error);
    }
    Ok(usize::try_from(ready).unwrap_or(0))
}

/// A `pollfd` entry asking for `POLLIN` on `fd` (which must stay open while it is used).
pub fn pollin(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    fn readable(wakeup: &Wakeup, timeout: Duration) -> bool {
        let mut fds = [pollin(wakeup.fd())];
        poll_fds(&mut fds, timeout).unwrap() == 1 && fds[0].revents & libc::POLLIN != 0
    }

    #[test]
    fn test_a_wake_reaches_an_armed_sleeper_only() {
        let wakeup = Wakeup::new().unwrap();
        wakeup.wake();
        assert!(
            !readable(&wakeup, Duration::ZERO),
            "an awake owner is not written to"
        );
        wakeup.arm();
        wakeup.wake();
        assert!(readable(&wakeup, Duration::ZERO), "an armed owner is woken");
        wakeup.disarm();
        assert!(
            !readable(&wakeup, Duration::ZERO),
            "disarm clears the count: the next sleep waits"
        );
    }

    #[test]
    fn test_a_sleeper_on_another_thread_is_woken_at_once() {
        let wakeup = Arc::new(Wakeup::new().unwrap());
        wakeup.arm();
        let waker = Arc::clone(&wakeup);
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.wake();
        });
        assert!(readable(&wakeup, Duration::from_secs(5)));
        let waited = started.elapsed();
        thread.join().unwrap();
        assert!(
            waited < Duration::from_secs(4),
            "woken by the write, not the timeout: {waited:?}"
        );
    }

    fn nudged(nudge: &Nudge, timeout: Option<Duration>) -> bool {
        let mut fds = [pollin(nudge.fd())];
        poll_until(&mut fds, timeout).unwrap() == 1 && fds[0].revents & libc::POLLIN != 0
    }

    #[test]
    fn test_a_nudge_wakes_a_poll_without_timeout_until_cleared() {
        let nudge = Arc::new(Nudge::new().unwrap());
        assert!(!nudged(&nudge, Some(Duration::ZERO)), "nothing sent yet");
        let sender = Arc::clone(&nudge);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sender.nudge();
        });
        // No timeout: only the nudge can end this wait.
        assert!(nudged(&nudge, None));
        thread.join().unwrap();
        // Many nudges before the waiter looks: one clear takes them all.
        for _ in 0..1000 {
            nudge.nudge();
        }
        nudge.clear();
        assert!(!nudged(&nudge, Some(Duration::ZERO)), "cleared");
    }

    #[test]
    fn test_a_signal_nudges() {
        let nudge = Nudge::new().unwrap();
        // SIGURG: ignored by default, so an unhandled one elsewhere in the tests does no harm.
        nudge.on_signal(libc::SIGURG).unwrap();
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::URG)
            .unwrap();
        assert!(nudged(&nudge, Some(Duration::from_secs(5))));
    }
}

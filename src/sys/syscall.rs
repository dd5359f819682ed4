//! The small syscall helpers the other files share: the one error type that names the failed
//! call, `socklen`, socket options, the `sockaddr_ll` bind of every AF_PACKET socket, and the
//! `poll` of one socket that each of them sleeps in.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// A syscall that failed: which call (with the option or step, e.g.
/// `"setsockopt(PACKET_RX_RING)"`) and the kernel's error.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed")]
pub struct SyscallError {
    /// The call that failed.
    pub call: &'static str,
    /// What the kernel reported.
    #[source]
    pub io_error: io::Error,
}

impl SyscallError {
    /// `call` failed just now: the error is the thread's `errno`.
    pub fn last(call: &'static str) -> SyscallError {
        SyscallError {
            call,
            io_error: io::Error::last_os_error(),
        }
    }
}

/// As an [`io::Error`] of the same kind whose message starts with the call
/// (`"bind(AF_PACKET): No such device"`), for the sockets whose API is `io::Result`.
impl From<SyscallError> for io::Error {
    fn from(error: SyscallError) -> io::Error {
        io::Error::new(
            error.io_error.kind(),
            format!("{}: {}", error.call, error.io_error),
        )
    }
}

/// `size_of::<T>()` as the length argument of a socket call.
pub fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).expect("small struct")
}

/// `setsockopt(fd, level, option, value)`; `T` must be the type the option expects.
pub fn set_option<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the length passed, which the kernel only reads (and
    // copies) during the call; the fd is open. Callers pass the type each option expects.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            std::ptr::from_ref(value).cast::<libc::c_void>(),
            socklen::<T>(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [`set_option`] for an integer option.
pub fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set_option(fd, level, option, &value)
}

/// `getsockopt(fd, level, option)` for an integer option.
pub fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, option: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = socklen::<libc::c_int>();
    // SAFETY: `value` and `len` live on this stack frame for the call; `len` says how much
    // the kernel may write; the fd is open.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            option,
            std::ptr::from_mut(&mut value).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Binds the AF_PACKET socket `fd` to interface `ifindex`, receiving frames of `protocol`
/// (host order: `ETH_P_AOE`, `ETH_P_ALL`; 0 receives nothing, for a socket that only sends).
pub fn bind_packet(fd: BorrowedFd<'_>, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET).expect("AF_PACKET fits u16");
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: `addr` is a valid sockaddr_ll of the size passed; the fd is open.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            socklen::<libc::sockaddr_ll>(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL)`: for sockets (AF_XDP) on which that call
/// drives the kernel (a busy-poll round) rather than returns data. `EAGAIN`/`EBUSY` are no error.
pub fn recv_empty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length read into no buffer, no address; the fd is open (borrowed).
    let ret = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if ret < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EBUSY) => Ok(()),
            _ => Err(error),
        };
    }
    Ok(())
}

/// `poll(2)` on `fd` alone for `events` (`POLLIN`), for at most `timeout` ([`poll_millis`]:
/// rounded up to whole milliseconds, capped at `i32::MAX` ms); returns the events the kernel
/// reported, 0 if the timeout passed. A signal during the wait is an error of kind
/// `Interrupted`.
pub fn poll_one(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    timeout: Duration,
) -> io::Result<libc::c_short> {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    let millis = poll_millis(timeout);
    // SAFETY: one valid pollfd, which lives on this stack frame for the duration of the call;
    // the fd is open (borrowed).
    let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pollfd.revents)
}

/// `timeout` as poll(2)'s milliseconds: rounded up, so that a wait shorter than 1 ms sleeps
/// 1 ms rather than returning at once (only zero polls without waiting), capped at
/// `i32::MAX`.
pub fn poll_millis(timeout: Duration) -> i32 {
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    i32::try_from(millis).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn test_poll_millis_rounds_up_so_that_only_zero_does_not_wait() {
        assert_eq!(poll_millis(Duration::ZERO), 0);
        assert_eq!(poll_millis(Duration::from_nanos(1)), 1);
        assert_eq!(poll_millis(Duration::from_micros(700)), 1);
        assert_eq!(poll_millis(Duration::from_millis(1)), 1);
        assert_eq!(poll_millis(Duration::from_micros(1_200)), 2);
        assert_eq!(poll_millis(Duration::from_secs(1 << 40)), i32::MAX);
    }

    #[test]
    fn test_syscall_error_names_the_call() {
        let error = SyscallError {
            call: "bind(AF_PACKET)",
            io_error: io::Error::from_raw_os_error(libc::ENODEV),
        };
        assert_eq!(error.to_string(), "bind(AF_PACKET) failed");
        let io_error = io::Error::from(error);
        assert!(
            io_error.to_string().starts_with("bind(AF_PACKET): "),
            "{io_error}"
        );
        assert_eq!(socklen::<libc::sockaddr_ll>(), 20);
    }

    #[test]
    fn test_poll_one_reports_readable_and_times_out() {
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        let idle = poll_one(reader.as_fd(), libc::POLLIN, Duration::from_millis(1)).unwrap();
        assert_eq!(idle, 0, "nothing written yet");
        std::io::Write::write_all(&mut writer, b"x").unwrap();
        let ready = poll_one(reader.as_fd(), libc::POLLIN, Duration::from_secs(5)).unwrap();
        assert_eq!(ready & libc::POLLIN, libc::POLLIN);
    }
}

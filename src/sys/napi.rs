//! Busy polling a NAPI that no socket is tied to: which NAPIs an interface has (the `netdev`
//! generic-netlink family's `napi-get` dump, Linux 6.9+), and [`NapiWait`], a `poll(2)` that
//! first runs those NAPIs in the calling thread (an io_uring with static NAPI tracking,
//! `IORING_REGISTER_NAPI`, Linux 6.13+).
//!
//! Why: the kernel ties an AF_XDP socket to a NAPI only through the queue's registered NAPI,
//! which some drivers (veth among them) do not register, so `SO_BUSY_POLL` and a busy-polling
//! `recvfrom` cannot reach their receive path: it runs in the driver's NAPI context (a softirq,
//! or a kernel thread with threaded NAPI), woken by an interrupt (on veth, an IPI from the
//! sending core) for every burst. io_uring can busy-poll a NAPI named by its id. While the
//! waiting thread polls it, the NAPI is the thread's (`NAPI_STATE_IN_BUSY_POLL`): the driver's
//! schedule attempts only mark it missed, so no interrupt, no softirq and no kernel thread
//! wake-up happens, and the receive path (the XDP program, the copy into the socket) runs in
//! the thread that waits for its frames.
//!
//! Contract of [`NapiWait::poll`]: as `poll(2)` for `POLLIN` on the given descriptors (each
//! entry's `revents` is set), except that for up to the busy time given at set-up it first
//! polls the NAPIs, ending as soon as a descriptor is ready. One one-shot `IORING_OP_POLL_ADD`
//! per descriptor stays armed until it fires (an armed poll checks readiness when it is armed,
//! so nothing that is ready when `poll` is called is missed); a descriptor list that changes
//! cancels them all. The descriptors must stay open while they are polled.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use io_uring::types::{Napi, NapiTracking, SubmitArgs, Timespec};
use io_uring::{opcode, types, IoUring};
use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::{Socket, SocketAddr};

/// `netdev` family: `NETDEV_CMD_NAPI_GET` (include/uapi/linux/netdev.h).
const NETDEV_CMD_NAPI_GET: u8 = 11;
/// `NETDEV_A_NAPI_IFINDEX`.
const NETDEV_A_NAPI_IFINDEX: u16 = 1;
/// `NETDEV_A_NAPI_ID`.
const NETDEV_A_NAPI_ID: u16 = 2;
/// Generic netlink's controller: `GENL_ID_CTRL`, `CTRL_CMD_GETFAMILY`, `CTRL_ATTR_FAMILY_ID`,
/// `CTRL_ATTR_FAMILY_NAME` (include/uapi/linux/genetlink.h).
const GENL_ID_CTRL: u16 = 16;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
/// `struct nlmsghdr` and `struct genlmsghdr`.
const NLMSG_HDR: usize = 16;
const GENL_HDR: usize = 4;

/// The ids of every NAPI of interface `ifindex`, ascending (empty if it has none, e.g. veth
/// before GRO or XDP turns its NAPI on). Fails on kernels without the `netdev` family's
/// `napi-get` (before 6.9).
pub fn interface_napis(ifindex: u32) -> io::Result<Vec<u32>> {
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let family = request(
        &mut socket,
        &genl_message(
            GENL_ID_CTRL,
            NLM_F_REQUEST | NLM_F_ACK,
            1,
            CTRL_CMD_GETFAMILY,
            &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0")],
        ),
        |attrs| attr_u16(attrs, CTRL_ATTR_FAMILY_ID),
    )?
    .into_iter()
    .next()
    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no netdev netlink family"))?;
    let mut ids = request(
        &mut socket,
        &genl_message(
            family,
            NLM_F_REQUEST | NLM_F_DUMP,
            2,
            NETDEV_CMD_NAPI_GET,
            &[(NETDEV_A_NAPI_IFINDEX, &ifindex.to_ne_bytes())],
        ),
        |attrs| {
            // A dump filtered by ifindex answers that interface's NAPIs only; check anyway.
            match attr_u32(attrs, NETDEV_A_NAPI_IFINDEX) {
                Some(index) if index != ifindex => None,
                _ => attr_u32(attrs, NETDEV_A_NAPI_ID),
            }
        },
    )?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Sends `message` and collects `pick` of every answer's attributes until the kernel says
/// done (a dump's `NLMSG_DONE`, or the acknowledgement of a plain request).
fn request<T>(
    socket: &mut Socket,
    message: &[u8],
    pick: impl Fn(&[u8]) -> Option<T>,
) -> io::Result<Vec<T>> {
    socket.send(message, 0)?;
    let mut found = Vec::new();
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let length = socket.recv(&mut &mut buffer[..], 0)?;
        match parse_answers(&buffer[..length], &pick, &mut found)? {
            Answer::More => {}
            Answer::Done => return Ok(found),
        }
    }
}

/// Where a batch of netlink answers leaves the request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    More,
    Done,
}

/// Walks the netlink messages in `bytes`: a generic-netlink answer's attributes go to `pick`,
/// an error fails, `NLMSG_DONE` or an acknowledgement (an error message with code 0) ends.
fn parse_answers<T>(
    mut bytes: &[u8],
    pick: &impl Fn(&[u8]) -> Option<T>,
    found: &mut Vec<T>,
) -> io::Result<Answer> {
    let truncated = || io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message");
    while bytes.len() >= NLMSG_HDR {
        let length = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(bytes[4..6].try_into().expect("2 bytes"));
        if length < NLMSG_HDR || length > bytes.len() {
            return Err(truncated());
        }
        let body = &bytes[NLMSG_HDR..length];
        match kind {
            NLMSG_DONE => return Ok(Answer::Done),
            NLMSG_ERROR => {
                let code = body
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                    .ok_or_else(truncated)?;
                if code == 0 {
                    return Ok(Answer::Done);
                }
                return Err(io::Error::from_raw_os_error(-code));
            }
            _ => {
                let attrs = body.get(GENL_HDR..).ok_or_else(truncated)?;
                found.extend(pick(attrs));
            }
        }
        bytes = &bytes[align4(length).min(bytes.len())..];
    }
    Ok(Answer::More)
}

/// A generic-netlink request: header, `cmd` (version 1), then `attrs`.
fn genl_message(family: u16, flags: u16, seq: u32, cmd: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut message = vec![0u8; NLMSG_HDR];
    message.extend_from_slice(&[cmd, 1, 0, 0]);
    for &(kind, value) in attrs {
        let length = u16::try_from(4 + value.len()).expect("a short attribute");
        message.extend_from_slice(&length.to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(value);
        message.resize(align4(message.len()), 0);
    }
    let total = u32::try_from(message.len()).expect("a short message");
    message[0..4].copy_from_slice(&total.to_ne_bytes());
    message[4..6].copy_from_slice(&family.to_ne_bytes());
    message[6..8].copy_from_slice(&flags.to_ne_bytes());
    message[8..12].copy_from_slice(&seq.to_ne_bytes());
    message
}

/// The payload of the first attribute of type `kind` (nested flag bits ignored).
fn attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let this = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if length < 4 || length > attrs.len() {
            return None;
        }
        if this == kind {
            return Some(&attrs[4..length]);
        }
        attrs = &attrs[align4(length).min(attrs.len())..];
    }
    None
}

fn attr_u16(attrs: &[u8], kind: u16) -> Option<u16> {
    attr(attrs, kind)?
        .get(0..2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

fn attr_u32(attrs: &[u8], kind: u16) -> Option<u32> {
    attr(attrs, kind)?
        .get(0..4)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

fn align4(length: usize) -> usize {
    (length + 3) & !3
}

/// The longest busy poll io_uring runs in one wait: it caps the registered time at 10 ms
/// (`io_napi_register_napi`, since Linux 6.14 and in stable kernels before it).
pub const BUSY_MAX: Duration = Duration::from_millis(10);

/// How long an idle poller (the target's worker, the bench's AF_XDP reflector) polls its rings
/// in user space before it waits in a [`NapiWait`] for the rest of its spin: a gap shorter
/// than that is cheaper to poll out than to enter the wait for. On the bench's two-machine
/// veth rig (2026-12-07, 1 KiB requests, against no NAPI wait, per-round rate ratios),
/// entering the wait at once ran random reads at queue depth 16 at 0.85x (6 rounds), after
/// 5 us 1.07x, after 10 us 0.98x (6 rounds), after 15 us 1.10x (4 rounds each otherwise);
/// random reads at queue depth 1 at 1.47x, 1.31x, 1.15x and 1.21x. Every such ratio is
/// uncertain by about +-0.15 on this rig.
pub const POLL_RINGS_FIRST: Duration = Duration::from_micros(5);

/// Ring entries: one armed poll per descriptor, a cancel; a worker waits on a few.
const RING_ENTRIES: u32 = 32;
/// `user_data` of the cancel request (polls carry their index and the list's generation).
const CANCEL_TAG: u64 = u64::MAX;

/// A `poll(2)` that busy-polls NAPIs first (see the module).
pub struct NapiWait {
    ring: IoUring,
    ids: Vec<u32>,
    busy: Duration,
    /// The descriptors polled now, by index.
    fds: Vec<RawFd>,
    /// Whether descriptor `i`'s poll is armed.
    armed: Vec<bool>,
    /// What each descriptor's poll reported since the last `poll` began.
    revents: Vec<i16>,
    /// Bumped when the descriptor list changes: answers of older polls are ignored.
    generation: u32,
}

impl std::fmt::Debug for NapiWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NapiWait")
            .field("ids", &self.ids)
            .field("busy", &self.busy)
            .field("fds", &self.fds)
            .finish_non_exhaustive()
    }
}

impl NapiWait {
    /// A wait that busy-polls NAPIs `ids` for up to `busy` (whole microseconds, at least 1)
    /// before it sleeps. Fails where io_uring or its static NAPI tracking is missing (before
    /// Linux 6.13, or a kernel without `CONFIG_NET_RX_BUSY_POLL`).
    pub fn new(ids: &[u32], busy: Duration) -> io::Result<NapiWait> {
        if ids.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no NAPI to busy-poll",
            ));
        }
        let ring = IoUring::new(RING_ENTRIES)?;
        let mut wait = NapiWait {
            ring,
            ids: ids.to_vec(),
            busy,
            fds: Vec::new(),
            armed: Vec::new(),
            revents: Vec::new(),
            generation: 0,
        };
        wait.register()?;
        Ok(wait)
    }

    /// (Re)registers the busy time and the NAPIs (registering clears the ring's NAPI list).
    fn register(&mut self) -> io::Result<()> {
        let micros = u32::try_from(self.busy.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        let mut napi = Napi::new()
            .set_busy_poll_timeout(micros)
            .set_prefer_busy_poll(true)
            .set_tracking(NapiTracking::Static);
        self.ring.submitter().register_napi(&mut napi)?;
        for &id in &self.ids {
            self.ring.submitter().register_napi_add_id(id)?;
        }
        Ok(())
    }

    /// The NAPIs polled.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The longest busy poll of one [`Self::poll`].
    pub fn busy(&self) -> Duration {
        self.busy
    }

    /// Changes the busy time (two or more system calls; for a spin that adapts).
    pub fn set_busy(&mut self, busy: Duration) -> io::Result<()> {
        if busy != self.busy {
            self.busy = busy;
            self.register()?;
        }
        Ok(())
    }

    /// Waits until one of `fds` is readable (or reports an error) or `timeout` passes,
    /// busy-polling the NAPIs for the first part of it (see the module); sets each entry's
    /// `revents` and returns how many are set. `events` is taken as `POLLIN`.
    pub fn poll(&mut self, fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
        if self.fds.len() != fds.len() || self.fds.iter().zip(fds.iter()).any(|(a, b)| *a != b.fd) {
            self.replace(fds)?;
        }
        // Answers that came since the last call are old news: a poll is re-armed below, and
        // an armed poll looks at the descriptor's state then.
        self.reap();
        self.revents.fill(0);
        for index in 0..self.fds.len() {
            if !self.armed[index] {
                let entry = opcode::PollAdd::new(types::Fd(self.fds[index]), libc::POLLIN as u32)
                    .build()
                    .user_data(self.tag(index));
                self.push(&entry)?;
                self.armed[index] = true;
            }
        }
        let timespec = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&timespec);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(error) => return Err(error),
        }
        self.reap();
        let mut ready = 0;
        for (entry, &revents) in fds.iter_mut().zip(&self.revents) {
            entry.revents = revents;
            ready += usize::from(revents != 0);
        }
        Ok(ready)
    }

    /// A poll's `user_data`: the list's generation and the descriptor's index.
    fn tag(&self, index: usize) -> u64 {
        (u64::from(self.generation) << 32) | index as u64
    }

    /// New descriptors: cancels every armed poll (their answers are then ignored).
    fn replace(&mut self, fds: &[libc::pollfd]) -> io::Result<()> {
        if self.armed.iter().any(|&armed| armed) {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(CANCEL_TAG);
            self.push(&cancel)?;
            self.ring.submit()?;
        }
        self.generation = self.generation.wrapping_add(1);
        // Refilled in place: after the first few changes, no allocation.
        self.fds.clear();
        self.fds.extend(fds.iter().map(|entry| entry.fd));
        self.armed.clear();
        self.armed.resize(fds.len(), false);
        self.revents.clear();
        self.revents.resize(fds.len(), 0);
        Ok(())
    }

    /// Takes every answer off the completion queue: a fired poll is no longer armed and
    /// leaves its events.
    fn reap(&mut self) {
        let generation = self.generation;
        for entry in self.ring.completion() {
            let tag = entry.user_data();
            if tag == CANCEL_TAG || (tag >> 32) as u32 != generation {
                continue;
            }
            let index = usize::try_from(tag & u64::from(u32::MAX)).unwrap_or(usize::MAX);
            if let Some(armed) = self.armed.get_mut(index) {
                *armed = false;
                let result = entry.result();
                // A poll answers with its mask; an error (the descriptor went bad) as POLLERR.
                self.revents[index] |= if result >= 0 {
                    i16::try_from(result).unwrap_or(libc::POLLERR)
                } else {
                    libc::POLLERR
                };
            }
        }
    }

    fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: a poll or cancel request refers to no memory of ours: only descriptors,
        // which the caller keeps open while they are polled (see the module), and tags.
        let pushed = unsafe { self.ring.submission().push(entry) };
        if pushed.is_err() {
            // Full: hand the queued requests to the kernel first.
            self.ring.submit()?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(entry) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        Ok(())
    }
}

/// `pollfd` entries for [`NapiWait::poll`] from borrowed descriptors.
pub fn pollfds<'a>(fds: impl IntoIterator<Item = BorrowedFd<'a>>) -> Vec<libc::pollfd> {
    fds.into_iter().map(pollfd).collect()
}

/// One `pollfd` entry for [`NapiWait::poll`] (`POLLIN`), for a caller that waits on one
/// descriptor and allocates nothing per wait.
pub fn pollfd(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_genl_message_layout() {
        let message = genl_message(
            0x1234,
            NLM_F_REQUEST | NLM_F_DUMP,
            7,
            NETDEV_CMD_NAPI_GET,
            &[(NETDEV_A_NAPI_IFINDEX, &5u32.to_ne_bytes())],
        );
        assert_eq!(message.len(), NLMSG_HDR + GENL_HDR + 8);
        assert_eq!(u32::from_ne_bytes(message[0..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes([message[4], message[5]]), 0x1234);
        assert_eq!(
            u16::from_ne_bytes([message[6], message[7]]),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(message[8..12].try_into().unwrap()), 7);
        assert_eq!(&message[16..20], &[NETDEV_CMD_NAPI_GET, 1, 0, 0]);
        assert_eq!(attr_u32(&message[20..], NETDEV_A_NAPI_IFINDEX), Some(5));
    }

    #[test]
    fn test_attribute_names_are_padded_and_found_after_others() {
        let message = genl_message(
            GENL_ID_CTRL,
            NLM_F_REQUEST,
            1,
            CTRL_CMD_GETFAMILY,
            &[
                (CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
                (CTRL_ATTR_FAMILY_ID, &9u16.to_ne_bytes()),
            ],
        );
        // "netdev\0" is 7 bytes: its attribute takes 11, padded to 12.
        assert_eq!(message.len(), NLMSG_HDR + GENL_HDR + 12 + 8);
        let attrs = &message[NLMSG_HDR + GENL_HDR..];
        assert_eq!(attr(attrs, CTRL_ATTR_FAMILY_NAME), Some(&b"netdev\0"[..]));
        assert_eq!(attr_u16(attrs, CTRL_ATTR_FAMILY_ID), Some(9));
        assert_eq!(attr(attrs, 77), None);
    }

    /// Two answers, then `NLMSG_DONE`, in one batch.
    #[test]
    fn test_answers_are_collected_until_done() {
        let mut batch = Vec::new();
        for id in [17u32, 18] {
            let mut answer = genl_message(
                30,
                0,
                2,
                NETDEV_CMD_NAPI_GET,
                &[
                    (NETDEV_A_NAPI_IFINDEX, &4u32.to_ne_bytes()),
                    (NETDEV_A_NAPI_ID, &id.to_ne_bytes()),
                ],
            );
            batch.append(&mut answer);
        }
        let pick = |attrs: &[u8]| attr_u32(attrs, NETDEV_A_NAPI_ID);
        let mut found = Vec::new();
        assert_eq!(
            parse_answers(&batch, &pick, &mut found).unwrap(),
            Answer::More
        );
        assert_eq!(found, [17, 18]);
        let mut done = vec![0u8; NLMSG_HDR + 4];
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(
            parse_answers(&done, &pick, &mut found).unwrap(),
            Answer::Done
        );
    }

    #[test]
    fn test_an_error_answer_fails_and_an_ack_ends() {
        let error = |code: i32| {
            let mut message = vec![0u8; NLMSG_HDR + 4];
            message[0..4].copy_from_slice(&20u32.to_ne_bytes());
            message[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
            message[16..20].copy_from_slice(&code.to_ne_bytes());
            message
        };
        let pick = |_: &[u8]| Some(());
        let mut found = Vec::new();
        let failed = parse_answers(&error(-libc::EOPNOTSUPP), &pick, &mut found).unwrap_err();
        assert_eq!(failed.raw_os_error(), Some(libc::EOPNOTSUPP));
        assert_eq!(
            parse_answers(&error(0), &pick, &mut found).unwrap(),
            Answer::Done
        );
        assert!(found.is_empty());
    }

    #[test]
    fn test_a_truncated_answer_is_an_error() {
        let mut message = genl_message(30, 0, 2, NETDEV_CMD_NAPI_GET, &[]);
        message[0..4].copy_from_slice(&200u32.to_ne_bytes());
        let pick = |_: &[u8]| Some(());
        assert!(parse_answers(&message, &pick, &mut Vec::new()).is_err());
    }

    /// Loopback has no NAPI; the request itself must work on this kernel (6.9+).
    #[test]
    fn test_loopback_has_no_napi() {
        assert_eq!(interface_napis(1).unwrap(), Vec::<u32>::new());
    }

    /// Without a NAPI that exists, a poll still behaves as `poll(2)`: an eventfd written
    /// before is ready at once, one never written times out.
    #[test]
    fn test_poll_reports_a_ready_descriptor_and_times_out_otherwise() {
        // An id no NAPI has: busy polling finds nothing to run and ends after `busy`.
        let mut wait = NapiWait::new(&[u32::MAX - 1], Duration::from_micros(5)).unwrap();
        let ready = rustix::event::eventfd(1, rustix::event::EventfdFlags::NONBLOCK).unwrap();
        let idle = rustix::event::eventfd(0, rustix::event::EventfdFlags::NONBLOCK).unwrap();
        use std::os::fd::AsFd;
        let mut fds = pollfds([idle.as_fd(), ready.as_fd()]);
        assert_eq!(wait.poll(&mut fds, Duration::from_secs(5)).unwrap(), 1);
        assert_eq!(fds[0].revents, 0);
        assert_ne!(fds[1].revents & libc::POLLIN, 0);
        let mut fds = pollfds([idle.as_fd()]);
        let start = std::time::Instant::now();
        assert_eq!(wait.poll(&mut fds, Duration::from_millis(20)).unwrap(), 0);
        assert!(
            start.elapsed() >= Duration::from_millis(19),
            "{:?}",
            start.elapsed()
        );
        // Written while armed: the armed poll fires.
        let writer = std::thread::spawn({
            let idle = idle.try_clone().unwrap();
            move || {
                std::thread::sleep(Duration::from_millis(20));
                rustix::io::write(&idle, &1u64.to_ne_bytes()).unwrap();
            }
        });
        assert_eq!(wait.poll(&mut fds, Duration::from_secs(5)).unwrap(), 1);
        writer.join().unwrap();
    }
}

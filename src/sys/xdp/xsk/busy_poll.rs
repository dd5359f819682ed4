//! Busy polling ([`BusyPoll`]): the socket options that let the application's own calls on the
//! socket drive the driver's NAPI on its core (Linux 5.11+), and the per-burst call that does it.

use std::os::fd::BorrowedFd;

use super::{XskError, XskPort};
use crate::sys::syscall::{get_int, recv_empty, set_int};

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

/// What busy polling does on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyPollReach {
    /// The socket is tied to the queue's NAPI (id given): every receive burst runs it in the
    /// worker's thread.
    Napi(u32),
    /// The kernel tied the socket to no NAPI (its driver does not register the queue's NAPI:
    /// veth, for one): the options are set but the receive work stays in the kernel's own
    /// NAPI context, and the worker makes no busy-poll calls. Linux before 6.13 ties a
    /// socket only when its first frame arrives: the port looks again then, once, and busy
    /// polls from there on if the tie was made (it logs what it found).
    NoNapi,
}

impl XskPort {
    /// Sets the busy-poll socket options and says whether they can reach the queue's NAPI.
    pub fn set_busy_poll(&mut self, options: BusyPoll) -> Result<BusyPollReach, XskError> {
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
        let reach = self.busy_poll_reach()?;
        self.busy_poll = options.usecs > 0 && matches!(reach, BusyPollReach::Napi(_));
        self.busy_poll_pending = options.usecs > 0 && reach == BusyPollReach::NoNapi;
        Ok(reach)
    }

    /// Names the NAPI that receives this port's frames, for a socket the kernel tied to none
    /// (veth): a worker waiting on the port then busy-polls it in its wait
    /// ([`crate::sys::napi::NapiWait`]).
    pub fn set_wait_napi(&mut self, napi: Option<u32>) {
        self.wait_napi = napi;
    }

    /// The NAPI set by [`Self::set_wait_napi`].
    pub fn wait_napi(&self) -> Option<u32> {
        self.wait_napi
    }

    /// Whether the port's receive bursts drive the queue's NAPI (busy polling asked for and
    /// the socket tied to a NAPI, at bind or at its first frame).
    pub fn busy_polling(&self) -> bool {
        self.busy_poll
    }

    /// After the first frames of a socket that wants busy polling and had no NAPI at bind:
    /// looks for the tie once more (Linux before 6.13 makes it as the first frame arrives).
    #[cold]
    pub(super) fn learn_busy_poll_napi(&mut self) {
        self.busy_poll_pending = false;
        match self.busy_poll_reach() {
            Ok(BusyPollReach::Napi(napi)) => {
                self.busy_poll = true;
                tracing::info!(interface = %self.interface, queue = self.queue_id, napi, "busy polling: the kernel tied the socket to its queue's NAPI at the first frame; the worker runs that NAPI (its receive path) itself");
                check_irq_deferral(&self.interface);
            }
            Ok(BusyPollReach::NoNapi) if self.wait_napi.is_some() => {}
            Ok(BusyPollReach::NoNapi) => {
                tracing::info!(interface = %self.interface, queue = self.queue_id, "busy polling cannot reach this queue: its driver ties no NAPI to it (veth does not), so receiving stays in the kernel's NAPI context");
            }
            Err(error) => {
                tracing::warn!(interface = %self.interface, queue = self.queue_id, %error, "busy polling: the socket's NAPI could not be read; no busy polling");
            }
        }
    }

    /// The NAPI the kernel has tied this socket to (`SO_INCOMING_NAPI_ID`; Linux takes it
    /// from the queue's registered NAPI, which some drivers, veth among them, do not register;
    /// at bind, or before 6.13 when the first frame arrives).
    pub fn busy_poll_reach(&self) -> Result<BusyPollReach, XskError> {
        let id =
            get_int(self.fd(), libc::SOL_SOCKET, libc::SO_INCOMING_NAPI_ID).map_err(|source| {
                XskError::Syscall {
                    call: "getsockopt(SO_INCOMING_NAPI_ID)",
                    source,
                }
            })?;
        Ok(match u32::try_from(id) {
            Ok(id) if id > 0 => BusyPollReach::Napi(id),
            _ => BusyPollReach::NoNapi,
        })
    }

    /// With busy polling on a NAPI, runs it once in this thread (a non-blocking `recvfrom`,
    /// which the kernel turns into one busy-poll round): what it receives is on the RX ring
    /// before the worker looks.
    pub(super) fn busy_poll_rx(&mut self) -> Result<(), XskError> {
        if !self.busy_poll {
            return Ok(());
        }
        recv_empty(self.fd()).map_err(|source| XskError::Syscall {
            call: "recvfrom (busy poll)",
            source,
        })
    }
}

/// Logs how to let busy polling keep the receive path when `interface` does not defer its
/// interrupts: without `napi_defer_hard_irqs` and `gro_flush_timeout` the NIC's interrupt
/// comes back after every busy poll and most frames are still received in softirqs (a Linux
/// 6.1 guest's virtio-net, `tests/busy_poll_guest.rs`: 0-6 % of the frames busy polled
/// without, 98-99 % with, `idle = "spin"`).
pub fn check_irq_deferral(interface: &str) {
    match crate::sys::interface::irq_deferral(interface) {
        Ok((defer, timeout)) if defer > 0 && timeout > 0 => {}
        Ok((defer, timeout)) => {
            tracing::info!(interface, napi_defer_hard_irqs = defer, gro_flush_timeout = timeout, "busy polling: the NIC does not defer its interrupts, so they come back after each busy poll and most frames are still received in softirqs; for preferred busy polling set both, e.g. `echo 2 > /sys/class/net/{interface}/napi_defer_hard_irqs` and `echo 200000 > /sys/class/net/{interface}/gro_flush_timeout`");
        }
        Err(error) => {
            tracing::debug!(interface, %error, "busy polling: the NIC's interrupt deferral is unknown");
        }
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

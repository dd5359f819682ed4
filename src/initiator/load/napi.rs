//! The load generator's own receive path, busy-polled (`aoe-bench load --napi-poll-us`).
//!
//! On one machine a target's reply wakes the load generator's NAPI thread (veth's receive, in
//! the bench's two-machine rig a kernel thread on the initiator's core) from the target's
//! `sendto`: an IPI paid in the target's call, a third of aoe-xdp's core at 40k requests/s
//! on the bench's VM. Between two machines the NIC raises the initiator's interrupt and the
//! sender pays nothing. A load generator that busy-polls its interfaces' NAPIs (io_uring,
//! `IORING_REGISTER_NAPI`, preferred busy polling) after a round that found nothing keeps that
//! NAPI its own: a reply that comes meanwhile is received in its thread, and the target's send
//! only marks the NAPI missed. Tried on the bench's rig (with the initiator end's interrupt
//! deferral too; docs/performance-history.md, 2026-12-08): it takes the wake-ups off the
//! target's core, but the load generator, now running its own receive path, becomes the
//! bound at queue depth 64, so the bench does not use it.

use std::io;
use std::time::Duration;

use super::port::Port;
use super::LoadError;
use crate::sys::napi::{pollfd, NapiWait};

/// A busy poll of the load's interfaces' NAPIs.
pub(super) struct NapiPoll {
    wait: NapiWait,
    fds: Vec<libc::pollfd>,
}

impl NapiPoll {
    /// For `ports`, busy-polling up to `busy` per call; `None` for a `busy` of zero.
    /// Fails where an interface has no NAPI to poll (on veth: GRO off) or io_uring cannot
    /// busy-poll (before Linux 6.13).
    pub(super) fn open(ports: &[Port], busy: Duration) -> Result<Option<NapiPoll>, LoadError> {
        if busy.is_zero() {
            return Ok(None);
        }
        let fail = |interface: &str, source: io::Error| LoadError::Socket {
            interface: interface.to_owned(),
            source,
        };
        let mut ids = Vec::new();
        for port in ports {
            let ifindex = crate::sys::interface::index(&port.interface)
                .map_err(|e| fail(&port.interface, e))?;
            let napis =
                crate::sys::napi::interface_napis(ifindex).map_err(|e| fail(&port.interface, e))?;
            if napis.is_empty() {
                return Err(LoadError::Config(format!(
                    "--napi-poll-us: {} has no NAPI to busy-poll (on veth: GRO off)",
                    port.interface
                )));
            }
            ids.extend(napis);
        }
        ids.sort_unstable();
        ids.dedup();
        let interfaces = ports
            .iter()
            .map(|p| p.interface.as_str())
            .collect::<Vec<_>>();
        let wait = NapiWait::new(&ids, busy).map_err(|e| fail(&interfaces.join(","), e))?;
        let fds = ports.iter().map(|p| pollfd(p.socket.fd())).collect();
        Ok(Some(NapiPoll { wait, fds }))
    }

    /// Busy-polls until a socket has frames or the busy time passes; whether one has.
    pub(super) fn poll(&mut self, ports: &[Port]) -> Result<bool, LoadError> {
        let busy = self.wait.busy();
        let ready = self
            .wait
            .poll(&mut self.fds, busy)
            .map_err(|source| LoadError::Socket {
                interface: ports
                    .first()
                    .map_or_else(String::new, |p| p.interface.clone()),
                source,
            })?;
        Ok(ready > 0)
    }
}

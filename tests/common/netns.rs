//! The integration tests' network rig: namespaces deleted on drop, veth pairs and `ip netns
//! exec` come from the `netns-rig` crate (xtask builds its networks with it too); here are what
//! only the tests need: code run on a thread that joined a namespace, and raw AF_PACKET
//! sockets to inject and capture Ethernet frames.
//!
//! Every namespace a test makes is `Netns::unique`'s `aoex-<pid>-<tag>`, deleted in `Drop`
//! (which also destroys the veth ends inside it and any XDP program attached to them).
//! Traffic only ever flows on interfaces created here; nothing has an IP address.
//!
//! Privileges: `netns_rig::privileged_or_skip` returns false (after printing `skipping: <why>`)
//! when the tests cannot run here; with `AOE_XDP_REQUIRE_PRIV=1` (CI, `cargo xtask test`) it
//! panics instead, so the real path is always exercised where it can be.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netns_rig::{Netns, Veth, VethPair};

/// Fresh namespaces `<tag>-a` and `<tag>-b` joined by a veth pair of `mtu` bytes whose ends are
/// named `names.0` (in `-a`) and `names.1` (in `-b`).
pub fn joined_namespaces(tag: &str, names: (&str, &str), mtu: u16) -> (Netns, Netns, VethPair) {
    let ns_a = Netns::unique(&format!("{tag}-a")).unwrap();
    let ns_b = Netns::unique(&format!("{tag}-b")).unwrap();
    let veth = Veth::new(&ns_a, names.0, &ns_b, names.1)
        .mtu(mtu)
        .create()
        .unwrap();
    (ns_a, ns_b, veth)
}

/// Runs `serve` in `ns` (on a thread of its own) beside `drive` (here), which starts once
/// `serve` calls the `ready` it is given; returns what each returned (a panic in either is
/// propagated).
pub fn beside<S, D>(
    ns: &Netns,
    serve: impl FnOnce(&dyn Fn()) -> S + Send,
    drive: impl FnOnce() -> D,
) -> (S, D)
where
    S: Send,
{
    std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = scope.spawn(|| in_netns(ns, move || serve(&|| ready_tx.send(()).unwrap())));
        ready_rx
            .recv_timeout(super::frames::WAIT)
            .expect("reflector did not start");
        let driven = drive();
        (server.join().unwrap(), driven)
    })
}

/// Runs `f` on a thread that has joined `ns`'s network namespace and returns its result
/// (a panic in `f` is propagated). Sockets created inside stay in that namespace wherever
/// they are used later.
pub fn in_netns<F, R>(ns: &Netns, f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let path = ns.path();
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            let file = File::open(&path)
                .unwrap_or_else(|error| panic!("open {}: {error}", path.display()));
            // SAFETY: setns only changes this (fresh, scoped) thread's network namespace; the
            // fd is open for the duration of the call.
            let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                ret,
                0,
                "setns into {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            f()
        });
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A raw `AF_PACKET` socket bound to one interface in one namespace, seeing every ethertype.
/// Frames the socket's own host sends (PACKET_OUTGOING) are skipped on receive.
/// PACKET_AUXDATA is on, so VLAN tags stripped by the kernel can be restored.
#[derive(Debug)]
pub struct PacketSocket {
    socket: aoe_xdp::sys::packet::raw::RawSocket,
}

impl PacketSocket {
    /// Opens a socket on `interface` inside `ns`.
    pub fn open(ns: &Netns, interface: &str) -> PacketSocket {
        let socket = in_netns(ns, || aoe_xdp::sys::packet::raw::RawSocket::open(interface))
            .unwrap_or_else(|e| panic!("packet socket on {interface}: {e}"));
        PacketSocket { socket }
    }

    /// The library socket.
    pub fn raw(&self) -> &aoe_xdp::sys::packet::raw::RawSocket {
        &self.socket
    }

    /// Sends one Ethernet frame (exactly these bytes: no padding is added).
    pub fn send(&self, frame: &[u8]) {
        self.socket.send(frame).expect("send on packet socket");
    }

    /// The next incoming frame, or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.recv_matching(timeout, |_| true)
    }

    /// The next incoming frame for which `wanted` is true (others are discarded), or `None`
    /// after `timeout`; a VLAN tag the kernel stripped is put back.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        self.socket
            .recv_matching(timeout, wanted)
            .expect("recv on packet socket")
    }
}

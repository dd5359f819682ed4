//! Test harness for real-kernel network tests: fresh network namespaces, veth pairs, code run
//! inside a namespace, and raw AF_PACKET sockets to inject and capture Ethernet frames.
//!
//! Every namespace is named `aoex-<pid>-<tag>` and deleted in `Drop` (which also destroys the
//! veth ends inside it and any XDP program attached to them). Traffic only ever flows on
//! interfaces created here; nothing has an IP address.
//!
//! Privileges: [`privileged_or_skip`] returns false (after printing `skipping: <why>`) when the
//! tests cannot run here; with `AOE_XDP_REQUIRE_PRIV=1` (CI, `cargo xtask test`) it panics
//! instead, so the real path is always exercised where it can be.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Environment variable that turns "skipping" into a failure.
pub const REQUIRE_PRIV_ENV: &str = "AOE_XDP_REQUIRE_PRIV";

/// True if privileged network tests can run; otherwise prints why (or panics if
/// `AOE_XDP_REQUIRE_PRIV=1`).
pub fn privileged_or_skip() -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        Some("not running as root (needs CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF)".to_owned())
    } else if !Path::new("/proc/self/ns/net").exists() {
        Some("kernel without network namespace support".to_owned())
    } else {
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!(
                "`ip netns list` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(error) => Some(format!("iproute2 `ip` not runnable: {error}")),
        }
    };
    let Some(why) = why else {
        return true;
    };
    if std::env::var(REQUIRE_PRIV_ENV).is_ok_and(|value| value == "1") {
        panic!("{REQUIRE_PRIV_ENV}=1 but privileged tests cannot run: {why}");
    }
    eprintln!("skipping: {why}");
    false
}

/// Runs `ip` with `args`; panics with the full command line and stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run ip {}: {error}", args.join(" ")));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace that exists for the lifetime of this value.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `aoex-<pid>-<tag>`. `tag` must be unique among concurrently running tests.
    pub fn new(tag: &str) -> NetNs {
        let name = format!("aoex-{}-{tag}", std::process::id());
        if Path::new("/run/netns").join(&name).exists() {
            // Left behind by an earlier process with the same pid (pids are reused).
            ip(&["netns", "del", &name]);
        }
        ip(&["netns", "add", &name]);
        NetNs { name }
    }

    /// The namespace name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !out.as_ref().is_ok_and(|out| out.status.success()) {
            eprintln!("warning: could not delete netns {}: {out:?}", self.name);
        }
    }
}

/// Lists the namespaces this process created that still exist (for leak checks).
pub fn leftover_namespaces() -> Vec<String> {
    let prefix = format!("aoex-{}-", std::process::id());
    ip(&["netns", "list"])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Runs `f` on a thread that has joined `ns`'s network namespace and returns its result
/// (a panic in `f` is propagated). Sockets created inside stay in that namespace wherever
/// they are used later.
pub fn in_netns<F, R>(ns: &NetNs, f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let path = Path::new("/run/netns").join(ns.name());
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

/// Interface index of `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> u32 {
    let c_name = std::ffi::CString::new(name).expect("no NUL in interface name");
    // SAFETY: `c_name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    assert_ne!(
        index,
        0,
        "no interface {name}: {}",
        std::io::Error::last_os_error()
    );
    index
}

/// One end of a veth pair.
#[derive(Clone, Debug)]
pub struct VethEnd {
    /// Namespace name.
    pub netns: String,
    /// Interface name.
    pub name: String,
    /// Interface index inside its namespace.
    pub ifindex: u32,
    /// MAC address.
    pub mac: [u8; 6],
}

/// A veth pair with one RX and one TX queue per end (so all traffic lands on queue 0), both
/// ends up, no addresses. Destroyed with its namespaces.
#[derive(Debug)]
pub struct VethPair {
    /// The end in the first namespace.
    pub a: VethEnd,
    /// The end in the second namespace.
    pub b: VethEnd,
}

impl VethPair {
    /// Creates `name_a` in `ns_a` paired with `name_b` in `ns_b`, both with `mtu`.
    pub fn new(ns_a: &NetNs, ns_b: &NetNs, name_a: &str, name_b: &str, mtu: u32) -> VethPair {
        VethPair::with_b_tx_queues(ns_a, ns_b, name_a, name_b, mtu, 1)
    }

    /// As [`VethPair::new`], with `b_tx_queues` TX queues on side B. More than one makes
    /// native XDP on side A fail (veth wants at least as many RX queues as its peer has TX
    /// queues): a way to provoke the fallbacks.
    pub fn with_b_tx_queues(
        ns_a: &NetNs,
        ns_b: &NetNs,
        name_a: &str,
        name_b: &str,
        mtu: u32,
        b_tx_queues: u32,
    ) -> VethPair {
        VethPair::with_queue_counts(ns_a, ns_b, (name_a, name_b), mtu, [1, 1, 1, b_tx_queues])
    }

    /// As [`VethPair::new`], with `queues` RX and TX queues on both ends (frames then spread
    /// over side A's RX queues).
    #[allow(dead_code, reason = "not every test binary uses it")]
    pub fn with_queues(
        ns_a: &NetNs,
        ns_b: &NetNs,
        name_a: &str,
        name_b: &str,
        mtu: u32,
        queues: u32,
    ) -> VethPair {
        VethPair::with_queue_counts(ns_a, ns_b, (name_a, name_b), mtu, [queues; 4])
    }

    /// The pair with `[A RX, A TX, B RX, B TX]` queues.
    fn with_queue_counts(
        ns_a: &NetNs,
        ns_b: &NetNs,
        (name_a, name_b): (&str, &str),
        mtu: u32,
        queues: [u32; 4],
    ) -> VethPair {
        let mtu = mtu.to_string();
        let [a_rx, a_tx, b_rx, b_tx] = queues.map(|count| count.to_string());
        ns_a.ip(&[
            "link",
            "add",
            name_a,
            "numrxqueues",
            &a_rx,
            "numtxqueues",
            &a_tx,
            "type",
            "veth",
            "peer",
            "name",
            name_b,
            "numrxqueues",
            &b_rx,
            "numtxqueues",
            &b_tx,
            "netns",
            ns_b.name(),
        ]);
        ns_a.ip(&["link", "set", name_a, "mtu", &mtu, "up"]);
        ns_b.ip(&["link", "set", name_b, "mtu", &mtu, "up"]);
        VethPair {
            a: veth_end(ns_a, name_a),
            b: veth_end(ns_b, name_b),
        }
    }
}

fn veth_end(ns: &NetNs, name: &str) -> VethEnd {
    let line = ns.ip(&["-o", "link", "show", "dev", name]);
    let mac_text = line
        .split("link/ether ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC in `ip link show {name}`: {line}"));
    let mut mac = [0u8; 6];
    for (byte, text) in mac.iter_mut().zip(mac_text.split(':')) {
        *byte = u8::from_str_radix(text, 16).expect("hex MAC byte");
    }
    let index = in_netns(ns, || ifindex(name));
    VethEnd {
        netns: ns.name().to_owned(),
        name: name.to_owned(),
        ifindex: index,
        mac,
    }
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
    pub fn open(ns: &NetNs, interface: &str) -> PacketSocket {
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

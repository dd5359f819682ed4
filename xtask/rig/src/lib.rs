//! Network namespaces and veth pairs: the one rig the integration tests (`tests/common/netns.rs`)
//! and `cargo xtask` (`demo`, `bench`, `soak`) build their networks with.
//!
//! Rules every user relies on:
//! - A [`Netns`] is deleted when it is dropped, also when a test or a command fails half-way;
//!   that destroys the veth ends inside it and any XDP program attached to them. Declare
//!   namespaces before whatever runs in them, so that it is dropped (stopped) first.
//! - Names are unique: [`Netns::unique`] names a namespace `aoex-<pid>-<tag>` (what
//!   [`leftover_namespaces`] looks for); xtask commands pass their own `<command>-<pid>-...`.
//! - A veth pair has one RX and one TX queue per end (so every frame lands on queue 0) unless
//!   a test of several queues asks for more ([`Veth::queues`], [`Veth::b_tx_queues`]).
//! - Nothing here signals a process. A program started with [`Netns::exec`] is its caller's
//!   to stop, by its own pid: `ip netns exec` execs in place, so the child's pid is the
//!   program's.
//! - Traffic flows only on interfaces created here; nothing gets an IP address.
//!
//! Everything goes through iproute2's `ip`; a failure is an `std::io::Error` naming the full
//! command and what it printed. There is no `unsafe` here: joining a namespace from a thread
//! of this process (`setns`) is left to the tests, the one user that needs it.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable that turns "skipping" into a failure (set by CI and `cargo xtask
/// test`), so the real path is always exercised where it can be.
pub const REQUIRE_PRIV_ENV: &str = "AOE_XDP_REQUIRE_PRIV";

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// True if privileged network tests can run here; otherwise prints `skipping: <why>` and
/// returns false, or panics if `AOE_XDP_REQUIRE_PRIV=1`.
pub fn privileged_or_skip() -> bool {
    let Some(why) = cannot_run_here() else {
        return true;
    };
    if std::env::var(REQUIRE_PRIV_ENV).is_ok_and(|value| value == "1") {
        panic!("{REQUIRE_PRIV_ENV}=1 but privileged tests cannot run: {why}");
    }
    eprintln!("skipping: {why}");
    false
}

/// Why namespaces cannot be made here, if they cannot.
fn cannot_run_here() -> Option<String> {
    match effective_uid() {
        Ok(0) => {}
        Ok(_) => {
            return Some(
                "not running as root (needs CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF)".to_owned(),
            )
        }
        Err(error) => return Some(format!("cannot tell the effective user: {error}")),
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Some("kernel without network namespace support".to_owned());
    }
    ip(&["netns", "list"]).err().map(|error| error.to_string())
}

/// The effective user id: the second field of `Uid:` in `/proc/self/status`.
fn effective_uid() -> io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix("Uid:")?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .ok_or_else(|| io::Error::other("no Uid line in /proc/self/status"))
}

/// Runs `ip args...` and returns what it printed on stdout.
pub fn ip(args: &[&str]) -> io::Result<String> {
    stdout_of(Command::new("ip").args(args))
}

/// Runs `command`; its stdout, or an error naming the command, its status and its stderr.
fn stdout_of(command: &mut Command) -> io::Result<String> {
    let out = command.output().map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot run {}: {error}", describe(command)),
        )
    })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{} failed ({}): {}",
            describe(command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `command` as a shell-like line, for messages.
fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// The prefix of the namespaces [`Netns::unique`] makes in this process.
fn own_prefix() -> String {
    format!("aoex-{}-", std::process::id())
}

/// The namespaces [`Netns::unique`] made in this process that still exist (for leak checks).
pub fn leftover_namespaces() -> io::Result<Vec<String>> {
    let prefix = own_prefix();
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect())
}

/// A network namespace that exists as long as this value: deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name`, which must not exist yet.
    pub fn new(name: String) -> io::Result<Netns> {
        ip(&["netns", "add", &name])?;
        Ok(Netns { name })
    }

    /// Creates `aoex-<pid>-<tag>`; `tag` must be unique among the namespaces this process
    /// holds at once. One of that name left behind by an earlier process with the same pid
    /// (pids are reused) is deleted first.
    pub fn unique(tag: &str) -> io::Result<Netns> {
        let name = format!("{}{tag}", own_prefix());
        if Path::new(NETNS_DIR).join(&name).exists() {
            ip(&["netns", "del", &name])?;
        }
        Netns::new(name)
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, to join it with `setns`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `ip -n NAME args...` and returns what it printed.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        stdout_of(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Brings `interface` up.
    pub fn link_up(&self, interface: &str) -> io::Result<()> {
        self.ip(&["link", "set", interface, "up"]).map(drop)
    }

    /// Takes `interface` down.
    pub fn link_down(&self, interface: &str) -> io::Result<()> {
        self.ip(&["link", "set", interface, "down"]).map(drop)
    }

    /// The interface `name` in this namespace: its index and MAC address.
    pub fn interface(&self, name: &str) -> io::Result<VethEnd> {
        // One line: `5: vt@if4: <BROADCAST,...> mtu 1500 ... link/ether 02:..:01 brd ...`.
        let line = self.ip(&["-o", "link", "show", "dev", name])?;
        let unexpected = |what: &str| {
            io::Error::other(format!("no {what} in `ip -o link show dev {name}`: {line}"))
        };
        let ifindex = line
            .split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .ok_or_else(|| unexpected("interface index"))?;
        let mac_text = line
            .split("link/ether ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| unexpected("MAC address"))?;
        let mut mac = [0u8; 6];
        let mut bytes = mac_text.split(':');
        for byte in &mut mac {
            *byte = bytes
                .next()
                .and_then(|text| u8::from_str_radix(text, 16).ok())
                .ok_or_else(|| unexpected("well-formed MAC address"))?;
        }
        Ok(VethEnd {
            name: name.to_owned(),
            ifindex,
            mac,
        })
    }

    /// `ip netns exec NAME program`, not started: `program` runs in this namespace, and as
    /// `ip` execs it, the child's pid is the program's own.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// As [`Netns::exec`], with the program pinned to `core` by `taskset` (which also execs).
    pub fn exec_pinned(&self, core: u32, program: impl AsRef<OsStr>) -> Command {
        let mut command = self.exec("taskset");
        command.args(["-c", &core.to_string()]).arg(program);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete netns {}: {error}", self.name);
        }
    }
}

/// One end of a veth pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethEnd {
    /// Interface name.
    pub name: String,
    /// Interface index inside its namespace.
    pub ifindex: u32,
    /// MAC address.
    pub mac: [u8; 6],
}

/// Both ends of a veth pair, up, without addresses. It goes away with either namespace.
#[derive(Clone, Debug)]
pub struct VethPair {
    /// The end in the first namespace.
    pub a: VethEnd,
    /// The end in the second namespace.
    pub b: VethEnd,
}

/// A veth pair to create: `a` in one namespace joined to `b` in another, MTU 1500 and one RX
/// and one TX queue per end unless set otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Veth<'a> {
    a: (&'a Netns, &'a str),
    b: (&'a Netns, &'a str),
    mtu: u16,
    /// `[A RX, A TX, B RX, B TX]`.
    queues: [u32; 4],
}

impl<'a> Veth<'a> {
    /// The pair `a` in `a_ns` and `b` in `b_ns`.
    pub fn new(a_ns: &'a Netns, a: &'a str, b_ns: &'a Netns, b: &'a str) -> Veth<'a> {
        Veth {
            a: (a_ns, a),
            b: (b_ns, b),
            mtu: 1500,
            queues: [1; 4],
        }
    }

    /// Both ends with this MTU.
    pub fn mtu(self, mtu: u16) -> Veth<'a> {
        Veth { mtu, ..self }
    }

    /// `count` RX and TX queues on both ends: frames then spread over A's RX queues.
    pub fn queues(self, count: u32) -> Veth<'a> {
        Veth {
            queues: [count; 4],
            ..self
        }
    }

    /// `count` TX queues on side B. More than one makes native XDP on side A fail (veth wants
    /// at least as many RX queues as its peer has TX queues): a way to provoke the fallbacks.
    pub fn b_tx_queues(self, count: u32) -> Veth<'a> {
        let [a_rx, a_tx, b_rx, _] = self.queues;
        Veth {
            queues: [a_rx, a_tx, b_rx, count],
            ..self
        }
    }

    /// Creates the pair and brings both ends up.
    pub fn create(self) -> io::Result<VethPair> {
        let ((a_ns, a), (b_ns, b)) = (self.a, self.b);
        let [a_rx, a_tx, b_rx, b_tx] = self.queues.map(|count| count.to_string());
        a_ns.ip(&[
            "link",
            "add",
            a,
            "numrxqueues",
            &a_rx,
            "numtxqueues",
            &a_tx,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "numrxqueues",
            &b_rx,
            "numtxqueues",
            &b_tx,
            "netns",
            b_ns.name(),
        ])?;
        let mtu = self.mtu.to_string();
        a_ns.ip(&["link", "set", a, "mtu", &mtu, "up"])?;
        b_ns.ip(&["link", "set", b, "mtu", &mtu, "up"])?;
        Ok(VethPair {
            a: a_ns.interface(a)?,
            b: b_ns.interface(b)?,
        })
    }
}

/// Joins `a` in `a_ns` and `b` in `b_ns` with a veth pair of one RX and one TX queue per end,
/// MTU `mtu`, both ends up.
pub fn veth_pair(a_ns: &Netns, a: &str, b_ns: &Netns, b: &str, mtu: u16) -> io::Result<VethPair> {
    Veth::new(a_ns, a, b_ns, b).mtu(mtu).create()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_effective_uid_reads_proc() {
        effective_uid().expect("a Uid line in /proc/self/status");
    }

    #[test]
    fn test_describe_names_program_and_arguments() {
        let mut command = Command::new("ip");
        command.args(["-n", "x", "link"]);
        assert_eq!(describe(&command), "ip -n x link");
    }
}

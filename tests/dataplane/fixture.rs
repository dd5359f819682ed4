//! The one set-up of the suite: a target namespace and a client namespace joined by veth pairs,
//! and a target directory (configuration, sparse backing files, state) for the real `aoe-xdp`.
//! A test names only what differs from the default ([`Setup`]); the default is one path at
//! MTU 1500, one device `e3.1` of [`SECTORS`] sectors and the `[target]` defaults of
//! `TargetDir` (one worker, otherwise the target's own defaults).

use std::time::Duration;

use aoe_xdp::initiator::client::{Client, Found};
use aoe_xdp::sys::packet::raw::RawSocket;
use aoe_xdp::wire::MacAddr;
use netns_rig::{privileged_or_skip, Netns, Veth, VethEnd, VethPair};

use crate::common::netns::{in_netns, PacketSocket};
use crate::common::target::{DeviceSpec, TargetDir, TargetProcess};

pub const SHELF: u16 = 3;
pub const SLOT: u8 = 1;
/// 1 MiB: small enough to walk whole in a test, large enough for random I/O.
pub const SECTORS: u64 = 2048;
/// How long discovery listens for answers.
pub const DISCOVER_WAIT: Duration = Duration::from_millis(200);
/// How long to watch for a reply that must NOT come.
pub const QUIET: Duration = Duration::from_millis(300);

/// Which transport the target serves through: the tests in `main.rs`'s list run once per
/// transport, the AF_PACKET fallback through exactly the same suite as AF_XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Xdp,
    /// AF_PACKET with its default `TPACKET_V2` receive ring.
    Packet,
    /// AF_PACKET with `packet-ring = "v3"`.
    PacketV3,
}

impl Transport {
    /// A namespace tag unique per transport.
    pub fn tag(self, tag: &str) -> String {
        match self {
            Transport::Xdp => format!("{tag}-x"),
            Transport::Packet => format!("{tag}-p"),
            Transport::PacketV3 => format!("{tag}-3"),
        }
    }

    /// `[target]` lines selecting this transport, plus the test's own.
    pub fn config(self, extra: &str) -> String {
        match self {
            Transport::Xdp => format!("socket = \"xdp\"\n{extra}"),
            Transport::Packet => format!("socket = \"packet\"\n{extra}"),
            Transport::PacketV3 => {
                format!("socket = \"packet\"\npacket-ring = \"v3\"\n{extra}")
            }
        }
    }
}

/// What a test sets up, built with the defaults above; [`Setup::build`] makes it.
#[must_use]
pub struct Setup {
    tag: String,
    path_count: usize,
    mtu: u16,
    /// RX and TX queues per veth end (1 unless a test of several queues asks).
    queues: u32,
    /// TX queues on each client end, when not `queues`.
    client_tx_queues: Option<u32>,
    /// `[target]` lines.
    target: String,
    /// The `interfaces` key, when not every target end by name.
    interfaces: Option<Vec<String>>,
    devices: Vec<DeviceSpec>,
}

impl Setup {
    /// The default set-up; `tag` names its namespaces (unique per test).
    pub fn new(tag: &str) -> Setup {
        Setup {
            tag: tag.to_owned(),
            path_count: 1,
            mtu: 1500,
            queues: 1,
            client_tx_queues: None,
            target: String::new(),
            interfaces: None,
            devices: vec![DeviceSpec::new(SHELF, SLOT, SECTORS)],
        }
    }

    /// As [`Setup::new`], served over `transport` (the tag gets the transport's suffix).
    pub fn over(transport: Transport, tag: &str) -> Setup {
        Setup::new(&transport.tag(tag)).target(&transport.config(""))
    }

    /// `count` paths: `vt0`/`vc0`, `vt1`/`vc1`, ... (`vt`/`vc` when there is one).
    pub fn paths(self, count: usize) -> Setup {
        Setup {
            path_count: count,
            ..self
        }
    }

    /// Links of `mtu` bytes.
    pub fn mtu(self, mtu: u16) -> Setup {
        Setup { mtu, ..self }
    }

    /// `count` RX and TX queues on every veth end.
    pub fn queues(self, count: u32) -> Setup {
        Setup {
            queues: count,
            ..self
        }
    }

    /// `count` TX queues on each client end (see `netns_rig::Veth::b_tx_queues`).
    pub fn client_tx_queues(self, count: u32) -> Setup {
        Setup {
            client_tx_queues: Some(count),
            ..self
        }
    }

    /// More `[target]` lines.
    pub fn target(mut self, lines: &str) -> Setup {
        self.target.push_str(lines);
        if !self.target.ends_with('\n') {
            self.target.push('\n');
        }
        self
    }

    /// The `interfaces` key as given (a glob, say), instead of every target end by name.
    pub fn interfaces(self, interfaces: &[&str]) -> Setup {
        Setup {
            interfaces: Some(interfaces.iter().map(|name| (*name).to_owned()).collect()),
            ..self
        }
    }

    /// One device more, after the default one.
    pub fn and_device(mut self, device: DeviceSpec) -> Setup {
        self.devices.push(device);
        self
    }

    /// The default device with `sectors` sectors.
    pub fn sectors(self, sectors: u64) -> Setup {
        Setup {
            devices: vec![DeviceSpec::new(SHELF, SLOT, sectors)],
            ..self
        }
    }

    /// A `key = value` line more for every device.
    pub fn device_with(self, line: &str) -> Setup {
        let devices: Vec<DeviceSpec> = self.devices.iter().map(|d| d.clone().with(line)).collect();
        Setup { devices, ..self }
    }

    /// The namespaces, the veths and the target directory (the target not yet started);
    /// `None` (after printing why) when the tests cannot run here.
    pub fn build(self) -> Option<(Net, TargetDir)> {
        if !privileged_or_skip() {
            return None;
        }
        let net = Net::new(&self);
        let names: Vec<String> = self
            .interfaces
            .clone()
            .unwrap_or_else(|| net.paths.iter().map(|path| path.a.name.clone()).collect());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let dir = TargetDir::new(&names, &self.target, &self.devices);
        Some((net, dir))
    }

    /// Builds the set-up, starts the target in it and runs `test` with the three (the target
    /// stops when `test` is done with it, before the namespaces go); returns at once (after
    /// printing why) when the tests cannot run here.
    pub fn serve(self, test: impl FnOnce(&Net, &TargetDir, TargetProcess<'_>)) {
        let Some((net, dir)) = self.build() else {
            return;
        };
        test(&net, &dir, dir.start(&net.target_ns));
    }
}

/// A target namespace and a client namespace joined by veth pairs: path `i` is `vt<i>` in
/// the target namespace and `vc<i>` in the client namespace (`vt`/`vc` when there is one).
/// Field order is drop order: the veths go with their namespaces.
pub struct Net {
    paths: Vec<VethPair>,
    pub target_ns: Netns,
    pub client_ns: Netns,
}

impl Net {
    fn new(setup: &Setup) -> Net {
        let target_ns = Netns::unique(&format!("{}-t", setup.tag)).unwrap();
        let client_ns = Netns::unique(&format!("{}-c", setup.tag)).unwrap();
        let paths = (0..setup.path_count)
            .map(|index| {
                let suffix = if setup.path_count == 1 {
                    String::new()
                } else {
                    index.to_string()
                };
                let (target_end, client_end) = (format!("vt{suffix}"), format!("vc{suffix}"));
                let veth = Veth::new(&target_ns, &target_end, &client_ns, &client_end)
                    .mtu(setup.mtu)
                    .queues(setup.queues);
                let veth = match setup.client_tx_queues {
                    Some(count) => veth.b_tx_queues(count),
                    None => veth,
                };
                veth.create().unwrap()
            })
            .collect();
        Net {
            paths,
            target_ns,
            client_ns,
        }
    }

    /// The target's end of path `index`.
    pub fn target_end(&self, index: usize) -> &VethEnd {
        &self.paths[index].a
    }

    /// The client's end of path `index`.
    pub fn client_end(&self, index: usize) -> &VethEnd {
        &self.paths[index].b
    }

    /// A raw socket on the client end of path `index`.
    pub fn raw(&self, index: usize) -> RawSocket {
        let name = self.client_end(index).name.clone();
        in_netns(&self.client_ns, || RawSocket::open(&name))
            .unwrap_or_else(|error| panic!("raw socket on {name}: {error}"))
    }

    /// A blocking initiator on the client end of path `index`.
    pub fn client(&self, index: usize) -> Client {
        Client::new(self.raw(index), MacAddr(self.client_end(index).mac))
    }

    /// A blocking initiator on the client end of path `index`, and the one device it
    /// discovers there.
    pub fn discover(&self, index: usize) -> (Client, Found) {
        let mut client = self.client(index);
        let device = discover_one(&mut client);
        (client, device)
    }

    /// An initiator that gives up quickly, for requests that must go unanswered. Its tags
    /// start where every client's do: open it right before use, or it takes replies meant
    /// for an older client on the same interface for its own.
    pub fn impatient_client(&self, index: usize) -> Client {
        self.client(index).with_retry(Duration::from_millis(150), 2)
    }

    /// A capture socket on the client end of path `index`.
    pub fn monitor(&self, index: usize) -> PacketSocket {
        PacketSocket::open(&self.client_ns, &self.client_end(index).name)
    }
}

/// Discovers and returns the one device the target exports on this path.
pub fn discover_one(client: &mut Client) -> Found {
    let found = client.discover(DISCOVER_WAIT).expect("discover");
    assert_eq!(found.len(), 1, "expected exactly one device: {found:?}");
    found.into_iter().next().expect("one device")
}

//! End-to-end tests of the real `aoe-xdp` binary: it runs in one network namespace and serves
//! sparse files over veth pairs to initiators in another (the library's blocking [`Client`],
//! raw frames, and Debian's `aoeping`). Each test has its own namespaces, veths and temporary
//! directory (see `common::target`), so they run in parallel.
//!
//! Needs root; prints "skipping: ..." otherwise (or fails with `AOE_XDP_REQUIRE_PRIV=1`).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use aoe_xdp::initiator::client::{Client, ClientError, Found};
use aoe_xdp::initiator::frames::{self, AtaCmd, Reply, Route};
use aoe_xdp::sys::packet::raw::RawSocket;
use aoe_xdp::wire::ata::{error as ata_error, status as ata_status};
use aoe_xdp::wire::{
    AoeCommand, AoeError, ConfigCommand, DirectiveCommand, DirectiveRepr, MacAddr, MacMaskCommand,
    ReserveCommand, SECTOR_SIZE,
};
use common::faultfs::FaultFs;
use common::mounts::SmallTmpfs;
use common::netns::{in_netns, PacketSocket};
use common::target::{DeviceSpec, TargetDir};
use netns_rig::{privileged_or_skip, Netns, Veth, VethEnd, VethPair};

/// Which transport the target serves through: every test runs once per transport, the
/// AF_PACKET fallback through exactly the same suite as AF_XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Xdp,
    /// AF_PACKET with its default `TPACKET_V2` receive ring.
    Packet,
    /// AF_PACKET with `packet-ring = "v3"`.
    PacketV3,
}

impl Transport {
    /// A namespace tag unique per transport.
    fn tag(self, tag: &str) -> String {
        match self {
            Transport::Xdp => format!("{tag}-x"),
            Transport::Packet => format!("{tag}-p"),
            Transport::PacketV3 => format!("{tag}-3"),
        }
    }

    /// `[target]` lines selecting this transport, plus the test's own.
    fn config(self, extra: &str) -> String {
        match self {
            Transport::Xdp => format!("socket = \"xdp\"\n{extra}"),
            Transport::Packet => format!("socket = \"packet\"\n{extra}"),
            Transport::PacketV3 => {
                format!("socket = \"packet\"\npacket-ring = \"v3\"\n{extra}")
            }
        }
    }
}

/// Runs each listed test once over AF_XDP and once over the AF_PACKET fallback with each of
/// its receive rings.
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        mod xdp {
            $(#[test] fn $name() { super::$name(super::Transport::Xdp) })*
        }
        mod packet {
            $(#[test] fn $name() { super::$name(super::Transport::Packet) })*
        }
        mod packet_v3 {
            $(#[test] fn $name() { super::$name(super::Transport::PacketV3) })*
        }
    };
}

on_both_transports!(
    test_discovery_and_identify,
    test_write_read_whole_device,
    test_ata_errors,
    test_two_interfaces,
    test_config_string,
    test_mask_and_reservation,
    test_aoeping,
    test_restart_keeps_state,
    test_many_requests,
    test_multipath_merge,
    test_second_instance_refused,
    test_stats,
    test_jumbo_frames,
    test_resident_device,
    test_mapped_reads_device,
    test_foreign_destination_refused,
    test_accept_any_destination
);

const SHELF: u16 = 3;
const SLOT: u8 = 1;
/// 1 MiB: small enough to walk whole in a test, large enough for random I/O.
const SECTORS: u64 = 2048;
/// How long discovery listens for answers.
const DISCOVER_WAIT: Duration = Duration::from_millis(200);
/// How long to watch for a reply that must NOT come.
const QUIET: Duration = Duration::from_millis(300);

/// A target namespace and a client namespace joined by veth pairs: path `i` is `vt<i>` in
/// the target namespace and `vc<i>` in the client namespace (`vt`/`vc` when there is one).
/// Field order is drop order: the veths go with their namespaces.
struct Net {
    paths: Vec<VethPair>,
    target_ns: Netns,
    client_ns: Netns,
}

impl Net {
    /// `None` (after printing why) when the tests cannot run here.
    fn new(tag: &str, path_count: usize) -> Option<Net> {
        Net::with_mtu(tag, path_count, 1500)
    }

    /// As [`Net::new`], with links of `mtu` bytes.
    fn with_mtu(tag: &str, path_count: usize, mtu: u16) -> Option<Net> {
        if !privileged_or_skip() {
            return None;
        }
        let target_ns = Netns::unique(&format!("{tag}-t")).unwrap();
        let client_ns = Netns::unique(&format!("{tag}-c")).unwrap();
        let paths = (0..path_count)
            .map(|index| {
                let suffix = if path_count == 1 {
                    String::new()
                } else {
                    index.to_string()
                };
                Veth::new(
                    &target_ns,
                    &format!("vt{suffix}"),
                    &client_ns,
                    &format!("vc{suffix}"),
                )
                .mtu(mtu)
                .create()
                .unwrap()
            })
            .collect();
        Some(Net {
            paths,
            target_ns,
            client_ns,
        })
    }

    /// The target's end of path `index`.
    fn target_end(&self, index: usize) -> &VethEnd {
        &self.paths[index].a
    }

    /// The client's end of path `index`.
    fn client_end(&self, index: usize) -> &VethEnd {
        &self.paths[index].b
    }

    /// A raw socket on the client end of path `index`.
    fn raw(&self, index: usize) -> RawSocket {
        let name = self.client_end(index).name.clone();
        in_netns(&self.client_ns, || RawSocket::open(&name))
            .unwrap_or_else(|error| panic!("raw socket on {name}: {error}"))
    }

    /// A blocking initiator on the client end of path `index`.
    fn client(&self, index: usize) -> Client {
        Client::new(self.raw(index), MacAddr(self.client_end(index).mac))
    }

    /// An initiator that gives up quickly, for requests that must go unanswered. Its tags
    /// start where every client's do: open it right before use, or it takes replies meant
    /// for an older client on the same interface for its own.
    fn impatient_client(&self, index: usize) -> Client {
        self.client(index).with_retry(Duration::from_millis(150), 2)
    }

    /// A capture socket on the client end of path `index`.
    fn monitor(&self, index: usize) -> PacketSocket {
        PacketSocket::open(&self.client_ns, &self.client_end(index).name)
    }
}

/// Discovers and returns the one device the target exports on this path.
fn discover_one(client: &mut Client) -> Found {
    let found = client.discover(DISCOVER_WAIT).expect("discover");
    assert_eq!(found.len(), 1, "expected exactly one device: {found:?}");
    found.into_iter().next().expect("one device")
}

/// A sector whose bytes depend on its address and `seed`: misplaced data never matches.
fn sector_pattern(lba: u64, seed: u64) -> Vec<u8> {
    let mut state = lba.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    let mut sector = Vec::with_capacity(SECTOR_SIZE);
    sector.extend_from_slice(&lba.to_be_bytes());
    sector.extend_from_slice(&seed.to_be_bytes());
    while sector.len() < SECTOR_SIZE {
        state = xorshift(state);
        sector.extend_from_slice(&state.to_le_bytes());
    }
    sector
}

/// `count` consecutive sectors of [`sector_pattern`].
fn pattern(lba: u64, count: u64, seed: u64) -> Vec<u8> {
    (lba..lba + count)
        .flat_map(|sector| sector_pattern(sector, seed))
        .collect()
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The byte offset of sector `lba`.
fn byte_offset(lba: u64) -> usize {
    usize::try_from(lba).expect("small device") * SECTOR_SIZE
}

/// Asserts `result` is an ATA error with error register `error`.
fn assert_ata_error<T: std::fmt::Debug>(result: Result<T, ClientError>, error: u8, what: &str) {
    match result {
        Err(ClientError::Ata { status, error: got }) => {
            assert_ne!(status & ata_status::ERR, 0, "{what}: ERR not set");
            assert_eq!(got, error, "{what}: ATA error register");
        }
        other => panic!("{what}: expected ATA error {error:#04x}, got {other:?}"),
    }
}

/// Asserts `result` is the AoE error `error`.
fn assert_aoe_error<T: std::fmt::Debug>(result: Result<T, ClientError>, error: AoeError) {
    match result {
        Err(ClientError::Aoe(got)) => assert_eq!(got, error),
        other => panic!("expected AoE error {error:?}, got {other:?}"),
    }
}

/// Asserts the target never answered.
fn assert_silent<T: std::fmt::Debug>(result: Result<T, ClientError>, what: &str) {
    assert!(
        matches!(result, Err(ClientError::Timeout { .. })),
        "{what}: expected no reply, got {result:?}"
    );
}

/// Little-endian word `index` of an IDENTIFY block.
fn word(identify: &[u8], index: usize) -> u16 {
    u16::from_le_bytes([identify[2 * index], identify[2 * index + 1]])
}

/// An ATA string (two characters per word, first in the high byte), trailing spaces cut.
fn ata_string(identify: &[u8], first_word: usize, words: usize) -> String {
    let mut text = String::new();
    for index in first_word..first_word + words {
        let [high, low] = word(identify, index).to_be_bytes();
        text.push(char::from(high));
        text.push(char::from(low));
    }
    text.trim_end().to_owned()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Broadcast discovery finds the device with the configured buffer count and the sectors an
/// MTU-1500 frame carries; directed queries reach only our address; IDENTIFY reports the file's
/// capacity and the configured strings; the start-up advertisement is broadcast.
fn test_discovery_and_identify(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-disc"), 1) else {
        return;
    };
    // An odd size, so the capacity cannot be right by accident; default idle mode (spin).
    let sectors = 5001;
    let dir = TargetDir::new(
        &["vt"],
        &transport.config("idle = \"spin\""),
        &[DeviceSpec::new(SHELF, SLOT, sectors)
            .with("model = \"aoe-xdp dataplane test\"")
            .with("serial = \"DP-0001\"")],
    );
    let monitor = net.monitor(0);
    let _target = dir.start(&net.target_ns);
    let target_mac = MacAddr(net.target_end(0).mac);

    let advert = monitor
        .recv_matching(Duration::from_secs(2), |f| Reply::parse(f).is_some())
        .expect("a start-up advertisement");
    let advert = Reply::parse(&advert).expect("AoE response");
    assert_eq!(advert.src, target_mac);
    assert!(advert.dst.is_broadcast());
    assert_eq!((advert.aoe.major, advert.aoe.minor), (SHELF, SLOT));
    assert_eq!(advert.aoe.command, AoeCommand::QueryConfig);

    let mut client = net.client(0);
    let found = discover_one(&mut client);
    assert_eq!(found.mac, target_mac);
    assert_eq!((found.shelf, found.slot), (SHELF, SLOT));
    assert_eq!(found.buffer_count, 64, "queue-length default");
    assert_eq!(found.sector_count, 2, "(1500 - 36) / 512");
    assert!(found.config_string.is_empty());

    // Directed Query Config: our address answers, a neighbour's does not.
    let config = client
        .query_config(&found, ConfigCommand::Read, b"")
        .expect("directed query");
    assert!(config.is_empty());
    for (shelf, slot) in [(SHELF, SLOT + 1), (SHELF + 1, SLOT), (SHELF + 1, 0xFF)] {
        let other = Found {
            shelf,
            slot,
            ..found.clone()
        };
        assert_silent(
            net.impatient_client(0)
                .query_config(&other, ConfigCommand::Read, b""),
            &format!("query e{shelf}.{slot}"),
        );
    }

    let identify = client.identify(&found).expect("identify");
    let lba28 = u32::from(word(&identify, 60)) | u32::from(word(&identify, 61)) << 16;
    assert_eq!(u64::from(lba28), sectors, "LBA28 capacity (words 60-61)");
    let lba48 = (100..104).rev().fold(0u64, |sum, index| {
        sum << 16 | u64::from(word(&identify, index))
    });
    assert_eq!(lba48, sectors, "LBA48 capacity (words 100-103)");
    assert_ne!(word(&identify, 83) & 1 << 10, 0, "LBA48 supported");
    assert_eq!(ata_string(&identify, 27, 20), "aoe-xdp dataplane test");
    assert_eq!(ata_string(&identify, 10, 10), "DP-0001");
    let checksum = identify.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
    assert_eq!(checksum, 0, "IDENTIFY checksum");
}

/// Writes every sector of the device (LBA28 and LBA48 commands in turn), reads all of it back
/// with each addressing form, and checks the backing file; then the last sector alone. The
/// device uses the default durability (sync), so every write is on disk when acknowledged.
fn test_write_read_whole_device(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-rw"), 1) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let _target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let device = discover_one(&mut client);

    let seed = 1;
    for lba in (0..SECTORS).step_by(2) {
        let lba48 = lba % 4 == 2;
        client
            .write(&device, lba, &pattern(lba, 2, seed), lba48)
            .unwrap_or_else(|e| panic!("write {lba} (lba48 {lba48}): {e}"));
    }
    for lba48 in [false, true] {
        for lba in (0..SECTORS).step_by(2) {
            let data = client
                .read(&device, lba, 2, lba48)
                .unwrap_or_else(|e| panic!("read {lba} (lba48 {lba48}): {e}"));
            assert!(
                data == pattern(lba, 2, seed),
                "sectors {lba}..{} differ (lba48 {lba48})",
                lba + 2
            );
        }
    }
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert_eq!(file.len(), byte_offset(SECTORS), "file size unchanged");
    assert!(
        file == pattern(0, SECTORS, seed),
        "backing file differs from what was written"
    );

    // The last sector alone, in both forms; the rest of the file stays as it was.
    let last = SECTORS - 1;
    for (last_seed, lba48) in [(3, false), (4, true)] {
        client
            .write(&device, last, &sector_pattern(last, last_seed), lba48)
            .expect("write last sector");
        assert!(
            client.read(&device, last, 1, !lba48).expect("read last")
                == sector_pattern(last, last_seed),
            "last sector read back wrong (lba48 write {lba48})"
        );
        let file = std::fs::read(dir.disk(0)).expect("read backing file");
        assert!(
            file[byte_offset(last)..] == sector_pattern(last, last_seed),
            "last sector of the file (lba48 write {lba48})"
        );
        assert!(
            file[..byte_offset(last)] == pattern(0, last, seed),
            "a write to the last sector changed others"
        );
    }
}

/// Out-of-range requests fail with IDNF and do not grow the file; too many sectors for the
/// frame is ABRT; a read-only device refuses writes with ABRT and stays unchanged.
fn test_ata_errors(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-err"), 1) else {
        return;
    };
    let ro_sectors = 64;
    let dir = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[
            DeviceSpec::new(SHELF, SLOT, SECTORS),
            DeviceSpec::new(SHELF, SLOT + 1, ro_sectors).with("read-only = true"),
        ],
    );
    let ro_contents = pattern(0, ro_sectors, 7);
    std::fs::write(dir.disk(1), &ro_contents).expect("fill read-only disk");
    let _target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let found = client.discover(DISCOVER_WAIT).expect("discover");
    assert_eq!(found.len(), 2, "{found:?}");
    let (rw, ro) = (&found[0], &found[1]);
    assert_eq!((rw.slot, ro.slot), (SLOT, SLOT + 1));

    let end = SECTORS;
    for lba48 in [false, true] {
        assert_ata_error(client.read(rw, end, 1, lba48), ata_error::IDNF, "read end");
        assert_ata_error(
            client.read(rw, end - 1, 2, lba48),
            ata_error::IDNF,
            "read across end",
        );
        assert_ata_error(
            client.write(rw, end, &sector_pattern(end, 1), lba48),
            ata_error::IDNF,
            "write end",
        );
        assert_ata_error(
            client.write(rw, end - 1, &pattern(end - 1, 2, 1), lba48),
            ata_error::IDNF,
            "write across end",
        );
        client
            .read(rw, end - 1, 1, lba48)
            .expect("the last sector itself is readable");
    }
    assert_ata_error(
        client.read(rw, u64::from(u32::MAX) << 8, 1, true),
        ata_error::IDNF,
        "read far beyond end",
    );
    // Three sectors do not fit an MTU-1500 frame.
    assert_ata_error(client.read(rw, 0, 3, true), ata_error::ABRT, "read 3");
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert_eq!(file.len(), byte_offset(SECTORS), "file did not grow");
    assert!(file.iter().all(|&b| b == 0), "nothing was written");

    for lba48 in [false, true] {
        assert_ata_error(
            client.write(ro, 0, &pattern(0, 2, 9), lba48),
            ata_error::ABRT,
            "write to read-only device",
        );
        assert_eq!(
            client.read(ro, 10, 2, lba48).expect("read read-only"),
            ro_contents[byte_offset(10)..byte_offset(12)]
        );
    }
    assert!(
        std::fs::read(dir.disk(1)).expect("read backing file") == ro_contents,
        "read-only backing file changed"
    );
}

/// One device served on two interfaces at once (by two workers): each path discovers its own
/// target MAC, replies leave by the interface the request came in on, data and the config
/// string written through one path are seen through the other.
fn test_two_interfaces(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-multi"), 2) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt0", "vt1"],
        &transport.config("worker-cores = [0, 1]"),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let target = dir.start(&net.target_ns);
    let mut clients = [net.client(0), net.client(1)];
    let devices: Vec<Found> = clients.iter_mut().map(discover_one).collect();
    for (path, device) in devices.iter().enumerate() {
        assert_eq!(device.mac, MacAddr(net.target_end(path).mac), "path {path}");
    }

    let monitors = [net.monitor(0), net.monitor(1)];
    for path in 0..2 {
        let other = 1 - path;
        let lba = 40 + 2 * u64::try_from(path).expect("path");
        let reply = clients[path]
            .exchange(&devices[path], |buf, route, tag| {
                frames::ata(buf, route, tag, &AtaCmd::read(lba, 2, true), &[])
            })
            .expect("read");
        let reply = Reply::parse(&reply).expect("AoE response");
        assert_eq!(reply.src, MacAddr(net.target_end(path).mac));
        assert_eq!(reply.dst, MacAddr(net.client_end(path).mac));
        let seen = monitors[path]
            .recv_matching(QUIET, |f| Reply::parse(f).is_some())
            .expect("the reply on the arrival interface");
        assert_eq!(
            Reply::parse(&seen).expect("AoE").src,
            MacAddr(net.target_end(path).mac)
        );
        assert!(
            monitors[other]
                .recv_matching(QUIET, |f| Reply::parse(f).is_some())
                .is_none(),
            "a reply to path {path} left by path {other}"
        );
    }

    for round in 0..32u64 {
        let (from, to) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let lba = (round * 61) % (SECTORS - 1);
        let data = pattern(lba, 2, 100 + round);
        clients[from]
            .write(&devices[from], lba, &data, round % 3 == 0)
            .expect("write");
        assert_eq!(
            clients[to]
                .read(&devices[to], lba, 2, round % 3 != 0)
                .expect("read"),
            data,
            "round {round}: written via path {from}, read via path {to}"
        );
    }

    // Persistent state is shared between the workers too.
    let set = clients[0]
        .query_config(&devices[0], ConfigCommand::Set, b"two paths")
        .expect("set config");
    assert_eq!(set, b"two paths");
    let read = clients[1]
        .query_config(&devices[1], ConfigCommand::Read, b"")
        .expect("read config");
    assert_eq!(read, b"two paths");

    // One worker owns the device's queue: every storage request that came in through the
    // other worker's port crossed over to it (1 read, 16 writes and 16 reads on path 1).
    let log = target.stop();
    let stopped: Vec<(u64, u64)> = log
        .lines()
        .filter(|line| line.contains("worker stopped"))
        .map(|line| (log_field(line, "jobs"), log_field(line, "remote_jobs")))
        .collect();
    assert_eq!(stopped.len(), 2, "two workers reported:\n{log}");
    let jobs: u64 = stopped.iter().map(|s| s.0).sum();
    let remote: u64 = stopped.iter().map(|s| s.1).sum();
    assert!(jobs >= 66, "{jobs} storage requests submitted:\n{log}");
    assert!(remote >= 33, "{remote} requests crossed workers:\n{log}");
    assert!(
        stopped.iter().any(|s| s.0 == 0),
        "only the owner submits for the device: {stopped:?}"
    );
}

/// The numeric value of `name=` in a tracing log line (0 when absent).
fn log_field(line: &str, name: &str) -> u64 {
    let key = format!(" {name}=");
    line.find(&key)
        .and_then(|at| {
            line[at + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Query Config set, test, prefix test and force set; a conflicting set is AoE error 4.
fn test_config_string(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-cfg"), 1) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let _target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    let mut query = |command, value: &[u8]| client.query_config(&device, command, value);

    assert_eq!(query(ConfigCommand::Read, b"").expect("read"), b"");
    assert_eq!(
        query(ConfigCommand::Set, b"aoe-xdp test").expect("set"),
        b"aoe-xdp test"
    );
    assert_eq!(
        query(ConfigCommand::Test, b"aoe-xdp test").expect("test"),
        b"aoe-xdp test"
    );
    assert_eq!(
        query(ConfigCommand::TestPrefix, b"aoe-xdp").expect("prefix"),
        b"aoe-xdp test"
    );
    // Setting the same string again is fine; a different one conflicts.
    assert_eq!(
        query(ConfigCommand::Set, b"aoe-xdp test").expect("same set"),
        b"aoe-xdp test"
    );
    assert_aoe_error(
        query(ConfigCommand::Set, b"other"),
        AoeError::ConfigStringPresent,
    );
    for (command, value) in [
        (ConfigCommand::Test, &b"aoe-xdp"[..]),
        (ConfigCommand::Test, b"aoe-xdp test!"),
        (ConfigCommand::TestPrefix, b"xdp"),
        (ConfigCommand::TestPrefix, b"aoe-xdp test!"),
    ] {
        assert_silent(
            // A fresh socket: replies to `client` must not be mistaken for an answer.
            net.impatient_client(0)
                .query_config(&device, command, value),
            &format!("{command:?} {:?}", String::from_utf8_lossy(value)),
        );
    }
    assert_eq!(
        query(ConfigCommand::Read, b"").expect("read"),
        b"aoe-xdp test"
    );

    let longest = vec![b'x'; 1024];
    assert_eq!(
        query(ConfigCommand::ForceSet, &longest).expect("force set"),
        longest
    );
    assert_eq!(
        query(ConfigCommand::ForceSet, b"other").expect("force set"),
        b"other"
    );
    assert_eq!(discover_one(&mut client).config_string, b"other");
}

/// The Mac Mask List silences everyone else; a reservation refuses others' reads and writes
/// with AoE error 6 but still answers their IDENTIFY.
fn test_mask_and_reservation(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-acl"), 2) else {
        return;
    };
    // A glob, as operators write it.
    let dir = TargetDir::new(
        &["vt*"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let _target = dir.start(&net.target_ns);
    let (mut a, mut b) = (net.client(0), net.client(1));
    let (a_mac, b_mac) = (a.mac(), b.mac());
    let dev_a = discover_one(&mut a);
    let dev_b = discover_one(&mut b);

    let add = |mac| DirectiveRepr {
        command: DirectiveCommand::Add,
        mac,
    };
    let delete = |mac| DirectiveRepr {
        command: DirectiveCommand::Delete,
        mac,
    };
    assert_eq!(
        a.mac_mask(&dev_a, MacMaskCommand::Edit, &[add(a_mac)])
            .expect("mask add"),
        [a_mac]
    );
    a.read(&dev_a, 0, 2, true).expect("A is on the list");
    assert_silent(
        net.impatient_client(1).read(&dev_b, 0, 2, true),
        "B's read, masked",
    );
    assert_silent(
        net.impatient_client(1).identify(&dev_b),
        "B's identify, masked",
    );
    assert!(
        b.discover(DISCOVER_WAIT).expect("discover").is_empty(),
        "B discovers nothing while masked"
    );
    assert_eq!(
        a.mac_mask(&dev_a, MacMaskCommand::Read, &[])
            .expect("mask read"),
        [a_mac]
    );
    assert!(a
        .mac_mask(&dev_a, MacMaskCommand::Edit, &[delete(a_mac)])
        .expect("mask delete")
        .is_empty());
    b.read(&dev_b, 0, 2, true).expect("B served again");

    assert_eq!(
        a.reserve(&dev_a, ReserveCommand::Set, &[a_mac])
            .expect("reserve"),
        [a_mac]
    );
    a.write(&dev_a, 8, &pattern(8, 2, 1), true)
        .expect("holder writes");
    assert_eq!(
        a.read(&dev_a, 8, 2, false).expect("holder reads"),
        pattern(8, 2, 1)
    );
    assert_aoe_error(b.read(&dev_b, 8, 2, true), AoeError::TargetReserved);
    assert_aoe_error(
        b.write(&dev_b, 8, &pattern(8, 2, 2), false),
        AoeError::TargetReserved,
    );
    let identify = b.identify(&dev_b).expect("IDENTIFY is not reserved");
    assert_eq!(word(&identify, 60), 2048);
    assert_aoe_error(
        b.reserve(&dev_b, ReserveCommand::Set, &[b_mac]),
        AoeError::TargetReserved,
    );
    assert_eq!(
        b.reserve(&dev_b, ReserveCommand::Read, &[]).expect("read"),
        [a_mac]
    );
    assert_eq!(
        b.reserve(&dev_b, ReserveCommand::ForceSet, &[b_mac])
            .expect("force"),
        [b_mac]
    );
    assert_aoe_error(a.read(&dev_a, 8, 2, true), AoeError::TargetReserved);
    assert!(b
        .reserve(&dev_b, ReserveCommand::Set, &[])
        .expect("release")
        .is_empty());
    assert_eq!(
        a.read(&dev_a, 8, 2, true).expect("released"),
        pattern(8, 2, 1)
    );
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert_eq!(&file[byte_offset(8)..byte_offset(10)], pattern(8, 2, 1));
}

/// Debian's `aoeping` (aoetools) finds the device, reads its IDENTIFY (dumped and decoded)
/// and sends SMART commands with `-S`: RETURN STATUS reports no threshold exceeded, READ DATA
/// dumps a checksummed structure, ENABLE/DISABLE succeed, and what the device lacks (READ LOG,
/// OFF-LINE IMMEDIATE) is reported as aborted. aoeping reads a SMART reply only when it holds
/// 512 bytes after the headers, so this also proves every SMART reply carries a sector.
fn test_aoeping(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-ping"), 1) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        &transport.config("idle = \"spin\""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)
            .with("model = \"aoe-xdp ping test\"")
            .with("serial = \"PING-1\"")],
    );
    let target = dir.start(&net.target_ns);
    let run = |options: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", net.client_ns.name(), "aoeping", "-s", "5"])
            .args(options)
            .args([&SHELF.to_string(), &SLOT.to_string(), "vc"])
            .output()
            .expect("run aoeping")
    };
    let aoeping = |options: &[&str]| {
        let out = run(options);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "aoeping {options:?} failed ({}): {stdout}{}\ntarget log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            target.log()
        );
        stdout
    };
    let found = format!(
        "found e{SHELF}.{SLOT} with mac {}",
        mac_text(net.target_end(0).mac)
    );
    let verbose = aoeping(&["-v"]);
    assert!(verbose.contains(&found), "{verbose}");
    assert!(verbose.contains("config query response"), "{verbose}");

    // The bytes of a hex dump aoeping prints after a heading (16 per line, to the end).
    let hex_dump_after = |output: &str, heading: &str| -> Vec<u8> {
        output
            .split(heading)
            .nth(1)
            .unwrap_or_else(|| panic!("no {heading:?} in:\n{output}"))
            .split_whitespace()
            .map(|byte| u8::from_str_radix(byte, 16).expect("hex byte"))
            .collect()
    };
    let identify = aoeping(&["-i"]);
    let dump = hex_dump_after(&identify, "device identify response:");
    assert_eq!(dump.len(), SECTOR_SIZE, "{identify}");
    assert_eq!(word(&dump, 60), 2048, "capacity in the dump");

    let fields = aoeping(&["-I"]);
    assert!(fields.contains("model: aoe-xdp ping test"), "{fields}");
    assert!(fields.contains("serial_number: PING-1"), "{fields}");

    // SMART. aoeping prints the reply's registers as `<name>: 0x<hex>`.
    let register = |out: &str, name: &str| {
        out.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(": 0x"))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .unwrap_or_else(|| panic!("no {name} register in:\n{out}"))
    };
    let status = aoeping(&["-S", "return_status"]);
    assert_eq!(register(&status, "Status"), ata_status::DRDY, "{status}");
    assert_eq!(register(&status, "Features"), 0, "no error: {status}");
    assert_eq!(
        (register(&status, "LBA Mid"), register(&status, "LBA High")),
        (0x4F, 0xC2),
        "no threshold exceeded: {status}"
    );
    assert!(!status.contains("SMART data:"), "no data to show: {status}");

    let data = aoeping(&["-S", "read_data"]);
    assert_eq!(register(&data, "Status"), ata_status::DRDY, "{data}");
    let structure = hex_dump_after(&data, "SMART data:");
    assert_eq!(structure.len(), SECTOR_SIZE, "{data}");
    assert_eq!(
        structure.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)),
        0,
        "the structure's checksum: {data}"
    );
    assert_eq!(word(&structure, 0), 0x0010, "revision: {data}");

    for command in ["disable", "enable"] {
        let out = aoeping(&["-S", command]);
        assert_eq!(
            register(&out, "Status"),
            ata_status::DRDY,
            "{command}: {out}"
        );
    }
    for command in ["read_log:0", "offline_immediate:1"] {
        let out = run(&["-S", command]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("SMART command aborted on target."),
            "aoeping -S {command}: {} {stderr}",
            out.status
        );
    }
}

/// SIGTERM stops the target cleanly and detaches XDP; a new run on the same state directory
/// has the config string and reservation of the first and enforces the reservation.
fn test_restart_keeps_state(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-restart"), 2) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt0", "vt1"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let xdp_attached = |name: &str| {
        net.target_ns
            .ip(&["link", "show", name])
            .unwrap()
            .contains("xdp")
    };

    let (mut a, mut b) = (net.client(0), net.client(1));
    let a_mac = a.mac();
    let target = dir.start(&net.target_ns);
    let expect_xdp = transport == Transport::Xdp;
    assert!(
        xdp_attached("vt0") == expect_xdp && xdp_attached("vt1") == expect_xdp,
        "XDP attached while serving over {transport:?}: {expect_xdp}"
    );
    let ring = match transport {
        Transport::Xdp => None,
        Transport::Packet => Some("TPACKET_V2"),
        Transport::PacketV3 => Some("TPACKET_V3"),
    };
    if let Some(ring) = ring {
        let log = target.log();
        assert!(log.contains("AF_PACKET") && log.contains(ring), "{log}");
    }
    let dev_a = discover_one(&mut a);
    let dev_b = discover_one(&mut b);
    a.query_config(&dev_a, ConfigCommand::Set, b"survives restarts")
        .expect("set config");
    a.reserve(&dev_a, ReserveCommand::Set, &[a_mac])
        .expect("reserve");
    a.write(&dev_a, 100, &pattern(100, 2, 5), true)
        .expect("write");
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    for name in ["vt0", "vt1"] {
        assert!(
            !xdp_attached(name),
            "XDP still attached to {name} after SIGTERM:\n{}",
            net.target_ns.ip(&["link", "show", name]).unwrap()
        );
    }
    assert!(
        dir.path()
            .join("state")
            .read_dir()
            .expect("state dir")
            .count()
            > 0,
        "state directory is empty"
    );

    let target = dir.start(&net.target_ns);
    assert!(
        !target.log().contains("stale"),
        "the first run left a program behind:\n{}",
        target.log()
    );
    let found = discover_one(&mut b);
    assert_eq!(found.config_string, b"survives restarts");
    assert_eq!(
        b.reserve(&dev_b, ReserveCommand::Read, &[]).expect("read"),
        [a_mac]
    );
    assert_aoe_error(b.read(&dev_b, 100, 2, true), AoeError::TargetReserved);
    assert_eq!(
        a.read(&dev_a, 100, 2, true).expect("holder reads"),
        pattern(100, 2, 5)
    );
}

/// 2000 random overlapping 1 KiB writes, then the whole device is read back and compared with
/// a model; then bursts of requests in flight at once (one per tag) all come back, right.
fn test_many_requests(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-load"), 1) else {
        return;
    };
    // Write-back: this is about requests being lost or misplaced, not durability (the sync
    // path, the default, is what the other tests use), and synced writes cost ~2 ms each.
    let dir = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS).with("durability = \"writeback\"")],
    );
    let _target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let device = discover_one(&mut client);

    let mut model = vec![0u8; byte_offset(SECTORS)];
    let mut random = 0x5EED_1234_ABCD_0001u64;
    for seed in 0..2000u64 {
        random = xorshift(random);
        let lba = random % (SECTORS - 1);
        let data = pattern(lba, 2, 1000 + seed);
        client
            .write(&device, lba, &data, random & 1 << 40 != 0)
            .unwrap_or_else(|e| panic!("write {seed} at {lba}: {e}"));
        model[byte_offset(lba)..byte_offset(lba + 2)].copy_from_slice(&data);
    }
    for lba in (0..SECTORS).step_by(2) {
        let data = client.read(&device, lba, 2, true).expect("read");
        assert!(
            data == model[byte_offset(lba)..byte_offset(lba + 2)],
            "sectors {lba}..{} differ from the model",
            lba + 2
        );
    }
    assert!(
        std::fs::read(dir.disk(0)).expect("read backing file") == model,
        "backing file differs from the model"
    );

    // Bursts: as many requests in flight as the advertised buffer count.
    let socket = net.raw(0);
    let route = Route {
        dst: device.mac,
        src: client.mac(),
        vlan_tci: None,
        shelf: SHELF,
        slot: SLOT,
    };
    let in_flight = u64::from(device.buffer_count);
    for round in 0..8u64 {
        let lbas: Vec<u64> = (0..in_flight)
            .map(|i| (i * 32 + round * 2) % (SECTORS - 1))
            .collect();
        let seed = 5000 + round;
        let writes: Vec<(AtaCmd, Vec<u8>)> = lbas
            .iter()
            .map(|&lba| (AtaCmd::write(lba, 2, true), pattern(lba, 2, seed)))
            .collect();
        let replies = burst(&socket, &route, round << 16, &writes);
        for (index, reply) in replies.iter().enumerate() {
            let (ata, _) = Reply::parse(reply)
                .and_then(|r| r.ata())
                .expect("ATA reply");
            assert_eq!(ata.cmd_status, ata_status::DRDY, "write {index}");
        }
        let reads: Vec<(AtaCmd, Vec<u8>)> = lbas
            .iter()
            .map(|&lba| (AtaCmd::read(lba, 2, round % 2 == 0), Vec::new()))
            .collect();
        let replies = burst(&socket, &route, round << 16 | 0x8000, &reads);
        for ((reply, &lba), (cmd, _)) in replies.iter().zip(&lbas).zip(&reads) {
            let reply = Reply::parse(reply).expect("AoE reply");
            let (ata, data) = reply.ata().expect("ATA reply");
            assert_eq!(ata.cmd_status, ata_status::DRDY, "read {lba}");
            assert_eq!(ata.lba & 0x0FFF_FFFF, cmd.lba, "LBA echoed");
            assert!(
                data[..2 * SECTOR_SIZE] == pattern(lba, 2, seed),
                "round {round}: burst read of {lba} returned wrong data"
            );
        }
    }
}

/// Sends every request (tags `first_tag`, `first_tag + 1`, ...) before reading any reply;
/// returns the replies in request order. Panics naming the tags that never came back.
fn burst(
    socket: &RawSocket,
    route: &Route,
    first_tag: u64,
    requests: &[(AtaCmd, Vec<u8>)],
) -> Vec<Vec<u8>> {
    let tags = send_all(socket, route, first_tag, requests);
    collect(socket, &tags)
}

/// Sends every request (tags `first_tag`, `first_tag + 1`, ...); returns tag -> index.
fn send_all(
    socket: &RawSocket,
    route: &Route,
    first_tag: u64,
    requests: &[(AtaCmd, Vec<u8>)],
) -> HashMap<u32, usize> {
    let first_tag = u32::try_from(first_tag).expect("tag fits");
    let mut buf = vec![0u8; 2048];
    let mut tags = HashMap::new();
    for (index, (cmd, data)) in requests.iter().enumerate() {
        let tag = first_tag + u32::try_from(index).expect("small burst");
        let len = frames::ata(&mut buf, route, tag, cmd, data);
        socket.send(&buf[..len]).expect("send request");
        tags.insert(tag, index);
    }
    tags
}

/// Receives the reply of every request in `tags` (tag -> index), in request order. Panics
/// naming the tags that never came back.
fn collect(socket: &RawSocket, tags: &HashMap<u32, usize>) -> Vec<Vec<u8>> {
    let mut replies = vec![Vec::new(); tags.len()];
    let mut missing = tags.len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while missing > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(frame) = socket
            .recv_matching(left, |f| {
                Reply::parse(f).is_some_and(|r| tags.contains_key(&r.aoe.tag))
            })
            .expect("receive")
        else {
            let mut lost: Vec<u32> = tags
                .iter()
                .filter(|(_, &index)| replies[index].is_empty())
                .map(|(&tag, _)| tag)
                .collect();
            lost.sort_unstable();
            panic!(
                "{missing} of {} replies missing: tags {lost:x?}",
                tags.len()
            );
        };
        let index = tags[&Reply::parse(&frame).expect("reply").aoe.tag];
        assert!(replies[index].is_empty(), "two replies for request {index}");
        replies[index] = frame;
        missing -= 1;
    }
    replies
}

/// Multipath, as the Linux initiator does it: a sequential stream of writes split over two
/// paths, path 0 taking the even requests and path 1 the odd ones. No two requests of one
/// path are adjacent, so every merge the engine makes joins requests from the two ports: the
/// device's queue brings them to one engine. The data must be right whatever was merged.
fn test_multipath_merge(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-merge"), 2) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt0", "vt1"],
        &transport.config("worker-cores = [0]\nmerge-delay-us = 2000"),
        // Synced writes (the default) go through io_uring and its merging; write-back ones
        // are plain copies into the page cache, done inline.
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let target = dir.start(&net.target_ns);
    let mut clients = [net.client(0), net.client(1)];
    let devices: Vec<Found> = clients.iter_mut().map(discover_one).collect();
    let sockets = [net.raw(0), net.raw(1)];
    let routes: Vec<Route> = (0..2)
        .map(|path| Route {
            dst: devices[path].mac,
            src: clients[path].mac(),
            vlan_tci: None,
            shelf: SHELF,
            slot: SLOT,
        })
        .collect();
    let per_path = u64::from(devices[0].buffer_count.min(devices[1].buffer_count)).min(32);
    for round in 0..2u64 {
        let seed = 7000 + round;
        let base = round * 4 * per_path;
        let writes: Vec<Vec<(AtaCmd, Vec<u8>)>> = (0..2u64)
            .map(|path| {
                (0..per_path)
                    .map(|i| {
                        let lba = base + 2 * (2 * i + path);
                        (AtaCmd::write(lba, 2, true), pattern(lba, 2, seed))
                    })
                    .collect()
            })
            .collect();
        let tags: Vec<HashMap<u32, usize>> = (0..2)
            .map(|path| {
                send_all(
                    &sockets[path],
                    &routes[path],
                    (0x7000 + round) << 16,
                    &writes[path],
                )
            })
            .collect();
        for path in 0..2 {
            for (index, reply) in collect(&sockets[path], &tags[path]).iter().enumerate() {
                let (ata, _) = Reply::parse(reply)
                    .and_then(|r| r.ata())
                    .expect("ATA reply");
                assert_eq!(
                    ata.cmd_status,
                    ata_status::DRDY,
                    "path {path} write {index}"
                );
            }
        }
        let span = 4 * per_path;
        for lba in (base..base + span).step_by(2) {
            let path = usize::from(lba % 4 != 0);
            assert_eq!(
                clients[path]
                    .read(&devices[path], lba, 2, true)
                    .expect("read"),
                pattern(lba, 2, seed),
                "round {round}: sectors {lba}..{}",
                lba + 2
            );
        }
    }
    let log = target.stop();
    let merged: u64 = log
        .lines()
        .filter(|line| line.contains("worker stopped"))
        .map(|line| log_field(line, "merged"))
        .sum();
    assert!(
        merged > 0,
        "no request of one port was merged with one of the other:\n{log}"
    );
    assert!(!log.contains("keep the worker's core"), "{log}");
}

/// MTU 9000: the target advertises (9000 - 36) / 512 = 17 sectors, and 17-sector writes
/// (which arrive in several buffers on AF_XDP and are copied once into a slab) and reads
/// (whose reply is built in a slab) are right across the device, LBA28 and LBA48, the last
/// sectors included; smaller requests still work. The bounces are counted.
fn test_jumbo_frames(transport: Transport) {
    let Some(net) = Net::with_mtu(&transport.tag("dp-jumbo"), 1, 9000) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS).with("durability = \"writeback\"")],
    );
    let target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    assert_eq!(device.sector_count, 17);
    let mut model = vec![0u8; byte_offset(SECTORS)];
    let mut lbas: Vec<u64> = (0..SECTORS - 17).step_by(17 * 7).collect();
    lbas.push(SECTORS - 17);
    for (round, &lba) in lbas.iter().enumerate() {
        let data = pattern(lba, 17, 300 + round as u64);
        client
            .write(&device, lba, &data, round % 2 == 0)
            .unwrap_or_else(|e| panic!("17-sector write at {lba}: {e}"));
        model[byte_offset(lba)..byte_offset(lba + 17)].copy_from_slice(&data);
    }
    for (round, &lba) in lbas.iter().enumerate() {
        assert!(
            client.read(&device, lba, 17, round % 2 == 1).expect("read")
                == model[byte_offset(lba)..byte_offset(lba + 17)],
            "17 sectors at {lba}"
        );
        // A small read of the same place, from an ordinary frame.
        assert!(
            client.read(&device, lba + 3, 2, true).expect("small read")
                == model[byte_offset(lba + 3)..byte_offset(lba + 5)],
            "2 sectors at {}",
            lba + 3
        );
    }
    // One past the end: IDNF, as for small requests.
    assert_ata_error(
        client.read(&device, SECTORS - 16, 17, true),
        ata_error::IDNF,
        "17 sectors crossing the end",
    );
    assert!(
        std::fs::read(dir.disk(0)).expect("backing file") == model,
        "backing file differs from the model"
    );
    // Every 17-sector read moved into a slab for its reply; on AF_XDP every 17-sector write
    // arrived in several buffers and was copied once into a slab.
    let writes = lbas.len() as u64;
    let report = wait_stats(&dir.path().join("ctl.sock"), |report| {
        report["devices"][0]["read_cmds"] == 2 * writes
    });
    let jumbo = &report["ports"][0]["jumbo"];
    assert!(jumbo["upgrades"].as_u64() >= Some(writes), "{report:#}");
    if transport == Transport::Xdp {
        assert!(
            jumbo["bounce_frames"].as_u64() >= Some(writes),
            "{report:#}"
        );
    }
    let log = target.stop();
    assert!(log.contains("sectors=17"), "{log}");
}

/// `aoe-xdp --stats` asks the running target over its control socket: the device, port and
/// worker counters add up to what the client did; the socket goes away with the target.
fn test_stats(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-stats"), 1) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS).with("durability = \"writeback\"")],
    );
    let target = dir.start(&net.target_ns);
    let socket = dir.path().join("ctl.sock");
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    for lba in 0..5u64 {
        client
            .write(&device, 4 * lba, &pattern(4 * lba, 2, 1), true)
            .expect("write");
    }
    for lba in 0..7u64 {
        client.read(&device, 2 * lba, 2, true).expect("read");
    }
    let report = wait_stats(&socket, |report| {
        let device = &report["devices"][0];
        device["read_cmds"] == 7 && device["write_cmds"] == 5
    });
    let device = &report["devices"][0];
    assert_eq!(device["name"], format!("e{SHELF}.{SLOT}"));
    assert_eq!(device["read_bytes"], 7 * 1024);
    assert_eq!(device["write_bytes"], 5 * 1024);
    assert_eq!(device["ata_errors"], 0);
    let port = &report["ports"][0];
    assert!(
        port["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("vt:0:")),
        "{port}"
    );
    // Discovery plus 12 ATA commands, each answered once.
    assert!(port["rx_frames"].as_u64() >= Some(13), "{port}");
    assert_eq!(port["io_submitted"], 12, "{port}");
    assert_eq!(report["workers"][0]["jobs"], 12, "{report:#}");
    // The kernel's figures for the socket: nothing dropped; an AF_XDP port keeps its shallow
    // fill ring (no burst deepened it), a packet socket has none.
    assert_eq!(port["foreign_dst"], 0, "{port}");
    let kernel = &port["kernel"];
    assert_eq!(kernel["rx_dropped"], 0, "{port}");
    assert_eq!(kernel["fill_empty"], 0, "{port}");
    let fill = match transport {
        Transport::Xdp => u64::from(aoe_xdp::sys::xdp::xsk::FILL_TARGET_START),
        Transport::Packet | Transport::PacketV3 => 0,
    };
    assert_eq!(kernel["fill_depth"], fill, "{port}");
    let table = stats(&socket, false);
    assert!(
        table.contains("DEVICE") && table.contains(&format!("e{SHELF}.{SLOT}")),
        "{table}"
    );
    assert!(
        table.contains("KERN-DROP") && table.contains("FILL"),
        "{table}"
    );
    assert_eq!(
        table_cell(&table, "FOREIGN-DST", "vt:0:").as_deref(),
        Some("0"),
        "{table}"
    );
    target.stop();
    assert!(!socket.exists(), "control socket left behind");
}

/// A resident device (window locked in memory, requests copied through a shared mapping)
/// serves the same data as the default path, does no disk I/O for reads and write-back
/// writes, and answers UNC instead of crashing when its file shrinks under it.
fn test_resident_device(transport: Transport) {
    device_served_through_mappings(
        transport,
        "dp-res",
        "resident = true",
        "resident: window locked in memory",
    );
}

/// The same for a device with mapped reads (the mapping not locked).
fn test_mapped_reads_device(transport: Transport) {
    device_served_through_mappings(
        transport,
        "dp-mrd",
        "mapped-reads = true",
        "mapped reads: reads copy out of a shared mapping",
    );
}

/// Runs the checks of [`test_resident_device`] on a device configured with `option`, whose
/// start-up log says `logged`.
fn device_served_through_mappings(transport: Transport, tag: &str, option: &str, logged: &str) {
    let Some(net) = Net::new(&transport.tag(tag), 1) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS).with(&format!(
            "durability = \"writeback\"\nmapped-writes = true\n{option}\n\
                 offset = 8\nlength = 2040"
        ))],
    );
    let target = dir.start(&net.target_ns);
    assert!(target.log().contains(logged), "{}", target.log());
    let socket = dir.path().join("ctl.sock");
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    let sectors = SECTORS - 8;
    let seed = 7;
    for lba in (0..sectors).step_by(2) {
        client
            .write(&device, lba, &pattern(lba, 2, seed), lba % 4 == 2)
            .unwrap_or_else(|e| panic!("write {lba}: {e}"));
    }
    for lba in (0..sectors).step_by(2) {
        let data = client.read(&device, lba, 2, true).expect("read");
        assert!(data == pattern(lba, 2, seed), "sectors {lba}..{}", lba + 2);
    }
    assert_ata_error(
        client.read(&device, sectors - 1, 2, true),
        ata_error::IDNF,
        "read past the window",
    );
    client.flush(&device).expect("flush");
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert!(
        file[byte_offset(8)..] == pattern(0, sectors, seed),
        "backing file differs from what was written"
    );
    assert!(
        file[..byte_offset(8)].iter().all(|b| *b == 0),
        "sectors before the window"
    );
    let requests = sectors; // a write and a read per pair of sectors
    let report = wait_stats(&socket, |r| r["workers"][0]["engine"]["mapped"] == requests);
    // Only the FLUSH reached the kernel as an I/O.
    assert_eq!(report["workers"][0]["engine"]["ios"], 1, "{report:#}");

    // The file shrinks under the target: requests past its new end fail with UNC, the rest
    // are served, and the target lives on; once it grows back, the range works again.
    let backing = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.disk(0))
        .expect("open the backing file");
    backing.set_len(1024 * SECTOR_SIZE as u64).expect("shrink");
    let past = 1024 - 8 + 16;
    assert_ata_error(
        client.read(&device, past, 2, true),
        ata_error::UNC,
        "read past the shrunk end",
    );
    assert_ata_error(
        client.write(&device, past, &pattern(past, 2, 9), true),
        ata_error::UNC,
        "write past the shrunk end",
    );
    let data = client
        .read(&device, 100, 2, true)
        .expect("read below the end");
    assert!(
        data == pattern(100, 2, seed),
        "sectors 100..102 after the shrink"
    );
    backing
        .set_len(SECTORS * SECTOR_SIZE as u64)
        .expect("grow back");
    assert_eq!(
        client
            .read(&device, past, 2, true)
            .expect("read after growing back"),
        vec![0u8; 1024],
        "the regrown range reads as zeros"
    );
    client
        .write(&device, past, &pattern(past, 2, 9), true)
        .expect("write after growing back");
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert!(file[byte_offset(8 + past)..byte_offset(8 + past + 2)] == pattern(past, 2, 9));
    let log = target.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// A unicast address (locally administered) that no interface of the test has: another
/// target's on a shared segment.
const FOREIGN_MAC: MacAddr = MacAddr([0x02, 0xAE, 0x00, 0x00, 0x00, 0x01]);
/// A multicast group (IPv4's 224.0.0.66 mapped to Ethernet).
const GROUP_MAC: MacAddr = MacAddr([0x01, 0x00, 0x5E, 0x00, 0x00, 0x42]);

/// One path (`vt`) to a target over `transport` exporting one device of [`SECTORS`], with
/// `extra` lines in `[target]`.
fn one_device_rig(transport: Transport, tag: &str, extra: &str) -> Option<(Net, TargetDir)> {
    let net = Net::new(&transport.tag(tag), 1)?;
    let dir = TargetDir::new(
        &["vt"],
        &transport.config(extra),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    Some((net, dir))
}

/// Requests addressed to another host (a foreign unicast MAC, or a multicast group) are
/// neither answered nor executed, and the port counts them (`foreign_dst`, FOREIGN-DST); the
/// same requests to the interface's own MAC are served, and broadcast discovery is answered.
/// A veth end receives every frame its peer sends, whatever the destination (no promiscuous
/// mode needed): what a bridge port, a hub or a promiscuous port sees.
fn test_foreign_destination_refused(transport: Transport) {
    let Some((net, dir)) = one_device_rig(transport, "dp-fdst", "") else {
        return;
    };
    let _target = dir.start(&net.target_ns);
    let socket = dir.path().join("ctl.sock");
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    assert_eq!(device.mac, MacAddr(net.target_end(0).mac));
    let foreign = Found {
        mac: FOREIGN_MAC,
        ..device.clone()
    };
    let group = Found {
        mac: GROUP_MAC,
        ..device.clone()
    };

    // Each refused request is sent twice (the impatient client's two tries).
    let (lba, seed) = (8, 5);
    let data = pattern(lba, 2, seed);
    assert_silent(
        net.impatient_client(0).write(&foreign, lba, &data, true),
        "WRITE to a foreign MAC",
    );
    assert_silent(
        net.impatient_client(0).read(&foreign, lba, 2, true),
        "READ from a foreign MAC",
    );
    assert_silent(
        net.impatient_client(0).write(&group, lba, &data, false),
        "WRITE to a multicast group",
    );
    assert_silent(
        net.impatient_client(0)
            .query_config(&group, ConfigCommand::Read, b""),
        "Query Config to a multicast group",
    );
    let refused = 8;
    let report = wait_stats(&socket, |report| {
        report["ports"][0]["foreign_dst"].as_u64() >= Some(refused)
    });
    let port = &report["ports"][0];
    assert_eq!(port["foreign_dst"], refused, "{port}");
    let counters = &report["devices"][0];
    assert_eq!(counters["write_cmds"], 0, "{counters}");
    assert_eq!(counters["read_cmds"], 0, "{counters}");
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert!(
        file[byte_offset(lba)..byte_offset(lba + 2)]
            .iter()
            .all(|&byte| byte == 0),
        "a request for another host was written to the backing file"
    );
    let table = stats(&socket, false);
    assert_eq!(
        table_cell(&table, "FOREIGN-DST", "vt:0:").as_deref(),
        Some("8"),
        "{table}"
    );

    // The same requests to the interface's own MAC are served, and broadcast discovery is
    // still answered; none of that counts as foreign.
    client
        .write(&device, lba, &data, true)
        .expect("WRITE to the interface's MAC");
    assert!(
        client.read(&device, lba, 2, true).expect("READ") == data,
        "read back"
    );
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert!(
        file[byte_offset(lba)..byte_offset(lba + 2)] == data,
        "the write to the interface's MAC is not in the backing file"
    );
    assert_eq!(discover_one(&mut client), device, "broadcast discovery");
    let report = wait_stats(&socket, |report| {
        let counters = &report["devices"][0];
        counters["write_cmds"] == 1 && counters["read_cmds"] == 1
    });
    assert_eq!(report["ports"][0]["foreign_dst"], refused, "{report:#}");
}

/// `accept-any-destination = true`: a request to another host's MAC is served after all (the
/// operator's override), says so in the log, and nothing counts as foreign.
fn test_accept_any_destination(transport: Transport) {
    let Some((net, dir)) = one_device_rig(transport, "dp-anyd", "accept-any-destination = true")
    else {
        return;
    };
    let target = dir.start(&net.target_ns);
    let socket = dir.path().join("ctl.sock");
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    let foreign = Found {
        mac: FOREIGN_MAC,
        ..device.clone()
    };
    let (lba, seed) = (12, 6);
    let data = pattern(lba, 2, seed);
    client
        .write(&foreign, lba, &data, true)
        .expect("WRITE to a foreign MAC, served with the override");
    assert!(
        client.read(&foreign, lba, 2, true).expect("READ") == data,
        "read back through the foreign MAC"
    );
    let file = std::fs::read(dir.disk(0)).expect("read backing file");
    assert!(
        file[byte_offset(lba)..byte_offset(lba + 2)] == data,
        "the write is not in the backing file"
    );
    let report = wait_stats(&socket, |report| {
        let counters = &report["devices"][0];
        counters["write_cmds"] == 1 && counters["read_cmds"] == 1
    });
    assert_eq!(report["ports"][0]["foreign_dst"], 0, "{report:#}");
    let log = target.log();
    assert!(log.contains("accept-any-destination = true"), "{log}");
}

/// The cell in column `column` of the row whose first field starts with `row` in a table
/// `aoe-xdp --stats` printed (fields separated by blanks, none containing one).
fn table_cell(table: &str, column: &str, row: &str) -> Option<String> {
    let mut lines = table.lines();
    let header = lines.find(|line| line.split_whitespace().any(|field| field == column))?;
    let index = header
        .split_whitespace()
        .position(|field| field == column)?;
    let line = lines.find(|line| line.starts_with(row))?;
    line.split_whitespace().nth(index).map(str::to_owned)
}

/// Runs `aoe-xdp --stats SOCKET [--json]`; returns what it printed.
fn stats(socket: &std::path::Path, json: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aoe-xdp"));
    command.arg("--stats").arg(socket);
    if json {
        command.arg("--json");
    }
    let output = command.output().expect("run aoe-xdp --stats");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The first statistics report (JSON) that satisfies `done`; workers publish every 100 ms.
fn wait_stats(
    socket: &std::path::Path,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let report: serde_json::Value =
            serde_json::from_str(&stats(socket, true)).expect("JSON report");
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "counters never caught up: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A second aoe-xdp on an interface that a running one serves refuses to start, naming the
/// other one's pid, whatever its transport; it neither removes the first one's XDP program
/// nor falls back to AF_PACKET (the program would take every request away from it). The
/// first one keeps serving.
fn test_second_instance_refused(transport: Transport) {
    let Some(net) = Net::new(&transport.tag("dp-twice"), 1) else {
        return;
    };
    let first = TargetDir::new(
        &["vt"],
        &Transport::Xdp.config(""),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let running = first.start(&net.target_ns);
    let second = TargetDir::new(
        &["vt"],
        &transport.config(""),
        &[DeviceSpec::new(SHELF, SLOT + 1, SECTORS)],
    );
    let log = second.start_refused(&net.target_ns);
    assert!(
        log.contains("already served by another aoe-xdp (pid "),
        "{log}"
    );
    assert!(!log.contains("FALLING BACK"), "{log}");
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    assert_eq!((device.shelf, device.slot), (SHELF, SLOT));
    let data = pattern(8, 2, 77);
    client.write(&device, 8, &data, true).expect("write");
    assert_eq!(client.read(&device, 8, 2, true).expect("read"), data);
    let pid = running.pid();
    let holder = log
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .expect("a pid in the message");
    // `ip netns exec` runs aoe-xdp in its own process (exec), so the pid is the target's.
    assert_eq!(holder, pid, "{log}");
}

/// `socket = "auto"` falls back to AF_PACKET, loudly, where XDP cannot attach: native XDP on
/// veth refuses a peer with more TX queues than it has RX queues, and `xdp-mode = "native"`
/// forbids the generic fallback. The device is still served, and nothing is left attached.
/// CPU time (ns) all threads of process `pid` have run so far (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the target's threads");
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The share of one core process `pid` used over the next `window`.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let (before, start) = (cpu_ns(pid), Instant::now());
    std::thread::sleep(window);
    (cpu_ns(pid) - before) as f64 / start.elapsed().as_nanos() as f64
}

/// `idle = "poll"` with `idle-spin-us`: after work the worker keeps polling for that long,
/// then sleeps, and an idle worker whose sleep times out goes back to sleep rather than
/// polling for the spin time again.
#[test]
fn test_poll_mode_spins_for_idle_spin_us_then_sleeps() {
    let Some(net) = Net::new("dp-spin", 1) else {
        return;
    };
    let spin = Duration::from_millis(600);
    let dir = TargetDir::new(
        &["vt"],
        &format!("idle = \"poll\"\nidle-spin-us = {}", spin.as_micros()),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let target = dir.start(&net.target_ns);
    let pid = target.pid();
    let window = Duration::from_millis(150);
    // Long after start-up: asleep, although each 10 ms sleep ends without work.
    std::thread::sleep(spin + Duration::from_millis(200));
    let asleep = cpu_share(pid, window);
    // A request is work: the worker polls for `spin` afterwards (discovery itself listens
    // for 200 ms; the window after it still lies inside the spin). Other tests' workers may
    // share the core, hence a low bar for "spinning"; a sleeping worker uses next to nothing.
    let mut client = net.client(0);
    let answered = Instant::now();
    discover_one(&mut client);
    let spinning = cpu_share(pid, window);
    assert!(
        answered.elapsed() < spin,
        "the test was too slow to see the spin"
    );
    std::thread::sleep(
        (answered + spin + Duration::from_millis(100)).saturating_duration_since(Instant::now()),
    );
    let after = cpu_share(pid, window);
    assert!(asleep < 0.1, "an idle worker used {asleep:.2} of a core");
    assert!(
        spinning > 0.2,
        "the worker used only {spinning:.2} of a core while spinning"
    );
    assert!(
        after < 0.1,
        "after the spin the worker used {after:.2} of a core"
    );
    target.stop();
}

/// A device with mapped reads whose pages are not in memory makes the worker wait for the
/// disk, and the statistics count those waits (major faults); a device without the mapping
/// hands such reads to io_uring, and the worker does not wait.
#[test]
fn test_major_faults_of_mapped_reads_are_counted() {
    let Some(net) = Net::new("dp-majf", 1) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        "",
        &[
            DeviceSpec::new(SHELF, SLOT, SECTORS),
            DeviceSpec::new(SHELF, SLOT + 1, SECTORS).with("mapped-reads = true"),
        ],
    );
    // Data on the disk, not in the page cache: written, synced and dropped from the cache
    // (nobody maps it yet).
    let seed = 3;
    for disk in 0..2 {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.disk(disk))
            .expect("open the backing file");
        std::io::Write::write_all(&mut &file, &pattern(0, SECTORS, seed)).expect("write");
        file.sync_all().expect("sync");
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    }
    let target = dir.start(&net.target_ns);
    let socket = dir.path().join("ctl.sock");
    let mut client = net.client(0);
    let devices = client.discover(DISCOVER_WAIT).expect("discover");
    assert_eq!(devices.len(), 2, "{devices:?}");
    let device = |slot: u8| {
        devices
            .iter()
            .find(|d| d.slot == slot)
            .expect("discovered")
            .clone()
    };
    let faults = |report: &serde_json::Value| report["workers"][0]["major_faults"].as_u64();
    let lbas = [0, 700, 1400, 2000];
    // Without the mapping: reads from the disk through io_uring, no fault on the worker.
    let plain = device(SLOT);
    for lba in lbas {
        let data = client.read(&plain, lba, 2, true).expect("read");
        assert!(data == pattern(lba, 2, seed), "sectors {lba}..{}", lba + 2);
    }
    let report = wait_stats(&socket, |r| r["workers"][0]["jobs"] == 4);
    let before = faults(&report).expect("major_faults in the report");
    assert_eq!(before, 0, "{report:#}");
    // With it: each read of a page not in memory is a fault that waits for the disk.
    let mapped = device(SLOT + 1);
    for lba in lbas {
        let data = client.read(&mapped, lba, 2, true).expect("read");
        assert!(data == pattern(lba, 2, seed), "sectors {lba}..{}", lba + 2);
    }
    let report = wait_stats(&socket, |r| faults(r) >= Some(1));
    assert_eq!(report["workers"][0]["engine"]["mapped"], 4, "{report:#}");
    assert!(
        stats(&socket, false).contains("MAJFLT"),
        "the table shows the faults"
    );
    target.stop();
}

/// `idle = "poll"` with `idle-nap-us`: a request that finds the worker asleep in `poll()` is
/// answered at once; after that work the worker naps, and a request that arrives during the
/// nap waits for its end.
#[test]
fn test_poll_mode_naps_for_idle_nap_us_after_work() {
    let Some(net) = Net::new("dp-nap", 1) else {
        return;
    };
    let nap = Duration::from_millis(80);
    let dir = TargetDir::new(
        &["vt"],
        &format!(
            "idle = \"poll\"\nidle-spin-us = 0\nidle-nap-us = {}",
            nap.as_micros()
        ),
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    let read = |client: &mut Client, lba: u64| {
        let started = Instant::now();
        client.read(&device, lba, 2, true).expect("read");
        started.elapsed()
    };
    // Long after the last work (the nap after discovery is over): asleep until a frame.
    std::thread::sleep(3 * nap);
    let woken = read(&mut client, 0);
    // The reply was sent, then the nap began: this request comes during it.
    std::thread::sleep(nap / 8);
    let during_nap = read(&mut client, 2);
    assert!(
        woken < nap / 2,
        "a request to a sleeping worker took {woken:?}"
    );
    assert!(
        during_nap > nap / 2,
        "a request during an {nap:?} nap was answered after {during_nap:?}"
    );
    target.stop();
}

#[test]
fn test_auto_falls_back_to_af_packet_when_xdp_cannot_attach() {
    if !privileged_or_skip() {
        return;
    }
    let target_ns = Netns::unique("dp-auto-t").unwrap();
    let client_ns = Netns::unique("dp-auto-c").unwrap();
    let veth = Veth::new(&target_ns, "vt", &client_ns, "vc")
        .mtu(9000)
        .b_tx_queues(2)
        .create()
        .unwrap();
    let dir = TargetDir::new(
        &["vt"],
        "socket = \"auto\"\nxdp-mode = \"native\"",
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let target = dir.start(&target_ns);
    let log = target.log();
    assert!(log.contains("FALLING BACK TO AF_PACKET"), "{log}");
    assert!(
        !target_ns
            .ip(&["link", "show", "vt"])
            .unwrap()
            .contains("xdp"),
        "a failed XDP attach must leave nothing behind"
    );
    let raw = in_netns(&client_ns, || RawSocket::open("vc")).expect("raw socket");
    let mut client = Client::new(raw, MacAddr(veth.b.mac));
    let device = discover_one(&mut client);
    // The fallback carries jumbo frames too: (9000 - 36) / 512 sectors.
    assert_eq!(device.sector_count, 17);
    let data = pattern(7, 17, 11);
    client.write(&device, 7, &data, true).expect("write");
    assert_eq!(client.read(&device, 7, 17, true).expect("read"), data);
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
}

/// The start-up advertisement goes out once per interface and device, not once per RX queue:
/// a target interface with two RX queues (two AF_XDP sockets) sends one per device.
#[test]
fn test_advertisement_once_per_interface_with_two_queues() {
    if !privileged_or_skip() {
        return;
    }
    let target_ns = Netns::unique("dp-adv2q-t").unwrap();
    let client_ns = Netns::unique("dp-adv2q-c").unwrap();
    let _veth = Veth::new(&target_ns, "vt", &client_ns, "vc")
        .queues(2)
        .create()
        .unwrap();
    let dir = TargetDir::new(
        &["vt"],
        "socket = \"xdp\"\n",
        &[
            DeviceSpec::new(SHELF, SLOT, SECTORS),
            DeviceSpec::new(SHELF, SLOT + 1, SECTORS),
        ],
    );
    let monitor = PacketSocket::open(&client_ns, "vc");
    let target = dir.start(&target_ns);
    let log = target.log();
    assert!(
        log.contains("queue=0") && log.contains("queue=1"),
        "a socket on each of the two RX queues:\n{log}"
    );
    let mut adverts: HashMap<(u16, u8), u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(frame) = monitor.recv_matching(left, |f| Reply::parse(f).is_some()) else {
            break;
        };
        let reply = Reply::parse(&frame).expect("AoE response");
        assert_eq!(reply.aoe.command, AoeCommand::QueryConfig, "{reply:?}");
        *adverts
            .entry((reply.aoe.major, reply.aoe.minor))
            .or_default() += 1;
    }
    assert_eq!(
        adverts,
        HashMap::from([((SHELF, SLOT), 1), ((SHELF, SLOT + 1), 1)]),
        "advertisements per device"
    );
}

/// The statistics socket answers only root and the target's own user, whatever the socket
/// file's mode: a client of another user (`setpriv` to `nobody`, with the socket and its
/// directory opened up to everyone) is refused, root is answered.
#[test]
fn test_stats_socket_refuses_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let Some(net) = Net::new("dp-peercred", 1) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        "socket = \"xdp\"\n",
        &[DeviceSpec::new(SHELF, SLOT, SECTORS)],
    );
    let target = dir.start(&net.target_ns);
    let socket = dir.path().join("ctl.sock");
    let open_up = std::fs::Permissions::from_mode(0o777);
    std::fs::set_permissions(dir.path(), open_up.clone()).expect("chmod the directory");
    std::fs::set_permissions(&socket, open_up).expect("chmod the socket");
    // The binary must be reachable by `nobody`: copy it next to the socket.
    let binary = dir.path().join("aoe-xdp-client");
    std::fs::copy(env!("CARGO_BIN_EXE_aoe-xdp"), &binary).expect("copy the binary");
    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .arg("--stats")
        .arg(&socket)
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&as_nobody.stderr);
    assert!(
        !as_nobody.status.success() && stderr.contains("permission denied"),
        "a client of another user must be refused: {as_nobody:?}"
    );
    assert!(stats(&socket, false).contains("WORKER"), "root is answered");
    let log = target.stop();
    assert!(
        log.contains("refused a client"),
        "the refusal is logged:\n{log}"
    );
}

/// Rounds of [`kill_9_during_writes`], and the sectors each round writes (each once).
const KILL_ROUNDS: u64 = 3;
const KILL_ROUND_SECTORS: u64 = SECTORS / KILL_ROUNDS;

/// A thread that writes 2-sector blocks with `client` at `first_lba`, `first_lba + 2`, ...
/// (`blocks` of them, each once, seeds from `seed`) until a write fails, FLUSHing after every
/// 16 when `flushing`; counts the acknowledged ones in `acked`. Returns (lba, seed) of the
/// acknowledged writes and how many of them a completed FLUSH covers.
fn spawn_writer(
    mut client: Client,
    device: Found,
    (first_lba, blocks, seed): (u64, u64, u64),
    flushing: bool,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<(Vec<(u64, u64)>, usize)> {
    std::thread::spawn(move || {
        let (mut done, mut flushed) = (Vec::new(), 0);
        for i in 0..blocks {
            let (lba, seed) = (first_lba + 2 * i, seed + i);
            if client
                .write(&device, lba, &pattern(lba, 2, seed), false)
                .is_err()
            {
                break;
            }
            done.push((lba, seed));
            acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if flushing && done.len() % 16 == 0 {
                if client.flush(&device).is_err() {
                    break;
                }
                flushed = done.len();
            }
        }
        (done, flushed)
    })
}

/// Waits until `acked` reaches `count` (at most 10 s).
fn wait_acked(acked: &std::sync::atomic::AtomicU64, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.load(std::sync::atomic::Ordering::Relaxed) < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reads back every (lba, seed) of `writes` through path `path` of a running target.
fn assert_read_back(net: &Net, path: usize, writes: &[(u64, u64)], what: &str) {
    let mut client = net.client(path);
    let device = discover_one(&mut client);
    for &(lba, seed) in writes {
        let data = client.read(&device, lba, 2, false).expect("read back");
        assert!(
            data == pattern(lba, 2, seed),
            "acknowledged write at LBA {lba} (seed {seed}) lost after {what}"
        );
    }
}

/// `kill -9` in the middle of a stream of writes, [`KILL_ROUNDS`] times, each time restarting
/// the target on the same file: every write acknowledged in `sync` mode reads back, and with
/// `writeback` every write acknowledged before a FLUSH that completed. Each sector is written
/// once, so a write in flight at the kill (acknowledged or not, it may have reached the file)
/// never hides an older acknowledged one.
fn kill_9_during_writes(durability: &str) {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let Some(net) = Net::new(&format!("dp-kill-{}", &durability[..4]), 1) else {
        return;
    };
    let dir = TargetDir::new(
        &["vt"],
        "socket = \"xdp\"\n",
        &[DeviceSpec::new(SHELF, SLOT, SECTORS).with(&format!("durability = \"{durability}\""))],
    );
    let flushing = durability == "writeback";
    let mut must_read_back: Vec<(u64, u64)> = Vec::new();
    for round in 0..KILL_ROUNDS {
        let target = dir.start(&net.target_ns);
        let mut client = net.client(0).with_retry(Duration::from_millis(100), 3);
        let device = discover_one(&mut client);
        let acked = Arc::new(AtomicU64::new(0));
        let blocks = KILL_ROUND_SECTORS / 2;
        let stream = (round * KILL_ROUND_SECTORS, blocks, 1000 * round);
        let writer = spawn_writer(client, device, stream, flushing, Arc::clone(&acked));
        // Kill it with about a third of the round's writes acknowledged, more in flight.
        wait_acked(&acked, blocks / 3);
        target.kill();
        let (done, flushed) = writer.join().expect("writer thread");
        assert!(
            (done.len() as u64) < blocks,
            "round {round}: the kill came after the last write ({} acknowledged)",
            done.len()
        );
        let covered = if flushing { flushed } else { done.len() };
        assert!(
            covered > 0,
            "round {round}: nothing acknowledged before the kill"
        );
        must_read_back.extend_from_slice(&done[..covered]);
    }
    // After the last kill: a fresh target on the same file reads back every one of them.
    let _target = dir.start(&net.target_ns);
    assert_read_back(&net, 0, &must_read_back, "kill -9");
}

/// 8 MiB: room for writes that go on for the moment a stop or a link change takes.
const ROOMY_SECTORS: u64 = 16384;

/// Two paths (`vt0`, `vt1`) to an AF_XDP target exporting one device of [`ROOMY_SECTORS`].
fn two_paths_with_room(tag: &str) -> Option<(Net, TargetDir)> {
    let net = Net::new(tag, 2)?;
    let dir = TargetDir::new(
        &["vt0", "vt1"],
        "socket = \"xdp\"\n",
        &[DeviceSpec::new(SHELF, SLOT, ROOMY_SECTORS)],
    );
    Some((net, dir))
}

/// SIGTERM while two initiators write over two paths: the target drains, exits 0 within the
/// stop limit and leaves no XDP program; both paths were served up to the stop, and every
/// acknowledged write reads back after a restart.
#[test]
fn test_sigterm_under_load_on_two_paths() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    let Some((net, dir)) = two_paths_with_room("dp-term") else {
        return;
    };
    let sectors = ROOMY_SECTORS;
    let target = dir.start(&net.target_ns);
    let half = sectors / 2;
    let acked = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let writers: Vec<_> = (0..2u64)
        .map(|path| {
            let index = usize::try_from(path).unwrap();
            let mut client = net.client(index).with_retry(Duration::from_millis(100), 3);
            let device = discover_one(&mut client);
            let stream = (path * half, half / 2, 5000 * path);
            spawn_writer(client, device, stream, false, Arc::clone(&acked[index]))
        })
        .collect();
    // Both paths carry writes when the stop comes.
    for count in &acked {
        wait_acked(count, 200);
    }
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    for name in ["vt0", "vt1"] {
        let link = net.target_ns.ip(&["link", "show", name]).unwrap();
        assert!(!link.contains("xdp"), "XDP program left on {name}: {link}");
    }
    let mut acknowledged = Vec::new();
    for (path, writer) in writers.into_iter().enumerate() {
        let (done, _) = writer.join().expect("writer thread");
        assert!(
            !done.is_empty() && (done.len() as u64) < half / 2,
            "path {path}: {} writes acknowledged, the stop must come in the middle",
            done.len()
        );
        acknowledged.extend(done);
    }
    let _target = dir.start(&net.target_ns);
    assert_read_back(&net, 0, &acknowledged, "SIGTERM");
}

#[test]
fn test_kill_9_loses_no_acknowledged_sync_write() {
    kill_9_during_writes("sync");
}

#[test]
fn test_kill_9_loses_no_write_covered_by_a_completed_flush() {
    kill_9_during_writes("writeback");
}

/// A device whose file lives on a full file system (a 1 MiB tmpfs holding a 4 MiB sparse
/// file): sequential writes succeed until the space runs out, then fail with ATA ABRT (not
/// UNC: the medium is fine) and so do the writes after them; the data written before is
/// intact, and the target keeps serving (reads, and writes into space it has).
#[test]
fn test_full_file_system_gives_ata_errors_and_keeps_serving() {
    let Some(net) = Net::new("dp-full", 1) else {
        return;
    };
    let sectors = 8192;
    let dir = TargetDir::new(
        &["vt"],
        "socket = \"xdp\"\n",
        &[DeviceSpec::new(SHELF, SLOT, sectors)],
    );
    let tmpfs = SmallTmpfs::new(1024);
    let backing = tmpfs.path().join("disk");
    std::fs::File::create(&backing)
        .and_then(|f| f.set_len(sectors * 512))
        .expect("sparse file on the tmpfs");
    std::fs::remove_file(dir.disk(0)).expect("remove the default backing file");
    std::os::unix::fs::symlink(&backing, dir.disk(0)).expect("symlink to the tmpfs file");
    let target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    let mut written = 0;
    let first_error = loop {
        let lba = written * 2;
        assert!(lba < sectors, "4 MiB written to a 1 MiB file system");
        match client.write(&device, lba, &pattern(lba, 2, 7), false) {
            Ok(()) => written += 1,
            Err(error) => break error,
        }
    };
    let is_abort = |error: &ClientError| {
        matches!(error, ClientError::Ata { error, .. } if *error & ata_error::ABRT != 0
            && *error & ata_error::UNC == 0)
    };
    assert!(
        is_abort(&first_error),
        "a full file system is ABRT: {first_error:?}"
    );
    assert!(written > 0, "nothing could be written");
    for lba in (written * 2..sectors).step_by(512).take(8) {
        let error = client
            .write(&device, lba, &pattern(lba, 2, 8), false)
            .expect_err("no write into space the file system does not have");
        assert!(is_abort(&error), "write at {lba}: {error:?}");
    }
    for i in 0..written {
        let lba = i * 2;
        let data = client.read(&device, lba, 2, false).expect("read back");
        assert!(
            data == pattern(lba, 2, 7),
            "data written before the failure at {lba}"
        );
    }
    client
        .write(&device, 0, &pattern(0, 2, 9), false)
        .expect("a write into space the file already has");
    assert!(client.read(&device, 0, 2, false).expect("read") == pattern(0, 2, 9));
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    drop(tmpfs);
}

/// An interface going down and up under load: the other path keeps serving without an error
/// throughout, and the first one serves again once it is back up.
#[test]
fn test_interface_down_and_up_under_load() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let Some((net, dir)) = two_paths_with_room("dp-downup") else {
        return;
    };
    let sectors = ROOMY_SECTORS;
    let _target = dir.start(&net.target_ns);
    let mut first = net.client(0);
    let device = discover_one(&mut first);
    let mut second = net.client(1).with_retry(Duration::from_millis(100), 3);
    let second_device = discover_one(&mut second);
    let acked = Arc::new(AtomicU64::new(0));
    let blocks = sectors / 2;
    let writer = spawn_writer(
        second,
        second_device,
        (0, blocks, 77),
        false,
        Arc::clone(&acked),
    );
    wait_acked(&acked, 100);
    net.target_ns.ip(&["link", "set", "vt0", "down"]).unwrap();
    let before = acked.load(Ordering::Relaxed);
    let impatient = |client: Client| client.with_retry(Duration::from_millis(100), 2);
    let mut first = impatient(first);
    assert!(
        first.read(&device, 0, 2, false).is_err(),
        "an interface that is down does not answer"
    );
    std::thread::sleep(Duration::from_millis(200));
    let during = acked.load(Ordering::Relaxed) - before;
    net.target_ns.ip(&["link", "set", "vt0", "up"]).unwrap();
    assert!(
        during > 0,
        "the other path stopped serving while vt0 was down"
    );
    // Back up: the first path serves again (a link that comes up may drop the first frames).
    let deadline = Instant::now() + Duration::from_secs(5);
    let lba = sectors - 2;
    while first
        .write(&device, lba, &pattern(lba, 2, 1), false)
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "vt0 did not serve again after coming up"
        );
    }
    assert!(first.read(&device, lba, 2, false).expect("read over vt0") == pattern(lba, 2, 1));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !writer.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (done, _) = writer.join().expect("writer thread");
    assert_eq!(
        done.len() as u64,
        blocks,
        "every write over the second path was answered"
    );
}

/// One of every class of malformed AoE request, to `route` (a device of `sectors` sectors):
/// a write truncated at every length, bad versions, the response and error flags, absurd
/// sector counts and LBAs (past the end, straddling it, `lba + count` overflowing 48 bits),
/// payloads shorter and longer than the count, unknown AoE and ATA commands, a Query Config
/// string longer than its frame and than 1024 bytes, and Mac Mask List edits past 255.
/// Requests that are odd but may be carried out (the error flag on a request, a count of 0, a
/// payload longer than its count) go to `spare`, the others to LBA 0: none of those may write.
fn malformed_requests(route: &Route, sectors: u64, spare: u64) -> Vec<Vec<u8>> {
    let frame = |build: &dyn Fn(&mut [u8]) -> usize| {
        let mut buf = vec![0u8; 9000];
        let len = build(&mut buf);
        buf.truncate(len);
        buf
    };
    let ata = |cmd: AtaCmd, data: &[u8]| frame(&|buf| frames::ata(buf, route, 0x0BAD, &cmd, data));
    let write = ata(AtaCmd::write(0, 2, true), &[0xBA; 1024]);
    let mut all: Vec<Vec<u8>> = (14..write.len()).map(|cut| write[..cut].to_vec()).collect();
    for (byte, value) in [(14, 0x00), (14, 0x20), (14, 0xF0), (14, 0x18), (19, 0x55)] {
        let mut bad = write.clone();
        bad[byte] = value;
        all.push(bad);
    }
    let mut error_flag = ata(AtaCmd::write(spare, 2, true), &[0xB9; 1024]);
    error_flag[14] = 0x14;
    all.push(error_flag);
    all.push(ata(AtaCmd::write(spare, 0, true), &[0xB8; 1024]));
    all.push(ata(AtaCmd::write(spare, 1, true), &[0xBD; 1024]));
    let end = sectors;
    for (lba, count, lba48) in [
        (0, 255, true),
        (end, 2, true),
        (end - 1, 2, true),
        (0xFFFF_FFFF_FFFF, 2, true),
        (0xFFFF_FFFF_FFFE, 255, true),
        (0x0FFF_FFFF, 2, false),
    ] {
        all.push(ata(AtaCmd::write(lba, count, lba48), &[0xBB; 1024]));
        all.push(ata(AtaCmd::read(lba, count, lba48), &[]));
    }
    all.push(ata(AtaCmd::write(0, 2, true), &[0xBC; 512]));
    let mut unknown_ata = ata(AtaCmd::write(0, 2, true), &[0xBE; 1024]);
    unknown_ata[27] = 0xEE;
    all.push(unknown_ata);
    let config = |string: &[u8]| {
        frame(&|buf| frames::query_config(buf, route, 0x0BAD, ConfigCommand::Set, string))
    };
    let mut lying_length = config(b"short");
    lying_length[30..32].copy_from_slice(&0xFFFFu16.to_be_bytes());
    all.push(lying_length);
    all.push(config(&[b'x'; 1400]));
    let directives: Vec<DirectiveRepr> = (0..180u8)
        .map(|i| DirectiveRepr {
            command: DirectiveCommand::Add,
            mac: MacAddr([2, 0, 0, 0, 0x77, i]),
        })
        .collect();
    let mut past_255 =
        frame(&|buf| frames::mac_mask(buf, route, 0x0BAD, MacMaskCommand::Edit, &directives));
    past_255[27] = 255;
    all.push(past_255);
    all
}

/// A flood of every class of malformed request ([`malformed_requests`], over and over)
/// during verified I/O: zero mismatches and no failed request on the initiator's side, no
/// byte written outside the exported window, the file's size unchanged, the target serving.
#[test]
fn test_malformed_flood_during_verified_io() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // Two paths to one device: the flood comes over vt1, the verified I/O over vt0, so the
    // target's answers to the flood do not crowd the verifying initiator's socket.
    let Some(net) = Net::new("dp-flood", 2) else {
        return;
    };
    // The window: sectors 1024..3072 of a 4096-sector file.
    let (file_sectors, offset, length) = (4096u64, 1024u64, 2048u64);
    let dir = TargetDir::new(
        &["vt0", "vt1"],
        "socket = \"xdp\"\n",
        &[DeviceSpec::new(SHELF, SLOT, file_sectors)
            .with(&format!("offset = {offset}"))
            .with(&format!("length = {length}"))],
    );
    let target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    let route = Route {
        dst: discover_one(&mut net.client(1)).mac,
        src: MacAddr(net.client_end(1).mac),
        vlan_tci: None,
        shelf: SHELF,
        slot: SLOT,
    };
    // The last 8 sectors take the odd requests that may be carried out; the rest is verified.
    let spare = length - 8;
    let floods = malformed_requests(&route, length, spare);
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (socket, stop) = (net.raw(1), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for frame in &floods {
                    // A frame the kernel refuses (too short for it) is simply not sent.
                    sent += u64::from(socket.send(frame).is_ok());
                }
            }
            sent
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut round = 0u64;
    while Instant::now() < deadline {
        for block in 0..spare / 2 {
            let lba = block * 2;
            let data = pattern(lba, 2, round);
            client
                .write(&device, lba, &data, true)
                .expect("verified write");
            let back = client.read(&device, lba, 2, true).expect("verified read");
            assert!(back == data, "mismatch at LBA {lba} in round {round}");
            if Instant::now() >= deadline {
                break;
            }
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().expect("flooder thread");
    assert!(sent > 10_000, "the flood sent only {sent} frames");
    client.identify(&device).expect("the target still serves");
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    let file = std::fs::read(dir.disk(0)).expect("read the backing file");
    assert_eq!(
        file.len() as u64,
        file_sectors * 512,
        "the file's size changed"
    );
    let byte = |sector: u64| usize::try_from(sector * 512).expect("fits");
    let (start, end) = (byte(offset), byte(offset + length));
    assert!(
        file[..start].iter().all(|b| *b == 0) && file[end..].iter().all(|b| *b == 0),
        "bytes written outside the exported window"
    );
}

/// A disk with a bad range (a FUSE file whose reads and writes there fail with EIO): requests
/// touching it get ATA UNC, every other request is served and its data kept, and the target
/// keeps serving throughout.
#[test]
fn test_bad_range_fails_only_its_requests() {
    let Some(net) = Net::new("dp-badrange", 1) else {
        return;
    };
    let sectors = SECTORS;
    // Bad: 64 KiB..128 KiB, page-aligned (FUSE reads whole pages).
    let bad = 128..256u64;
    let fs = FaultFs::mount(
        usize::try_from(sectors * 512).unwrap(),
        bad.start * 512..bad.end * 512,
    );
    let dir = TargetDir::new(
        &["vt"],
        "socket = \"xdp\"\n",
        &[DeviceSpec::new(SHELF, SLOT, sectors)],
    );
    std::fs::remove_file(dir.disk(0)).expect("remove the default backing file");
    std::os::unix::fs::symlink(fs.disk(), dir.disk(0)).expect("symlink to the FUSE file");
    let target = dir.start(&net.target_ns);
    let mut client = net.client(0);
    let device = discover_one(&mut client);
    let is_media_error = |error: &ClientError| matches!(error, ClientError::Ata { error, .. } if *error & ata_error::UNC != 0);
    // Around the bad range and in it, 2 sectors at a time.
    let blocks: Vec<u64> = (bad.start - 32..bad.end + 32).step_by(2).collect();
    for &lba in &blocks {
        let result = client.write(&device, lba, &pattern(lba, 2, 3), false);
        if bad.contains(&lba) {
            let error = result.expect_err("a write into the bad range fails");
            assert!(is_media_error(&error), "write at {lba}: {error:?}");
        } else {
            result
                .unwrap_or_else(|error| panic!("write at {lba} outside the bad range: {error:?}"));
        }
    }
    for &lba in &blocks {
        let result = client.read(&device, lba, 2, false);
        if bad.contains(&lba) {
            let error = result.expect_err("a read of the bad range fails");
            assert!(is_media_error(&error), "read at {lba}: {error:?}");
        } else {
            let data = result
                .unwrap_or_else(|error| panic!("read at {lba} outside the bad range: {error:?}"));
            assert!(data == pattern(lba, 2, 3), "data at {lba}");
        }
    }
    let log = target.stop();
    assert!(log.contains("stopped cleanly"), "{log}");
    let bytes = fs.bytes();
    for &lba in blocks.iter().filter(|lba| !bad.contains(*lba)) {
        let at = usize::try_from(lba * 512).unwrap();
        assert!(
            bytes[at..at + 1024] == pattern(lba, 2, 3),
            "the disk at {lba}"
        );
    }
}

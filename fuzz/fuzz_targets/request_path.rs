//! The whole request path: fuzz input → frames → `LocalTarget` (target core, real io_uring
//! engine, state directory) → replies, with invariants checked after every frame.
//!
//! Input: byte 0 picks the mode. Raw mode (bit 0 clear) sends the rest as one frame. Structured
//! mode (bit 0 set) reads up to [`REQUESTS_MAX`] requests from the input: each picks an
//! initiator, a port, an address, a command and its fields (biased towards edges: last sector,
//! window ends, LBA28/LBA48 limits, MTU sector limits, 1024-byte strings, 255-entry lists),
//! encodes a valid frame with the initiator encoders, then flips bytes and may truncate it;
//! with bit 2 set, the cache of one buffered device's file is dropped first (see [`UNCACHED`]).
//!
//! The world is built once per process (static): five devices on small files under /var/tmp
//! (a plain O_DIRECT export, a resident windowed export with sentinel sectors around its
//! window, a read-only export, a buffered export read through a mapping whose cache an input
//! may drop, a windowed export written through a mapping) and a state directory on /dev/shm
//! (tmpfs: saving state on every control command would otherwise be bounded by fsync). Each
//! input starts from empty AoE state so a crash reproduces from its input alone; file contents
//! carry over, which the checks allow.
//!
//! Invariants, after every frame:
//! - `process` succeeds and nothing panics;
//! - every reply parses as an AoE response of version 1 from a real device address (never a
//!   broadcast one), echoes the tag and command, goes back to the sender, and fits the MTU;
//! - a successful ATA read returns exactly the file's bytes at the addressed window sectors; a
//!   successful ATA write put exactly the payload there;
//! - the sentinel sectors outside the window and the whole read-only file are unchanged;
//! - each device's saved state file decodes to its live state (or is absent and the live
//!   state is empty).
#![no_main]

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aoe_xdp::aoe::{DeviceParams, DeviceState, PortInfo, SharedState, Target};
use aoe_xdp::initiator::frames::{self, AtaCmd, Reply, Route};
use aoe_xdp::service::LocalTarget;
use aoe_xdp::state_dir::StateDir;
use aoe_xdp::storage::engine::Engine;
use aoe_xdp::storage::export::{Durability, Export, ExportSpec};
use aoe_xdp::storage::uring_engine::{UringConfig, UringEngine};
use aoe_xdp::sys::mem::Arena;
use aoe_xdp::wire::{
    AoeCommand, AoePacket, AtaCommand, AtaPacket, ConfigCommand, DirectiveCommand, DirectiveRepr,
    EthernetFrame, MacAddr, MacMaskCommand, ReserveCommand, AOE_VERSION, SHELF_BROADCAST,
    SLOT_BROADCAST,
};
use libfuzzer_sys::fuzz_target;

/// Requests per structured input.
const REQUESTS_MAX: usize = 8;
const CHUNK_SIZE: usize = 16384;
const SECTOR: u64 = 512;

/// Initiators; structured inputs mostly pick one of these so masks and reservations interact.
const HOSTS: [MacAddr; 4] = [
    MacAddr([0x02, 0, 0, 0, 0, 0x0A]),
    MacAddr([0x02, 0, 0, 0, 0, 0x0B]),
    MacAddr([0x02, 0, 0, 0, 0, 0x0C]),
    MacAddr([0x02, 0, 0, 0, 0, 0x0D]),
];

const PORTS: [PortInfo; 2] = [
    PortInfo {
        index: 0,
        mac: MacAddr([0x02, 0xAA, 0, 0, 0, 1]),
        mtu: 1500,
    },
    PortInfo {
        index: 1,
        mac: MacAddr([0x02, 0xAA, 0, 0, 0, 2]),
        mtu: 9000,
    },
];

/// One exported device over its own file.
struct DeviceSpec {
    shelf: u16,
    slot: u8,
    file_sectors: u64,
    offset: u64,
    length: Option<u64>,
    read_only: bool,
    direct_io: bool,
    durability: Durability,
    resident: bool,
}

const DEVICES: [DeviceSpec; 5] = [
    // Whole file, O_DIRECT (misaligned VLAN-tagged payloads take the bounce path).
    DeviceSpec {
        shelf: 1,
        slot: 0,
        file_sectors: 64,
        offset: 0,
        length: None,
        read_only: false,
        direct_io: true,
        durability: Durability::Writeback,
        resident: false,
    },
    // Sectors 16..80 of a 96-sector file: 0..16 and 80..96 are sentinels. Resident: reads
    // are copies through the locked mapping, at the window's edges.
    DeviceSpec {
        shelf: 1,
        slot: 1,
        file_sectors: 96,
        offset: 16,
        length: Some(64),
        read_only: false,
        direct_io: false,
        durability: Durability::Sync,
        resident: true,
    },
    DeviceSpec {
        shelf: 2,
        slot: 0,
        file_sectors: 32,
        offset: 0,
        length: None,
        read_only: true,
        direct_io: false,
        durability: Durability::Writeback,
        resident: false,
    },
    // Buffered, not resident: reads copy out of an unlocked mapping, writes are `pwritev2`
    // after asking whether the pages they cover in part are cached (`SeenPages`); inputs
    // with bit 2 of their first byte drop the file's cache first (and the engine's table of
    // pages seen cached), so such writes go through the ring.
    DeviceSpec {
        shelf: 2,
        slot: 1,
        file_sectors: 64,
        offset: 0,
        length: None,
        read_only: false,
        direct_io: false,
        durability: Durability::Writeback,
        resident: false,
    },
    // Sectors 8..56 of a 64-sector file through a mapping for writes, group-committed.
    DeviceSpec {
        shelf: 3,
        slot: 0,
        file_sectors: 64,
        offset: 8,
        length: Some(48),
        read_only: false,
        direct_io: false,
        durability: Durability::Sync,
        resident: false,
    },
];

/// The device whose cache an input may drop (see [`DEVICES`]).
const UNCACHED: usize = 3;

impl DeviceSpec {
    fn window_sectors(&self) -> u64 {
        self.length.unwrap_or(self.file_sectors - self.offset)
    }
}

struct World {
    local: LocalTarget,
    /// Our own read handles on the backing files.
    files: Vec<File>,
    /// The initial content of each file (sentinels and the read-only file must keep it).
    initial: Vec<Vec<u8>>,
    state_path: PathBuf,
    state: StateDir,
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Removes directories left by earlier fuzzing processes that are gone.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("aoe-fuzz-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn private_dir(parent: &str) -> PathBuf {
    sweep(Path::new(parent));
    let dir = tempfile::Builder::new()
        .prefix(&format!("aoe-fuzz-{}-", std::process::id()))
        .tempdir_in(parent)
        .expect("temporary directory");
    // Kept for the process' life; removed by the sweep of a later run.
    dir.keep()
}

fn build_world() -> World {
    let data_dir = private_dir("/var/tmp");
    let state_path = private_dir("/dev/shm");
    let mut files = Vec::new();
    let mut initial = Vec::new();
    let mut exports = Vec::new();
    for (index, spec) in DEVICES.iter().enumerate() {
        let path = data_dir.join(format!("disk{index}.img"));
        let len = usize::try_from(spec.file_sectors * SECTOR).expect("small file");
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u8) ^ (i / 512) as u8 ^ (index as u8).wrapping_mul(0x55))
            .collect();
        std::fs::write(&path, &bytes).expect("write backing file");
        files.push(File::open(&path).expect("open backing file"));
        initial.push(bytes);
        exports.push(
            Export::open(&ExportSpec {
                path,
                offset_sectors: spec.offset,
                length_sectors: spec.length,
                read_only: spec.read_only,
                direct_io: spec.direct_io,
                durability: spec.durability,
                resident: spec.resident,
                // Both write-back paths: copies through a mapping and pwritev2.
                mapped_writes: index % 2 == 0,
                // Reads through an unlocked mapping on every other device that is not
                // resident.
                mapped_reads: index % 2 == 1 && !spec.resident && !spec.direct_io,
            })
            .expect("open export"),
        );
    }
    let exports: Arc<[Export]> = exports.into();
    let engine_exports = Arc::clone(&exports);
    let engine = move |arenas: &[Arc<Arena>]| {
        let cfg = UringConfig::default();
        Ok(Engine::Uring(UringEngine::with_arenas(
            engine_exports,
            arenas,
            cfg,
        )?))
    };
    let devices = DEVICES.iter().enumerate().map(|(index, spec)| {
        let params = DeviceParams {
            name: format!("e{}.{}", spec.shelf, spec.slot),
            shelf: spec.shelf,
            slot: spec.slot,
            sectors: spec.window_sectors(),
            read_only: spec.read_only,
            buffer_count: 16,
            model: "fuzz".into(),
            serial: format!("fuzz-{index}"),
            export: u16::try_from(index).expect("five devices"),
            accept: Vec::new(),
            deny: Vec::new(),
            port_mask: u64::MAX,
            broadcast: false,
        };
        (Arc::new(params), Arc::new(SharedState::default()))
    });
    let state = StateDir::open(&state_path).expect("state dir");
    let local = LocalTarget::new(
        Target::new(devices),
        &PORTS,
        engine,
        StateDir::open(&state_path).expect("state dir"),
    )
    .expect("local target");
    World {
        local,
        files,
        initial,
        state_path,
        state,
    }
}

/// Reads fuzz input bytes; past the end everything reads as zero.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        head
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.byte()) % choices.len()]
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn mac(input: &mut Input<'_>) -> MacAddr {
    let choice = input.byte();
    if choice < 0xF0 {
        HOSTS[usize::from(choice) % HOSTS.len()]
    } else {
        let mut bytes = [0u8; 6];
        bytes.iter_mut().for_each(|b| *b = input.byte());
        MacAddr(bytes)
    }
}

/// LBAs near every edge of every device.
fn lba(input: &mut Input<'_>) -> u64 {
    const EDGES: [u64; 12] = [0, 1, 14, 15, 16, 30, 31, 32, 62, 63, 64, 65];
    match input.byte() % 4 {
        0 | 1 => input.pick(&EDGES),
        2 => input.pick(&[0x0FFF_FFFF, 0x1000_0000, (1 << 48) - 1, (1 << 48) - 2]),
        _ => input.u64() & ((1 << 48) - 1),
    }
}

/// Encodes one structured request into `buf`; returns the frame length and the port index.
fn structured(input: &mut Input<'_>, buf: &mut [u8]) -> (usize, usize) {
    let port = usize::from(input.byte() & 1);
    let address = match input.byte() % 10 {
        0..=2 => (1, 0),
        3 => (1, 1),
        4 => (2, 0),
        5 => (2, 1),
        6 => (3, 0),
        7 => (SHELF_BROADCAST, SLOT_BROADCAST),
        8 => {
            let shelf = input.pick(&[1, SHELF_BROADCAST]);
            (shelf, input.pick(&[0, SLOT_BROADCAST]))
        }
        _ => (input.u16(), input.byte()),
    };
    let broadcast = address.0 == SHELF_BROADCAST || address.1 == SLOT_BROADCAST;
    let flags = input.byte();
    let route = Route {
        dst: if broadcast {
            MacAddr::BROADCAST
        } else {
            PORTS[port].mac
        },
        src: mac(input),
        vlan_tci: (flags & 1 != 0).then(|| input.u16() & 0x0FFF),
        shelf: address.0,
        slot: address.1,
    };
    let tag = input.u32();
    let len = match input.byte() % 5 {
        0 | 1 => {
            let any = AtaCommand::from(input.byte());
            let command = input.pick(&[
                AtaCommand::ReadSectors,
                AtaCommand::ReadSectorsExt,
                AtaCommand::WriteSectors,
                AtaCommand::WriteSectorsExt,
                AtaCommand::IdentifyDevice,
                AtaCommand::FlushCache,
                AtaCommand::FlushCacheExt,
                AtaCommand::CheckPowerMode,
                AtaCommand::Smart,
                any,
            ]);
            let any = input.byte();
            let count = input.pick(&[0, 1, 2, 3, 16, 17, 18, any]);
            let lba = lba(input);
            let any = input.byte();
            let cmd = AtaCmd {
                command,
                lba48: flags & 2 != 0,
                lba,
                count,
                feature: input.pick(&[0, 0xDA, 0xD0, any]),
            };
            // At most 18 sectors: one more than a 9000-byte MTU carries.
            let payload_sectors = match input.byte() % 4 {
                0 | 1 => usize::from(count),
                2 => usize::from(count.saturating_sub(1)),
                _ => usize::from(input.byte()),
            }
            .min(18);
            let seed = input.byte();
            let payload: Vec<u8> = (0..payload_sectors * 512)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 9) as u8)
                .collect();
            frames::ata(buf, &route, tag, &cmd, &payload)
        }
        2 => {
            let command = ConfigCommand::from(input.byte() & 0x0F);
            let string: Vec<u8> = match input.byte() % 4 {
                0 => Vec::new(),
                1 => {
                    let len = usize::from(input.byte() % 32);
                    input.take(len).to_vec()
                }
                2 => vec![b'x'; input.pick(&[1023, 1024, 1025])],
                _ => {
                    let fill = input.byte();
                    vec![fill; usize::from(input.u16() % 1100)]
                }
            };
            frames::query_config(buf, &route, tag, command, &string)
        }
        3 => {
            let any = input.byte();
            let command = MacMaskCommand::from(input.pick(&[0, 1, 1, any]));
            let count = match input.byte() % 4 {
                0 => 0,
                1 | 2 => usize::from(input.byte() % 4),
                _ => 255,
            };
            let generated = input.byte();
            let directives: Vec<DirectiveRepr> = (0..count)
                .map(|i| {
                    let any = input.byte();
                    DirectiveRepr {
                        command: DirectiveCommand::from(input.pick(&[1, 1, 2, 0, any])),
                        mac: if count == 255 {
                            MacAddr([0x02, 0, 0, 1, generated, i as u8])
                        } else {
                            mac(input)
                        },
                    }
                })
                .collect();
            frames::mac_mask(buf, &route, tag, command, &directives)
        }
        _ => {
            let any = input.byte();
            let command = ReserveCommand::from(input.pick(&[0, 1, 1, 2, any]));
            let macs: Vec<MacAddr> = (0..input.byte() % 4).map(|_| mac(input)).collect();
            frames::reserve(buf, &route, tag, command, &macs)
        }
    };
    // Mutations: flip bytes, change the AoE command, truncate.
    let mut len = len;
    for _ in 0..input.byte() % 4 {
        let at = usize::from(input.u16()) % len;
        buf[at] ^= input.byte();
    }
    if flags & 0x80 != 0 {
        len = usize::from(input.u16()) % (len + 1);
    }
    (len, port)
}

/// The request's Ethernet source, tag and command, if it has AoE headers.
fn request_header(frame: &[u8]) -> Option<(MacAddr, u32, AoeCommand)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let aoe = AoePacket::new_checked(eth.payload()).ok()?;
    Some((eth.src_addr(), aoe.tag(), aoe.command()))
}

/// (is write, first window sector, count, payload) of an ATA read/write request.
fn ata_request(frame: &[u8]) -> Option<(bool, u64, u8, &[u8])> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let aoe = AoePacket::new_checked(eth.payload()).ok()?;
    let ata = AtaPacket::new_checked(aoe.payload()).ok()?;
    let write = match ata.command() {
        AtaCommand::ReadSectors | AtaCommand::ReadSectorsExt => false,
        AtaCommand::WriteSectors | AtaCommand::WriteSectorsExt => true,
        _ => return None,
    };
    let lba = if ata.is_lba48() {
        ata.lba()
    } else {
        ata.lba() & 0x0FFF_FFFF
    };
    Some((write, lba, ata.sector_count(), ata.payload()))
}

impl World {
    /// Empty AoE state for every device, and no state files.
    fn reset(&mut self) {
        let target = self.local.target();
        for (index, spec) in DEVICES.iter().enumerate() {
            let index = u16::try_from(index).expect("five devices");
            target.shared_state(index).update(|state| {
                let changed = *state != DeviceState::default();
                *state = DeviceState::default();
                ((), changed)
            });
            let _ = std::fs::remove_file(self.state.file_for(spec.shelf, spec.slot));
        }
    }

    /// Drops every cached page of device `index`'s file (synced first: only clean pages go),
    /// and tells the engine, as the supervisor does when the kernel counted an eviction, so
    /// that pages it saw cached before are asked about again.
    fn drop_cache(&self, index: usize) {
        let file = &self.files[index];
        file.sync_data().expect("sync backing file");
        rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        aoe_xdp::storage::cached::pages_evicted();
    }

    fn send(&mut self, frame: &[u8], port: &PortInfo) {
        let mut replies = Vec::new();
        self.local
            .process(frame, port, &mut replies)
            .expect("process never fails on peer input");
        for reply in &replies {
            self.check_reply(frame, port, reply);
        }
        self.check_files();
        self.check_state();
    }

    fn check_reply(&self, request: &[u8], port: &PortInfo, frame: &[u8]) {
        let reply = Reply::parse(frame).expect("every reply is an AoE response");
        let (src, tag, command) = request_header(request).expect("answered requests parse");
        assert_eq!(reply.aoe.version, AOE_VERSION);
        assert_eq!(reply.aoe.tag, tag, "tag echoed");
        assert_eq!(reply.aoe.command, command, "command echoed");
        assert_eq!(reply.dst, src, "reply goes back to the sender");
        assert_eq!(reply.src, port.mac, "reply comes from the port");
        assert!(frame.len() >= 60, "runt reply");
        let eth = EthernetFrame::new_checked(frame).expect("parsed above");
        assert!(
            frame.len() - eth.header_len() <= usize::from(port.mtu),
            "reply of {} bytes exceeds MTU {}",
            frame.len(),
            port.mtu
        );
        let (index, spec) = DEVICES
            .iter()
            .enumerate()
            .find(|(_, d)| (d.shelf, d.slot) == (reply.aoe.major, reply.aoe.minor))
            .expect("replies carry a real device address");
        if reply.error().is_some() {
            return;
        }
        match command {
            AoeCommand::Ata => self.check_ata(request, &reply, index, spec),
            AoeCommand::QueryConfig => assert!(reply.query_config().is_some()),
            AoeCommand::MacMaskList => assert!(reply.mac_mask().is_some()),
            AoeCommand::ReserveRelease => assert!(reply.reserve().is_some()),
            AoeCommand::Unknown(_) => panic!("unknown commands are answered with an error"),
        }
    }

    fn check_ata(&self, request: &[u8], reply: &Reply<'_>, index: usize, spec: &DeviceSpec) {
        let (ata, data) = reply.ata().expect("ATA reply");
        let Some((write, lba, count, payload)) = ata_request(request) else {
            return;
        };
        if ata.cmd_status != 0x40 {
            return;
        }
        // Success: the range is inside the window and the bytes are where they belong.
        let end = lba + u64::from(count);
        assert!(
            count > 0 && end <= spec.window_sectors(),
            "success outside the device"
        );
        assert!(
            !(write && spec.read_only),
            "write to a read-only device succeeded"
        );
        let len = usize::from(count) * 512;
        let mut on_disk = vec![0u8; len];
        self.files[index]
            .read_exact_at(&mut on_disk, (spec.offset + lba) * SECTOR)
            .expect("read back");
        if write {
            assert!(
                on_disk == payload[..len],
                "write did not land at its sectors"
            );
        } else {
            assert!(
                data.len() >= len && data[..len] == on_disk,
                "read returned other bytes"
            );
        }
    }

    fn check_files(&self) {
        for (index, spec) in DEVICES.iter().enumerate() {
            let initial = &self.initial[index];
            let mut now = vec![0u8; initial.len()];
            self.files[index]
                .read_exact_at(&mut now, 0)
                .expect("read file");
            let start = usize::try_from(spec.offset * SECTOR).expect("small");
            let end =
                usize::try_from((spec.offset + spec.window_sectors()) * SECTOR).expect("small");
            assert!(now[..start] == initial[..start], "write before the window");
            assert!(now[end..] == initial[end..], "write after the window");
            if spec.read_only {
                assert!(now == *initial, "read-only file changed");
            }
        }
    }

    fn check_state(&self) {
        let target = self.local.target();
        for (index, spec) in DEVICES.iter().enumerate() {
            let live = target
                .shared_state(u16::try_from(index).expect("five devices"))
                .snapshot()
                .0;
            let saved = self
                .state
                .load(spec.shelf, spec.slot)
                .expect("state file decodes");
            assert_eq!(saved, live, "saved state differs from the live state");
        }
        debug_assert!(self.state_path.is_dir());
    }
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|cell| {
        let mut cell = cell.borrow_mut();
        let world = cell.get_or_insert_with(build_world);
        world.reset();
        let mut input = Input { data };
        let mode = input.byte();
        let mut buf = vec![0u8; CHUNK_SIZE];
        if mode & 1 == 0 {
            let port = PORTS[usize::from(mode >> 1 & 1)];
            // A port cannot receive more than its MTU plus an Ethernet header with a VLAN tag.
            let frame = input.take(usize::from(port.mtu) + 18);
            world.send(frame, &port);
            return;
        }
        if mode & 4 != 0 {
            world.drop_cache(UNCACHED);
        }
        for _ in 0..REQUESTS_MAX {
            if input.is_empty() {
                break;
            }
            let (len, port) = structured(&mut input, &mut buf);
            let port = PORTS[port];
            let len = len.min(usize::from(port.mtu) + 18);
            world.send(&buf[..len], &port);
        }
    });
});

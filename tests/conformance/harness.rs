//! The machinery behind the conformance table: row types and their builders, the world (real
//! files, a real engine, a state directory), and the checks run after every row.
//!
//! Each row is sent through [`LocalTarget::process`] exactly as a received frame; the harness
//! then checks every reply against the row's expectation and the files against a model:
//! after **every** row each tracked region of each backing file is read back with `std::fs`
//! and compared with the model, so a row that should not write proves that it did not.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aoe_xdp::aoe::{DeviceParams, DeviceState, PortInfo, SharedState, Target, FIRMWARE_VERSION};
use aoe_xdp::initiator::frames::{self, AtaCmd, Reply, Route};
use aoe_xdp::service::LocalTarget;
use aoe_xdp::state_dir::StateDir;
use aoe_xdp::storage::engine::{Engine, EngineError};
use aoe_xdp::storage::export::{Durability, Export, ExportSpec};
use aoe_xdp::storage::sync_engine::{SyncEngine, SYNC_QUEUE_DEPTH};
use aoe_xdp::storage::uring_engine::{UringConfig, UringEngine};
use aoe_xdp::sys::mem::Arena;
use aoe_xdp::wire::{
    AoeCommand, AoeError, AoePacket, AtaCommand, AtaPacket, ConfigCommand, DirectiveCommand,
    DirectiveRepr, EthernetFrame, MacAddr, MacMaskCommand, MacMaskError, ReserveCommand,
    AOE_VERSION, SHELF_BROADCAST, SLOT_BROADCAST,
};

/// Buffer size for an advertisement built outside the worker.
const CHUNK_SIZE: usize = 16384;
/// Byte offset of the AoE header and of the ATA header in an untagged frame.
const AOE_OFFSET: usize = 14;
const ATA_OFFSET: usize = 24;
const ATA_DATA_OFFSET: usize = 36;

// ---------------------------------------------------------------------------------------------
// Addresses, ports and the world description.

/// An AoE address (shelf, slot); 0xFFFF / 0xFF are the broadcast values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Addr(pub u16, pub u8);

impl Addr {
    fn is_broadcast(self) -> bool {
        self.0 == SHELF_BROADCAST || self.1 == SLOT_BROADCAST
    }
}

/// The target's two ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Index 0, MTU 1500: 2 sectors per ATA command.
    Mtu1500,
    /// Index 1, MTU 9000: 17 sectors per ATA command.
    Mtu9000,
}

impl Port {
    pub fn info(self) -> PortInfo {
        match self {
            Port::Mtu1500 => PortInfo {
                index: 0,
                mac: MacAddr([0x02, 0xAA, 0, 0, 0, 0x01]),
                mtu: 1500,
            },
            Port::Mtu9000 => PortInfo {
                index: 1,
                mac: MacAddr([0x02, 0xAA, 0, 0, 0, 0x02]),
                mtu: 9000,
            },
        }
    }
}

/// A backing file: its size (sparse) and the sector ranges the model tracks (seeded with a
/// position-dependent pattern and compared after every row).
pub struct FileSpec {
    pub sectors: u64,
    pub tracked: &'static [(u64, u64)],
}

/// An exported device.
pub struct DeviceSpec {
    pub addr: Addr,
    /// Index into the file table.
    pub file: usize,
    /// vblade `-o`: first sector of the window.
    pub offset: u64,
    /// vblade `-l`: window length; `None` = to the end of the file.
    pub length: Option<u64>,
    pub read_only: bool,
    pub durability: Durability,
    pub direct_io: bool,
    /// Queue length, advertised as the AoE buffer count.
    pub queue_length: u16,
    pub model: &'static str,
    pub serial: &'static str,
}

// ---------------------------------------------------------------------------------------------
// Rows.

/// One ATA request. `lba` is the sector the target must address (for LBA28 the encoder adds
/// Linux's 0xE0 in byte 3; a [`Tweak::LbaJunk`] adds more).
#[derive(Clone, Copy, Debug)]
pub struct Ata {
    pub cmd: AtaCommand,
    pub lba48: bool,
    pub lba: u64,
    pub count: u8,
    pub feature: u8,
    /// Sectors of payload actually sent (writes).
    pub payload_sectors: u8,
    /// Which write pattern the payload is.
    pub seed: u8,
}

impl Ata {
    /// Sends only `sectors` sectors of payload (a short write).
    pub const fn short(mut self, sectors: u8) -> Req {
        self.payload_sectors = sectors;
        Req::Ata(self)
    }

    fn is_write(&self) -> bool {
        matches!(
            self.cmd,
            AtaCommand::WriteSectors | AtaCommand::WriteSectorsExt
        )
    }

    fn payload(&self) -> Vec<u8> {
        pattern(
            0x1000 + u64::from(self.seed),
            0,
            usize::from(self.payload_sectors) * 512,
        )
    }
}

/// What the initiator sends (or, for the last two, what the test driver does).
#[derive(Clone, Copy, Debug)]
pub enum Req {
    Ata(Ata),
    Config(ConfigCommand, &'static [u8]),
    Mask(MacMaskCommand, &'static [(DirectiveCommand, MacAddr)]),
    /// One edit with 255 directives of this command: host A and 254 generated MACs.
    MaskFill(DirectiveCommand),
    Reserve(ReserveCommand, &'static [MacAddr]),
    /// `Target::advertisement` for the addressed device (not a request).
    Advertise,
    /// Drop the `LocalTarget`, reopen files and engine, load the state directory again.
    Restart,
}

/// A change made to the encoded frame before it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tweak {
    None,
    /// Set the R (response) flag.
    Response,
    /// Replace the AoE version nibble.
    Version(u8),
    /// Replace the AoE command byte.
    Command(u8),
    /// Replace the Ethernet type.
    Ethertype(u16),
    /// OR these bits into the six LBA bytes as sent.
    LbaJunk(u64),
}

/// What an ATA reply carries besides status and error.
#[derive(Clone, Copy, Debug)]
pub enum AtaReply {
    /// Header only (padded to 60 bytes).
    Header,
    /// `count × 512` bytes equal to the file at the addressed sectors.
    Data,
    /// A full IDENTIFY DEVICE block with these capacities (words 60-61, 100-103).
    Identify { lba28: u32, lba48: u64 },
    /// The sector count register of the reply.
    Count(u8),
    /// Exactly one sector of these bytes, and these LBA mid and high registers (SMART).
    Sector {
        mid: u8,
        high: u8,
        data: &'static [u8; 512],
    },
}

/// A Mac Mask List reply.
#[derive(Clone, Copy, Debug)]
pub enum MaskReply {
    /// MError 0 and exactly these entries (any order).
    List(&'static [MacAddr]),
    /// MError 0 and this many distinct entries.
    Count(u8),
    /// This MError, Dir Count = index of the failing directive.
    Error(MacMaskError, u8),
}

/// The expected answer.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// No reply at all.
    Silence,
    /// One reply with the E flag and this code.
    AoeError(AoeError),
    /// One ATA reply with exactly these status and error bytes.
    Ata {
        status: u8,
        error: u8,
        reply: AtaReply,
    },
    /// One Query Config reply: this sector count and string; buffer count = the device's
    /// queue length, firmware [`FIRMWARE_VERSION`], AoE version 1, the request's CCmd.
    Config {
        sectors: u8,
        string: &'static [u8],
    },
    Mask(MaskReply),
    /// One Reserve/Release reply listing exactly these MACs (any order).
    Reserve(&'static [MacAddr]),
    /// One Query Config reply from each listed device (and no other), each with its string.
    Discovery {
        sectors: u8,
        devices: &'static [(Addr, &'static [u8])],
    },
    /// An unsolicited Query Config response: tag 0, to broadcast, CCmd 0.
    Advertisement {
        sectors: u8,
        string: &'static [u8],
    },
}

/// What the row does to storage and state, beyond the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// No storage I/O, no state change; every file unchanged.
    Unchanged,
    /// One read I/O; every file unchanged.
    Read,
    /// One write I/O: the payload is at the addressed sectors of the device's window,
    /// everything else unchanged.
    Written,
    /// One flush I/O (`fdatasync`); every file unchanged.
    Flushed,
    /// The device's AoE state changed and was saved: the state file exists, decodes to the
    /// live state, and no temporary file is left. No storage I/O.
    Saved,
}

/// One row of the conformance table.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub name: &'static str,
    pub from: MacAddr,
    pub port: Port,
    pub to: Addr,
    pub req: Req,
    pub tweak: Tweak,
    pub expect: Expect,
    pub effect: Effect,
}

/// A table row.
pub const fn row(
    name: &'static str,
    from: MacAddr,
    port: Port,
    to: Addr,
    req: Req,
    expect: Expect,
    effect: Effect,
) -> Step {
    Step {
        name,
        from,
        port,
        to,
        req,
        tweak: Tweak::None,
        expect,
        effect,
    }
}

impl Step {
    /// The same row with the frame changed before sending.
    pub const fn with(mut self, tweak: Tweak) -> Step {
        self.tweak = tweak;
        self
    }
}

// Builders for the table.

const fn rw(cmd: AtaCommand, lba48: bool, lba: u64, count: u8, seed: u8, write: bool) -> Ata {
    Ata {
        cmd,
        lba48,
        lba,
        count,
        feature: 0,
        payload_sectors: if write { count } else { 0 },
        seed,
    }
}

/// READ SECTORS (0x20, LBA28).
pub const fn read28(lba: u64, count: u8) -> Req {
    Req::Ata(rw(AtaCommand::ReadSectors, false, lba, count, 0, false))
}
/// READ SECTORS EXT (0x24, LBA48).
pub const fn read48(lba: u64, count: u8) -> Req {
    Req::Ata(rw(AtaCommand::ReadSectorsExt, true, lba, count, 0, false))
}
/// WRITE SECTORS (0x30, LBA28) with `count` sectors of pattern `seed`.
pub const fn write28(lba: u64, count: u8, seed: u8) -> Req {
    Req::Ata(write28_ata(lba, count, seed))
}
/// WRITE SECTORS EXT (0x34, LBA48) with `count` sectors of pattern `seed`.
pub const fn write48(lba: u64, count: u8, seed: u8) -> Req {
    Req::Ata(rw(
        AtaCommand::WriteSectorsExt,
        true,
        lba,
        count,
        seed,
        true,
    ))
}
/// The [`Ata`] of a WRITE SECTORS, to make a short write with [`Ata::short`].
pub const fn write28_ata(lba: u64, count: u8, seed: u8) -> Ata {
    rw(AtaCommand::WriteSectors, false, lba, count, seed, true)
}
/// An ATA command without data, with this sector count and feature.
pub const fn ata(cmd: AtaCommand, count: u8, feature: u8) -> Req {
    Req::Ata(Ata {
        cmd,
        lba48: false,
        lba: 0,
        count,
        feature,
        payload_sectors: 0,
        seed: 0,
    })
}
pub const fn cfg(cmd: ConfigCommand, string: &'static [u8]) -> Req {
    Req::Config(cmd, string)
}
pub const fn mask(cmd: MacMaskCommand, directives: &'static [(DirectiveCommand, MacAddr)]) -> Req {
    Req::Mask(cmd, directives)
}
pub const fn rsv(cmd: ReserveCommand, macs: &'static [MacAddr]) -> Req {
    Req::Reserve(cmd, macs)
}

pub const fn ata_reply(status: u8, error: u8, reply: AtaReply) -> Expect {
    Expect::Ata {
        status,
        error,
        reply,
    }
}
pub const fn aoe(error: AoeError) -> Expect {
    Expect::AoeError(error)
}
pub const fn config(sectors: u8, string: &'static [u8]) -> Expect {
    Expect::Config { sectors, string }
}
pub const fn mask_list(macs: &'static [MacAddr]) -> Expect {
    Expect::Mask(MaskReply::List(macs))
}
pub const fn mask_count(count: u8) -> Expect {
    Expect::Mask(MaskReply::Count(count))
}
pub const fn mask_error(error: MacMaskError, dir_count: u8) -> Expect {
    Expect::Mask(MaskReply::Error(error, dir_count))
}
pub const fn reserve(macs: &'static [MacAddr]) -> Expect {
    Expect::Reserve(macs)
}
pub const fn discovery(sectors: u8, devices: &'static [(Addr, &'static [u8])]) -> Expect {
    Expect::Discovery { sectors, devices }
}
pub const fn advertisement(sectors: u8, string: &'static [u8]) -> Expect {
    Expect::Advertisement { sectors, string }
}

/// The 254 generated MACs [`Req::MaskFill`] uses besides `first`.
fn fill_macs(first: MacAddr) -> Vec<MacAddr> {
    let mut macs = vec![first];
    macs.extend((1..=254u8).map(|i| MacAddr([0x02, 0, 0, 0, 0x01, i])));
    macs
}

// ---------------------------------------------------------------------------------------------
// Data patterns.

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` bytes of pattern `stream`, as if starting at byte `start` of an endless stream: every
/// position differs, so data at a wrong offset never matches.
pub fn pattern(stream: u64, start: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut word = start / 8;
    let skip = usize::try_from(start % 8).expect("< 8");
    while out.len() < len + skip {
        out.extend_from_slice(&splitmix(stream << 40 ^ word).to_le_bytes());
        word += 1;
    }
    out.drain(..skip);
    out.truncate(len);
    out
}

/// The seed pattern of file `index` (what the file holds before any write).
pub fn seed_pattern(index: usize, start: u64, len: usize) -> Vec<u8> {
    pattern(index as u64, start, len)
}

// ---------------------------------------------------------------------------------------------
// The model of the backing files.

struct ModelFile {
    path: PathBuf,
    len: u64,
    /// (byte offset, expected bytes) of each tracked region.
    regions: Vec<(u64, Vec<u8>)>,
}

impl ModelFile {
    fn create(dir: &Path, index: usize, spec: &FileSpec) -> ModelFile {
        let path = dir.join(format!("disk{index}.img"));
        let file = std::fs::File::create(&path).unwrap();
        let len = spec.sectors * 512;
        file.set_len(len).unwrap();
        let regions = spec
            .tracked
            .iter()
            .map(|&(sector, count)| {
                let offset = sector * 512;
                let bytes = seed_pattern(index, offset, usize::try_from(count * 512).unwrap());
                file.write_all_at(&bytes, offset).unwrap();
                (offset, bytes)
            })
            .collect();
        file.sync_all().unwrap();
        ModelFile { path, len, regions }
    }

    fn region_mut(&mut self, offset: u64, len: usize) -> &mut [u8] {
        let end = offset + len as u64;
        for (start, bytes) in &mut self.regions {
            if *start <= offset && end <= *start + bytes.len() as u64 {
                let at = usize::try_from(offset - *start).unwrap();
                return &mut bytes[at..at + len];
            }
        }
        panic!(
            "{}: bytes {offset}..{end} are outside the tracked regions; track them in FILES",
            self.path.display()
        );
    }

    fn bytes(&mut self, offset: u64, len: usize) -> Vec<u8> {
        self.region_mut(offset, len).to_vec()
    }

    /// Reads every tracked region back with std and compares it with the model.
    fn verify(&self, step: &str) {
        let file = std::fs::File::open(&self.path).unwrap();
        assert_eq!(
            file.metadata().unwrap().len(),
            self.len,
            "[{step}] {} changed size",
            self.path.display()
        );
        for (offset, expected) in &self.regions {
            let mut actual = vec![0u8; expected.len()];
            file.read_exact_at(&mut actual, *offset).unwrap();
            if &actual != expected {
                let first = actual.iter().zip(expected).position(|(a, b)| a != b);
                let first = first.expect("differs somewhere") as u64 + offset;
                panic!(
                    "[{step}] {}: byte {first} (sector {}) differs from the model",
                    self.path.display(),
                    first / 512
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The world.

/// Which storage engine serves the exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Uring,
    /// io_uring, with every device that is neither `direct_io` nor huge (the sparse LBA48
    /// file) opened `resident` (copies through a locked mapping).
    UringResident,
    /// io_uring, with every device that is not `direct_io` opened `mapped_reads` (copies
    /// through a mapping that is not locked), and write-back writes copied through one.
    UringMapped,
    Sync,
}

/// What a run of the table produced: every reply of every row, and the final file contents.
#[derive(Debug, PartialEq, Eq)]
pub struct Transcript {
    pub replies: Vec<(&'static str, Vec<Vec<u8>>)>,
    pub files: Vec<Vec<u8>>,
}

struct World {
    kind: EngineKind,
    devices: &'static [DeviceSpec],
    files: Vec<ModelFile>,
    state_path: PathBuf,
    local: Option<LocalTarget>,
    // Last: removed after everything in it is closed.
    _dir: tempfile::TempDir,
}

impl World {
    fn new(kind: EngineKind, files: &[FileSpec], devices: &'static [DeviceSpec]) -> World {
        // A real file system (O_DIRECT, fdatasync, sparse files), not tmpfs.
        let dir = tempfile::Builder::new()
            .prefix("aoe-conformance-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let files = files
            .iter()
            .enumerate()
            .map(|(i, spec)| ModelFile::create(dir.path(), i, spec))
            .collect();
        let mut world = World {
            kind,
            devices,
            files,
            state_path: dir.path().join("state"),
            local: None,
            _dir: dir,
        };
        world.start();
        world
    }

    /// Opens the exports, the engine and the state directory, as the daemon does at start-up.
    fn start(&mut self) {
        let exports: Arc<[Export]> = self
            .devices
            .iter()
            .map(|d| {
                Export::open(&ExportSpec {
                    path: self.files[d.file].path.clone(),
                    offset_sectors: d.offset,
                    length_sectors: d.length,
                    read_only: d.read_only,
                    direct_io: d.direct_io,
                    durability: d.durability,
                    resident: self.kind == EngineKind::UringResident
                        && !d.direct_io
                        && self.files[d.file].len <= 1 << 30,
                    // Resident and mapped runs copy write-back writes through the mapping;
                    // the plain io_uring runs write them with pwritev2.
                    mapped_writes: matches!(
                        self.kind,
                        EngineKind::UringResident | EngineKind::UringMapped
                    ),
                    mapped_reads: self.kind == EngineKind::UringMapped && !d.direct_io,
                })
                .unwrap()
            })
            .collect();
        let kind = self.kind;
        let engine_exports = Arc::clone(&exports);
        let engine = move |arenas: &[Arc<Arena>]| -> Result<Engine, EngineError> {
            Ok(match kind {
                EngineKind::Uring | EngineKind::UringResident | EngineKind::UringMapped => {
                    Engine::Uring(UringEngine::with_arenas(
                        engine_exports,
                        arenas,
                        UringConfig::default(),
                    )?)
                }
                EngineKind::Sync => Engine::Sync(SyncEngine::with_arenas(
                    engine_exports,
                    arenas,
                    SYNC_QUEUE_DEPTH,
                )?),
            })
        };
        let state_dir = StateDir::open(&self.state_path).unwrap();
        let devices: Vec<_> = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let params = DeviceParams {
                    name: format!("e{}.{}", d.addr.0, d.addr.1),
                    shelf: d.addr.0,
                    slot: d.addr.1,
                    sectors: exports[i].sectors(),
                    read_only: d.read_only,
                    buffer_count: d.queue_length,
                    model: d.model.into(),
                    serial: d.serial.into(),
                    export: u16::try_from(i).unwrap(),
                    accept: Vec::new(),
                    deny: Vec::new(),
                    port_mask: u64::MAX,
                    broadcast: false,
                };
                let state = state_dir.load(d.addr.0, d.addr.1).unwrap();
                (Arc::new(params), Arc::new(SharedState::new(state)))
            })
            .collect();
        let target = Target::new(devices);
        let ports = [Port::Mtu1500.info(), Port::Mtu9000.info()];
        self.local = Some(LocalTarget::new(target, &ports, engine, state_dir).unwrap());
    }

    fn local(&self) -> &LocalTarget {
        self.local.as_ref().expect("started")
    }

    fn device(&self, addr: Addr) -> (usize, &'static DeviceSpec) {
        let index = self
            .devices
            .iter()
            .position(|d| d.addr == addr)
            .unwrap_or_else(|| panic!("no device at {addr:?}"));
        (index, &self.devices[index])
    }

    /// The target's index and parameters of the device at `addr`.
    fn target_device(&self, addr: Addr) -> (u16, Arc<DeviceParams>) {
        let target = self.local().target();
        (0..target.device_count())
            .map(|i| u16::try_from(i).unwrap())
            .map(|i| (i, Arc::clone(target.params(i))))
            .find(|(_, p)| (p.shelf, p.slot) == (addr.0, addr.1))
            .unwrap_or_else(|| panic!("target has no device at {addr:?}"))
    }

    fn states(&self) -> Vec<DeviceState> {
        let target = self.local().target();
        (0..target.device_count())
            .map(|i| target.shared_state(u16::try_from(i).unwrap()).snapshot().0)
            .collect()
    }

    /// Storage operations so far: data I/Os (kernel I/Os other than data syncs, and copies
    /// through a mapping), and data syncs.
    fn ios(&self) -> (u64, u64) {
        let stats = self.local().engine().stats();
        (stats.ios - stats.syncs + stats.mapped, stats.syncs)
    }

    fn verify_files(&self, step: &str) {
        for file in &self.files {
            file.verify(step);
        }
    }

    /// The model bytes of `count` sectors at `lba` of the device at `addr`.
    fn device_bytes(&mut self, addr: Addr, lba: u64, count: u8) -> Vec<u8> {
        let (_, spec) = self.device(addr);
        let offset = (spec.offset + lba) * 512;
        self.files[spec.file].bytes(offset, usize::from(count) * 512)
    }

    fn run(&mut self, index: usize, step: &Step) -> Vec<Vec<u8>> {
        let tag = tag_for(index);
        let mut replies = Vec::new();
        match step.req {
            Req::Restart => {
                self.local = None;
                self.start();
            }
            Req::Advertise => {
                let (device, _) = self.target_device(step.to);
                let target = self.local().target();
                // A second view of the same devices and shared state, as another worker has.
                let mut view = Target::new((0..target.device_count()).map(|i| {
                    let i = u16::try_from(i).unwrap();
                    (
                        Arc::clone(target.params(i)),
                        Arc::clone(target.shared_state(i)),
                    )
                }));
                let dst = view.params(device).advertisement_targets()[0];
                let mut buf = vec![0u8; CHUNK_SIZE];
                let len = view.advertisement(device, &step.port.info(), dst, &mut buf);
                buf.truncate(len);
                replies.push(buf);
            }
            _ => {
                let frame = encode(step, tag);
                let states = self.states();
                let ios = self.ios();
                let local = self.local.as_mut().expect("started");
                local
                    .process(&frame, &step.port.info(), &mut replies)
                    .unwrap_or_else(|e| panic!("[{}] process failed: {e}", step.name));
                self.check_replies(step, tag, &replies);
                self.check_effect(step, &states, ios);
            }
        }
        if matches!(step.req, Req::Restart | Req::Advertise) {
            self.check_replies(step, tag, &replies);
        }
        self.verify_files(step.name);
        replies
    }

    fn check_effect(
        &mut self,
        step: &Step,
        states_before: &[DeviceState],
        (ios_before, syncs_before): (u64, u64),
    ) {
        let name = step.name;
        let (ios, syncs) = self.ios();
        let (ios, syncs) = (ios - ios_before, syncs - syncs_before);
        let expected_ios = match step.effect {
            Effect::Unchanged | Effect::Saved | Effect::Flushed => 0,
            Effect::Read | Effect::Written => 1,
        };
        assert_eq!(ios, expected_ios, "[{name}] storage I/Os issued");
        // A FLUSH is one data sync; a write of a `sync` device at most one (the io_uring
        // engine's group sync; the oracle writes with `RWF_DSYNC` instead).
        match step.effect {
            Effect::Flushed => assert_eq!(syncs, 1, "[{name}] data syncs"),
            Effect::Written => assert!(syncs <= 1, "[{name}] {syncs} data syncs"),
            _ => assert_eq!(syncs, 0, "[{name}] data syncs"),
        }
        let states = self.states();
        if step.effect == Effect::Saved {
            let (device, params) = self.target_device(step.to);
            assert_ne!(
                states[usize::from(device)],
                states_before[usize::from(device)],
                "[{name}] state should change"
            );
            let dir = StateDir::open(&self.state_path).unwrap();
            assert!(
                dir.file_for(params.shelf, params.slot).is_file(),
                "[{name}] no state file"
            );
            assert_eq!(
                dir.load(params.shelf, params.slot).unwrap(),
                states[usize::from(device)],
                "[{name}] saved state differs from the live state"
            );
            let leftovers: Vec<_> = std::fs::read_dir(&self.state_path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".state"))
                .collect();
            assert!(leftovers.is_empty(), "[{name}] left behind: {leftovers:?}");
        } else {
            assert_eq!(states, states_before, "[{name}] AoE state changed");
        }
        if step.effect == Effect::Written {
            let Req::Ata(ata) = step.req else {
                panic!("[{name}] only an ATA write can write")
            };
            assert!(ata.is_write(), "[{name}] only an ATA write can write");
            let (_, spec) = self.device(step.to);
            let offset = (spec.offset + ata.lba) * 512;
            let data = ata.payload();
            let len = usize::from(ata.count) * 512;
            self.files[spec.file]
                .region_mut(offset, len)
                .copy_from_slice(&data[..len]);
        }
    }

    fn check_replies(&mut self, step: &Step, tag: u32, replies: &[Vec<u8>]) {
        let name = step.name;
        let port = step.port.info();
        let mut parsed = Vec::new();
        for frame in replies {
            let reply = Reply::parse(frame)
                .unwrap_or_else(|| panic!("[{name}] reply is not an AoE response: {frame:02x?}"));
            assert!(frame.len() >= 60, "[{name}] runt reply");
            assert!(
                frame.len() - 14 <= usize::from(port.mtu),
                "[{name}] reply of {} bytes exceeds the MTU",
                frame.len()
            );
            assert_eq!(reply.aoe.version, AOE_VERSION, "[{name}] AoE version");
            assert_eq!(reply.src, port.mac, "[{name}] reply source MAC");
            if !matches!(step.req, Req::Advertise) {
                assert_eq!(reply.aoe.tag, tag, "[{name}] tag not echoed");
                assert_eq!(reply.dst, step.from, "[{name}] reply destination");
                let sent = encode(step, tag);
                let command = AoePacket::new_unchecked(&sent[AOE_OFFSET..]).command();
                assert_eq!(reply.aoe.command, command, "[{name}] command not echoed");
            }
            if !step.to.is_broadcast() {
                assert_eq!(
                    Addr(reply.aoe.major, reply.aoe.minor),
                    step.to,
                    "[{name}] reply address"
                );
            }
            parsed.push(reply);
        }
        let one = || {
            assert_eq!(parsed.len(), 1, "[{name}] expected exactly one reply");
            parsed[0]
        };
        match step.expect {
            Expect::Silence => assert!(parsed.is_empty(), "[{name}] expected silence"),
            Expect::AoeError(error) => {
                assert_eq!(one().error(), Some(error), "[{name}] AoE error");
            }
            Expect::Ata {
                status,
                error,
                reply,
            } => {
                let frame = one();
                self.check_ata(step, &frame, status, error, reply);
            }
            Expect::Config { sectors, string } => {
                let reply = one();
                self.check_config(step, &reply, sectors, string);
            }
            Expect::Mask(expected) => check_mask(name, &one(), expected),
            Expect::Reserve(macs) => {
                let reply = one();
                assert_eq!(reply.error(), None, "[{name}] AoE error");
                let (repr, packet) = reply.reserve().expect("Reserve/Release reply");
                let Req::Reserve(command, _) = step.req else {
                    panic!("[{name}] Reserve expectation for a non-reserve request")
                };
                assert_eq!(repr.command, command, "[{name}] RCmd not echoed");
                assert_eq!(
                    sorted(packet.macs().collect()),
                    sorted(macs.to_vec()),
                    "[{name}]"
                );
            }
            Expect::Discovery { sectors, devices } => {
                let mut answered: Vec<Addr> = parsed
                    .iter()
                    .map(|r| Addr(r.aoe.major, r.aoe.minor))
                    .collect();
                answered.sort();
                let mut wanted: Vec<Addr> = devices.iter().map(|(a, _)| *a).collect();
                wanted.sort();
                assert_eq!(answered, wanted, "[{name}] devices that answered");
                for reply in &parsed {
                    let addr = Addr(reply.aoe.major, reply.aoe.minor);
                    let string = devices.iter().find(|(a, _)| *a == addr).unwrap().1;
                    let step = Step { to: addr, ..*step };
                    self.check_config(&step, reply, sectors, string);
                }
            }
            Expect::Advertisement { sectors, string } => {
                let reply = one();
                assert_eq!(reply.aoe.tag, 0, "[{name}] advertisement tag");
                assert_eq!(reply.dst, MacAddr::BROADCAST, "[{name}] advertisement dst");
                assert_eq!(reply.aoe.command, AoeCommand::QueryConfig, "[{name}]");
                self.check_config(step, &reply, sectors, string);
            }
        }
    }

    fn check_ata(&mut self, step: &Step, reply: &Reply<'_>, status: u8, error: u8, kind: AtaReply) {
        let name = step.name;
        assert_eq!(reply.error(), None, "[{name}] unexpected AoE error");
        let (repr, data) = reply.ata().expect("ATA reply");
        assert_eq!(
            (repr.cmd_status, repr.err_feature),
            (status, error),
            "[{name}] ATA status/error"
        );
        let frame_len = ATA_DATA_OFFSET + data.len();
        let Req::Ata(ata) = step.req else {
            panic!("[{name}] ATA expectation for a non-ATA request")
        };
        match kind {
            AtaReply::Header => assert_eq!(frame_len, 60, "[{name}] header-only reply"),
            AtaReply::Data => {
                let len = usize::from(ata.count) * 512;
                assert_eq!(data.len(), len, "[{name}] read data length");
                let expected = self.device_bytes(step.to, ata.lba, ata.count);
                assert!(data == expected, "[{name}] read data differs from the file");
            }
            AtaReply::Identify { lba28, lba48 } => {
                assert_eq!(data.len(), 512, "[{name}] IDENTIFY length");
                let (_, spec) = self.device(step.to);
                check_identify(name, data, spec, lba28, lba48);
            }
            AtaReply::Count(count) => {
                assert_eq!(frame_len, 60, "[{name}] header-only reply");
                assert_eq!(repr.sector_count, count, "[{name}] sector count");
            }
            AtaReply::Sector {
                mid,
                high,
                data: expected,
            } => {
                assert_eq!(data, expected.as_slice(), "[{name}] sector");
                let bytes = repr.lba.to_le_bytes();
                assert_eq!((bytes[1], bytes[2]), (mid, high), "[{name}] LBA mid/high");
            }
        }
    }

    fn check_config(&self, step: &Step, reply: &Reply<'_>, sectors: u8, string: &[u8]) {
        let name = step.name;
        assert_eq!(reply.error(), None, "[{name}] AoE error");
        let qc = reply.query_config().expect("Query Config reply");
        let (_, params) = self.target_device(step.to);
        assert_eq!(
            qc.buffer_count, params.buffer_count,
            "[{name}] buffer count"
        );
        assert_eq!(qc.firmware_version, FIRMWARE_VERSION, "[{name}] firmware");
        assert_eq!(qc.sector_count, sectors, "[{name}] sector count");
        assert_eq!(qc.aoe_version, AOE_VERSION, "[{name}] AoE version");
        let command = match step.req {
            Req::Config(command, _) => command,
            _ => ConfigCommand::Read,
        };
        assert_eq!(qc.command, command, "[{name}] CCmd");
        assert!(
            qc.config_string == string,
            "[{name}] config string {:?}, expected {:?}",
            String::from_utf8_lossy(qc.config_string),
            String::from_utf8_lossy(string)
        );
    }
}

fn check_mask(name: &str, reply: &Reply<'_>, expected: MaskReply) {
    assert_eq!(reply.error(), None, "[{name}] AoE error");
    let (repr, packet) = reply.mac_mask().expect("Mac Mask List reply");
    match expected {
        MaskReply::Error(error, dir_count) => {
            assert_eq!(repr.error, Some(error), "[{name}] MError");
            assert_eq!(repr.dir_count, dir_count, "[{name}] Dir Count");
        }
        MaskReply::List(_) | MaskReply::Count(_) => {
            assert_eq!(repr.error, None, "[{name}] MError");
            let directives: Vec<_> = packet.directives().collect();
            assert!(
                directives
                    .iter()
                    .all(|d| d.command == DirectiveCommand::None),
                "[{name}] listed entries carry DCmd 0"
            );
            let macs = sorted(directives.iter().map(|d| d.mac).collect());
            match expected {
                MaskReply::List(list) => assert_eq!(macs, sorted(list.to_vec()), "[{name}]"),
                _ => {
                    let mut unique = macs.clone();
                    unique.dedup();
                    assert_eq!(unique.len(), macs.len(), "[{name}] duplicate entries");
                }
            }
            if let MaskReply::Count(count) = expected {
                assert_eq!(repr.dir_count, count, "[{name}] Dir Count");
            }
        }
    }
}

/// Reads an ATA string: each word holds two characters, the first in the high byte.
fn ata_string(block: &[u8], words: std::ops::Range<usize>) -> String {
    let bytes: Vec<u8> = block[2 * words.start..2 * words.end]
        .chunks(2)
        .flat_map(|w| [w[1], w[0]])
        .collect();
    String::from_utf8(bytes).unwrap().trim_end().to_owned()
}

fn check_identify(name: &str, block: &[u8], spec: &DeviceSpec, lba28: u32, lba48: u64) {
    let word = |i: usize| u16::from_le_bytes([block[2 * i], block[2 * i + 1]]);
    assert_eq!(ata_string(block, 27..47), spec.model, "[{name}] model");
    assert_eq!(ata_string(block, 10..20), spec.serial, "[{name}] serial");
    assert_eq!(
        ata_string(block, 23..27),
        env!("CARGO_PKG_VERSION"),
        "[{name}] firmware"
    );
    let words_60_61 = u32::from(word(60)) | u32::from(word(61)) << 16;
    assert_eq!(words_60_61, lba28, "[{name}] LBA28 capacity");
    let words_100_103 = (100..104)
        .rev()
        .fold(0u64, |v, i| v << 16 | u64::from(word(i)));
    assert_eq!(words_100_103, lba48, "[{name}] LBA48 capacity");
    assert_ne!(word(49) & 1 << 9, 0, "[{name}] LBA supported");
    for w in [83, 86] {
        for bit in [10, 12, 13] {
            assert_ne!(word(w) & 1 << bit, 0, "[{name}] word {w} bit {bit}");
        }
    }
    assert_eq!(word(83) >> 14, 0b01, "[{name}] word 83 validity bits");
    assert_eq!(block[510], 0xA5, "[{name}] integrity signature");
    let sum = block.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    assert_eq!(sum, 0, "[{name}] integrity checksum");
}

fn sorted(mut macs: Vec<MacAddr>) -> Vec<MacAddr> {
    macs.sort();
    macs
}

/// A distinct, non-zero tag per row, with every byte varying.
fn tag_for(index: usize) -> u32 {
    let tag = u32::try_from(index + 1).unwrap().wrapping_mul(0x9E37_79B9);
    assert_ne!(tag, 0);
    tag
}

/// Encodes a row's request with the initiator encoders, then applies its tweak.
pub fn encode(step: &Step, tag: u32) -> Vec<u8> {
    let mut buf = vec![0u8; CHUNK_SIZE];
    let route = Route {
        dst: if step.to.is_broadcast() {
            MacAddr::BROADCAST
        } else {
            step.port.info().mac
        },
        src: step.from,
        vlan_tci: None,
        shelf: step.to.0,
        slot: step.to.1,
    };
    let len = match step.req {
        Req::Ata(a) => {
            let cmd = AtaCmd {
                command: a.cmd,
                lba48: a.lba48,
                lba: a.lba,
                count: a.count,
                feature: a.feature,
            };
            frames::ata(&mut buf, &route, tag, &cmd, &a.payload())
        }
        Req::Config(command, string) => {
            frames::query_config(&mut buf, &route, tag, command, string)
        }
        Req::Mask(command, directives) => {
            let directives: Vec<_> = directives
                .iter()
                .map(|&(command, mac)| DirectiveRepr { command, mac })
                .collect();
            frames::mac_mask(&mut buf, &route, tag, command, &directives)
        }
        Req::MaskFill(command) => {
            let directives: Vec<_> = fill_macs(step.from)
                .into_iter()
                .map(|mac| DirectiveRepr { command, mac })
                .collect();
            frames::mac_mask(&mut buf, &route, tag, MacMaskCommand::Edit, &directives)
        }
        Req::Reserve(command, macs) => frames::reserve(&mut buf, &route, tag, command, macs),
        Req::Advertise | Req::Restart => return Vec::new(),
    };
    buf.truncate(len);
    match step.tweak {
        Tweak::None => {}
        Tweak::Response => AoePacket::new_unchecked(&mut buf[AOE_OFFSET..]).set_response(true),
        Tweak::Version(v) => AoePacket::new_unchecked(&mut buf[AOE_OFFSET..]).set_version(v),
        Tweak::Command(c) => {
            AoePacket::new_unchecked(&mut buf[AOE_OFFSET..]).set_command(AoeCommand::from(c));
        }
        Tweak::Ethertype(t) => EthernetFrame::new_unchecked(&mut buf[..]).set_ethertype(t),
        Tweak::LbaJunk(bits) => {
            let mut ata = AtaPacket::new_unchecked(&mut buf[ATA_OFFSET..]);
            let lba = ata.lba();
            ata.set_lba(lba | bits);
        }
    }
    buf
}

/// Runs every row against a fresh world on `kind`, checking each; returns the transcript.
pub fn run_table(
    kind: EngineKind,
    files: &[FileSpec],
    devices: &'static [DeviceSpec],
    steps: &[Step],
) -> Transcript {
    let mut world = World::new(kind, files, devices);
    let mut replies = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        replies.push((step.name, world.run(index, step)));
    }
    let files = world
        .files
        .iter()
        .map(|f| f.regions.iter().flat_map(|(_, b)| b.clone()).collect())
        .collect();
    let transcript = Transcript { replies, files };
    // Windowed exports: the sentinel outside every window is still the seed pattern.
    for (index, spec) in world.devices.iter().enumerate() {
        let file = &world.files[spec.file];
        let len = spec.length.map_or(file.len, |l| (spec.offset + l) * 512);
        let handle = std::fs::File::open(&file.path).unwrap();
        for (start, end) in [(0, spec.offset * 512), (len, file.len)] {
            for (offset, bytes) in &file.regions {
                let from = start.max(*offset);
                let to = end.min(*offset + bytes.len() as u64);
                if from < to {
                    let mut actual = vec![0u8; usize::try_from(to - from).unwrap()];
                    handle.read_exact_at(&mut actual, from).unwrap();
                    let seed = seed_pattern(spec.file, from, actual.len());
                    assert!(
                        actual == seed,
                        "device {index}: bytes {from}..{to} outside the window changed"
                    );
                }
            }
        }
    }
    transcript
}

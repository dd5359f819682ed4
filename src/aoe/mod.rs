//! AoE/ATA target semantics, sans-IO: a request frame in, storage operations and replies out.
//!
//! The dataplane receives a frame into a buffer it owns, asks [`Target::addressed`] which
//! exported devices the frame is for, and calls [`Target::handle`] once per device. The reply is
//! built **in place** in the same buffer (so a read reply can be the very frame the request
//! arrived in, and the disk can read straight into it). `handle` returns an [`Outcome`]:
//!
//! - [`Outcome::Drop`]: say nothing (responses, wrong version, masked or denied initiators,
//!   a Query Config test that does not match, anything not addressed to us);
//! - [`Outcome::Reply`]: `buf[..len]` is a complete reply; when `persist` is set the device's
//!   changeable state (config string, mask, reservation) changed and must be saved before the
//!   reply is sent;
//! - [`Outcome::Io`]: storage work is needed first. The caller performs the [`IoPlan`] on the
//!   export (reading into or writing from `buf[plan.data_offset..][..plan.byte_len()]`), then
//!   calls [`Target::complete`] which finishes the reply.
//!
//! Nothing here does I/O, reads a clock or allocates after construction. Bounds: every loop
//! over peer input is bounded by a one-byte count field (≤ 255 directives or MACs).
//!
//! Range safety: an [`IoPlan`] never reaches past the device's last sector; the check uses
//! `checked_add` and compares with the capacity (a plan is only created after it passes).

mod ata;
mod control;
pub mod persist;
mod request;
pub mod state;

use std::sync::Arc;

/// Zero-pads a reply to the Ethernet minimum; returns the padded length.
use crate::wire::pad_to_min as pad;
use crate::wire::{
    AoeCommand, AoeError, AoePacket, EthernetFrame, MacAddr, AOE_HEADER_LEN, SHELF_BROADCAST,
    SLOT_BROADCAST,
};

pub use request::Request;
pub use state::{DeviceState, MacList, SharedState};

/// Firmware version reported in Query Config replies and IDENTIFY.
pub const FIRMWARE_VERSION: u16 = 0x0001;
pub use crate::wire::MIN_FRAME_LEN;
/// Smallest buffer the target works in: a Query Config reply with the longest string.
pub const BUFFER_LEN_MIN: usize = crate::wire::VLAN_HEADER_LEN
    + AOE_HEADER_LEN
    + crate::wire::QUERY_CONFIG_HEADER_LEN
    + state::CONFIG_STRING_MAX;

/// Index of a device inside one [`Target`].
pub type DeviceIndex = u16;

/// Immutable description of one exported device.
#[derive(Debug, Clone)]
pub struct DeviceParams {
    /// Name used in logs and for the state file.
    pub name: String,
    /// AoE major address.
    pub shelf: u16,
    /// AoE minor address.
    pub slot: u8,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Writes are refused with ATA ABRT.
    pub read_only: bool,
    /// Advertised AoE buffer count (outstanding requests an initiator may send).
    pub buffer_count: u16,
    /// IDENTIFY model string.
    pub model: String,
    /// IDENTIFY serial string.
    pub serial: String,
    /// Index of the backing export in the storage engine.
    pub export: u16,
    /// When non-empty, only these initiators are served (sorted).
    pub accept: Vec<MacAddr>,
    /// Initiators never served, checked after `accept` (sorted).
    pub deny: Vec<MacAddr>,
    /// Bit `i` set: the device is exported on port `i`.
    pub port_mask: u64,
    /// Advertise by broadcast even when `accept` is non-empty.
    pub broadcast: bool,
}

impl DeviceParams {
    /// Device `shelf.slot` (named `e{shelf}.{slot}`) of `sectors` sectors on export `export`:
    /// writable, 16 buffers, open to every initiator on every port, generic IDENTIFY strings.
    /// Tests, benches and the fuzzer change what they need with `..DeviceParams::new(..)`.
    pub fn new(shelf: u16, slot: u8, sectors: u64, export: u16) -> DeviceParams {
        DeviceParams {
            name: format!("e{shelf}.{slot}"),
            shelf,
            slot,
            sectors,
            read_only: false,
            buffer_count: 16,
            model: "aoe-xdp".into(),
            serial: format!("aoe-xdp-{shelf}-{slot}"),
            export,
            accept: Vec::new(),
            deny: Vec::new(),
            port_mask: u64::MAX,
            broadcast: false,
        }
    }

    /// True when the static ACLs allow `src`.
    pub fn acl_allows(&self, src: MacAddr) -> bool {
        let accepted = self.accept.is_empty() || self.accept.binary_search(&src).is_ok();
        accepted && self.deny.binary_search(&src).is_err()
    }

    /// Where the start-up advertisement goes: broadcast, or each accepted MAC.
    pub fn advertisement_targets(&self) -> &[MacAddr] {
        if self.accept.is_empty() || self.broadcast {
            std::slice::from_ref(&MacAddr::BROADCAST)
        } else {
            &self.accept
        }
    }
}

/// The network port a frame arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// Index of the port (bit in [`DeviceParams::port_mask`]).
    pub index: u8,
    /// Our MAC address on this port: the source of every reply.
    pub mac: MacAddr,
    /// The port's MTU, which bounds the sectors per ATA command.
    pub mtu: u16,
}

impl PortInfo {
    /// Sectors one ATA command may carry on this port: `(MTU − 36) / 512`, as the Linux
    /// initiator and vblade compute it.
    pub fn max_sectors(&self) -> u8 {
        // The headers as `struct aoe_hdr` + `aoe_atahdr` in Linux count them (36 bytes).
        let sectors = usize::from(self.mtu).saturating_sub(crate::wire::ATA_FRAME_HEADER_LEN)
            / crate::wire::SECTOR_SIZE;
        u8::try_from(sectors.min(255)).unwrap_or(u8::MAX)
    }
}

/// Which direction a storage operation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// Read sectors into the reply frame.
    Read,
    /// Write sectors from the request frame.
    Write,
    /// Make all acknowledged writes durable.
    Flush,
}

/// A storage operation the target needs before it can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoPlan {
    /// Device the request was for.
    pub device: DeviceIndex,
    /// Export index in the storage engine.
    pub export: u16,
    /// What to do.
    pub kind: IoKind,
    /// First sector, relative to the export's window.
    pub sector: u64,
    /// Number of sectors (0 for a flush).
    pub count: u16,
    /// Offset in the frame buffer where the data starts (reads land here; writes come from here).
    pub data_offset: usize,
}

impl IoPlan {
    /// Bytes moved by this operation.
    pub fn byte_len(&self) -> usize {
        usize::from(self.count) * crate::wire::SECTOR_SIZE
    }
}

/// How a storage operation failed, as the ATA layer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoFailure {
    /// The medium returned an error (EIO and friends): ATA UNC.
    Media,
    /// Anything else: ATA ABRT.
    Aborted,
}

/// What the caller must do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send nothing.
    Drop,
    /// Send `buf[..len]`; when `persist` is set, save the device state first.
    Reply {
        /// Length of the reply, padded to at least [`MIN_FRAME_LEN`].
        len: usize,
        /// The device's persistent state changed.
        persist: bool,
    },
    /// Perform the storage operation, then call [`Target::complete`].
    Io(IoPlan),
}

/// Per-device counters kept by one worker (not shared; the stats layer sums them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceCounters {
    /// ATA reads answered.
    pub read_cmds: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// ATA writes answered.
    pub write_cmds: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Other ATA commands and AoE control commands.
    pub other_cmds: u64,
    /// ATA commands answered with an error status.
    pub ata_errors: u64,
    /// Requests answered with an AoE error.
    pub proto_errors: u64,
    /// Requests dropped by the mask list or ACLs.
    pub dropped: u64,
}

struct Device {
    params: Arc<DeviceParams>,
    shared: Arc<SharedState>,
    /// Private copy of `shared`'s state, valid for `generation`.
    cache: DeviceState,
    generation: u64,
    counters: DeviceCounters,
}

/// The AoE target of one worker: every exported device, with a private view of shared state.
pub struct Target {
    /// Sorted by (shelf, slot); unique.
    devices: Vec<Device>,
}

impl Target {
    /// Creates a target over `devices`; (shelf, slot) pairs must be unique.
    pub fn new(devices: impl IntoIterator<Item = (Arc<DeviceParams>, Arc<SharedState>)>) -> Self {
        let mut devices: Vec<Device> = devices
            .into_iter()
            .map(|(params, shared)| {
                let (cache, generation) = shared.snapshot();
                Device {
                    params,
                    shared,
                    cache,
                    generation,
                    counters: DeviceCounters::default(),
                }
            })
            .collect();
        devices.sort_by_key(|d| (d.params.shelf, d.params.slot));
        for pair in devices.windows(2) {
            let (a, b) = (&pair[0].params, &pair[1].params);
            assert!(
                (a.shelf, a.slot) != (b.shelf, b.slot),
                "duplicate AoE address e{}.{}",
                a.shelf,
                a.slot
            );
        }
        assert!(devices.len() <= usize::from(DeviceIndex::MAX));
        Target { devices }
    }

    /// Number of devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// The parameters of device `index`.
    pub fn params(&self, index: DeviceIndex) -> &Arc<DeviceParams> {
        &self.devices[usize::from(index)].params
    }

    /// The shared state of device `index` (for persisting it).
    pub fn shared_state(&self, index: DeviceIndex) -> &Arc<SharedState> {
        &self.devices[usize::from(index)].shared
    }

    /// This worker's counters for device `index`.
    pub fn counters(&self, index: DeviceIndex) -> &DeviceCounters {
        &self.devices[usize::from(index)].counters
    }

    /// The devices a received request is addressed to, on `port`. Only Query Config may use
    /// the broadcast addresses: an ATA command or a mask/reservation change is never fanned out
    /// to several devices.
    pub fn addressed(&self, request: &Request, port: &PortInfo) -> Addressed {
        let (major, minor) = (request.shelf, request.slot);
        let broadcast = major == SHELF_BROADCAST || minor == SLOT_BROADCAST;
        let (next, end) = if broadcast && request.command != AoeCommand::QueryConfig {
            (0, 0)
        } else if major == SHELF_BROADCAST {
            (0, self.devices.len())
        } else {
            let start = self.devices.partition_point(|d| d.params.shelf < major);
            let end = self.devices.partition_point(|d| d.params.shelf <= major);
            (start, end)
        };
        Addressed {
            next,
            end,
            shelf: major,
            slot: minor,
            port_bit: 1u64 << (port.index & 63),
        }
    }

    /// Iterates [`Addressed`] against this target.
    pub fn next_addressed(&self, addressed: &mut Addressed) -> Option<DeviceIndex> {
        while addressed.next < addressed.end {
            let index = addressed.next;
            addressed.next += 1;
            let params = &self.devices[index].params;
            let slot_ok = addressed.slot == SLOT_BROADCAST || addressed.slot == params.slot;
            let shelf_ok = addressed.shelf == SHELF_BROADCAST || addressed.shelf == params.shelf;
            if slot_ok && shelf_ok && params.port_mask & addressed.port_bit != 0 {
                return DeviceIndex::try_from(index).ok();
            }
        }
        None
    }

    /// Handles `request` for `device`, received on `port` into `buf` (its first
    /// `request.len()` bytes), building the reply in place. `buf` is the whole frame buffer: a
    /// reply may be longer than the request.
    pub fn handle(
        &mut self,
        device: DeviceIndex,
        request: &Request,
        buf: &mut [u8],
        port: &PortInfo,
    ) -> Outcome {
        let header = *request;
        assert!(header.len <= buf.len());
        assert!(buf.len() >= BUFFER_LEN_MIN, "frame buffer too small");
        let dev = &mut self.devices[usize::from(device)];
        dev.refresh();
        if !dev.params.acl_allows(header.src) || !dev.cache.mask_allows(header.src) {
            dev.counters.dropped += 1;
            return Outcome::Drop;
        }
        let ctx = Ctx {
            device,
            shelf: dev.params.shelf,
            slot: dev.params.slot,
            header,
            port: *port,
        };
        match header.command {
            AoeCommand::Ata => dev.handle_ata(&ctx, buf),
            AoeCommand::QueryConfig => dev.handle_query_config(&ctx, buf),
            AoeCommand::MacMaskList => dev.handle_mask(&ctx, buf),
            AoeCommand::ReserveRelease => dev.handle_reserve(&ctx, buf),
            AoeCommand::Unknown(_) => {
                dev.counters.proto_errors += 1;
                aoe_error(&ctx, buf, AoeError::UnrecognizedCommand)
            }
        }
    }

    /// Finishes the reply for a completed [`IoPlan`]; returns the reply length.
    pub fn complete(
        &mut self,
        buf: &mut [u8],
        plan: &IoPlan,
        result: Result<(), IoFailure>,
    ) -> usize {
        let dev = &mut self.devices[usize::from(plan.device)];
        dev.complete_io(buf, plan, result)
    }

    /// Builds an unsolicited Query Config response (an advertisement) for `device` on `port`
    /// to `dst` in `buf`; returns its length.
    pub fn advertisement(
        &mut self,
        device: DeviceIndex,
        port: &PortInfo,
        dst: MacAddr,
        buf: &mut [u8],
    ) -> usize {
        assert!(buf.len() >= BUFFER_LEN_MIN, "frame buffer too small");
        let dev = &mut self.devices[usize::from(device)];
        dev.refresh();
        dev.advertisement(port, dst, buf)
    }
}

/// Iterator state over the devices one frame is addressed to (see [`Target::addressed`]).
#[derive(Debug, Clone, Copy)]
pub struct Addressed {
    next: usize,
    end: usize,
    shelf: u16,
    slot: u8,
    port_bit: u64,
}

/// Everything a command handler needs to know about the request.
struct Ctx {
    device: DeviceIndex,
    /// The device's own AoE address: replies carry it, never the broadcast values.
    shelf: u16,
    slot: u8,
    header: Request,
    port: PortInfo,
}

impl Device {
    /// Brings the private state copy up to date when another worker changed it.
    fn refresh(&mut self) {
        if self.shared.generation() != self.generation {
            self.generation = self.shared.copy_into(&mut self.cache);
        }
    }

    /// Applies a change to the shared state and refreshes the private copy.
    fn update<R>(&mut self, change: impl FnOnce(&mut DeviceState) -> (R, bool)) -> (R, bool) {
        let before = self.shared.generation();
        let (result, generation) = self.shared.update(change);
        self.refresh();
        (result, generation != before)
    }
}

/// Turns the request in `buf` into a response header: swaps the addresses, sets the R flag,
/// clears the error and puts the device's own shelf.slot in the AoE address (a request to a
/// broadcast address is answered by each device under its own address: the Linux initiator
/// drops config responses from shelf 0xFFFF or slot 0xFF, and vblade does the same). The
/// command and tag stay as they were (the tag is echoed).
fn begin_reply(ctx: &Ctx, buf: &mut [u8]) {
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..ctx.header.eth_len]);
    eth.set_dst_addr(ctx.header.src);
    eth.set_src_addr(ctx.port.mac);
    let mut aoe = AoePacket::new_unchecked(&mut buf[ctx.header.eth_len..ctx.header.arg_offset()]);
    aoe.set_response(true);
    aoe.set_error(None);
    aoe.set_major(ctx.shelf);
    aoe.set_minor(ctx.slot);
}

/// Replies with an AoE error: the request's headers with the E flag and the error code.
fn aoe_error(ctx: &Ctx, buf: &mut [u8], error: AoeError) -> Outcome {
    begin_reply(ctx, buf);
    let mut aoe = AoePacket::new_unchecked(&mut buf[ctx.header.eth_len..ctx.header.arg_offset()]);
    aoe.set_error(Some(error));
    Outcome::Reply {
        len: pad(buf, ctx.header.arg_offset()),
        persist: false,
    }
}

#[cfg(test)]
mod tests;

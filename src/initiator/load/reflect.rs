//! The bare reflector: answers every AoE request from the frame it arrived in, storing nothing.
//! It measures what the machine (NIC or veth, XDP, AF_XDP, the initiator) can do with no
//! storage behind the target: the baseline `aoe-bench load` results are compared against.
//!
//! [`Reflection::reflect`] is pure: it turns a request frame into its reply in place. Reads
//! reply with `sector count × 512` bytes of whatever the frame buffer holds, writes with the
//! header only, other ATA commands with status DRDY; IDENTIFY gets a real block (so initiators
//! can size the device); Query Config gets buffer count, sector count and an empty config
//! string (a set is echoed but not kept; a test matches only the empty string); Mac Mask List,
//! Reserve/Release and vendor commands get AoE error 1 (unrecognized command).
//!
//! [`Reflector`] attaches the XDP program to an interface, binds an [`XskPort`] on each of its
//! RX queues and busy-polls them all from one thread (one core at 100%; an empty poll yields the
//! core to the threads that share it, as the target's worker does) until told to stop;
//! it detaches the program when dropped. It answers as many sectors as the MTU carries (17 at
//! MTU 9000) where its ports carry jumbo frames (multi-buffer, Linux 6.6+: a jumbo request is
//! copied into a slab by the port, as the target's is, and a read whose reply outgrows its
//! 4 KiB frame is moved into a slab first), otherwise at most [`REFLECT_SECTORS_MAX`], what one
//! UMEM frame holds.
//!
//! [`PacketReflector`] answers the same way on AF_PACKET (a [`BurstSocket`] ring and
//! `sendmmsg` batches), sleeping in `poll(2)` when idle; it answers as many sectors as the MTU
//! carries (17 at MTU 9000). The bench runs the two side by side as the machine's limit.
//!
//! [`BurstSocket`]: crate::sys::packet::burst::BurstSocket

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use self::packet::{PacketReflectStats, PacketReflector, PACKET_REFLECT_BATCH};

use crate::sys::frame::{Frame, RX_BURST_MAX};
use crate::sys::layout::FRAME_CAPACITY;
use crate::sys::napi::{NapiWait, POLL_RINGS_FIRST};
use crate::sys::xdp::loader::{detach_stale, AttachMode, LoaderError, XdpMode, XdpProgram};
use crate::sys::xdp::xsk::{BindMode, BusyPollReach, XskConfig, XskError, XskPort, XskStats};
use crate::sys::xdp::DstFilter;
use crate::wire::ata::{error as ata_error, status};
use crate::wire::{
    identify_device, AoeCommand, AoeError, AoePacket, AtaCommand, AtaPacket, ConfigCommand,
    EthernetFrame, IdentifyInfo, MacAddr, QueryConfigPacket, AOE_HEADER_LEN, AOE_VERSION,
    ATA_FRAME_HEADER_LEN, ATA_HEADER_LEN, ETHERTYPE_AOE, QUERY_CONFIG_HEADER_LEN, SECTOR_SIZE,
    SHELF_BROADCAST, SLOT_BROADCAST,
};

mod packet;

/// Capacity the reflector claims in IDENTIFY: 2^31 sectors (1 TiB).
pub const REFLECT_CAPACITY_SECTORS: u64 = 1 << 31;
/// Buffer count the reflector advertises.
pub const REFLECT_BUFFER_COUNT: u16 = 64;
/// Most sectors one 4 KiB UMEM frame can carry after the 36-byte headers (the AF_XDP
/// reflector's limit on a port without multi-buffer).
pub const REFLECT_SECTORS_MAX: u8 = 7;

const _: () =
    assert!(ATA_FRAME_HEADER_LEN + REFLECT_SECTORS_MAX as usize * SECTOR_SIZE <= FRAME_CAPACITY);

/// Firmware version in Query Config replies ("reflector 1").
const FIRMWARE_VERSION: u16 = 0x5201;

/// The longest sleep of an idle reflector waiting in its [`NapiWait`] (a stop or the end of
/// its duration is seen after at most this).
const NAPI_SLEEP: Duration = Duration::from_millis(10);

/// What the reflector answers with.
#[derive(Clone, Debug)]
pub struct Reflection {
    mac: MacAddr,
    /// Shelf.slot a request to the broadcast shelf or slot is answered as.
    address: (u16, u8),
    buffer_count: u16,
    sectors_max: u8,
    identify: [u8; SECTOR_SIZE],
}

impl Reflection {
    /// Replies from `mac`, advertising `buffer_count`, `sectors_max` sectors per request and
    /// `capacity_sectors` in IDENTIFY. Requests to a specific shelf.slot are answered as that
    /// device (the reflector is every device); requests to the broadcast shelf or slot
    /// (discovery) are answered as `address`.
    pub fn new(
        mac: MacAddr,
        address: (u16, u8),
        buffer_count: u16,
        sectors_max: u8,
        capacity_sectors: u64,
    ) -> Self {
        let mut identify = [0u8; SECTOR_SIZE];
        identify_device(
            &mut identify,
            &IdentifyInfo {
                model: "aoe-bench reflector",
                serial: "reflector",
                firmware: "1",
                sectors: capacity_sectors,
            },
        );
        Reflection {
            mac,
            address,
            buffer_count,
            sectors_max,
            identify,
        }
    }

    /// Turns the request in `frame[..len]` into its reply in place (`frame` is the whole
    /// buffer, which reads need room in); returns the reply length (before padding to 60), or
    /// `None` if the frame gets no reply (not an AoE request, a failed config test).
    pub fn reflect(&self, frame: &mut [u8], len: usize) -> Option<usize> {
        let eth = EthernetFrame::new_checked(&frame[..len]).ok()?;
        if eth.ethertype() != ETHERTYPE_AOE {
            return None;
        }
        let header_len = eth.header_len();
        let requester = eth.src_addr();
        let aoe = AoePacket::new_checked(&frame[header_len..len]).ok()?;
        if aoe.version() != AOE_VERSION || aoe.is_response() {
            return None;
        }
        let command = aoe.command();
        let arg = header_len + AOE_HEADER_LEN;
        let (end, error) = match command {
            AoeCommand::Ata => (self.ata(frame, arg, len)?, None),
            AoeCommand::QueryConfig => (self.query_config(frame, arg, len)?, None),
            _ => (arg, Some(AoeError::UnrecognizedCommand)),
        };
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.set_dst_addr(requester);
        eth.set_src_addr(self.mac);
        let mut aoe = AoePacket::new_unchecked(&mut frame[header_len..arg]);
        if aoe.major() == SHELF_BROADCAST || aoe.minor() == SLOT_BROADCAST {
            aoe.set_major(self.address.0);
            aoe.set_minor(self.address.1);
        }
        aoe.set_response(true);
        aoe.set_error(error);
        Some(end)
    }

    /// Bytes from the packet start that the reply to the request in `frame` (`frame.len()`
    /// bytes received) needs: more than the request only for a read (or IDENTIFY) whose data
    /// the reply carries. A frame that holds this much can be reflected in place.
    pub fn reply_room(&self, frame: &[u8]) -> usize {
        let len = frame.len();
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return len;
        };
        let arg = eth.header_len() + AOE_HEADER_LEN;
        let is_ata = eth.ethertype() == ETHERTYPE_AOE
            && AoePacket::new_checked(&frame[eth.header_len()..])
                .is_ok_and(|aoe| aoe.command() == AoeCommand::Ata);
        let Some(request) = is_ata
            .then(|| AtaPacket::new_checked(&frame[arg..]).ok())
            .flatten()
        else {
            return len;
        };
        let sectors = match request.command() {
            AtaCommand::ReadSectors | AtaCommand::ReadSectorsExt
                if request.sector_count() <= self.sectors_max =>
            {
                usize::from(request.sector_count())
            }
            AtaCommand::IdentifyDevice => 1,
            _ => 0,
        };
        len.max(arg + ATA_HEADER_LEN + sectors * SECTOR_SIZE)
    }

    /// Fills the ATA reply whose argument starts at `arg`; returns the reply's end.
    fn ata(&self, frame: &mut [u8], arg: usize, len: usize) -> Option<usize> {
        let request = AtaPacket::new_checked(&frame[arg..len]).ok()?;
        let count = request.sector_count();
        let data = arg + ATA_HEADER_LEN;
        let (status, error, data_len) = match request.command() {
            AtaCommand::ReadSectors | AtaCommand::ReadSectorsExt => {
                let data_len = usize::from(count) * SECTOR_SIZE;
                if count <= self.sectors_max && data + data_len <= frame.len() {
                    (status::DRDY, 0, data_len)
                } else {
                    (status::DRDY | status::ERR, ata_error::ABRT, 0)
                }
            }
            AtaCommand::IdentifyDevice if data + SECTOR_SIZE <= frame.len() => {
                frame[data..data + SECTOR_SIZE].copy_from_slice(&self.identify);
                (status::DRDY, 0, SECTOR_SIZE)
            }
            AtaCommand::IdentifyDevice => (status::DRDY | status::ERR, ata_error::ABRT, 0),
            _ => (status::DRDY, 0, 0),
        };
        let mut reply = AtaPacket::new_unchecked(&mut frame[arg..data]);
        reply.set_cmd_status(status);
        reply.set_err_feature(error);
        Some(data + data_len)
    }

    /// Fills the Query Config reply whose argument starts at `arg`; returns the reply's end, or
    /// `None` for a test that does not match the (always empty) config string.
    fn query_config(&self, frame: &mut [u8], arg: usize, len: usize) -> Option<usize> {
        let request = QueryConfigPacket::new_checked(&frame[arg..len]).ok()?;
        let string_len = request.config_string().len();
        let kept = match request.command() {
            ConfigCommand::Read => 0,
            // The stored string is empty: only the empty string matches, or is a prefix.
            ConfigCommand::Test | ConfigCommand::TestPrefix if string_len == 0 => 0,
            ConfigCommand::Test | ConfigCommand::TestPrefix => return None,
            // Echo the string as if it were set (it is not kept).
            _ => string_len,
        };
        let mut reply = QueryConfigPacket::new_unchecked(&mut frame[arg..len]);
        reply.set_buffer_count(self.buffer_count);
        reply.set_firmware_version(FIRMWARE_VERSION);
        reply.set_sector_count(self.sectors_max);
        reply.set_aoe_version(AOE_VERSION);
        let kept_len = u16::try_from(kept).expect("checked against the frame length");
        frame[arg + 6..arg + 8].copy_from_slice(&kept_len.to_be_bytes());
        Some(arg + QUERY_CONFIG_HEADER_LEN + kept)
    }
}

/// Sectors per request a reflector on an interface of `mtu` answers: what fits after the
/// 36-byte Ethernet, AoE and ATA headers (the load generator's rule: 2 at MTU 1500, 17 at
/// 9000), at least 1 and at most `limit`.
pub fn sectors_for_mtu(mtu: usize, limit: u8) -> u8 {
    let fits = mtu.saturating_sub(ATA_FRAME_HEADER_LEN) / SECTOR_SIZE;
    u8::try_from(fits).unwrap_or(u8::MAX).clamp(1, limit.max(1))
}

/// Sectors a frame of `frame_len` bytes (from the Ethernet header) carries after the headers.
fn sectors_in(frame_len: usize) -> u8 {
    let sectors = frame_len.saturating_sub(ATA_FRAME_HEADER_LEN) / SECTOR_SIZE;
    u8::try_from(sectors).unwrap_or(u8::MAX)
}

/// Errors setting up or running the reflector.
#[derive(Debug, thiserror::Error)]
pub enum ReflectError {
    /// Loading, attaching or detaching the XDP program failed.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// Binding or driving an AF_XDP socket failed.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// Opening or driving the AF_PACKET socket failed.
    #[error("AF_PACKET socket on {interface} failed")]
    Socket {
        /// Interface name.
        interface: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The interface could not be inspected.
    #[error("cannot read {what} of {interface}")]
    Interface {
        /// Interface name.
        interface: String,
        /// What was being read.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The wait for frames failed.
    #[error("waiting for frames failed")]
    Poll {
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Counters of a reflector run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReflectStats {
    /// Requests answered.
    pub replied: u64,
    /// Frames dropped without a reply.
    pub dropped: u64,
    /// The kernel's drop counters, summed over the sockets.
    pub xsk: XskStats,
}

/// An XDP program and one AF_XDP socket per RX queue of one interface.
///
/// Field order is drop order: the sockets close before the program is detached.
#[derive(Debug)]
pub struct Reflector {
    ports: Vec<XskPort>,
    program: Option<XdpProgram>,
    reflection: Reflection,
    /// Per port, read requests waiting for a free slab to be answered in (slabs come back
    /// with TX completions); answered before new frames are taken. Each holds room for all
    /// of its port's frames from the start, so the loop does not allocate.
    waiting: Vec<VecDeque<Frame>>,
    interface: String,
    /// Where the socket is tied to no NAPI (veth) but the interface's one NAPI is known: a
    /// round that found nothing waits in this, busy-polling that NAPI for up to the spin
    /// given to [`Reflector::start`] before it sleeps, as the target's idle worker does
    /// (see `crate::sys::napi`).
    napi: Option<NapiWait>,
}

fn read_sys(interface: &str, file: &str, what: &'static str) -> Result<String, ReflectError> {
    crate::sys::interface::attribute(interface, file).map_err(|source| ReflectError::Interface {
        interface: interface.to_owned(),
        what,
        source,
    })
}

fn bad_value(interface: &str, what: &'static str) -> ReflectError {
    ReflectError::Interface {
        interface: interface.to_owned(),
        what,
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    }
}

/// The MAC address and MTU of `interface`.
fn mac_and_mtu(interface: &str) -> Result<(MacAddr, usize), ReflectError> {
    let mac = read_sys(interface, "address", "the MAC address")?
        .parse()
        .map_err(|_| bad_value(interface, "the MAC address"))?;
    let mtu = read_sys(interface, "mtu", "the MTU")?
        .parse()
        .map_err(|_| bad_value(interface, "the MTU"))?;
    Ok((mac, mtu))
}

/// RX queues of `interface` (in the calling thread's network namespace).
pub fn rx_queue_count(interface: &str) -> Result<u32, ReflectError> {
    crate::sys::interface::rx_queue_count(interface).map_err(|source| ReflectError::Interface {
        interface: interface.to_owned(),
        what: "RX queues",
        source,
    })
}

impl Reflector {
    /// Attaches the XDP program to `interface` (removing a stale one of ours first) and binds
    /// one socket per RX queue. The reflector advertises [`REFLECT_BUFFER_COUNT`] buffers and
    /// [`sectors_for_mtu`]`(MTU, REFLECT_SECTORS_MAX)` sectors per request, and answers
    /// discovery broadcasts as `address` (shelf, slot).
    ///
    /// With `napi_spin` non-zero, a socket tied to no NAPI (veth) whose interface has one
    /// NAPI and one queue waits for frames in a [`NapiWait`] that busy-polls that NAPI for up
    /// to `napi_spin` (then sleeps until a frame comes), as the target's idle worker does;
    /// otherwise, and where io_uring's NAPI busy polling is missing, a round that found
    /// nothing yields the core and polls on.
    pub fn start(
        interface: &str,
        address: (u16, u8),
        napi_spin: Duration,
    ) -> Result<Reflector, ReflectError> {
        let (mac, mtu) = mac_and_mtu(interface)?;
        let ifindex =
            crate::sys::interface::index(interface).map_err(|source| ReflectError::Interface {
                interface: interface.to_owned(),
                what: "the interface index",
                source,
            })?;
        if let Some(stale) = detach_stale(ifindex)? {
            tracing::warn!(interface, stale, "removed a stale aoe_xdp program");
        }
        // The same program and destination rule as the target's, so the two compare fairly.
        let program = XdpProgram::attach(ifindex, XdpMode::Auto, DstFilter::Own(mac.0))?;
        let mut ports = Vec::new();
        for queue in 0..rx_queue_count(interface)? {
            let port = XskPort::bind(interface, queue, &XskConfig::default())?;
            program.insert_socket(queue, port.fd())?;
            ports.push(port);
        }
        let napi = match ports.as_slice() {
            [port] if !napi_spin.is_zero() && port.busy_poll_reach()? == BusyPollReach::NoNapi => {
                match crate::sys::napi::interface_napis(ifindex) {
                    Ok(ids) if ids.len() == 1 && napi_spin > POLL_RINGS_FIRST => {
                        NapiWait::new(&ids, napi_spin - POLL_RINGS_FIRST).ok()
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        // What every port carries: all are bound alike, so the first one says.
        let frame_len = ports.first().map_or(FRAME_CAPACITY, XskPort::max_frame_len);
        let sectors = sectors_for_mtu(mtu, sectors_in(frame_len));
        Ok(Reflector {
            waiting: ports
                .iter()
                .map(|port| VecDeque::with_capacity(port.frame_counts().total() as usize))
                .collect(),
            ports,
            program: Some(program),
            reflection: Reflection::new(
                mac,
                address,
                REFLECT_BUFFER_COUNT,
                sectors,
                REFLECT_CAPACITY_SECTORS,
            ),
            interface: interface.to_owned(),
            napi,
        })
    }

    /// One line saying what runs where.
    pub fn describe(&self) -> String {
        let attach = self.program.as_ref().map(XdpProgram::mode);
        let bind = self.ports.first().map(XskPort::bind_mode);
        format!(
            "reflecting on {}: {} RX queue(s), XDP {}, AF_XDP {}, {} sectors per request, \
             buffer count {}, {}",
            self.interface,
            self.ports.len(),
            match attach {
                Some(AttachMode::Native) => "native",
                Some(AttachMode::Generic) => "generic",
                None => "detached",
            },
            match bind {
                Some(BindMode::ZeroCopy) => "zero-copy",
                Some(BindMode::Copy) => "copy mode",
                None => "-",
            },
            self.reflection.sectors_max,
            self.reflection.buffer_count,
            match &self.napi {
                Some(napi) => format!(
                    "idle: polls its rings for {} us, then busy-polls NAPI {:?} for {} us, \
                     then sleeps",
                    POLL_RINGS_FIRST.as_micros(),
                    napi.ids(),
                    napi.busy().as_micros()
                ),
                None => "idle: polls its rings and yields the core".to_owned(),
            },
        )
    }

    /// Busy-polls every socket, reflecting requests, until `stop` is set or `duration` (if
    /// any) passes.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        duration: Option<Duration>,
    ) -> Result<ReflectStats, ReflectError> {
        let started = Instant::now();
        let mut stats = ReflectStats::default();
        let mut rounds: u32 = 0;
        // One reusable burst per port: nothing is zeroed or moved per receive.
        let mut bursts: Vec<_> = self.ports.iter().map(XskPort::new_burst).collect();
        // Since when rounds found nothing (`None` after one that received).
        let mut idle_since: Option<Instant> = None;
        // Relaxed: the flag carries no data; a late observation only delays the exit.
        while !stop.load(Ordering::Relaxed) {
            rounds = rounds.wrapping_add(1);
            if rounds % 4096 == 0 && duration.is_some_and(|limit| started.elapsed() >= limit) {
                break;
            }
            let mut received = 0;
            for ((port, burst), waiting) in self
                .ports
                .iter_mut()
                .zip(&mut bursts)
                .zip(&mut self.waiting)
            {
                port.reap_completions();
                port.refill()?;
                // Requests that waited for a slab first, in their order.
                let held = waiting.len();
                for _ in 0..held {
                    let frame = waiting.pop_front().expect("counted above");
                    Self::answer(&self.reflection, port, frame, waiting, &mut stats);
                }
                port.rx_burst_into(burst, RX_BURST_MAX);
                received += burst.len();
                for frame in burst.by_ref() {
                    Self::answer(&self.reflection, port, frame, waiting, &mut stats);
                }
                port.flush_tx()?;
            }
            if received > 0 {
                idle_since = None;
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            match &mut self.napi {
                // As the target's idle worker: its rings first, then the wait.
                Some(napi)
                    if self.waiting.iter().all(VecDeque::is_empty)
                        && since.elapsed() >= POLL_RINGS_FIRST =>
                {
                    let port = &mut self.ports[0];
                    port.fill_all()?;
                    let mut fds = [crate::sys::napi::pollfd(port.fd())];
                    napi.poll(&mut fds, NAPI_SLEEP)
                        .map_err(|source| ReflectError::Poll { source })?;
                    if duration.is_some_and(|limit| started.elapsed() >= limit) {
                        break;
                    }
                }
                // As the target's worker does: an empty poll gives the core to the NAPI
                // threads and others that share it, instead of holding it to the tick.
                _ => std::thread::yield_now(),
            }
        }
        for port in &self.ports {
            let xsk = port.stats()?;
            stats.xsk.rx_dropped += xsk.rx_dropped;
            stats.xsk.rx_invalid_descs += xsk.rx_invalid_descs;
            stats.xsk.tx_invalid_descs += xsk.tx_invalid_descs;
            stats.xsk.rx_ring_full += xsk.rx_ring_full;
            stats.xsk.rx_fill_ring_empty_descs += xsk.rx_fill_ring_empty_descs;
            stats.xsk.tx_ring_empty_descs += xsk.tx_ring_empty_descs;
        }
        Ok(stats)
    }

    /// Reflects `frame` and queues the reply, or drops a frame that gets none. A read whose
    /// reply does not fit its frame is first moved into a slab; with none free it joins
    /// `waiting`, to be answered once a TX completion frees one.
    fn answer(
        reflection: &Reflection,
        port: &mut XskPort,
        frame: Frame,
        waiting: &mut VecDeque<Frame>,
        stats: &mut ReflectStats,
    ) {
        // Without multi-buffer every answer fits its frame (at most 7 sectors): the request is
        // not parsed twice where the reflector is the limit at MTU 1500.
        let mut frame = if port.multi_buffer() {
            let room = reflection
                .reply_room(port.data(&frame))
                .min(port.max_frame_len());
            match port.upgrade(frame, room) {
                Ok(frame) => frame,
                Err(frame) => {
                    waiting.push_back(frame);
                    return;
                }
            }
        } else {
            frame
        };
        let len = frame.len();
        match reflection.reflect(port.data_mut(&mut frame), len) {
            Some(reply_len) => {
                port.transmit(frame, reply_len);
                stats.replied += 1;
            }
            None => {
                port.release(frame);
                stats.dropped += 1;
            }
        }
    }

    /// Closes the sockets and detaches the program, reporting a failed detach.
    pub fn stop(mut self) -> Result<(), ReflectError> {
        self.release_waiting();
        self.ports.clear();
        if let Some(program) = self.program.take() {
            program.detach();
        }
        Ok(())
    }

    /// Gives the frames still waiting for a slab back to their ports (a frame handle must not
    /// outlive its port unreleased).
    fn release_waiting(&mut self) {
        for (port, waiting) in self.ports.iter_mut().zip(&mut self.waiting) {
            for frame in waiting.drain(..) {
                port.release(frame);
            }
        }
    }
}

impl Drop for Reflector {
    /// A reflector dropped without [`Reflector::stop`] (a failed run) releases its waiting
    /// frames before its ports close.
    fn drop(&mut self) {
        self.release_waiting();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initiator::frames::{self, AtaCmd, Reply, Route};

    const TARGET: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const HOST: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn route(dst: MacAddr) -> Route {
        Route {
            dst,
            src: HOST,
            vlan_tci: None,
            shelf: 1,
            slot: 0,
        }
    }

    /// Encodes an ATA request from `HOST` to `TARGET` into `buf`; returns its length.
    fn ata_to_target(buf: &mut [u8], tag: u32, cmd: AtaCmd, data: &[u8]) -> usize {
        frames::ata(buf, &route(TARGET), tag, &cmd, data)
    }

    fn reflection() -> Reflection {
        Reflection::new(TARGET, (1, 0), 64, 7, REFLECT_CAPACITY_SECTORS)
    }

    #[test]
    fn test_read_reply_carries_the_sectors() {
        let mut buf = vec![0u8; FRAME_CAPACITY];
        let len = ata_to_target(&mut buf, 77, AtaCmd::read(9, 7, true), &[]);
        let end = reflection().reflect(&mut buf, len).expect("reply");
        assert_eq!(end, 36 + 7 * SECTOR_SIZE);
        let reply = Reply::parse(&buf[..end]).expect("a response");
        assert_eq!((reply.src, reply.dst, reply.aoe.tag), (TARGET, HOST, 77));
        let (ata, data) = reply.ata().unwrap();
        assert_eq!((ata.cmd_status, ata.sector_count), (status::DRDY, 7));
        assert_eq!(data.len(), 7 * SECTOR_SIZE);
    }

    #[test]
    fn test_too_many_sectors_abort() {
        let mut buf = vec![0u8; FRAME_CAPACITY];
        let len = ata_to_target(&mut buf, 1, AtaCmd::read(0, 8, true), &[]);
        let end = reflection().reflect(&mut buf, len).unwrap();
        let (ata, _) = Reply::parse(&buf[..end]).unwrap().ata().unwrap();
        assert_eq!(ata.cmd_status, status::DRDY | status::ERR);
        assert_eq!(ata.err_feature, ata_error::ABRT);
    }

    #[test]
    fn test_write_reply_is_header_only() {
        let mut buf = vec![0u8; FRAME_CAPACITY];
        let data = vec![0xAB; 2 * SECTOR_SIZE];
        let len = ata_to_target(&mut buf, 5, AtaCmd::write(4, 2, true), &data);
        let end = reflection().reflect(&mut buf, len).unwrap();
        assert_eq!(end, 36);
        let (ata, _) = Reply::parse(&buf[..60]).unwrap().ata().unwrap();
        assert_eq!(ata.cmd_status, status::DRDY);
    }

    #[test]
    fn test_discovery_and_identify() {
        let mut buf = vec![0u8; FRAME_CAPACITY];
        let broadcast = Route {
            shelf: 0xFFFF,
            slot: 0xFF,
            ..route(MacAddr::BROADCAST)
        };
        let len = frames::query_config(&mut buf, &broadcast, 3, ConfigCommand::Read, b"");
        let end = reflection().reflect(&mut buf, len).unwrap();
        let reply = Reply::parse(&buf[..end.max(60)]).unwrap();
        assert_eq!(
            reply.src, TARGET,
            "a broadcast is answered from our own MAC"
        );
        let cfg = reply.query_config().unwrap();
        assert_eq!((cfg.buffer_count, cfg.sector_count), (64, 7));
        assert!(cfg.config_string.is_empty());

        let len = frames::query_config(&mut buf, &route(TARGET), 4, ConfigCommand::Test, b"x");
        assert_eq!(reflection().reflect(&mut buf, len), None);

        let identify = AtaCmd::other(AtaCommand::IdentifyDevice, 1, 0);
        let len = ata_to_target(&mut buf, 6, identify, &[]);
        let end = reflection().reflect(&mut buf, len).unwrap();
        let (_, data) = Reply::parse(&buf[..end]).unwrap().ata().unwrap();
        let word = |i: usize| u64::from(u16::from_le_bytes([data[2 * i], data[2 * i + 1]]));
        let capacity = word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48;
        assert_eq!(capacity, REFLECT_CAPACITY_SECTORS);
    }

    #[test]
    fn test_responses_and_other_ethertypes_are_dropped() {
        let mut buf = vec![0u8; FRAME_CAPACITY];
        let len = ata_to_target(&mut buf, 1, AtaCmd::read(0, 1, true), &[]);
        let end = reflection().reflect(&mut buf, len).unwrap();
        // Reflecting a response again does nothing.
        assert_eq!(reflection().reflect(&mut buf, end), None);
        buf[12] = 0x08;
        buf[13] = 0x00;
        assert_eq!(reflection().reflect(&mut buf, len), None);
    }

    /// The room a reply needs: a read's headers and sectors (if it may have them), IDENTIFY's
    /// one sector, otherwise the request itself; reflecting in a buffer of exactly that room
    /// succeeds.
    #[test]
    fn test_reply_room() {
        let jumbo = Reflection::new(TARGET, (1, 0), 64, 17, REFLECT_CAPACITY_SECTORS);
        let mut buf = vec![0u8; 36 + 17 * SECTOR_SIZE];
        let len = ata_to_target(&mut buf, 3, AtaCmd::read(0, 17, true), &[]);
        assert_eq!(jumbo.reply_room(&buf[..len]), 36 + 17 * SECTOR_SIZE);
        assert_eq!(jumbo.reflect(&mut buf, len), Some(36 + 17 * SECTOR_SIZE));
        // More sectors than advertised: aborted in place, no room asked for.
        let len = ata_to_target(&mut buf, 4, AtaCmd::read(0, 18, true), &[]);
        assert_eq!(jumbo.reply_room(&buf[..len]), len);
        // A write's reply is shorter than the request.
        let data = vec![0xCD; 17 * SECTOR_SIZE];
        let len = ata_to_target(&mut buf, 5, AtaCmd::write(0, 17, true), &data);
        assert_eq!(jumbo.reply_room(&buf[..len]), len);
        let len = ata_to_target(
            &mut buf,
            6,
            AtaCmd::other(AtaCommand::IdentifyDevice, 1, 0),
            &[],
        );
        assert_eq!(jumbo.reply_room(&buf[..len]), 36 + SECTOR_SIZE);
        // Not AoE, or too short to parse: the frame as it is.
        assert_eq!(jumbo.reply_room(&buf[..10]), 10);
        buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(jumbo.reply_room(&buf[..100]), 100);
    }

    #[test]
    fn test_sectors_for_mtu() {
        assert_eq!(sectors_for_mtu(1500, u8::MAX), 2);
        assert_eq!(sectors_for_mtu(9000, u8::MAX), 17);
        assert_eq!(sectors_for_mtu(9000, REFLECT_SECTORS_MAX), 7);
        assert_eq!(sectors_for_mtu(36 + 3 * 512, u8::MAX), 3);
        assert_eq!(sectors_for_mtu(36 + 3 * 512 - 1, u8::MAX), 2);
        // Below one sector's room, still one (a read that does not fit is aborted).
        assert_eq!(sectors_for_mtu(68, u8::MAX), 1);
        assert_eq!(sectors_for_mtu(65535, u8::MAX), 127);
        assert_eq!(sectors_for_mtu(usize::MAX, u8::MAX), u8::MAX);
    }

    #[test]
    fn test_jumbo_reads_and_writes_of_17_sectors() {
        let mut buf = vec![0u8; 9018];
        let jumbo = Reflection::new(TARGET, (1, 0), 64, 17, REFLECT_CAPACITY_SECTORS);
        let len = ata_to_target(&mut buf, 2, AtaCmd::read(0, 17, true), &[]);
        let end = jumbo.reflect(&mut buf, len).expect("reply");
        assert_eq!(end, 36 + 17 * SECTOR_SIZE);
        let (ata, data) = Reply::parse(&buf[..end]).unwrap().ata().unwrap();
        assert_eq!(
            (ata.cmd_status, data.len()),
            (status::DRDY, 17 * SECTOR_SIZE)
        );

        let data = vec![0x5A; 17 * SECTOR_SIZE];
        let len = ata_to_target(&mut buf, 3, AtaCmd::write(0, 17, true), &data);
        assert_eq!(jumbo.reflect(&mut buf, len), Some(36));

        // A read whose reply would not fit the buffer is aborted, whatever the limit says.
        let len = ata_to_target(&mut buf, 4, AtaCmd::read(0, 17, true), &[]);
        let end = jumbo
            .reflect(&mut buf[..36 + 16 * SECTOR_SIZE], len)
            .unwrap();
        let (ata, _) = Reply::parse(&buf[..end.max(60)]).unwrap().ata().unwrap();
        assert_eq!(ata.cmd_status, status::DRDY | status::ERR);
    }

    #[test]
    fn test_unknown_command_gets_error() {
        let mut buf = vec![0u8; FRAME_CAPACITY];
        let len = frames::mac_mask(
            &mut buf,
            &route(TARGET),
            8,
            crate::wire::MacMaskCommand::Read,
            &[],
        );
        let end = reflection().reflect(&mut buf, len).unwrap();
        let reply = Reply::parse(&buf[..end.max(60)]).unwrap();
        assert_eq!(reply.error(), Some(AoeError::UnrecognizedCommand));
    }
}

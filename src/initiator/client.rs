//! A blocking AoE initiator over a raw packet socket: one request in flight, retransmitted
//! with a new tag on timeout, as the Linux driver does. Used by the demo, the tests and
//! `aoe-bench verify`; the load generator keeps many requests in flight instead.

use std::io;
use std::time::Duration;

use super::frames::{self, AtaCmd, Reply, Route};
use crate::sys::packet::raw::RawSocket;
use crate::wire::ata::{error as ata_error, status};
use crate::wire::{
    AoeError, AtaCommand, ConfigCommand, DirectiveRepr, MacAddr, MacMaskCommand, ReserveCommand,
    SECTOR_SIZE, SHELF_BROADCAST, SLOT_BROADCAST,
};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("packet socket: {0}")]
    Io(#[from] io::Error),
    /// No reply after every retry.
    #[error("no reply from e{shelf}.{slot} after {tries} tries")]
    Timeout {
        /// Shelf.
        shelf: u16,
        /// Slot.
        slot: u8,
        /// Attempts made.
        tries: u32,
    },
    /// The target answered with an AoE error.
    #[error("AoE error {0:?}")]
    Aoe(AoeError),
    /// The ATA command failed.
    #[error("ATA status {status:#04x} error {error:#04x}")]
    Ata {
        /// Status register.
        status: u8,
        /// Error register.
        error: u8,
    },
    /// The reply did not have the expected shape.
    #[error("malformed reply")]
    Malformed,
}

/// A device found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The target's MAC on this path.
    pub mac: MacAddr,
    /// Shelf.
    pub shelf: u16,
    /// Slot.
    pub slot: u8,
    /// Advertised buffer count.
    pub buffer_count: u16,
    /// Sectors per ATA command the target allows on this path.
    pub sector_count: u8,
    /// The config string.
    pub config_string: Vec<u8>,
}

/// A blocking initiator bound to one interface.
pub struct Client {
    socket: RawSocket,
    mac: MacAddr,
    tag: u32,
    timeout: Duration,
    tries: u32,
    out: Vec<u8>,
    inbuf: Vec<u8>,
}

impl Client {
    /// A client on `interface` whose own MAC is `mac` (it must be the interface's address, or
    /// replies will not reach us).
    pub fn new(socket: RawSocket, mac: MacAddr) -> Client {
        Client {
            socket,
            mac,
            tag: 1,
            timeout: Duration::from_millis(250),
            tries: 8,
            out: vec![0; 9216],
            inbuf: vec![0; 16384],
        }
    }

    /// Sets the per-try timeout and the number of tries.
    pub fn with_retry(mut self, timeout: Duration, tries: u32) -> Client {
        self.timeout = timeout;
        self.tries = tries.max(1);
        self
    }

    /// Our MAC.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    fn next_tag(&mut self) -> u32 {
        // Top bit clear: the Linux initiator reserves it for userland tools, so do we not.
        self.tag = (self.tag + 1) & 0x7FFF_FFFF;
        self.tag
    }

    /// Broadcasts a Query Config read and collects every answer until `wait` passes.
    pub fn discover(&mut self, wait: Duration) -> Result<Vec<Found>, ClientError> {
        let route = Route {
            dst: MacAddr::BROADCAST,
            src: self.mac,
            vlan_tci: None,
            shelf: SHELF_BROADCAST,
            slot: SLOT_BROADCAST,
        };
        let tag = self.next_tag();
        let len = frames::query_config(&mut self.out, &route, tag, ConfigCommand::Read, b"");
        self.socket.send(&self.out[..len])?;
        let mut found = Vec::new();
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Some(len) = self.socket.recv_into(&mut self.inbuf, left, |f| {
                Reply::parse(f).is_some_and(|r| r.aoe.tag == tag)
            })?
            else {
                break;
            };
            let reply = Reply::parse(&self.inbuf[..len]).ok_or(ClientError::Malformed)?;
            let cfg = reply.query_config().ok_or(ClientError::Malformed)?;
            found.push(Found {
                mac: reply.src,
                shelf: reply.aoe.major,
                slot: reply.aoe.minor,
                buffer_count: cfg.buffer_count,
                sector_count: cfg.sector_count,
                config_string: cfg.config_string.to_vec(),
            });
        }
        found.sort_by_key(|f| (f.shelf, f.slot, f.mac));
        Ok(found)
    }

    /// Sends the request that `encode` writes (given a fresh tag) to `target` and returns the
    /// reply bytes; retransmits with a new tag on timeout (a silent target, e.g. a Query
    /// Config test that does not match, ends in [`ClientError::Timeout`]).
    pub fn exchange(
        &mut self,
        target: &Found,
        mut encode: impl FnMut(&mut [u8], &Route, u32) -> usize,
    ) -> Result<Vec<u8>, ClientError> {
        let route = Route {
            dst: target.mac,
            src: self.mac,
            vlan_tci: None,
            shelf: target.shelf,
            slot: target.slot,
        };
        for _ in 0..self.tries {
            let tag = self.next_tag();
            let len = encode(&mut self.out, &route, tag);
            self.socket.send(&self.out[..len])?;
            let matches = |f: &[u8]| {
                Reply::parse(f).is_some_and(|r| {
                    r.aoe.tag == tag && r.aoe.major == target.shelf && r.aoe.minor == target.slot
                })
            };
            if let Some(len) = self
                .socket
                .recv_into(&mut self.inbuf, self.timeout, matches)?
            {
                return Ok(self.inbuf[..len].to_vec());
            }
        }
        Err(ClientError::Timeout {
            shelf: target.shelf,
            slot: target.slot,
            tries: self.tries,
        })
    }

    /// Sends the request `encode` builds and waits for its reply; an AoE error in the reply is
    /// [`ClientError::Aoe`], else `answer` reads the reply (`Malformed` when it cannot).
    fn request<T>(
        &mut self,
        target: &Found,
        encode: impl FnMut(&mut [u8], &Route, u32) -> usize,
        answer: impl FnOnce(&Reply<'_>) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let frame = self.exchange(target, encode)?;
        let reply = Reply::parse(&frame).ok_or(ClientError::Malformed)?;
        if let Some(error) = reply.error() {
            return Err(ClientError::Aoe(error));
        }
        answer(&reply)
    }

    fn ata(&mut self, target: &Found, cmd: AtaCmd, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let encode = |buf: &mut [u8], route: &Route, tag| frames::ata(buf, route, tag, &cmd, data);
        self.request(target, encode, |reply| {
            let (ata, payload) = reply.ata().ok_or(ClientError::Malformed)?;
            if ata.cmd_status & (status::BSY | status::DF | status::DRQ | status::ERR) != 0 {
                return Err(ClientError::Ata {
                    status: ata.cmd_status,
                    error: ata.err_feature,
                });
            }
            Ok(payload.to_vec())
        })
    }

    /// IDENTIFY DEVICE: the 512-byte block.
    pub fn identify(&mut self, target: &Found) -> Result<Vec<u8>, ClientError> {
        let data = self.ata(target, AtaCmd::other(AtaCommand::IdentifyDevice, 1, 0), &[])?;
        leading(data, SECTOR_SIZE)
    }

    /// Reads `count` sectors at `lba`.
    pub fn read(
        &mut self,
        target: &Found,
        lba: u64,
        count: u8,
        lba48: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let data = self.ata(target, AtaCmd::read(lba, count, lba48), &[])?;
        leading(data, usize::from(count) * SECTOR_SIZE)
    }

    /// Writes `data` (a whole number of sectors) at `lba`.
    pub fn write(
        &mut self,
        target: &Found,
        lba: u64,
        data: &[u8],
        lba48: bool,
    ) -> Result<(), ClientError> {
        let count = u8::try_from(data.len() / SECTOR_SIZE).map_err(|_| ClientError::Malformed)?;
        self.ata(target, AtaCmd::write(lba, count, lba48), data)
            .map(drop)
    }

    /// FLUSH CACHE EXT; if the target aborts it (vblade does), FLUSH CACHE. The error of
    /// FLUSH CACHE when both fail.
    pub fn flush(&mut self, target: &Found) -> Result<(), ClientError> {
        match self.ata(target, AtaCmd::other(AtaCommand::FlushCacheExt, 0, 0), &[]) {
            Err(ClientError::Ata { error, .. }) if error & ata_error::ABRT != 0 => self
                .ata(target, AtaCmd::other(AtaCommand::FlushCache, 0, 0), &[])
                .map(drop),
            other => other.map(drop),
        }
    }

    /// A Query Config request; the reply's config string.
    pub fn query_config(
        &mut self,
        target: &Found,
        command: ConfigCommand,
        value: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let encode = |buf: &mut [u8], route: &Route, tag| {
            frames::query_config(buf, route, tag, command, value)
        };
        self.request(target, encode, |reply| {
            let repr = reply.query_config().ok_or(ClientError::Malformed)?;
            Ok(repr.config_string.to_vec())
        })
    }

    /// A Mac Mask List request; the reply's directives.
    pub fn mac_mask(
        &mut self,
        target: &Found,
        command: MacMaskCommand,
        directives: &[DirectiveRepr],
    ) -> Result<Vec<MacAddr>, ClientError> {
        let encode = |buf: &mut [u8], route: &Route, tag| {
            frames::mac_mask(buf, route, tag, command, directives)
        };
        self.request(target, encode, |reply| {
            let (repr, packet) = reply.mac_mask().ok_or(ClientError::Malformed)?;
            if repr.error.is_some() {
                return Err(ClientError::Malformed);
            }
            Ok(packet.directives().map(|d| d.mac).collect())
        })
    }

    /// A Reserve/Release request; the reply's MAC list.
    pub fn reserve(
        &mut self,
        target: &Found,
        command: ReserveCommand,
        macs: &[MacAddr],
    ) -> Result<Vec<MacAddr>, ClientError> {
        let encode =
            |buf: &mut [u8], route: &Route, tag| frames::reserve(buf, route, tag, command, macs);
        self.request(target, encode, |reply| {
            let (_, packet) = reply.reserve().ok_or(ClientError::Malformed)?;
            Ok(packet.macs().collect())
        })
    }
}

/// The first `len` bytes of a reply's `data`; [`ClientError::Malformed`] when it is shorter.
fn leading(mut data: Vec<u8>, len: usize) -> Result<Vec<u8>, ClientError> {
    if data.len() < len {
        return Err(ClientError::Malformed);
    }
    data.truncate(len);
    Ok(data)
}

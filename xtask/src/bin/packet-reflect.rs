//! `packet-reflect -i IFACE`: the bare AF_PACKET reflector of `cargo xtask bench`.
//!
//! It answers every AoE request on one interface from the frame it came in, storing nothing,
//! as `aoe-bench reflect` does on AF_XDP: together they are "the machine's limit" of the
//! bench (the faster of the two at each point). It lives in xtask because the product has no
//! AF_PACKET reflector; it is a separate binary (std and libc only) so that the bench can run
//! an optimised build of it without building the rest of xtask in release mode.
//!
//! The data path is the plainest efficient AF_PACKET one: a socket bound to the AoE ethertype
//! on the interface (the kernel hands it nothing else and never its own transmissions), with
//! `PACKET_QDISC_BYPASS`; one `recvmmsg` (blocking until at least one frame, then taking what
//! is queued, up to [`BATCH`]) and one `sendmmsg` of the replies per batch. It does not spin:
//! between batches it sleeps in the kernel, as a target sharing its core with the receive
//! path must.
//!
//! Replies: reads get `sector count × 512` bytes of whatever the buffer holds, writes and
//! other ATA commands the header with status DRDY, IDENTIFY a block that claims
//! [`CAPACITY_SECTORS`], Query Config the buffer count and the sectors per request the MTU
//! allows (at most [`SECTORS_MAX`]); other AoE commands are not answered. Requests to the
//! broadcast shelf or slot are answered as 1.0. Runs until a signal ends it (SIGTERM's default
//! action: there is nothing to clean up).

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The AoE ethertype.
const ETHERTYPE_AOE: u16 = 0x88A2;
/// Frames per `recvmmsg` and `sendmmsg`.
const BATCH: usize = 64;
/// Bytes per receive buffer: a jumbo frame and room for a read reply of [`SECTORS_MAX`].
const BUFFER_SIZE: usize = 9216;
/// The most sectors a request may ask for (what fits [`BUFFER_SIZE`] after the headers).
const SECTORS_MAX: usize = 17;
/// Capacity claimed in IDENTIFY: 2^31 sectors (1 TiB).
const CAPACITY_SECTORS: u64 = 1 << 31;
/// Buffer count advertised in Query Config (the Linux initiator's maximum).
const BUFFER_COUNT: u16 = 64;
/// The Ethernet minimum (without FCS): veth does not pad, so replies are padded here.
const MIN_FRAME_LEN: usize = 60;
/// Firmware version in Query Config replies ("packet reflector 1").
const FIRMWARE_VERSION: u16 = 0x5202;
const SECTOR_SIZE: usize = 512;

const _: () = assert!(ATA_DATA + SECTORS_MAX * SECTOR_SIZE <= BUFFER_SIZE);

/// Byte offsets in an untagged AoE frame (AoE r11 §3).
const DST: usize = 0;
const SRC: usize = 6;
const ETHERTYPE: usize = 12;
const VER_FLAGS: usize = 14;
const AOE_ERROR: usize = 15;
const MAJOR: usize = 16;
const MINOR: usize = 18;
const COMMAND: usize = 19;
const ARG: usize = 24;
/// The ATA argument: sector count, command/status, data.
const ATA_ERR_FEATURE: usize = ARG + 1;
const ATA_COUNT: usize = ARG + 2;
const ATA_CMD_STATUS: usize = ARG + 3;
const ATA_DATA: usize = ARG + 12;
/// The Query Config argument.
const QC_BUFFER_COUNT: usize = ARG;
const QC_FIRMWARE: usize = ARG + 2;
const QC_SECTOR_COUNT: usize = ARG + 4;
const QC_VER_CCMD: usize = ARG + 5;
const QC_STRING_LEN: usize = ARG + 6;
const QC_END: usize = ARG + 8;

const FLAG_RESPONSE: u8 = 0x08;
const AOE_VERSION: u8 = 1;
const STATUS_DRDY: u8 = 0x40;
const STATUS_ERR: u8 = 0x01;
const ERROR_ABRT: u8 = 0x04;

fn main() {
    let mut args = std::env::args().skip(1);
    let interface = match (args.next().as_deref(), args.next(), args.next()) {
        (Some("-i"), Some(interface), None) => interface,
        _ => {
            eprintln!("usage: packet-reflect -i IFACE");
            std::process::exit(2);
        }
    };
    if let Err(error) = run(&interface) {
        eprintln!("packet-reflect: {interface}: {error}");
        std::process::exit(1);
    }
}

fn run(interface: &str) -> io::Result<()> {
    let mac = parse_mac(&sys_attribute(interface, "address")?)?;
    let mtu: usize = sys_attribute(interface, "mtu")?
        .parse()
        .map_err(|_| io::Error::other("unreadable MTU"))?;
    let ifindex: i32 = sys_attribute(interface, "ifindex")?
        .parse()
        .map_err(|_| io::Error::other("unreadable ifindex"))?;
    // As `aoe-bench load` counts: the sectors that fit the MTU after the 36-byte headers.
    let sectors_max = (mtu.saturating_sub(ATA_DATA) / SECTOR_SIZE).min(SECTORS_MAX);
    let reflection = Reflection::new(mac, u8::try_from(sectors_max).unwrap_or(u8::MAX));
    let socket = open(ifindex)?;
    println!(
        "AF_PACKET reflector on {interface}: {sectors_max} sectors per request, \
         recvmmsg/sendmmsg batches of {BATCH}"
    );
    serve(&socket, &reflection)
}

/// `/sys/class/net/IFACE/FILE`, trimmed (`ip netns exec` mounts the namespace's sysfs).
fn sys_attribute(interface: &str, file: &str) -> io::Result<String> {
    let path = format!("/sys/class/net/{interface}/{file}");
    std::fs::read_to_string(&path)
        .map(|text| text.trim().to_owned())
        .map_err(|error| io::Error::new(error.kind(), format!("{path}: {error}")))
}

fn parse_mac(text: &str) -> io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = parts
            .next()
            .and_then(|part| u8::from_str_radix(part, 16).ok())
            .ok_or_else(|| io::Error::other(format!("unreadable MAC address {text}")))?;
    }
    Ok(mac)
}

/// An AF_PACKET socket for AoE frames on interface `ifindex`, with `PACKET_QDISC_BYPASS`.
fn open(ifindex: i32) -> io::Result<OwnedFd> {
    let protocol = ETHERTYPE_AOE.to_be();
    // SAFETY: plain system call with constant arguments; the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int of the length given.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&raw const one).cast(),
            socket_len(size_of::<libc::c_int>()),
        )
    };
    if set < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set next.
    let mut address: libc::sockaddr_ll = unsafe { zeroed() };
    address.sll_family = u16::try_from(libc::AF_PACKET).expect("AF_PACKET fits in u16");
    address.sll_protocol = protocol;
    address.sll_ifindex = ifindex;
    // SAFETY: `address` is a live sockaddr_ll of the length given.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast(),
            socket_len(size_of::<libc::sockaddr_ll>()),
        )
    };
    if bound < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn socket_len(len: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(len).expect("a socket structure's length fits in socklen_t")
}

/// The reflector's loop: receive a batch, turn each request into its reply in place, send the
/// replies in one call. Returns only on an error.
fn serve(socket: &OwnedFd, reflection: &Reflection) -> io::Result<()> {
    let mut buffers = vec![[0u8; BUFFER_SIZE]; BATCH];
    let mut rx_iovecs = Vec::with_capacity(BATCH);
    for buffer in &mut buffers {
        rx_iovecs.push(libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: BUFFER_SIZE,
        });
    }
    let mut tx_iovecs = rx_iovecs.clone();
    // SAFETY: all-zero is a valid mmsghdr (null name and control, no iovecs).
    let empty: libc::mmsghdr = unsafe { zeroed() };
    let mut rx = vec![empty; BATCH];
    let mut tx = vec![empty; BATCH];
    for (header, iovec) in rx.iter_mut().zip(&mut rx_iovecs) {
        header.msg_hdr.msg_iov = iovec;
        header.msg_hdr.msg_iovlen = 1;
    }
    loop {
        // SAFETY: every header points to one iovec of a buffer of BUFFER_SIZE bytes, all of
        // which live (and are not otherwise accessed) until the call returns.
        let received = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                rx.as_mut_ptr(),
                u32::try_from(BATCH).expect("BATCH fits in u32"),
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue; // SIGSTOP and SIGCONT between the bench's points.
            }
            return Err(error);
        }
        let received = usize::try_from(received).expect("checked non-negative");
        let mut replies = 0;
        for index in 0..received {
            let len = usize::try_from(rx[index].msg_len).expect("a frame length fits in usize");
            let Some(reply_len) = reflection.reflect(&mut buffers[index], len) else {
                continue;
            };
            tx_iovecs[replies].iov_base = buffers[index].as_mut_ptr().cast();
            tx_iovecs[replies].iov_len = reply_len;
            tx[replies].msg_hdr.msg_iov = &raw mut tx_iovecs[replies];
            tx[replies].msg_hdr.msg_iovlen = 1;
            replies += 1;
        }
        send_all(socket, &mut tx[..replies])?;
    }
}

/// Sends every message of `messages` (several `sendmmsg` calls if the kernel takes fewer).
fn send_all(socket: &OwnedFd, mut messages: &mut [libc::mmsghdr]) -> io::Result<()> {
    while !messages.is_empty() {
        // SAFETY: each header points to one iovec over a live buffer of at least iov_len bytes,
        // neither of which is touched until the call returns.
        let sent = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                messages.as_mut_ptr(),
                u32::try_from(messages.len()).expect("at most BATCH"),
                0,
            )
        };
        if sent < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                // A full queue: those replies are lost, as a NIC would drop them; the
                // initiator retransmits.
                io::ErrorKind::WouldBlock => return Ok(()),
                _ => return Err(error),
            }
        }
        let sent = usize::try_from(sent).expect("checked non-negative");
        messages = &mut messages[sent.max(1)..];
    }
    Ok(())
}

/// What the reflector answers with.
struct Reflection {
    mac: [u8; 6],
    sectors_max: u8,
    identify: [u8; SECTOR_SIZE],
}

impl Reflection {
    fn new(mac: [u8; 6], sectors_max: u8) -> Reflection {
        Reflection {
            mac,
            sectors_max,
            identify: identify_block(),
        }
    }

    /// Turns the request in `frame[..len]` into its reply in place; the reply's length
    /// (padded to the Ethernet minimum), or `None` for a frame that gets no reply.
    fn reflect(&self, frame: &mut [u8], len: usize) -> Option<usize> {
        if len < ARG || be16(frame, ETHERTYPE) != ETHERTYPE_AOE {
            return None;
        }
        if frame[VER_FLAGS] >> 4 != AOE_VERSION || frame[VER_FLAGS] & FLAG_RESPONSE != 0 {
            return None;
        }
        let end = match frame[COMMAND] {
            0 => self.ata(frame, len)?,
            1 => self.query_config(frame, len)?,
            _ => return None,
        };
        frame.copy_within(SRC..SRC + 6, DST);
        frame[SRC..SRC + 6].copy_from_slice(&self.mac);
        if be16(frame, MAJOR) == 0xFFFF || frame[MINOR] == 0xFF {
            frame[MAJOR..MAJOR + 2].copy_from_slice(&1u16.to_be_bytes());
            frame[MINOR] = 0;
        }
        frame[VER_FLAGS] |= FLAG_RESPONSE;
        frame[AOE_ERROR] = 0;
        if end < MIN_FRAME_LEN {
            frame[end..MIN_FRAME_LEN].fill(0);
        }
        Some(end.max(MIN_FRAME_LEN))
    }

    /// Fills an ATA reply; returns its end.
    fn ata(&self, frame: &mut [u8], len: usize) -> Option<usize> {
        if len < ATA_DATA {
            return None;
        }
        let count = frame[ATA_COUNT];
        let (status, error, data_len) = match frame[ATA_CMD_STATUS] {
            // READ SECTORS, READ SECTORS EXT.
            0x20 | 0x24 if count <= self.sectors_max => {
                (STATUS_DRDY, 0, usize::from(count) * SECTOR_SIZE)
            }
            0x20 | 0x24 => (STATUS_DRDY | STATUS_ERR, ERROR_ABRT, 0),
            // IDENTIFY DEVICE.
            0xEC => {
                frame[ATA_DATA..ATA_DATA + SECTOR_SIZE].copy_from_slice(&self.identify);
                (STATUS_DRDY, 0, SECTOR_SIZE)
            }
            _ => (STATUS_DRDY, 0, 0),
        };
        frame[ATA_CMD_STATUS] = status;
        frame[ATA_ERR_FEATURE] = error;
        Some(ATA_DATA + data_len)
    }

    /// Fills a Query Config reply (config string empty, a set echoed but not kept); `None`
    /// for a test of a non-empty string.
    fn query_config(&self, frame: &mut [u8], len: usize) -> Option<usize> {
        if len < QC_END {
            return None;
        }
        let string_len = usize::from(be16(frame, QC_STRING_LEN)).min(len - QC_END);
        let kept = match frame[QC_VER_CCMD] & 0x0F {
            0 => 0,
            1 | 2 if string_len == 0 => 0,
            1 | 2 => return None,
            _ => string_len,
        };
        frame[QC_BUFFER_COUNT..QC_BUFFER_COUNT + 2].copy_from_slice(&BUFFER_COUNT.to_be_bytes());
        frame[QC_FIRMWARE..QC_FIRMWARE + 2].copy_from_slice(&FIRMWARE_VERSION.to_be_bytes());
        frame[QC_SECTOR_COUNT] = self.sectors_max;
        frame[QC_VER_CCMD] = (AOE_VERSION << 4) | (frame[QC_VER_CCMD] & 0x0F);
        let kept_len = u16::try_from(kept).expect("at most a frame's length");
        frame[QC_STRING_LEN..QC_STRING_LEN + 2].copy_from_slice(&kept_len.to_be_bytes());
        Some(QC_END + kept)
    }
}

fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// An IDENTIFY DEVICE block with what `aoe-bench load` reads: LBA and LBA48 supported
/// (words 49, 83, 86) and the capacity (words 60–61 and 100–103).
fn identify_block() -> [u8; SECTOR_SIZE] {
    let mut block = [0u8; SECTOR_SIZE];
    let mut put = |word: usize, value: u16| {
        block[2 * word..2 * word + 2].copy_from_slice(&value.to_le_bytes());
    };
    put(49, 1 << 9);
    put(83, 1 << 14 | 1 << 10);
    put(86, 1 << 10);
    let lba28 = CAPACITY_SECTORS.min(0x0FFF_FFFF);
    for (index, word) in [(0, 60), (1, 61)] {
        put(
            word,
            u16::try_from(lba28 >> (16 * index) & 0xFFFF).expect("masked"),
        );
    }
    for (index, word) in [(0, 100), (1, 101), (2, 102), (3, 103)] {
        put(
            word,
            u16::try_from(CAPACITY_SECTORS >> (16 * index) & 0xFFFF).expect("masked"),
        );
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn request(command: u8, arg: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; BUFFER_SIZE];
        frame[DST..DST + 6].copy_from_slice(&[0xFF; 6]);
        frame[SRC..SRC + 6].copy_from_slice(&PEER);
        frame[ETHERTYPE..ETHERTYPE + 2].copy_from_slice(&ETHERTYPE_AOE.to_be_bytes());
        frame[VER_FLAGS] = AOE_VERSION << 4;
        frame[MAJOR..MAJOR + 2].copy_from_slice(&0xFFFFu16.to_be_bytes());
        frame[MINOR] = 0xFF;
        frame[COMMAND] = command;
        frame[20..24].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        frame[ARG..ARG + arg.len()].copy_from_slice(arg);
        frame
    }

    #[test]
    fn a_read_is_answered_with_its_sectors_from_the_reflectors_address() {
        let reflection = Reflection::new(OWN, 17);
        let mut frame = request(0, &[0x40, 0, 17, 0x24, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reflection.reflect(&mut frame, 60), Some(36 + 17 * 512));
        assert_eq!(frame[DST..DST + 6], PEER);
        assert_eq!(frame[SRC..SRC + 6], OWN);
        assert_eq!(frame[VER_FLAGS] & FLAG_RESPONSE, FLAG_RESPONSE);
        assert_eq!((be16(&frame, MAJOR), frame[MINOR]), (1, 0));
        assert_eq!(frame[ATA_CMD_STATUS], STATUS_DRDY);
        assert_eq!(be16(&frame, 20), 0x1234);
        // More sectors than the MTU allows: aborted, header only (padded).
        let mut frame = request(0, &[0x40, 0, 18, 0x24, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reflection.reflect(&mut frame, 60), Some(MIN_FRAME_LEN));
        assert_eq!(frame[ATA_CMD_STATUS], STATUS_DRDY | STATUS_ERR);
        assert_eq!(frame[ATA_ERR_FEATURE], ERROR_ABRT);
    }

    #[test]
    fn writes_are_acknowledged_padded_and_replies_are_not_answered() {
        let reflection = Reflection::new(OWN, 2);
        let mut frame = request(0, &[0x41, 0, 2, 0x34, 0, 0, 0, 0, 0, 0, 0, 0]);
        frame[ATA_DATA..ATA_DATA + 1024].fill(0xA5);
        assert_eq!(reflection.reflect(&mut frame, 36 + 1024), Some(60));
        assert!(frame[ATA_DATA..MIN_FRAME_LEN].iter().all(|b| *b == 0));
        assert_eq!(reflection.reflect(&mut frame, 60), None, "a response");
        let mut other = request(0, &[]);
        other[ETHERTYPE] = 0x08;
        assert_eq!(reflection.reflect(&mut other, 60), None);
    }

    #[test]
    fn query_config_advertises_buffers_and_sectors_and_identify_the_capacity() {
        let reflection = Reflection::new(OWN, 2);
        let mut frame = request(1, &[0; 8]);
        assert_eq!(reflection.reflect(&mut frame, 60), Some(MIN_FRAME_LEN));
        assert_eq!(be16(&frame, QC_BUFFER_COUNT), BUFFER_COUNT);
        assert_eq!(frame[QC_SECTOR_COUNT], 2);
        assert_eq!(frame[QC_VER_CCMD] >> 4, AOE_VERSION);
        let mut frame = request(0, &[0, 0, 1, 0xEC, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reflection.reflect(&mut frame, 60), Some(36 + 512));
        let word = |i: usize| u64::from(be16(&[frame[37 + 2 * i], frame[36 + 2 * i]], 0));
        assert_eq!(word(86) & 1 << 10, 1 << 10);
        assert_eq!(word(100) | word(101) << 16, CAPACITY_SECTORS);
    }
}

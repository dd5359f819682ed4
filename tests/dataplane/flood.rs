//! A flood of every class of malformed request during verified I/O.

use std::time::{Duration, Instant};

use aoe_xdp::initiator::frames::{self, AtaCmd, Route};
use aoe_xdp::wire::{ConfigCommand, DirectiveCommand, DirectiveRepr, MacAddr, MacMaskCommand};

use crate::fixture::{discover_one, Setup, SHELF, SLOT};
use crate::patterns::pattern;

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
    // The window: sectors 1024..3072 of a 4096-sector file.
    let (file_sectors, offset, length) = (4096u64, 1024u64, 2048u64);
    Setup::new("dp-flood")
        .paths(2)
        .target("socket = \"xdp\"")
        .sectors(file_sectors)
        .device_with(&format!("offset = {offset}"))
        .device_with(&format!("length = {length}"))
        .serve(|net, dir, target| {
            let (mut client, device) = net.discover(0);
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
        });
}

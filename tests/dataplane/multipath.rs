//! One device over two paths: replies leave by the arrival interface, one worker owns the
//! device, and requests from both ports merge.

use std::collections::HashMap;

use aoe_xdp::initiator::client::{Client, Found};
use aoe_xdp::initiator::frames::{self, AtaCmd, Reply, Route};
use aoe_xdp::wire::ata::status as ata_status;
use aoe_xdp::wire::{ConfigCommand, MacAddr};

use crate::counters::log_field;
use crate::fixture::{discover_one, Net, Setup, Transport, QUIET, SECTORS, SHELF, SLOT};
use crate::in_flight::{collect, send_all};
use crate::patterns::pattern;

/// One device served on two interfaces at once (by two workers): each path discovers its own
/// target MAC, replies leave by the interface the request came in on, data and the config
/// string written through one path are seen through the other.
pub fn test_two_interfaces(transport: Transport) {
    two_paths(transport, "dp-multi", "worker-cores = [0, 1]").serve(|net, _dir, target| {
        let (mut clients, devices) = both_paths(net);
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
    });
}

/// Multipath, as the Linux initiator does it: a sequential stream of writes split over two
/// paths, path 0 taking the even requests and path 1 the odd ones. No two requests of one
/// path are adjacent, so every merge the engine makes joins requests from the two ports: the
/// device's queue brings them to one engine. The data must be right whatever was merged.
pub fn test_multipath_merge(transport: Transport) {
    // Synced writes (the default) go through io_uring and its merging; write-back ones are
    // plain copies into the page cache, done inline.
    two_paths(
        transport,
        "dp-merge",
        "worker-cores = [0]\nmerge-delay-us = 2000",
    )
    .serve(|net, _dir, target| {
        let (mut clients, devices) = both_paths(net);
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
    });
}

/// A blocking initiator on each of the two paths, and the device each discovers.
/// The one device over two paths, with these `[target]` lines.
fn two_paths(transport: Transport, tag: &str, lines: &str) -> Setup {
    Setup::over(transport, tag).paths(2).target(lines)
}

fn both_paths(net: &Net) -> ([Client; 2], Vec<Found>) {
    let mut clients = [net.client(0), net.client(1)];
    let devices = clients.iter_mut().map(discover_one).collect();
    (clients, devices)
}

//! End-to-end tests of the real `aoe-xdp` binary: it runs in one network namespace and serves
//! sparse files over veth pairs to initiators in another (the library's blocking `Client`, raw
//! frames, and Debian's `aoeping`). Every test builds its namespaces, veths and temporary
//! directory with the one fixture (`fixture.rs`: it names only what differs from the default
//! set-up), so they run in parallel. One file per feature:
//!
//! - `discovery.rs`: discovery, the start-up advertisement, IDENTIFY, Query Config, `aoeping`;
//! - `reads_writes.rs`: verified reads and writes, range and read-only errors, bursts, jumbo
//!   frames;
//! - `multipath.rs`: one device over two paths and two workers, merges across ports;
//! - `access.rs`: the Mac Mask List and reservations, and state kept across a restart;
//! - `destination.rs`: requests for other hosts' MACs;
//! - `mappings.rs`: resident and mapped-reads devices;
//! - `stats_socket.rs`: `aoe-xdp --stats` and who it answers;
//! - `ctl.rs`: `aoe-xdp ctl` show, clear, announce, clear-stats, monitor;
//! - `idle.rs`: polling, spinning and napping workers;
//! - `startup.rs`: a second instance refused, the fallback to AF_PACKET;
//! - `runtime.rs`: interfaces that appear, go or change their MTU; reload;
//! - `service.rs`: the systemd notification protocol, the service's capabilities;
//! - `stops.rs`: `kill -9`, SIGTERM and an interface down and up under load;
//! - `disk_faults.rs`: a full file system, a bad range;
//! - `flood.rs`: malformed requests during verified I/O;
//!
//! and what they share: `patterns.rs` (sector data), `answers.rs` (checks of replies),
//! `in_flight.rs` (bursts of requests on a raw socket), `counters.rs` (the target's statistics
//! and log counters).
//!
//! Needs root; prints "skipping: ..." otherwise (or fails with `AOE_XDP_REQUIRE_PRIV=1`).

#[path = "../common/mod.rs"]
mod common;

mod access;
mod answers;
mod counters;
mod ctl;
mod destination;
mod discovery;
mod disk_faults;
mod fixture;
mod flood;
mod idle;
mod in_flight;
mod mappings;
mod multipath;
mod patterns;
mod reads_writes;
mod runtime;
mod service;
mod startup;
mod stats_socket;
mod stops;

/// Runs each listed test once over AF_XDP and once over the AF_PACKET fallback with each of
/// its receive rings (as `xdp::NAME`, `packet::NAME`, `packet_v3::NAME`).
macro_rules! on_both_transports {
    ($($feature:ident::$name:ident),* $(,)?) => {
        mod xdp {
            $(#[test] fn $name() { crate::$feature::$name(crate::fixture::Transport::Xdp) })*
        }
        mod packet {
            $(#[test] fn $name() { crate::$feature::$name(crate::fixture::Transport::Packet) })*
        }
        mod packet_v3 {
            $(#[test] fn $name() { crate::$feature::$name(crate::fixture::Transport::PacketV3) })*
        }
    };
}

on_both_transports!(
    discovery::test_discovery_and_identify,
    reads_writes::test_write_read_whole_device,
    reads_writes::test_ata_errors,
    multipath::test_two_interfaces,
    discovery::test_config_string,
    access::test_mask_and_reservation,
    discovery::test_aoeping,
    access::test_restart_keeps_state,
    reads_writes::test_many_requests,
    multipath::test_multipath_merge,
    startup::test_second_instance_refused,
    stats_socket::test_stats,
    reads_writes::test_jumbo_frames,
    mappings::test_resident_device,
    mappings::test_mapped_reads_device,
    destination::test_foreign_destination_refused,
    destination::test_accept_any_destination,
);

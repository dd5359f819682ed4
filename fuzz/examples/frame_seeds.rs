//! Writes the seed corpus of the `frame_parser` target into `fuzz/seeds/frame_parser/`: one
//! valid request of every command and form the target answers, encoded with the initiator's
//! own encoders. From an empty corpus that target stayed at the Ethernet and AoE header
//! checks (108 edges after 4M runs, 2026-12-07); these start it past them.
//!
//! Run from the repository: `cargo run --manifest-path fuzz/Cargo.toml --example frame_seeds`.

use std::path::Path;

use aoe_xdp::initiator::frames::{self, AtaCmd, Route};
use aoe_xdp::wire::{
    AtaCommand, ConfigCommand, DirectiveCommand, DirectiveRepr, MacAddr, MacMaskCommand,
    ReserveCommand, SHELF_BROADCAST, SLOT_BROADCAST,
};

/// The target's MAC in the `frame_parser` target.
const TARGET: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const HOST: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0A]);

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/frame_parser");
    std::fs::create_dir_all(&dir)?;
    let device = Route {
        dst: TARGET,
        src: HOST,
        vlan_tci: None,
        shelf: 1,
        slot: 0,
    };
    let tagged = Route {
        vlan_tci: Some(42),
        ..device
    };
    let everyone = Route {
        dst: MacAddr::BROADCAST,
        shelf: SHELF_BROADCAST,
        slot: SLOT_BROADCAST,
        ..device
    };
    let sectors = [0x5Au8; 2 * 512];
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut add = |name, encode: &dyn Fn(&mut [u8]) -> usize| {
        let mut buf = vec![0u8; 9100];
        let len = encode(&mut buf);
        buf.truncate(len);
        seeds.push((name, buf));
    };
    add("ata-read-lba28", &|b| {
        frames::ata(b, &device, 1, &AtaCmd::read(7, 1, false), &[])
    });
    add("ata-read-lba48-last", &|b| {
        frames::ata(b, &device, 2, &AtaCmd::read(4094, 2, true), &[])
    });
    add("ata-read-vlan", &|b| {
        frames::ata(b, &tagged, 3, &AtaCmd::read(0, 17, true), &[])
    });
    add("ata-write-lba28", &|b| {
        frames::ata(b, &device, 4, &AtaCmd::write(9, 2, false), &sectors)
    });
    add("ata-write-lba48", &|b| {
        frames::ata(b, &device, 5, &AtaCmd::write(100, 1, true), &sectors[..512])
    });
    for (name, command, count, feature) in [
        ("ata-identify", AtaCommand::IdentifyDevice, 1, 0),
        ("ata-flush", AtaCommand::FlushCache, 0, 0),
        ("ata-flush-ext", AtaCommand::FlushCacheExt, 0, 0),
        ("ata-check-power", AtaCommand::CheckPowerMode, 0, 0),
        ("ata-smart-read-data", AtaCommand::Smart, 1, 0xD0),
    ] {
        add(name, &|b| {
            frames::ata(b, &device, 6, &AtaCmd::other(command, count, feature), &[])
        });
    }
    for (name, command) in [
        ("config-read", ConfigCommand::Read),
        ("config-test", ConfigCommand::Test),
        ("config-test-prefix", ConfigCommand::TestPrefix),
        ("config-set", ConfigCommand::Set),
        ("config-force-set", ConfigCommand::ForceSet),
    ] {
        add(name, &|b| {
            frames::query_config(b, &device, 7, command, b"host=a")
        });
    }
    add("config-read-broadcast", &|b| {
        frames::query_config(b, &everyone, 8, ConfigCommand::Read, b"")
    });
    add("mask-read", &|b| {
        frames::mac_mask(b, &device, 9, MacMaskCommand::Read, &[])
    });
    let directives = [
        DirectiveRepr {
            command: DirectiveCommand::Add,
            mac: HOST,
        },
        DirectiveRepr {
            command: DirectiveCommand::Delete,
            mac: MacAddr([2, 0, 0, 0, 0, 0x0B]),
        },
    ];
    add("mask-edit", &|b| {
        frames::mac_mask(b, &device, 10, MacMaskCommand::Edit, &directives)
    });
    for (name, command, macs) in [
        ("reserve-read", ReserveCommand::Read, &[][..]),
        ("reserve-set", ReserveCommand::Set, &[HOST][..]),
        (
            "reserve-force-set",
            ReserveCommand::ForceSet,
            &[HOST, TARGET][..],
        ),
    ] {
        add(name, &|b| frames::reserve(b, &device, 11, command, macs));
    }
    for (name, frame) in &seeds {
        std::fs::write(dir.join(name), frame)?;
    }
    println!("{} seeds in {}", seeds.len(), dir.display());
    Ok(())
}

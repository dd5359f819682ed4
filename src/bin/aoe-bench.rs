//! `aoe-bench`: an AoE initiator for measuring and checking AoE targets.
//!
//! - `aoe-bench discover -i IFACE`: broadcast a Query Config and list every device that answers;
//! - `aoe-bench check -i IFACE -t SHELF.SLOT`: identify the device, write self-describing
//!   blocks (LBA and a generation stamped in every sector) over a range, read them back and
//!   verify every byte, exercise FLUSH and a config-string round trip. Exits non-zero on any
//!   mismatch or error.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use aoe_xdp::initiator::client::{Client, Found};
use aoe_xdp::wire::{ConfigCommand, MacAddr, SECTOR_SIZE};
use aoe_xdp::xdp::raw::RawSocket;

#[derive(Parser)]
#[command(
    name = "aoe-bench",
    version,
    about = "AoE initiator: discover, check and load AoE targets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the AoE devices that answer a broadcast on an interface.
    Discover {
        /// Interface to send on.
        #[arg(short, long)]
        interface: String,
        /// How long to collect answers, in milliseconds.
        #[arg(long, default_value_t = 500)]
        wait_ms: u64,
    },
    /// Write self-describing blocks, read them back and verify every byte.
    Check {
        /// Interface to send on.
        #[arg(short, long)]
        interface: String,
        /// The device, as SHELF.SLOT.
        #[arg(short, long)]
        target: String,
        /// Sectors to write and verify (default: the whole device, at most 65536).
        #[arg(long)]
        sectors: Option<u64>,
        /// Generation stamped into every block (change it to tell runs apart).
        #[arg(long, default_value_t = 1)]
        generation: u32,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("aoe-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Discover { interface, wait_ms } => {
            let mut client = open(&interface)?;
            let found = client.discover(Duration::from_millis(wait_ms))?;
            if found.is_empty() {
                bail!("no AoE device answered on {interface}");
            }
            for device in &found {
                print_found(device);
            }
            Ok(())
        }
        Command::Check {
            interface,
            target,
            sectors,
            generation,
        } => check(&interface, &target, sectors, generation),
    }
}

fn open(interface: &str) -> Result<Client> {
    let mac: MacAddr = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))
        .with_context(|| format!("no interface {interface}"))?
        .trim()
        .parse()
        .context("interface has no Ethernet address")?;
    let socket = RawSocket::open(interface).with_context(|| format!("opening {interface}"))?;
    Ok(Client::new(socket, mac))
}

fn print_found(device: &Found) {
    println!(
        "e{}.{} at {}: buffer count {}, {} sectors per request, config string {:?}",
        device.shelf,
        device.slot,
        device.mac,
        device.buffer_count,
        device.sector_count,
        String::from_utf8_lossy(&device.config_string)
    );
}

fn parse_target(text: &str) -> Result<(u16, u8)> {
    let (shelf, slot) = text
        .split_once('.')
        .context("target must be SHELF.SLOT, e.g. 1.0")?;
    Ok((
        shelf.parse().context("bad shelf")?,
        slot.parse().context("bad slot")?,
    ))
}

/// Fills `block` with a self-describing pattern: the LBA and generation in the first 12 bytes,
/// then bytes derived from both, so a misplaced or stale sector is recognized.
fn stamp(block: &mut [u8], lba: u64, generation: u32) {
    block[..8].copy_from_slice(&lba.to_le_bytes());
    block[8..12].copy_from_slice(&generation.to_le_bytes());
    let seed = (lba.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(generation)).to_le_bytes();
    for (index, byte) in block[12..].iter_mut().enumerate() {
        *byte = seed[index % 8] ^ index.to_le_bytes()[0];
    }
}

fn check(interface: &str, target: &str, sectors: Option<u64>, generation: u32) -> Result<()> {
    let (shelf, slot) = parse_target(target)?;
    let mut client = open(interface)?;
    let found = client.discover(Duration::from_millis(500))?;
    let device = found
        .into_iter()
        .find(|f| f.shelf == shelf && f.slot == slot)
        .with_context(|| format!("e{shelf}.{slot} did not answer discovery on {interface}"))?;
    print_found(&device);
    let identify = client.identify(&device)?;
    let word = |i: usize| u64::from(u16::from_le_bytes([identify[2 * i], identify[2 * i + 1]]));
    let capacity = word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48;
    let model: String = (27..47)
        .flat_map(|w| [identify[2 * w + 1], identify[2 * w]])
        .map(char::from)
        .collect();
    println!(
        "IDENTIFY: model {:?}, {capacity} sectors ({} MiB)",
        model.trim(),
        capacity / 2048
    );
    let per_request = u64::from(device.sector_count.max(1));
    let total = sectors.unwrap_or(capacity.min(65536)).min(capacity);
    let started = Instant::now();
    let mut block = vec![0u8; usize::try_from(per_request).unwrap_or(1) * SECTOR_SIZE];
    let mut lba = 0;
    while lba < total {
        let count = per_request.min(total - lba);
        let bytes = usize::try_from(count).unwrap_or(1) * SECTOR_SIZE;
        for (i, sector) in block[..bytes].chunks_mut(SECTOR_SIZE).enumerate() {
            stamp(sector, lba + i as u64, generation);
        }
        client.write(&device, lba, &block[..bytes], true)?;
        lba += count;
    }
    client.flush(&device)?;
    let written = started.elapsed();
    let mut expected = vec![0u8; SECTOR_SIZE];
    let mut lba = 0;
    while lba < total {
        let count = per_request.min(total - lba);
        let data = client.read(&device, lba, u8::try_from(count).unwrap_or(1), true)?;
        for (i, sector) in data.chunks(SECTOR_SIZE).enumerate() {
            stamp(&mut expected, lba + i as u64, generation);
            if sector != expected.as_slice() {
                bail!(
                    "sector {} read back differs from what was written",
                    lba + i as u64
                );
            }
        }
        lba += count;
    }
    let read = started.elapsed() - written;
    println!(
        "wrote, flushed and verified {total} sectors ({} KiB): write {:.0} ms, read {:.0} ms",
        total / 2,
        written.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3
    );
    let stamp_string = format!("aoe-bench generation {generation}");
    let now = client.query_config(&device, ConfigCommand::ForceSet, stamp_string.as_bytes())?;
    let tested = client.query_config(&device, ConfigCommand::Test, stamp_string.as_bytes())?;
    if now != stamp_string.as_bytes() || tested != now {
        bail!("config string round trip failed");
    }
    println!("config string set and tested: {stamp_string:?}");
    println!("check passed");
    Ok(())
}

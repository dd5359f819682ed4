//! `aoe-bench`: an AoE initiator for measuring and checking AoE targets.
//!
//! - `aoe-bench discover -i IFACE`: broadcast a Query Config and list every device that answers;
//! - `aoe-bench check -i IFACE -t SHELF.SLOT`: identify the device, write self-describing
//!   blocks (LBA and a generation stamped in every sector) over a range, read them back and
//!   verify every byte, exercise FLUSH and a config-string round trip. Exits non-zero on any
//!   mismatch or error;
//! - `aoe-bench load -i IFACE [-i IFACE2 ...] -t SHELF.SLOT [...]`: drive the device with many
//!   tagged requests in flight on every path (see `aoe_xdp::initiator::load`), print IOPS,
//!   MB/s, latency percentiles, retransmits and errors (`--json`: one JSON object on stdout);
//! - `aoe-bench reflect -i IFACE [--socket xdp|packet] [--duration SECS]`: the bare reflector
//!   (answers every AoE request from the frame it came in, storing nothing) on AF_XDP (the
//!   default, busy-polling) or AF_PACKET (sleeping when idle, as many sectors as the MTU
//!   carries), until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use aoe_xdp::initiator::client::{Client, ClientError, Found};
use aoe_xdp::initiator::load::reflect::{PacketReflector, Reflector};
use aoe_xdp::initiator::load::verify::stamp;
use aoe_xdp::initiator::load::workload::{Op, Pattern};
use aoe_xdp::initiator::load::{self, Device, LoadConfig, PathSpec, Report, Stop};
use aoe_xdp::sys::interface;
use aoe_xdp::sys::packet::raw::RawSocket;
use aoe_xdp::wire::ata::error as ata_error;
use aoe_xdp::wire::{ConfigCommand, MacAddr, SECTOR_SIZE};

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
    /// Drive one or more devices with many requests in flight on every path and report the
    /// performance.
    Load(LoadArgs),
    /// Answer every AoE request on an interface from the request frame itself (no storage):
    /// the machine's limit for `load`. Runs until SIGINT/SIGTERM or --duration.
    Reflect {
        /// Interface to reflect on (with AF_XDP, an XDP program is attached to it while
        /// running).
        #[arg(short, long)]
        interface: String,
        /// The socket: AF_XDP (busy-polls one core; as many sectors as the MTU carries where
        /// the kernel binds multi-buffer sockets, Linux 6.6+, else at most 7) or AF_PACKET (a
        /// TPACKET_V2 ring and sendmmsg batches, sleeps in poll(2) when idle, as many sectors
        /// as the MTU carries).
        #[arg(long, value_enum, default_value_t = SocketArg::Xdp)]
        socket: SocketArg,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// The device discovery broadcasts are answered as (requests to a specific SHELF.SLOT
        /// are answered as that device).
        #[arg(short, long, default_value = "1.0")]
        target: String,
        /// Microseconds an idle reflector busy-polls its interface's NAPI before it sleeps,
        /// where the socket is tied to none (AF_XDP on veth; AF_PACKET on an interface with
        /// one queue and one NAPI, e.g. veth with GRO on), as the target's idle worker does with
        /// its default idle-spin-us; 0: AF_XDP polls its rings and yields the core instead,
        /// AF_PACKET sleeps in poll(2) at once.
        #[arg(long, default_value_t = 50)]
        napi_spin_us: u64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SocketArg {
    Xdp,
    Packet,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OpArg {
    Read,
    Write,
    Mixed,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PatternArg {
    Random,
    Sequential,
}

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Interface to send on; repeat for several paths.
    #[arg(short, long = "interface", required = true)]
    interfaces: Vec<String>,
    /// The device, as SHELF.SLOT; repeat to load several devices at once (each gets its own
    /// request stream, on every path where it answers).
    #[arg(short, long = "target", required = true)]
    targets: Vec<String>,
    /// Reads, writes, or both (see --read-pct).
    #[arg(long, value_enum, default_value_t = OpArg::Read)]
    op: OpArg,
    /// Where requests go.
    #[arg(long, value_enum, default_value_t = PatternArg::Random)]
    pattern: PatternArg,
    /// Sectors per request (default: what the target advertises on each path).
    #[arg(long)]
    size: Option<u8>,
    /// Requests in flight per path (also capped by the target's buffer count).
    #[arg(long, default_value_t = 16)]
    depth: usize,
    /// Offer this many requests per second (all paths together) instead of as many as the
    /// windows allow: a fixed load, to measure a target's CPU per request below saturation.
    #[arg(long, value_name = "REQUESTS_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Seconds to measure (default 10 unless --bytes is given).
    #[arg(long, conflicts_with = "bytes")]
    duration: Option<f64>,
    /// Bytes to transfer instead of a duration.
    #[arg(long)]
    bytes: Option<u64>,
    /// Sectors the requests stay in (default: the whole device; with several, the smallest).
    #[arg(long)]
    range_sectors: Option<u64>,
    /// Percentage of reads with --op mixed.
    #[arg(long, default_value_t = 70, value_parser = clap::value_parser!(u8).range(0..=100))]
    read_pct: u8,
    /// Write the range first, then verify every byte of every read.
    #[arg(long)]
    verify: bool,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    no_progress: bool,
    /// Seconds to run before measuring.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Milliseconds before a request is retransmitted (with a new tag).
    #[arg(long, default_value_t = 200)]
    timeout_ms: u64,
    /// Transmissions before a request counts as an error.
    #[arg(long, default_value_t = 10)]
    tries: u32,
    /// Seed of the random pattern.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// After a round that found nothing, busy-poll the interfaces' NAPIs (io_uring, Linux
    /// 6.13+) for up to this many microseconds, so that replies are received in this thread
    /// rather than by a NAPI thread the target's send wakes (0: yield the core instead).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    napi_poll_us: u64,
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
        Command::Load(args) => load(&args),
        Command::Reflect {
            interface,
            socket,
            duration,
            target,
            napi_spin_us,
        } => {
            let duration = duration.map(|d| seconds(d, "--duration")).transpose()?;
            let address = parse_target(&target)?;
            let napi_spin = Duration::from_micros(napi_spin_us);
            match socket {
                SocketArg::Xdp => reflect(&interface, duration, address, napi_spin),
                SocketArg::Packet => reflect_packet(&interface, duration, address, napi_spin),
            }
        }
    }
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    Ok(stop)
}

fn seconds(value: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("bad {what}: {value}"))
}

fn reflect(
    interface: &str,
    duration: Option<Duration>,
    address: (u16, u8),
    napi_spin: Duration,
) -> Result<()> {
    let stop = stop_flag()?;
    let mut reflector = Reflector::start(interface, address, napi_spin)
        .with_context(|| format!("cannot reflect on {interface}"))?;
    // The first line on stdout tells scripts and tests that the reflector is ready.
    println!("{}", reflector.describe());
    let result = reflector.run(&stop, duration);
    let detached = reflector.stop();
    let stats = result.context("reflector failed")?;
    detached.context("cannot detach the XDP program")?;
    eprintln!(
        "reflected {} requests ({} frames dropped; kernel: rx dropped {}, rx ring full {}, \
         fill ring empty {})",
        stats.replied,
        stats.dropped,
        stats.xsk.rx_dropped,
        stats.xsk.rx_ring_full,
        stats.xsk.rx_fill_ring_empty_descs
    );
    Ok(())
}

fn reflect_packet(
    interface: &str,
    duration: Option<Duration>,
    address: (u16, u8),
    napi_spin: Duration,
) -> Result<()> {
    let stop = stop_flag()?;
    let mut reflector = PacketReflector::start(interface, address, napi_spin)
        .with_context(|| format!("cannot reflect on {interface}"))?;
    // The first line on stdout tells scripts and tests that the reflector is ready.
    println!("{}", reflector.describe());
    let stats = reflector.run(&stop, duration).context("reflector failed")?;
    eprintln!(
        "reflected {} requests ({} frames dropped, {} replies unsent; waited {} times)",
        stats.replied, stats.dropped, stats.unsent, stats.waits
    );
    Ok(())
}

fn sys_value(interface: &str, file: &str) -> Result<String> {
    interface::attribute(interface, file).with_context(|| format!("no interface {interface}"))
}

/// Capacity in sectors and LBA48 support from an IDENTIFY DEVICE block.
fn identify_geometry(identify: &[u8]) -> (u64, bool) {
    let word = |i: usize| u64::from(u16::from_le_bytes([identify[2 * i], identify[2 * i + 1]]));
    let lba48 = (word(83) | word(86)) & (1 << 10) != 0;
    let capacity = if lba48 {
        word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48
    } else {
        word(60) | word(61) << 16
    };
    (capacity, lba48)
}

fn load(args: &LoadArgs) -> Result<()> {
    let mut addresses = Vec::new();
    for text in &args.targets {
        let address = parse_target(text)?;
        if addresses.contains(&address) {
            bail!("--target {text} is given twice");
        }
        addresses.push(address);
    }
    if args.verify && addresses.len() > 1 {
        bail!("--verify checks one device at a time: give one --target");
    }
    let mut paths = Vec::new();
    let mut devices = Vec::new();
    // The smallest device's capacity, which every request stream stays inside.
    let mut capacity = u64::MAX;
    for (index, &(shelf, slot)) in addresses.iter().enumerate() {
        let mut identify = None;
        for interface in &args.interfaces {
            let mtu: usize = sys_value(interface, "mtu")?
                .parse()
                .context("unreadable MTU")?;
            let mut client = open(interface)?;
            let found = load::discover(
                interface,
                client.mac(),
                shelf,
                slot,
                Duration::from_millis(500),
            )?;
            for device in &found {
                // Sector count 0 means 2 (as the Linux initiator assumes); the MTU bounds it.
                let advertised = if device.sector_count == 0 {
                    2
                } else {
                    device.sector_count
                };
                let fits = u8::try_from(mtu.saturating_sub(36) / SECTOR_SIZE).unwrap_or(u8::MAX);
                let allowed = advertised.min(fits);
                let sectors = match args.size {
                    Some(size) if size == 0 || size > allowed => bail!(
                        "--size {size}: e{shelf}.{slot} at {} on {interface} allows \
                         1..={allowed} sectors per request",
                        device.mac
                    ),
                    Some(size) => size,
                    None => allowed,
                };
                paths.push(PathSpec {
                    device: index,
                    interface: interface.clone(),
                    local_mac: client.mac(),
                    mtu,
                    target_mac: device.mac,
                    buffer_count: device.buffer_count,
                    sectors,
                });
                if identify.is_none() {
                    let target = Found {
                        mac: device.mac,
                        shelf,
                        slot,
                        buffer_count: device.buffer_count,
                        sector_count: device.sector_count,
                        config_string: Vec::new(),
                    };
                    let answer = client
                        .identify(&target)
                        .with_context(|| format!("IDENTIFY of e{shelf}.{slot} failed"))?;
                    identify = Some(answer);
                }
            }
        }
        let Some(identify) = identify else {
            bail!(
                "e{shelf}.{slot} did not answer discovery on {}",
                args.interfaces.join(", ")
            );
        };
        let (sectors, lba48) = identify_geometry(&identify);
        capacity = capacity.min(sectors);
        devices.push(Device { shelf, slot, lba48 });
    }
    let range_sectors = args.range_sectors.unwrap_or(capacity);
    if range_sectors == 0 || range_sectors > capacity {
        let which = if devices.len() == 1 {
            "the device's"
        } else {
            "the smallest device's"
        };
        bail!("--range-sectors {range_sectors} is outside {which} 1..={capacity} sectors");
    }
    let stop = match (args.duration, args.bytes) {
        (_, Some(bytes)) => Stop::Bytes(bytes),
        (Some(duration), None) => Stop::Duration(seconds(duration, "--duration")?),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let config = LoadConfig {
        devices,
        op: match args.op {
            OpArg::Read => Op::Read,
            OpArg::Write => Op::Write,
            OpArg::Mixed => Op::Mixed {
                read_pct: args.read_pct,
            },
        },
        pattern: match args.pattern {
            PatternArg::Random => Pattern::Random,
            PatternArg::Sequential => Pattern::Sequential,
        },
        depth: args.depth.max(1),
        rate: args.rate,
        stop,
        range_sectors,
        verify: args.verify,
        warmup: seconds(args.warmup, "--warmup")?,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        tries: args.tries.max(1),
        progress: !args.no_progress,
        seed: args.seed,
        napi_poll: Duration::from_micros(args.napi_poll_us),
    };
    if !args.no_progress {
        for path in &paths {
            let device = config.devices[path.device];
            eprintln!(
                "path {} -> e{}.{} at {}: buffer count {}, window {}, {} sectors per request",
                path.interface,
                device.shelf,
                device.slot,
                path.target_mac,
                path.buffer_count,
                config.depth.min(usize::from(path.buffer_count.max(1))),
                path.sectors
            );
        }
    }
    let stop_flag = stop_flag()?;
    let report = load::run(&paths, &config, &stop_flag)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(report: &Report) {
    println!(
        "requests {}  bytes {}  duration {:.3} s",
        report.requests, report.bytes, report.duration_s
    );
    println!("IOPS {:.0}  MB/s {:.1}", report.iops, report.mb_per_s);
    println!(
        "latency us: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        report.lat_us.p50, report.lat_us.p99, report.lat_us.p999, report.lat_us.max
    );
    println!(
        "retransmits {}  errors {}  verify failures {}",
        report.retransmits, report.errors, report.verify_failures
    );
    for path in &report.paths {
        println!(
            "path {} -> e{} at {}: {} requests",
            path.interface, path.device, path.target_mac, path.requests
        );
    }
}

fn open(interface: &str) -> Result<Client> {
    let mac: MacAddr = sys_value(interface, "address")?
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

/// Flushes (see `Client::flush`). A target that aborts both FLUSH commands says it has no
/// cache to flush: a warning, not a failure, since acknowledged writes are then all it
/// offers. Returns whether a flush was acknowledged.
fn flush(client: &mut Client, device: &Found) -> Result<bool> {
    match client.flush(device) {
        Ok(()) => Ok(true),
        Err(ClientError::Ata { error, .. }) if error & ata_error::ABRT != 0 => {
            eprintln!("warning: the target aborts FLUSH CACHE (EXT); writes were not flushed");
            Ok(false)
        }
        Err(other) => Err(other.into()),
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
    let flushed = flush(&mut client, &device)?;
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
        "wrote, {}and verified {total} sectors ({} KiB): write {:.0} ms, read {:.0} ms",
        if flushed { "flushed " } else { "" },
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

//! `aoe-xdp ctl`: talks to the running target over its control socket (see
//! `aoe_xdp::dataplane::ctl` for the protocol) and prints what it says for people, or as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aoe_xdp::config::{self, Config};
use aoe_xdp::dataplane::counters::UnitStats;
use aoe_xdp::dataplane::ctl::{self, Clearable, CtlError, DeviceStateReport};
use aoe_xdp::dataplane::stats::{Report, ServiceTimeReport};

/// `aoe-xdp ctl`'s options.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The control socket [default: the --config file's control-socket, else
    /// /run/aoe-xdp.sock].
    #[arg(long, value_name = "SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// The target's configuration file, to find its control socket.
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// What `aoe-xdp ctl` does.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Print the counters (since start, or since the last clear-stats).
    Stats {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// A live table, as iostat: per device requests and MB per second and errors, per port
    /// frames per second and drops, every INTERVAL seconds until interrupted.
    Monitor {
        /// Seconds between lines.
        #[arg(default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many intervals.
        #[arg(long)]
        count: Option<u32>,
    },
    /// Print a device's AoE state: config string, Mac Mask List, reservation.
    Show {
        /// The device's name or SHELF.SLOT.
        device: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Empty a device's config string, Mac Mask List or reservation (e.g. to free a device a
    /// fenced initiator holds reserved).
    Clear {
        /// The device's name or SHELF.SLOT.
        device: String,
        /// What to empty.
        #[arg(value_enum)]
        what: ClearWhat,
    },
    /// Count statistics from now on.
    ClearStats,
    /// Reload the configuration file (as SIGHUP does): refused with every problem if it does
    /// not check out, the running configuration then stays.
    Reload,
    /// Send every device's advertisement now (as at start-up).
    Announce,
}

/// What `clear` empties.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ClearWhat {
    /// The config string.
    Config,
    /// The Mac Mask List.
    Mask,
    /// The reservation.
    Reservation,
}

impl From<ClearWhat> for Clearable {
    fn from(what: ClearWhat) -> Clearable {
        match what {
            ClearWhat::Config => Clearable::Config,
            ClearWhat::Mask => Clearable::Mask,
            ClearWhat::Reservation => Clearable::Reservation,
        }
    }
}

/// Runs `aoe-xdp ctl`; exit status 0 done, 1 the target refused (e.g. no such device), 2 no
/// answer (not running, wrong socket, permission).
pub fn run(args: &CtlArgs) -> ExitCode {
    let path = match socket_path(args) {
        Ok(path) => path,
        Err(code) => return code,
    };
    let result = match &args.action {
        Action::Stats { json } => ctl::query(&path).map(|report| print_stats(&report, *json)),
        Action::Monitor { interval, count } => monitor(&path, *interval, *count),
        Action::Show { device, json } => {
            ctl::show(&path, device).map(|state| print_state(&state, *json))
        }
        Action::Clear { device, what } => {
            let what = Clearable::from(*what);
            ctl::request(&path, &format!("clear {device} {}", what.name())).map(print_ok)
        }
        Action::ClearStats => ctl::request(&path, "clear-stats").map(print_ok),
        Action::Reload => ctl::request(&path, "reload").map(print_ok),
        Action::Announce => ctl::request(&path, "announce").map(print_ok),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CtlError::Refused(error)) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("error: {error} (is aoe-xdp running with this control-socket?)");
            ExitCode::from(2)
        }
    }
}

/// `--socket`, else the `--config` file's `control-socket`, else the default.
fn socket_path(args: &CtlArgs) -> Result<PathBuf, ExitCode> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    let Some(file) = &args.config else {
        return Ok(PathBuf::from(config::defaults::CONTROL_SOCKET));
    };
    Config::load(file)
        .map(|config| config.target.control_socket)
        .map_err(|error| {
            eprintln!("error: {}: {error}", file.display());
            ExitCode::from(1)
        })
}

fn print_ok(answer: serde_json::Value) {
    if let Some(ok) = answer.get("ok").and_then(serde_json::Value::as_str) {
        println!("{ok}");
    }
}

fn print_stats(report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("a report serializes")
        );
    } else {
        print_report(report);
    }
}

fn print_state(state: &DeviceStateReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(state).expect("a state serializes")
        );
        return;
    }
    let list = |macs: &[String]| {
        if macs.is_empty() {
            "(empty: everyone)".to_owned()
        } else {
            macs.join(" ")
        }
    };
    println!("device       {} ({})", state.name, state.address);
    println!("config       {:?}", state.config);
    println!("mask         {}", list(&state.mask));
    println!("reservation  {}", list(&state.reservation));
}

/// Prints one line per device and port every `interval` seconds: rates over the interval.
fn monitor(path: &std::path::Path, interval: f64, count: Option<u32>) -> Result<(), CtlError> {
    const MB: f64 = 1e6;
    let pause = Duration::from_secs_f64(interval.max(0.1));
    let mut before = ctl::query(path)?;
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        std::thread::sleep(pause);
        let now = ctl::query(path)?;
        let seconds = (now.uptime_s - before.uptime_s).max(1e-3);
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
        println!(
            "\n{:<10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "DEVICE", "READS/S", "WRITES/S", "RMB/S", "WMB/S", "P50 US", "P99 US", "ERRORS"
        );
        for (device, old) in now.devices.iter().zip(&before.devices) {
            let (c, o) = (&device.counters, &old.counters);
            let errors =
                (c.ata_errors + c.proto_errors).saturating_sub(o.ata_errors + o.proto_errors);
            let service = device.service_ns.since(&old.service_ns);
            println!(
                "{:<10} {:>10.0} {:>10.0} {:>9.2} {:>9.2} {:>9} {:>9} {:>8}",
                device.name,
                rate(c.read_cmds, o.read_cmds),
                rate(c.write_cmds, o.write_cmds),
                rate(c.read_bytes, o.read_bytes) / MB,
                rate(c.write_bytes, o.write_bytes) / MB,
                quantile(&service, 0.5),
                quantile(&service, 0.99),
                errors
            );
        }
        println!(
            "{:<24} {:>10} {:>10} {:>8}",
            "PORT", "RX/S", "TX/S", "DROPS"
        );
        for (port, old) in now.ports.iter().zip(&before.ports) {
            let (c, o) = (&port.counters, &old.counters);
            let dropped = |c: &UnitStats| c.kernel.rx_dropped + c.no_frame + c.kernel.tx_dropped;
            let drops = dropped(c).saturating_sub(dropped(o));
            println!(
                "{:<24} {:>10.0} {:>10.0} {:>8}",
                port.name,
                rate(c.rx_frames, o.rx_frames),
                rate(c.tx_frames, o.tx_frames),
                drops
            );
        }
        before = now;
        printed += 1;
    }
    Ok(())
}

/// A quantile of `service` in microseconds for a table cell ("-" without requests).
fn quantile(service: &ServiceTimeReport, quantile: f64) -> String {
    service.quantile(quantile).map_or_else(
        || "-".to_owned(),
        |nanos| format!("{:.1}", nanos as f64 / 1000.0),
    )
}

fn print_report(report: &Report) {
    const MB: f64 = 1e6;
    println!("aoe-xdp: up {:.1} s", report.uptime_s);
    println!(
        "\n{:<24} {:>12} {:>12} {:>10} {:>11} {:>12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>6} {:>8}",
        "PORT",
        "RX",
        "TX",
        "IGNORED",
        "FOREIGN-DST",
        "STORAGE",
        "NO-FRAME",
        "BOUNCED",
        "JUMBO-DROP",
        "KERN-DROP",
        "FILL-EMPTY",
        "FILL",
        "TX-DROP"
    );
    for port in &report.ports {
        let c = &port.counters;
        println!(
            "{:<24} {:>12} {:>12} {:>10} {:>11} {:>12} {:>8} {:>10} {:>10} {:>10} {:>10} {:>6} {:>8}",
            port.name,
            c.rx_frames,
            c.tx_frames,
            c.ignored,
            c.foreign_dst,
            c.io_submitted,
            c.no_frame,
            c.jumbo.bounce_frames,
            c.jumbo.rx_no_slab + c.jumbo.rx_too_long,
            c.kernel.rx_dropped,
            c.kernel.fill_empty,
            c.kernel.fill_depth,
            c.kernel.tx_dropped
        );
    }
    println!(
        "\n{:<10} {:>5} {:>12} {:>10} {:>12} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "DEVICE",
        "OWNER",
        "READS",
        "READ MB",
        "WRITES",
        "WRITE MB",
        "OTHER",
        "ATA-ERR",
        "AOE-ERR",
        "DROPPED",
        "P50 US",
        "P99 US"
    );
    for device in &report.devices {
        let c = &device.counters;
        println!(
            "{:<10} {:>5} {:>12} {:>10.1} {:>12} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            device.name,
            device.owner,
            c.read_cmds,
            c.read_bytes as f64 / MB,
            c.write_cmds,
            c.write_bytes as f64 / MB,
            c.other_cmds,
            c.ata_errors,
            c.proto_errors,
            c.dropped,
            quantile(&device.service_ns, 0.5),
            quantile(&device.service_ns, 0.99)
        );
    }
    println!(
        "\n{:<7} {:>12} {:>10} {:>9} {:>12} {:>10} {:>12} {:>12} {:>8} {:>8} {:>10} {:>9} {:>8} {:>7} {:>8}",
        "WORKER",
        "JOBS",
        "REMOTE",
        "BACKLOG",
        "DISK I/O",
        "MERGED",
        "MAPPED",
        "INLINE",
        "BOUNCED",
        "IO-ERR",
        "SYNCS",
        "READAHEAD",
        "COLD-WR",
        "STALLS",
        "MAJFLT"
    );
    for (index, worker) in report.workers.iter().enumerate() {
        let e = &worker.engine;
        println!(
            "{:<7} {:>12} {:>10} {:>9} {:>12} {:>10} {:>12} {:>12} {:>8} {:>8} {:>10} {:>9} {:>8} {:>7} {:>8}",
            index,
            worker.jobs,
            worker.remote_jobs,
            worker.io_backlogged,
            e.ios,
            e.merged,
            e.mapped,
            e.inline,
            e.bounced,
            e.errors,
            e.syncs,
            e.readaheads,
            e.uncached_writes,
            e.inline_stalls,
            worker.major_faults
        );
    }
}

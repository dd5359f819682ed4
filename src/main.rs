//! `aoe-xdp`: the target's command line.
//!
//! Two ways to describe what to export, both validated by `Config` the same way:
//! - `aoe-xdp --config FILE`: a TOML file (see config/aoe-xdp.toml);
//! - the vblade-like quick form `aoe-xdp --interface IFACE --export SHELF.SLOT=PATH …`, which
//!   builds the `RawConfig` of that file (one `[[device]]` per `--export`, defaults elsewhere).
//!
//! `--check` validates the configuration and the backing files, prints what would be
//! exported and exits. Exit codes: 0 fine, 1 configuration or backing problems (all of them
//! are printed), 2 usage errors or failure to serve.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use aoe_xdp::config::{
    self, unspanned, Backing, BackingError, Config, DeviceConfig, LogLevel, RawConfig, RawDevice,
};
use aoe_xdp::dataplane::supervisor::Supervisor;
use aoe_xdp::sys::wake::Nudge;

mod cli;

/// An ATA-over-Ethernet storage target on AF_XDP and io_uring.
#[derive(Debug, Parser)]
#[command(
    name = "aoe-xdp",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Talk to a running target (`aoe-xdp ctl --help`).
    #[command(subcommand)]
    command: Option<Command>,

    /// Configuration file (TOML); see config/aoe-xdp.toml for every key.
    #[arg(
        short,
        long,
        value_name = "FILE",
        conflicts_with_all = ["interfaces", "exports", "read_only", "state_dir", "direct_io", "durability"],
    )]
    config: Option<PathBuf>,

    /// Quick form: interface name or glob to serve on (repeatable).
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        required_unless_present_any = ["config", "stats"]
    )]
    interfaces: Vec<String>,

    /// Quick form: export PATH as AoE device SHELF.SLOT (repeatable).
    #[arg(
        short = 'e',
        long = "export",
        value_name = "SHELF.SLOT=PATH",
        value_parser = parse_export,
        required_unless_present_any = ["config", "stats"]
    )]
    exports: Vec<Export>,

    /// Quick form: export read-only (writes fail with ATA ABORT).
    #[arg(short = 'r', long)]
    read_only: bool,

    /// Quick form: directory for persistent AoE state [default: /var/lib/aoe-xdp].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<String>,

    /// Quick form: open backing files with O_DIRECT.
    #[arg(short = 'd', long)]
    direct_io: bool,

    /// Quick form: when writes are acknowledged [default: sync].
    #[arg(long, value_parser = ["sync", "writeback"])]
    durability: Option<String>,

    /// Check the configuration and backing files, print what would be exported, and exit.
    #[arg(long)]
    check: bool,

    /// Print the counters of the running aoe-xdp whose control socket is SOCKET (default: the
    /// --config file's control-socket, else /run/aoe-xdp.sock) and exit.
    #[arg(long, value_name = "SOCKET", num_args = 0..=1, default_missing_value = "")]
    stats: Option<PathBuf>,

    /// With --stats: print the raw JSON.
    #[arg(long, requires = "stats")]
    json: bool,

    /// Log level; overrides RUST_LOG and the configuration's log-level.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(LogLevel::KEYWORDS))]
    log_level: Option<String>,

    /// Log format on standard error: `text` for people, `json` (one object per line, with
    /// timestamp, level, target, message and fields) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Talk to the running target over its control socket: stats, monitor, show, clear,
    /// clear-stats, announce.
    Ctl(cli::ctl::CtlArgs),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (colours on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

const EXAMPLES: &str = "Examples:
  aoe-xdp --config /etc/aoe-xdp.toml --check
  aoe-xdp --interface eth1 --export 1.0=/dev/sdb --export 1.1=/srv/aoe/disk.img
  aoe-xdp --stats                      # counters of the running target
  aoe-xdp ctl monitor                  # a live table of the running target
  aoe-xdp ctl clear 1.0 reservation    # free a device a fenced initiator holds

Exit status: 0 success, 1 configuration or backing problems, 2 usage error or failure to serve.";

/// One `--export SHELF.SLOT=PATH`. Numbers are kept wide so that validation, not the
/// parser, reports out-of-range addresses (with the same messages as for files).
#[derive(Debug, Clone)]
struct Export {
    shelf: i64,
    slot: i64,
    path: String,
}

fn parse_export(text: &str) -> Result<Export, String> {
    let usage = || format!("{text:?}: expected SHELF.SLOT=PATH, e.g. 1.0=/dev/sdb");
    let (address, path) = text.split_once('=').ok_or_else(usage)?;
    let (shelf, slot) = address.split_once('.').ok_or_else(usage)?;
    Ok(Export {
        shelf: shelf.trim().parse().map_err(|_| usage())?,
        slot: slot.trim().parse().map_err(|_| usage())?,
        path: path.to_owned(),
    })
}

/// The quick form's configuration: what the equivalent file would deserialize to.
fn quick_config(cli: &Cli) -> RawConfig {
    let mut raw = RawConfig::default();
    let interfaces = cli.interfaces.iter().cloned().map(unspanned).collect();
    raw.target.interfaces = Some(unspanned(interfaces));
    raw.target.state_directory = cli.state_dir.clone().map(unspanned);
    for export in &cli.exports {
        let mut device = RawDevice::new(export.shelf, export.slot, export.path.clone());
        device.read_only = cli.read_only.then(|| unspanned(true));
        device.direct_io = cli.direct_io.then(|| unspanned(true));
        device.durability = cli.durability.clone().map(unspanned);
        raw.devices.push(unspanned(device));
    }
    raw
}

fn load(cli: &Cli) -> Result<Config, config::Error> {
    match &cli.config {
        Some(path) => Config::load(path),
        None => Config::from_raw(quick_config(cli), "command line"),
    }
}

fn init_logging(cli: &Cli, config: &Config) {
    // --log-level, then RUST_LOG, then the configuration.
    let filter = match &cli.log_level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(config.target.log_level.as_str())),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Ctl(args)) = &cli.command {
        return cli::ctl::run(args);
    }
    if let Some(socket) = &cli.stats {
        return stats(&cli, socket);
    }
    let config = match load(&cli) {
        Ok(config) => config,
        Err(err) => {
            print_load_error(&err);
            return ExitCode::from(1);
        }
    };
    init_logging(&cli, &config);
    let backings: Vec<Result<Backing, Vec<BackingError>>> =
        config.devices.iter().map(DeviceConfig::probe).collect();
    print_summary(&config, &backings);
    let problems: Vec<&BackingError> = backings
        .iter()
        .filter_map(|backing| backing.as_ref().err())
        .flatten()
        .collect();
    if !problems.is_empty() {
        for problem in &problems {
            fatal(&cli, &problem.to_string());
        }
        eprintln!("{} problem(s) with backing stores", problems.len());
        return ExitCode::from(1);
    }
    if cli.check {
        println!("configuration OK: {} device(s)", config.devices.len());
        return ExitCode::SUCCESS;
    }
    match run(config, cli.config.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            fatal(&cli, &format!("{err:#}"));
            ExitCode::from(2)
        }
    }
}

/// Reports an error that stops the target: a line `error: ...` on standard error, or with
/// `--log-format json` a log record at level ERROR, so that a log collector sees why it stopped.
fn fatal(cli: &Cli, error: &str) {
    match cli.log_format {
        LogFormat::Text => eprintln!("error: {error}"),
        LogFormat::Json => tracing::error!(error, "aoe-xdp cannot serve"),
    }
}

/// `--stats` (the flat form of `aoe-xdp ctl stats`): asks the running target and prints its
/// counters.
fn stats(cli: &Cli, socket: &std::path::Path) -> ExitCode {
    let socket = (!socket.as_os_str().is_empty()).then(|| socket.to_owned());
    let args = cli::ctl::CtlArgs {
        socket,
        config: cli.config.clone(),
        action: cli::ctl::Action::Stats { json: cli.json },
    };
    cli::ctl::run(&args)
}

/// Serves the configuration until shut down: the supervisor keeps the dataplane in step with
/// the interfaces and reloads `config_path` on SIGHUP or `aoe-xdp ctl reload`.
fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the SIGINT/SIGTERM handler")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("cannot install the SIGHUP handler")?;
    // The signals also wake the supervisor, which otherwise sleeps until a link event or its
    // next look at the backing stores' sizes.
    let nudge = Arc::new(Nudge::new().context("cannot create the supervisor's wake-up")?);
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        nudge
            .on_signal(signal)
            .context("cannot install the signal handlers")?;
    }
    let devices = config.devices.len();
    let mut supervisor =
        Supervisor::start(config, config_path, reload, nudge).context("cannot start serving")?;
    let names: Vec<String> = supervisor
        .dataplane()
        .map(|d| d.interfaces().iter().map(|i| i.name.clone()).collect())
        .unwrap_or_default();
    tracing::info!(
        devices,
        interfaces = %names.join(","),
        "serving; SIGINT or SIGTERM stops, SIGHUP reloads"
    );
    let status = format!("serving {devices} device(s) on {}", names.join(","));
    let mut watchdog = ServiceManager::ready(&status);
    let mut failure = None;
    // Acquire: pairs with the signal handler's store.
    while !stop.load(Ordering::Acquire) {
        match supervisor.round(watchdog.until_due()) {
            Ok(()) => watchdog.alive(),
            Err(error) => {
                tracing::error!(%error, "shutting down");
                failure = Some(error);
                break;
            }
        }
    }
    ServiceManager::stopping();
    tracing::info!("shutting down: finishing in-flight requests, detaching XDP");
    let stats = supervisor.shutdown().context("a worker failed")?;
    if let Some(error) = failure {
        return Err(error).context("cannot go on serving");
    }
    let (rx, tx, io) = stats.iter().fold((0, 0, 0), |(rx, tx, io), s| {
        (rx + s.rx_frames, tx + s.tx_frames, io + s.io_submitted)
    });
    let frames_held: u32 = stats.iter().map(|s| s.frames_held).sum();
    tracing::info!(
        rx_frames = rx,
        tx_frames = tx,
        io_requests = io,
        frames_held,
        "stopped cleanly"
    );
    Ok(())
}

/// What systemd hears from a `Type=notify` service (nothing when `NOTIFY_SOCKET` is unset):
/// `READY=1` once every port serves, `WATCHDOG=1` at half the `WatchdogSec=` interval while
/// every worker runs, `STOPPING=1` when shutdown begins.
struct ServiceManager {
    /// Interval between watchdog pings, if systemd asked for them.
    watchdog: Option<std::time::Duration>,
    last_ping: std::time::Instant,
}

impl ServiceManager {
    fn ready(status: &str) -> ServiceManager {
        Self::tell(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| std::time::Duration::from_micros(usec / 2));
        ServiceManager {
            watchdog,
            last_ping: std::time::Instant::now(),
        }
    }

    /// How long until the next ping is due (a long time without a watchdog).
    fn until_due(&self) -> std::time::Duration {
        self.watchdog
            .map_or(std::time::Duration::from_secs(3600), |interval| {
                interval.saturating_sub(self.last_ping.elapsed())
            })
    }

    /// Pings the watchdog if it is due; call while the dataplane is healthy.
    fn alive(&mut self) {
        let Some(interval) = self.watchdog else {
            return;
        };
        if self.last_ping.elapsed() >= interval {
            Self::tell(&[sd_notify::NotifyState::Watchdog]);
            self.last_ping = std::time::Instant::now();
        }
    }

    fn stopping() {
        Self::tell(&[sd_notify::NotifyState::Stopping]);
    }

    fn tell(state: &[sd_notify::NotifyState<'_>]) {
        if let Err(error) = sd_notify::notify(false, state) {
            tracing::warn!(%error, "cannot notify the service manager");
        }
    }
}

fn print_load_error(err: &config::Error) {
    match err {
        config::Error::Invalid(problems) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            eprintln!("{} problem(s) in the configuration", problems.len());
        }
        config::Error::Read { source, .. } => eprintln!("error: {err}: {source}"),
    }
}

fn print_summary(config: &Config, backings: &[Result<Backing, Vec<BackingError>>]) {
    let target = &config.target;
    let cores: Vec<String> = target.worker_cores.iter().map(usize::to_string).collect();
    println!(
        "target: interfaces {}; {} worker(s) on cores {}; socket {} (xdp-mode {}, \
         packet-ring {}); UMEM {} x {} B; advertise {}; destinations {}",
        target.interfaces,
        target.worker_cores.len(),
        cores.join(","),
        target.socket,
        target.xdp_mode,
        target.packet_ring,
        target.umem_frames,
        target.frame_size,
        if target.advertise { "on" } else { "off" },
        if target.accept_any_destination {
            "any (accept-any-destination)"
        } else {
            "own MAC and broadcast"
        },
    );
    let header = [
        "NAME",
        "SHELF.SLOT",
        "PATH",
        "SECTORS",
        "SIZE",
        "MODE",
        "DURABILITY",
        "DIRECT-IO",
        "INTERFACES",
        "ACCESS",
        "QUEUE",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for (device, backing) in config.devices.iter().zip(backings) {
        rows.push(device_row(device, backing.as_ref().ok()));
    }
    print_table(&rows);
}

fn device_row(device: &DeviceConfig, backing: Option<&Backing>) -> Vec<String> {
    let (sectors, size) = match backing {
        Some(backing) => (
            backing.export_sectors.to_string(),
            human_bytes(backing.export_sectors.saturating_mul(512)),
        ),
        None => ("?".to_owned(), "?".to_owned()),
    };
    let access = match (device.accept.len(), device.deny.len()) {
        (0, 0) => "any".to_owned(),
        (0, deny) => format!("deny {deny}"),
        (accept, 0) => format!("accept {accept}"),
        (accept, deny) => format!("accept {accept}, deny {deny}"),
    };
    vec![
        device.name.clone(),
        format!("{}.{}", device.shelf, device.slot),
        device.path.display().to_string(),
        sectors,
        size,
        if device.read_only { "ro" } else { "rw" }.to_owned(),
        device.durability.to_string(),
        if device.direct_io { "yes" } else { "no" }.to_owned(),
        device.interfaces.to_string(),
        access,
        device.queue_length.to_string(),
    ]
}

/// Left-aligned columns separated by two spaces.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// Bytes in binary units with one decimal: "1.5 GiB".
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit_index = 0;
    let mut unit: u128 = 1;
    while unit_index + 1 < UNITS.len() && u128::from(bytes) >= unit * 1024 {
        unit *= 1024;
        unit_index += 1;
    }
    if unit_index == 0 {
        return format!("{bytes} B");
    }
    let tenths = u128::from(bytes) * 10 / unit;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit_index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_human_bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "15.9 EiB");
    }

    #[test]
    fn test_parse_export() {
        let export = parse_export("1.2=/srv/a=b.img").unwrap();
        assert_eq!((export.shelf, export.slot), (1, 2));
        assert_eq!(export.path, "/srv/a=b.img");
        assert!(parse_export("1=/dev/sdb").is_err());
        assert!(parse_export("1.0").is_err());
        assert!(parse_export("x.0=/dev/sdb").is_err());
    }

    #[test]
    fn test_cli_definition() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
